"""The cost and rate endpoints over HTTP: imports, lists, the one error shape, no 5xx."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from fastapi import FastAPI

from perfmark.costs.api import build_costs_router
from perfmark.domain.accounts import Role, WorkspaceSpec
from perfmark.services.accounts import create_api_key, create_workspace
from perfmark.services.container import Container, build_container
from perfmark.settings import load_settings
from perfmark.web.app import create_app

from .conftest import Seeded, sample, seed_workspace

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient

ERROR_KEYS = {"code", "message", "field", "docs"}
GOOGLE = "costs/google_ads_campaign_report.csv"


@pytest.fixture(scope="module")
def costs_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastAPI]:
    """One app for the module (building routes is slow); each test points it at its store."""
    home = tmp_path_factory.mktemp("costs_app_home")
    container = build_container(load_settings({"PERFMARK_HOME": str(home)}))
    app = create_app(container)
    app.include_router(build_costs_router(), prefix="/api")
    yield app
    container.engine.dispose()


@pytest.fixture
def seeded_api(costs_app: FastAPI, seeded_sqlite: Seeded) -> Iterator[tuple[TestClient, Seeded]]:
    """A client with the owner key of a seeded workspace."""
    costs_app.state.container = seeded_sqlite.container
    key = create_api_key(seeded_sqlite.container, seeded_sqlite.owner, "costs", Role.OWNER)
    headers = {"Authorization": f"Bearer {key.secret}"}
    with TestClient(costs_app, headers=headers) as client:
        yield client, seeded_sqlite


def _error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == ERROR_KEYS, body
    assert body["error"]["code"] == code
    assert "Traceback" not in response.text
    error: dict[str, Any] = body["error"]
    return error


def _upload(client: TestClient, data: bytes, **form: Any) -> Any:
    return client.post(
        "/api/costs/import", files={"file": ("export.csv", data, "text/csv")}, data=form
    )


def test_upload_google_export_then_list(seeded_api: tuple[TestClient, Seeded]) -> None:
    client, seeded = seeded_api
    shoes = seeded.campaigns["Spring Shoes"]
    response = _upload(
        client,
        sample(GOOGLE),
        layout="google_ads",
        campaign_map=[f"Generic - Shoes DE={shoes}"],
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["rows"] == 9 and body["replaced"] == 0
    assert (body["start_date"], body["end_date"]) == ("2026-01-01", "2026-01-03")
    assert body["totals"] == [{"currency": "EUR", "spend": "11432.20"}]
    assert body["import_id"].startswith("cost_")
    again = _upload(
        client, sample(GOOGLE), layout="google_ads", campaign_map=[f"Generic - Shoes DE={shoes}"]
    ).json()
    assert again["replaced"] == 9
    listed = client.get("/api/costs", params={"campaign_id": shoes}).json()
    assert [row["spend"] for row in listed["data"]] == ["2450.00", "2312.40", "2598.77"]
    assert listed["data"][0] == {
        "date": "2026-01-01",
        "campaign_id": shoes,
        "source": "google_ads",
        "spend": "2450.00",
        "currency": "EUR",
    }
    page = client.get("/api/costs", params={"limit": 5}).json()
    rest = client.get("/api/costs", params={"limit": 5, "cursor": page["next_cursor"]}).json()
    assert len(page["data"]) == 5 and len(rest["data"]) == 4 and rest["next_cursor"] is None
    total = sum(Decimal(row["spend"]) for row in page["data"] + rest["data"])
    assert total == Decimal("11432.20")


def test_upload_generic_with_a_mapping(seeded_api: tuple[TestClient, Seeded]) -> None:
    client, _seeded = seeded_api
    response = _upload(
        client,
        sample("costs/generic.csv"),
        layout="generic",
        source="taboola",
        campaign_column="Kampagne",
        date_column="Datum",
        spend_column="Kosten",
        currency="EUR",
        date_format="%d.%m.%Y",
        decimal_separator=",",
    )
    assert response.status_code == 200, response.text
    assert response.json()["totals"] == [{"currency": "EUR", "spend": "2306.49"}]
    assert len(client.get("/api/costs", params={"source": "taboola"}).json()["data"]) == 4


@pytest.mark.parametrize(
    ("old", "new", "field", "phrase"),
    [
        (b'"2,598.77"', b'"2,598.7x"', "Cost", "row 9, column 'Cost'"),
        (
            b"PMax - Catalog,2026-01-03",
            b"Winter,2026-01-03",
            "Campaign",
            "row 12, column 'Campaign'",
        ),
        (
            b"PMax - Catalog,2026-01-03,EUR",
            b"PMax - Catalog,2026-01-03,EUX",
            "Currency code",
            "row 12",
        ),
        (b",Currency code,", b",Currency,", "Currency code", "row 3"),
    ],
)
def test_bad_upload_is_a_422_naming_row_and_column_and_imports_nothing(
    seeded_api: tuple[TestClient, Seeded], old: bytes, new: bytes, field: str, phrase: str
) -> None:
    client, _seeded = seeded_api
    shoes = _seeded.campaigns["Spring Shoes"]
    response = _upload(
        client,
        sample(GOOGLE).replace(old, new),
        layout="google_ads",
        campaign_map=[f"Generic - Shoes DE={shoes}"],
    )
    error = _error(response, 422, "validation_error")
    assert error["field"] == field and phrase in error["message"]
    assert client.get("/api/costs").json()["data"] == []


@pytest.mark.parametrize(
    ("form", "field"),
    [
        ({"layout": "bing_ads"}, "layout"),
        ({"layout": "google_ads", "currency": "EUR"}, "currency"),
        ({"layout": "google_ads", "campaign_map": ["no equals"]}, "campaign_map"),
        ({"layout": "google_ads", "campaign_map": ["Brand=cmp_missing"]}, "campaign_map"),
        ({"layout": "google_ads", "source": "bad source"}, "source"),
        ({"layout": "google_ads", "start_date": "2026-02-01", "end_date": "2026-01-01"}, None),
        ({"layout": "generic", "decimal_separator": ";"}, "decimal_separator"),
    ],
)
def test_bad_upload_options(
    seeded_api: tuple[TestClient, Seeded], form: dict[str, Any], field: str | None
) -> None:
    client, _seeded = seeded_api
    error = _error(_upload(client, sample(GOOGLE), **form), 422, "validation_error")
    if field is not None:
        assert error["field"] == field, error


def test_upload_without_a_file(seeded_api: tuple[TestClient, Seeded]) -> None:
    client, _seeded = seeded_api
    response = client.post("/api/costs/import", data={"layout": "google_ads"})
    assert _error(response, 422, "validation_error")["field"] == "file"


def test_json_rows_and_their_errors(seeded_api: tuple[TestClient, Seeded]) -> None:
    client, seeded = seeded_api
    cart = seeded.campaigns["Retargeting - Cart"]
    body: dict[str, Any] = {
        "source": "tiktok_ads",
        "rows": [
            {"date": "2026-01-05", "spend": "40.10", "currency": "EUR", "campaign_id": cart},
            {
                "date": "2026-01-06",
                "spend": "0",
                "currency": "EUR",
                "campaign_name": "Spring Shoes",
            },
        ],
    }
    response = client.post("/api/costs", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["totals"] == [{"currency": "EUR", "spend": "40.10"}]
    float_spend = {**body, "rows": [{**body["rows"][0], "spend": 40.1}]}
    assert (
        _error(client.post("/api/costs", json=float_spend), 422, "validation_error")["field"]
        == "rows.0.spend"
    )
    negative = {**body, "rows": [body["rows"][0], {**body["rows"][1], "spend": "-1"}]}
    error = _error(client.post("/api/costs", json=negative), 422, "validation_error")
    assert error["field"] == "rows[1].spend" and "negative" in error["message"]
    both = {**body, "rows": [{**body["rows"][0], "campaign_name": "x"}]}
    assert (
        _error(client.post("/api/costs", json=both), 422, "validation_error")["field"]
        == "rows[0].campaign_id"
    )
    empty = {"source": "x", "rows": []}
    assert _error(client.post("/api/costs", json=empty), 422, "validation_error")["field"] == "rows"
    listed = client.get("/api/costs", params={"source": "tiktok_ads"}).json()["data"]
    assert [(row["date"], row["spend"]) for row in listed] == [
        ("2026-01-05", "40.10"),
        ("2026-01-06", "0.00"),
    ]


def test_rates_endpoints(seeded_api: tuple[TestClient, Seeded]) -> None:
    client, _seeded = seeded_api
    uploaded = client.post(
        "/api/rates/import", files={"file": ("rates.csv", sample("rates.csv"), "text/csv")}
    )
    assert uploaded.json() == {"rates": 8, "replaced": 0}
    posted = client.post(
        "/api/rates",
        json={
            "rates": [
                {
                    "base": "eur",
                    "quote": "usd",
                    "rate": "1.05",
                    "valid_from": "2026-01-02T00:00:00Z",
                },
                {
                    "base": "GBP",
                    "quote": "USD",
                    "rate": "1.27",
                    "valid_from": "2026-01-02T01:00:00+01:00",
                },
            ]
        },
    )
    assert posted.json() == {"rates": 2, "replaced": 1}
    listed = client.get("/api/rates", params={"base": "GBP"}).json()["data"]
    assert listed == [
        {"base": "GBP", "quote": "USD", "rate": "1.27", "valid_from": "2026-01-02T00:00:00Z"}
    ]
    eur_usd = client.get("/api/rates", params={"base": "EUR", "quote": "USD"}).json()["data"]
    assert [rate["rate"] for rate in eur_usd] == ["1.0412", "1.05", "1.0431"]
    for rate, field in [("0", "rates[0].rate"), ("x", "rates[0].rate")]:
        bad = {"rates": [{"base": "EUR", "quote": "USD", "rate": rate, "valid_from": "2026-01-01"}]}
        assert (
            _error(client.post("/api/rates", json=bad), 422, "validation_error")["field"] == field
        )
    same = {"rates": [{"base": "EUR", "quote": "EUR", "rate": "1", "valid_from": "2026-01-01"}]}
    assert (
        _error(client.post("/api/rates", json=same), 422, "validation_error")["field"]
        == "rates[0].quote"
    )
    bad_csv = client.post("/api/rates/import", files={"file": ("r.csv", b"a,b\n1,2\n", "text/csv")})
    assert "base,quote,rate,valid_from" in _error(bad_csv, 422, "validation_error")["message"]


def test_auth_and_roles(seeded_api: tuple[TestClient, Seeded], costs_app: FastAPI) -> None:
    client, seeded = seeded_api
    with TestClient(costs_app) as anonymous:
        _error(anonymous.get("/api/costs"), 401, "unauthenticated")
    analyst = create_api_key(seeded.container, seeded.owner, "ro", Role.ANALYST)
    with TestClient(costs_app, headers={"Authorization": f"Bearer {analyst.secret}"}) as ro:
        _error(_upload(ro, sample(GOOGLE), layout="google_ads"), 403, "forbidden")
        assert ro.get("/api/costs").status_code == 200
        assert ro.get("/api/rates").status_code == 200
    other = seed_workspace(seeded.container, "Other")
    other_key = create_api_key(seeded.container, other.owner, "o", Role.OWNER)
    _upload(client, sample("costs/meta_ads_export.csv"), layout="meta_ads")
    with TestClient(costs_app, headers={"Authorization": f"Bearer {other_key.secret}"}) as o:
        assert o.get("/api/costs").json()["data"] == []


def test_bad_query_parameters(seeded_api: tuple[TestClient, Seeded]) -> None:
    client, _seeded = seeded_api
    for params, field in [
        ({"start_date": "yesterday"}, "start_date"),
        ({"limit": "0"}, "limit"),
        ({"cursor": "nonsense"}, "cursor"),
        ({"source": "no spaces"}, "source"),
    ]:
        error = _error(client.get("/api/costs", params=params), 422, "validation_error")
        assert error["field"] == field
    assert (
        _error(client.get("/api/rates", params={"base": "EUX"}), 422, "validation_error")["field"]
        == "base"
    )


def test_openapi_documents_the_cost_routes(costs_app: FastAPI, container: Container) -> None:
    costs_app.state.container = container
    create_workspace(container, WorkspaceSpec(name="Docs"), "docs@example.com")
    with TestClient(costs_app) as client:
        spec = client.get("/api/openapi.json").json()
    for path, method in [
        ("/api/costs/import", "post"),
        ("/api/costs", "post"),
        ("/api/costs", "get"),
        ("/api/rates/import", "post"),
        ("/api/rates", "post"),
        ("/api/rates", "get"),
    ]:
        operation = spec["paths"][path][method]
        assert {"200", "401", "403", "422"} <= set(operation["responses"]), path
