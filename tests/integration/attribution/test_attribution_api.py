"""GET /api/attribution and `perfmark attribution` over a lake of hand-made journeys."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from perfmark.adapters.lake import LakeWriter
from perfmark.cli.main import app as cli
from perfmark.domain.accounts import Role
from perfmark.services.accounts import NewWorkspace, create_api_key
from perfmark.services.container import Container, Principal
from perfmark.settings import lake_directory
from perfmark.web.app import create_app

sys.path.insert(0, str(Path(__file__).parent))
from test_journeys import BASE, click, conversion

DAY = BASE.date().isoformat()


@pytest.fixture
def lake_with_journeys(container: Container, workspace: NewWorkspace) -> str:
    ws = workspace.workspace.id
    events = [
        click(BASE.replace(hour=1), "a", "paid_search", workspace_id=ws),
        click(BASE.replace(hour=2), "a", "email", workspace_id=ws),
        conversion(BASE.replace(hour=3), "a", value="30", workspace_id=ws),
        click(BASE.replace(hour=1), "b", "email", workspace_id=ws),
        conversion(BASE.replace(hour=4), "b", value="10", workspace_id=ws),
        click(BASE.replace(hour=1), "c", "paid_search", workspace_id=ws),
    ]
    LakeWriter(lake_directory(container.settings)).write("b1", events)
    return ws


def _get(container: Container, key: str, **params: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=create_app(container))

    async def call() -> httpx.Response:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.get(
                "/api/attribution", params=params, headers={"Authorization": f"Bearer {key}"}
            )

    import asyncio

    return asyncio.run(call())


def test_api_returns_credits_comparison_paths_and_shapes(
    container: Container, workspace: NewWorkspace, lake_with_journeys: str
) -> None:
    response = _get(
        container, workspace.api_key.secret, **{"from": DAY, "to": DAY, "model": "linear"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    credits = {row["key"]: row["conversions"] for row in body["result"]["credits"]}
    assert credits == pytest.approx({"paid_search": 0.5, "email": 1.5})
    assert body["comparison"]["models"][:2] == ["first_touch", "last_touch"]
    paths = {row["path"]: row for row in body["top_paths"]}
    assert paths["paid_search > email"] == {
        "path": "paid_search > email",
        "conversions": 1.0,
        "value": 30.0,
        "nulls": 0.0,
    }
    assert paths["email"]["value"] == 10.0
    assert body["path_length"] == {"1": 1, "2": 1}


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"from": DAY, "to": "2026-01-01"}, "to"),
        ({"from": DAY, "to": DAY, "model": "magic"}, "model"),
        ({"from": DAY, "to": DAY, "order": "4"}, "order"),
        ({"from": DAY, "to": DAY, "position": "40,60"}, "position"),
        ({"from": "2020-01-01", "to": "2020-01-02"}, "from"),
    ],
)
def test_bad_parameters_are_4xx_naming_the_field(
    container: Container,
    workspace: NewWorkspace,
    lake_with_journeys: str,
    params: dict[str, str],
    field: str,
) -> None:
    response = _get(container, workspace.api_key.secret, **params)
    assert 400 <= response.status_code < 500
    assert field in (response.json()["error"]["field"] or "")


def test_portal_roles_cannot_see_workspace_attribution(
    container: Container, workspace: NewWorkspace, lake_with_journeys: str
) -> None:
    from perfmark.adapters.store.kinds import ADVERTISERS
    from perfmark.domain.parties import AdvertiserSpec
    from perfmark.services.catalog import create_object

    owner = Principal(workspace.workspace.id, Role.OWNER)
    advertiser = create_object(container, owner, ADVERTISERS, AdvertiserSpec(name="Acme"))
    key = create_api_key(container, owner, "portal", Role.ADVERTISER, advertiser_id=advertiser.id)
    response = _get(container, key.secret, **{"from": DAY, "to": DAY})
    assert response.status_code == 403


def test_cli_prints_markov_credits_as_json(
    container: Container, lake_with_journeys: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PERFMARK_HOME", str(container.settings.home))
    result = CliRunner().invoke(
        cli,
        ["attribution", "--model", "markov", "--order", "2", "--from", DAY, "--to", DAY, "--json"],
    )
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    assert body["result"]["model"] == "markov"
    assert sum(row["conversions"] for row in body["result"]["credits"]) == pytest.approx(2.0)


def test_cli_refuses_a_bad_order(
    container: Container, lake_with_journeys: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PERFMARK_HOME", str(container.settings.home))
    result = CliRunner().invoke(cli, ["attribution", "--order", "5", "--from", DAY, "--to", DAY])
    assert result.exit_code == 2
    assert "order" in result.output


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("linear", {"paid_search": 0.5, "email": 0.5}),
        ("last_touch", {"paid_search": 0.0, "email": 1.0}),
    ],
)
def test_drilldown_gives_per_conversion_credit_rows(
    container: Container,
    workspace: NewWorkspace,
    lake_with_journeys: str,
    model: str,
    expected: dict[str, float],
) -> None:
    response = _get(
        container,
        workspace.api_key.secret,
        **{"from": DAY, "to": DAY, "model": model, "drilldown": "10"},
    )
    assert response.status_code == 200, response.text
    rows = response.json()["conversions"]
    assert len(rows) == 2
    two_touch = next(row for row in rows if len(row["touches"]) == 2)
    assert {t["key"]: t["credit"] for t in two_touch["touches"]} == pytest.approx(expected)
    assert sum(t["value"] for t in two_touch["touches"]) == pytest.approx(30.0)
    for row in rows:
        assert sum(t["credit"] for t in row["touches"]) == pytest.approx(1.0)


def test_markov_drilldown_splits_each_conversion_by_channel_credit(
    container: Container, workspace: NewWorkspace, lake_with_journeys: str
) -> None:
    body = _get(
        container,
        workspace.api_key.secret,
        **{"from": DAY, "to": DAY, "model": "markov", "drilldown": "5"},
    ).json()
    totals = {row["key"]: row["conversions"] for row in body["result"]["credits"]}
    two_touch = next(row for row in body["conversions"] if len(row["touches"]) == 2)
    credits = {t["key"]: t["credit"] for t in two_touch["touches"]}
    share = totals["paid_search"] / (totals["paid_search"] + totals["email"])
    assert credits["paid_search"] == pytest.approx(share)
