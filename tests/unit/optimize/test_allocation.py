"""Budget allocation against brute force and closed forms, validation, the bounded autopilot."""

from __future__ import annotations

import math
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perfmark.errors import ValidationError
from perfmark.optimize.domain.allocation import (
    AllocationCandidate,
    Objective,
    allocate_budget,
)
from perfmark.optimize.domain.autopilot import autopilot_step
from perfmark.optimize.domain.response_curves import (
    CurveModel,
    OutcomeMetric,
    ResponseCurve,
    fit_response_curve,
)

Params = tuple[float, float, float]


def _value(params: Params, spend: np.ndarray) -> np.ndarray:
    # Written out again here (not the module's helper) so the check is independent.
    ymax, ec50, shape = params
    return np.asarray(ymax * spend**shape / (ec50**shape + spend**shape))


def _curve(params: Params, metric: OutcomeMetric = OutcomeMetric.CONVERSIONS) -> ResponseCurve:
    return ResponseCurve.exact(CurveModel.HILL, params, metric=metric)


def _random_params(rng: np.random.Generator, count: int) -> list[Params]:
    return [
        (float(rng.uniform(10, 100)), float(rng.uniform(100, 1000)), float(rng.uniform(0.6, 3.5)))
        for _ in range(count)
    ]


def _achieved(params: list[Params], spends: list[float], price: float = 0.0) -> float:
    return sum(float(_value(p, np.array(s))) for p, s in zip(params, spends, strict=True)) - (
        price * sum(spends)
    )


@pytest.mark.parametrize("seed", range(12))
def test_two_campaigns_match_an_exhaustive_search(seed: int) -> None:
    rng = np.random.default_rng(seed)
    params = _random_params(rng, 2)
    budget = int(rng.integers(200, 3000))
    result = allocate_budget(
        [AllocationCandidate(f"c{i}", _curve(p)) for i, p in enumerate(params)], budget
    )

    first = np.linspace(0, budget, 20001)
    brute = float(np.max(_value(params[0], first) + _value(params[1], budget - first)))
    spends = [float(c.spend) for c in result.campaigns]
    assert sum(spends) == pytest.approx(budget)
    mine = _achieved(params, spends)
    assert mine >= 0.99 * brute
    assert mine <= brute * 1.0001  # nobody beats the true optimum
    assert result.expected_outcome == pytest.approx(mine, rel=1e-9)


@pytest.mark.parametrize("seed", range(8))
def test_three_campaigns_with_bounds_match_an_exhaustive_search(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    params = _random_params(rng, 3)
    budget = float(rng.integers(500, 3000))
    lows = [float(rng.integers(0, 100)) for _ in range(3)]
    highs = [lows[i] + float(rng.integers(100, 1500)) for i in range(3)]
    candidates = [
        AllocationCandidate(
            f"c{i}", _curve(p), min_spend=Decimal(int(lows[i])), max_spend=Decimal(int(highs[i]))
        )
        for i, p in enumerate(params)
    ]
    result = allocate_budget(candidates, Decimal(int(budget)))
    spends = [float(c.spend) for c in result.campaigns]
    for spend, low, high in zip(spends, lows, highs, strict=True):
        assert low <= spend <= high

    # Exhaustive grid over the first two; the third takes what is left (if its bounds allow).
    total = min(budget, sum(highs))
    a, b = np.meshgrid(np.linspace(lows[0], highs[0], 601), np.linspace(lows[1], highs[1], 601))
    c = total - a - b
    feasible = (c >= lows[2]) & (c <= highs[2])
    values = _value(params[0], a) + _value(params[1], b) + _value(params[2], np.clip(c, 0, None))
    brute = float(np.max(np.where(feasible, values, -np.inf)))
    mine = _achieved(params, spends)
    assert mine >= 0.99 * brute
    assert sum(spends) == pytest.approx(total)


def _dynamic_programme(params: list[Params], budget: float, steps: int, price: float) -> float:
    """An independent, loop-based DP: best value of sum f_i(x_i) - price * sum x_i on the grid."""
    unit = budget / steps
    best = [0.0] + [-math.inf] * steps
    for p in params:
        gains = [float(_value(p, np.array(k * unit))) - price * k * unit for k in range(steps + 1)]
        new = [-math.inf] * (steps + 1)
        for used in range(steps + 1):
            if best[used] == -math.inf:
                continue
            for k in range(steps + 1 - used):
                candidate = best[used] + gains[k]
                if candidate > new[used + k]:
                    new[used + k] = candidate
        best = new
    return max(best) if price > 0 else best[steps]


@pytest.mark.parametrize("seed", range(4))
def test_five_campaigns_match_a_fine_dynamic_programme(seed: int) -> None:
    rng = np.random.default_rng(200 + seed)
    params = _random_params(rng, 5)
    budget = 2000.0
    result = allocate_budget(
        [AllocationCandidate(f"c{i}", _curve(p)) for i, p in enumerate(params)],
        Decimal(2000),
        grid_steps=40,  # much coarser than the reference: the continuous polish must do the rest
    )
    reference = _dynamic_programme(params, budget, 300, 0.0)
    mine = _achieved(params, [float(c.spend) for c in result.campaigns])
    assert mine >= 0.99 * reference


@pytest.mark.parametrize("seed", range(6))
def test_target_cpa_matches_a_dynamic_programme_on_the_net_objective(seed: int) -> None:
    rng = np.random.default_rng(300 + seed)
    params = _random_params(rng, 3)
    target_cpa = float(rng.integers(8, 40))
    budget = 3000.0
    result = allocate_budget(
        [AllocationCandidate(f"c{i}", _curve(p)) for i, p in enumerate(params)],
        Decimal(3000),
        target_cpa=Decimal(int(target_cpa)),
    )
    price = 1 / target_cpa
    reference = _dynamic_programme(params, budget, 300, price)
    spends = [float(c.spend) for c in result.campaigns]
    mine = _achieved(params, spends, price)
    assert mine >= reference - 0.01 * abs(reference) - 1e-9
    assert sum(spends) <= budget


def test_target_cpa_is_respected_at_the_margin_and_leaves_budget_unspent() -> None:
    # Michaelis-Menten curves (shape 1): marginal = Y*E/(E+s)^2 = 1/T  =>  s = sqrt(Y*E*T) - E.
    params: list[Params] = [(100.0, 500.0, 1.0), (60.0, 200.0, 1.0), (30.0, 1000.0, 1.0)]
    target = 20
    result = allocate_budget(
        [AllocationCandidate(f"c{i}", _curve(p)) for i, p in enumerate(params)],
        Decimal(100_000),
        target_cpa=Decimal(target),
    )
    expected = [max(0.0, math.sqrt(y * e * target) - e) for y, e, _ in params]
    assert expected[2] == 0.0  # its first conversion already costs more than the target
    for row, spend in zip(result.campaigns, expected, strict=True):
        assert float(row.spend) == pytest.approx(spend, abs=0.05)
    for row in result.campaigns[:2]:
        assert row.marginal_cpa == pytest.approx(target, rel=1e-3)
    assert result.campaigns[2].at_min
    assert result.campaigns[2].marginal_cpa is not None
    assert result.campaigns[2].marginal_cpa > target
    assert result.unspent == Decimal(100_000) - result.allocated
    assert result.unspent > Decimal(90_000)
    assert any("left unspent" in note and "target CPA 20" in note for note in result.notes)


def test_tight_budget_binds_before_the_target_and_spends_everything() -> None:
    params: list[Params] = [(100.0, 500.0, 1.0), (60.0, 200.0, 1.0)]
    result = allocate_budget(
        [AllocationCandidate(f"c{i}", _curve(p)) for i, p in enumerate(params)],
        Decimal(300),
        target_cpa=Decimal(20),
    )
    assert result.allocated == Decimal(300)
    assert result.unspent == 0
    for row in result.campaigns:
        assert row.marginal_cpa is not None and row.marginal_cpa < 20


def test_closed_form_split_without_a_target() -> None:
    # Shape-1 curves: equal marginals give s_i = sqrt(Y_i E_i) / sqrt(mu) - E_i with
    # 1/sqrt(mu) = (B + sum E) / sum sqrt(Y E).
    params: list[Params] = [(100.0, 500.0, 1.0), (60.0, 200.0, 1.0), (80.0, 300.0, 1.0)]
    budget = 3000.0
    roots = [math.sqrt(y * e) for y, e, _ in params]
    scale = (budget + sum(e for _, e, _ in params)) / sum(roots)
    expected = [r * scale - e for r, (_, e, _) in zip(roots, params, strict=True)]
    result = allocate_budget(
        [AllocationCandidate(f"c{i}", _curve(p)) for i, p in enumerate(params)], "3000"
    )
    for row, spend in zip(result.campaigns, expected, strict=True):
        assert float(row.spend) == pytest.approx(spend, abs=0.05)
    assert result.allocated == Decimal(3000)


def test_target_roas_on_revenue_curves() -> None:
    # Revenue = Y s / (E + s); marginal ROAS = Y E / (E+s)^2 = R  =>  s = sqrt(Y E / R) - E.
    params: Params = (5000.0, 1000.0, 1.0)
    result = allocate_budget(
        [AllocationCandidate("r", _curve(params, OutcomeMetric.REVENUE))],
        Decimal(50_000),
        objective="revenue",
        target_roas="2",
    )
    expected = math.sqrt(5000 * 1000 / 2) - 1000
    assert float(result.campaigns[0].spend) == pytest.approx(expected, abs=0.05)
    assert result.campaigns[0].marginal_roas == pytest.approx(2.0, rel=1e-3)
    assert result.campaigns[0].marginal_cpa is None
    assert result.objective is Objective.REVENUE


def test_every_campaign_at_its_maximum_leaves_the_rest_unspent() -> None:
    result = allocate_budget(
        [
            AllocationCandidate("a", _curve((50.0, 100.0, 1.0)), max_spend=Decimal(100)),
            AllocationCandidate("b", _curve((50.0, 100.0, 1.0)), max_spend=Decimal("250.50")),
        ],
        Decimal(1000),
    )
    assert [r.spend for r in result.campaigns] == [Decimal(100), Decimal("250.50")]
    assert all(r.at_max for r in result.campaigns)
    assert result.unspent == Decimal("649.50")
    assert any("max_spend" in note for note in result.notes)


def test_interval_comes_from_the_fitted_curves() -> None:
    rng = np.random.default_rng(21)
    candidates = []
    for i, params in enumerate([(40.0, 300.0, 1.2), (25.0, 150.0, 1.0)]):
        spend = rng.uniform(50, 900, 45)
        conversions = rng.poisson(_value(params, spend))
        curve = fit_response_curve(spend.tolist(), conversions.tolist(), rng=rng)
        candidates.append(AllocationCandidate(f"c{i}", curve))
    result = allocate_budget(candidates, Decimal(800), interval_level=0.8)
    assert result.outcome_low < result.expected_outcome < result.outcome_high
    for row in result.campaigns:
        assert row.outcome_low <= row.expected_outcome <= row.outcome_high
    # Independent campaign errors partly cancel: the total's width is below the sum of widths.
    widths = sum(r.outcome_high - r.outcome_low for r in result.campaigns)
    assert result.outcome_high - result.outcome_low < widths


def test_exact_curves_have_a_point_interval_and_extrapolation_is_noted() -> None:
    spend = [10.0 * i for i in range(1, 31)]
    fitted = fit_response_curve(
        spend, [0.5 * s for s in spend], rng=np.random.default_rng(1), metric="revenue"
    )
    result = allocate_budget(
        [
            AllocationCandidate("exact", _curve((100.0, 50.0, 1.0), OutcomeMetric.REVENUE)),
            AllocationCandidate("fitted", fitted),
        ],
        Decimal(5000),
        objective="revenue",
    )
    exact = result.campaigns[0]
    assert exact.outcome_low == pytest.approx(exact.expected_outcome)
    assert exact.outcome_high == pytest.approx(exact.expected_outcome)
    assert any("extrapolated" in note for note in result.campaigns[1].notes)


@pytest.mark.parametrize(
    ("kwargs", "field", "fragment"),
    [
        ({"total_budget": Decimal(50)}, "total_budget", "below the sum"),
        ({"total_budget": Decimal(-1)}, "total_budget", "-1"),
        ({"objective": "clicks"}, "objective", "'clicks'"),
        ({"target_cpa": Decimal(0)}, "target_cpa", "0"),
        ({"target_roas": "2"}, "target_roas", "needs objective 'revenue'"),
        ({"interval_level": 1.5}, "interval_level", "1.5"),
        ({"total_budget": 1.5}, "total_budget", "float"),
    ],
)
def test_bad_requests_are_refused_before_anything_runs(
    kwargs: dict[str, object], field: str, fragment: str
) -> None:
    arguments: dict[str, object] = {
        "candidates": [
            AllocationCandidate("a", _curve((10.0, 10.0, 1.0)), min_spend=Decimal(40)),
            AllocationCandidate("b", _curve((10.0, 10.0, 1.0)), min_spend=Decimal(30)),
        ],
        "total_budget": Decimal(100),
    }
    arguments.update(kwargs)
    with pytest.raises(ValidationError) as caught:
        allocate_budget(**arguments)  # type: ignore[arg-type]
    assert caught.value.field == field
    assert fragment in caught.value.message


def test_bad_candidates_are_refused() -> None:
    curve = _curve((10.0, 10.0, 1.0))
    with pytest.raises(ValidationError, match="appears twice"):
        allocate_budget([AllocationCandidate("a", curve), AllocationCandidate("a", curve)], 10)
    with pytest.raises(ValidationError, match="below its min_spend"):
        allocate_budget(
            [AllocationCandidate("a", curve, min_spend=Decimal(5), max_spend=Decimal(4))], 10
        )
    with pytest.raises(ValidationError, match="predicts conversions"):
        allocate_budget([AllocationCandidate("a", curve)], 10, objective="revenue")
    with pytest.raises(ValidationError, match="at least one campaign"):
        allocate_budget([], 10)


# --- autopilot -------------------------------------------------------------------------------

_amounts = st.decimals(min_value=0, max_value=100_000, places=2, allow_nan=False)


@settings(max_examples=150, deadline=None)
@given(
    pairs=st.lists(st.tuples(_amounts, _amounts), min_size=1, max_size=6),
    pct=st.decimals(min_value="0.5", max_value=100, places=1),
    min_step=st.decimals(min_value=0, max_value=50, places=2),
)
def test_autopilot_never_moves_more_than_the_bound_and_always_toward_the_target(
    pairs: list[tuple[Decimal, Decimal]], pct: Decimal, min_step: Decimal
) -> None:
    current = {f"c{i}": cur for i, (cur, _) in enumerate(pairs)}
    recommended = {f"c{i}": rec for i, (_, rec) in enumerate(pairs)}
    plan = autopilot_step(current, recommended, max_change_pct=pct, min_step=min_step)
    for step in plan.steps:
        bound = max(step.current * pct / 100, min_step)
        assert abs(step.new - step.current) <= bound
        assert (
            min(step.current, step.recommended) <= step.new <= max(step.current, step.recommended)
        )
        if abs(step.recommended - step.current) <= bound:
            assert step.new == step.recommended
            assert not step.limited


@settings(max_examples=150, deadline=None)
@given(
    pairs=st.lists(st.tuples(_amounts, _amounts), min_size=1, max_size=6),
    pct=st.decimals(min_value=1, max_value=50, places=0),
    headroom=st.decimals(min_value=0, max_value=10_000, places=2),
)
def test_autopilot_respects_a_total_cap_without_breaking_the_bound(
    pairs: list[tuple[Decimal, Decimal]], pct: Decimal, headroom: Decimal
) -> None:
    current = {f"c{i}": cur for i, (cur, _) in enumerate(pairs)}
    recommended = {f"c{i}": rec for i, (_, rec) in enumerate(pairs)}
    cap = sum(current.values(), Decimal(0)) + headroom
    plan = autopilot_step(current, recommended, max_change_pct=pct, total_cap=cap)
    assert plan.total_after <= cap
    for step in plan.steps:
        assert abs(step.new - step.current) <= step.current * pct / 100


def test_autopilot_hand_case() -> None:
    plan = autopilot_step(
        {"a": Decimal(100), "b": Decimal(1000), "c": Decimal(0), "d": Decimal(50)},
        {"a": Decimal(300), "b": Decimal(990), "c": Decimal(80), "e": Decimal(40)},
        max_change_pct=Decimal(20),
        min_step=Decimal(25),
    )
    new = {s.campaign_id: s.new for s in plan.steps}
    # a: +20% of 100 = 20 < min_step 25 -> +25; b: within 200 -> 990; c: from 0 by min_step;
    # d: no recommendation -> kept; e: new campaign starts at 0 and moves by min_step.
    assert new == {
        "a": Decimal(125),
        "b": Decimal(990),
        "c": Decimal(25),
        "d": Decimal(50),
        "e": Decimal(25),
    }
    assert any("d has no recommendation" in n for n in plan.notes)
    assert plan.total_after == Decimal(1215)


def test_autopilot_cuts_everything_when_today_is_already_above_the_cap() -> None:
    plan = autopilot_step(
        {"a": Decimal(1000), "b": Decimal(1000)},
        {"a": Decimal(500), "b": Decimal(500)},
        max_change_pct=Decimal(10),
        total_cap=Decimal(1000),
    )
    assert plan.total_after <= Decimal(1000)
    assert [s.new for s in plan.steps] == [Decimal(500), Decimal(500)]
    assert any("beyond the daily step bound" in n for n in plan.notes)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_change_pct": 0}, "max_change_pct"),
        ({"max_change_pct": 5000}, "max_change_pct"),
        ({"min_step": -1}, "min_step"),
    ],
)
def test_autopilot_bad_bounds(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        autopilot_step({"a": Decimal(1)}, {"a": Decimal(2)}, **kwargs)  # type: ignore[arg-type]
    assert caught.value.field == field
    with pytest.raises(ValidationError) as negative:
        autopilot_step({"a": Decimal(-1)}, {"a": Decimal(2)})
    assert negative.value.field == "current[a]"
