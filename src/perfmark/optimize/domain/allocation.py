"""Split a total budget across campaigns to maximise expected conversions or revenue."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal
from enum import StrEnum

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import Bounds, LinearConstraint, minimize

from perfmark.errors import ValidationError
from perfmark.money import MoneyError, parse_amount
from perfmark.optimize.domain.response_curves import ResponseCurve

__all__ = [
    "DEFAULT_GRID_STEPS",
    "DEFAULT_INTERVAL_LEVEL",
    "EXTRAPOLATION_SPEND_FACTOR",
    "AllocationCandidate",
    "BudgetAllocation",
    "CampaignAllocation",
    "Objective",
    "allocate_budget",
]

# Budget steps of the coarse dynamic programme that picks which campaigns get money; the
# continuous polish that follows removes the grid error.
DEFAULT_GRID_STEPS = 200
DEFAULT_INTERVAL_LEVEL = 0.9
# A recommended spend this many times above the highest spend in a campaign's history is an
# extrapolation of its curve, and the result says so.
EXTRAPOLATION_SPEND_FACTOR = 2.0
_SPEND_QUANTUM = Decimal("0.01")

FloatArray = NDArray[np.float64]


class Objective(StrEnum):
    """What the allocation maximises; each candidate's curve must predict the same thing."""

    CONVERSIONS = "conversions"
    REVENUE = "revenue"


@dataclass(frozen=True)
class AllocationCandidate:
    """One campaign (or channel) that may receive budget, with its curve and spend bounds."""

    campaign_id: str
    curve: ResponseCurve
    min_spend: Decimal = Decimal(0)
    max_spend: Decimal | None = None


@dataclass(frozen=True)
class CampaignAllocation:
    """The recommended daily spend of one campaign and what it is expected to bring."""

    campaign_id: str
    spend: Decimal
    expected_outcome: float
    outcome_low: float
    outcome_high: float
    marginal_return: float
    marginal_cpa: float | None
    marginal_roas: float | None
    at_min: bool
    at_max: bool
    notes: tuple[str, ...]


@dataclass(frozen=True)
class BudgetAllocation:
    """A recommended split of a total budget, with the expected outcome and its interval."""

    objective: Objective
    total_budget: Decimal
    allocated: Decimal
    unspent: Decimal
    expected_outcome: float
    outcome_low: float
    outcome_high: float
    interval_level: float
    target_cpa: Decimal | None
    target_roas: Decimal | None
    campaigns: tuple[CampaignAllocation, ...]
    notes: tuple[str, ...]


def _amount(field: str, value: object) -> Decimal:
    try:
        amount = parse_amount(value, field=field)
    except MoneyError as exc:
        raise ValidationError(str(exc), field=field) from None
    if amount < 0:
        raise ValidationError(f"{field} is {amount}; it must be 0 or more", field=field)
    return amount


def _positive_target(field: str, value: object) -> Decimal:
    amount = _amount(field, value)
    if amount == 0:
        raise ValidationError(f"{field} is 0; give a positive target or none", field=field)
    return amount


@dataclass(frozen=True)
class _Problem:
    curves: tuple[ResponseCurve, ...]
    lower: FloatArray
    upper: FloatArray
    budget: float
    # Value of one unit of spend in outcome units: 1/target CPA or the target ROAS; 0 = no target.
    spend_price: float


def _validate(
    candidates: Sequence[AllocationCandidate],
    total_budget: object,
    objective: object,
    target_cpa: object,
    target_roas: object,
    interval_level: float,
) -> tuple[Objective, Decimal, Decimal | None, Decimal | None, list[Decimal], list[Decimal]]:
    """Check everything before any work; returns the parsed amounts and per-campaign bounds."""
    try:
        goal = Objective(str(objective))
    except ValueError:
        allowed = ", ".join(o.value for o in Objective)
        raise ValidationError(
            f"objective {objective!r} is unknown; use one of {allowed}", field="objective"
        ) from None
    budget = _amount("total_budget", total_budget)
    cpa = None if target_cpa is None else _positive_target("target_cpa", target_cpa)
    roas = None if target_roas is None else _positive_target("target_roas", target_roas)
    if cpa is not None and goal is not Objective.CONVERSIONS:
        raise ValidationError(
            f"target_cpa {cpa} needs objective 'conversions' (got {goal.value!r}); "
            "use target_roas for revenue",
            field="target_cpa",
        )
    if roas is not None and goal is not Objective.REVENUE:
        raise ValidationError(
            f"target_roas {roas} needs objective 'revenue' (got {goal.value!r}); "
            "use target_cpa for conversions",
            field="target_roas",
        )
    if not 0.0 < interval_level < 1.0:
        raise ValidationError(
            f"interval_level is {interval_level}; it must be between 0 and 1 (e.g. 0.9)",
            field="interval_level",
        )
    if not candidates:
        raise ValidationError("campaigns is empty; give at least one campaign", field="campaigns")
    seen: set[str] = set()
    lows: list[Decimal] = []
    highs: list[Decimal] = []
    for index, candidate in enumerate(candidates):
        where = f"campaigns[{index}]"
        if candidate.campaign_id in seen:
            raise ValidationError(
                f"{where}.campaign_id {candidate.campaign_id!r} appears twice; list each once",
                field=f"{where}.campaign_id",
            )
        seen.add(candidate.campaign_id)
        if candidate.curve.metric.value != goal.value:
            raise ValidationError(
                f"{where}: the curve of {candidate.campaign_id!r} predicts "
                f"{candidate.curve.metric.value} but the objective is {goal.value}; fit the "
                "curve on the objective's metric",
                field=f"{where}.curve",
            )
        low = _amount(f"{where}.min_spend", candidate.min_spend)
        high = budget
        if candidate.max_spend is not None:
            high = _amount(f"{where}.max_spend", candidate.max_spend)
            if high < low:
                raise ValidationError(
                    f"{where}.max_spend {high} is below its min_spend {low}; raise it",
                    field=f"{where}.max_spend",
                )
        lows.append(low)
        highs.append(min(high, budget))
    minimums = sum(lows, Decimal(0))
    if budget < minimums:
        raise ValidationError(
            f"total_budget {budget} is below the sum of the campaigns' min_spend ({minimums}); "
            "raise the budget or lower the minimums",
            field="total_budget",
        )
    return goal, budget, cpa, roas, lows, highs


def _values(curve: ResponseCurve, spend: FloatArray) -> FloatArray:
    return np.asarray([curve.predict(float(x)) for x in spend], dtype=np.float64)


def _solve_grid(problem: _Problem, steps: int) -> FloatArray:
    """Dynamic programme over `steps` equal budget steps above the minimums (exact on the grid)."""
    spare = problem.budget - float(problem.lower.sum())
    if spare <= 0:
        return problem.lower.copy()
    step = spare / steps
    index = np.arange(steps + 1)
    best = np.full(steps + 1, -np.inf)
    best[0] = 0.0
    choices: list[NDArray[np.int64]] = []
    for curve, low, high in zip(problem.curves, problem.lower, problem.upper, strict=True):
        cap = min(steps, math.floor((high - low) / step + 1e-9))
        extra = index[: cap + 1] * step
        gain = _values(curve, low + extra) - problem.spend_price * extra
        # table[j, t]: best value with j steps in total, t of them given to this campaign.
        taken = index[:, None] - index[None, : cap + 1]
        table = np.where(taken >= 0, best[np.clip(taken, 0, None)] + gain[None, :], -np.inf)
        pick = np.argmax(table, axis=1)
        best = table[index, pick]
        choices.append(pick.astype(np.int64))
    finite = np.flatnonzero(np.isfinite(best))
    if problem.spend_price > 0:
        # With a target, spending is optional: the smallest total that reaches the best value.
        used = int(finite[np.argmax(best[finite])])
    else:
        # Without one, every step that can be placed is placed (ties go to spending more).
        top = best[finite].max()
        used = int(finite[best[finite] >= top - 1e-12 * max(1.0, abs(top))].max())
    spend = problem.lower.copy()
    for position in range(len(problem.curves) - 1, -1, -1):
        taken_here = int(choices[position][used])
        spend[position] += taken_here * step
        used -= taken_here
    return spend


def _net_value(problem: _Problem, spend: FloatArray) -> float:
    total = sum(curve.predict(float(x)) for curve, x in zip(problem.curves, spend, strict=True))
    return float(total - problem.spend_price * float(spend.sum()))


def _polish(problem: _Problem, start: FloatArray) -> FloatArray:
    """Continuous local refinement of the grid optimum (SLSQP with exact gradients)."""
    scale = max(problem.budget, 1e-12)
    base = max(abs(_net_value(problem, start)), 1e-12)
    cap_total = min(problem.budget, float(problem.upper.sum()))

    def negative(u: FloatArray) -> float:
        return -_net_value(problem, u * scale) / base

    def gradient(u: FloatArray) -> FloatArray:
        slopes = np.asarray(
            [c.marginal(float(x)) for c, x in zip(problem.curves, u * scale, strict=True)]
        )
        return np.asarray(-(slopes - problem.spend_price) * scale / base, dtype=np.float64)

    ones = np.ones((1, start.size))
    if problem.spend_price > 0:
        constraint = LinearConstraint(ones, -np.inf, problem.budget / scale)
    else:
        constraint = LinearConstraint(ones, cap_total / scale, cap_total / scale)
    result = minimize(
        negative,
        start / scale,
        jac=gradient,
        method="SLSQP",
        bounds=Bounds(problem.lower / scale, problem.upper / scale),
        constraints=[constraint],
        options={"maxiter": 200, "ftol": 1e-12},
    )
    candidate = np.clip(
        np.asarray(result.x, dtype=np.float64) * scale, problem.lower, problem.upper
    )
    total = float(candidate.sum())
    feasible = total <= problem.budget * (1 + 1e-9) + 1e-9
    if problem.spend_price == 0:
        feasible = feasible and total >= cap_total * (1 - 1e-6) - 1e-9
    if feasible and _net_value(problem, candidate) >= _net_value(problem, start):
        return candidate
    return start


def _to_amounts(
    problem: _Problem, spend: FloatArray, lows: list[Decimal], highs: list[Decimal], budget: Decimal
) -> list[Decimal]:
    """Round spends down to cents inside their bounds, then hand leftover cents out by slope."""
    amounts = [
        min(high, max(low, Decimal(repr(float(x))).quantize(_SPEND_QUANTUM, rounding=ROUND_DOWN)))
        for x, low, high in zip(spend, lows, highs, strict=True)
    ]
    if problem.spend_price == 0:
        target = min(budget, sum(highs, Decimal(0))).quantize(_SPEND_QUANTUM, rounding=ROUND_DOWN)
    else:
        # With a target the optimum's own total is kept, to the cent.
        continuous = Decimal(repr(float(spend.sum()))).quantize(_SPEND_QUANTUM)
        target = min(budget, continuous)
    leftover = target - sum(amounts, Decimal(0))
    order = sorted(
        range(len(amounts)),
        key=lambda i: -problem.curves[i].marginal(float(amounts[i])),
    )
    for i in order:
        if leftover <= 0:
            break
        give = min(leftover, highs[i] - amounts[i])
        amounts[i] += give
        leftover -= give
    # Show whole cents ("0.00", not "0") wherever that does not change the amount.
    return [a.quantize(_SPEND_QUANTUM) if a == a.quantize(_SPEND_QUANTUM) else a for a in amounts]


def allocate_budget(
    candidates: Sequence[AllocationCandidate],
    total_budget: Decimal | int | str,
    *,
    objective: Objective | str = Objective.CONVERSIONS,
    target_cpa: Decimal | int | str | None = None,
    target_roas: Decimal | int | str | None = None,
    interval_level: float = DEFAULT_INTERVAL_LEVEL,
    grid_steps: int = DEFAULT_GRID_STEPS,
) -> BudgetAllocation:
    """Recommend each campaign's spend so the total expected outcome is as large as possible.

    Every campaign gets at least its min_spend and at most its max_spend. With a target CPA
    (or ROAS) each extra unit of spend must buy at least 1/target conversions (or target
    revenue) at the margin, so part of the budget may stay unspent; without one the whole
    budget is placed unless every campaign reaches its maximum.
    """
    goal, budget, cpa, roas, lows, highs = _validate(
        candidates, total_budget, objective, target_cpa, target_roas, interval_level
    )
    if isinstance(grid_steps, bool) or not isinstance(grid_steps, int) or grid_steps < 1:
        raise ValidationError(
            f"grid_steps is {grid_steps!r}; it must be an integer >= 1", field="grid_steps"
        )
    price = 0.0
    if cpa is not None:
        price = 1.0 / float(cpa)
    elif roas is not None:
        price = float(roas)
    problem = _Problem(
        curves=tuple(c.curve for c in candidates),
        lower=np.asarray([float(v) for v in lows], dtype=np.float64),
        upper=np.asarray([float(v) for v in highs], dtype=np.float64),
        budget=float(budget),
        spend_price=price,
    )
    spend = _polish(problem, _solve_grid(problem, grid_steps))
    amounts = _to_amounts(problem, spend, lows, highs, budget)
    return _summarise(goal, budget, cpa, roas, interval_level, candidates, amounts, lows, price)


def _summarise(
    goal: Objective,
    budget: Decimal,
    cpa: Decimal | None,
    roas: Decimal | None,
    level: float,
    candidates: Sequence[AllocationCandidate],
    amounts: list[Decimal],
    lows: list[Decimal],
    price: float,
) -> BudgetAllocation:
    tail = (1.0 - level) / 2.0
    draw_count = max(len(c.curve.param_draws) for c in candidates)
    total_draws = np.zeros(draw_count)
    rows: list[CampaignAllocation] = []
    notes: list[str] = []
    for candidate, amount, low_spend in zip(candidates, amounts, lows, strict=True):
        curve = candidate.curve
        x = float(amount)
        draws = curve.predict_draws(x)
        # Draws of different campaigns are independent, so pairing them by index is a valid
        # joint draw; a curve with fewer draws is cycled.
        total_draws += draws[np.arange(draw_count) % draws.size]
        low, high = np.quantile(draws, [tail, 1.0 - tail])
        # At zero spend the derivative of an S-shaped curve is 0 (or infinite below shape 1); the
        # return of the first cent is the honest figure to show there.
        slope = (
            curve.marginal(x)
            if x > 0
            else (curve.predict(float(_SPEND_QUANTUM)) - curve.predict(0.0)) / float(_SPEND_QUANTUM)
        )
        row_notes = list(curve.warnings)
        if (
            curve.max_observed_spend > 0
            and x > EXTRAPOLATION_SPEND_FACTOR * curve.max_observed_spend
        ):
            row_notes.append(
                f"spend {amount} is above {EXTRAPOLATION_SPEND_FACTOR:g}x the highest spend in "
                f"the history ({curve.max_observed_spend:.2f}): the curve is extrapolated"
            )
        max_spend = candidate.max_spend
        rows.append(
            CampaignAllocation(
                campaign_id=candidate.campaign_id,
                spend=amount,
                expected_outcome=curve.predict(x),
                outcome_low=float(low),
                outcome_high=float(high),
                marginal_return=slope,
                marginal_cpa=(1.0 / slope if slope > 0 else None)
                if goal is Objective.CONVERSIONS
                else None,
                marginal_roas=slope if goal is Objective.REVENUE else None,
                at_min=amount <= low_spend,
                at_max=max_spend is not None and amount >= Decimal(max_spend),
                notes=tuple(row_notes),
            )
        )
    allocated = sum(amounts, Decimal(0))
    unspent = budget - allocated
    if unspent >= Decimal(1) or (unspent > 0 and unspent >= budget / 1000):
        if price > 0:
            target = f"target CPA {cpa}" if cpa is not None else f"target ROAS {roas}"
            notes.append(
                f"{unspent} of the budget is left unspent: beyond the recommended spend every "
                f"campaign's marginal return is worse than the {target} (or it is at its maximum)"
            )
        else:
            notes.append(
                f"{unspent} of the budget is left unspent: every campaign is at its max_spend"
            )
    total_low, total_high = np.quantile(total_draws, [tail, 1.0 - tail])
    return BudgetAllocation(
        objective=goal,
        total_budget=budget,
        allocated=allocated,
        unspent=unspent,
        expected_outcome=float(sum(r.expected_outcome for r in rows)),
        outcome_low=float(total_low),
        outcome_high=float(total_high),
        interval_level=level,
        target_cpa=cpa,
        target_roas=roas,
        campaigns=tuple(rows),
        notes=tuple(notes),
    )
