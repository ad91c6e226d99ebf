"""GET /api/reports in-process: JSON, CSV and Parquet, errors, and what portal keys may see."""

from __future__ import annotations

import asyncio
import csv
import io
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest
from fastapi import FastAPI

from perfmark.adapters.store.kinds import ADVERTISERS, PUBLISHERS
from perfmark.domain.accounts import Role
from perfmark.domain.parties import AdvertiserSpec, PublisherSpec
from perfmark.services.accounts import NewWorkspace, create_api_key
from perfmark.services.catalog import create_object
from perfmark.services.container import Container, Principal
from perfmark.settings import lake_directory
from perfmark.web.app import create_app

from .lake_data import standard_events, write_events

RANGE = {"from": "2026-01-14", "to": "2026-01-16"}


@dataclass(frozen=True)
class Api:
    """The app of one container and the keys of its workspace."""

    app: FastAPI
    owner: str
    advertiser: str
    publisher: str
    advertiser_id: str
    publisher_id: str

    def get(self, key: str, **params: Any) -> httpx.Response:
        async def call() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                return await client.get(
                    "/api/reports",
                    params={**RANGE, **params},
                    headers={"Authorization": f"Bearer {key}"},
                )

        return asyncio.run(call())


@pytest.fixture
def api(container: Container, eur_workspace: NewWorkspace) -> Api:
    """Real advertiser and publisher records (adv_1 and pub_1 of the dataset), with keys."""
    workspace_id = eur_workspace.workspace.id
    owner = Principal(workspace_id, Role.OWNER, actor_id="test")
    advertiser = create_object(
        container, owner, ADVERTISERS, AdvertiserSpec(name="Acme Outdoor", currency="EUR")
    )
    publisher = create_object(container, owner, PUBLISHERS, PublisherSpec(name="Deal Blog"))
    events = standard_events(workspace_id)
    for item in events:
        if item.advertiser_id == "adv_1":
            item.advertiser_id = advertiser.id
        if item.publisher_id == "pub_1":
            item.publisher_id = publisher.id
    write_events(lake_directory(container.settings), events)
    advertiser_key = create_api_key(
        container, owner, "acme portal", Role.ADVERTISER, advertiser_id=advertiser.id
    )
    publisher_key = create_api_key(
        container, owner, "blog portal", Role.PUBLISHER, publisher_id=publisher.id
    )
    return Api(
        create_app(container),
        eur_workspace.api_key.secret,
        advertiser_key.secret,
        publisher_key.secret,
        advertiser.id,
        publisher.id,
    )


def test_json(api: Api) -> None:
    response = api.get(api.owner, by="advertiser", metrics="clicks,cost,cpa", sort="cost")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["currency"] == "EUR" and body["timezone"] == "UTC"
    assert body["columns"] == ["advertiser", "advertiser_name", "clicks", "cost", "cpa"]
    assert body["rows"] == [
        {
            "advertiser": api.advertiser_id,
            "advertiser_name": "Acme Outdoor",
            "clicks": 5,
            "cost": "8.52",  # amounts are exact decimal strings
            "cpa": "4.26",
        }
    ]
    assert body["totals"] == {"clicks": 5, "cost": "8.52", "cpa": "4.26"}
    assert body["total_rows"] == 1


def test_json_types_are_the_same_in_every_row(api: Api) -> None:
    body = api.get(api.owner, by="sub1", metrics="clicks,cpa", sort="sub1", order="asc").json()
    assert [(row["sub1"], row["clicks"], row["cpa"]) for row in body["rows"]] == [
        (None, 2, None),  # 0 conversions (a sale, then its refund): null, not an error
        ("x", 2, "4"),  # a whole amount is still a decimal string
        ("y", 1, None),
    ]


def test_csv(api: Api) -> None:
    response = api.get(
        api.owner, by="campaign,day", metrics="clicks,revenue,roas", format="csv", tz="Asia/Tokyo"
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0] == ["campaign", "campaign_name", "day", "clicks", "revenue", "roas"]
    table = {(row[0], row[2]): row[3:] for row in rows[1:]}
    assert table[("cmp_1", "2026-01-14")] == ["2", "100", "16.666667"]  # 100 / (1.00 + 5)
    assert table[("cmp_1", "2026-01-15")] == ["1", "0", "0"]  # the 23:30 UTC click, conv2
    assert table[("cmp_2", "2026-01-16")] == ["0", "-40", "10"]  # the refund: -40 / -4


def test_parquet(api: Api) -> None:
    response = api.get(api.owner, by="country", metrics="impressions,ctr", format="parquet")
    assert response.status_code == 200
    table = pq.read_table(io.BytesIO(response.content))
    assert str(table.schema.field("impressions").type) == "int64"
    assert str(table.schema.field("ctr").type) == "decimal128(38, 6)"
    rows = {row["country"]: row for row in table.to_pylist()}
    assert rows["DE"]["impressions"] == 10 and rows["DE"]["ctr"] == Decimal("0.2")  # 2 / 10
    assert rows["US"]["ctr"] == Decimal("0.75")  # 3 / 4


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"by": "planet"}, "dimensions"),
        ({"metrics": "clicks,cpx"}, "metrics"),
        ({"tz": "Mars/Base"}, "tz"),
        ({"from": "2026-02-30"}, "from"),
        ({"filter.planet": "x"}, "filter.planet"),
        ({"sort": "roas", "metrics": "clicks"}, "sort"),
    ],
)
def test_errors_name_the_field(api: Api, params: dict[str, str], field: str) -> None:
    response = api.get(api.owner, **params)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error" and error["field"] == field
    assert "Traceback" not in response.text


def test_an_advertiser_key_sees_only_its_own_rows(api: Api) -> None:
    # adv_1 (this key's advertiser) owns cmp_1 and cmp_2; nothing else exists in the data,
    # so also ask for another advertiser explicitly: the key's own scope wins.
    response = api.get(
        api.advertiser, by="campaign", metrics="clicks,cost", **{"filter.advertiser": "adv_x"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert {row["campaign"] for row in body["rows"]} == {"cmp_1", "cmp_2"}
    assert body["totals"] == {"clicks": 5, "cost": "8.52"}
    hidden = api.get(api.advertiser, metrics="clicks,payout")
    assert hidden.status_code == 403 and "payout" in hidden.json()["error"]["message"]


def test_a_publisher_key_sees_only_its_own_rows(api: Api) -> None:
    # The publisher is pub_1 of the dataset: cmp_1's traffic only.
    response = api.get(api.publisher, by="campaign")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["metrics"] == ["clicks", "unique_clicks", "conversions", "conversion_rate",
                               "payout"]  # fmt: skip
    assert [row["campaign"] for row in body["rows"]] == ["cmp_1"]
    assert body["totals"] == {
        "clicks": 3,
        "unique_clicks": 2,
        "conversions": 2,
        "conversion_rate": "0.666667",
        "payout": "4.9",  # 3 x 0.30 + 3 + 1
    }
    other = api.get(api.publisher, **{"filter.publisher": "pub_2"}, metrics="clicks")
    assert other.json()["totals"] == {"clicks": 3}
    for metric in ("cost", "revenue", "roas"):
        refused = api.get(api.publisher, metrics=f"clicks,{metric}")
        assert refused.status_code == 403, metric


def test_no_key_no_report(api: Api) -> None:
    response = api.get("pm_wrong_key", metrics="clicks")
    assert response.status_code == 401
