"""Outbound postbacks: template validation, URL encoding, signatures, retries and dead letters."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perfmark.billing.domain.postbacks import (
    ALLOWED_MACROS,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    AttemptOutcome,
    DeliveryStatus,
    PostbackDelivery,
    PostbackValues,
    RetryPolicy,
    backoff_delay_ms,
    classify_response,
    nominal_delay_ms,
    record_attempt,
    render_postback_url,
    requeue_dead,
    sign_postback,
    signed_message,
    validate_postback_template,
    verify_postback_signature,
)
from perfmark.errors import AuthenticationError, IllegalTransitionError, ValidationError
from perfmark.money import Money

TEMPLATE = (
    "https://pub.example/pb?cid={click_id}&s1={sub1}&s5={sub5}&p={payout}&c={currency}"
    "&g={goal}&st={status}&tx={txid}&cmp={campaign_id}&cnv={conversion_id}"
)


def test_valid_templates_pass_unchanged() -> None:
    assert validate_postback_template(TEMPLATE) == TEMPLATE
    assert validate_postback_template("http://pub.example/{click_id}/done") is not None
    assert set(ALLOWED_MACROS) == {
        "click_id",
        "sub1",
        "sub2",
        "sub3",
        "sub4",
        "sub5",
        "payout",
        "currency",
        "goal",
        "status",
        "txid",
        "campaign_id",
        "conversion_id",
    }


def test_an_unknown_macro_is_named_and_the_allowed_ones_listed() -> None:
    with pytest.raises(ValidationError) as info:
        validate_postback_template("https://pub.example/pb?x={clickid}")
    message = info.value.message
    assert "{clickid}" in message
    assert all("{" + name + "}" in message for name in ALLOWED_MACROS)
    assert info.value.field == "postback_url"
    with pytest.raises(ValidationError) as upper:
        validate_postback_template("https://pub.example/pb?x={Payout}")
    assert "{Payout}" in upper.value.message


@pytest.mark.parametrize(
    ("template", "fragment"),
    [
        ("ftp://pub.example/pb?x={click_id}", "http"),
        ("javascript:alert(1)", "http"),
        ("//pub.example/pb", "http"),
        ("https://{sub1}.example/pb", "host"),
        ("https://pub.example:{sub1}/pb", "host"),
        ("https://pub.example/pb?x={click_id", "brace"),
        ("https://pub.example/pb?x=click_id}", "brace"),
        ("https://pub.example/pb?x={}", "unknown macro {}"),
        ("https://pub.example/p b", "whitespace"),
        ("", "http"),
    ],
)
def test_bad_templates_are_refused_with_a_reason(template: str, fragment: str) -> None:
    with pytest.raises(ValidationError) as info:
        validate_postback_template(template)
    assert fragment in info.value.message


def test_values_are_percent_encoded_and_never_expanded_twice() -> None:
    values = PostbackValues(
        click_id="clk_1",
        subs=("a&b=c", "", "", "", "{sub1} #?/ é"),
        payout=Money.of("12.5", "EUR"),
        goal="lead",
        status="approved",
        txid="order 42",
        campaign_id="cmp_1",
        conversion_id="cnv_1",
    )
    url = render_postback_url(TEMPLATE, values)
    assert url == (
        "https://pub.example/pb?cid=clk_1&s1=a%26b%3Dc&s5=%7Bsub1%7D%20%23%3F%2F%20%C3%A9"
        "&p=12.50&c=EUR&g=lead&st=approved&tx=order%2042&cmp=cmp_1&cnv=cnv_1"
    )
    query = parse_qs(urlsplit(url).query, keep_blank_values=True)
    assert query["s1"] == ["a&b=c"] and query["s5"] == ["{sub1} #?/ é"]


def test_missing_values_render_empty() -> None:
    url = render_postback_url(
        "https://p.example/?a={sub3}&p={payout}&c={currency}", PostbackValues()
    )
    assert url == "https://p.example/?a=&p=&c="
    with pytest.raises(ValidationError):
        PostbackValues(subs=("1", "2", "3", "4", "5", "6"))


@settings(max_examples=200, deadline=None)
@given(value=st.text(max_size=40))
def test_any_value_round_trips_through_the_query(value: str) -> None:
    url = render_postback_url("https://p.example/pb?v={sub1}&w={sub2}", {"sub1": value})
    parsed = parse_qs(urlsplit(url).query, keep_blank_values=True)
    assert parsed["v"] == [value] and parsed["w"] == [""]
    assert urlsplit(url).hostname == "p.example"


SECRET = b"0123456789abcdef0123456789abcdef"
URL = "https://pub.example/pb?cid=clk_1"


def test_the_signature_is_hmac_sha256_of_the_documented_string() -> None:
    headers = sign_postback(SECRET, method="post", url=URL, body=b'{"a":1}', timestamp=1767225600)
    message = b'1767225600\nPOST\nhttps://pub.example/pb?cid=clk_1\n{"a":1}'
    assert signed_message(1767225600, "post", URL, b'{"a":1}') == message
    expected = hmac.new(SECRET, message, hashlib.sha256).hexdigest()
    assert headers == {TIMESTAMP_HEADER: "1767225600", SIGNATURE_HEADER: "v1=" + expected}


def test_signatures_verify_and_refuse_tampering_staleness_and_absence() -> None:
    headers = sign_postback(SECRET, method="GET", url=URL, timestamp=1_000_000)
    lower = {name.lower(): value for name, value in headers.items()}
    verify_postback_signature(SECRET, lower, method="GET", url=URL, now=1_000_100)
    with pytest.raises(AuthenticationError) as tampered:
        verify_postback_signature(SECRET, headers, method="GET", url=URL + "9", now=1_000_000)
    assert "does not match" in tampered.value.message
    with pytest.raises(AuthenticationError):
        verify_postback_signature(b"x" * 32, headers, method="GET", url=URL, now=1_000_000)
    with pytest.raises(AuthenticationError) as stale:
        verify_postback_signature(SECRET, headers, method="GET", url=URL, now=1_000_301)
    assert "301 s" in stale.value.message
    with pytest.raises(AuthenticationError):
        verify_postback_signature(SECRET, {}, method="GET", url=URL, now=1_000_000)
    with pytest.raises(AuthenticationError):
        verify_postback_signature(
            SECRET,
            {**headers, TIMESTAMP_HEADER: "-5"},
            method="GET",
            url=URL,
            now=1_000_000,
        )
    with pytest.raises(ValidationError):
        sign_postback(b"short", method="GET", url=URL, timestamp=1)


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (None, AttemptOutcome.RETRYABLE),
        (200, AttemptOutcome.DELIVERED),
        (204, AttemptOutcome.DELIVERED),
        (302, AttemptOutcome.PERMANENT),
        (400, AttemptOutcome.PERMANENT),
        (404, AttemptOutcome.PERMANENT),
        (408, AttemptOutcome.RETRYABLE),
        (429, AttemptOutcome.RETRYABLE),
        (500, AttemptOutcome.RETRYABLE),
        (503, AttemptOutcome.RETRYABLE),
    ],
)
def test_responses_are_classified(status: int | None, outcome: AttemptOutcome) -> None:
    assert classify_response(status) is outcome


POLICY = RetryPolicy(max_attempts=5, base_delay_ms=1000, max_delay_ms=5000, jitter_percent=20)


def test_nominal_delays_double_up_to_the_cap() -> None:
    assert [nominal_delay_ms(n, POLICY) for n in range(1, 7)] == [
        1000,
        2000,
        4000,
        5000,
        5000,
        5000,
    ]
    assert nominal_delay_ms(10**6, POLICY) == 5000
    assert backoff_delay_ms(1, POLICY, 0.0) == 1000
    assert backoff_delay_ms(3, POLICY, 0.5) == 4400  # 4000 + 20% * 0.5
    with pytest.raises(ValueError):
        backoff_delay_ms(1, POLICY, 1.0)


@settings(max_examples=200, deadline=None)
@given(
    attempt=st.integers(min_value=1, max_value=40),
    fraction=st.floats(min_value=0, max_value=1, exclude_max=True),
    base=st.integers(min_value=1, max_value=100_000),
    factor=st.integers(min_value=1, max_value=1000),
    jitter=st.integers(min_value=0, max_value=100),
)
def test_jitter_stays_within_its_bound(
    attempt: int, fraction: float, base: int, factor: int, jitter: int
) -> None:
    policy = RetryPolicy(
        max_attempts=3, base_delay_ms=base, max_delay_ms=base * factor, jitter_percent=jitter
    )
    nominal = min(base * factor, base * 2 ** (attempt - 1))
    delay = backoff_delay_ms(attempt, policy, fraction)
    assert nominal <= delay <= nominal + nominal * jitter // 100


class FakeTransport:
    """Stands in for the network: answers each send with the next scripted status."""

    def __init__(self, statuses: list[int | None]) -> None:
        self._statuses: Iterator[int | None] = iter(statuses)
        self.sent: list[tuple[datetime, str, dict[str, str]]] = []

    def send(self, at: datetime, url: str, headers: dict[str, str]) -> int | None:
        self.sent.append((at, url, headers))
        return next(self._statuses)


def deliver(
    transport: FakeTransport, jitter: Callable[[], float] = lambda: 0.0
) -> PostbackDelivery:
    """A worker loop: attempt when due, sign each attempt, stop when delivered or dead."""
    now = datetime(2026, 1, 1, tzinfo=UTC)
    delivery = PostbackDelivery("pbk_1", URL, next_attempt_at=now)
    while delivery.status in (DeliveryStatus.PENDING, DeliveryStatus.RETRYING):
        assert delivery.next_attempt_at is not None
        now = delivery.next_attempt_at
        headers = sign_postback(SECRET, method="GET", url=URL, timestamp=int(now.timestamp()))
        status = transport.send(now, URL, headers)
        delivery = record_attempt(
            delivery, at=now, status_code=status, policy=POLICY, jitter_fraction=jitter()
        )
    return delivery


def test_retries_back_off_then_deliver() -> None:
    transport = FakeTransport([None, 503, 500, 200])
    delivery = deliver(transport)
    assert delivery.status is DeliveryStatus.DELIVERED and delivery.attempts == 4
    start = transport.sent[0][0]
    assert [int((at - start).total_seconds() * 1000) for at, _, _ in transport.sent] == [
        0,
        1000,
        3000,
        7000,
    ]
    for at, url, headers in transport.sent:  # every attempt is freshly signed
        verify_postback_signature(SECRET, headers, method="GET", url=url, now=int(at.timestamp()))


def test_dead_letter_after_max_attempts_or_a_permanent_answer() -> None:
    dead = deliver(FakeTransport([500] * 5))
    assert dead.status is DeliveryStatus.DEAD and dead.attempts == 5
    assert dead.last_status_code == 500 and dead.next_attempt_at is None
    not_found = deliver(FakeTransport([404]))
    assert not_found.status is DeliveryStatus.DEAD and not_found.attempts == 1
    with pytest.raises(IllegalTransitionError):
        record_attempt(
            dead,
            at=datetime(2026, 1, 2, tzinfo=UTC),
            status_code=200,
            policy=POLICY,
            jitter_fraction=0,
        )
    again = requeue_dead(dead, at=datetime(2026, 1, 2, tzinfo=UTC))
    assert again.status is DeliveryStatus.PENDING and again.attempts == 0
    assert deliver_from(again, FakeTransport([200])).status is DeliveryStatus.DELIVERED
    with pytest.raises(IllegalTransitionError):
        requeue_dead(again, at=datetime(2026, 1, 2, tzinfo=UTC))


def deliver_from(delivery: PostbackDelivery, transport: FakeTransport) -> PostbackDelivery:
    assert delivery.next_attempt_at is not None
    status = transport.send(delivery.next_attempt_at, delivery.url, {})
    return record_attempt(
        delivery, at=delivery.next_attempt_at, status_code=status, policy=POLICY, jitter_fraction=0
    )


def test_retry_after_lengthens_the_wait_up_to_the_maximum() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    fresh = PostbackDelivery("pbk_2", URL)
    waited = record_attempt(
        fresh, at=start, status_code=429, policy=POLICY, jitter_fraction=0, retry_after_s=3
    )
    assert waited.next_attempt_at == start + timedelta(seconds=3)
    capped = record_attempt(
        fresh, at=start, status_code=429, policy=POLICY, jitter_fraction=0, retry_after_s=3600
    )
    assert capped.next_attempt_at == start + timedelta(milliseconds=POLICY.max_delay_ms)


def test_retry_policies_are_validated() -> None:
    with pytest.raises(ValidationError):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValidationError):
        RetryPolicy(base_delay_ms=10, max_delay_ms=5)
    with pytest.raises(ValidationError):
        RetryPolicy(jitter_percent=101)


def test_the_default_schedule_gives_up_after_about_an_hour() -> None:
    policy = RetryPolicy()
    waits = [nominal_delay_ms(n, policy) // 1000 for n in range(1, policy.max_attempts)]
    assert waits == [30, 60, 120, 240, 480, 960, 1920]
    assert sum(waits) == 3810  # 63.5 minutes from the first attempt to the 8th
