"""The optimizer's service logic that needs no store: parsing, targets, windows, weights, JSON."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perfmark.errors import ValidationError
from perfmark.money import Money
from perfmark.optimize.domain.rules import METRICS, ScopeKind, parse_rule
from perfmark.optimize.services.allocation import parse_budget_request
from perfmark.optimize.services.bids import parse_bid_request
from perfmark.optimize.services.experiment_analysis import served_shares
from perfmark.optimize.services.experiments import experiment_to_data, parse_experiment
from perfmark.optimize.services.metrics import snapshot_of
from perfmark.optimize.services.rules import ALLOWED_ACTIONS, rule_to_data, split_target
from perfmark.optimize.services.views import jsonable

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_split_target_reads_composite_ids() -> None:
    assert split_target(ScopeKind.CAMPAIGN, "cmp_1") == ("cmp_1", "")
    assert split_target(ScopeKind.LANDING_PAGE, "cmp_1:lp-a") == ("cmp_1", "lp-a")
    assert split_target(ScopeKind.SUB_ID, "pub_1:a:b") == ("pub_1", "a:b")  # first colon only
    for bad in ("cmp_1", ":lp", "cmp_1:"):
        with pytest.raises(ValidationError) as raised:
            split_target(ScopeKind.CREATIVE, bad)
        assert raised.value.field == "scope.target_ids"


def test_actions_allowed_per_target_kind() -> None:
    kinds = {kind: {a.value for a in actions} for kind, actions in ALLOWED_ACTIONS.items()}
    assert "change_budget" in kinds[ScopeKind.CAMPAIGN]
    assert "shift_rotation_weight" not in kinds[ScopeKind.CAMPAIGN]
    assert kinds[ScopeKind.SUB_ID] == {"pause", "resume", "send_webhook"}
    assert kinds[ScopeKind.LANDING_PAGE] == kinds[ScopeKind.CREATIVE]
    assert set(ALLOWED_ACTIONS) == set(ScopeKind)


_conditions = st.lists(
    st.fixed_dictionaries({
        "metric": st.sampled_from(METRICS),
        "operator": st.sampled_from([">", ">=", "<", "<=", "==", "!="]),
        "threshold": st.decimals(min_value=-1000, max_value=1000, places=3).map(str),
        "comparison": st.sampled_from(["value", "change_pct"]),
    }),
    min_size=1, max_size=4,
)  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(
    conditions=_conditions,
    window=st.integers(1, 365),
    cooldown=st.integers(0, 8760),
    percent=st.decimals(min_value=-99, max_value=1000, places=2).filter(lambda p: p != 0),
    dry_run=st.booleans(),
)
def test_a_rule_survives_its_json_round_trip(
    conditions: list[dict[str, Any]], window: int, cooldown: int, percent: Decimal, dry_run: bool
) -> None:
    rule = parse_rule({
        "rule_id": "rule_x", "name": "r", "scope": {"kind": "campaign", "target_ids": ["c2", "c1"]},
        "conditions": conditions, "actions": [{"kind": "change_bid", "percent": str(percent)}],
        "window_days": window, "cooldown_hours": cooldown, "dry_run": dry_run,
        "min_sample": [{"metric": "clicks", "minimum": "50"}],
    })  # fmt: skip
    again = parse_rule({**rule_to_data(rule), "rule_id": "rule_x"})
    assert again == rule


def test_snapshot_clamps_window_sums_that_dip_below_zero() -> None:
    snapshot = snapshot_of({"clicks": Decimal(10), "conversions": Decimal(-1),
                            "cost": Decimal("5.5"), "revenue": Decimal("-3")})  # fmt: skip
    assert (snapshot.clicks, snapshot.conversions, snapshot.cost, snapshot.revenue) == (
        10, 0, Decimal("5.5"), Decimal(0))  # fmt: skip
    assert snapshot.leads is None and snapshot.value("cpa") == Decimal("Infinity")
    assert snapshot_of({}).value("cpa") is None


def test_served_shares_weight_each_split_by_the_time_it_held() -> None:
    history = [(T0, {"a": 50, "b": 50}), (T0 + timedelta(hours=6), {"a": 90, "b": 10})]
    day = served_shares(history, T0, T0 + timedelta(days=1))
    # 6 h at 50/50 then 18 h at 90/10: a = 0.25 x 0.5 + 0.75 x 0.9 = 0.8
    assert day["a"] == pytest.approx(0.8) and day["b"] == pytest.approx(0.2)
    later = served_shares(history, T0 + timedelta(days=1), T0 + timedelta(days=2))
    assert later == pytest.approx({"a": 0.9, "b": 0.1})
    before = served_shares(history, T0 - timedelta(days=1), T0)  # before the first record
    assert before == pytest.approx({"a": 0.5, "b": 0.5})


def _experiment(**extra: Any) -> dict[str, Any]:
    return {"name": "E", "arm_kind": "landing_page", "campaign_id": "cmp_1", "arms": ["a", "b"],
            **extra}  # fmt: skip


def test_experiment_json_round_trip_and_defaults() -> None:
    spec = parse_experiment(_experiment(metric="value_per_visitor", allocation=True,
                                        min_share=0.1, start="2026-01-02"))  # fmt: skip
    assert parse_experiment(experiment_to_data(spec)) == spec
    assert spec.stopping.min_visitors_per_arm == 1000 and spec.credible_level == 0.95
    assert spec.sharpness == 1.0 and spec.floor_evidence is None  # plain Thompson, fixed floor
    tuned = parse_experiment(_experiment(allocation=True, sharpness=2, floor_evidence=50))
    assert (tuned.sharpness, tuned.floor_evidence) == (2.0, 50)
    assert parse_experiment(experiment_to_data(tuned)) == tuned


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (_experiment(arms=["a"]), "arms"),
        (_experiment(arms=[]), "arms"),
        (_experiment(arms="ab"), "arms"),
        (_experiment(arm_kind="banner"), "arm_kind"),
        (_experiment(arm_kind="creative", campaign_id=None), "campaign_id"),
        (_experiment(arm_kind="creative", offer_id="off_1"), "offer_id"),
        (_experiment(start="2026-02-01", end="2026-01-01"), "end"),
        (_experiment(start="yesterday"), "start"),
        (_experiment(loss_threshold=0), "loss_threshold"),
        (_experiment(min_visitors_per_arm=10, max_visitors_per_arm=5), "max_visitors_per_arm"),
        (_experiment(credible_level=1.5), "credible_level"),
        (_experiment(allocation="yes"), "allocation"),
        (_experiment(sharpness=0.5), "sharpness"),
        (_experiment(sharpness=9), "sharpness"),
        (_experiment(floor_evidence=0), "floor_evidence"),
        (_experiment(floor_evidence=2.5), "floor_evidence"),
        (_experiment(name=""), "name"),
    ],
)  # fmt: skip
def test_bad_experiments_name_the_field(data: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as raised:
        parse_experiment(data)
    assert raised.value.field == field


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({}, "total_budget"),
        ({"total_budget": 1.5}, "total_budget"),  # floats are refused: money is exact
        ({"total_budget": "-1"}, "total_budget"),
        ({"total_budget": "10", "objective": "clicks"}, "objective"),
        ({"total_budget": "10", "history_days": 0}, "history_days"),
        ({"total_budget": "10", "target_cpa": "0"}, "target_cpa"),
        ({"total_budget": "10", "min_spend": ["a"]}, "min_spend"),
        ({"total_budget": "10", "interval_level": 1}, "interval_level"),
    ],
)  # fmt: skip
def test_bad_budget_requests_name_the_field(data: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as raised:
        parse_budget_request(data)
    assert raised.value.field == field


def test_budget_request_keeps_amounts_exact() -> None:
    request = parse_budget_request({"total_budget": "1234.56", "min_spend": {"c": "10.10"},
                                    "target_roas": "1.5", "objective": "revenue"})  # fmt: skip
    assert request.total_budget == Decimal("1234.56")
    assert request.min_spend == {"c": Decimal("10.10")} and request.target_roas == Decimal("1.5")


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"target_cpa": "10"}, "campaign_id"),
        ({"campaign_id": "c"}, "target_cpa"),
        ({"campaign_id": "c", "target_cpa": "10", "target_roas": "2"}, "target_cpa"),
        ({"campaign_id": "c", "target_cpa": "10", "by": "creative"}, "by"),
        ({"campaign_id": "c", "target_cpa": "10", "sub_field": "sub9"}, "sub_field"),
        ({"campaign_id": "c", "target_roas": "-2"}, "target_roas"),
    ],
)  # fmt: skip
def test_bad_bid_requests_name_the_field(data: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as raised:
        parse_bid_request(data)
    assert raised.value.field == field


def test_jsonable_keeps_money_exact_and_drops_infinities() -> None:
    value = {"cpa": Decimal("Infinity"), "bid": Money(Decimal("0.1250"), "USD"),
             "rate": float("inf"), "at": T0, "ids": ("a", "b"), "n": 3}  # fmt: skip
    assert jsonable(value) == {"cpa": None, "bid": {"amount": "0.1250", "currency": "USD"},
                               "rate": None, "at": "2026-01-01T00:00:00+00:00",
                               "ids": ["a", "b"], "n": 3}  # fmt: skip
