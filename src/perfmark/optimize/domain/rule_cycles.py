"""Check a rule set before it runs: pairs that undo each other, and rules that can never fire."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from perfmark.errors import ValidationError
from perfmark.optimize.domain.rules import Comparison, Condition, Match, Operator, Rule

__all__ = [
    "RuleWarning",
    "RuleWarningCode",
    "can_hold_together",
    "check_rule_set",
    "find_rule_cycles",
]

# Lowest possible value of each metric; roi is rewritten as roas - 1 before this is used, and
# profit has no lower bound. A percent change of a non-negative metric is at least -100%.
_NON_NEGATIVE = frozenset(
    {
        "impressions",
        "clicks",
        "conversions",
        "cost",
        "revenue",
        "cpc",
        "cpa",
        "cpl",
        "roas",
        "cr",
        "ctr",
        "epc",
    }
)


class RuleWarningCode(StrEnum):
    """The kind of problem found in a rule set."""

    CYCLE = "cycle"
    NEVER_FIRES = "never_fires"


@dataclass(frozen=True)
class RuleWarning:
    """A problem with a rule set, reported before anything runs."""

    code: RuleWarningCode
    rule_ids: tuple[str, ...]
    targets: tuple[str, ...]
    message: str


@dataclass(frozen=True)
class _Bound:
    value: Decimal
    strict: bool


@dataclass
class _Interval:
    """The values one (metric, comparison) may take; None is unbounded."""

    low: _Bound | None = None
    high: _Bound | None = None
    excluded: frozenset[Decimal] = frozenset()

    def raise_low(self, bound: _Bound) -> None:
        if (
            self.low is None
            or bound.value > self.low.value
            or (bound.value == self.low.value and bound.strict)
        ):
            self.low = bound

    def lower_high(self, bound: _Bound) -> None:
        if (
            self.high is None
            or bound.value < self.high.value
            or (bound.value == self.high.value and bound.strict)
        ):
            self.high = bound

    def empty(self) -> bool:
        if self.low is None or self.high is None:
            return False
        if self.low.value < self.high.value:
            return False
        if self.low.value > self.high.value or self.low.strict or self.high.strict:
            return True
        return self.low.value in self.excluded


def _normalised(condition: Condition) -> tuple[str, Comparison, Operator, Decimal]:
    # roi = roas - 1 exactly, so "roi < 0" and "roas > 1.5" are recognised as exclusive.
    if condition.metric == "roi" and condition.comparison is Comparison.VALUE:
        return "roas", condition.comparison, condition.operator, condition.threshold + 1
    return condition.metric, condition.comparison, condition.operator, condition.threshold


def can_hold_together(conditions: Sequence[Condition]) -> bool:
    """Whether some metrics could satisfy every condition at once.

    Each metric is bounded on its own; links between metrics (cpa = cost / conversions) are
    ignored except roi = roas - 1, so the answer errs toward "yes": a reported cycle may be
    impossible in practice, but a cycle is never missed for that reason.
    """
    intervals: dict[tuple[str, Comparison], _Interval] = {}
    for condition in conditions:
        metric, comparison, operator, threshold = _normalised(condition)
        key = (metric, comparison)
        if key not in intervals:
            interval = _Interval()
            if comparison is Comparison.CHANGE_PCT and metric != "profit":
                interval.raise_low(_Bound(Decimal(-100), strict=False))
            elif comparison is Comparison.VALUE and metric in _NON_NEGATIVE:
                interval.raise_low(_Bound(Decimal(0), strict=False))
            intervals[key] = interval
        interval = intervals[key]
        if operator in (Operator.GT, Operator.GE):
            interval.raise_low(_Bound(threshold, strict=operator is Operator.GT))
        elif operator in (Operator.LT, Operator.LE):
            interval.lower_high(_Bound(threshold, strict=operator is Operator.LT))
        elif operator is Operator.EQ:
            interval.raise_low(_Bound(threshold, strict=False))
            interval.lower_high(_Bound(threshold, strict=False))
        else:
            interval.excluded = interval.excluded | {threshold}
        if interval.empty():
            return False
    return True


def _clauses(rule: Rule) -> list[list[Condition]]:
    """The rule's firing condition as alternatives, each a list that must all hold."""
    # A minimum-sample guard is a lower bound on a plain count, so it joins every alternative.
    guards = [Condition(g.metric, Operator.GE, g.minimum) for g in rule.min_sample]
    if rule.match is Match.ALL:
        return [[*rule.conditions, *guards]]
    return [[condition, *guards] for condition in rule.conditions]


def _can_fire(rule: Rule) -> bool:
    return any(can_hold_together(clause) for clause in _clauses(rule))


def _can_fire_together(first: Rule, second: Rule) -> bool:
    return any(can_hold_together(a + b) for a in _clauses(first) for b in _clauses(second))


def _targets_text(targets: tuple[str, ...], kind: str) -> str:
    return f"every {kind}" if not targets else f"{kind} {', '.join(targets)}"


def find_rule_cycles(rules: Sequence[Rule]) -> tuple[RuleWarning, ...]:
    """Pairs of enabled rules on overlapping targets whose actions undo each other and whose
    conditions can hold at the same time (they would flip a target back and forth)."""
    seen: set[str] = set()
    for rule in rules:
        if rule.rule_id in seen:
            raise ValidationError(
                f"rule_id {rule.rule_id!r} appears twice in the rule set; ids must be unique",
                field="rule_id",
            )
        seen.add(rule.rule_id)
    active = [r for r in rules if r.enabled]
    warnings: list[RuleWarning] = []
    for i, first in enumerate(active):
        for second in active[i + 1 :]:
            shared = first.scope.overlap(second.scope)
            if shared is None:
                continue
            clashes = [(a, b) for a in first.actions for b in second.actions if a.undoes(b)]
            if not clashes or not _can_fire_together(first, second):
                continue
            a, b = clashes[0]
            warnings.append(
                RuleWarning(
                    code=RuleWarningCode.CYCLE,
                    rule_ids=(first.rule_id, second.rule_id),
                    targets=shared,
                    message=(
                        f"rules {first.rule_id!r} ({a.describe()}) and {second.rule_id!r} "
                        f"({b.describe()}) undo each other on "
                        f"{_targets_text(shared, first.scope.kind.value)} and their conditions "
                        "can hold at the same time, so they would flip it back and forth; make "
                        "their conditions exclusive (e.g. a gap between the thresholds) or "
                        "narrow their targets"
                    ),
                )
            )
    return tuple(warnings)


def check_rule_set(rules: Sequence[Rule]) -> tuple[RuleWarning, ...]:
    """Every warning about a rule set: cycles, then rules whose conditions can never all hold."""
    warnings = list(find_rule_cycles(rules))
    for rule in rules:
        if rule.enabled and not _can_fire(rule):
            warnings.append(
                RuleWarning(
                    code=RuleWarningCode.NEVER_FIRES,
                    rule_ids=(rule.rule_id,),
                    targets=rule.scope.target_ids,
                    message=(
                        f"rule {rule.rule_id!r} can never fire: its conditions "
                        f"({', '.join(c.describe() for c in rule.conditions)}) and minimum "
                        "sample cannot all hold at once; fix the thresholds"
                    ),
                )
            )
    return tuple(warnings)
