"""Bearer API keys: missing, invalid and revoked keys; roles; portal keys scoped to their own."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from perfmark.domain.accounts import API_KEY_PREFIX, hash_api_key
from perfmark.services.accounts import NewWorkspace

from .helpers import assert_error, bearer, created

if TYPE_CHECKING:
    from starlette.testclient import TestClient

Graph = dict[str, dict[str, Any]]


def _key(api: TestClient, role: str, **scope: str) -> str:
    response = api.post("/api/apikeys", json={"name": f"{role} key", "role": role, **scope})
    body = created(response)
    assert body["role"] == role
    secret: str = body["secret"]
    return secret


def test_key_is_shown_once_and_stored_hashed(
    api: TestClient, workspace: NewWorkspace, container: Any
) -> None:
    body = created(api.post("/api/apikeys", json={"name": "ci", "role": "admin"}))
    secret = body["secret"]
    assert secret.startswith(API_KEY_PREFIX) and len(secret) >= 32
    assert body["preview"] == secret[:12] + "…"
    listed = api.get("/api/apikeys").json()["data"]
    assert [k["id"] for k in listed] == sorted([workspace.api_key.info.id, body["id"]])
    assert all("secret" not in k for k in listed)
    # Only the digest is in the database.
    from sqlalchemy import select

    from perfmark.adapters.store.schema import api_keys

    with container.engine.connect() as conn:
        rows = conn.execute(select(api_keys)).mappings().all()
    stored = {column: value for row in rows for column, value in row.items()}
    assert secret not in {str(value) for value in stored.values()}
    assert hash_api_key(secret) in {row["digest"] for row in rows}
    # And it works.
    assert api.get("/api/campaigns", headers=bearer(secret)).status_code == 200


def test_revoked_key_stops_at_once(api: TestClient) -> None:
    body = created(api.post("/api/apikeys", json={"name": "temp", "role": "admin"}))
    assert api.get("/api/campaigns", headers=bearer(body["secret"])).status_code == 200
    revoked = api.delete(f"/api/apikeys/{body['id']}")
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    message = assert_error(
        api.get("/api/campaigns", headers=bearer(body["secret"])), 401, "unauthenticated"
    )
    assert "revoked" in message
    listed = {k["id"]: k for k in api.get("/api/apikeys").json()["data"]}
    assert listed[body["id"]]["revoked_at"] is not None
    assert_error(api.delete("/api/apikeys/key_unknown"), 404, "not_found")


def test_last_used_is_recorded(api: TestClient, workspace: NewWorkspace, clock: Any) -> None:
    api.get("/api/campaigns")
    keys = {k["id"]: k for k in api.get("/api/apikeys").json()["data"]}
    assert keys[workspace.api_key.info.id]["last_used_at"] is not None


def test_analyst_reads_but_cannot_write(api: TestClient, graph: Graph) -> None:
    analyst = bearer(_key(api, "analyst"))
    cmp = graph["campaign"]["id"]
    assert api.get("/api/campaigns", headers=analyst).json()["data"][0]["id"] == cmp
    assert api.get(f"/api/campaigns/{cmp}", headers=analyst).status_code == 200
    assert api.get("/api/workspace", headers=analyst).status_code == 200
    for method, path, body in (
        ("POST", "/api/advertisers", {"name": "X"}),
        ("PATCH", f"/api/campaigns/{cmp}", {"name": "Y"}),
        ("DELETE", f"/api/campaigns/{cmp}", None),
        ("GET", f"/api/advertisers/{graph['advertiser']['id']}/secret", None),
        ("POST", "/api/apikeys", {"name": "escalate", "role": "owner"}),
        ("GET", "/api/apikeys", None),
        ("PATCH", "/api/workspace", {"name": "Mine now"}),
    ):
        response = api.request(method, path, json=body, headers=analyst)
        assert_error(response, 403, "forbidden")
    assert api.get(f"/api/campaigns/{cmp}").json()["version"] == 1


def test_admin_cannot_mint_an_owner_key(api: TestClient) -> None:
    admin = bearer(_key(api, "admin"))
    response = api.post("/api/apikeys", json={"name": "up", "role": "owner"}, headers=admin)
    assert_error(response, 403, "forbidden")
    assert (
        created(api.post("/api/apikeys", json={"name": "peer", "role": "admin"}, headers=admin))[
            "role"
        ]
        == "admin"
    )
    # An admin writes configuration.
    assert api.post("/api/advertisers", json={"name": "By admin"}, headers=admin).status_code == 201


def test_advertiser_key_sees_only_its_advertiser(api: TestClient, graph: Graph) -> None:
    other_adv = created(api.post("/api/advertisers", json={"name": "Rival", "currency": "EUR"}))
    other_offer = created(
        api.post(
            "/api/offers",
            json={
                "name": "Rival offer",
                "advertiser_id": other_adv["id"],
                "landing_pages": [{"key": "r", "url": "https://rival.example/"}],
            },
        )
    )
    other_cmp = created(
        api.post(
            "/api/campaigns",
            json={
                "name": "Rival run",
                "advertiser_id": other_adv["id"],
                "offer_id": other_offer["id"],
                "currency": "EUR",
            },
        )
    )
    mine = bearer(_key(api, "advertiser", advertiser_id=graph["advertiser"]["id"]))

    def ids(path: str) -> list[str]:
        response = api.get(path, headers=mine)
        assert response.status_code == 200, response.text
        return [item["id"] for item in response.json()["data"]]

    assert ids("/api/advertisers") == [graph["advertiser"]["id"]]
    assert ids("/api/offers") == [graph["offer"]["id"]]
    assert ids("/api/campaigns") == [graph["campaign"]["id"]]
    # Even when asking for the rival by filter.
    assert ids(f"/api/campaigns?advertiser_id={other_adv['id']}") == []
    for path in (
        f"/api/advertisers/{other_adv['id']}",
        f"/api/offers/{other_offer['id']}",
        f"/api/campaigns/{other_cmp['id']}",
    ):
        assert_error(api.get(path, headers=mine), 404, "not_found")
    assert api.get(f"/api/campaigns/{graph['campaign']['id']}", headers=mine).status_code == 200
    for path in ("/api/publishers", "/api/links", "/api/users"):
        assert_error(api.get(path, headers=mine), 403, "forbidden")
    assert_error(
        api.patch(f"/api/campaigns/{graph['campaign']['id']}", json={"name": "x"}, headers=mine),
        403,
        "forbidden",
    )


def test_publisher_key_sees_only_its_links(api: TestClient, graph: Graph) -> None:
    rival = created(api.post("/api/publishers", json={"name": "Rival", "channel": "native"}))
    rival_link = created(
        api.post(
            "/api/links",
            json={"campaign_id": graph["campaign"]["id"], "publisher_id": rival["id"]},
        )
    )
    mine = bearer(_key(api, "publisher", publisher_id=graph["publisher"]["id"]))
    links = api.get("/api/links", headers=mine).json()["data"]
    assert [link["id"] for link in links] == [graph["link"]["id"]]
    assert links[0]["tracking_url"] == graph["link"]["tracking_url"]
    pubs = api.get("/api/publishers", headers=mine).json()["data"]
    assert [p["id"] for p in pubs] == [graph["publisher"]["id"]]
    assert_error(api.get(f"/api/links/{rival_link['id']}", headers=mine), 404, "not_found")
    assert_error(api.get(f"/api/publishers/{rival['id']}", headers=mine), 404, "not_found")
    for path in ("/api/advertisers", "/api/campaigns", "/api/offers"):
        assert_error(api.get(path, headers=mine), 403, "forbidden")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"role": "advertiser"}, "advertiser_id"),
        ({"role": "publisher"}, "publisher_id"),
        (
            {"role": "advertiser", "advertiser_id": "adv_01jd0000000000000000000000"},
            "advertiser_id",
        ),
        ({"role": "analyst", "advertiser_id": "adv_x"}, "advertiser_id"),
        ({"role": "superuser"}, "role"),
        ({"role": "admin", "name": ""}, "name"),
    ],
)
def test_bad_key_requests_are_422(api: TestClient, body: dict[str, Any], field: str) -> None:
    assert_error(
        api.post("/api/apikeys", json={"name": "k", **body}), 422, "validation_error", field
    )


def test_portal_key_must_name_an_object_of_this_workspace(
    api: TestClient, other_api: TestClient
) -> None:
    foreign = created(other_api.post("/api/advertisers", json={"name": "Theirs"}))
    response = api.post(
        "/api/apikeys",
        json={"name": "sneaky", "role": "advertiser", "advertiser_id": foreign["id"]},
    )
    message = assert_error(response, 422, "validation_error", "advertiser_id")
    assert foreign["id"] in message
