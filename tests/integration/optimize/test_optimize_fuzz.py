"""No input, however odd, gets a 500 from the optimizer's routes: only the one error shape."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from .conftest import Seeded

_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**20), 10**20),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12),
    st.sampled_from(["40", "-100", "1e999", "NaN", "cpa", ">", "campaign", "2999-12-31",
                     "9999-12-31", "0001-01-01", "lp-a", "\x00"]),
)  # fmt: skip
_values = st.recursive(
    _scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)  # fmt: skip
_RULE_KEYS = ["name", "scope", "conditions", "actions", "window_days", "match", "cooldown_hours",
              "min_sample", "dry_run", "interval_minutes", "enabled", "goal", "campaign_ids"]  # fmt: skip
_EXPERIMENT_KEYS = ["name", "arm_kind", "arms", "campaign_id", "offer_id", "metric", "start", "end",
                    "loss_threshold", "min_share", "allocation", "credible_level"]  # fmt: skip
_BUDGET_KEYS = ["total_budget", "campaign_ids", "objective", "target_cpa", "history_days",
                "min_spend", "apply", "max_change_pct"]  # fmt: skip


def _bodies(keys: list[str], base: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(st.sampled_from(keys), _values, max_size=4).map(lambda d: {**base, **d})


def _check(response: Any) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert set(response.json()) == {"error"}, response.text


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_odd_bodies_never_break_the_routes(
    api: TestClient, seeded: Seeded, data: st.DataObject
) -> None:
    rule = data.draw(_bodies(_RULE_KEYS, {
        "name": "r", "scope": {"kind": "campaign"}, "window_days": 1, "actions": [{"kind": "pause"}],
        "conditions": [{"metric": "cpa", "operator": ">", "threshold": "1"}]}))  # fmt: skip
    _check(api.post("/api/rules", json=rule))
    experiment = data.draw(_bodies(_EXPERIMENT_KEYS, {
        "name": "e", "arm_kind": "landing_page", "campaign_id": seeded.campaigns["good"],
        "arms": ["lp-a", "lp-b"]}))  # fmt: skip
    created = api.post("/api/experiments", json=experiment)
    _check(created)
    if created.status_code == 201:
        _check(api.get(f"/api/experiments/{created.json()['id']}/analysis"))
    budget = data.draw(_bodies(_BUDGET_KEYS, {"total_budget": "100"}))
    _check(api.post("/api/recommendations/budget", json=budget))
