"""The processor: dedupe, statuses, attribution, bots, and exactly-once output after a crash."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import duckdb
import ibis
import pytest
from sqlalchemy import select

from perfmark.adapters.lake import events_glob
from perfmark.adapters.store.engine import transaction
from perfmark.adapters.store.schema import clicks, conversions, identities
from perfmark.adapters.wal import WalWriter
from perfmark.clock import FixedClock
from perfmark.domain.events import DropReason
from perfmark.ingest.click import ClickOutcome, ClickTracker
from perfmark.ingest.conversions import ConversionTracker, sign_postback
from perfmark.ingest.hits import Hit
from perfmark.ingest.segment import SegmentTracker
from perfmark.reports.domain.request import parse_report_request
from perfmark.reports.export import report_to_json
from perfmark.reports.query import LakeQuery
from perfmark.reports.rollups import DEFAULT_ROLLUPS, RollupQuery, freshness
from perfmark.reports.service import run_report
from perfmark.services.container import Container, build_container
from perfmark.services.demo import DemoWorkspace, seed_demo
from perfmark.services.tracking_config import ConfigSnapshot, load_snapshot
from perfmark.settings import lake_directory, load_settings, wal_directory
from perfmark.workers.processor import Processor

DESKTOP = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36"
)
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
SLACKBOT = "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)"


class Crash(BaseException):
    """Stands for the process dying at a chosen point (BaseException: nothing catches it)."""


@dataclass
class Pipe:
    """Two seeded workspaces, the three trackers on a real log, and the processor's outputs."""

    container: Container
    clock: FixedClock
    demo: DemoWorkspace
    wal: WalWriter
    config: ConfigSnapshot
    drops: Counter[str]
    _other: DemoWorkspace | None = None

    @property
    def other(self) -> DemoWorkspace:
        """A second tenant, seeded on first use."""
        if self._other is None:
            self._other = seed_demo(self.container, name="Other workspace")
            self.config = load_snapshot(self.container.engine)
        return self._other

    def count(self, event_type: str, drop: DropReason | None) -> None:
        if drop is not None:
            self.drops[f"{event_type}:{drop}"] += 1

    def slug(self, index: int = 0, workspace: DemoWorkspace | None = None) -> str:
        return (workspace or self.demo).links[index].spec.slug

    def click(self, index: int = 0, workspace: DemoWorkspace | None = None, **hit: Any) -> str:
        hit.setdefault("country", "US")
        hit.setdefault("user_agent", DESKTOP)
        params = {name: hit.pop(name) for name in list(hit) if name.startswith("sub")}
        hit.update(params=params)
        tracker = ClickTracker(
            self.container.settings, "k", lambda: self.config, self.wal, self.clock, self.count
        )
        outcome: ClickOutcome = tracker.click(self.slug(index, workspace), Hit(**hit))
        assert outcome.status == 302 and outcome.click_id, outcome
        return outcome.click_id

    def advertiser(self, workspace: DemoWorkspace | None = None, index: int = 0) -> tuple[str, str]:
        ws = (workspace or self.demo).workspace_id
        found = sorted(
            (a.advertiser_id, a.secret) for a in self.config.advertisers.values()
            if a.workspace_id == ws and not a.param_map
        )  # fmt: skip
        return found[index]

    def postback(self, workspace: DemoWorkspace | None = None, **params: str) -> str:
        _adv, secret = self.advertiser(workspace)
        query = urlencode({"token": secret, **params})
        return self.send_postback(query)

    def signed_query(self, **params: str) -> str:
        adv, secret = self.advertiser()
        stamp = int(self.clock.now().timestamp())
        query = urlencode({**params, "adv": adv, "ts": stamp})
        return f"{query}&sig={sign_postback(secret, stamp, query)}"

    def send_postback(self, query: str) -> str:
        tracker = ConversionTracker(
            self.container.settings, lambda: self.config, self.wal, self.clock, self.count
        )
        pairs = parse_qsl(query)
        return tracker.postback(Hit(params=dict(pairs)), query, b"", {})

    def segment(self, *messages: dict[str, Any], workspace: DemoWorkspace | None = None) -> None:
        ws = (workspace or self.demo).workspace_id
        tracker = SegmentTracker(
            self.container.settings, lambda: self.config, self.wal, self.clock, self.count
        )
        tracker.ingest(ws, list(messages), None, Hit())

    def process(self, **options: Any) -> Processor:
        processor = Processor(self.container, count=self.count, **options)
        processor.drain()
        return processor

    def lake(self) -> list[dict[str, Any]]:
        pattern = events_glob(lake_directory(self.container.settings))
        if not list(Path(lake_directory(self.container.settings)).glob("events/*/*/*.parquet")):
            return []
        relation = duckdb.sql(
            f"select * from read_parquet('{pattern}', union_by_name=true) order by ts_ms, event_id"
        )
        names = relation.columns
        return [dict(zip(names, row, strict=True)) for row in relation.fetchall()]

    def conversions(self) -> list[dict[str, Any]]:
        with transaction(self.container.engine) as conn:
            rows = conn.execute(select(conversions).order_by(conversions.c.ts, conversions.c.id))
            return [dict(row) for row in rows.mappings()]

    def clicks(self) -> list[dict[str, Any]]:
        with transaction(self.container.engine) as conn:
            return [dict(row) for row in conn.execute(select(clicks)).mappings()]


@pytest.fixture
def pipe(request: pytest.FixtureRequest, tmp_path: Path, clock: FixedClock) -> Iterator[Pipe]:
    """The pipeline on SQLite, or on PostgreSQL for tests parametrized with BOTH_STORES."""
    environment = {"PERFMARK_HOME": str(tmp_path / "home")}
    if getattr(request, "param", "sqlite") == "postgres":
        environment["PERFMARK_DATABASE_URL"] = request.getfixturevalue("postgres_url")
    container = build_container(load_settings(environment), clock=clock)
    demo = seed_demo(container)
    wal = WalWriter(wal_directory(container.settings), "t0", fsync_interval_ms=1000)
    yield Pipe(container, clock, demo, wal, load_snapshot(container.engine), Counter())
    wal.close()
    container.engine.dispose()


#: The tests whose SQL matters most run on PostgreSQL too (the others only on SQLite, to
#: keep the suite quick).
BOTH_STORES = pytest.mark.parametrize("pipe", ["sqlite", "postgres"], indirect=True)


def test_clicks_reach_the_lake_and_the_store_once(pipe: Pipe) -> None:
    ids = [pipe.click(sub1=f"s{i}") for i in range(5)]
    pipe.process(batch_records=2)  # three batches
    lake = pipe.lake()
    assert sorted(row["event_id"] for row in lake) == sorted(ids)
    assert {row["sub1"] for row in lake} == {f"s{i}" for i in range(5)}
    assert {row["device"] for row in lake} == {"desktop"}
    assert {row["browser"] for row in lake} == {"Chrome"}
    assert sorted(row["click_id"] for row in pipe.clicks()) == sorted(ids)
    pipe.process()  # nothing new: nothing written again
    assert len(pipe.lake()) == 5


def test_dedupe_by_event_id_in_a_batch_and_across_batches(pipe: Pipe) -> None:
    message = {"type": "page", "anonymousId": "v1", "messageId": "m-1", "name": "Home"}
    pipe.segment(message)
    pipe.segment(message)  # a retry in the same batch
    pipe.process()
    pipe.segment(message)  # a retry after the first was processed
    pipe.clock.advance(hours=2)
    pipe.segment(message)  # and one in another hour partition
    pipe.process()
    lake = pipe.lake()
    assert [row["type"] for row in lake] == ["pageview"]
    assert pipe.drops["pageview:duplicate"] == 3


def test_replayed_signed_postback_counts_once(pipe: Pipe) -> None:
    click = pipe.click()
    query = pipe.signed_query(click_id=click, goal="sale", value="20")
    first = pipe.send_postback(query)
    pipe.process()
    pipe.clock.advance(seconds=60)
    assert pipe.send_postback(query) == first  # byte-identical request, a minute later
    pipe.process()
    rows = pipe.conversions()
    assert len(rows) == 1 and rows[0]["event_id"] == first
    assert [row["type"] for row in pipe.lake()] == ["click", "conversion"]
    assert pipe.drops["conversion:duplicate"] == 1


@BOTH_STORES
def test_dedupe_by_workspace_and_transaction_id(pipe: Pipe) -> None:
    click = pipe.click()
    other_click = pipe.click(workspace=pipe.other)
    pipe.postback(click_id=click, goal="sale", value="10", txid="T-1")
    pipe.postback(click_id=click, goal="sale", value="10", txid="T-1")  # resent: new event id
    pipe.process()
    pipe.postback(click_id=click, goal="sale", value="11", txid="T-1")
    # The same transaction id in another workspace is another conversion.
    pipe.postback(pipe.other, click_id=other_click, goal="sale", value="10", txid="T-1")
    pipe.process()
    rows = pipe.conversions()
    assert sorted((r["workspace_id"], r["txid"]) for r in rows) == sorted(
        [(pipe.demo.workspace_id, "T-1"), (pipe.other.workspace_id, "T-1")]
    )
    assert pipe.drops["conversion:duplicate"] == 2
    lake_conversions = [r for r in pipe.lake() if r["type"] == "conversion"]
    assert len(lake_conversions) == 2


def test_several_goals_per_click(pipe: Pipe) -> None:
    click = pipe.click(1)
    pipe.postback(click_id=click, goal="lead")
    pipe.clock.advance(minutes=10)
    pipe.postback(click_id=click, goal="sale", value="80", txid="S-1")
    pipe.clock.advance(minutes=10)
    pipe.postback(click_id=click, goal="sale", value="15", txid="S-2")  # an upsell
    pipe.process()
    rows = pipe.conversions()
    assert [(r["goal_key"], r["value"], r["click_id"]) for r in rows] == [
        ("lead", Decimal("4"), click),
        ("sale", Decimal("80"), click),
        ("sale", Decimal("15"), click),
    ]
    campaign = pipe.demo.campaigns[1].id
    assert {r["campaign_id"] for r in rows} == {campaign}
    lake = [r for r in pipe.lake() if r["type"] == "conversion"]
    assert {(r["click_id"], r["campaign_id"]) for r in lake} == {(click, campaign)}


@BOTH_STORES
def test_status_changes_by_postback(pipe: Pipe) -> None:
    click = pipe.click()
    pipe.postback(click_id=click, goal="sale", value="50", txid="T-9")
    pipe.process()
    pipe.clock.advance(hours=1)
    pipe.postback(click_id=click, goal="sale", txid="T-9", status="approved")
    pipe.process()
    [row] = pipe.conversions()
    assert row["status"] == "approved"
    pipe.clock.advance(hours=1)
    pipe.postback(click_id=click, goal="sale", txid="T-9", status="refunded")
    pipe.postback(click_id=click, goal="sale", txid="T-9", status="approved")  # refunds are final
    pipe.postback(click_id=click, goal="sale", txid="T-9", status="pending")
    pipe.process()
    [row] = pipe.conversions()
    assert row["status"] == "refunded"
    assert pipe.drops["conversion:duplicate"] == 2
    changes = [r for r in pipe.lake() if r["type"] == "conversion_status"]
    assert [(r["previous_status"], r["status"]) for r in changes] == [
        ("pending", "approved"),
        ("approved", "refunded"),
    ]
    assert {r["txid"] for r in changes} == {"T-9"}
    assert {r["click_id"] for r in changes} == {click}


def test_status_change_in_the_same_batch_as_the_conversion(pipe: Pipe) -> None:
    pipe.postback(goal="sale", value="5", txid="T-2")
    pipe.postback(goal="sale", txid="T-2", status="rejected")
    pipe.postback(goal="sale", txid="T-2", status="rejected")
    pipe.process()
    [row] = pipe.conversions()
    assert row["status"] == "rejected"
    assert sorted(r["type"] for r in pipe.lake()) == ["conversion", "conversion_status"]


def test_conversion_with_no_known_click_is_kept_unattributed(pipe: Pipe) -> None:
    pipe.postback(click_id="clk_01kdvdna00m3e9d1yz096zzreb", goal="sale", value="9")
    pipe.postback(goal="lead")
    pipe.process()
    rows = pipe.conversions()
    assert len(rows) == 2
    assert all(r["campaign_id"] is None and r["click_id"] is None for r in rows)
    assert {r["workspace_id"] for r in rows} == {pipe.demo.workspace_id}
    lake = pipe.lake()
    assert [r["type"] for r in lake] == ["conversion", "conversion"]
    assert all(r["campaign_id"] is None for r in lake)


def test_clickless_conversion_is_attributed_to_the_visitors_last_click(pipe: Pipe) -> None:
    cookie = {"pm_vid": "vVisitor1"}
    pipe.clock.advance(days=-40)
    pipe.click(0, cookies=cookie)  # outside the 30-day lookback
    pipe.clock.advance(days=30)
    early = pipe.click(2, cookies=cookie)
    pipe.clock.advance(days=5)
    last = pipe.click(4, cookies=cookie)
    pipe.click(3, cookies={"pm_vid": "vSomeoneElse"})
    pipe.clock.advance(days=4)
    pipe.segment({"type": "track", "anonymousId": "vVisitor1", "event": "Order Completed",
                  "properties": {"revenue": 30, "order_id": "O-1"}})  # fmt: skip
    pipe.process()
    [row] = pipe.conversions()
    assert row["click_id"] == last and row["click_id"] != early
    assert row["campaign_id"] == pipe.demo.campaigns[4].id
    [lake_row] = [r for r in pipe.lake() if r["type"] == "conversion"]
    assert (lake_row["click_id"], lake_row["campaign_id"]) == (last, pipe.demo.campaigns[4].id)


def test_visitor_lookback_excludes_old_clicks(pipe: Pipe) -> None:
    pipe.click(0, cookies={"pm_vid": "vOld"})
    pipe.clock.advance(days=31)
    pipe.segment({"type": "track", "anonymousId": "vOld", "event": "Signed Up"})
    pipe.process()
    [row] = pipe.conversions()
    assert row["click_id"] is None and row["campaign_id"] is None


def test_identify_links_devices_so_the_customer_id_finds_the_click(pipe: Pipe) -> None:
    phone_click = pipe.click(1, cookies={"pm_vid": "vPhone"})
    pipe.clock.advance(minutes=5)
    pipe.segment({"type": "identify", "anonymousId": "vPhone", "userId": "cust-42"})
    pipe.process()
    pipe.clock.advance(hours=3)
    # Later, on a laptop that never clicked: only the customer id ties it to the phone.
    pipe.segment({"type": "track", "anonymousId": "vLaptop", "userId": "cust-42",
                  "event": "Signed Up"})  # fmt: skip
    pipe.process()
    [row] = pipe.conversions()
    assert (row["click_id"], row["customer_id"]) == (phone_click, "cust-42")
    with transaction(pipe.container.engine) as conn:
        linked = conn.execute(select(identities.c.visitor_id, identities.c.customer_id)).all()
    assert [tuple(r) for r in linked] == [("vPhone", "cust-42")]


def test_another_workspaces_click_never_credits_a_conversion(pipe: Pipe) -> None:
    theirs = pipe.click(0, workspace=pipe.other, cookies={"pm_vid": "vShared"})
    pipe.process()
    pipe.postback(click_id=theirs, goal="sale", value="10", txid="X-1")
    pipe.segment({"type": "track", "anonymousId": "vShared", "event": "Signed Up"})
    pipe.process()
    rows = pipe.conversions()
    assert len(rows) == 2
    assert {r["workspace_id"] for r in rows} == {pipe.demo.workspace_id}
    assert all(r["click_id"] is None and r["campaign_id"] is None for r in rows)
    for row in (r for r in pipe.lake() if r["type"] == "conversion"):
        assert row["campaign_id"] is None and row["publisher_id"] is None


def test_bots_are_flagged_in_the_lake_and_never_credited(pipe: Pipe) -> None:
    crawler = pipe.click(user_agent=GOOGLEBOT, cookies={"pm_vid": "vBot"})
    preview = pipe.click(user_agent=SLACKBOT, cookies={"pm_vid": "vBot"})
    head = pipe.click(method="HEAD", cookies={"pm_vid": "vBot"})
    person = pipe.click()
    pipe.clock.advance(minutes=1)
    pipe.segment({"type": "track", "anonymousId": "vBot", "event": "Signed Up"})
    pipe.process()
    by_id = {r["event_id"]: r for r in pipe.lake()}
    assert (by_id[crawler]["is_bot"], by_id[crawler]["bot_reason"]) == (True, "crawler")
    assert (by_id[preview]["is_bot"], by_id[preview]["bot_reason"]) == (True, "link_preview")
    assert (by_id[head]["is_bot"], by_id[head]["bot_reason"]) == (True, "head_request")
    assert by_id[person]["is_bot"] is False
    stored = {r["click_id"]: r["is_bot"] for r in pipe.clicks()}
    assert stored == {crawler: True, preview: True, head: True, person: False}
    assert pipe.drops["click:bot"] == 3
    [row] = pipe.conversions()
    assert row["click_id"] is None  # bot clicks never earn a conversion


def test_not_targeted_clicks_are_in_the_lake_but_not_the_store(pipe: Pipe) -> None:
    tracker = ClickTracker(
        pipe.container.settings, "k", lambda: pipe.config, pipe.wal, pipe.clock, pipe.count
    )
    outcome = tracker.click(pipe.slug(), Hit(country="BR"))
    assert outcome.drop is DropReason.NOT_TARGETED
    pipe.process()
    [row] = pipe.lake()
    assert (row["event_id"], row["drop_reason"]) == (outcome.click_id, "not_targeted")
    assert pipe.clicks() == []


@BOTH_STORES
def test_long_anonymous_ids_do_not_stall_the_processor(pipe: Pipe) -> None:
    long_id = "a" * 120  # the event API accepts ids up to 128 characters
    pipe.segment({"type": "identify", "anonymousId": long_id, "userId": "c" * 128})
    pipe.segment({"type": "track", "anonymousId": long_id, "event": "Signed Up"})
    pipe.process()
    [row] = pipe.conversions()
    assert row["goal_key"] == "lead"
    assert sorted(r["type"] for r in pipe.lake()) == ["conversion", "identify"]


def traffic(pipe: Pipe) -> set[str]:
    """A mixed batch: clicks, conversions (new and status changes), pages, identify."""
    click = pipe.click()
    pipe.postback(click_id=click, goal="sale", value="10", txid="C-1")
    pipe.postback(goal="lead", txid="C-2")
    pipe.segment({"type": "page", "anonymousId": "v1", "messageId": "p-1"})
    pipe.segment({"type": "identify", "anonymousId": "v1", "userId": "u1", "messageId": "i-1"})
    pipe.process()  # committed before the crash: the status change below needs C-1 stored
    expected = {row["event_id"] for row in pipe.lake()}
    pipe.clock.advance(minutes=1)
    expected.add(pipe.postback(click_id=click, goal="sale", txid="C-1", status="approved"))
    expected.add(pipe.postback(goal="sale", value="7", txid="C-3"))
    expected.add(pipe.click(1))
    pipe.segment({"type": "track", "anonymousId": "v1", "event": "Browse", "messageId": "t-1"})
    pipe.segment({"type": "track", "userId": "u1", "event": "Signed Up", "messageId": "t-2"})
    return expected


def crash_then_recover(pipe: Pipe, point: str) -> Processor:
    """Let a processor die at `point` of a batch, then run a new one over the same data.

    checkpoint: after the store commit and the lake files, before the checkpoint;
    marker: after the store commit, before the marker and the lake files;
    lake: part-way through writing the lake files.
    """
    first = Processor(pipe.container, count=pipe.count)

    def die(*_args: Any, **_kwargs: Any) -> Any:
        raise Crash(point)

    if point == "checkpoint":
        first.reader.save_checkpoint = die  # type: ignore[method-assign]
    elif point == "marker":
        first.lake.planned_files = die  # type: ignore[method-assign]
    else:
        write = first.lake.write

        def write_one_then_die(batch_id: str, events: Any) -> Any:
            write(batch_id, events[:1])
            raise Crash(point)

        first.lake.write = write_one_then_die  # type: ignore[method-assign]
    with pytest.raises(Crash):
        first.process_batch()
    return pipe.process()  # a new processor: recovers, then drains


@pytest.mark.parametrize(
    ("pipe", "point"),
    [("sqlite", "checkpoint"), ("sqlite", "marker"), ("sqlite", "lake"),
     ("postgres", "checkpoint")],
    indirect=["pipe"],
)  # fmt: skip
def test_a_crash_mid_batch_leaves_every_event_exactly_once(pipe: Pipe, point: str) -> None:
    expected = traffic(pipe)
    crash_then_recover(pipe, point)
    lake = pipe.lake()
    ids = Counter(row["event_id"] for row in lake)
    assert all(n == 1 for n in ids.values()), [i for i, n in ids.items() if n > 1]
    types = Counter(row["type"] for row in lake)
    assert types == {"click": 2, "conversion": 4, "conversion_status": 1, "pageview": 1,
                     "identify": 1, "track": 1}  # fmt: skip
    assert expected <= set(ids)
    statuses = {row["txid"]: row["status"] for row in pipe.conversions()}
    assert statuses == {"C-1": "approved", "C-2": "pending", "C-3": "pending", None: "pending"}
    [change] = [row for row in lake if row["type"] == "conversion_status"]
    assert (change["txid"], change["previous_status"], change["status"]) == (
        "C-1", "pending", "approved",
    )  # fmt: skip
    assert not (lake_directory(pipe.container.settings) / "_pending_batch.json").exists()
    # Nothing is left to redo: another pass writes nothing.
    pipe.process()
    assert len(pipe.lake()) == len(lake)


def test_the_lake_row_count_matches_an_independent_count_by_duckdb(pipe: Pipe) -> None:
    ids = {pipe.click(i % 6) for i in range(30)}
    pipe.process(batch_records=7)
    glob = events_glob(lake_directory(pipe.container.settings))
    [(total, distinct)] = duckdb.sql(
        f"select count(*), count(distinct event_id) from read_parquet('{glob}')"
    ).fetchall()
    assert total == distinct == 30
    found = {r[0] for r in duckdb.sql(f"select event_id from read_parquet('{glob}')").fetchall()}
    assert found == ids


def test_server_side_events_are_not_bots_but_crawling_browsers_are(pipe: Pipe) -> None:
    # What a Segment server library sends: no context.userAgent, its own library name.
    library = {"library": {"name": "analytics-ruby", "version": "2.4.0"}}
    pipe.segment({"type": "page", "anonymousId": "v1", "name": "Server", "context": library})
    pipe.segment({"type": "track", "anonymousId": "v1", "event": "Custom", "context": library})
    pipe.segment({"type": "page", "anonymousId": "v2", "name": "Crawled",
                  "context": {"userAgent": GOOGLEBOT}})  # fmt: skip
    pipe.process()
    flags = {row["name"]: (row["is_bot"], row["bot_reason"]) for row in pipe.lake()}
    assert flags == {
        "Server": (False, None),
        "Custom": (False, None),
        "Crawled": (True, "crawler"),
    }


def _report(pipe: Pipe, query: Any, **arguments: Any) -> dict[str, Any]:
    today = pipe.clock.now().date().isoformat()
    arguments = {"start": today, "end": today, **arguments}
    request = parse_report_request(pipe.demo.workspace_id, **arguments)
    result: dict[str, Any] = report_to_json(run_report(pipe.container, request, query=query))
    return result


def test_the_processor_keeps_rollups_that_reports_use_with_identical_results(pipe: Pipe) -> None:
    for index in range(3):
        pipe.click(index, sub1="a")
    pipe.postback(clid=pipe.click(0), goal="sale", value="40", txid="t1")
    processor = pipe.process()
    lake = lake_directory(pipe.container.settings)
    today = pipe.clock.now().date()
    for spec in DEFAULT_ROLLUPS:  # drained: every rollup of today matches today's files
        assert freshness(lake, spec, [today]).stale == ()
        assert freshness(lake, spec, [today]).extra_files == ()
    backend = ibis.duckdb.connect()
    raw, rolled = LakeQuery(lake, backend), RollupQuery(lake, backend)
    case = {"dimensions": "campaign,publisher,hour", "metrics": "clicks,conversions,revenue,cpa"}
    request = parse_report_request(
        pipe.demo.workspace_id, start=today, end=today, dimensions="campaign,hour"
    )
    assert rolled.rollup_for(request, ("clicks",)) is DEFAULT_ROLLUPS[0]
    assert _report(pipe, rolled, **case) == _report(pipe, raw, **case)
    assert _report(pipe, rolled, metrics="clicks")["totals"]["clicks"] == 4

    # A batch after the build: the rollup plus the newer file, still exact, then rebuilt.
    pipe.click(1, sub1="b")
    assert processor.process_batch().written == 1
    state = freshness(lake, DEFAULT_ROLLUPS[0], [today])
    assert state.stale == () and len(state.extra_files) == 1
    assert _report(pipe, rolled, **case) == _report(pipe, raw, **case)
    assert _report(pipe, rolled, metrics="clicks")["totals"]["clicks"] == 5
    assert processor.rollups.build_due(force=True) == [today]
    assert freshness(lake, DEFAULT_ROLLUPS[0], [today]).extra_files == ()
    assert _report(pipe, rolled, **case) == _report(pipe, raw, **case)


def test_rollups_are_rebuilt_at_most_once_per_interval_and_heal_at_start(pipe: Pipe) -> None:
    pipe.click(0)
    processor = Processor(pipe.container, count=pipe.count)
    times = iter([100.0, 110.0, 131.0])
    processor.rollups._clock = lambda: next(times)
    processor.process_batch()
    today = pipe.clock.now().date()
    assert processor.rollups.build_due() == [today]  # never built: due at once
    pipe.click(1)
    processor.process_batch()
    assert processor.rollups.build_due() == []  # 10 s later: not yet (interval 30 s)
    assert processor.rollups.build_due() == [today]  # 31 s later
    # Rollups removed (or a crash before a build): a new processor finds and rebuilds them.
    lake = lake_directory(pipe.container.settings)
    for part in (lake / "rollups").rglob("_sources.json"):
        part.unlink()
    assert freshness(lake, DEFAULT_ROLLUPS[0], [today]).stale == (today,)
    Processor(pipe.container, count=pipe.count).drain()
    assert freshness(lake, DEFAULT_ROLLUPS[0], [today]).stale == ()
