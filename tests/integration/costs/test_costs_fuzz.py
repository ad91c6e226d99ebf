"""A bounded schemathesis run over the cost and rate routes: no 5xx, answers as documented."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from perfmark.costs.api import build_costs_router
from perfmark.domain.accounts import Role
from perfmark.services.accounts import create_api_key
from perfmark.services.container import build_container
from perfmark.settings import load_settings
from perfmark.web.app import create_app

from .conftest import seed_workspace

#: Generated cases per operation and mode: six operations, so about 150 requests in all.
MAX_EXAMPLES_PER_OPERATION = 12
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
_OURS = ("/api/costs", "/api/rates")


@dataclass(frozen=True)
class FuzzTarget:
    """The app with the cost routes and an owner key of a seeded workspace."""

    app: FastAPI
    headers: dict[str, str]


@pytest.fixture(scope="module")
def fuzz_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzTarget]:
    """One seeded SQLite workspace shared by every generated case."""
    container = build_container(
        load_settings({"PERFMARK_HOME": str(tmp_path_factory.mktemp("costs_fuzz"))})
    )
    seeded = seed_workspace(container)
    key = create_api_key(container, seeded.owner, "fuzz", Role.OWNER)
    app = create_app(container)
    app.include_router(build_costs_router(), prefix="/api")
    yield FuzzTarget(app, {"Authorization": f"Bearer {key.secret}"})
    container.engine.dispose()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_generated_requests_conform(fuzz_target: FuzzTarget, mode: GenerationMode) -> None:
    loaded: Any = schemathesis.openapi.from_asgi("/api/openapi.json", fuzz_target.app)
    operations = [
        result.ok() for result in loaded.get_all_operations() if result.ok().path.startswith(_OURS)
    ]
    assert len(operations) == 6
    failures: list[str] = []
    for operation in operations:

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
            if mode is GenerationMode.POSITIVE:
                failures.append(f"{operation.label}: no cases could be generated")
        except Exception as exc:  # collect every operation's failure, then report them all
            failures.append(f"{operation.label}: {exc}")
    assert not failures, "\n\n".join(failures)
