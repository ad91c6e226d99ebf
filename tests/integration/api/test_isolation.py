"""Workspace isolation: another tenant's ids answer 404 and never appear in lists or references."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from .helpers import assert_error, created, seed_graph

if TYPE_CHECKING:
    from starlette.testclient import TestClient

Graph = dict[str, dict[str, Any]]

KINDS = {
    "advertiser": "advertisers",
    "offer": "offers",
    "goal": "goals",
    "publisher": "publishers",
    "campaign": "campaigns",
    "link": "links",
}


@pytest.mark.parametrize("key", sorted(KINDS))
def test_foreign_ids_are_404_on_get_patch_delete(
    api: TestClient, other_api: TestClient, graph: Graph, key: str
) -> None:
    kind, target = KINDS[key], graph[key]
    change = {"sub1": "hijacked"} if key == "link" else {"name": "Hijacked"}
    for method, body in (("GET", None), ("PATCH", change), ("DELETE", None)):
        response = other_api.request(method, f"/api/{kind}/{target['id']}", json=body)
        message = assert_error(response, 404, "not_found")
        assert target["id"] in message
    # The owner's object is untouched.
    assert api.get(f"/api/{kind}/{target['id']}").json() == target


def test_foreign_secrets_and_keys_are_404(
    api: TestClient, other_api: TestClient, graph: Graph, workspace: Any
) -> None:
    for kind, key in (("advertisers", "advertiser"), ("publishers", "publisher")):
        assert_error(other_api.get(f"/api/{kind}/{graph[key]['id']}/secret"), 404, "not_found")
    assert_error(other_api.delete(f"/api/apikeys/{workspace.api_key.info.id}"), 404, "not_found")
    assert api.get("/api/campaigns").status_code == 200  # the owner key still works
    listed = other_api.get("/api/apikeys").json()["data"]
    assert workspace.api_key.info.id not in [k["id"] for k in listed]


def test_lists_never_show_another_workspace(
    api: TestClient, other_api: TestClient, graph: Graph
) -> None:
    theirs = seed_graph(other_api, currency="USD")
    for key, kind in KINDS.items():
        mine = [item["id"] for item in api.get(f"/api/{kind}?include_archived=true").json()["data"]]
        other = [
            item["id"]
            for item in other_api.get(f"/api/{kind}?include_archived=true").json()["data"]
        ]
        assert mine == [graph[key]["id"]], kind
        assert other == [theirs[key]["id"]], kind
    # Filters and cursors cannot reach across either.
    slug = graph["link"]["slug"]
    assert other_api.get(f"/api/links?slug={slug}").json()["data"] == []
    by_adv = other_api.get(f"/api/campaigns?advertiser_id={graph['advertiser']['id']}")
    assert by_adv.json()["data"] == []
    page = other_api.get("/api/campaigns?limit=1&cursor=cmp_").json()
    assert [c["id"] for c in page["data"]] == [theirs["campaign"]["id"]]
    assert other_api.get("/api/workspace").json()["name"] == "Other"
    assert api.get("/api/workspace").json()["name"] == "Test"


def test_references_to_another_workspace_are_422(
    api: TestClient, other_api: TestClient, graph: Graph
) -> None:
    theirs = seed_graph(other_api)
    adv, off, goal = graph["advertiser"]["id"], graph["offer"]["id"], graph["goal"]["id"]
    pub, cmp = graph["publisher"]["id"], graph["campaign"]["id"]
    own_adv = theirs["advertiser"]["id"]
    own_off = theirs["offer"]["id"]
    cases: list[tuple[str, dict[str, Any], str, str]] = [
        (
            "offers",
            {
                "name": "O",
                "advertiser_id": adv,
                "landing_pages": [{"key": "a", "url": "https://a.example/"}],
            },
            "advertiser_id",
            adv,
        ),
        ("goals", {"name": "G", "key": "g2", "advertiser_id": adv}, "advertiser_id", adv),
        (
            "campaigns",
            {"name": "C", "advertiser_id": adv, "offer_id": own_off, "currency": "EUR"},
            "advertiser_id",
            adv,
        ),
        (
            "campaigns",
            {"name": "C", "advertiser_id": own_adv, "offer_id": off, "currency": "EUR"},
            "offer_id",
            off,
        ),
        (
            "campaigns",
            {
                "name": "C",
                "advertiser_id": own_adv,
                "offer_id": own_off,
                "currency": "EUR",
                "goal_ids": [goal],
            },
            "goal_ids",
            goal,
        ),
        (
            "campaigns",
            {
                "name": "C",
                "advertiser_id": own_adv,
                "offer_id": own_off,
                "currency": "EUR",
                "caps": [{"limit": "3", "scope": "publisher", "publisher_id": pub}],
            },
            "caps.publisher_id",
            pub,
        ),
        (
            "links",
            {"campaign_id": cmp, "publisher_id": theirs["publisher"]["id"]},
            "campaign_id",
            cmp,
        ),
        (
            "links",
            {"campaign_id": theirs["campaign"]["id"], "publisher_id": pub},
            "publisher_id",
            pub,
        ),
        (
            "users",
            {"email": "p@example.com", "name": "P", "role": "publisher", "publisher_id": pub},
            "publisher_id",
            pub,
        ),
    ]
    for kind, body, field, foreign_id in cases:
        message = assert_error(other_api.post(f"/api/{kind}", json=body), 422, "validation_error")
        assert other_api.post(f"/api/{kind}", json=body).json()["error"]["field"] == field, kind
        assert foreign_id in message
    # A PATCH cannot smuggle a foreign reference in either.
    response = other_api.patch(
        f"/api/campaigns/{theirs['campaign']['id']}",
        json={"goal_ids": [theirs["goal"]["id"], goal]},
    )
    assert_error(response, 422, "validation_error", "goal_ids")


def test_idempotency_keys_are_per_workspace(api: TestClient, other_api: TestClient) -> None:
    headers = {"Idempotency-Key": "same-key"}
    mine = created(api.post("/api/advertisers", json={"name": "A"}, headers=headers))
    theirs = created(other_api.post("/api/advertisers", json={"name": "A"}, headers=headers))
    assert mine["id"] != theirs["id"]
    assert mine["workspace_id"] != theirs["workspace_id"]
    assert_error(other_api.get(f"/api/advertisers/{mine['id']}"), 404, "not_found")
