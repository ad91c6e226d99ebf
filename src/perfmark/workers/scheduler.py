"""The optimizer's scheduler: runs due rules and due bandit allocations, then sleeps.

Each job is claimed before it runs (its next time is moved on with a compare-and-set in
the store), so several schedulers on one store never run a job twice; a job that fails is
logged and retried at its next time, and never stops the loop.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime

import httpx
import numpy as np

from perfmark.adapters.store.engine import transaction
from perfmark.optimize import store
from perfmark.optimize.services.experiment_analysis import allocate_experiment
from perfmark.optimize.services.experiments import get_experiment, next_allocation_after
from perfmark.optimize.services.rule_runner import optimizer_principal, run_stored_rule
from perfmark.optimize.services.rules import get_rule, next_run_after
from perfmark.services.container import Container

__all__ = [
    "DEFAULT_POLL_SECONDS",
    "SchedulerTick",
    "run_due_jobs",
    "run_scheduler",
    "start_scheduler",
]

logger = logging.getLogger("perfmark.scheduler")

#: How often the scheduler looks for due jobs (a rule's own interval is in minutes).
DEFAULT_POLL_SECONDS = 30.0


@dataclass
class SchedulerTick:
    """What one pass of the scheduler did."""

    rules_run: list[str] = field(default_factory=list)
    allocations: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _run_rules(
    container: Container, now: datetime, tick: SchedulerTick, http: httpx.Client | None
) -> None:
    with transaction(container.engine) as conn:
        due = store.due_rule_ids(conn, now)
    for rule_id, workspace_id, planned in due:
        principal = optimizer_principal(workspace_id)
        try:
            stored = get_rule(container, principal, rule_id)
            with transaction(container.engine) as conn:
                claimed = store.claim_rule(conn, rule_id, planned, next_run_after(stored.rule, now))
            if not claimed:
                continue  # another scheduler took it
            run_stored_rule(container, principal, stored, now, http=http)
            tick.rules_run.append(rule_id)
        except Exception as exc:  # one broken rule must not stop the others
            logger.exception("rule %s failed", rule_id)
            tick.errors.append(f"rule {rule_id}: {exc.__class__.__name__}: {exc}")


def _run_allocations(
    container: Container, now: datetime, tick: SchedulerTick, rng: np.random.Generator | None
) -> None:
    with transaction(container.engine) as conn:
        due = store.due_experiment_ids(conn, now)
    for experiment_id, workspace_id, planned in due:
        principal = optimizer_principal(workspace_id)
        try:
            experiment = get_experiment(container, principal, experiment_id)
            next_at = next_allocation_after(experiment.spec, now)
            with transaction(container.engine) as conn:
                claimed = store.claim_experiment(conn, experiment_id, planned, next_at)
            if not claimed:
                continue
            allocate_experiment(container, principal, experiment_id, rng=rng)
            tick.allocations.append(experiment_id)
        except Exception as exc:
            logger.exception("allocation of experiment %s failed", experiment_id)
            tick.errors.append(f"experiment {experiment_id}: {exc.__class__.__name__}: {exc}")


def run_due_jobs(
    container: Container,
    now: datetime | None = None,
    *,
    http: httpx.Client | None = None,
    rng: np.random.Generator | None = None,
) -> SchedulerTick:
    """Run every rule and bandit allocation due at `now` (default: the container's clock)."""
    at = now or container.clock.now()
    tick = SchedulerTick()
    _run_rules(container, at, tick, http)
    _run_allocations(container, at, tick, rng)
    return tick


def run_scheduler(
    container: Container,
    stop: threading.Event,
    *,
    poll_seconds: float = DEFAULT_POLL_SECONDS,
    http: httpx.Client | None = None,
) -> None:
    """Run due jobs every `poll_seconds` until `stop` is set."""
    client = http or httpx.Client(timeout=10.0)
    try:
        while not stop.is_set():
            try:
                run_due_jobs(container, http=client)
            except Exception:  # the store may be briefly unreachable; try again next poll
                logger.exception("scheduler pass failed")
            stop.wait(poll_seconds)
    finally:
        if http is None:
            client.close()


def start_scheduler(
    container: Container,
    *,
    poll_seconds: float = DEFAULT_POLL_SECONDS,
    http: httpx.Client | None = None,
) -> tuple[threading.Thread, threading.Event]:
    """Start the scheduler in a daemon thread; set the returned event to stop it."""
    stop = threading.Event()
    thread = threading.Thread(
        target=run_scheduler,
        args=(container, stop),
        kwargs={"poll_seconds": poll_seconds, "http": http},
        name="perfmark-scheduler",
        daemon=True,
    )
    thread.start()
    return thread, stop
