"""Autopilot: move current budgets toward a recommendation by a bounded step per day."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal

from perfmark.errors import ValidationError
from perfmark.money import MoneyError, parse_amount

__all__ = [
    "DEFAULT_MAX_DAILY_CHANGE_PCT",
    "MAX_DAILY_CHANGE_PCT_LIMIT",
    "AutopilotPlan",
    "BudgetStep",
    "autopilot_step",
]

DEFAULT_MAX_DAILY_CHANGE_PCT = Decimal(20)
# A larger daily step is no longer a "bounded" autopilot; apply the recommendation by hand instead.
MAX_DAILY_CHANGE_PCT_LIMIT = Decimal(1000)
_QUANTUM = Decimal("0.01")


@dataclass(frozen=True)
class BudgetStep:
    """One campaign's budget today, its recommendation and the bounded budget for tomorrow."""

    campaign_id: str
    current: Decimal
    recommended: Decimal
    new: Decimal
    allowed_change: Decimal
    limited: bool


@dataclass(frozen=True)
class AutopilotPlan:
    """The budgets one autopilot step sets, with the bound that was applied."""

    steps: tuple[BudgetStep, ...]
    max_change_pct: Decimal
    min_step: Decimal
    total_before: Decimal
    total_after: Decimal
    notes: tuple[str, ...]


def _non_negative(field: str, value: object) -> Decimal:
    try:
        amount = parse_amount(value, field=field)
    except MoneyError as exc:
        raise ValidationError(str(exc), field=field) from None
    if amount < 0:
        raise ValidationError(f"{field} is {amount}; budgets must be 0 or more", field=field)
    return amount


def _toward(current: Decimal, recommended: Decimal, allowed: Decimal) -> Decimal:
    change = recommended - current
    if abs(change) <= allowed:
        return recommended
    # Round the magnitude down so the rounded step never exceeds the bound.
    magnitude = allowed.quantize(_QUANTUM, rounding=ROUND_DOWN)
    return current + magnitude if change > 0 else current - magnitude


def autopilot_step(
    current: Mapping[str, Decimal],
    recommended: Mapping[str, Decimal],
    *,
    max_change_pct: Decimal | int | str = DEFAULT_MAX_DAILY_CHANGE_PCT,
    min_step: Decimal | int | str = Decimal(0),
    total_cap: Decimal | int | str | None = None,
) -> AutopilotPlan:
    """Budgets for the next day: each moves toward its recommendation by at most X% of today's.

    The allowed move is max(current * X / 100, min_step), so a campaign at zero can start (with
    min_step > 0). A campaign missing from the recommendation keeps its budget; one missing from
    `current` starts at zero. With `total_cap`, increases are scaled back first so the new total
    stays within the cap; only when today's total is already above the cap are decreases made
    larger than the bound, because the cap is a hard limit.
    """
    pct = _non_negative("max_change_pct", max_change_pct)
    if pct == 0 or pct > MAX_DAILY_CHANGE_PCT_LIMIT:
        raise ValidationError(
            f"max_change_pct is {pct}; it must be above 0 and at most {MAX_DAILY_CHANGE_PCT_LIMIT}",
            field="max_change_pct",
        )
    floor = _non_negative("min_step", min_step)
    cap = None if total_cap is None else _non_negative("total_cap", total_cap)
    notes: list[str] = []
    ids = list(current) + [key for key in recommended if key not in current]
    before = {key: _non_negative(f"current[{key}]", current.get(key, 0)) for key in ids}
    target: dict[str, Decimal] = {}
    for key in ids:
        if key in recommended:
            target[key] = _non_negative(f"recommended[{key}]", recommended[key])
        else:
            target[key] = before[key]
            notes.append(f"{key} has no recommendation: its budget is kept at {before[key]}")
    allowed = {key: max(before[key] * pct / 100, floor) for key in ids}
    after = {key: _toward(before[key], target[key], allowed[key]) for key in ids}
    if cap is not None:
        after = _respect_cap(before, after, cap, notes)
    steps = tuple(
        BudgetStep(
            campaign_id=key,
            current=before[key],
            recommended=target[key],
            new=after[key],
            allowed_change=allowed[key],
            limited=after[key] != target[key],
        )
        for key in ids
    )
    return AutopilotPlan(
        steps=steps,
        max_change_pct=pct,
        min_step=floor,
        total_before=sum(before.values(), Decimal(0)),
        total_after=sum(after.values(), Decimal(0)),
        notes=tuple(notes),
    )


def _respect_cap(
    before: dict[str, Decimal], after: dict[str, Decimal], cap: Decimal, notes: list[str]
) -> dict[str, Decimal]:
    excess = sum(after.values(), Decimal(0)) - cap
    if excess <= 0:
        return after
    increases = {key: after[key] - before[key] for key in after if after[key] > before[key]}
    raised = sum(increases.values(), Decimal(0))
    result = dict(after)
    if raised >= excess:
        keep = (raised - excess) / raised
        for key, increase in increases.items():
            result[key] = before[key] + (increase * keep).quantize(_QUANTUM, rounding=ROUND_DOWN)
        notes.append(f"increases scaled back by {excess} to stay within total_cap {cap}")
        return result
    for key in increases:
        result[key] = before[key]
    total = sum(result.values(), Decimal(0))
    if total > cap:
        factor = cap / total
        for key in result:
            result[key] = (result[key] * factor).quantize(_QUANTUM, rounding=ROUND_DOWN)
        notes.append(
            f"today's budgets total {sum(before.values(), Decimal(0))}, above total_cap {cap}: "
            "every budget is cut in proportion, beyond the daily step bound"
        )
    return result
