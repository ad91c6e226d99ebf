"""Read an experiment's arms from the reports, analyse them, and let Thompson sampling allocate.

Visitors of an arm are its valid clicks and conversions its conversions (of the
experiment's goal when it names one), capped at the clicks so that at most one conversion
counts per visit, as the Beta-Binomial model assumes; value is those conversions' revenue.
Clicks rather than distinct visitors because they are additive: the report layer answers
them in one aggregation, where distinct counts need two more (and a visitor who returns is
shown the rotation again, so each visit is a trial of the arm it landed on).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

import numpy as np

from perfmark.adapters.store.engine import transaction
from perfmark.errors import ValidationError
from perfmark.optimize import store
from perfmark.optimize.domain.bandit import RotationWeights, thompson_weights
from perfmark.optimize.domain.experiments import (
    ArmObservation,
    ExperimentAnalysis,
    Metric,
    analyze_conversions,
)
from perfmark.optimize.domain.experiments_stopping import (
    SampleRatioCheck,
    StoppingDecision,
    check_sample_ratio,
    decide_stop,
)
from perfmark.optimize.domain.experiments_value import DEFAULT_VALUE_DRAWS, analyze_value
from perfmark.optimize.services.experiments import (
    ArmKind,
    Experiment,
    ExperimentStatus,
    get_experiment,
    rotation_of,
)
from perfmark.optimize.services.metrics import (
    MetricQuery,
    grouped_metrics,
    local_today,
    workspace_zone,
)
from perfmark.optimize.services.rule_actions import item_json
from perfmark.optimize.services.rules import require_optimizer_reader, require_optimizer_writer
from perfmark.reports.domain.request import MAX_RANGE_DAYS
from perfmark.services import catalog
from perfmark.services.container import Container, Principal

__all__ = [
    "AllocationResult",
    "ExperimentReport",
    "allocate_experiment",
    "analyze_experiment",
    "arm_observations",
    "served_shares",
]

_DIMENSION = {
    ArmKind.LANDING_PAGE: "landing_page",
    ArmKind.CREATIVE: "creative",
    ArmKind.OFFER: "offer",
}


@dataclass(frozen=True)
class ExperimentReport:
    """An experiment's data and statistics: posteriors, stopping decision, sample-ratio check."""

    experiment: Experiment
    first_day: date
    last_day: date
    arms: tuple[ArmObservation, ...]
    analysis: ExperimentAnalysis
    decision: StoppingDecision
    sample_ratio: SampleRatioCheck | None
    intended_weights: tuple[float, ...] | None
    notes: tuple[str, ...]


def _days(container: Container, experiment: Experiment, now: datetime) -> tuple[date, date]:
    today = local_today(container, experiment.workspace_id, now)
    first = experiment.spec.start or experiment.created_at.date()
    last = max(first, min(experiment.spec.end or today, today))
    # A report reads at most MAX_RANGE_DAYS days: an older start reads the latest of them.
    return max(first, last - timedelta(days=MAX_RANGE_DAYS - 1)), last


def _query(experiment: Experiment, days: tuple[date, date], extra: tuple[str, ...] = ()) -> Any:
    spec = experiment.spec
    filters: dict[str, tuple[str, ...]] = {_DIMENSION[spec.arm_kind]: spec.arms}
    if spec.campaign_id is not None:
        filters["campaign"] = (spec.campaign_id,)
    if spec.offer_id is not None:
        filters["offer"] = (spec.offer_id,)
    return MetricQuery(
        workspace_id=experiment.workspace_id,
        start=days[0],
        end=days[1],
        dimensions=(_DIMENSION[spec.arm_kind], *extra),
        metrics=("clicks", "conversions", "revenue"),
        filters=filters,
        goal=spec.goal,
    )


def arm_observations(
    container: Container, experiment: Experiment, days: tuple[date, date]
) -> tuple[tuple[ArmObservation, ...], tuple[str, ...]]:
    """Each arm's visitors, converting visitors and value over the days, and any notes."""
    groups = grouped_metrics(container, _query(experiment, days))
    notes: list[str] = []
    arms = []
    with_value = experiment.spec.metric is Metric.VALUE_PER_VISITOR
    for name in experiment.spec.arms:
        values = groups.get((name,), {})
        visitors = max(int(values.get("clicks", 0)), 0)
        conversions = max(int(values.get("conversions", 0)), 0)
        if conversions > visitors:
            # Repeat conversions of one click, or conversions of clicks before the first day.
            notes.append(
                f"arm {name}: {conversions} conversions but {visitors} clicks in the period; "
                "counted as at most one conversion per click"
            )
            conversions = visitors
        value = max(float(values.get("revenue", 0)), 0.0) if conversions else 0.0
        arms.append(
            ArmObservation(name, visitors, conversions, value_sum=value if with_value else None)
        )
    return tuple(arms), tuple(notes)


def _current_weights(
    container: Container, principal: Principal, experiment: Experiment
) -> dict[str, int]:
    rotation = rotation_of(container, principal, experiment.spec)
    return {item.key: item.weight for item in rotation.items if item.key in experiment.spec.arms}


def served_shares(
    history: list[tuple[datetime, dict[str, int]]], start: datetime, end: datetime
) -> dict[str, float]:
    """Each arm's share of the rotation averaged over [start, end) (weights held piecewise)."""
    totals: dict[str, float] = defaultdict(float)
    span = (end - start).total_seconds()
    for index, (at, weights) in enumerate(history):
        until = history[index + 1][0] if index + 1 < len(history) else end
        begin = start if index == 0 else max(at, start)
        seconds = (min(until, end) - begin).total_seconds()
        if seconds <= 0:
            continue
        weight_sum = sum(weights.values()) or 1
        for name, weight in weights.items():
            totals[name] += weight / weight_sum * seconds / span
    return totals


def _intended_weights(
    container: Container,
    principal: Principal,
    experiment: Experiment,
    days: tuple[date, date],
) -> tuple[float, ...] | None:
    if experiment.spec.arm_kind is ArmKind.OFFER:
        return None
    with transaction(container.engine) as conn:
        history = store.weight_history(conn, experiment.id)
    if len(history) <= 1:
        weights = history[0][1] if history else _current_weights(container, principal, experiment)
        return tuple(float(weights.get(name, 0)) for name in experiment.spec.arms)
    # The split moved: expected visitors are each day's visitors times that day's shares.
    zone = workspace_zone(container, experiment.workspace_id)
    daily = grouped_metrics(container, _query(experiment, days, ("day",)))
    per_day: dict[str, float] = defaultdict(float)
    for (_arm, day), values in daily.items():
        per_day[day] += float(values.get("clicks", 0))
    expected: dict[str, float] = defaultdict(float)
    for day, visitors in per_day.items():
        start = datetime.combine(date.fromisoformat(day), time(0), zone)
        shares = served_shares(history, start, start + timedelta(days=1))
        for name in experiment.spec.arms:
            expected[name] += visitors * shares.get(name, 0.0)
    return tuple(expected[name] for name in experiment.spec.arms)


def analyze_experiment(
    container: Container,
    principal: Principal,
    experiment_id: str,
    *,
    rng: np.random.Generator | None = None,
    draws: int = DEFAULT_VALUE_DRAWS,
) -> ExperimentReport:
    """Posteriors, P(best), expected loss, intervals, the stopping decision and the SRM check."""
    require_optimizer_reader(principal)
    experiment = get_experiment(container, principal, experiment_id)
    spec = experiment.spec
    days = _days(container, experiment, container.clock.now())
    arms, notes = arm_observations(container, experiment, days)
    if spec.metric is Metric.CONVERSION_RATE:
        analysis = analyze_conversions(arms, credible_level=spec.credible_level)
    else:
        analysis = analyze_value(
            arms, rng or np.random.default_rng(), draws=draws, credible_level=spec.credible_level
        )
    intended = _intended_weights(container, principal, experiment, days)
    sample_ratio = None
    all_notes = list(notes)
    if intended is not None and sum(arm.visitors for arm in arms) > 0:
        sample_ratio = check_sample_ratio(arms, intended)
    elif intended is None:
        all_notes.append("no sample-ratio check: offers are not split by a rotation")
    decision = decide_stop(analysis, spec.stopping, sample_ratio=sample_ratio)
    return ExperimentReport(
        experiment=experiment,
        first_day=days[0],
        last_day=days[1],
        arms=arms,
        analysis=analysis,
        decision=decision,
        sample_ratio=sample_ratio,
        intended_weights=intended,
        notes=tuple(all_notes),
    )


@dataclass(frozen=True)
class AllocationResult:
    """One Thompson-sampling allocation: the weights drawn, and the rotation before and after."""

    experiment_id: str
    at: datetime
    applied: bool
    weights: RotationWeights | None
    before: dict[str, int]
    after: dict[str, int]
    arms: tuple[ArmObservation, ...]
    reason: str


def _audit(
    container: Container, experiment: Experiment, result: AllocationResult, status: str
) -> None:
    data: dict[str, Any] = {
        "before": result.before,
        "after": result.after,
        "arms": [
            {
                "name": a.name,
                "visitors": a.visitors,
                "conversions": a.conversions,
                "value_sum": a.value_sum,
            }
            for a in result.arms
        ],
    }
    if result.weights is not None:
        data["best_shares"] = list(result.weights.best_shares)
        data["weights"] = list(result.weights.weights)
        data["min_share"] = result.weights.min_share
        data["draws"] = result.weights.draws
    with transaction(container.engine) as conn:
        store.add_audit(
            conn,
            store.AuditEntry(
                workspace_id=experiment.workspace_id,
                source="bandit",
                source_id=experiment.id,
                target_kind=experiment.spec.arm_kind.value,
                target_id=experiment.spec.campaign_id or experiment.spec.offer_id or "",
                at=result.at,
                status=status,
                applied=result.applied,
                reason=result.reason,
                data=data,
            ),
        )


def allocate_experiment(
    container: Container,
    principal: Principal,
    experiment_id: str,
    *,
    rng: np.random.Generator | None = None,
    dry_run: bool = False,
) -> AllocationResult:
    """Draw Thompson weights from the evidence so far and PATCH the rotation (campaign or offer).

    Every arm keeps at least the experiment's `min_share` (exploration); items of the
    rotation that are not arms keep their weights. A dry run draws and logs, changes nothing.
    """
    if dry_run:
        require_optimizer_reader(principal)
    else:
        require_optimizer_writer(principal)
    experiment = get_experiment(container, principal, experiment_id)
    spec = experiment.spec
    if spec.arm_kind is ArmKind.OFFER:
        raise ValidationError(
            "offer experiments cannot be allocated: the tracker rotates landing pages and "
            "creatives, not offers",
            field="arm_kind",
        )
    now = container.clock.now()
    rotation = rotation_of(container, principal, spec)
    items = list(rotation.items)
    before = {item.key: item.weight for item in items}
    days = _days(container, experiment, now)
    observed, _notes = arm_observations(container, experiment, days)
    live = [arm for arm in observed if arm.name in before]
    if spec.status is ExperimentStatus.STOPPED or len(live) < 2:
        why = (
            "the experiment is stopped"
            if spec.status is ExperimentStatus.STOPPED
            else ("fewer than 2 arms are still in the rotation")
        )
        result = AllocationResult(
            experiment.id, now, False, None, before, before, observed, f"no allocation: {why}"
        )
        _audit(container, experiment, result, "skipped")
        return result
    try:
        weights = thompson_weights(
            live,
            rng or np.random.default_rng(),
            metric=spec.metric,
            min_share=spec.min_share,
            sharpness=spec.sharpness,
            floor_evidence=spec.floor_evidence,
        )
    except ValidationError as exc:  # e.g. value per visitor before any conversion
        result = AllocationResult(
            experiment.id,
            now,
            False,
            None,
            before,
            before,
            observed,
            f"no allocation: {exc.message}",
        )
        _audit(container, experiment, result, "skipped")
        return result
    new_weight = dict(zip(weights.names, weights.integer_weights, strict=True))
    after = {key: new_weight.get(key, weight) for key, weight in before.items()}
    shares = ", ".join(
        f"{n} {w}" for n, w in zip(weights.names, weights.integer_weights, strict=True)
    )
    reason = f"P(best) by Thompson draws -> weights {shares} (min share {weights.min_share:g})"
    applied = not dry_run and after != before
    if applied:
        weighted = [{**item_json(item), "weight": after[item.key]} for item in items]
        catalog.update_object(
            container, principal, rotation.kind, rotation.object_id, {rotation.field: weighted}
        )
    if not dry_run:
        with transaction(container.engine) as conn:
            store.add_weights(
                conn, experiment.id, now, {k: after[k] for k in spec.arms if k in after}
            )
    result = AllocationResult(
        experiment.id,
        now,
        applied,
        weights,
        before,
        after,
        observed,
        ("dry run, would set: " if dry_run else "") + reason,
    )
    _audit(container, experiment, result, "dry_run" if dry_run else "allocated")
    return result
