"""Every resource over HTTP: create, read, update, list, archive; pagination and filters."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

from perfmark.services.container import Container

from .helpers import assert_error, created

Graph = dict[str, dict[str, Any]]

#: For each resource: a create body (given the seeded graph), a PATCH body, and what it changes.
CASES: dict[str, tuple[Callable[[Graph], dict[str, Any]], dict[str, Any]]] = {
    "advertisers": (
        lambda g: {"name": "Beta", "currency": "usd", "credit_limit": "1000.00"},
        {"name": "Beta Corp", "billing_mode": "prepaid"},
    ),
    "publishers": (
        lambda g: {"name": "Mail Co", "channel": "email"},
        {"name": "Mail Co 2", "postback_url_template": "https://mail.example/pb?c={click_id}"},
    ),
    "offers": (
        lambda g: {
            "name": "Boots",
            "advertiser_id": g["advertiser"]["id"],
            "landing_pages": [{"key": "main", "url": "http://boots.example/", "weight": 1}],
        },
        {"description": "Winter boots"},
    ),
    "goals": (
        lambda g: {"name": "Lead", "key": "lead", "kind": "lead", "default_value": "2.00"},
        {"default_value": "3.25", "event_names": ["Signed Up"]},
    ),
    "campaigns": (
        lambda g: {
            "name": "Autumn",
            "advertiser_id": g["advertiser"]["id"],
            "offer_id": g["offer"]["id"],
            "currency": "EUR",
            "channel": "paid_search",
            "pricing": [
                {
                    "pays": {"model": "cpc", "amount": "0.40"},
                    "earns": {"model": "cpc", "amount": "0.3"},
                }
            ],
        },
        {"name": "Autumn sale", "total_budget": "5000", "status": "active"},
    ),
    "links": (
        lambda g: {
            "campaign_id": g["campaign"]["id"],
            "publisher_id": g["publisher"]["id"],
            "slug": "autumn-1",
            "utm_source": "newsletter",
        },
        {"sub2": "banner", "status": "paused"},
    ),
    "users": (
        lambda g: {"email": "Ana@Example.com", "name": "Ana", "role": "analyst"},
        {"name": "Ana B."},
    ),
}

if TYPE_CHECKING:
    from starlette.testclient import TestClient


@pytest.mark.parametrize("kind", sorted(CASES))
def test_create_read_update_list_archive(
    api: TestClient, graph: Graph, kind: str, clock: Any
) -> None:
    make_body, patch_body = CASES[kind]
    body = make_body(graph)
    made = created(api.post(f"/api/{kind}", json=body))
    assert made["id"].split("_")[0] in {"adv", "pub", "off", "goal", "cmp", "lnk", "usr"}
    assert made["version"] == 1 and made["archived_at"] is None
    for name, value in body.items():
        if isinstance(value, str) and name not in ("currency", "email"):
            assert made[name] == value, name

    fetched = api.get(f"/api/{kind}/{made['id']}")
    assert fetched.status_code == 200
    assert fetched.json() == made

    clock.advance(seconds=30)
    patched = api.patch(f"/api/{kind}/{made['id']}", json=patch_body)
    assert patched.status_code == 200, patched.text
    after = patched.json()
    assert after["version"] == 2
    assert after["updated_at"] != made["updated_at"]
    assert after["created_at"] == made["created_at"]
    for name, value in patch_body.items():
        assert after[name] == value, name
    # Fields not in the PATCH are unchanged.
    untouched = {k: v for k, v in made.items() if k not in patch_body}
    for name in set(untouched) - {"version", "updated_at"}:
        assert after[name] == made[name], name
    assert api.get(f"/api/{kind}/{made['id']}").json() == after

    listed = api.get(f"/api/{kind}").json()
    assert made["id"] in [item["id"] for item in listed["data"]]
    assert listed["next_cursor"] is None

    archived = api.delete(f"/api/{kind}/{made['id']}")
    assert archived.status_code == 200, archived.text
    assert archived.json()["archived_at"] is not None
    assert made["id"] not in [item["id"] for item in api.get(f"/api/{kind}").json()["data"]]
    with_archived = api.get(f"/api/{kind}", params={"include_archived": "true"}).json()
    assert made["id"] in [item["id"] for item in with_archived["data"]]
    # Kept for history: still readable by id.
    assert api.get(f"/api/{kind}/{made['id']}").json()["archived_at"] is not None
    # But frozen.
    assert_error(api.patch(f"/api/{kind}/{made['id']}", json=patch_body), 422, "validation_error")


def test_normalised_values_come_back(api: TestClient, graph: Graph) -> None:
    adv = created(api.post("/api/advertisers", json={"name": "  Spaced  ", "currency": "gbp"}))
    assert adv["name"] == "Spaced" and adv["currency"] == "GBP"
    user = created(api.post("/api/users", json={"email": "Ana@Example.COM", "name": "Ana"}))
    assert user["email"] == "ana@example.com" and user["role"] == "analyst"
    # Amounts are decimal strings with their digits kept.
    assert graph["goal"]["default_value"] == "10.50"
    assert graph["campaign"]["pricing"][0]["pays"] == {
        "model": "cpa",
        "amount": "5",
        "percent": "0",
    }


def test_link_carries_its_tracking_url(api: TestClient, graph: Graph, container: Container) -> None:
    link = graph["link"]
    base = container.settings.base_url.rstrip("/")
    assert link["tracking_url"] == f"{base}/c/{link['slug']}"
    assert len(link["slug"]) == 8
    listed = api.get("/api/links").json()["data"]
    assert listed[0]["tracking_url"] == link["tracking_url"]


def test_pagination_walks_every_item_exactly_once(api: TestClient) -> None:
    ids = [
        created(api.post("/api/publishers", json={"name": f"P{i}", "channel": "display"}))["id"]
        for i in range(9)
    ]
    for limit in (1, 2, 4, 9, 200):
        seen: list[str] = []
        cursor = None
        requests = 0
        while True:
            params: dict[str, Any] = {"limit": limit}
            if cursor:
                params["cursor"] = cursor
            page = api.get("/api/publishers", params=params)
            assert page.status_code == 200
            body = page.json()
            assert len(body["data"]) <= limit
            seen.extend(item["id"] for item in body["data"])
            requests += 1
            cursor = body["next_cursor"]
            if cursor is None:
                break
        assert seen == sorted(ids), limit
        assert requests == -(-len(ids) // limit)


@pytest.mark.parametrize("limit", ["0", "201", "-1", "ten"])
def test_limit_out_of_range_is_422(api: TestClient, limit: str) -> None:
    message = assert_error(
        api.get("/api/publishers", params={"limit": limit}), 422, "validation_error", "limit"
    )
    assert "limit" in message


def test_filters(api: TestClient, graph: Graph) -> None:
    email = created(api.post("/api/publishers", json={"name": "Mailer", "channel": "email"}))
    ids = [item["id"] for item in api.get("/api/publishers?channel=email").json()["data"]]
    assert ids == [email["id"]]
    assert api.get("/api/publishers?channel=native").json()["data"] == []

    second = created(
        api.post(
            "/api/campaigns",
            json={
                "name": "Second",
                "advertiser_id": graph["advertiser"]["id"],
                "offer_id": graph["offer"]["id"],
                "currency": "EUR",
                "status": "active",
            },
        )
    )
    active = api.get("/api/campaigns", params={"status": "active"}).json()["data"]
    assert [c["id"] for c in active] == [second["id"]]
    draft = api.get("/api/campaigns", params={"status": "draft"}).json()["data"]
    assert [c["id"] for c in draft] == [graph["campaign"]["id"]]
    by_offer = api.get("/api/campaigns", params={"offer_id": graph["offer"]["id"]}).json()
    assert len(by_offer["data"]) == 2
    links = api.get("/api/links", params={"campaign_id": second["id"]}).json()["data"]
    assert links == []
    links = api.get("/api/links", params={"slug": graph["link"]["slug"]}).json()["data"]
    assert [link["id"] for link in links] == [graph["link"]["id"]]
    goals = api.get("/api/goals", params={"key": "sale"}).json()["data"]
    assert [goal["id"] for goal in goals] == [graph["goal"]["id"]]
    offers = api.get("/api/offers", params={"advertiser_id": "adv_nope"}).json()["data"]
    assert offers == []


def test_patch_revalidates_the_whole_object(api: TestClient, graph: Graph) -> None:
    cmp = graph["campaign"]["id"]
    message = assert_error(
        api.patch(f"/api/campaigns/{cmp}", json={"total_budget": "50"}),
        422,
        "validation_error",
        "daily_budget",
    )
    assert "100" in message and "50" in message
    message = assert_error(
        api.patch(f"/api/campaigns/{cmp}", json={"daily_budget": "-1"}),
        422,
        "validation_error",
        "daily_budget",
    )
    assert "-1" in message
    off = graph["offer"]["id"]
    message = assert_error(
        api.patch(
            f"/api/offers/{off}",
            json={"landing_pages": [{"key": "a", "url": "https://x.example/", "weight": 0}]},
        ),
        422,
        "validation_error",
    )
    assert "weight" in message and "0" in message
    # Nothing changed after the refusals.
    assert api.get(f"/api/campaigns/{cmp}").json()["version"] == 1
    # A null clears an optional field.
    cleared = api.patch(f"/api/campaigns/{cmp}", json={"daily_budget": None})
    assert cleared.status_code == 200 and cleared.json()["daily_budget"] is None
    # A null on a required field is a 422, not a crash.
    assert_error(api.patch(f"/api/campaigns/{cmp}", json={"name": None}), 422, "validation_error")


@pytest.mark.parametrize(
    ("kind", "field", "value"),
    [
        ("campaigns", "advertiser_id", "adv_other"),
        ("campaigns", "currency", "USD"),
        ("links", "slug", "new-slug"),
        ("links", "campaign_id", "cmp_other"),
        ("links", "publisher_id", "pub_other"),
        ("offers", "advertiser_id", "adv_other"),
        ("goals", "key", "other"),
        ("advertisers", "currency", "USD"),
    ],
)
def test_immutable_fields_are_refused(
    api: TestClient, graph: Graph, kind: str, field: str, value: str
) -> None:
    singular = {"campaigns": "campaign", "links": "link", "offers": "offer", "goals": "goal"}
    target = graph[singular.get(kind, "advertiser")]
    message = assert_error(
        api.patch(f"/api/{kind}/{target['id']}", json={field: value}),
        422,
        "validation_error",
        field,
    )
    assert field in message and "cannot change" in message


def test_illegal_campaign_transition_is_409(api: TestClient, graph: Graph) -> None:
    cmp = graph["campaign"]["id"]
    message = assert_error(
        api.patch(f"/api/campaigns/{cmp}", json={"status": "paused"}),
        409,
        "illegal_transition",
        "status",
    )
    assert "draft" in message and "paused" in message
    for status in ("active", "paused", "active", "capped", "ended"):
        response = api.patch(f"/api/campaigns/{cmp}", json={"status": status})
        assert response.status_code == 200 and response.json()["status"] == status
    assert_error(
        api.patch(f"/api/campaigns/{cmp}", json={"status": "active"}), 409, "illegal_transition"
    )


def test_archiving_a_campaign_ends_it(api: TestClient, graph: Graph) -> None:
    cmp = graph["campaign"]["id"]
    archived = api.delete(f"/api/campaigns/{cmp}").json()
    assert archived["status"] == "ended"
    # Archiving again is harmless.
    again = api.delete(f"/api/campaigns/{cmp}")
    assert again.status_code == 200 and again.json()["version"] == archived["version"]


def test_archived_objects_cannot_be_referenced(api: TestClient, graph: Graph) -> None:
    api.delete(f"/api/publishers/{graph['publisher']['id']}")
    message = assert_error(
        api.post(
            "/api/links",
            json={"campaign_id": graph["campaign"]["id"], "publisher_id": graph["publisher"]["id"]},
        ),
        422,
        "validation_error",
        "publisher_id",
    )
    assert graph["publisher"]["id"] in message


def test_postback_secret(api: TestClient, graph: Graph) -> None:
    for kind, key in (("advertisers", "advertiser"), ("publishers", "publisher")):
        first = api.get(f"/api/{kind}/{graph[key]['id']}/secret")
        assert first.status_code == 200
        secret = first.json()["secret"]
        assert len(secret) >= 32
        assert api.get(f"/api/{kind}/{graph[key]['id']}/secret").json()["secret"] == secret
        assert "secret" not in graph[key]
    assert graph["advertiser"] != graph["publisher"]
    assert_error(api.get("/api/advertisers/adv_nope/secret"), 404, "not_found")


def test_workspace_settings(api: TestClient) -> None:
    current = api.get("/api/workspace").json()
    assert current["name"] == "Test" and current["timezone"] == "UTC"
    changed = api.patch("/api/workspace", json={"timezone": "Europe/Paris"})
    assert changed.status_code == 200 and changed.json()["timezone"] == "Europe/Paris"
    assert changed.json()["version"] == current["version"] + 1
    assert api.get("/api/workspace").json()["timezone"] == "Europe/Paris"
    message = assert_error(
        api.patch("/api/workspace", json={"timezone": "Mars/Base"}),
        422,
        "validation_error",
        "timezone",
    )
    assert "Mars/Base" in message


def test_health_and_docs(client: TestClient) -> None:
    health = client.get("/healthz")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    docs = client.get("/api/docs")
    assert docs.status_code == 200 and "text/html" in docs.headers["content-type"]
    assert "/api/openapi.json" in docs.text
    spec = client.get("/api/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    for path in ("/api/campaigns", "/api/campaigns/{object_id}", "/api/links", "/api/apikeys"):
        assert path in spec["paths"]


def test_a_campaign_starts_as_draft_active_or_paused(api: TestClient, graph: Graph) -> None:
    base = {
        "name": "Start",
        "advertiser_id": graph["advertiser"]["id"],
        "offer_id": graph["offer"]["id"],
        "currency": "EUR",
    }
    for status in ("draft", "active", "paused"):
        assert created(api.post("/api/campaigns", json={**base, "status": status}))["status"] == (
            status
        )
    for status in ("capped", "ended"):
        message = assert_error(
            api.post("/api/campaigns", json={**base, "status": status}),
            422,
            "validation_error",
            "status",
        )
        assert status in message


def test_a_campaign_cannot_buy_another_advertisers_goal(api: TestClient, graph: Graph) -> None:
    rival = created(api.post("/api/advertisers", json={"name": "Rival", "currency": "EUR"}))
    rival_goal = created(
        api.post(
            "/api/goals", json={"name": "Rival sale", "key": "rs", "advertiser_id": rival["id"]}
        )
    )
    response = api.patch(
        f"/api/campaigns/{graph['campaign']['id']}",
        json={"goal_ids": [graph["goal"]["id"], rival_goal["id"]]},
    )
    message = assert_error(response, 422, "validation_error", "goal_ids")
    assert rival_goal["id"] in message and rival["id"] in message


def test_objects_of_an_archived_parent_can_still_change(api: TestClient, graph: Graph) -> None:
    """Archiving a campaign must not freeze its links: they can still be paused."""
    api.delete(f"/api/campaigns/{graph['campaign']['id']}")
    api.delete(f"/api/publishers/{graph['publisher']['id']}")
    paused = api.patch(f"/api/links/{graph['link']['id']}", json={"status": "paused"})
    assert paused.status_code == 200, paused.text
    assert paused.json()["status"] == "paused"
    # Pointing an object at a different archived parent is still refused.
    other = created(api.post("/api/publishers", json={"name": "Gone"}))
    api.delete(f"/api/publishers/{other['id']}")
    message = assert_error(
        api.post(
            "/api/links",
            json={"campaign_id": graph["campaign"]["id"], "publisher_id": other["id"]},
        ),
        422,
        "validation_error",
    )
    assert "archived" in message
