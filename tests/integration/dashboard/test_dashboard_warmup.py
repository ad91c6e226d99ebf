"""Warm-up computes what the pages show first; heavy figures are served stale while refreshed."""

from __future__ import annotations

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
    thread = start_warmup(container)
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
