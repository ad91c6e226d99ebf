"""Experiments through the API: validation, analysis from the lake, SRM, Thompson allocation."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from scipy import stats
from starlette.testclient import TestClient

from perfmark.adapters.store.engine import transaction
from perfmark.adapters.store.kinds import CAMPAIGNS
from perfmark.clock import FixedClock
from perfmark.optimize import store
from perfmark.services import catalog

from .conftest import NOW, Seeded, click, conversion, write_lake


def _arm_traffic(
    seeded: Seeded, day_back: int, page: str, clicks: int, conversions: int
) -> list[Any]:
    day = NOW - timedelta(days=day_back)
    events = [click(seeded, "good", "p1", day + timedelta(seconds=i), landing_page=page)
              for i in range(clicks)]  # fmt: skip
    events += [conversion(seeded, "good", "p1", day + timedelta(hours=1, seconds=i),
                          landing_page=page, value="20.00") for i in range(conversions)]  # fmt: skip
    return events


def _experiment(seeded: Seeded, **extra: Any) -> dict[str, Any]:
    return {"name": "Pages", "arm_kind": "landing_page", "campaign_id": seeded.campaigns["good"],
            "arms": ["lp-a", "lp-b"], "start": "2026-01-01", "min_visitors_per_arm": 500,
            **extra}  # fmt: skip


def test_analysis_numbers_match_the_beta_binomial_posterior(
    api: TestClient, seeded: Seeded
) -> None:
    write_lake(seeded.container, _arm_traffic(seeded, 1, "lp-a", 1000, 50)
               + _arm_traffic(seeded, 1, "lp-b", 1000, 70))  # fmt: skip
    created = api.post("/api/experiments", json=_experiment(seeded))
    assert created.status_code == 201, created.text
    body = api.get(f"/api/experiments/{created.json()['id']}/analysis").json()
    arms = {arm["name"]: arm for arm in body["analysis"]["arms"]}
    assert (arms["lp-a"]["visitors"], arms["lp-a"]["conversions"]) == (1000, 50)
    assert arms["lp-a"]["mean"] == pytest.approx(51 / 1002, rel=1e-12)  # Beta(1 + 50, 1 + 950)
    assert arms["lp-b"]["mean"] == pytest.approx(71 / 1002, rel=1e-12)
    low, high = stats.beta(71, 931).ppf([0.025, 0.975])
    assert (arms["lp-b"]["interval_low"], arms["lp-b"]["interval_high"]) == pytest.approx(
        (low, high)
    )
    # P(B > A) by a large independent simulation.
    rng = np.random.default_rng(3)
    draws = 2_000_000
    simulated = float(np.mean(rng.beta(71, 931, draws) > rng.beta(51, 951, draws)))
    assert arms["lp-b"]["probability_best"] == pytest.approx(simulated, abs=0.002)
    assert body["analysis"]["leader"] == "lp-b"
    assert body["decision"]["reason"] in ("keep_running", "loss_below_threshold")
    assert body["sample_ratio"]["mismatch"] is False  # 1000 / 1000 on 1:1


def test_a_broken_split_is_flagged_and_blocks_a_winner(api: TestClient, seeded: Seeded) -> None:
    write_lake(seeded.container, _arm_traffic(seeded, 1, "lp-a", 1000, 50)
               + _arm_traffic(seeded, 1, "lp-b", 700, 70))  # fmt: skip
    experiment_id = api.post("/api/experiments", json=_experiment(seeded)).json()["id"]
    body = api.get(f"/api/experiments/{experiment_id}/analysis").json()
    check = body["sample_ratio"]
    assert check["expected_visitors"] == [850, 850]
    assert check["statistic"] == pytest.approx(2 * 150**2 / 850)
    assert check["p_value"] == pytest.approx(stats.chi2.sf(2 * 150**2 / 850, 1))
    assert check["mismatch"] is True
    assert (
        body["decision"]["reason"] == "sample_ratio_mismatch" and body["decision"]["winner"] is None
    )


def test_srm_follows_the_weights_the_bandit_served(
    api: TestClient, seeded: Seeded, clock: FixedClock
) -> None:
    clock.current = NOW - timedelta(days=2)
    experiment_id = api.post("/api/experiments", json=_experiment(seeded, allocation=True)).json()[
        "id"
    ]
    with transaction(seeded.container.engine) as conn:  # the bandit moved to 90/10 a day later
        store.add_weights(conn, experiment_id, NOW - timedelta(days=1), {"lp-a": 90, "lp-b": 10})
    clock.current = NOW
    write_lake(seeded.container, _arm_traffic(seeded, 2, "lp-a", 500, 20)
               + _arm_traffic(seeded, 2, "lp-b", 500, 20)
               + _arm_traffic(seeded, 1, "lp-a", 900, 40)
               + _arm_traffic(seeded, 1, "lp-b", 100, 4))  # fmt: skip
    check = api.get(f"/api/experiments/{experiment_id}/analysis").json()["sample_ratio"]
    # Expected: 1000 x 50/50 on day one, 1000 x 90/10 on day two = exactly what was seen.
    assert check["expected_visitors"] == pytest.approx([1400, 600])
    assert check["statistic"] == pytest.approx(0) and check["mismatch"] is False


def test_thompson_allocation_patches_the_rotation_with_a_floor(
    api: TestClient, seeded: Seeded
) -> None:
    write_lake(seeded.container, _arm_traffic(seeded, 1, "lp-a", 1000, 30)
               + _arm_traffic(seeded, 1, "lp-b", 1000, 60))  # fmt: skip
    experiment_id = api.post(
        "/api/experiments", json=_experiment(seeded, allocation=True, min_share=0.1)
    ).json()["id"]
    dry = api.post(f"/api/experiments/{experiment_id}/allocate", json={"dry_run": True}).json()
    assert dry["applied"] is False
    pages = catalog.get_object(seeded.container, seeded.owner, CAMPAIGNS,
                               seeded.campaigns["good"]).spec.landing_pages  # fmt: skip
    assert [p.weight for p in pages] == [1, 1]
    result = api.post(f"/api/experiments/{experiment_id}/allocate", json={}).json()
    assert result["applied"] is True
    # P(lp-b best) is ~1 (60 vs 30 of 1000), so lp-a keeps only its floor of 10 of 100.
    assert result["after"] == {"lp-a": 10, "lp-b": 90}
    pages = catalog.get_object(seeded.container, seeded.owner, CAMPAIGNS,
                               seeded.campaigns["good"]).spec.landing_pages  # fmt: skip
    assert {p.key: p.weight for p in pages} == {"lp-a": 10, "lp-b": 90}
    with transaction(seeded.container.engine) as conn:
        history = store.weight_history(conn, experiment_id)
        audit = store.list_audit(conn, seeded.workspace_id, source="bandit")
    assert [weights for _, weights in history][-1] == {"lp-a": 10, "lp-b": 90}
    assert [row.status for row in audit] == ["allocated", "dry_run"]


def test_value_per_visitor_and_offer_experiments(api: TestClient, seeded: Seeded) -> None:
    write_lake(seeded.container, _arm_traffic(seeded, 1, "lp-a", 400, 20)
               + _arm_traffic(seeded, 1, "lp-b", 400, 10))  # fmt: skip
    value = api.post(
        "/api/experiments", json=_experiment(seeded, metric="value_per_visitor")
    ).json()
    body = api.get(f"/api/experiments/{value['id']}/analysis").json()
    arms = {arm["name"]: arm for arm in body["analysis"]["arms"]}
    assert body["analysis"]["method"].startswith("monte_carlo")
    # E[rate] x E[order value]; exponential model, prior (2, pooled mean 20): (20 + 400) / 21.
    assert arms["lp-a"]["mean"] == pytest.approx(21 / 402 * 20, rel=1e-9)
    offer = api.post("/api/experiments", json={
        "name": "Offers", "arm_kind": "offer", "arms": [seeded.offer_id, seeded.offer_id + "x"]})  # fmt: skip
    assert offer.status_code == 422 and offer.json()["error"]["field"] == "arms"


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"arms": ["lp-a"]}, "arms", "at least 2 arms"),
        ({"arms": ["lp-a", "lp-a"]}, "arms", "repeat"),
        ({"arms": ["lp-a", "lp-z"]}, "arms", "lp-z"),
        ({"campaign_id": None}, "campaign_id", "exactly one"),
        ({"offer_id": "off_x"}, "campaign_id", "exactly one"),
        ({"metric": "clicks"}, "metric", "not known"),
        ({"min_share": 0.6}, "min_share", "0.5000"),
        ({"goal": "nope"}, "goal", "nope"),
        ({"arm_kind": "offer", "allocation": True}, "allocation", "rotates landing pages"),
    ],
)  # fmt: skip
def test_bad_experiments_are_refused(
    api: TestClient, seeded: Seeded, change: dict[str, Any], field: str, words: str
) -> None:
    response = api.post("/api/experiments", json={**_experiment(seeded), **change})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == field
    assert words in response.json()["error"]["message"]


def test_crud_and_stop(api: TestClient, seeded: Seeded) -> None:
    experiment_id = api.post("/api/experiments", json=_experiment(seeded, allocation=True)).json()[
        "id"
    ]
    assert api.get(f"/api/experiments/{experiment_id}").json()["next_allocation_at"] is not None
    stopped = api.patch(f"/api/experiments/{experiment_id}", json={"status": "stopped"}).json()
    assert stopped["status"] == "stopped" and stopped["next_allocation_at"] is None
    assert (
        api.patch(f"/api/experiments/{experiment_id}", json={"arms": ["lp-b"]}).status_code == 422
    )
    assert api.delete(f"/api/experiments/{experiment_id}").json()["archived_at"] is not None
    assert api.get("/api/experiments").json()["data"] == []
