"""Tracked events: the one flat record every endpoint appends to the log and the lake stores."""

from __future__ import annotations

import json
import operator
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any

__all__ = [
    "ConversionStatus",
    "DropReason",
    "EVENT_FIELDS",
    "EventType",
    "TrackedEvent",
    "decode_event",
    "event_json_members",
]


class EventType(StrEnum):
    """What happened."""

    CLICK = "click"
    IMPRESSION = "impression"
    PAGEVIEW = "pageview"
    CONVERSION = "conversion"
    CONVERSION_STATUS = "conversion_status"  #: a later status change of a conversion
    IDENTIFY = "identify"
    TRACK = "track"  #: a custom event that maps to no goal


class ConversionStatus(StrEnum):
    """Where a conversion stands."""

    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    REFUNDED = "refunded"
    OVER_CAP = "over_cap"  #: recorded, not billable: a cap or budget was exhausted


class DropReason(StrEnum):
    """Why the pipeline did not count an event (each is a counter at /metrics)."""

    BOT = "bot"
    UNKNOWN_LINK = "unknown_link"
    PAUSED_CAMPAIGN = "paused_campaign"
    NOT_TARGETED = "not_targeted"
    BAD_SIGNATURE = "bad_signature"
    DUPLICATE = "duplicate"
    MALFORMED = "malformed"
    UNKNOWN_GOAL = "unknown_goal"
    CAPPED = "capped"


@dataclass(slots=True)
class TrackedEvent:
    """One event, flat, with every dimension reports and attribution need.

    Money is carried as a decimal string with its currency, never a float: `value` in
    `currency` (what the conversion is worth), `cost` (what the advertiser is charged) and
    `payout` (what the publisher earns) in the campaign's `billing_currency`. Times are
    milliseconds since the epoch, UTC; a conversion carries its click's time in
    `click_ts_ms`, and a status change its `previous_status`.
    """

    event_id: str
    type: str
    ts_ms: int
    workspace_id: str
    campaign_id: str | None = None
    publisher_id: str | None = None
    advertiser_id: str | None = None
    offer_id: str | None = None
    link_id: str | None = None
    channel: str | None = None
    creative: str | None = None
    landing_page: str | None = None
    click_id: str | None = None
    visitor_id: str | None = None
    anonymous_id: str | None = None
    customer_id: str | None = None
    goal_id: str | None = None
    goal_key: str | None = None
    name: str | None = None
    value: str | None = None
    currency: str | None = None
    txid: str | None = None
    status: str | None = None
    sub1: str | None = None
    sub2: str | None = None
    sub3: str | None = None
    sub4: str | None = None
    sub5: str | None = None
    utm_source: str | None = None
    utm_medium: str | None = None
    utm_campaign: str | None = None
    utm_term: str | None = None
    utm_content: str | None = None
    external_ids: dict[str, str] = field(default_factory=dict)
    url: str | None = None
    referrer: str | None = None
    ip: str | None = None
    user_agent: str | None = None
    language: str | None = None
    country: str | None = None
    device: str | None = None
    os: str | None = None
    browser: str | None = None
    is_bot: bool = False
    bot_reason: str | None = None
    drop_reason: str | None = None
    source: str | None = None
    properties: dict[str, Any] = field(default_factory=dict)
    cost: str | None = None
    payout: str | None = None
    billing_currency: str | None = None
    previous_status: str | None = None
    click_ts_ms: int | None = None

    def to_json(self) -> bytes:
        """Compact JSON with the empty fields left out (the log stays small)."""
        return _ENCODER.encode(self.to_data()).encode()

    def to_data(self) -> dict[str, Any]:
        """The fields to_json() writes, as a dict: what json.loads() of to_json() gives.

        For an event decoded from JSON it is equal without the round trip; dict values
        (external_ids, properties) are the event's own objects, not copies.
        """
        # One C-level attrgetter call, no `{}` built per comparison, and a reused encoder
        # in to_json measured a third faster than a getattr loop and json.dumps.
        return {
            key: value
            for key, value in zip(EVENT_FIELDS, _field_values(self), strict=True)
            if value is not None and value is not False and value != _NO_ITEMS
        }


#: Every field name, in declaration order (the lake's column order).
EVENT_FIELDS = tuple(item.name for item in fields(TrackedEvent))
_KNOWN = frozenset(EVENT_FIELDS)
_field_values = operator.attrgetter(*EVENT_FIELDS)
_NO_ITEMS: dict[str, Any] = {}  # compared against, never filled
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def event_json_members(**values: Any) -> str:
    """The members `,"name":value` that to_json() writes for these fields, in its order.

    A piece of a record (empty fields left out, the same encoder), so that a writer can
    pre-build the constant part of many records: the click path builds each link's once.
    """
    unknown = values.keys() - _KNOWN
    if unknown:
        raise ValueError(f"{sorted(unknown)} are not TrackedEvent fields; see EVENT_FIELDS")
    data = {
        key: value
        for key in EVENT_FIELDS
        if key in values
        and (value := values[key]) is not None
        and value is not False
        and value != _NO_ITEMS
    }
    return "".join("," + _ENCODER.encode({key: value})[1:-1] for key, value in data.items())


def decode_event(payload: bytes) -> TrackedEvent:
    """Rebuild an event from its JSON; unknown keys (from a newer version) are ignored."""
    data = json.loads(payload)
    if _KNOWN.issuperset(data.keys()):  # the usual case: nothing to leave out
        return TrackedEvent(**data)
    return TrackedEvent(**{key: value for key, value in data.items() if key in _KNOWN})
