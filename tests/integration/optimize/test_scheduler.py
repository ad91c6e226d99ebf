"""The scheduler: due rules and bandit allocations run once each, then wait for their interval."""

from __future__ import annotations

from datetime import timedelta

from starlette.testclient import TestClient

from perfmark.adapters.store.engine import transaction
from perfmark.optimize import store
from perfmark.optimize.services import experiments, rules
from perfmark.workers.scheduler import run_due_jobs, start_scheduler

from .conftest import NOW, Seeded, traffic, write_lake

RULE = {
    "name": "CPA guard", "scope": {"kind": "campaign"}, "window_days": 2, "interval_minutes": 30,
    "conditions": [{"metric": "cpa", "operator": ">", "threshold": "40"}],
    "actions": [{"kind": "pause"}],
}  # fmt: skip


def _audit_count(seeded: Seeded, source: str) -> int:
    with transaction(seeded.container.engine) as conn:
        return len(store.list_audit(conn, seeded.workspace_id, source=source, limit=1000))


def test_due_jobs_run_once_per_interval(seeded: Seeded) -> None:
    write_lake(seeded.container, traffic(seeded, "bad", "p1", NOW - timedelta(days=1), 100, 1))
    saved = rules.create_rule(seeded.container, seeded.owner, RULE)
    experiment = experiments.create_experiment(seeded.container, seeded.owner, {
        "name": "Pages", "arm_kind": "landing_page", "campaign_id": seeded.campaigns["good"],
        "arms": ["lp-a", "lp-b"], "allocation": True, "allocation_interval_minutes": 60})  # fmt: skip

    tick = run_due_jobs(seeded.container, NOW)
    assert tick.rules_run == [saved.rule.id] and tick.allocations == [experiment.id]
    assert tick.errors == []
    assert _audit_count(seeded, "rule") == 3  # one row per campaign
    assert _audit_count(seeded, "bandit") == 1
    # Claimed: the same moment again runs nothing.
    assert run_due_jobs(seeded.container, NOW).rules_run == []
    stored = rules.get_rule(seeded.container, seeded.owner, saved.rule.id)
    assert stored.next_run_at == NOW + timedelta(minutes=30) and stored.last_run_at == NOW
    # 30 minutes on, the rule is due again (the allocation, hourly, is not).
    later = run_due_jobs(seeded.container, NOW + timedelta(minutes=30))
    assert later.rules_run == [saved.rule.id] and later.allocations == []
    with transaction(seeded.container.engine) as conn:
        fired = [e for e in store.list_audit(conn, seeded.workspace_id, source="rule")
                 if e.status == "fired"]  # fmt: skip
    assert [e.target_id for e in fired] == [seeded.campaigns["bad"]]  # then it cooled down


def test_disabled_and_archived_rules_do_not_run(seeded: Seeded) -> None:
    first = rules.create_rule(seeded.container, seeded.owner, {**RULE, "enabled": False})
    second = rules.create_rule(seeded.container, seeded.owner, RULE)
    rules.archive_rule(seeded.container, seeded.owner, second.rule.id)
    assert run_due_jobs(seeded.container, NOW).rules_run == []
    assert first.rule.next_run_at is None


def test_the_scheduler_thread_stops_when_asked(seeded: Seeded, api: TestClient) -> None:
    rules.create_rule(seeded.container, seeded.owner, RULE)
    thread, stop = start_scheduler(seeded.container, poll_seconds=0.05)
    try:
        for _ in range(200):
            if _audit_count(seeded, "rule"):
                break
            thread.join(0.05)
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive()
    assert _audit_count(seeded, "rule") == 3
