"""One JSON error shape for every failure, with the field and value named; never a 500."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
from fastapi import FastAPI

from perfmark.domain.accounts import Role, WorkspaceSpec
from perfmark.services.accounts import NewWorkspace, create_api_key, create_workspace
from perfmark.services.container import Container, Principal

from .helpers import assert_error, bearer, seed_graph

if TYPE_CHECKING:
    from starlette.testclient import TestClient

Graph = dict[str, dict[str, Any]]


def test_the_shape_is_exactly_this(api: TestClient) -> None:
    response = api.get("/api/campaigns/cmp_01jd0000000000000000000000")
    assert response.status_code == 404
    assert response.json() == {
        "error": {
            "code": "not_found",
            "message": "no campaign with id 'cmp_01jd0000000000000000000000' in this workspace",
            "field": None,
            "docs": "https://perfmark.dev/docs/errors#not_found",
        }
    }


def test_400_malformed_json(api: TestClient) -> None:
    for raw in (b"{bad", b'{"name": "x",}', b"[" * 5000 + b"]" * 5000):
        response = api.post(
            "/api/advertisers", content=raw, headers={"content-type": "application/json"}
        )
        message = assert_error(response, 400, "malformed_request")
        assert "JSON" in message


def test_401_missing_and_invalid_keys(client: TestClient, workspace: NewWorkspace) -> None:
    for headers in (
        {},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer "},
        {"Authorization": "Bearer not-a-key"},
        {"Authorization": "Bearer pmk_" + "x" * 32},
        {"Authorization": workspace.api_key.secret},  # no scheme
    ):
        response = client.get("/api/campaigns", headers=headers)
        message = assert_error(response, 401, "unauthenticated")
        assert "key" in message.lower()
        assert response.headers["www-authenticate"] == "Bearer"


def test_403_read_only_role(
    client: TestClient, container: Container, workspace: NewWorkspace
) -> None:
    owner = Principal(workspace.workspace.id, Role.OWNER)
    analyst = create_api_key(container, owner, "reader", Role.ANALYST)
    response = client.post("/api/advertisers", json={"name": "X"}, headers=bearer(analyst.secret))
    message = assert_error(response, 403, "forbidden")
    assert "analyst" in message


def test_404_unknown_id_and_unknown_route(api: TestClient) -> None:
    message = assert_error(api.get("/api/offers/off_missing"), 404, "not_found")
    assert "off_missing" in message
    message = assert_error(api.get("/api/nothing-here"), 404, "not_found")
    assert "/api/nothing-here" in message
    # Unknown routes answer the same shape without a key, and outside /api too.
    assert_error(api.get("/nope", headers={"Authorization": ""}), 404, "not_found")


def test_405_names_the_allowed_methods(api: TestClient) -> None:
    response = api.put("/api/advertisers", json={})
    message = assert_error(response, 405, "method_not_allowed")
    assert "PUT" in message and "GET" in message and "POST" in message
    assert response.headers["allow"] == "GET, POST"
    response = api.post("/api/advertisers/adv_x", json={})
    message = assert_error(response, 405, "method_not_allowed")
    assert "GET" in message and "PATCH" in message and "DELETE" in message


def test_409_conflicts(api: TestClient, graph: Graph) -> None:
    link = graph["link"]
    response = api.post(
        "/api/links",
        json={
            "campaign_id": link["campaign_id"],
            "publisher_id": link["publisher_id"],
            "slug": link["slug"],
        },
    )
    message = assert_error(response, 409, "conflict")
    assert "slug" in message
    message = assert_error(
        api.post("/api/goals", json={"name": "Again", "key": "sale"}), 409, "conflict"
    )
    assert "key" in message
    assert_error(
        api.patch(f"/api/campaigns/{graph['campaign']['id']}", json={"status": "capped"}),
        409,
        "illegal_transition",
        "status",
    )


def test_413_oversized_body(api: TestClient, container: Container) -> None:
    limit = container.settings.max_body_bytes
    big = b'{"name": "' + b"x" * (limit + 10) + b'"}'
    message = assert_error(
        api.post("/api/advertisers", content=big, headers={"content-type": "application/json"}),
        413,
        "payload_too_large",
    )
    assert str(limit) in message

    def chunks() -> Iterator[bytes]:
        # No Content-Length: the limit must hold while the body streams in.
        yield b'{"name": "'
        for _ in range(limit // 65536 + 2):
            yield b"x" * 65536
        yield b'"}'

    assert_error(
        api.post(
            "/api/advertisers", content=chunks(), headers={"content-type": "application/json"}
        ),
        413,
        "payload_too_large",
    )
    # Just under the limit is accepted (and then judged on its content).
    small = b'{"name": "' + b"y" * 150 + b'"}'
    assert (
        api.post(
            "/api/advertisers", content=small, headers={"content-type": "application/json"}
        ).status_code
        == 201
    )


def test_415_body_that_is_not_json(api: TestClient) -> None:
    for content_type in ("text/plain", "application/x-www-form-urlencoded"):
        response = api.post(
            "/api/advertisers", content=b'{"name": "x"}', headers={"content-type": content_type}
        )
        message = assert_error(response, 415, "unsupported_media_type")
        assert "application/json" in message


#: Invalid bodies, the field the error must name, and text the message must contain.
INVALID_CREATES: list[tuple[str, str, Any, str, tuple[str, ...]]] = [
    ("negative budget", "campaigns", {"daily_budget": "-5"}, "daily_budget", ("-5",)),
    ("zero budget", "campaigns", {"total_budget": "0"}, "total_budget", ("0",)),
    ("float-free amount", "campaigns", {"daily_budget": "ten"}, "daily_budget", ("ten",)),
    ("unknown currency", "advertisers", {"currency": "XXQ"}, "currency", ("XXQ", "ISO 4217")),
    ("non-http url", "offers", {"url": "ftp://files.example/x"}, "url", ("ftp://",)),
    ("javascript url", "offers", {"url": "javascript:alert(1)"}, "url", ("javascript",)),
    ("weight 0", "offers", {"weight": 0}, "weight", ("0",)),
    ("weight negative", "offers", {"weight": -2}, "weight", ("-2",)),
    ("unknown field", "advertisers", {"colour": "red"}, "colour", ("colour",)),
    ("wrong type", "advertisers", {"name": 42}, "name", ("42", "string")),
    ("wrong type nested", "campaigns", {"goal_ids": "goal_x"}, "goal_ids", ("goal_x",)),
    ("unknown channel", "publishers", {"channel": "tv"}, "channel", ("tv",)),
    ("unknown pricing model", "campaigns", {"model": "cpx"}, "", ("cpx",)),
    ("missing field", "advertisers", {"name": None}, "name", ("name",)),
]


def _body(kind: str, change: dict[str, Any], graph: Graph) -> dict[str, Any]:
    if kind == "advertisers":
        body: dict[str, Any] = {"name": "Bad Inc", **change}
    elif kind == "publishers":
        body = {"name": "Bad pub", **change}
    elif kind == "offers":
        page = {"key": "lp", "url": "https://ok.example/", "weight": 1}
        page.update(change)
        body = {"name": "Bad", "advertiser_id": graph["advertiser"]["id"], "landing_pages": [page]}
    else:
        body = {
            "name": "Bad",
            "advertiser_id": graph["advertiser"]["id"],
            "offer_id": graph["offer"]["id"],
            "currency": "EUR",
        }
        if "model" in change:
            body["pricing"] = [
                {"pays": {"model": change["model"], "amount": "1"}, "earns": {"model": "cpc"}}
            ]
        else:
            body.update(change)
    return {k: v for k, v in body.items() if v is not None}


@pytest.mark.parametrize(
    ("kind", "change", "field", "mentions"),
    [case[1:] for case in INVALID_CREATES],
    ids=[case[0] for case in INVALID_CREATES],
)
def test_422_names_field_and_value(
    api: TestClient,
    graph: Graph,
    kind: str,
    change: dict[str, Any],
    field: str,
    mentions: tuple[str, ...],
) -> None:
    before = len(api.get(f"/api/{kind}").json()["data"])
    response = api.post(f"/api/{kind}", json=_body(kind, change, graph))
    body = response.json()
    message = assert_error(response, 422, "validation_error")
    if field:
        assert body["error"]["field"] is not None and field in body["error"]["field"], body
    for text in mentions:
        assert text in message, (text, message)
    assert len(api.get(f"/api/{kind}").json()["data"]) == before


def test_422_on_query_and_path_parameters(api: TestClient) -> None:
    message = assert_error(
        api.get("/api/campaigns?include_archived=perhaps"),
        422,
        "validation_error",
        "include_archived",
    )
    assert "perhaps" in message
    assert_error(api.get("/api/campaigns/" + "c" * 65), 422, "validation_error", "object_id")
    assert_error(api.get("/api/campaigns?cursor=" + "c" * 65), 422, "validation_error", "cursor")


@pytest.fixture
def any_api(shared_app: FastAPI, any_container: Container) -> Iterator[TestClient]:
    """The API on SQLite and on PostgreSQL, with an owner key."""
    from starlette.testclient import TestClient

    created = create_workspace(any_container, WorkspaceSpec(name="Nasty"), "n@example.com")
    shared_app.state.container = any_container
    with TestClient(shared_app, headers=bearer(created.api_key.secret)) as test_client:
        yield test_client


NASTY_TEXT = ["a\x00b", "\ud800", "\x00", "x\udfff"]


def test_text_the_database_cannot_store_is_422_on_both_databases(any_api: TestClient) -> None:
    graph = seed_graph(any_api)
    for text in NASTY_TEXT:
        escaped = text.encode("unicode_escape").decode().replace("\\x", "\\u00")
        raw = '{"name": "' + escaped + '"}'
        response = any_api.post(
            "/api/advertisers", content=raw.encode(), headers={"content-type": "application/json"}
        )
        assert_error(response, 422, "validation_error", "name")
        response = any_api.patch(
            f"/api/campaigns/{graph['campaign']['id']}",
            content=raw.encode(),
            headers={"content-type": "application/json"},
        )
        assert_error(response, 422, "validation_error", "name")
    response = any_api.post(
        "/api/advertisers",
        json={"name": "Map", "postback_param_map": {"click_id": "a\x00"}},
    )
    assert_error(response, 422, "validation_error", "postback_param_map.click_id")
    response = any_api.post("/api/apikeys", json={"name": "k\x00", "role": "analyst"})
    assert_error(response, 422, "validation_error", "name")
    response = any_api.post(
        "/api/advertisers", json={"name": "Idem"}, headers={"Idempotency-Key": "k"}
    )
    assert response.status_code == 201


def test_nul_in_path_and_query_is_never_a_500(any_api: TestClient) -> None:
    seed_graph(any_api)
    assert_error(any_api.get("/api/campaigns/cmp%00x"), 404, "not_found")
    assert_error(any_api.patch("/api/campaigns/cmp%00x", json={"name": "n"}), 404, "not_found")
    assert_error(any_api.delete("/api/campaigns/cmp%00x"), 404, "not_found")
    assert_error(any_api.get("/api/advertisers/adv%00/secret"), 404, "not_found")
    assert_error(any_api.delete("/api/apikeys/key%00"), 404, "not_found")
    listed = any_api.get("/api/campaigns?status=active%00")
    assert listed.status_code == 200 and listed.json()["data"] == []
    assert_error(any_api.get("/api/campaigns?cursor=a%00"), 422, "validation_error", "cursor")
    for kind in ("advertisers", "offers", "goals", "publishers", "campaigns", "links", "users"):
        assert any_api.get(f"/api/{kind}?cursor=%F0%9F%98%80").status_code == 200
