"""A bounded schemathesis run over the billing routes: no request, however malformed, is a 5xx."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, status_code_conformance

from perfmark.billing.api import build_billing_router
from perfmark.clock import FixedClock
from perfmark.web.app import create_app

from .helpers import CPA, Rig, make_rig

EXAMPLES_PER_OPERATION = 10
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance]


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Rig]]:
    """The app with billing routes, on a demo workspace with a charged conversion."""
    rig = make_rig(tmp_path_factory.mktemp("billing_fuzz"), FixedClock())
    rig.convert(CPA, value="10", txid="F-1")
    rig.process()
    app = create_app(rig.container)
    if not any(getattr(route, "path", "") == "/api/ledger" for route in app.routes):
        app.include_router(build_billing_router(), prefix="/api")
    yield app, rig
    for close in app.state.closers:
        close()
    rig.wal.close()
    rig.container.engine.dispose()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_generated_billing_requests_never_fail_on_our_side(
    target: tuple[Any, Rig], mode: GenerationMode
) -> None:
    app, rig = target
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = schemathesis.openapi.from_asgi("/api/openapi.json", app)
    real = {"advertisers": rig.advertiser_id(CPA), "publishers": rig.publisher_id(CPA),
            "conversions": rig.conversions()[0]["id"]}  # fmt: skip

    @loaded.hook
    def before_generate_path_parameters(
        context: schemathesis.HookContext, strategy: st.SearchStrategy[Any]
    ) -> st.SearchStrategy[Any]:
        assert context.operation is not None
        parts = context.operation.path.split("/")
        name = next((part[1:-1] for part in parts if part.startswith("{")), None)
        plural = parts[2] if len(parts) > 2 else ""
        if name is None or plural not in real:
            return strategy
        return st.one_of(strategy, st.just({name: real[plural]}))

    headers = {"Authorization": f"Bearer {rig.demo.api_key}"}
    operations = [
        result.ok()
        for result in loaded.get_all_operations()
        if "billing" in (result.ok().definition.raw.get("tags") or [])
    ]
    assert len(operations) >= 17
    failures: list[str] = []
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True,
                  database=None, suppress_health_check=list(HealthCheck))  # fmt: skip
        def run(case: Any) -> None:
            response = case.call_and_validate(headers=headers, checks=CHECKS)
            assert "Traceback" not in response.text

        try:
            run()
        except Unsatisfiable:
            pass  # nothing to make invalid in this operation
        except Exception as exc:  # report every operation's failure at once
            failures.append(f"{operation.label}: {exc}")
    assert not failures, "\n\n".join(failures)
