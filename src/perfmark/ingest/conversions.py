"""Conversions from the pixel and server-to-server postbacks: authenticate, parse, log.

Postbacks authenticate with the advertiser's secret token, or with an HMAC-SHA256
signature over a timestamp and the request (older than postback_max_age_seconds is
refused); a signed request's event id derives from its signature, so a captured request
replayed later is deduplicated by the processor even without a transaction id.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import NoReturn

from perfmark.adapters.wal_writer import WalWriter
from perfmark.clock import Clock
from perfmark.domain.events import ConversionStatus, DropReason, EventType, TrackedEvent
from perfmark.ids import new_id
from perfmark.ingest.hits import Hit
from perfmark.ingest.visitor import VISITOR_COOKIE, anonymize_ip
from perfmark.money import is_currency
from perfmark.services.tracking_config import AdvertiserAuth, ConfigSnapshot, token_digest
from perfmark.settings import Settings

__all__ = [
    "CLICK_COOKIE",
    "ConversionRejected",
    "ConversionTracker",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "sign_postback",
]

CLICK_COOKIE = "pm_clid"
SIGNATURE_HEADER = "x-perfmark-signature"
TIMESTAMP_HEADER = "x-perfmark-timestamp"
ADVERTISER_HEADER = "x-perfmark-advertiser"
MAX_TXID_CHARS = 128
MAX_VALUE = Decimal("1e12")
_INBOUND_STATUSES = frozenset(
    {
        ConversionStatus.PENDING,
        ConversionStatus.APPROVED,
        ConversionStatus.REJECTED,
        ConversionStatus.REFUNDED,
    }
)


class ConversionRejected(Exception):
    """A conversion request that cannot be accepted: a drop reason, an HTTP status and why."""

    def __init__(
        self, reason: DropReason, status: int, message: str, field: str | None = None
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.status = status
        self.message = message
        self.field = field


@dataclass(frozen=True)
class _Fields:
    click_id: str | None
    goal: str | None
    value: str | None
    currency: str | None
    txid: str | None
    status: str | None


def sign_postback(secret: str, timestamp: int, query: str, body: bytes = b"") -> str:
    """The signature a sender computes: hex HMAC-SHA256 of "<ts>\\n<query>\\n<body>".

    `query` is the query string exactly as sent, with only the `sig` parameter removed
    (`ts` and `adv` stay in it when they travel as parameters).
    """
    message = f"{timestamp}\n{query}\n".encode() + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def _strip_params(query: str, names: frozenset[str]) -> str:
    return "&".join(
        part for part in query.split("&") if part and part.split("=", 1)[0] not in names
    )


class ConversionTracker:
    """Accepts conversion pixels and postbacks into the write-ahead log."""

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

    def pixel(self, hit: Hit) -> str:
        """A conversion pixel; returns the event id. The click comes from a parameter or cookie."""
        snapshot = self.snapshot()
        workspace_id = snapshot.write_keys.get(hit.param("wk") or "", "")
        click_id = (
            hit.param("click_id")
            or hit.param(self.settings.click_id_param)
            or hit.cookies.get(CLICK_COOKIE)
        )
        fields = _Fields(
            click_id, hit.param("goal"), hit.param("value"), hit.param("currency"),
            hit.param("txid"), None,
        )  # fmt: skip
        if not workspace_id and not click_id:
            self._reject(
                DropReason.MALFORMED, 400,
                "a conversion pixel needs the click id (click_id or pm_clid parameter, or the "
                "pm_clid cookie) or the workspace's write key (wk)", "click_id",
            )  # fmt: skip
        event = self._event(snapshot, workspace_id, fields, hit, "pixel", None)
        self._append(event)
        return event.event_id

    def postback(self, hit: Hit, raw_query: str, body: bytes, headers: Mapping[str, str]) -> str:
        """A server-to-server postback; returns the event id of the logged conversion."""
        snapshot = self.snapshot()
        advertiser, signature = self._authenticate(snapshot, hit, raw_query, body, headers)
        mapping = advertiser.param_map

        def read(name: str, *aliases: str) -> str | None:
            mapped = mapping.get(name)
            if mapped and hit.param(mapped):
                return hit.param(mapped)
            for alias in (name, *aliases):
                if hit.param(alias):
                    return hit.param(alias)
            return None

        fields = _Fields(
            read("click_id", "clickid", self.settings.click_id_param),
            read("goal"), read("value"), read("currency"), read("txid", "transaction_id"),
            read("status"),
        )  # fmt: skip
        event_id = None
        if signature:
            # A replayed signed request gets the same event id and is dropped as a duplicate.
            event_id = "evt_s" + hashlib.sha256(signature.encode()).hexdigest()[:26]
        event = self._event(snapshot, advertiser.workspace_id, fields, hit, "postback", event_id)
        event.advertiser_id = advertiser.advertiser_id
        self._append(event)
        return event.event_id

    def _authenticate(
        self,
        snapshot: ConfigSnapshot,
        hit: Hit,
        raw_query: str,
        body: bytes,
        headers: Mapping[str, str],
    ) -> tuple[AdvertiserAuth, str | None]:
        token = hit.param("token")
        if token:
            found = snapshot.advertisers_by_token.get(token_digest(token))
            if found is None:
                self._reject(
                    DropReason.BAD_SIGNATURE,
                    401,
                    "the postback token is unknown; copy "
                    "the advertiser's token from /api/advertisers/<id>/secret",
                    "token",
                )
            return found, None
        signature = headers.get(SIGNATURE_HEADER) or hit.param("sig")
        timestamp_text = headers.get(TIMESTAMP_HEADER) or hit.param("ts")
        advertiser_id = headers.get(ADVERTISER_HEADER) or hit.param("adv")
        if not (signature and timestamp_text and advertiser_id):
            self._reject(
                DropReason.BAD_SIGNATURE, 401,
                "a postback needs token=<advertiser token>, or a signature: sig, ts and adv "
                "(or the X-Perfmark-Signature, X-Perfmark-Timestamp and X-Perfmark-Advertiser "
                "headers); see docs/tracking.md", "token",
            )  # fmt: skip
        advertiser = snapshot.advertisers.get(advertiser_id or "")
        try:
            timestamp = int(timestamp_text or "")
        except ValueError:
            self._reject(
                DropReason.BAD_SIGNATURE,
                401,
                f"ts {timestamp_text!r} is not a Unix time in seconds",
                "ts",
            )
        age = abs(self.clock.now().timestamp() - timestamp)
        if age > self.settings.postback_max_age_seconds:
            self._reject(
                DropReason.BAD_SIGNATURE, 401,
                f"the signature timestamp is {int(age)} s away from now; the limit is "
                f"{self.settings.postback_max_age_seconds} s: sign each request when you send it",
                "ts",
            )  # fmt: skip
        if advertiser is None:
            self._reject(
                DropReason.BAD_SIGNATURE,
                401,
                f"adv {advertiser_id!r} is not a known advertiser",
                "adv",
            )
        assert signature is not None
        signed_query = _strip_params(raw_query, frozenset({"sig"}))
        expected = sign_postback(advertiser.secret, timestamp, signed_query, body)
        if not hmac.compare_digest(expected, signature.lower()):
            self._reject(
                DropReason.BAD_SIGNATURE, 401,
                "the signature does not match: sign \"<ts>\\n<query without sig>\\n<body>\" with "
                "HMAC-SHA256 and the advertiser's secret, hex-encoded", "sig",
            )  # fmt: skip
        return advertiser, signature

    def _event(
        self,
        snapshot: ConfigSnapshot,
        workspace_id: str,
        fields: _Fields,
        hit: Hit,
        source: str,
        event_id: str | None,
    ) -> TrackedEvent:
        if not fields.goal:
            self._reject(
                DropReason.MALFORMED,
                400,
                "goal is required: the key of one of your goals, e.g. goal=sale",
                "goal",
            )
        goal = (
            snapshot.goals_by_event.get((workspace_id, fields.goal or "")) if workspace_id else None
        )
        if workspace_id and goal is None:
            self._reject(
                DropReason.UNKNOWN_GOAL, 422,
                f"goal {fields.goal!r} is not a goal of this workspace; use a goal key from /api/goals",
                "goal",
            )  # fmt: skip
        value = self._value(fields.value)
        currency = (fields.currency or "").upper() or (goal.currency if goal else None)
        if currency and not is_currency(currency):
            self._reject(
                DropReason.MALFORMED,
                400,
                f"currency {fields.currency!r} is not an ISO 4217 code such as USD",
                "currency",
            )
        if fields.txid and len(fields.txid) > MAX_TXID_CHARS:
            self._reject(
                DropReason.MALFORMED,
                400,
                f"txid is longer than {MAX_TXID_CHARS} characters",
                "txid",
            )
        status = (fields.status or ConversionStatus.PENDING.value).lower()
        if status not in _INBOUND_STATUSES:
            self._reject(
                DropReason.MALFORMED, 400,
                f"status {fields.status!r} is unknown; use pending, approved, rejected or refunded",
                "status",
            )  # fmt: skip
        if fields.click_id and len(fields.click_id) > 64:
            self._reject(
                DropReason.MALFORMED, 400, "click id is longer than 64 characters", "click_id"
            )
        now = self.clock.now()
        ts_ms = int(now.timestamp() * 1000)
        return TrackedEvent(
            event_id=event_id or new_id("cnv", now_ms=ts_ms),
            type=EventType.CONVERSION.value,
            ts_ms=ts_ms,
            workspace_id=workspace_id,
            click_id=fields.click_id,
            visitor_id=hit.cookies.get(VISITOR_COOKIE),
            goal_id=goal.goal_id if goal else None,
            goal_key=goal.key if goal else fields.goal,
            value=str(value) if value is not None else (goal.default_value if goal else None),
            currency=currency or None,
            txid=fields.txid,
            status=status,
            ip=anonymize_ip(hit.ip, self.settings.ip_anonymization),
            user_agent=hit.user_agent,
            referrer=hit.referrer,
            source=source,
        )

    def _value(self, text: str | None) -> Decimal | None:
        if text is None:
            return None
        try:
            value = Decimal(text)
        except InvalidOperation:
            self._reject(
                DropReason.MALFORMED,
                400,
                f"value {text[:40]!r} is not a number; send e.g. value=19.90",
                "value",
            )
        if not value.is_finite() or value < 0 or value > MAX_VALUE:
            self._reject(
                DropReason.MALFORMED,
                400,
                f"value {text[:40]!r} must be between 0 and {MAX_VALUE}",
                "value",
            )
        return value

    def _append(self, event: TrackedEvent) -> None:
        self.wal.append(event.to_json())
        self.count(EventType.CONVERSION, None)

    def _reject(
        self, reason: DropReason, status: int, message: str, field: str | None = None
    ) -> NoReturn:
        self.count(EventType.CONVERSION, reason)
        raise ConversionRejected(reason, status, message, field)
