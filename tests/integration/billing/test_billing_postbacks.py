"""Outbound postbacks and webhooks through a mock transport: signature, retries, dead letter."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest

from perfmark.adapters.store.kinds import PUBLISHERS
from perfmark.billing.domain.postbacks import RetryPolicy, verify_postback_signature
from perfmark.billing.services import deliveries
from perfmark.errors import ValidationError
from perfmark.services import catalog
from perfmark.workers.postbacks import PostbackWorker

from .helpers import CPA, Rig

TEMPLATE = "https://aff.example/pb?click={click_id}&amount={payout}&s={status}&t={txid}"


class Receiver:
    """A mock receiver that answers from a script and keeps every request."""

    def __init__(self, *answers: int | Exception | tuple[int, dict[str, str]]) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if self.answers else 200
        if isinstance(answer, Exception):
            raise answer
        status, headers = answer if isinstance(answer, tuple) else (answer, {})
        return httpx.Response(status, headers=headers)


def worker(rig: Rig, receiver: Callable[[httpx.Request], httpx.Response],
           attempts: int = 4) -> PostbackWorker:  # fmt: skip
    client = httpx.Client(transport=httpx.MockTransport(receiver))
    policy = RetryPolicy(max_attempts=attempts, base_delay_ms=30_000, jitter_percent=20)
    return PostbackWorker(rig.container, client, policy=policy, jitter=lambda: 0.0)


def queue_one(rig: Rig, template: str = TEMPLATE, txid: str = "P-1") -> str:
    deliveries.set_postback_template(rig.container, rig.owner, rig.publisher_id(CPA), template)
    click = rig.click(CPA)
    assert click.click_id
    rig.postback(CPA, click_id=click.click_id, goal="sale", value="10", txid=txid)
    rig.process()
    return click.click_id


def log(rig: Rig) -> list[Any]:
    return list(deliveries.list_deliveries(rig.container, rig.owner).items)


def test_a_postback_is_rendered_signed_and_delivered(rig: Rig) -> None:
    click_id = queue_one(rig)
    receiver = Receiver(200)
    run = worker(rig, receiver).deliver_due()
    assert (run.attempted, run.delivered) == (1, 1)
    [request] = receiver.requests
    assert request.method == "GET"
    assert (
        str(request.url) == f"https://aff.example/pb?click={click_id}&amount=18.00&s=pending&t=P-1"
    )
    secret = catalog.postback_secret(rig.container, rig.owner, PUBLISHERS, rig.publisher_id(CPA))
    now = int(rig.clock.now().timestamp())
    verify_postback_signature(secret.encode(), request.headers, method="GET",
                              url=str(request.url), now=now)  # fmt: skip
    with pytest.raises(Exception, match="does not match"):
        verify_postback_signature(b"another secret of 16+ bytes", request.headers,
                                  method="GET", url=str(request.url), now=now)  # fmt: skip
    [delivery] = log(rig)
    assert delivery.status == "delivered" and [a.status_code for a in delivery.log] == [200]
    assert worker(rig, receiver).deliver_due().attempted == 0  # nothing left to send


def test_retries_back_off_exponentially_then_deliver(rig: Rig) -> None:
    queue_one(rig)
    receiver = Receiver(500, httpx.ConnectError("refused"), (429, {"Retry-After": "300"}), 200)
    sender = worker(rig, receiver)
    start = rig.clock.now()
    waits = []
    for _ in range(4):
        assert sender.deliver_due().attempted == 1
        [delivery] = log(rig)
        if delivery.next_attempt_at is None:
            break
        waits.append(delivery.next_attempt_at - rig.clock.now())
        rig.clock.advance(seconds=(delivery.next_attempt_at - rig.clock.now()).total_seconds() - 1)
        assert sender.deliver_due().attempted == 0  # not due yet
        rig.clock.advance(seconds=1)
    # 30 s, then 60 s, then the receiver's Retry-After of 300 s beats the nominal 120 s.
    assert waits == [timedelta(seconds=30), timedelta(seconds=60), timedelta(seconds=300)]
    [delivery] = log(rig)
    assert delivery.status == "delivered"
    assert [(a.status_code, a.outcome) for a in delivery.log] == [
        (500, "retryable"), (None, "retryable"), (429, "retryable"), (200, "delivered"),
    ]  # fmt: skip
    assert "ConnectError" in delivery.log[1].error
    assert rig.clock.now() - start == timedelta(seconds=390)


def test_jitter_lengthens_the_wait_within_its_percentage(rig: Rig) -> None:
    queue_one(rig)
    client = httpx.Client(transport=httpx.MockTransport(Receiver(503)))
    sender = PostbackWorker(rig.container, client, jitter=lambda: 0.5)  # 20% x 0.5 = +10%
    sender.deliver_due()
    [delivery] = log(rig)
    assert delivery.next_attempt_at == rig.clock.now() + timedelta(seconds=33)


def test_a_delivery_is_dead_after_the_last_attempt_and_can_be_replayed(rig: Rig) -> None:
    queue_one(rig)
    receiver = Receiver(500, 502, 504)
    sender = worker(rig, receiver, attempts=3)
    for _ in range(3):
        sender.deliver_due()
        rig.clock.advance(hours=1)
    [delivery] = log(rig)
    assert (delivery.status, delivery.attempts, delivery.next_attempt_at) == ("dead", 3, None)
    assert sender.deliver_due().attempted == 0
    replayed = deliveries.requeue_delivery(rig.container, rig.owner, delivery.id)
    assert (replayed.status, replayed.attempts) == ("pending", 0)
    assert sender.deliver_due().delivered == 1
    [delivery] = log(rig)
    assert delivery.status == "delivered" and len(delivery.log) == 4


def test_a_permanent_answer_is_dead_at_once(rig: Rig) -> None:
    queue_one(rig)
    receiver = Receiver(404)
    assert worker(rig, receiver).deliver_due().dead == 1
    [delivery] = log(rig)
    assert (delivery.status, delivery.last_status_code) == ("dead", 404)


def test_redirects_are_not_followed(rig: Rig) -> None:
    queue_one(rig)
    receiver = Receiver((302, {"Location": "https://elsewhere.example/"}))
    assert worker(rig, receiver).deliver_due().dead == 1
    assert len(receiver.requests) == 1


def test_a_template_with_an_unknown_macro_is_refused_when_saved(rig: Rig) -> None:
    # The publisher spec checks its template, so a bad one never reaches a delivery.
    with pytest.raises(ValidationError) as info:
        rig.update_publisher(CPA, postback_url_template="https://aff.example/pb?x={payot}")
    assert info.value.field == "postback_url_template"
    assert "{payot}" in info.value.message and "{payout}" in info.value.message
    click = rig.click(CPA)
    rig.postback(CPA, click_id=click.click_id or "", goal="sale", value="10", txid="M-1")
    rig.process()
    assert [d.target for d in log(rig)] == []  # no template kept, so nothing to send
    receiver = Receiver()
    assert worker(rig, receiver).deliver_due().attempted == 0 and receiver.requests == []


def test_status_changes_send_further_postbacks_and_advertiser_webhooks(rig: Rig) -> None:
    deliveries.set_webhook(rig.container, rig.owner, rig.advertiser_id(CPA),
                           "https://shop.example/hooks/perfmark")  # fmt: skip
    queue_one(rig, txid="W-1")
    rig.clock.advance(seconds=1)
    rig.postback(CPA, goal="sale", txid="W-1", status="refunded")
    rig.process()
    receiver = Receiver()
    assert worker(rig, receiver).deliver_due().delivered == 4
    topics = sorted((d.target, d.topic) for d in log(rig))
    assert topics == [
        ("advertiser", "conversion.created"), ("advertiser", "conversion.reversed"),
        ("publisher", "conversion.created"), ("publisher", "conversion.reversed"),
    ]  # fmt: skip
    hooks = [r for r in receiver.requests if r.method == "POST"]
    bodies = sorted(json.loads(r.content)["topic"] for r in hooks)
    assert bodies == ["conversion.created", "conversion.reversed"]
    refund = [r for r in receiver.requests if r.method == "GET" and "s=refunded" in str(r.url)]
    assert len(refund) == 1
    secret = catalog.postback_secret(rig.container, rig.owner, catalog.kind_named("advertisers"),
                                     rig.advertiser_id(CPA))  # fmt: skip
    for hook in hooks:
        verify_postback_signature(secret.encode(), hook.headers, method="POST",
                                  url=str(hook.url), body=hook.content,
                                  now=int(rig.clock.now().timestamp()))  # fmt: skip
