"""Helpers for API tests: auth header, the error-shape assertion, and a seeded object graph."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, Table, select, update

from perfmark.adapters.store.engine import transaction

if TYPE_CHECKING:
    from starlette.testclient import TestClient


__all__ = ["ERROR_KEYS", "assert_error", "bearer", "created", "seed_graph", "write_stored_data"]

ERROR_KEYS = {"code", "message", "field", "docs"}


def write_stored_data(engine: Engine, table: Table, object_id: str, **values: Any) -> None:
    """Write fields straight into an object's stored data, as an older release could have."""
    with transaction(engine) as conn:
        data = conn.execute(select(table.c.data).where(table.c.id == object_id)).scalar_one()
        stored = json.loads(data) if isinstance(data, str) else dict(data)
        stored.update(values)
        conn.execute(update(table).where(table.c.id == object_id).values(data=stored))


def bearer(secret: str) -> dict[str, str]:
    """The Authorization header for an API key."""
    return {"Authorization": f"Bearer {secret}"}


def assert_error(response: Any, status: int, code: str, field: str | None = None) -> str:
    """Check the one error shape; return the message."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == ERROR_KEYS, body
    assert error["code"] == code, body
    assert error["docs"].endswith("#" + code)
    assert isinstance(error["message"], str) and error["message"]
    assert "Traceback" not in response.text
    if field is not None:
        assert error["field"] == field, body
    message: str = error["message"]
    return message


def created(response: Any) -> dict[str, Any]:
    """The body of a successful create."""
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def seed_graph(client: TestClient, currency: str = "EUR") -> dict[str, dict[str, Any]]:
    """One of each object through the API: advertiser, offer, goal, publisher, campaign, link."""
    adv = created(client.post("/api/advertisers", json={"name": "Acme", "currency": currency}))
    offer = created(
        client.post(
            "/api/offers",
            json={
                "name": "Shoes",
                "advertiser_id": adv["id"],
                "landing_pages": [
                    {"key": "lp1", "url": "https://shop.example/a?c={click_id}", "weight": 3}
                ],
            },
        )
    )
    goal = created(
        client.post(
            "/api/goals",
            json={
                "name": "Sale",
                "key": "sale",
                "kind": "sale",
                "default_value": "10.50",
                "currency": currency,
            },
        )
    )
    publisher = created(
        client.post("/api/publishers", json={"name": "Aff One", "channel": "affiliate"})
    )
    campaign = created(
        client.post(
            "/api/campaigns",
            json={
                "name": "Spring",
                "advertiser_id": adv["id"],
                "offer_id": offer["id"],
                "currency": currency,
                "goal_ids": [goal["id"]],
                "pricing": [
                    {
                        "goal_id": goal["id"],
                        "pays": {"model": "cpa", "amount": "5"},
                        "earns": {"model": "cpa", "amount": "3.5"},
                    }
                ],
                "daily_budget": "100",
            },
        )
    )
    link = created(
        client.post(
            "/api/links",
            json={"campaign_id": campaign["id"], "publisher_id": publisher["id"], "sub1": "x"},
        )
    )
    return {
        "advertiser": adv,
        "offer": offer,
        "goal": goal,
        "publisher": publisher,
        "campaign": campaign,
        "link": link,
    }
