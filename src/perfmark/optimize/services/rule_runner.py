"""Run a rule: read each target's metrics for its windows, judge, act, and write the audit log.

Windows are whole local days of the workspace (reports are by day): a rule run at `now`
with `window_days = w` reads the w local days ending with the day of the last instant
before `now` (today so far included), and the w days before them for a change condition.
Run at local midnight, that is exactly `[now - w, now)` of `rule_windows`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx

from perfmark.adapters.store.engine import transaction
from perfmark.adapters.store.kinds import CAMPAIGNS
from perfmark.domain.accounts import Role
from perfmark.optimize import store
from perfmark.optimize.domain.rule_evaluation import (
    EvaluationStatus,
    MetricSnapshot,
    RuleEvaluation,
    evaluate,
)
from perfmark.optimize.domain.rules import ScopeKind
from perfmark.optimize.services.metrics import (
    SNAPSHOT_METRICS,
    MetricQuery,
    grouped_metrics,
    local_today,
    snapshot_of,
)
from perfmark.optimize.services.rule_actions import (
    ActionOutcome,
    ActionTarget,
    all_records,
    apply_action,
)
from perfmark.optimize.services.rules import (
    StoredRule,
    get_rule,
    require_optimizer_reader,
    require_optimizer_writer,
    split_target,
)
from perfmark.services.container import Container, Principal

__all__ = [
    "RuleRun",
    "TargetResult",
    "evaluation_to_json",
    "optimizer_principal",
    "rule_dates",
    "run_rule",
    "run_stored_rule",
]


def optimizer_principal(workspace_id: str) -> Principal:
    """The authority the scheduler acts with: the workspace's owner, named "optimizer"."""
    return Principal(workspace_id, Role.OWNER, actor_id="optimizer")


@dataclass(frozen=True)
class TargetResult:
    """One target's evaluation, the actions taken and what they did."""

    evaluation: RuleEvaluation
    outcomes: tuple[ActionOutcome, ...]
    applied: bool


@dataclass(frozen=True)
class RuleRun:
    """A rule run over all its targets."""

    rule_id: str
    at: datetime
    dry_run: bool
    current_days: tuple[date, date]
    previous_days: tuple[date, date]
    targets: tuple[TargetResult, ...]


def rule_dates(
    container: Container, stored: StoredRule, now: datetime
) -> tuple[tuple[date, date], tuple[date, date]]:
    """The local dates [first, last] of the rule's window and of the one before it."""
    last = local_today(container, stored.workspace_id, now)
    first = last - timedelta(days=stored.rule.window_days - 1)
    previous_last = first - timedelta(days=1)
    return (first, last), (
        previous_last - timedelta(days=stored.rule.window_days - 1),
        previous_last,
    )


_DIMENSIONS = {
    ScopeKind.CAMPAIGN: ("campaign",),
    ScopeKind.PUBLISHER: ("publisher",),
    ScopeKind.CREATIVE: ("campaign", "creative"),
    ScopeKind.LANDING_PAGE: ("campaign", "landing_page"),
}


def _dimensions(stored: StoredRule) -> tuple[str, ...]:
    if stored.rule.scope.kind is ScopeKind.SUB_ID:
        return ("publisher", stored.sub_field)
    return _DIMENSIONS[stored.rule.scope.kind]


def _filters(stored: StoredRule) -> dict[str, tuple[str, ...]]:
    kind = stored.rule.scope.kind
    filters: dict[str, tuple[str, ...]] = {}
    if stored.campaign_ids:
        filters["campaign"] = stored.campaign_ids
    owners = tuple(sorted({split_target(kind, t)[0] for t in stored.rule.scope.target_ids}))
    if owners:
        owner_dimension = _dimensions(stored)[0]
        if owner_dimension in filters:
            owners = tuple(o for o in owners if o in filters[owner_dimension]) or ("-",)
        filters[owner_dimension] = owners
    return filters


def _metrics(
    container: Container, stored: StoredRule, days: tuple[date, date]
) -> dict[str, MetricSnapshot]:
    reads_leads = any(c.metric == "cpl" for c in stored.rule.conditions)
    query = MetricQuery(
        workspace_id=stored.workspace_id,
        start=days[0],
        end=days[1],
        dimensions=_dimensions(stored),
        metrics=(*SNAPSHOT_METRICS, "leads") if reads_leads else SNAPSHOT_METRICS,
        filters=_filters(stored),
        goal=stored.goal,
    )
    return {
        ":".join(key): snapshot_of(values)
        for key, values in grouped_metrics(container, query).items()
        if all(key)  # events without the dimension (no creative, no sub id) are no target
    }


def _targets(
    container: Container, stored: StoredRule, *metrics: dict[str, MetricSnapshot]
) -> list[str]:
    if stored.rule.scope.target_ids:
        return list(stored.rule.scope.target_ids)
    found: set[str] = set()
    for snapshots in metrics:
        found |= set(snapshots)
    if stored.rule.scope.kind is ScopeKind.CAMPAIGN:
        # A campaign with no traffic in the window is still a target (e.g. one to resume).
        owner = optimizer_principal(stored.workspace_id)
        live = {record.id for record in all_records(container, owner, CAMPAIGNS)}
        found |= live if not stored.campaign_ids else live & set(stored.campaign_ids)
    return sorted(found)


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def evaluation_to_json(evaluation: RuleEvaluation) -> dict[str, Any]:
    """Every number of an evaluation as JSON-safe data (Decimals as exact strings)."""
    return {
        "rule_id": evaluation.rule_id,
        "rule_name": evaluation.rule_name,
        "scope_kind": evaluation.scope_kind.value,
        "target_id": evaluation.target_id,
        "evaluated_at": evaluation.evaluated_at.isoformat(),
        "window_start": evaluation.window_start.isoformat(),
        "window_end": evaluation.window_end.isoformat(),
        "previous_window_start": evaluation.previous_window_start.isoformat(),
        "previous_window_end": evaluation.previous_window_end.isoformat(),
        "status": evaluation.status.value,
        "fired": evaluation.fired,
        "dry_run": evaluation.dry_run,
        "reason": evaluation.reason,
        "conditions": [
            {
                "condition": c.condition,
                "metric": c.metric,
                "comparison": c.comparison.value,
                "operator": c.operator,
                "threshold": str(c.threshold),
                "value_now": _text(c.value_now),
                "value_previous": _text(c.value_previous),
                "compared_value": _text(c.compared_value),
                "met": c.met,
                "note": c.note,
            }
            for c in evaluation.conditions
        ],
        "sample_checks": [
            {
                "metric": s.metric,
                "minimum": str(s.minimum),
                "value_now": str(s.value_now),
                "value_previous": _text(s.value_previous),
                "met": s.met,
            }
            for s in evaluation.sample_checks
        ],
        "last_fired_at": None
        if evaluation.last_fired_at is None
        else evaluation.last_fired_at.isoformat(),
        "cooldown_until": None
        if evaluation.cooldown_until is None
        else evaluation.cooldown_until.isoformat(),
        "actions": [action.describe() for action in evaluation.actions],
    }


def _snapshot_json(snapshot: MetricSnapshot | None) -> dict[str, Any] | None:
    if snapshot is None:
        return None
    return {
        "impressions": snapshot.impressions,
        "clicks": snapshot.clicks,
        "conversions": snapshot.conversions,
        "cost": str(snapshot.cost),
        "revenue": str(snapshot.revenue),
        "leads": snapshot.leads,
    }


def run_stored_rule(
    container: Container,
    principal: Principal,
    stored: StoredRule,
    now: datetime,
    *,
    dry_run: bool = False,
    http: httpx.Client | None = None,
) -> RuleRun:
    """Evaluate a rule on every target; act where it fires (unless a dry run); audit each."""
    rule = replace(stored.rule, dry_run=True) if dry_run else stored.rule
    current_days, previous_days = rule_dates(container, stored, now)
    now_metrics = _metrics(container, stored, current_days)
    previous_metrics = (
        _metrics(container, stored, previous_days) if rule.needs_previous_period else None
    )
    targets = _targets(
        container,
        stored,
        now_metrics,
        *([previous_metrics] if previous_metrics is not None else []),
    )
    with transaction(container.engine) as conn:
        fired_at = store.last_fired(conn, rule.rule_id)
    results = []
    zero = MetricSnapshot()
    for target_id in targets:
        snapshot = now_metrics.get(target_id, zero)
        previous = None if previous_metrics is None else previous_metrics.get(target_id, zero)
        evaluation = evaluate(
            rule, snapshot, previous, fired_at.get(target_id), now, target_id=target_id
        )
        outcomes: tuple[ActionOutcome, ...] = ()
        if evaluation.should_apply:
            where = ActionTarget(rule.scope.kind, target_id, stored.campaign_ids, stored.sub_field)
            outcomes = tuple(
                apply_action(container, principal, where, action, evaluation, http)
                for action in evaluation.actions
            )
        applied = any(outcome.changed for outcome in outcomes)
        status = evaluation.status.value
        if evaluation.should_apply and outcomes and not all(o.ok for o in outcomes):
            status = "fired_with_errors"
        data = {
            "evaluation": evaluation_to_json(evaluation),
            "metrics_now": _snapshot_json(snapshot),
            "metrics_previous": _snapshot_json(previous),
            "days": [current_days[0].isoformat(), current_days[1].isoformat()],
            "previous_days": [previous_days[0].isoformat(), previous_days[1].isoformat()],
            "goal": stored.goal,
            "outcomes": [outcome.to_json() for outcome in outcomes],
            "actor": principal.actor_id,
        }
        reason = evaluation.reason
        if outcomes:
            reason += " -> " + "; ".join(
                o.detail if o.ok else f"{o.action} failed: {o.detail}" for o in outcomes
            )
        with transaction(container.engine) as conn:
            if evaluation.status is EvaluationStatus.FIRED:
                store.set_last_fired(conn, rule.rule_id, target_id, now)
            store.add_audit(
                conn,
                store.AuditEntry(
                    workspace_id=stored.workspace_id,
                    source="rule",
                    source_id=rule.rule_id,
                    target_kind=rule.scope.kind.value,
                    target_id=target_id,
                    at=now,
                    status=status,
                    applied=applied,
                    reason=reason,
                    data=data,
                ),
            )
        results.append(TargetResult(evaluation, outcomes, applied))
    with transaction(container.engine) as conn:
        store.mark_rule_run(conn, rule.rule_id, now)
    return RuleRun(rule.rule_id, now, rule.dry_run, current_days, previous_days, tuple(results))


def run_rule(
    container: Container,
    principal: Principal,
    rule_id: str,
    *,
    dry_run: bool = False,
    http: httpx.Client | None = None,
) -> RuleRun:
    """Run a rule now (the container's clock); a dry run only evaluates and logs."""
    if dry_run:
        require_optimizer_reader(principal)
    else:
        require_optimizer_writer(principal)
    stored = get_rule(container, principal, rule_id)
    return run_stored_rule(
        container, principal, stored, container.clock.now(), dry_run=dry_run, http=http
    )
