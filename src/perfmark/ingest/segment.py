"""The Segment-compatible event API: track, identify, page and batch, with write-key auth.

Follows Segment's HTTP tracking API: a write key as the Basic-auth user name (or
`writeKey` in the body), `userId` or `anonymousId` on every message, `messageId` for
deduplication of retries, answers `{"success": true}`. `track` events whose name is a
goal key or one of a goal's event names become conversions; `identify` links an anonymous
id to a customer id, which joins a customer's journeys across devices.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from perfmark.adapters.wal_writer import WalWriter
from perfmark.clock import Clock
from perfmark.domain.events import ConversionStatus, DropReason, EventType, TrackedEvent
from perfmark.ids import new_id
from perfmark.ingest.conversions import MAX_TXID_CHARS, MAX_VALUE, ConversionRejected
from perfmark.ingest.hits import Hit
from perfmark.ingest.visitor import anonymize_ip, primary_language
from perfmark.money import is_currency
from perfmark.services.tracking_config import ConfigSnapshot
from perfmark.settings import Settings

__all__ = ["MAX_BATCH_MESSAGES", "MAX_MESSAGE_BYTES", "SegmentTracker", "write_key_from"]

MAX_MESSAGE_BYTES = 32 * 1024
MAX_BATCH_MESSAGES = 2500
MAX_ID_CHARS = 128
#: Client timestamps outside this range are replaced by the time of receipt.
CLIENT_CLOCK_PAST = timedelta(days=30)
CLIENT_CLOCK_FUTURE = timedelta(minutes=5)
_TYPES = {"track", "identify", "page", "screen", "alias", "group"}
_VALUE_KEYS = ("revenue", "value", "total")
_TXID_KEYS = ("order_id", "orderId", "transaction_id", "txid")
_UTM_OF_CAMPAIGN = {
    "source": "utm_source",
    "medium": "utm_medium",
    "name": "utm_campaign",
    "term": "utm_term",
    "content": "utm_content",
}


def write_key_from(authorization: str | None, body: Mapping[str, Any] | None) -> str | None:
    """The write key from `Authorization: Basic base64(key:)` or the body's writeKey."""
    if authorization and authorization.lower().startswith("basic "):
        try:
            decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            return None
        return decoded.split(":", 1)[0] or None
    if body is not None and isinstance(body.get("writeKey"), str):
        return str(body["writeKey"])
    return None


def _reject(message: str, field: str | None = None) -> ConversionRejected:
    return ConversionRejected(DropReason.MALFORMED, 400, message, field)


def _text(message: Mapping[str, Any], key: str, limit: int = MAX_ID_CHARS) -> str | None:
    value = message.get(key)
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise _reject(f"{key} must be a string", key)
    if len(value) > limit:
        raise _reject(f"{key} is longer than {limit} characters", key)
    return value or None


def _mapping(message: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = message.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _reject(f"{key} must be an object", key)
    return value


class SegmentTracker:
    """Turns Segment-spec messages into events in the write-ahead log."""

    def __init__(
        self,
        settings: Settings,
        snapshot: Callable[[], ConfigSnapshot],
        wal: WalWriter,
        clock: Clock,
        count: Callable[[str, DropReason | None], None],
    ) -> None:
        self.settings = settings
        self.snapshot = snapshot
        self.wal = wal
        self.clock = clock
        self.count = count

    def workspace_for(self, write_key: str | None) -> str:
        """The workspace of a write key, or a 401 rejection."""
        workspace_id = self.snapshot().write_keys.get(write_key or "")
        if workspace_id is None:
            self.count("segment", DropReason.BAD_SIGNATURE)
            raise ConversionRejected(
                DropReason.BAD_SIGNATURE, 401,
                "unknown or missing write key: send it as the Basic-auth user name "
                "(or writeKey in the body); find it at GET /api/workspace/write-key",
                "writeKey",
            )  # fmt: skip
        return workspace_id

    def ingest(self, workspace_id: str, messages: list[Any], kind: str | None, hit: Hit) -> int:
        """Validate every message, then log them all at once; a bad one rejects the batch."""
        if len(messages) > MAX_BATCH_MESSAGES:
            raise _reject(f"a batch holds at most {MAX_BATCH_MESSAGES} messages", "batch")
        snapshot = self.snapshot()
        events = []
        for index, message in enumerate(messages):
            if not isinstance(message, dict):
                raise _reject(f"batch[{index}] must be an object", f"batch[{index}]")
            try:
                events.append(self._event(snapshot, workspace_id, message, kind, hit))
            except ConversionRejected as exc:
                self.count("segment", DropReason.MALFORMED)
                where = f"batch[{index}]." if kind is None else ""
                raise ConversionRejected(
                    exc.reason, exc.status, f"{where}{exc.message}", f"{where}{exc.field or ''}"
                ) from None
        self.wal.append_many(event.to_json() for event in events)
        for event in events:
            self.count(event.type, None)
        return len(events)

    def _event(
        self,
        snapshot: ConfigSnapshot,
        workspace_id: str,
        message: dict[str, Any],
        kind: str | None,
        hit: Hit,
    ) -> TrackedEvent:
        message_type = kind or _text(message, "type")
        if message_type not in _TYPES:
            raise _reject(
                f"type {message_type!r} is not one of {', '.join(sorted(_TYPES))}", "type"
            )
        user_id = _text(message, "userId")
        anonymous_id = _text(message, "anonymousId")
        if not user_id and not anonymous_id:
            raise _reject("every message needs userId or anonymousId", "userId")
        context = _mapping(message, "context")
        properties = _mapping(message, "properties")
        now = self.clock.now()
        ts_ms = int(self._timestamp(message, now).timestamp() * 1000)
        message_id = _text(message, "messageId")
        # Segment retries resend the same messageId: the same id means the same event.
        event_id = (
            "evt_m" + hashlib.sha256(f"{workspace_id}\n{message_id}".encode()).hexdigest()[:26]
            if message_id
            else new_id("evt", now_ms=ts_ms)
        )
        page = _mapping(context, "page")
        url = _text(properties, "url", 2048) or _text(page, "url", 2048)
        url_params = _query_params(url)  # parsed once, not once per parameter read
        event = TrackedEvent(
            event_id=event_id,
            type=EventType.TRACK.value,
            ts_ms=ts_ms,
            workspace_id=workspace_id,
            visitor_id=anonymous_id,
            anonymous_id=anonymous_id,
            customer_id=user_id,
            click_id=_text(properties, "click_id", 64) or _text(context, "click_id", 64)
            or url_params.get(self.settings.click_id_param),
            url=url,
            referrer=_text(properties, "referrer", 2048) or _text(page, "referrer", 2048) or hit.referrer,
            ip=anonymize_ip(_text(context, "ip", 64) or hit.ip, self.settings.ip_anonymization),
            user_agent=_visitor_agent(context, hit),
            language=primary_language(_text(context, "locale", 64)) or primary_language(hit.accept_language),
            country=hit.country,
            source="segment",
        )  # fmt: skip
        campaign = _mapping(context, "campaign")
        for key, column in _UTM_OF_CAMPAIGN.items():
            value = _text(campaign, key, 500) or url_params.get(column)
            if value:
                setattr(event, column, value)
        if message_type == "identify":
            event.type = EventType.IDENTIFY.value
            if not (user_id and anonymous_id):
                # Without both ids there is nothing to link; keep the traits as a plain event.
                event.type = EventType.TRACK.value
                event.name = "identify"
            event.properties = _mapping(message, "traits")
        elif message_type in ("page", "screen"):
            event.type = EventType.PAGEVIEW.value
            event.name = _text(message, "name", 500)
            event.properties = properties
        elif message_type == "track":
            name = _text(message, "event", 500)
            if not name:
                raise _reject("a track message needs event (its name)", "event")
            event.name = name
            event.properties = properties
            goal = snapshot.goals_by_event.get((workspace_id, name))
            if goal is not None:
                self._as_conversion(
                    event, goal.goal_id, goal.key, goal.currency, goal.default_value, properties
                )
        else:
            event.name = message_type
            event.properties = {"message": {k: v for k, v in message.items() if k != "writeKey"}}
        return event

    def _as_conversion(
        self,
        event: TrackedEvent,
        goal_id: str,
        goal_key: str,
        goal_currency: str,
        default_value: str,
        properties: Mapping[str, Any],
    ) -> None:
        event.type = EventType.CONVERSION.value
        event.goal_id, event.goal_key = goal_id, goal_key
        event.status = ConversionStatus.PENDING.value
        raw_value = next(
            (properties[key] for key in _VALUE_KEYS if properties.get(key) is not None), None
        )
        if raw_value is None:
            event.value = default_value
        else:
            if isinstance(raw_value, bool) or not isinstance(raw_value, int | float | str):
                raise _reject("properties.revenue must be a number", "properties.revenue")
            try:
                value = Decimal(str(raw_value))
            except InvalidOperation:
                raise _reject(
                    f"properties.revenue {raw_value!r} is not a number", "properties.revenue"
                ) from None
            if not value.is_finite() or not 0 <= value <= MAX_VALUE:
                raise _reject(
                    f"properties.revenue {raw_value!r} is out of range", "properties.revenue"
                )
            event.value = str(value)
        currency = str(properties.get("currency") or goal_currency).upper()
        if not is_currency(currency):
            raise _reject(
                f"properties.currency {currency!r} is not an ISO 4217 code", "properties.currency"
            )
        event.currency = currency
        txid = next((str(properties[key]) for key in _TXID_KEYS if properties.get(key)), None)
        if txid is not None and len(txid) > MAX_TXID_CHARS:
            raise _reject(
                f"properties.order_id is longer than {MAX_TXID_CHARS} characters",
                "properties.order_id",
            )
        event.txid = txid

    def _timestamp(self, message: Mapping[str, Any], now: datetime) -> datetime:
        raw = message.get("timestamp")
        if not isinstance(raw, str):
            return now
        try:
            parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            return now
        if (
            parsed.tzinfo is None
            or not now - CLIENT_CLOCK_PAST <= parsed <= now + CLIENT_CLOCK_FUTURE
        ):
            return now
        return parsed


def _visitor_agent(context: Mapping[str, Any], hit: Hit) -> str | None:
    """The visitor's user agent: context.userAgent, else the request's own when it is a beacon.

    A Segment library (context.library) sends from a server, whose HTTP agent (Ruby, Go,
    Java clients) is not the visitor's and would be flagged as a crawler.
    """
    agent = _text(context, "userAgent", 1024)
    if agent or context.get("library"):
        return agent
    return hit.user_agent


def _query_params(url: str | None) -> dict[str, str]:
    """The first non-empty value of each parameter of the URL's query, cut to 500 characters."""
    if not url or "?" not in url:
        return {}
    try:
        query = urlsplit(url).query
    except ValueError:
        return {}
    params: dict[str, str] = {}
    for key, value in parse_qsl(query):
        if value and key not in params:
            params[key] = value[:500]
    return params
