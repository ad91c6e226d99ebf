"""The delivery worker: sends due postbacks and webhooks, signed, through one HTTP client.

Each attempt is claimed with a short lease (so two workers never send the same attempt),
sent without following redirects, and recorded in the delivery log; the retry schedule,
backoff and dead-lettering are the billing domain's (`record_attempt`). The HTTP client is
passed in, so tests use `httpx.MockTransport`. The same loop runs billing's scheduled
checks (held campaigns, auto-approval) every `checks_interval_s`.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx

from perfmark import __version__
from perfmark.adapters.store.engine import transaction
from perfmark.adapters.store.kinds import ADVERTISERS, PUBLISHERS
from perfmark.adapters.store.resources import ResourceKind, ResourceStore
from perfmark.adapters.wal_writer import WalWriter
from perfmark.billing import store_outbound
from perfmark.billing.domain.postbacks import (
    DeliveryStatus,
    PostbackDelivery,
    RetryPolicy,
    classify_response,
    record_attempt,
    sign_postback,
)
from perfmark.billing.services.schedule import run_billing_checks
from perfmark.domain.events import TrackedEvent
from perfmark.errors import PerfmarkError
from perfmark.services.container import Container
from perfmark.settings import wal_directory

__all__ = ["DeliveryRun", "PostbackWorker", "run_billing_worker"]

logger = logging.getLogger("perfmark.postbacks")

#: How long a claimed attempt is reserved for the worker that claimed it.
LEASE_S = 60
#: Give up on a receiver that has not answered within this many seconds (then: retry).
REQUEST_TIMEOUT_S = 10.0
#: Most deliveries one pass sends.
BATCH_DELIVERIES = 100
#: Longest error text kept per attempt.
_MAX_ERROR_CHARS = 500
_USER_AGENT = f"perfmark/{__version__} (+postback)"


@dataclass
class DeliveryRun:
    """What one pass over the due deliveries did."""

    attempted: int = 0
    delivered: int = 0
    retrying: int = 0
    dead: int = 0


def _retry_after(response: httpx.Response | None) -> int | None:
    if response is None:
        return None
    value = response.headers.get("retry-after", "").strip()
    return int(value) if value.isdigit() else None


class PostbackWorker:
    """Delivers due outbound postbacks and webhooks with retries and a dead-letter state."""

    def __init__(
        self,
        container: Container,
        client: httpx.Client,
        *,
        policy: RetryPolicy | None = None,
        jitter: Callable[[], float] = random.random,
        batch: int = BATCH_DELIVERIES,
    ) -> None:
        self.container = container
        self.client = client
        self.policy = policy or RetryPolicy()
        self.jitter = jitter
        self.batch = batch

    def deliver_due(self) -> DeliveryRun:
        """Attempt every delivery that is due now (at most `batch`)."""
        run = DeliveryRun()
        now = self.container.clock.now()
        with transaction(self.container.engine) as conn:
            due = store_outbound.due_deliveries(conn, now, self.batch)
        for row in due:
            status = self._attempt(row, now)
            if status is None:
                continue
            run.attempted += 1
            if status is DeliveryStatus.DELIVERED:
                run.delivered += 1
            elif status is DeliveryStatus.DEAD:
                run.dead += 1
            else:
                run.retrying += 1
        return run

    def _secret(self, row: dict[str, Any]) -> str | None:
        kind: ResourceKind[Any] = PUBLISHERS if row["target"] == "publisher" else ADVERTISERS
        with transaction(self.container.engine) as conn:
            value = ResourceStore(kind).get_column(
                conn, row["workspace_id"], row["party_id"], "postback_secret"
            )
        return None if value is None else str(value)

    def _send(
        self, row: dict[str, Any], now: datetime
    ) -> tuple[int | None, str, httpx.Response | None]:
        secret = self._secret(row)
        if secret is None:
            return None, f"the {row['target']} {row['party_id']} no longer exists", None
        body = row["body"].encode()
        headers = sign_postback(
            secret.encode(),
            method=row["method"],
            url=row["url"],
            body=body,
            timestamp=int(now.timestamp()),
        )
        headers["User-Agent"] = _USER_AGENT
        if body:
            headers["Content-Type"] = "application/json"
        try:
            response = self.client.request(
                row["method"],
                row["url"],
                headers=headers,
                content=body or None,
                timeout=REQUEST_TIMEOUT_S,
                follow_redirects=False,
            )
        except httpx.HTTPError as exc:
            return None, f"{type(exc).__name__}: {exc}"[:_MAX_ERROR_CHARS], None
        error = "" if 200 <= response.status_code < 300 else f"HTTP {response.status_code}"
        return response.status_code, error, response

    def _attempt(self, row: dict[str, Any], now: datetime) -> DeliveryStatus | None:
        with transaction(self.container.engine) as conn:
            if not store_outbound.claim_delivery(conn, row, now + timedelta(seconds=LEASE_S), now):
                return None  # another worker took it
        began = time.monotonic()
        try:
            status_code, error, response = self._send(row, now)
        except PerfmarkError as exc:  # e.g. a secret too short to sign with
            status_code, error, response = None, exc.message, None
        duration_ms = int((time.monotonic() - began) * 1000)
        state = PostbackDelivery(
            delivery_id=row["id"],
            url=row["url"],
            attempts=row["attempts"],
            status=DeliveryStatus(row["status"]),
        )
        after = record_attempt(
            state,
            at=now,
            status_code=status_code,
            policy=self.policy,
            jitter_fraction=self.jitter(),
            error=error,
            retry_after_s=_retry_after(response),
        )
        seq = row["total_attempts"] + 1
        with transaction(self.container.engine) as conn:
            store_outbound.finish_attempt(
                conn,
                row["id"],
                {
                    "status": after.status.value,
                    "attempts": after.attempts,
                    "total_attempts": seq,
                    "next_attempt_at": after.next_attempt_at,
                    "last_status_code": status_code,
                    "last_error": error[:_MAX_ERROR_CHARS],
                    "updated_at": now,
                },
                {
                    "seq": seq,
                    "at": now,
                    "status_code": status_code,
                    "outcome": classify_response(status_code).value,
                    "error": error[:_MAX_ERROR_CHARS],
                    "duration_ms": duration_ms,
                },
            )
        if after.status is DeliveryStatus.DEAD:
            logger.warning("delivery %s is dead after %s attempts: %s", row["id"], seq, error)
        return after.status

    def run(self, stop: threading.Event, idle_s: float = 1.0) -> None:
        """Deliver until `stop` is set, pausing when nothing was due."""
        while not stop.is_set():
            try:
                run = self.deliver_due()
            except Exception:
                logger.exception("delivery pass failed; retrying after a pause")
                run = DeliveryRun()
            if run.attempted == 0:
                stop.wait(idle_s)


def run_billing_worker(
    container: Container,
    stop: threading.Event,
    *,
    client: httpx.Client | None = None,
    checks_interval_s: float = 60.0,
    idle_s: float = 1.0,
) -> None:
    """Deliver postbacks and run billing's scheduled checks until `stop` (leader only).

    Lake events of approvals made by the checks are appended to this process's own log.
    """
    own_client = client is None
    http = client or httpx.Client(follow_redirects=False)
    wal = WalWriter(wal_directory(container.settings), f"billing{os.getpid()}")

    def emit(event: TrackedEvent) -> None:
        wal.append(event.to_json())

    worker = PostbackWorker(container, http)
    next_checks = 0.0
    try:
        while not stop.is_set():
            if time.monotonic() >= next_checks:
                try:
                    run_billing_checks(container, emit=emit)
                except Exception:
                    logger.exception("billing checks failed; retrying later")
                next_checks = time.monotonic() + checks_interval_s
            try:
                run = worker.deliver_due()
            except Exception:
                logger.exception("delivery pass failed; retrying after a pause")
                run = DeliveryRun()
            if run.attempted == 0:
                stop.wait(idle_s)
    finally:
        wal.close()
        if own_client:
            http.close()
