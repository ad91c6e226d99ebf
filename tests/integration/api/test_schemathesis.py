"""A bounded schemathesis run over the OpenAPI spec: no 5xx, and every response as documented."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from perfmark.domain.accounts import Role, WorkspaceSpec
from perfmark.services.accounts import create_api_key, create_workspace
from perfmark.services.container import Container, Principal, build_container
from perfmark.settings import load_settings
from perfmark.web.app import create_app

from .helpers import bearer, seed_graph

#: Generated cases per operation and mode; ~45 operations, so a few hundred requests in all.
MAX_EXAMPLES_PER_OPERATION = 25
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


@dataclass(frozen=True)
class FuzzTarget:
    """The app under test, an owner key, and ids of real objects to aim requests at."""

    app: FastAPI
    container: Container
    headers: dict[str, str]
    ids: dict[str, str]


@pytest.fixture(scope="module")
def fuzz_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzTarget]:
    """A seeded workspace on SQLite, shared by every generated case of this module."""
    from starlette.testclient import TestClient

    home = tmp_path_factory.mktemp("fuzz_home")
    container = build_container(load_settings({"PERFMARK_HOME": str(home)}))
    created = create_workspace(container, WorkspaceSpec(name="Fuzz"), "fuzz@example.com")
    app = create_app(container)
    headers = bearer(created.api_key.secret)
    with TestClient(app, headers=headers) as client:
        graph = seed_graph(client)
    owner = Principal(created.workspace.id, Role.OWNER)
    spare_key = create_api_key(container, owner, "to revoke", Role.ANALYST)
    ids = {f"{singular}s": item["id"] for singular, item in graph.items()}
    ids["apikeys"] = spare_key.info.id
    ids["users"] = created.owner.id
    yield FuzzTarget(app, container, headers, ids)
    container.engine.dispose()


@pytest.fixture(scope="module")
def api_schema(fuzz_target: FuzzTarget) -> Any:
    """The spec as the app serves it, with path ids drawn partly from real objects."""
    loaded = schemathesis.openapi.from_asgi("/api/openapi.json", fuzz_target.app)

    @loaded.hook
    def before_generate_path_parameters(
        context: schemathesis.HookContext, strategy: st.SearchStrategy[Any]
    ) -> st.SearchStrategy[Any]:
        # Random ids only ever reach the 404 branch; real ones exercise the 200 responses.
        assert context.operation is not None
        path = context.operation.path
        placeholders = re.findall(r"\{([^{}]+)\}", path)
        if len(placeholders) != 1:
            return strategy
        name = placeholders[0]
        parts = path.split("/")
        plural = parts[2] if len(parts) > 2 else ""
        real = fuzz_target.ids.get(plural)
        if real is None:
            return strategy
        return st.one_of(strategy, st.just({name: real}))

    return loaded


def _operations(loaded: Any) -> list[Any]:
    operations = [result.ok() for result in loaded.get_all_operations()]
    assert len(operations) >= 40, "the spec lost operations"
    return operations


def _takes_input(operation: Any) -> bool:
    return bool(operation.path_parameters or operation.query or operation.body)


# schemathesis' own pytest plugin (schema.parametrize with from_fixture) needs a pytest node
# attribute that pytest 9 removed, so each operation's strategy is driven with @given here.
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_generated_requests_conform(
    api_schema: Any, fuzz_target: FuzzTarget, mode: GenerationMode
) -> None:
    failures: list[str] = []
    for operation in _operations(api_schema):

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=MAX_EXAMPLES_PER_OPERATION,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: Any) -> None:
            response = case.call_and_validate(headers=fuzz_target.headers, checks=CHECKS)
            assert "Traceback" not in response.text

        try:
            run()
        except Unsatisfiable:
            # Nothing to make invalid (e.g. GET /healthz has no input at all).
            if mode is GenerationMode.POSITIVE or _takes_input(operation):
                failures.append(f"{operation.label}: no cases could be generated")
        except Exception as exc:  # collect every operation's failure, then report them all
            failures.append(f"{operation.label}: {exc}")
    assert not failures, "\n\n".join(failures)


class _ValidatingClient:
    """Sends requests and checks each answer against the operation the spec documents."""

    def __init__(self, client: Any, loaded: Any) -> None:
        self.client = client
        self.schema = loaded
        self.seen: set[str] = set()

    def __call__(self, method: str, path: str, expected: int, body: Any = None) -> Any:
        response = self.client.request(method, path, json=body)
        assert response.status_code == expected, (method, path, response.text)
        operation = self.schema.find_operation_by_path(method, path)
        assert operation is not None, f"{method} {path} is not in the spec"
        operation.validate_response(response)
        self.seen.add(operation.label)
        return response.json()


def test_successful_answers_conform(api_schema: Any, fuzz_target: FuzzTarget) -> None:
    """Generated bodies rarely name real objects, so the 2xx answers are driven by hand."""
    from starlette.testclient import TestClient

    # A workspace of its own: the generated requests above changed the shared one at random.
    fresh = create_workspace(fuzz_target.container, WorkspaceSpec(name="Conform"), "c@example.com")
    with TestClient(fuzz_target.app, headers=bearer(fresh.api_key.secret)) as client:
        call = _ValidatingClient(client, api_schema)
        graph = seed_graph(client, currency="EUR")
        adv, pub = graph["advertiser"]["id"], graph["publisher"]["id"]
        goal = call("POST", "/api/goals", 201, {"name": "Lead", "key": "conform-lead"})
        bodies: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
            "advertisers": ({"name": "Conform", "currency": "EUR"}, {"credit_limit": "10"}),
            "publishers": ({"name": "Conform", "channel": "email"}, {"channel": "native"}),
            "offers": (
                {
                    "name": "Conform",
                    "advertiser_id": adv,
                    "landing_pages": [{"key": "a", "url": "https://a.example/"}],
                },
                {"description": "d"},
            ),
            "goals": ({"name": "Conform", "key": "conform"}, {"default_value": "1.5"}),
            "campaigns": (
                {
                    "name": "Conform",
                    "advertiser_id": adv,
                    "offer_id": graph["offer"]["id"],
                    "currency": "EUR",
                    "goal_ids": [goal["id"]],
                    "pricing": [
                        {
                            "goal_id": goal["id"],
                            "pays": {"model": "hybrid", "amount": "1", "percent": "5"},
                            "earns": {"model": "revshare", "percent": "3"},
                        }
                    ],
                    "caps": [{"limit": "50", "metric": "money", "period": "week"}],
                    "schedule": {"starts_at": "2026-02-01T00:00:00Z"},
                    "targeting": [{"field": "device", "values": ["mobile"], "exclude": True}],
                    "creatives": [{"key": "b1", "url": "https://cdn.example/b1.png", "weight": 2}],
                },
                {"status": "active"},
            ),
            "links": (
                {"campaign_id": graph["campaign"]["id"], "publisher_id": pub, "sub3": "x"},
                {"passthrough": ["gclid"]},
            ),
            "users": (
                {
                    "email": "adv@example.com",
                    "name": "A",
                    "role": "advertiser",
                    "advertiser_id": adv,
                },
                {"name": "B"},
            ),
        }
        for kind, (create, change) in bodies.items():
            made = call("POST", f"/api/{kind}", 201, create)
            call("GET", f"/api/{kind}", 200)
            call("GET", f"/api/{kind}/{made['id']}", 200)
            call("PATCH", f"/api/{kind}/{made['id']}", 200, change)
            call("DELETE", f"/api/{kind}/{made['id']}", 200)
            call("GET", f"/api/{kind}/{made['id']}", 200)
            call("GET", f"/api/{kind}/{made['id']}x", 404)
        call("GET", f"/api/advertisers/{adv}/secret", 200)
        call("GET", f"/api/publishers/{pub}/secret", 200)
        call(
            "POST",
            f"/api/advertisers/{adv}/topups",
            201,
            {"amount": "250.00", "reference": "conform-1"},
        )
        call("GET", f"/api/advertisers/{adv}/balance", 200)
        call("PUT", f"/api/advertisers/{adv}/webhook", 200, {"url": "https://hooks.example/pm"})
        call(
            "PUT",
            f"/api/publishers/{pub}/postback_template",
            200,
            {"template": "https://aff.example/pb?click={click_id}&amt={payout}"},
        )
        call("GET", "/api/workspace", 200)
        call("PATCH", "/api/workspace", 200, {"fallback_url": "https://fallback.example/"})
        key = call("POST", "/api/apikeys", 201, {"name": "conform", "role": "analyst"})
        call("GET", "/api/apikeys", 200)
        call("DELETE", f"/api/apikeys/{key['id']}", 200)
        call("POST", "/api/advertisers", 422, {"name": "x", "currency": "ZZZ"})
        call("POST", "/api/goals", 409, {"name": "Lead", "key": "conform-lead"})
        call("GET", "/healthz", 200)
    resource_operations = {
        label for label in (op.label for op in _operations(api_schema)) if "/api/" in label
    }
    missed = {
        label
        for label in resource_operations - call.seen
        if label.split(" ")[1].split("/")[2] in {*bodies, "workspace", "apikeys"}
        and not label.endswith("write-key")
    }
    assert not missed, f"operations never answered successfully: {sorted(missed)}"
