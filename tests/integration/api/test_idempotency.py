"""Idempotency-Key on creates: a retry gets the first answer; a new body under the key is 409."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from perfmark.errors import ConflictError
from perfmark.services import idempotency
from perfmark.services.container import Container

from .helpers import assert_error, created

if TYPE_CHECKING:
    from starlette.testclient import TestClient

Graph = dict[str, dict[str, Any]]


def _count(api: TestClient, kind: str) -> int:
    return len(api.get(f"/api/{kind}?limit=200").json()["data"])


def test_same_key_same_body_returns_the_same_object(api: TestClient) -> None:
    headers = {"Idempotency-Key": "order-1"}
    first = api.post("/api/advertisers", json={"name": "Acme"}, headers=headers)
    assert first.status_code == 201
    assert "idempotent-replayed" not in first.headers
    second = api.post("/api/advertisers", json={"name": "Acme"}, headers=headers)
    assert second.status_code == 201
    assert second.headers["idempotent-replayed"] == "true"
    assert second.json() == first.json()
    assert _count(api, "advertisers") == 1


def test_replay_is_byte_for_byte_the_first_answer(api: TestClient, graph: Graph) -> None:
    body = {"campaign_id": graph["campaign"]["id"], "publisher_id": graph["publisher"]["id"]}
    headers = {"Idempotency-Key": "link-1"}
    first = api.post("/api/links", json=body, headers=headers)
    second = api.post("/api/links", json=body, headers=headers)
    assert first.status_code == second.status_code == 201
    # A random slug was minted once; the replay carries the same one and the same timestamps.
    assert second.json() == first.json()
    assert second.json()["created_at"] == first.json()["created_at"]
    assert _count(api, "links") == 2  # the seeded link and this one


def test_same_key_different_body_is_409(api: TestClient) -> None:
    headers = {"Idempotency-Key": "order-2"}
    created(api.post("/api/advertisers", json={"name": "Acme"}, headers=headers))
    message = assert_error(
        api.post("/api/advertisers", json={"name": "Other"}, headers=headers), 409, "conflict"
    )
    assert "Idempotency-Key" in message
    # The same key on another endpoint is a different request too.
    assert_error(
        api.post("/api/publishers", json={"name": "Acme"}, headers=headers), 409, "conflict"
    )
    assert _count(api, "advertisers") == 1 and _count(api, "publishers") == 0


def test_key_order_and_whitespace_do_not_make_a_different_request(api: TestClient) -> None:
    headers = {"Idempotency-Key": "order-3", "content-type": "application/json"}
    first = api.post(
        "/api/advertisers", content=b'{"name": "A", "currency": "EUR"}', headers=headers
    )
    second = api.post("/api/advertisers", content=b'{"currency":"EUR","name":"A"}', headers=headers)
    assert second.headers.get("idempotent-replayed") == "true"
    assert second.json()["id"] == first.json()["id"]


def test_different_keys_make_two_objects(api: TestClient) -> None:
    one = created(
        api.post("/api/advertisers", json={"name": "A"}, headers={"Idempotency-Key": "a"})
    )
    two = created(
        api.post("/api/advertisers", json={"name": "A"}, headers={"Idempotency-Key": "b"})
    )
    three = created(api.post("/api/advertisers", json={"name": "A"}))
    assert len({one["id"], two["id"], three["id"]}) == 3
    assert _count(api, "advertisers") == 3


def test_a_refused_create_is_replayed_as_refused(api: TestClient) -> None:
    body = {
        "name": "Orphan",
        "advertiser_id": "adv_01jd0000000000000000000000",
        "landing_pages": [{"key": "a", "url": "https://a.example/"}],
    }
    headers = {"Idempotency-Key": "orphan"}
    first = api.post("/api/offers", json=body, headers=headers)
    assert_error(first, 422, "validation_error", "advertiser_id")
    second = api.post("/api/offers", json=body, headers=headers)
    assert_error(second, 422, "validation_error", "advertiser_id")
    assert second.headers["idempotent-replayed"] == "true"
    assert second.json() == first.json()


def test_a_key_in_flight_is_409(container: Container, workspace: Any) -> None:
    workspace_id = workspace.workspace.id
    fingerprint = idempotency.fingerprint("POST", "/api/advertisers", b"{}")
    assert idempotency.reserve(container, workspace_id, "busy", fingerprint) is None
    with pytest.raises(ConflictError, match="still being processed"):
        idempotency.reserve(container, workspace_id, "busy", fingerprint)
    idempotency.forget(container, workspace_id, "busy")
    assert idempotency.reserve(container, workspace_id, "busy", fingerprint) is None
    idempotency.finish(container, workspace_id, "busy", 201, '{"id": "adv_1"}')
    stored = idempotency.reserve(container, workspace_id, "busy", fingerprint)
    assert stored == idempotency.StoredResponse(201, '{"id": "adv_1"}')
