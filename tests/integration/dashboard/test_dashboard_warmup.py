"""Warm-up computes what the pages show first; heavy figures are served stale while refreshed."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from typing import Any

from perfmark.dashboard import cache
from perfmark.dashboard.cache import cached_over_lake, clear_report_cache
from perfmark.dashboard.warmup import start_warmup, warm_dashboard

from .conftest import ClientFactory, World


def test_warm_up_computes_every_pages_default_figures(
    fresh_world: World, client_for: ClientFactory
) -> None:
    clear_report_cache()
    assert warm_dashboard(fresh_world.container) == 6  # overview, lists, report, attribution
    kept = len(cache._results)
    before = set(cache._results)
    assert kept >= 6
    # The pages now answer from what was kept: nothing new is computed.
    client = client_for(fresh_world, fresh_world.owner)
    for path in ("/dashboard/", "/dashboard/campaigns", "/dashboard/publishers",
                 "/dashboard/advertisers", "/dashboard/reports", "/dashboard/attribution"):  # fmt: skip
        assert client.get(path).status_code == 200, path
    assert len(cache._results) == kept, [k[2][:300] for k in set(cache._results) - before]
    assert "Computed at" in client.get("/dashboard/attribution").text


def test_warm_up_runs_in_the_background_and_skips_an_empty_lake(tmp_path: Path) -> None:
    from perfmark.services.container import build_container
    from perfmark.services.demo import seed_demo
    from perfmark.settings import load_settings

    container = build_container(load_settings({"PERFMARK_HOME": str(tmp_path / "home")}))
    seed_demo(container)
    thread = start_warmup(container, rewarm_every_s=None)
    thread.join(timeout=120)
    assert not thread.is_alive()
    # No events: reports are empty and attribution has nothing to attribute (skipped, no error).
    assert warm_dashboard(container) == 5
    container.engine.dispose()


def test_stale_results_are_served_while_one_refresh_runs(fresh_world: World) -> None:
    clear_report_cache()
    container = fresh_world.container
    calls: list[int] = []
    release = threading.Event()

    def compute() -> int:
        calls.append(1)
        if len(calls) > 1:
            release.wait(30)
        return len(calls)

    assert cached_over_lake(container, "k", compute, stale_for_s=60) == 1
    new_file = next(Path(fresh_world.home).glob("lake/events/date=*/hour=*")) / "zz.txt"
    new_file.write_text("the lake changed")  # lake_version counts files
    try:
        # Changed lake: the old figure comes back at once, one refresh runs in the background.
        assert cached_over_lake(container, "k", compute, stale_for_s=60) == 1
        assert cached_over_lake(container, "k", compute, stale_for_s=60) == 1
        release.set()
        deadline = time.monotonic() + 30
        while cached_over_lake(container, "k", compute, stale_for_s=60) != 2:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert len(calls) == 2
        # Without stale_for_s a changed lake is always recomputed before answering.
        new_file.write_text("changed again")
        new_file.rename(new_file.with_name("zz2.txt"))
        results: list[Any] = [cached_over_lake(container, "k", compute)]
        assert results == [3]
    finally:
        for name in ("zz.txt", "zz2.txt"):
            new_file.with_name(name).unlink(missing_ok=True)


def test_after_new_events_a_page_shows_its_kept_figures_and_the_poll_brings_new_ones(
    fresh_world: World, client_for: ClientFactory
) -> None:
    from perfmark.adapters.lake import LakeWriter
    from perfmark.domain.events import TrackedEvent
    from perfmark.settings import lake_directory

    from .test_dashboard_figures import _tile
    from .world import at_ms

    clear_report_cache()
    client = client_for(fresh_world, fresh_world.owner)
    before = _tile(client.get("/dashboard/").text, "conversions")[0]
    LakeWriter(lake_directory(fresh_world.container.settings)).write(
        "bstale",
        [
            TrackedEvent(
                event_id="evt_stale", type="conversion", ts_ms=at_ms("2025-12-31 12:00"),
                workspace_id=fresh_world.demo.workspace_id,
                campaign_id=fresh_world.facts.lumen_campaign,
                advertiser_id=fresh_world.facts.lumen, goal_key="install", status="pending",
                value="5", currency="USD", cost="3", payout="2", billing_currency="USD",
            )
        ],
    )  # fmt: skip
    page = client.get("/dashboard/").text
    assert _tile(page, "conversions")[0] == before  # kept figures, answered at once
    found = re.search(r'hx-get="(/dashboard/overview/live\?[^"]+)"', page)
    assert found
    poll = client.get(found.group(1).replace("&amp;", "&"))
    assert poll.status_code == 200  # the shown figures are older than the lake
    assert int(_tile(poll.text, "conversions")[0]) == int(before) + 1
    deadline = time.monotonic() + 30
    while _tile(client.get("/dashboard/").text, "conversions")[0] == before:
        assert time.monotonic() < deadline, "the background refresh never landed"
        time.sleep(0.05)
