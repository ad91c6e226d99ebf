"""Outbound postbacks: URL templates with macros, rendering, HMAC signatures, retry schedule.

Signature (header `X-Perfmark-Signature: v1=<hex>`, with `X-Perfmark-Timestamp: <unix s>`):
HMAC-SHA256 keyed by the publisher's secret over the bytes
`"<timestamp>\\n<METHOD>\\n<url>\\n"` (UTF-8) followed by the raw request body (empty for GET).
The receiver recomputes it and refuses timestamps older than its tolerance, so a captured
request cannot be replayed later.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from urllib.parse import quote, urlsplit

from perfmark.clock import utc
from perfmark.domain.rules import check_http_url, check_positive_int
from perfmark.errors import AuthenticationError, IllegalTransitionError, ValidationError
from perfmark.money import Money

__all__ = [
    "ALLOWED_MACROS",
    "DEFAULT_TOLERANCE_S",
    "MAX_SUBS",
    "MAX_TEMPLATE_CHARS",
    "MIN_SECRET_BYTES",
    "SIGNATURE_VERSION",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "AttemptOutcome",
    "DeliveryStatus",
    "PostbackDelivery",
    "PostbackValues",
    "RetryPolicy",
    "backoff_delay_ms",
    "classify_response",
    "nominal_delay_ms",
    "record_attempt",
    "render_postback_url",
    "requeue_dead",
    "sign_postback",
    "signed_message",
    "validate_postback_template",
    "verify_postback_signature",
]

MAX_SUBS = 5

#: The macros a postback template may use, in the order error messages list them.
ALLOWED_MACROS: tuple[str, ...] = (
    "click_id",
    *(f"sub{index}" for index in range(1, MAX_SUBS + 1)),
    "payout",
    "currency",
    "goal",
    "status",
    "txid",
    "campaign_id",
    "conversion_id",
)
_ALLOWED = frozenset(ALLOWED_MACROS)
_MACRO = re.compile(r"\{([^{}]*)\}")
MAX_TEMPLATE_CHARS = 2048


def _allowed_list() -> str:
    return ", ".join("{" + name + "}" for name in ALLOWED_MACROS)


def validate_postback_template(template: str, *, field: str = "postback_url") -> str:
    """Check a template at save time: http(s), known macros only, no macro in scheme or host."""
    if not isinstance(template, str) or not template or len(template) > MAX_TEMPLATE_CHARS:
        raise ValidationError(
            f"{field} must be an http(s) URL of 1 to {MAX_TEMPLATE_CHARS} characters", field=field
        )
    for match in _MACRO.finditer(template):
        name = match.group(1)
        if name not in _ALLOWED:
            raise ValidationError(
                f"{field} uses the unknown macro {{{name}}}; allowed macros are {_allowed_list()}",
                field=field,
            )
    leftover = _MACRO.sub("", template)
    if "{" in leftover or "}" in leftover:
        position = template.index("{" if "{" in leftover else "}")
        raise ValidationError(
            f"{field} has an unmatched brace near position {position}; write macros as {{name}}",
            field=field,
        )
    parts = urlsplit(_MACRO.sub("x", template))
    if parts.scheme not in ("http", "https"):
        raise ValidationError(
            f"{field} {template!r} must start with http:// or https://", field=field
        )
    authority_end = len(parts.scheme) + 3 + len(urlsplit(template).netloc)
    if "{" in template[:authority_end]:
        raise ValidationError(
            f"{field} {template!r} has a macro in its host; macros may only fill the path and "
            "query, so a click cannot choose where the postback goes",
            field=field,
        )
    return check_http_url(field, template)


@dataclass(frozen=True, slots=True)
class PostbackValues:
    """The values a postback's macros take for one conversion."""

    click_id: str = ""
    subs: tuple[str, ...] = ()
    payout: Money | None = None
    goal: str = ""
    status: str = ""
    txid: str = ""
    campaign_id: str = ""
    conversion_id: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "subs", tuple(self.subs))
        if len(self.subs) > MAX_SUBS:
            raise ValidationError(
                f"{len(self.subs)} sub values given; at most {MAX_SUBS}", field="subs"
            )

    def as_macros(self) -> dict[str, str]:
        """Each macro's raw (not yet URL-encoded) value; missing ones are empty."""
        values = {
            "click_id": self.click_id,
            "payout": str(self.payout.rounded().amount) if self.payout is not None else "",
            "currency": self.payout.currency if self.payout is not None else "",
            "goal": self.goal,
            "status": self.status,
            "txid": self.txid,
            "campaign_id": self.campaign_id,
            "conversion_id": self.conversion_id,
        }
        for index in range(MAX_SUBS):
            values[f"sub{index + 1}"] = self.subs[index] if index < len(self.subs) else ""
        return values


def render_postback_url(template: str, values: PostbackValues | Mapping[str, str]) -> str:
    """The template with each macro replaced by its percent-encoded value (every reserved char)."""
    macros = values.as_macros() if isinstance(values, PostbackValues) else values

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in _ALLOWED:
            raise ValidationError(
                f"template uses the unknown macro {{{name}}}; allowed macros are {_allowed_list()}",
                field="postback_url",
            )
        return quote(macros.get(name, ""), safe="")

    # One pass: a value that itself contains "{sub1}" is encoded, never expanded again.
    return _MACRO.sub(fill, template)


SIGNATURE_HEADER = "X-Perfmark-Signature"
TIMESTAMP_HEADER = "X-Perfmark-Timestamp"
SIGNATURE_VERSION = "v1"
MIN_SECRET_BYTES = 16
DEFAULT_TOLERANCE_S = 300


def signed_message(timestamp: int, method: str, url: str, body: bytes = b"") -> bytes:
    """The exact bytes that are signed: `<timestamp>\\n<METHOD>\\n<url>\\n` then the body."""
    return f"{timestamp}\n{method.upper()}\n{url}\n".encode() + body


def _check_secret(secret: bytes) -> None:
    if len(secret) < MIN_SECRET_BYTES:
        raise ValidationError(
            f"the signing secret has {len(secret)} bytes; use at least {MIN_SECRET_BYTES} "
            "random bytes",
            field="secret",
        )


def sign_postback(
    secret: bytes, *, method: str, url: str, body: bytes = b"", timestamp: int
) -> dict[str, str]:
    """The headers that sign one request: timestamp and `v1=<hex HMAC-SHA256>`."""
    _check_secret(secret)
    digest = hmac.new(secret, signed_message(timestamp, method, url, body), hashlib.sha256)
    return {
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: f"{SIGNATURE_VERSION}={digest.hexdigest()}",
    }


def verify_postback_signature(
    secret: bytes,
    headers: Mapping[str, str],
    *,
    method: str,
    url: str,
    body: bytes = b"",
    now: int,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
) -> None:
    """Check a signed request; AuthenticationError says what is wrong (missing, stale, mismatch)."""
    lowered = {name.lower(): value for name, value in headers.items()}
    raw_timestamp = lowered.get(TIMESTAMP_HEADER.lower())
    signature = lowered.get(SIGNATURE_HEADER.lower())
    if raw_timestamp is None or signature is None:
        raise AuthenticationError(
            f"the request lacks {TIMESTAMP_HEADER} or {SIGNATURE_HEADER}", field="signature"
        )
    if not raw_timestamp.isdigit():
        raise AuthenticationError(
            f"{TIMESTAMP_HEADER} {raw_timestamp!r} is not unix seconds", field="signature"
        )
    timestamp = int(raw_timestamp)
    if abs(now - timestamp) > tolerance_s:
        raise AuthenticationError(
            f"the signature is {now - timestamp} s from now; the tolerance is {tolerance_s} s "
            "(check the sender's clock, or this is a replay)",
            field="signature",
        )
    expected = sign_postback(secret, method=method, url=url, body=body, timestamp=timestamp)
    if not hmac.compare_digest(expected[SIGNATURE_HEADER], signature):
        raise AuthenticationError(
            "the signature does not match the request; check the secret and that the URL and "
            "body are signed exactly as sent",
            field="signature",
        )


class AttemptOutcome(StrEnum):
    """What one delivery attempt means for the next."""

    DELIVERED = "delivered"
    RETRYABLE = "retryable"  #: network error, timeout, 408, 425, 429 or 5xx
    PERMANENT = "permanent"  #: any other answer; retrying the same request cannot help


_RETRYABLE_STATUSES = frozenset({408, 425, 429})


def classify_response(status_code: int | None) -> AttemptOutcome:
    """Classify an HTTP answer (None: no answer). Redirects are not followed, so 3xx is final."""
    if status_code is None:
        return AttemptOutcome.RETRYABLE
    if 200 <= status_code < 300:
        return AttemptOutcome.DELIVERED
    if status_code in _RETRYABLE_STATUSES or 500 <= status_code < 600:
        return AttemptOutcome.RETRYABLE
    return AttemptOutcome.PERMANENT


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff: delay n = min(max, base * 2**(n-1)), plus up to jitter_percent more."""

    max_attempts: int = 8
    base_delay_ms: int = 30_000
    max_delay_ms: int = 6 * 3600 * 1000
    jitter_percent: int = 20

    def __post_init__(self) -> None:
        check_positive_int("max_attempts", self.max_attempts)
        check_positive_int("base_delay_ms", self.base_delay_ms)
        check_positive_int("max_delay_ms", self.max_delay_ms)
        check_positive_int("jitter_percent", self.jitter_percent, allow_zero=True)
        if self.max_delay_ms < self.base_delay_ms:
            raise ValidationError(
                "max_delay_ms must be at least base_delay_ms", field="max_delay_ms"
            )
        if self.jitter_percent > 100:
            raise ValidationError("jitter_percent is at most 100", field="jitter_percent")


def nominal_delay_ms(failed_attempts: int, policy: RetryPolicy) -> int:
    """The delay before the next attempt after `failed_attempts` failures, without jitter."""
    check_positive_int("failed_attempts", failed_attempts)
    # Cap the exponent so a huge attempt count cannot build a huge integer.
    exponent = min(failed_attempts - 1, 62)
    return min(policy.max_delay_ms, policy.base_delay_ms * (1 << exponent))


def backoff_delay_ms(failed_attempts: int, policy: RetryPolicy, jitter_fraction: float) -> int:
    """Nominal delay plus jitter: nominal <= delay <= nominal * (1 + jitter_percent / 100).

    `jitter_fraction` in [0, 1) comes from the caller's random source (so this stays pure).
    """
    if not 0 <= jitter_fraction < 1:
        raise ValueError(f"jitter_fraction is {jitter_fraction}; it must be in [0, 1)")
    nominal = nominal_delay_ms(failed_attempts, policy)
    return nominal + int(nominal * policy.jitter_percent * jitter_fraction) // 100


class DeliveryStatus(StrEnum):
    """Where a postback delivery stands."""

    PENDING = "pending"  #: not attempted yet
    RETRYING = "retrying"  #: failed, another attempt is scheduled
    DELIVERED = "delivered"
    DEAD = "dead"  #: given up: kept in the dead-letter list for manual replay


@dataclass(frozen=True, slots=True)
class PostbackDelivery:
    """The state of one outbound postback (or webhook) and its attempts so far."""

    delivery_id: str
    url: str
    attempts: int = 0
    status: DeliveryStatus = DeliveryStatus.PENDING
    next_attempt_at: datetime | None = None
    last_status_code: int | None = None
    last_error: str = ""


def record_attempt(
    delivery: PostbackDelivery,
    *,
    at: datetime,
    status_code: int | None,
    policy: RetryPolicy,
    jitter_fraction: float,
    error: str = "",
    retry_after_s: int | None = None,
) -> PostbackDelivery:
    """The delivery after one attempt at `at`: delivered, scheduled again, or dead.

    A permanent answer, or the `max_attempts`-th failure, makes it DEAD. A receiver's
    Retry-After lengthens the wait, up to the policy's maximum delay.
    """
    if delivery.status in (DeliveryStatus.DELIVERED, DeliveryStatus.DEAD):
        raise IllegalTransitionError(
            f"delivery {delivery.delivery_id} is {delivery.status.value}; "
            "requeue a dead delivery before trying it again",
            field="status",
        )
    attempts = delivery.attempts + 1
    outcome = classify_response(status_code)
    status = DeliveryStatus.RETRYING
    next_attempt_at: datetime | None = None
    if outcome is AttemptOutcome.DELIVERED:
        status = DeliveryStatus.DELIVERED
    elif outcome is AttemptOutcome.PERMANENT or attempts >= policy.max_attempts:
        status = DeliveryStatus.DEAD
    else:
        delay_ms = backoff_delay_ms(attempts, policy, jitter_fraction)
        if retry_after_s is not None and retry_after_s > 0:
            delay_ms = max(delay_ms, min(retry_after_s * 1000, policy.max_delay_ms))
        next_attempt_at = utc(at) + timedelta(milliseconds=delay_ms)
    return replace(
        delivery,
        attempts=attempts,
        status=status,
        next_attempt_at=next_attempt_at,
        last_status_code=status_code,
        last_error=error,
    )


def requeue_dead(delivery: PostbackDelivery, *, at: datetime) -> PostbackDelivery:
    """A dead delivery sent back for a fresh series of attempts (manual replay)."""
    if delivery.status is not DeliveryStatus.DEAD:
        raise IllegalTransitionError(
            f"delivery {delivery.delivery_id} is {delivery.status.value}; only dead ones are "
            "requeued",
            field="status",
        )
    return replace(
        delivery, status=DeliveryStatus.PENDING, attempts=0, next_attempt_at=utc(at), last_error=""
    )
