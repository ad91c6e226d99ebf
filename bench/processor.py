"""Events/s through the processor from a pre-filled write-ahead log, against reading that log.

In a throw-away data directory: seeds the demo workspace, fills the log through the real
trackers (clicks on the demo's links, then token-authenticated postbacks, each for an
earlier click with its own txid, a share of them later approved by a second postback with
the same txid, a share sent twice), and measures, in the same run:

  * the baseline: every record read back and decoded (WalReader + decode_event), the least
    any consumer of the log does;
  * the processor: Processor.drain() (enrich, dedupe, attribute, price and bill, Parquet
    lake, SQL store, checkpoints), on the same log.

It prints events/s of each, their ratio, the processor's CPU time per event, and the check
that every logged click and conversion reached the lake once. The processor keeps up with
an ingest rate R when its events/s is above R (the ingest target is 10,000 events/s).
Prints, never asserts.

    .venv/bin/python bench/processor.py [--clicks 40000] [--conversions 10000]
        [--approve-share 0.1] [--duplicate-share 0.02] [--batch N] [--rounds 1] [--keep]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from perfmark.adapters.metrics import count_event
from perfmark.adapters.wal_reader import WalReader
from perfmark.adapters.wal_writer import WalWriter
from perfmark.domain.events import decode_event
from perfmark.ingest.click import ClickTracker
from perfmark.ingest.conversions import ConversionTracker
from perfmark.ingest.hits import Hit
from perfmark.services.container import Container, build_container
from perfmark.services.demo import seed_demo
from perfmark.services.tracking_config import ConfigCache, load_snapshot
from perfmark.settings import lake_directory, load_settings, wal_directory
from perfmark.workers.processor import DEFAULT_BATCH_RECORDS, Processor

TARGET_EVENTS_PER_S = 10_000
USER_AGENT = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)


@dataclass(frozen=True)
class Filled:
    """What was logged."""

    clicks: int
    conversions: int
    approvals: int
    duplicates: int

    @property
    def records(self) -> int:
        """Records in the log."""
        return self.clicks + self.conversions + self.approvals + self.duplicates


def fill_log(container: Container, args: argparse.Namespace) -> Filled:
    """Log clicks and postbacks through the trackers, as the HTTP endpoints would."""
    settings = container.settings
    cache = ConfigCache(container.engine, settings.config_cache_ttl_ms)
    cache.snapshot = load_snapshot(container.engine)
    rng = random.Random(args.seed)
    wal = WalWriter(wal_directory(settings), "bench", fsync_interval_ms=50)
    clicks = ClickTracker(
        settings, container.secret_key, lambda: cache.snapshot, wal, container.clock,
        count_event, rng,
    )  # fmt: skip
    conversions = ConversionTracker(
        settings, lambda: cache.snapshot, wal, container.clock, count_event
    )
    slugs = sorted(cache.snapshot.links)
    click_ids: list[str] = []
    for number in range(args.clicks):
        params = {"sub1": f"s{number % 50}", "gclid": f"G-{number}"}
        hit = Hit(
            params=params, user_agent=USER_AGENT,
            country=rng.choice(("US", "CA", "DE")), accept_language="en-US,en;q=0.9",
            ip=f"198.51.{number % 250}.{number % 200}",
        )  # fmt: skip
        outcome = clicks.click(rng.choice(slugs), hit)
        if outcome.click_id and outcome.drop is None:
            click_ids.append(outcome.click_id)
    advertisers = list(cache.snapshot.advertisers.values())
    tokens = {a.workspace_id: a.secret for a in advertisers}
    token = next(iter(tokens.values()))
    sent: list[dict[str, str]] = []
    approvals = duplicates = 0
    for number in range(args.conversions):
        params = {
            "token": token, "click_id": rng.choice(click_ids), "goal": "sale",
            "value": f"{rng.randint(5, 200)}.90", "currency": "USD", "txid": f"T-{number}",
        }  # fmt: skip
        conversions.postback(Hit(params=params), "", b"", {})
        sent.append(params)
        if rng.random() < args.approve_share:
            approvals += 1
            conversions.postback(Hit(params={**params, "status": "approved"}), "", b"", {})
        if rng.random() < args.duplicate_share:
            duplicates += 1
            conversions.postback(Hit(params=params), "", b"", {})
    wal.close()
    return Filled(len(click_ids), len(sent), approvals, duplicates)


def read_baseline(container: Container) -> tuple[int, float]:
    """Read and decode every record of the log (own consumer); records and seconds."""
    reader = WalReader(wal_directory(container.settings), consumer="bench-baseline")
    checkpoint = reader.load_checkpoint()
    started = time.perf_counter()
    count = 0
    while True:
        batch = reader.read_batch(checkpoint, max_records=DEFAULT_BATCH_RECORDS)
        if not batch.records:
            break
        for record in batch.records:
            decode_event(record.payload)
        count += len(batch.records)
        checkpoint = batch.checkpoint
    return count, time.perf_counter() - started


def lake_counts(container: Container) -> dict[str, tuple[int, int]]:
    """Rows and distinct event ids per event type in the lake."""
    pattern = lake_directory(container.settings) / "events" / "date=*" / "hour=*" / "*.parquet"
    rows = duckdb.execute(
        f"select type, count(*), count(distinct event_id) from read_parquet('{pattern}') "
        "group by type"
    ).fetchall()
    return {str(kind): (int(total), int(distinct)) for kind, total, distinct in rows}


def warm_up(home: Path) -> None:
    """Pay the one-time lazy imports of a first Parquet write before anything is timed."""
    pq.write_table(pa.table({"warm": [1]}), home / "warm-up.parquet", compression="zstd")


def run_round(args: argparse.Namespace, home: Path) -> None:
    """One fill, baseline and processor run in a fresh data directory."""
    warm_up(home)
    container = build_container(load_settings({"PERFMARK_HOME": str(home)}))
    seed_demo(container)
    started = time.perf_counter()
    filled = fill_log(container, args)
    fill_s = time.perf_counter() - started
    print(f"log: {filled.records:,} records ({filled.clicks:,} clicks, {filled.conversions:,} "
          f"postbacks, {filled.approvals:,} approvals, {filled.duplicates:,} repeats) "
          f"logged in {fill_s:.1f} s")  # fmt: skip
    records, baseline_s = read_baseline(container)
    batch = args.batch or DEFAULT_BATCH_RECORDS
    processor = Processor(container, batch_records=batch)
    cpu_before = time.process_time()
    started = time.perf_counter()
    written = processor.drain()
    processor_s = time.perf_counter() - started
    cpu_s = time.process_time() - cpu_before
    baseline_rate, processor_rate = records / baseline_s, records / processor_s
    print(f"  baseline (read + decode)  {baseline_rate:>10,.0f} events/s ({records:,} in "
          f"{baseline_s:.2f} s)")  # fmt: skip
    print(f"  processor (drain)         {processor_rate:>10,.0f} events/s ({written:,} written "
          f"in {processor_s:.1f} s; CPU {cpu_s * 1e6 / records:,.0f} us/event)")  # fmt: skip
    print(f"  processor / baseline {processor_rate / baseline_rate:.3f}; keeps up with "
          f"{TARGET_EVENTS_PER_S:,} events/s: {'YES' if processor_rate >= TARGET_EVENTS_PER_S else 'NO'}")  # fmt: skip
    counts = lake_counts(container)
    clicks, click_ids = counts.get("click", (0, 0))
    conversions, conversion_ids = counts.get("conversion", (0, 0))
    statuses, _status_ids = counts.get("conversion_status", (0, 0))
    whole = (
        clicks == click_ids >= filled.clicks and conversions == conversion_ids == filled.conversions
    )
    print(f"  lake: {click_ids:,} clicks, {conversion_ids:,} conversions, {statuses:,} status "
          f"changes; each logged click and conversion once: {'YES' if whole else 'NO'}")  # fmt: skip


def main() -> None:
    """Parse the options and run."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--clicks", type=int, default=40_000)
    parser.add_argument("--conversions", type=int, default=10_000)
    parser.add_argument("--approve-share", type=float, default=0.1)
    parser.add_argument("--duplicate-share", type=float, default=0.02)
    parser.add_argument("--batch", type=int, default=0, help="records per batch (0: default)")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--dir", default=None, help="parent of the temporary data directory")
    parser.add_argument("--keep", action="store_true", help="keep the data directories")
    args = parser.parse_args()
    for round_number in range(1, args.rounds + 1):
        home = Path(tempfile.mkdtemp(prefix="perfmark-bench-processor-", dir=args.dir))
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        print(f"round {round_number} ({home}):")
        try:
            run_round(args, home)
        finally:
            if args.keep:
                print(f"  data kept in {home}")
            else:
                shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
