"""Billing's scheduled checks: release held campaigns, auto-approve after the hold period."""

from __future__ import annotations

from dataclasses import dataclass

from perfmark.adapters.store.engine import transaction
from perfmark.billing.services.conversions import EmitEvent, auto_approve
from perfmark.billing.services.holds import release_holds
from perfmark.services.container import Container

__all__ = ["ScheduledRun", "run_billing_checks"]


@dataclass(frozen=True)
class ScheduledRun:
    """What one run of the checks did."""

    released_campaigns: tuple[str, ...]
    approved: int


def run_billing_checks(container: Container, *, emit: EmitEvent | None = None) -> ScheduledRun:
    """Reactivate campaigns whose period rolled over or whose funds arrived; approve after hold.

    Each approval's lake event is passed to `emit` once its transaction committed.
    """
    now = container.clock.now()
    with transaction(container.engine) as conn:
        released = release_holds(conn, now)
    with transaction(container.engine) as conn:
        events = auto_approve(conn, now)
    for event in events:
        if emit is not None:
            emit(event)
    return ScheduledRun(tuple(released), len(events))
