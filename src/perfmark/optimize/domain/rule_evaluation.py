"""Evaluate one rule on one target's windowed metrics: a pure function and its audit record."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from perfmark.clock import utc
from perfmark.errors import ValidationError
from perfmark.optimize.domain.rules import (
    Action,
    Comparison,
    Condition,
    Match,
    Rule,
    ScopeKind,
    rule_windows,
)

__all__ = [
    "ConditionResult",
    "EvaluationStatus",
    "MetricSnapshot",
    "RuleEvaluation",
    "SampleCheck",
    "evaluate",
]

_INFINITY = Decimal("Infinity")


def _ratio(numerator: Decimal, denominator: Decimal) -> Decimal | None:
    # Spending with nothing to show makes CPA unbounded, so x/0 is +inf for x > 0 (a rule
    # "CPA > 40" must fire on cost without conversions); 0/0 says nothing and is undefined.
    if denominator == 0:
        if numerator == 0:
            return None
        return _INFINITY if numerator > 0 else -_INFINITY
    return numerator / denominator


@dataclass(frozen=True)
class MetricSnapshot:
    """Totals of one target over one window; every ratio metric is derived from these sums."""

    impressions: int = 0
    clicks: int = 0
    conversions: int = 0
    cost: Decimal = Decimal(0)
    revenue: Decimal = Decimal(0)
    # Leads for CPL when the goal counted as "conversions" is not the lead (None: same count).
    leads: int | None = None

    def __post_init__(self) -> None:
        for name in ("impressions", "clicks", "conversions", "leads"):
            value = getattr(self, name)
            if value is None and name == "leads":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValidationError(
                    f"{name} is {value!r}; it must be a whole number >= 0", field=name
                )
        for name in ("cost", "revenue"):
            value = getattr(self, name)
            if not isinstance(value, Decimal | int) or isinstance(value, bool):
                raise ValidationError(
                    f"{name} is {value!r}; give an exact Decimal amount", field=name
                )
            amount = Decimal(value)
            if not amount.is_finite() or amount < 0:
                raise ValidationError(f"{name} is {value!r}; it must be >= 0", field=name)
            object.__setattr__(self, name, amount)

    def value(self, metric: str) -> Decimal | None:
        """The metric's value over the window; None when it is undefined (0/0)."""
        cost, revenue = self.cost, self.revenue
        clicks, conversions = Decimal(self.clicks), Decimal(self.conversions)
        leads = conversions if self.leads is None else Decimal(self.leads)
        values: dict[str, Decimal | None] = {
            "impressions": Decimal(self.impressions),
            "clicks": clicks,
            "conversions": conversions,
            "cost": cost,
            "revenue": revenue,
            "profit": revenue - cost,
        }
        if metric in values:
            return values[metric]
        ratios: dict[str, tuple[Decimal, Decimal]] = {
            "cpc": (cost, clicks),
            "cpa": (cost, conversions),
            "cpl": (cost, leads),
            "roas": (revenue, cost),
            "roi": (revenue - cost, cost),
            "cr": (conversions, clicks),
            "ctr": (clicks, Decimal(self.impressions)),
            "epc": (revenue, clicks),
        }
        if metric not in ratios:
            raise ValidationError(f"metric {metric!r} is unknown", field="metric")
        return _ratio(*ratios[metric])


class EvaluationStatus(StrEnum):
    """The outcome of one evaluation."""

    FIRED = "fired"
    DRY_RUN = "dry_run"
    CONDITIONS_NOT_MET = "conditions_not_met"
    INSUFFICIENT_SAMPLE = "insufficient_sample"
    COOLDOWN = "cooldown"
    DISABLED = "disabled"


@dataclass(frozen=True)
class ConditionResult:
    """One condition with every number it compared."""

    condition: str
    metric: str
    comparison: Comparison
    operator: str
    threshold: Decimal
    value_now: Decimal | None
    value_previous: Decimal | None
    compared_value: Decimal | None
    met: bool
    note: str


@dataclass(frozen=True)
class SampleCheck:
    """One minimum-sample guard: the counts seen and whether they were enough."""

    metric: str
    minimum: Decimal
    value_now: Decimal
    value_previous: Decimal | None
    met: bool


@dataclass(frozen=True)
class RuleEvaluation:
    """The audit record of one evaluation: the numbers, the verdict and the reason."""

    rule_id: str
    rule_name: str
    scope_kind: ScopeKind
    target_id: str
    evaluated_at: datetime
    window_start: datetime
    window_end: datetime
    previous_window_start: datetime
    previous_window_end: datetime
    status: EvaluationStatus
    fired: bool
    dry_run: bool
    conditions: tuple[ConditionResult, ...]
    sample_checks: tuple[SampleCheck, ...]
    last_fired_at: datetime | None
    cooldown_until: datetime | None
    actions: tuple[Action, ...]
    reason: str

    @property
    def should_apply(self) -> bool:
        """Whether the caller must carry out `actions` now (fired and not a dry run)."""
        return self.status is EvaluationStatus.FIRED


def _change_pct(now: Decimal | None, previous: Decimal | None) -> tuple[Decimal | None, str]:
    if now is None or previous is None:
        return None, "undefined in one of the periods (0/0)"
    if not now.is_finite() or not previous.is_finite():
        return None, "infinite in one of the periods"
    if previous == 0:
        return None, "previous period value is 0, so a percent change is undefined"
    return (now - previous) / abs(previous) * 100, ""


def _check_condition(
    condition: Condition, now: MetricSnapshot, previous: MetricSnapshot | None
) -> ConditionResult:
    value_now = now.value(condition.metric)
    value_previous = None if previous is None else previous.value(condition.metric)
    note = ""
    if condition.comparison is Comparison.CHANGE_PCT:
        if previous is None:
            compared, note = None, "no previous period was given"
        else:
            compared, note = _change_pct(value_now, value_previous)
    else:
        compared = value_now
        if compared is None:
            note = f"{condition.metric} is undefined (0/0) in this window"
    met = compared is not None and condition.operator.holds(compared, condition.threshold)
    return ConditionResult(
        condition=condition.describe(),
        metric=condition.metric,
        comparison=condition.comparison,
        operator=condition.operator.value,
        threshold=condition.threshold,
        value_now=value_now,
        value_previous=value_previous,
        compared_value=compared,
        met=met,
        note=note,
    )


def _check_samples(
    rule: Rule, now: MetricSnapshot, previous: MetricSnapshot | None
) -> tuple[SampleCheck, ...]:
    checks: list[SampleCheck] = []
    for guard in rule.min_sample:
        value_now = now.value(guard.metric)
        assert value_now is not None  # sample metrics are plain sums, never undefined
        # A change on the previous period is only as good as that period's sample.
        value_previous = None
        met = value_now >= guard.minimum
        if rule.needs_previous_period and previous is not None:
            value_previous = previous.value(guard.metric)
            assert value_previous is not None
            met = met and value_previous >= guard.minimum
        checks.append(SampleCheck(guard.metric, guard.minimum, value_now, value_previous, met))
    return tuple(checks)


def _show(value: Decimal | None) -> str:
    if value is None:
        return "undefined"
    if not value.is_finite():
        return "infinite" if value > 0 else "-infinite"
    return f"{value.quantize(Decimal('0.0001')).normalize():f}"


def _explain(results: tuple[ConditionResult, ...], wanted: bool) -> str:
    parts = []
    for result in results:
        if result.met is not wanted:
            continue
        shown = _show(result.compared_value)
        what = (
            f"{result.metric} change"
            if result.comparison is Comparison.CHANGE_PCT
            else result.metric
        )
        unit = "%" if result.comparison is Comparison.CHANGE_PCT else ""
        relation = result.operator if wanted else f"not {result.operator}"
        text = f"{what} {shown}{unit} {relation} {_show(result.threshold)}{unit}"
        parts.append(f"{text} ({result.note})" if result.note else text)
    return "; ".join(parts)


def evaluate(
    rule: Rule,
    metrics_now: MetricSnapshot,
    metrics_previous: MetricSnapshot | None,
    last_fired_at: datetime | None,
    now: datetime,
    *,
    target_id: str = "",
) -> RuleEvaluation:
    """Judge `rule` on one target: every compared number, whether it fired, and why (or why not).

    The verdict, in order: a disabled rule does nothing; a failed minimum-sample guard wins over
    everything else; then the conditions; a rule whose conditions hold but that fired on this
    target less than `cooldown_hours` ago waits; otherwise it fires (or would, in a dry run).
    Conditions are computed in every case so the audit log always shows the numbers.
    """
    at = utc(now)
    last = None if last_fired_at is None else utc(last_fired_at)
    windows = rule_windows(rule, at)
    results = tuple(_check_condition(c, metrics_now, metrics_previous) for c in rule.conditions)
    samples = _check_samples(rule, metrics_now, metrics_previous)
    if rule.match is Match.ALL:
        conditions_met = all(r.met for r in results)
    else:
        conditions_met = any(r.met for r in results)
    cooldown_until = None
    if last is not None and last + rule.cooldown > at:
        cooldown_until = last + rule.cooldown
    short = [s for s in samples if not s.met]
    if not rule.enabled:
        status, reason = EvaluationStatus.DISABLED, "the rule is disabled"
    elif short:
        status = EvaluationStatus.INSUFFICIENT_SAMPLE
        reason = "insufficient sample: " + "; ".join(
            f"{s.metric} {_show(s.value_now)} < {_show(s.minimum)}"
            if s.value_now < s.minimum
            else f"{s.metric} {_show(s.value_previous)} < {_show(s.minimum)} in the previous period"
            for s in short
        )
    elif not conditions_met:
        status = EvaluationStatus.CONDITIONS_NOT_MET
        reason = "conditions not met: " + _explain(results, wanted=False)
    elif cooldown_until is not None:
        status = EvaluationStatus.COOLDOWN
        reason = (
            f"conditions met ({_explain(results, wanted=True)}) but the rule fired at "
            f"{last.isoformat() if last else ''} and is cooling down until "
            f"{cooldown_until.isoformat()}"
        )
    else:
        status = EvaluationStatus.DRY_RUN if rule.dry_run else EvaluationStatus.FIRED
        prefix = "dry run, would fire: " if rule.dry_run else "fired: "
        reason = prefix + _explain(results, wanted=True)
    fired = status in (EvaluationStatus.FIRED, EvaluationStatus.DRY_RUN)
    return RuleEvaluation(
        rule_id=rule.rule_id,
        rule_name=rule.name,
        scope_kind=rule.scope.kind,
        target_id=target_id,
        evaluated_at=at,
        window_start=windows.current_start,
        window_end=windows.current_end,
        previous_window_start=windows.previous_start,
        previous_window_end=windows.previous_end,
        status=status,
        fired=fired,
        dry_run=rule.dry_run,
        conditions=results,
        sample_checks=samples,
        last_fired_at=last,
        cooldown_until=cooldown_until,
        actions=rule.actions if fired else (),
        reason=reason,
    )
