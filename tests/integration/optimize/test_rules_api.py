"""Rules through the API: CRUD, evaluation over real report metrics, actions, audit, bad input."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from perfmark.adapters.store.kinds import CAMPAIGNS, LINKS
from perfmark.domain.accounts import Role
from perfmark.optimize.api import HTTP_CLIENT_STATE
from perfmark.services import catalog
from perfmark.services.accounts import create_api_key

from .conftest import NOW, Seeded, traffic, write_lake

PAUSE_ON_CPA = {
    "name": "Pause campaigns above CPA 40",
    "scope": {"kind": "campaign"},
    "window_days": 3,
    "conditions": [{"metric": "cpa", "operator": ">", "threshold": "40"}],
    "min_sample": [{"metric": "clicks", "minimum": "50"}],
    "actions": [{"kind": "pause"}],
    "cooldown_hours": 24,
}


def _history(seeded: Seeded) -> None:
    """Three days before NOW: 'good' CPA 100/4 = 25, 'bad' 100/2 = 50, 'other' 30 clicks only."""
    events = []
    for back in (1, 2, 3):
        day = NOW - timedelta(days=back)
        events += traffic(seeded, "good", "p1", day, 100, 4)
        events += traffic(seeded, "bad", "p1", day, 100, 2)
        events += traffic(seeded, "other", "p1", day, 10, 0)
    # Outside the 3-day window: must not count.
    events += traffic(seeded, "good", "p1", NOW - timedelta(days=5), 100, 0)
    write_lake(seeded.container, events)


def _status(seeded: Seeded, name: str) -> str:
    record = catalog.get_object(seeded.container, seeded.owner, CAMPAIGNS, seeded.campaigns[name])
    return str(record.spec.status.value)


def test_crud_round_trip(api: TestClient) -> None:
    created = api.post("/api/rules", json=PAUSE_ON_CPA)
    assert created.status_code == 201, created.text
    body = created.json()
    rule_id = body["id"]
    assert body["conditions"] == [
        {"metric": "cpa", "operator": ">", "threshold": "40", "comparison": "value"}
    ]
    assert body["warnings"] == [] and body["enabled"] is True
    assert body["next_run_at"] == NOW.isoformat()
    assert [r["id"] for r in api.get("/api/rules").json()["data"]] == [rule_id]
    assert api.get(f"/api/rules/{rule_id}").json()["name"] == PAUSE_ON_CPA["name"]
    patched = api.patch(f"/api/rules/{rule_id}", json={"window_days": 7, "enabled": False})
    assert patched.status_code == 200, patched.text
    assert patched.json()["window_days"] == 7 and patched.json()["next_run_at"] is None
    assert patched.json()["conditions"] == body["conditions"]  # untouched fields stay
    assert api.delete(f"/api/rules/{rule_id}").json()["archived_at"] is not None
    assert api.get("/api/rules").json()["data"] == []
    assert len(api.get("/api/rules?include_archived=true").json()["data"]) == 1


def test_evaluate_pauses_the_campaign_above_the_cpa_and_audits_every_number(
    api: TestClient, seeded: Seeded
) -> None:
    _history(seeded)
    rule_id = api.post("/api/rules", json=PAUSE_ON_CPA).json()["id"]
    run = api.post(f"/api/rules/{rule_id}/evaluate", json={}).json()
    by_target = {t["target_id"]: t for t in run["targets"]}
    assert run["days"] == ["2026-01-08", "2026-01-10"]
    bad = by_target[seeded.campaigns["bad"]]
    assert bad["status"] == "fired"
    assert bad["conditions"][0]["value_now"] == "50"  # 300 cost / 6 conversions
    assert bad["sample_checks"][0]["value_now"] == "300"
    assert bad["outcomes"][0]["after"] == "paused"
    assert by_target[seeded.campaigns["good"]]["status"] == "conditions_not_met"
    assert by_target[seeded.campaigns["good"]]["conditions"][0]["value_now"] == "25"
    other = by_target[seeded.campaigns["other"]]
    assert other["status"] == "insufficient_sample"
    assert other["reason"] == "insufficient sample: clicks 30 < 50"
    assert _status(seeded, "bad") == "paused" and _status(seeded, "good") == "active"

    audit = api.get(f"/api/rules/{rule_id}/audit").json()["data"]
    fired = [row for row in audit if row["status"] == "fired"]
    assert len(audit) == 3 and len(fired) == 1
    assert fired[0]["target_id"] == seeded.campaigns["bad"] and fired[0]["applied"] is True
    assert fired[0]["reason"].startswith("fired: cpa 50 > 40 -> campaign ")
    assert fired[0]["data"]["metrics_now"] == {
        "impressions": 0, "clicks": 300, "conversions": 6, "cost": "300", "revenue": "300",
        "leads": None,
    }  # fmt: skip

    # Run again at once: the paused campaign is cooling down and nothing changes.
    again = api.post(f"/api/rules/{rule_id}/evaluate", json={}).json()
    bad_again = next(t for t in again["targets"] if t["target_id"] == seeded.campaigns["bad"])
    assert bad_again["status"] == "cooldown" and bad_again["outcomes"] == []


def test_dry_run_changes_nothing_but_logs(api: TestClient, seeded: Seeded) -> None:
    _history(seeded)
    rule_id = api.post("/api/rules", json=PAUSE_ON_CPA).json()["id"]
    run = api.post(f"/api/rules/{rule_id}/evaluate", json={"dry_run": True}).json()
    bad = next(t for t in run["targets"] if t["target_id"] == seeded.campaigns["bad"])
    assert bad["status"] == "dry_run" and bad["reason"] == "dry run, would fire: cpa 50 > 40"
    assert _status(seeded, "bad") == "active"
    statuses = {row["status"] for row in api.get("/api/rules/audit").json()["data"]}
    assert "dry_run" in statuses and "fired" not in statuses


def test_change_condition_on_the_previous_period(api: TestClient, seeded: Seeded) -> None:
    events = []
    for back in (1, 2):  # this window: CR 2 / 100 per day
        events += traffic(seeded, "good", "p1", NOW - timedelta(days=back), 100, 2)
    for back in (3, 4):  # the window before: CR 5 / 100 per day
        events += traffic(seeded, "good", "p1", NOW - timedelta(days=back), 100, 5)
    write_lake(seeded.container, events)
    rule = {
        "name": "CR halved", "scope": {"kind": "campaign", "target_ids": [seeded.campaigns["good"]]},
        "window_days": 2, "conditions": [{"metric": "cr", "operator": "<=", "threshold": "-50",
                                          "comparison": "change_pct"}],
        "actions": [{"kind": "change_budget", "percent": "-25"}],
    }  # fmt: skip
    rule_id = api.post("/api/rules", json=rule).json()["id"]
    run = api.post(f"/api/rules/{rule_id}/evaluate", json={}).json()
    (target,) = run["targets"]
    assert target["conditions"][0]["value_now"] == "0.02"
    assert target["conditions"][0]["value_previous"] == "0.05"
    assert Decimal(target["conditions"][0]["compared_value"]) == Decimal(-60)
    assert target["status"] == "fired"
    assert target["outcomes"][0]["before"] == "100" and target["outcomes"][0]["after"] == "75.00"


def test_goal_counts_only_that_goals_conversions(api: TestClient, seeded: Seeded) -> None:
    day = NOW - timedelta(days=1)
    write_lake(seeded.container, traffic(seeded, "good", "p1", day, 100, 10)
               + traffic(seeded, "good", "p1", day, 0, 1, goal="qualified", value=None))  # fmt: skip
    rule = {**PAUSE_ON_CPA, "goal": "qualified", "window_days": 1,
            "scope": {"kind": "campaign", "target_ids": [seeded.campaigns["good"]]}}  # fmt: skip
    rule_id = api.post("/api/rules", json=rule).json()["id"]
    (target,) = api.post(f"/api/rules/{rule_id}/evaluate", json={"dry_run": True}).json()["targets"]
    # Cost 100 over 1 qualified lead, not over the 10 sales.
    assert target["conditions"][0]["value_now"] == "100"


def test_publisher_pause_and_bid_change_reach_links_and_pricing(
    api: TestClient, seeded: Seeded
) -> None:
    write_lake(seeded.container, traffic(seeded, "bad", "p2", NOW - timedelta(days=1), 60, 0))
    rule = {
        "name": "P2 burns money", "scope": {"kind": "publisher", "target_ids": [seeded.publishers["p2"]]},
        "window_days": 1, "conditions": [{"metric": "cost", "operator": ">=", "threshold": 50}],
        "actions": [{"kind": "pause"}, {"kind": "change_bid", "percent": -20}],
    }  # fmt: skip
    rule_id = api.post("/api/rules", json=rule).json()["id"]
    (target,) = api.post(f"/api/rules/{rule_id}/evaluate", json={}).json()["targets"]
    assert target["status"] == "fired", target
    assert all(outcome["ok"] for outcome in target["outcomes"]), target["outcomes"]
    for name in ("bad/p2", "bad/p2-top"):
        link = catalog.get_object(seeded.container, seeded.owner, LINKS, seeded.links[name])
        assert link.spec.status.value == "paused"
    assert (
        catalog.get_object(
            seeded.container, seeded.owner, LINKS, seeded.links["bad/p1"]
        ).spec.status.value
        == "active"
    )
    pricing = catalog.get_object(
        seeded.container, seeded.owner, CAMPAIGNS, seeded.campaigns["bad"]
    ).spec.pricing
    override = next(rule for rule in pricing if rule.publisher_id == seeded.publishers["p2"])
    assert override.pays.amount == Decimal("0.8000")  # 1.00 - 20%, a new override
    assert next(r for r in pricing if r.publisher_id is None).pays.amount == Decimal("1.00")


def test_sub_id_pause_uses_links_that_fix_it_and_says_why_otherwise(
    api: TestClient, seeded: Seeded
) -> None:
    p2 = seeded.publishers["p2"]
    write_lake(seeded.container,
               traffic(seeded, "bad", "p2", NOW - timedelta(days=1), 60, 0, sub1="top")
               + traffic(seeded, "bad", "p2", NOW - timedelta(days=1), 60, 0, sub1="feed"))  # fmt: skip
    rule = {
        "name": "Bad placements", "scope": {"kind": "sub_id"}, "window_days": 1,
        "conditions": [{"metric": "cpa", "operator": ">", "threshold": 40}],
        "actions": [{"kind": "pause"}],
    }  # fmt: skip
    rule_id = api.post("/api/rules", json=rule).json()["id"]
    run = api.post(f"/api/rules/{rule_id}/evaluate", json={}).json()
    outcomes = {t["target_id"]: t["outcomes"][0] for t in run["targets"]}
    assert set(outcomes) == {f"{p2}:top", f"{p2}:feed"}
    assert outcomes[f"{p2}:top"]["ok"] is True
    assert (
        catalog.get_object(
            seeded.container, seeded.owner, LINKS, seeded.links["bad/p2-top"]
        ).spec.status.value
        == "paused"
    )
    assert outcomes[f"{p2}:feed"]["ok"] is False
    assert "cannot be blocked" in outcomes[f"{p2}:feed"]["detail"]
    audit = api.get(f"/api/rules/{rule_id}/audit").json()["data"]
    assert {row["status"] for row in audit} == {"fired", "fired_with_errors"}


def test_landing_page_pause_resume_and_weight_shift(api: TestClient, seeded: Seeded) -> None:
    good = seeded.campaigns["good"]
    write_lake(seeded.container, traffic(seeded, "good", "p1", NOW - timedelta(days=1), 60, 0,
                                          landing_page="lp-b"))  # fmt: skip
    target = f"{good}:lp-b"
    pause = {"name": "Pause lp-b", "scope": {"kind": "landing_page", "target_ids": [target]},
             "window_days": 1, "conditions": [{"metric": "clicks", "operator": ">", "threshold": 10}],
             "actions": [{"kind": "pause"}]}  # fmt: skip
    rule_id = api.post("/api/rules", json=pause).json()["id"]
    api.post(f"/api/rules/{rule_id}/evaluate", json={})
    pages = catalog.get_object(seeded.container, seeded.owner, CAMPAIGNS, good).spec.landing_pages
    assert [p.key for p in pages] == ["lp-a"]
    resume = {**pause, "name": "Resume lp-b", "actions": [{"kind": "resume"}],
              "conditions": [{"metric": "clicks", "operator": ">", "threshold": 1000}]}  # fmt: skip
    resume_id = api.post("/api/rules", json=resume).json()["id"]
    api.patch(f"/api/rules/{resume_id}", json={"conditions": [
        {"metric": "clicks", "operator": ">", "threshold": 5}]})  # fmt: skip
    api.post(f"/api/rules/{resume_id}/evaluate", json={})
    pages = catalog.get_object(seeded.container, seeded.owner, CAMPAIGNS, good).spec.landing_pages
    assert [(p.key, p.url) for p in pages] == [("lp-a", "https://shop.example/a"),
                                               ("lp-b", "https://shop.example/b")]  # fmt: skip
    shift = {**pause, "name": "Boost lp-b", "actions": [{"kind": "shift_rotation_weight",
                                                        "percent": 150}]}  # fmt: skip
    shift_id = api.post("/api/rules", json=shift).json()["id"]
    api.post(f"/api/rules/{shift_id}/evaluate", json={})
    pages = catalog.get_object(seeded.container, seeded.owner, CAMPAIGNS, good).spec.landing_pages
    assert {p.key: p.weight for p in pages} == {"lp-a": 1, "lp-b": 3}  # 1 x 2.5 = 2.5 -> 3


def test_webhook_goes_through_the_injected_client(api: TestClient, seeded: Seeded) -> None:
    _history(seeded)
    received: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        received.append(json.loads(request.content))
        return httpx.Response(204)

    app = api.app
    setattr(app.state, HTTP_CLIENT_STATE, httpx.Client(transport=httpx.MockTransport(handler)))  # type: ignore[attr-defined]
    try:
        rule = {**PAUSE_ON_CPA, "actions": [{"kind": "send_webhook",
                                             "webhook_url": "https://hooks.example/cpa"}]}  # fmt: skip
        rule_id = api.post("/api/rules", json=rule).json()["id"]
        run = api.post(f"/api/rules/{rule_id}/evaluate", json={}).json()
    finally:
        setattr(app.state, HTTP_CLIENT_STATE, None)  # type: ignore[attr-defined]
    assert [payload["target_id"] for payload in received] == [seeded.campaigns["bad"]]
    assert received[0]["conditions"][0]["value_now"] == "50"
    fired = next(t for t in run["targets"] if t["status"] == "fired")
    assert fired["outcomes"][0]["after"] == 204


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"conditions": [{"metric": "cpx", "operator": ">", "threshold": "1"}]}, "conditions[0].metric"),
        ({"conditions": [{"metric": "cpa", "operator": "=>", "threshold": "1"}]}, "operator"),
        ({"window_days": 0}, "window_days"),
        ({"actions": [{"kind": "change_bid"}]}, "action.percent"),
        ({"actions": [{"kind": "send_webhook", "webhook_url": "ftp://x.example"}]}, "action.webhook_url"),
        ({"actions": [{"kind": "shift_rotation_weight", "percent": 10}]}, "actions"),
        ({"actions": [{"kind": "pause"}, {"kind": "resume"}]}, "actions"),
        ({"goal": "no-such-goal"}, "goal"),
        ({"campaign_ids": ["cmp_nope"]}, "campaign_ids"),
        ({"scope": {"kind": "landing_page", "target_ids": ["no-colon"]}}, "scope.target_ids"),
    ],
)  # fmt: skip
def test_bad_rules_are_refused_with_the_field(
    api: TestClient, change: dict[str, Any], field: str
) -> None:
    response = api.post("/api/rules", json={**PAUSE_ON_CPA, **change})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == field
    assert api.get("/api/rules").json()["data"] == []


def test_rules_that_undo_each_other_are_warned_about_before_they_run(api: TestClient) -> None:
    first = api.post("/api/rules", json=PAUSE_ON_CPA).json()
    assert first["warnings"] == []
    resume = {**PAUSE_ON_CPA, "name": "Resume cheap", "actions": [{"kind": "resume"}],
              "conditions": [{"metric": "cpa", "operator": "<", "threshold": "50"}]}  # fmt: skip
    second = api.post("/api/rules", json=resume).json()
    (warning,) = second["warnings"]
    assert warning["code"] == "cycle"
    assert set(warning["rule_ids"]) == {first["id"], second["id"]}
    assert "undo each other" in warning["message"]
    assert api.get("/api/rules/warnings").json()["data"][0]["code"] == "cycle"
    # A gap between the thresholds cures it.
    fixed = api.patch(f"/api/rules/{second['id']}", json={"conditions": [
        {"metric": "cpa", "operator": "<", "threshold": "30"}]}).json()  # fmt: skip
    assert fixed["warnings"] == []
    assert second["last_run_at"] is None  # nothing ran


def test_roles_and_workspaces(api: TestClient, seeded: Seeded) -> None:
    rule_id = api.post("/api/rules", json=PAUSE_ON_CPA).json()["id"]
    analyst = create_api_key(seeded.container, seeded.owner, "ro", Role.ANALYST).secret
    headers = {"Authorization": f"Bearer {analyst}"}
    assert api.post("/api/rules", json=PAUSE_ON_CPA, headers=headers).status_code == 403
    assert api.get(f"/api/rules/{rule_id}", headers=headers).status_code == 200
    assert api.post(f"/api/rules/{rule_id}/evaluate", json={}, headers=headers).status_code == 403
    assert api.get("/api/rules/rule_nope").status_code == 404
