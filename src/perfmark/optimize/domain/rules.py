"""Automated rules: conditions over windowed metrics, guard rails and actions, checked on build."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any, TypeVar

from perfmark.clock import utc
from perfmark.domain.rules import check_http_url, check_name
from perfmark.errors import ValidationError

__all__ = [
    "MAX_COOLDOWN_HOURS",
    "MAX_PERCENT_CHANGE",
    "MAX_WINDOW_DAYS",
    "METRICS",
    "SAMPLE_METRICS",
    "Action",
    "ActionKind",
    "Comparison",
    "Condition",
    "Match",
    "Operator",
    "Rule",
    "RuleWindows",
    "SampleGuard",
    "Scope",
    "ScopeKind",
    "parse_rule",
    "rule_windows",
]

# Every metric a condition may use; counts and money are summed over the window, the rest are
# ratios of those sums (see docs/optimize.md for each formula).
METRICS: tuple[str, ...] = (
    "impressions",
    "clicks",
    "conversions",
    "cost",
    "revenue",
    "cpc",
    "cpa",
    "cpl",
    "roas",
    "roi",
    "cr",
    "ctr",
    "epc",
    "profit",
)
# A minimum-sample guard counts something that accumulates; a ratio is not a sample size.
SAMPLE_METRICS: tuple[str, ...] = ("impressions", "clicks", "conversions", "cost")
MAX_WINDOW_DAYS = 365
MAX_COOLDOWN_HOURS = 24 * 365
# A percentage change above this (x11) is almost surely a typo for a smaller number.
MAX_PERCENT_CHANGE = Decimal(1000)
DEFAULT_INTERVAL_MINUTES = 60


class Operator(StrEnum):
    """How a metric is compared with its threshold."""

    GT = ">"
    GE = ">="
    LT = "<"
    LE = "<="
    EQ = "=="
    NE = "!="

    def holds(self, value: Decimal, threshold: Decimal) -> bool:
        """Whether `value <op> threshold` is true."""
        if self is Operator.GT:
            return value > threshold
        if self is Operator.GE:
            return value >= threshold
        if self is Operator.LT:
            return value < threshold
        if self is Operator.LE:
            return value <= threshold
        if self is Operator.EQ:
            return value == threshold
        return value != threshold


class Comparison(StrEnum):
    """What is compared: the window's value, or its percent change on the previous window."""

    VALUE = "value"
    CHANGE_PCT = "change_pct"


class Match(StrEnum):
    """Whether all conditions must hold or any one is enough."""

    ALL = "all"
    ANY = "any"


class ScopeKind(StrEnum):
    """The kind of object a rule watches and acts on."""

    CAMPAIGN = "campaign"
    PUBLISHER = "publisher"
    SUB_ID = "sub_id"
    CREATIVE = "creative"
    LANDING_PAGE = "landing_page"


class ActionKind(StrEnum):
    """What a rule does when it fires."""

    PAUSE = "pause"
    RESUME = "resume"
    CHANGE_BID = "change_bid"
    CHANGE_PAYOUT = "change_payout"
    CHANGE_BUDGET = "change_budget"
    SHIFT_ROTATION_WEIGHT = "shift_rotation_weight"
    SEND_WEBHOOK = "send_webhook"


PERCENT_ACTIONS = frozenset(
    {
        ActionKind.CHANGE_BID,
        ActionKind.CHANGE_PAYOUT,
        ActionKind.CHANGE_BUDGET,
        ActionKind.SHIFT_ROTATION_WEIGHT,
    }
)


_Enum = TypeVar("_Enum", bound=StrEnum)


def _enum_value(kind: type[_Enum], field_name: str, value: object) -> _Enum:
    try:
        if not isinstance(value, str):
            raise ValueError(value)
        return kind(value)
    except ValueError:
        allowed = ", ".join(repr(m.value) for m in kind)
        raise ValidationError(
            f"{field_name} {value!r} is not known; use one of {allowed}", field=field_name
        ) from None


def _decimal(field_name: str, value: object) -> Decimal:
    if isinstance(value, bool):
        raise ValidationError(f"{field_name} is {value!r}; give a number", field=field_name)
    try:
        # A float threshold (1.5 from JSON) is taken at its shortest decimal spelling.
        number = Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise ValidationError(
            f'{field_name} is {value!r}; give a decimal number such as "40" or "1.5"',
            field=field_name,
        ) from None
    if not number.is_finite():
        raise ValidationError(f"{field_name} is {value!r}; give a finite number", field=field_name)
    return number


def _int(field_name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValidationError(
            f"{field_name} is {value!r}; it must be a whole number from {low} to {high}",
            field=field_name,
        )
    return value


@dataclass(frozen=True)
class Condition:
    """`metric <operator> threshold`, on the window's value or its percent change."""

    metric: str
    operator: Operator
    threshold: Decimal
    comparison: Comparison = Comparison.VALUE

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValidationError(
                f"metric {self.metric!r} is unknown; use one of {', '.join(METRICS)}",
                field="metric",
            )
        object.__setattr__(self, "operator", _enum_value(Operator, "operator", self.operator))
        object.__setattr__(
            self, "comparison", _enum_value(Comparison, "comparison", self.comparison)
        )
        object.__setattr__(self, "threshold", _decimal("threshold", self.threshold))

    def describe(self) -> str:
        """The condition as a person would write it, e.g. 'cpa > 40' or 'cr change <= -50%'."""
        if self.comparison is Comparison.CHANGE_PCT:
            return f"{self.metric} change {self.operator.value} {self.threshold}%"
        return f"{self.metric} {self.operator.value} {self.threshold}"


@dataclass(frozen=True)
class SampleGuard:
    """The rule is not judged until `metric` reaches `minimum` in the window (e.g. 50 clicks)."""

    metric: str
    minimum: Decimal

    def __post_init__(self) -> None:
        if self.metric not in SAMPLE_METRICS:
            raise ValidationError(
                f"sample guard metric {self.metric!r} is not a sample size; use one of "
                f"{', '.join(SAMPLE_METRICS)}",
                field="min_sample.metric",
            )
        minimum = _decimal("min_sample.minimum", self.minimum)
        if minimum < 0:
            raise ValidationError(
                f"min_sample.minimum is {minimum}; it must be 0 or more", field="min_sample.minimum"
            )
        object.__setattr__(self, "minimum", minimum)


@dataclass(frozen=True)
class Scope:
    """What a rule watches: objects of one kind; no ids means every object of that kind."""

    kind: ScopeKind
    target_ids: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", _enum_value(ScopeKind, "scope.kind", self.kind))
        ids = tuple(self.target_ids)
        if any(not isinstance(i, str) or not i for i in ids):
            raise ValidationError(
                f"scope.target_ids {ids!r} holds an empty or non-text id", field="scope.target_ids"
            )
        object.__setattr__(self, "target_ids", tuple(sorted(set(ids))))

    def overlap(self, other: Scope) -> tuple[str, ...] | None:
        """Targets both scopes cover: () means every target; None means they share none."""
        if self.kind is not other.kind:
            return None
        if not self.target_ids:
            return other.target_ids
        if not other.target_ids:
            return self.target_ids
        shared = tuple(sorted(set(self.target_ids) & set(other.target_ids)))
        return shared or None


@dataclass(frozen=True)
class Action:
    """One thing a firing rule does; change actions carry a signed percentage (+20, -15)."""

    kind: ActionKind
    percent: Decimal | None = None
    webhook_url: str | None = None

    def __post_init__(self) -> None:
        kind = _enum_value(ActionKind, "action.kind", self.kind)
        object.__setattr__(self, "kind", kind)
        if kind in PERCENT_ACTIONS:
            if self.percent is None:
                raise ValidationError(
                    f"action {kind.value!r} needs a percent such as 20 or -20",
                    field="action.percent",
                )
            percent = _decimal("action.percent", self.percent)
            if percent == 0 or percent <= -100 or percent > MAX_PERCENT_CHANGE:
                raise ValidationError(
                    f"action.percent is {percent}; it must be non-zero, above -100 and at most "
                    f"{MAX_PERCENT_CHANGE} (use 'pause' to stop entirely)",
                    field="action.percent",
                )
            object.__setattr__(self, "percent", percent)
        elif self.percent is not None:
            raise ValidationError(
                f"action {kind.value!r} takes no percent (got {self.percent})",
                field="action.percent",
            )
        if kind is ActionKind.SEND_WEBHOOK:
            if self.webhook_url is None:
                raise ValidationError(
                    "action 'send_webhook' needs a webhook_url", field="action.webhook_url"
                )
            check_http_url("action.webhook_url", self.webhook_url, allow_macros=False)
        elif self.webhook_url is not None:
            raise ValidationError(
                f"action {kind.value!r} takes no webhook_url", field="action.webhook_url"
            )

    def describe(self) -> str:
        """The action in words, e.g. 'change_bid +20%'."""
        if self.percent is not None:
            sign = "+" if self.percent > 0 else ""
            return f"{self.kind.value} {sign}{self.percent}%"
        if self.webhook_url is not None:
            return f"{self.kind.value} {self.webhook_url}"
        return self.kind.value

    def undoes(self, other: Action) -> bool:
        """Whether this action reverses `other` (pause/resume, or opposite changes of one knob)."""
        pair = {self.kind, other.kind}
        if pair == {ActionKind.PAUSE, ActionKind.RESUME}:
            return True
        if self.kind is other.kind and self.kind in PERCENT_ACTIONS:
            assert self.percent is not None and other.percent is not None
            return (self.percent > 0) != (other.percent > 0)
        return False


@dataclass(frozen=True)
class Rule:
    """An automated rule: when its conditions hold on the window, act on the target."""

    rule_id: str
    name: str
    scope: Scope
    conditions: tuple[Condition, ...]
    actions: tuple[Action, ...]
    window_days: int
    cooldown_hours: int = 24
    min_sample: tuple[SampleGuard, ...] = ()
    match: Match = Match.ALL
    dry_run: bool = False
    interval_minutes: int = DEFAULT_INTERVAL_MINUTES
    enabled: bool = field(default=True)

    def __post_init__(self) -> None:
        if not isinstance(self.rule_id, str) or not self.rule_id:
            raise ValidationError(f"rule_id {self.rule_id!r} is empty; give an id", field="rule_id")
        object.__setattr__(self, "name", check_name("name", self.name))
        object.__setattr__(self, "match", _enum_value(Match, "match", self.match))
        _int("window_days", self.window_days, 1, MAX_WINDOW_DAYS)
        _int("cooldown_hours", self.cooldown_hours, 0, MAX_COOLDOWN_HOURS)
        _int("interval_minutes", self.interval_minutes, 1, 24 * 60)
        conditions = tuple(self.conditions)
        actions = tuple(self.actions)
        if not conditions:
            raise ValidationError("conditions is empty; give at least one", field="conditions")
        if not actions:
            raise ValidationError("actions is empty; give at least one", field="actions")
        for i, first in enumerate(actions):
            for second in actions[i + 1 :]:
                if first.undoes(second):
                    raise ValidationError(
                        f"actions {first.describe()!r} and {second.describe()!r} undo each "
                        "other in one rule; keep one",
                        field="actions",
                    )
        object.__setattr__(self, "conditions", conditions)
        object.__setattr__(self, "actions", actions)
        object.__setattr__(self, "min_sample", tuple(self.min_sample))

    @property
    def window(self) -> timedelta:
        """The length of the metrics window."""
        return timedelta(days=self.window_days)

    @property
    def cooldown(self) -> timedelta:
        """How long the rule stays quiet on a target after firing on it."""
        return timedelta(hours=self.cooldown_hours)

    @property
    def needs_previous_period(self) -> bool:
        """Whether any condition compares with the previous window."""
        return any(c.comparison is Comparison.CHANGE_PCT for c in self.conditions)


@dataclass(frozen=True)
class RuleWindows:
    """The current metrics window [current_start, current_end) and the one before it."""

    current_start: datetime
    current_end: datetime
    previous_start: datetime
    previous_end: datetime


def rule_windows(rule: Rule, now: datetime) -> RuleWindows:
    """The windows whose metrics `evaluate` expects for a run at `now` (UTC)."""
    end = utc(now)
    start = end - rule.window
    return RuleWindows(start, end, start - rule.window, start)


def _items(field_name: str, value: object) -> list[Mapping[str, Any]]:
    if not isinstance(value, list | tuple) or not all(isinstance(v, Mapping) for v in value):
        raise ValidationError(f"{field_name} must be a list of objects", field=field_name)
    return list(value)


def _flag(field_name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ValidationError(f"{field_name} is {value!r}; give true or false", field=field_name)
    return value


def parse_rule(data: Mapping[str, Any], *, allowed_metrics: Sequence[str] = METRICS) -> Rule:
    """Build a Rule from plain data (JSON, YAML); every problem is a ValidationError."""
    for index, item in enumerate(_items("conditions", data.get("conditions"))):
        metric = item.get("metric")
        if metric not in allowed_metrics:
            raise ValidationError(
                f"conditions[{index}].metric {metric!r} is unknown; use one of "
                f"{', '.join(allowed_metrics)}",
                field=f"conditions[{index}].metric",
            )
    scope = data.get("scope")
    if not isinstance(scope, Mapping):
        raise ValidationError("scope must be an object with a 'kind'", field="scope")
    try:
        return Rule(
            rule_id=data.get("rule_id", ""),
            name=data.get("name", ""),
            scope=Scope(scope.get("kind"), tuple(scope.get("target_ids", ()))),  # type: ignore[arg-type]
            conditions=tuple(
                Condition(
                    item.get("metric", ""),
                    item.get("operator"),  # type: ignore[arg-type]
                    item.get("threshold"),  # type: ignore[arg-type]
                    item.get("comparison", Comparison.VALUE),
                )
                for item in _items("conditions", data.get("conditions"))
            ),
            actions=tuple(
                Action(item.get("kind"), item.get("percent"), item.get("webhook_url"))  # type: ignore[arg-type]
                for item in _items("actions", data.get("actions"))
            ),
            window_days=data.get("window_days"),  # type: ignore[arg-type]
            cooldown_hours=data.get("cooldown_hours", 24),
            min_sample=tuple(
                SampleGuard(item.get("metric", ""), item.get("minimum"))  # type: ignore[arg-type]
                for item in _items("min_sample", data.get("min_sample", []))
            ),
            match=data.get("match", Match.ALL),
            dry_run=_flag("dry_run", data.get("dry_run", False)),
            interval_minutes=data.get("interval_minutes", DEFAULT_INTERVAL_MINUTES),
            enabled=_flag("enabled", data.get("enabled", True)),
        )
    except TypeError as exc:
        raise ValidationError(f"rule is malformed: {exc}", field="rule") from None
