"""The processor: the one leader that turns the trackers' logs into the lake and the store.

Per batch: decode, enrich (user agent, bots), dedupe, attribute conversions to clicks,
write Parquet partitions and SQL rows, then checkpoint. A batch is made redo-safe by a
marker written before its outputs: after a crash, the files of an uncommitted batch are
deleted and the batch is read again from the last checkpoint; SQL writes are idempotent
(keys on click id, event id and transaction id). Replaying a log therefore never counts
an event twice.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from perfmark.adapters.lake import LakeWriter, event_ids_since
from perfmark.adapters.metrics import count_event
from perfmark.adapters.store.engine import transaction
from perfmark.adapters.store.schema import clicks
from perfmark.adapters.store.tracking import (
    BatchConversions,
    clicks_of_visitors,
    insert_ignoring_duplicates,
    upsert_identity,
    visitors_of_customer,
)
from perfmark.adapters.useragent import bot_reason, parse_user_agent
from perfmark.adapters.wal_reader import Checkpoint, WalReader
from perfmark.billing.domain.pricing import quote_event
from perfmark.billing.services.events import post_billable_events  # billing (issue 6)
from perfmark.clock import utc
from perfmark.domain.events import (
    EVENT_FIELDS,
    ConversionStatus,
    DropReason,
    EventType,
    TrackedEvent,
    decode_event,
)
from perfmark.domain.links import SUB_FIELDS, UTM_FIELDS
from perfmark.domain.pricing import BillableEvent
from perfmark.errors import NotFoundError, PerfmarkError
from perfmark.ids import new_id
from perfmark.money import Money
from perfmark.reports.rollups import RollupKeeper, dates_of_files
from perfmark.services.container import Container
from perfmark.services.tracking_config import ConfigCache
from perfmark.settings import lake_directory, wal_directory
from perfmark.workers.recent_ids import DEDUPE_WINDOW_MS, RecentEventIds

__all__ = ["BatchResult", "Processor"]

logger = logging.getLogger("perfmark.processor")

DEFAULT_BATCH_RECORDS = 20_000
#: Ids derived from a client's messageId: a retry sends the same id again.
_REPEATABLE_ID_PREFIX = "evt_m"
#: Keys the processor keeps in a conversion row's data, next to the event's fields: the log
#: position of the record that stored it, and the status changes applied to it (by event
#: id: position and previous status). A batch redone after a crash finds its own records
#: there and writes their events to the lake again instead of dropping them as duplicates.
_ORIGIN_KEY = "_origin"
_STATUS_EVENTS_KEY = "_status_events"
#: The store's width of conversions.visitor_id; longer anonymous ids stay in `data` only.
_MAX_STORED_VISITOR_CHARS = 64
#: Attributes a conversion inherits from the click it is attributed to.
_FROM_CLICK = (
    "campaign_id", "publisher_id", "advertiser_id", "offer_id", "link_id", "channel", "creative",
    "landing_page", *SUB_FIELDS, *UTM_FIELDS,
)  # fmt: skip
_ENRICHED_TYPES = frozenset(
    {EventType.CLICK, EventType.IMPRESSION, EventType.PAGEVIEW, EventType.TRACK}
)
#: Status changes a later postback may make; a refund is final.
_STATUS_CHANGES = {
    ConversionStatus.PENDING: {
        ConversionStatus.APPROVED,
        ConversionStatus.REJECTED,
        ConversionStatus.REFUNDED,
    },
    ConversionStatus.APPROVED: {ConversionStatus.REJECTED, ConversionStatus.REFUNDED},
    ConversionStatus.REJECTED: {ConversionStatus.APPROVED},
    ConversionStatus.OVER_CAP: {ConversionStatus.REJECTED, ConversionStatus.REFUNDED},
    ConversionStatus.REFUNDED: set(),
}


@dataclass
class BatchResult:
    """What one batch did."""

    read: int = 0
    written: int = 0
    drops: dict[str, int] = field(default_factory=dict)

    def drop(self, reason: DropReason) -> None:
        self.drops[reason.value] = self.drops.get(reason.value, 0) + 1


class Processor:
    """Tails the write-ahead log of every tracker and commits batches to the lake and store."""

    def __init__(
        self,
        container: Container,
        *,
        batch_records: int = DEFAULT_BATCH_RECORDS,
        count: Callable[[str, DropReason | None], None] = count_event,
    ) -> None:
        self.container = container
        self.batch_records = batch_records
        self.count = count
        settings = container.settings
        wal_directory(settings).mkdir(parents=True, exist_ok=True)
        self.reader = WalReader(wal_directory(settings))
        self.lake = LakeWriter(lake_directory(settings))
        self.marker = lake_directory(settings) / "_pending_batch.json"
        self.config = ConfigCache(container.engine, settings.config_cache_ttl_ms)
        self.rollups = RollupKeeper(lake_directory(settings), settings.rollup_interval_seconds)
        self.rollups.touch_unbuilt()
        self._origins: dict[str, str] = {}
        self.recover()
        self.recent = RecentEventIds()
        since_ms = _now_ms(container) - DEDUPE_WINDOW_MS
        for event_id, ts_ms in event_ids_since(self.lake.root, since_ms, _REPEATABLE_ID_PREFIX):
            self.recent.add(event_id, ts_ms)

    def recover(self) -> None:
        """Undo the outputs of a batch that crashed before its checkpoint was saved."""
        if not self.marker.exists():
            return
        pending = json.loads(self.marker.read_text(encoding="utf-8"))
        committed = self.reader.load_checkpoint().to_json() == pending["checkpoint"]
        if not committed:
            for name in pending["files"]:
                Path(name).unlink(missing_ok=True)
                Path(name).with_suffix(".parquet.tmp").unlink(missing_ok=True)
            logger.warning("redoing batch %s that did not commit", pending["batch_id"])
        self.marker.unlink()

    def process_batch(self) -> BatchResult:
        """Read, process and commit one batch; an empty result means the log is drained."""
        checkpoint = self.reader.load_checkpoint()
        batch = self.reader.read_batch(checkpoint, max_records=self.batch_records)
        result = BatchResult(read=len(batch.records))
        if not batch.records:
            if batch.finished_segments:
                self.reader.save_checkpoint(batch.checkpoint)
            return result
        self.config.refresh()
        events = []
        origins: dict[str, str] = {}
        for record in batch.records:
            try:
                event = decode_event(record.payload)
            except (ValueError, TypeError):
                result.drop(DropReason.MALFORMED)
                self.count("unknown", DropReason.MALFORMED)
                continue
            events.append(event)
            origins.setdefault(event.event_id, f"{record.segment}:{record.offset_after}")
        events = self._dedupe_in_batch(events, result)
        self._origins = origins
        for event in events:
            self._enrich(event)
        kept = self._write_store(events, result)
        batch_id = f"b{uuid.uuid4().hex}"
        files = self.lake.planned_files(batch_id, kept)
        self._write_marker(batch_id, files, batch.checkpoint)
        self.lake.write(batch_id, kept)
        self.reader.save_checkpoint(batch.checkpoint)
        self.marker.unlink()
        self.rollups.touch(dates_of_files(files))
        # Only now, with the batch committed: a batch that fails is redone from scratch.
        now_ms = _now_ms(self.container)
        for event in kept:
            if _repeatable(event):
                self.recent.add(event.event_id, now_ms)
        result.written = len(kept)
        return result

    def drain(self) -> int:
        """Process batches until the log is empty; returns events written."""
        total = 0
        while True:
            result = self.process_batch()
            total += result.written
            if result.read == 0:
                self.rollups.build_due(force=True)
                return total

    def run(self, stop: threading.Event, idle_seconds: float = 0.2) -> None:
        """Process until `stop` is set, sleeping briefly when there is nothing to read."""
        while not stop.is_set():
            try:
                result = self.process_batch()
            except Exception:
                logger.exception("batch failed; retrying after a pause")
                stop.wait(1.0)
                self.recover()
                continue
            self._keep_rollups()
            if result.read == 0:
                self.reader.delete_consumed()
                stop.wait(idle_seconds)

    def _keep_rollups(self) -> None:
        """Rebuild the rollups that are due (`rollup_interval_seconds` after the last build).

        A failed rebuild costs reports only speed (they read those dates' raw events), so
        it is logged and tried again later, never allowed to stop the processor.
        """
        try:
            self.rollups.build_due()
        except Exception:
            logger.exception("rebuilding report rollups failed; retrying later")

    def _write_marker(self, batch_id: str, files: list[Path], checkpoint: Checkpoint) -> None:
        temporary = self.marker.with_suffix(".tmp")
        temporary.write_text(
            json.dumps(
                {
                    "batch_id": batch_id,
                    "files": [str(f) for f in files],
                    "checkpoint": checkpoint.to_json(),
                }
            ),
            encoding="utf-8",
        )
        with open(temporary, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, self.marker)

    def _dedupe_in_batch(
        self, events: list[TrackedEvent], result: BatchResult
    ) -> list[TrackedEvent]:
        seen: set[str] = set()
        unique = []
        for event in events:
            if event.event_id in seen or (_repeatable(event) and event.event_id in self.recent):
                result.drop(DropReason.DUPLICATE)
                self.count(event.type, DropReason.DUPLICATE)
                continue
            seen.add(event.event_id)
            unique.append(event)
        return unique

    def _enrich(self, event: TrackedEvent) -> None:
        if event.user_agent and event.type in _ENRICHED_TYPES:
            agent = parse_user_agent(event.user_agent)
            event.device, event.os, event.browser = agent.device, agent.os, agent.browser
        # Events from the event API without an agent were sent by a server, not by a bot.
        server_side = event.source == "segment" and not event.user_agent
        if event.type in _ENRICHED_TYPES and not event.is_bot and not server_side:
            reason = bot_reason(event.user_agent)
            if reason is not None:
                event.is_bot, event.bot_reason = True, reason
        if event.is_bot:
            self.count(event.type, DropReason.BOT)

    def _write_store(self, events: list[TrackedEvent], result: BatchResult) -> list[TrackedEvent]:
        """Clicks and identities into the store, conversions attributed; returns lake events."""
        kept: list[TrackedEvent] = []
        for event in events:
            if event.type in _PRICED_TRAFFIC:
                self._price(event)
        with transaction(self.container.engine) as conn:
            click_rows = [
                _click_row(event)
                for event in events
                if event.type == EventType.CLICK and not event.drop_reason
            ]
            insert_ignoring_duplicates(conn, clicks, click_rows)
            store = _batch_conversions(conn, events)
            for event in events:
                if event.type == EventType.IDENTIFY and event.anonymous_id and event.customer_id:
                    upsert_identity(
                        conn,
                        event.workspace_id,
                        event.anonymous_id,
                        event.customer_id,
                        _moment(event),
                    )
                if event.type == EventType.CONVERSION:
                    processed = self._conversion(store, event, result)
                    if processed is not None:
                        kept.append(processed)
                else:
                    kept.append(event)
            store.flush()  # the billing step reads the conversions this batch stored
            # Billing (issue 6): charge, reserve budgets/caps, approve/reverse, queue postbacks.
            post_billable_events(conn, kept, self.config.snapshot, self.container.clock.now())
        return kept

    def _conversion(
        self, store: BatchConversions, event: TrackedEvent, result: BatchResult
    ) -> TrackedEvent | None:
        stored = store.by_event(event.event_id)
        if stored is not None:
            if stored["data"].get(_ORIGIN_KEY) == self._origins.get(event.event_id):
                # This very record was stored by a batch that crashed before its checkpoint.
                return _event_of(stored["data"])
            result.drop(DropReason.DUPLICATE)
            self.count(event.type, DropReason.DUPLICATE)
            return None
        click = store.click(event.click_id) if event.click_id else None
        if not event.workspace_id:
            if click is None:
                result.drop(DropReason.MALFORMED)
                self.count(event.type, DropReason.MALFORMED)
                logger.info("conversion %s names no workspace and an unknown click", event.event_id)
                return None
            event.workspace_id = click["workspace_id"]
        if click is not None and click["workspace_id"] != event.workspace_id:
            click = None  # another workspace's click never credits this one
        if not event.goal_id:
            goal = self.config.snapshot.goals_by_event.get(
                (event.workspace_id, event.goal_key or "")
            )
            if goal is None:
                result.drop(DropReason.UNKNOWN_GOAL)
                self.count(event.type, DropReason.UNKNOWN_GOAL)
                return None
            event.goal_id, event.goal_key = goal.goal_id, goal.key
            event.currency = event.currency or goal.currency
            event.value = event.value or goal.default_value
        if click is None:
            click = self._click_of_visitor(store.conn, event)
        if event.txid:
            existing = store.by_txid(event.workspace_id, event.txid)
            if existing is not None:
                return self._status_change(store, existing, event, result)
        if click is not None:
            event.click_id = click["click_id"]
            data = click["data"]
            for name in _FROM_CLICK:
                if data.get(name) is not None:
                    setattr(event, name, data[name])
            event.visitor_id = event.visitor_id or click["visitor_id"]
            event.click_ts_ms = int(utc(click["ts"]).timestamp() * 1000)
        self._price(event)
        moment = _moment(event)
        store.insert(
            dict(
                id=new_id("cnv", now_ms=event.ts_ms),
                workspace_id=event.workspace_id,
                event_id=event.event_id,
                txid=event.txid,
                ts=moment,
                goal_id=event.goal_id,
                goal_key=event.goal_key or "",
                click_id=event.click_id if click is not None else None,
                campaign_id=event.campaign_id,
                publisher_id=event.publisher_id,
                advertiser_id=event.advertiser_id,
                visitor_id=event.visitor_id
                if len(event.visitor_id or "") <= _MAX_STORED_VISITOR_CHARS
                else None,
                customer_id=event.customer_id,
                value=Decimal(event.value) if event.value else None,
                currency=event.currency,
                status=event.status or ConversionStatus.PENDING.value,
                source=event.source or "api",
                is_bot=event.is_bot,
                updated_at=moment,
                data={
                    **json.loads(event.to_json()),
                    _ORIGIN_KEY: self._origins.get(event.event_id),
                },
            )
        )
        return event

    def _click_of_visitor(self, conn: Any, event: TrackedEvent) -> dict[str, Any] | None:
        visitors = [v for v in (event.visitor_id, event.anonymous_id) if v]
        if event.customer_id:
            visitors += visitors_of_customer(conn, event.workspace_id, event.customer_id)
        if not visitors:
            return None
        lookback_days = self.config.snapshot.click_lookback_days.get(event.workspace_id, 30)
        since = _moment(event) - timedelta(days=lookback_days)
        candidates = [
            c
            for c in clicks_of_visitors(conn, event.workspace_id, sorted(set(visitors)), since)
            if utc(c["ts"]) <= _moment(event)
        ]
        return candidates[-1] if candidates else None

    def _price(self, event: TrackedEvent) -> None:
        """Stamp what the advertiser pays and the publisher earns for a valid billable event."""
        campaign = self.config.snapshot.campaigns.get(event.campaign_id or "")
        if campaign is None or event.is_bot or event.drop_reason:
            return
        if event.type == EventType.CONVERSION and event.goal_id not in campaign.goal_ids:
            return  # the campaign does not buy this goal
        value = None
        if event.type == EventType.CONVERSION:
            value = Money.of(event.value or "0", event.currency or campaign.currency)
        try:
            quote = quote_event(
                campaign.pricing,
                event=_BILLABLE_OF_TYPE[EventType(event.type)],
                currency=campaign.currency,
                at=_moment(event),
                goal_id=event.goal_id,
                publisher_id=event.publisher_id,
                value=value,
                allow_negative_margin=campaign.allow_negative_margin,
            )
        except NotFoundError:
            return  # no price for this event kind: it costs nothing
        except PerfmarkError as exc:
            logger.warning("event %s not priced: %s", event.event_id, exc.message)
            return
        event.cost = str(quote.cost.amount)
        event.payout = str(quote.payout.amount)
        event.billing_currency = campaign.currency

    def _status_change(
        self,
        store: BatchConversions,
        existing: dict[str, Any],
        event: TrackedEvent,
        result: BatchResult,
    ) -> TrackedEvent | None:
        origin = self._origins.get(event.event_id)
        applied: dict[str, list[str | None]] = existing["data"].get(_STATUS_EVENTS_KEY, {})
        if event.event_id in applied:
            applied_origin, previous = applied[event.event_id]
            if applied_origin == origin and previous is not None:
                # Applied by a batch that crashed before its checkpoint: write it again.
                return _status_event(existing, event, previous, event.status or "")
            result.drop(DropReason.DUPLICATE)  # a replayed status postback
            self.count(event.type, DropReason.DUPLICATE)
            return None
        current = ConversionStatus(existing["status"])
        wanted = ConversionStatus(event.status or current)
        if wanted == current or wanted not in _STATUS_CHANGES[current]:
            result.drop(DropReason.DUPLICATE)
            self.count(event.type, DropReason.DUPLICATE)
            return None
        data = {**existing["data"], _STATUS_EVENTS_KEY: {
            **applied, event.event_id: [origin, current.value]
        }}  # fmt: skip
        store.set_status(existing, wanted.value, _moment(event), data)
        return _status_event(existing, event, current.value, wanted.value)


_PRICED_TRAFFIC = frozenset({EventType.CLICK, EventType.IMPRESSION})
_BILLABLE_OF_TYPE = {
    EventType.CLICK: BillableEvent.CLICK,
    EventType.IMPRESSION: BillableEvent.IMPRESSION,
    EventType.CONVERSION: BillableEvent.CONVERSION,
}


def _moment(event: TrackedEvent) -> datetime:
    return datetime.fromtimestamp(event.ts_ms / 1000, tz=UTC)


def _now_ms(container: Container) -> int:
    return int(container.clock.now().timestamp() * 1000)


def _repeatable(event: TrackedEvent) -> bool:
    """Whether a client may resend this event under the same id (conversions: see the store)."""
    return event.event_id.startswith(_REPEATABLE_ID_PREFIX) and event.type not in (
        EventType.CONVERSION,
        EventType.CONVERSION_STATUS,
    )


def _event_of(data: dict[str, Any]) -> TrackedEvent:
    """The event a conversion row was stored from (the processor's own keys left out)."""
    return TrackedEvent(**{key: value for key, value in data.items() if key in EVENT_FIELDS})


def _status_event(
    existing: dict[str, Any], event: TrackedEvent, previous: str, status: str
) -> TrackedEvent:
    """The lake event of a status change of the stored conversion `existing`."""
    change = _event_of({**existing["data"], "event_id": event.event_id})
    change.type = EventType.CONVERSION_STATUS.value
    change.ts_ms = event.ts_ms
    change.status = status
    change.previous_status = previous
    change.properties = {"conversion_event_id": existing["event_id"]}
    return change


def _batch_conversions(conn: Any, events: list[TrackedEvent]) -> BatchConversions:
    """The batch's view of the conversions and clicks its conversions name, read up front."""
    store = BatchConversions(conn)
    wanted = [event for event in events if event.type == EventType.CONVERSION]
    if not wanted:
        return store
    store.prefetch(
        [event.event_id for event in wanted],
        [event.click_id for event in wanted if event.click_id],
        [],
    )
    txids = []
    for event in wanted:
        # The workspace a conversion's txid is looked up in: its own, else its click's.
        click = store.click(event.click_id) if event.click_id else None
        workspace_id = event.workspace_id or (click["workspace_id"] if click else "")
        if event.txid and workspace_id:
            txids.append((workspace_id, event.txid))
    store.prefetch([], [], txids)
    return store


def _click_row(event: TrackedEvent) -> dict[str, Any]:
    return {
        "click_id": event.click_id or event.event_id,
        "workspace_id": event.workspace_id,
        "ts": _moment(event),
        "campaign_id": event.campaign_id,
        "publisher_id": event.publisher_id,
        "advertiser_id": event.advertiser_id,
        "link_id": event.link_id,
        "visitor_id": event.visitor_id,
        "is_bot": event.is_bot,
        "data": event.to_data(),  # json.loads(event.to_json()) without the round trip
    }
