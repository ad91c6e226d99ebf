"""An object whose stored data no longer validates: a clear 409 on reads, left out of lists
(and named there), repaired by a PATCH.

Such data comes from a release that added a rule the object breaks, or from an edit in the
database. Before, every read and every PATCH of it answered 422, so it could not be fixed.
"""

from __future__ import annotations

from typing import Any

from starlette.testclient import TestClient

from perfmark.adapters.store.schema import campaigns, publishers
from perfmark.services.container import Container
from perfmark.services.tracking_config import load_snapshot

from .helpers import write_stored_data


def _error(response: Any) -> dict[str, Any]:
    error: dict[str, Any] = response.json()["error"]
    return error


def test_reads_name_the_object_and_field_and_a_patch_repairs_it(
    api: TestClient, graph: dict[str, dict[str, Any]], container: Container
) -> None:
    campaign_id = graph["campaign"]["id"]
    slug = graph["link"]["slug"]
    write_stored_data(container.engine, campaigns, campaign_id, daily_budget="-5")
    assert slug not in load_snapshot(container.engine).links

    response = api.get(f"/api/campaigns/{campaign_id}")
    assert response.status_code == 409
    error = _error(response)
    assert error["code"] == "stored_object_invalid" and error["field"] == "daily_budget"
    assert campaign_id in error["message"] and "PATCH" in error["message"]
    # A list leaves it out and names it, with the same message.
    listed = api.get("/api/campaigns")
    assert listed.status_code == 200
    assert campaign_id not in [item["id"] for item in listed.json()["data"]]
    assert listed.json()["invalid"] == [
        {
            "id": campaign_id,
            "code": "stored_object_invalid",
            "message": error["message"],
            "field": "daily_budget",
        }
    ]

    # A change that leaves the broken field broken is refused, naming that field.
    unrelated = api.patch(f"/api/campaigns/{campaign_id}", json={"name": "Renamed"})
    assert unrelated.status_code == 422 and _error(unrelated)["field"] == "daily_budget"

    repaired = api.patch(f"/api/campaigns/{campaign_id}", json={"daily_budget": "25"})
    assert repaired.status_code == 200, repaired.text
    assert repaired.json()["daily_budget"] == "25" and repaired.json()["name"] == "Spring"
    assert api.get(f"/api/campaigns/{campaign_id}").json()["version"] == 2
    listed = api.get("/api/campaigns").json()
    assert listed["invalid"] == [] and campaign_id in [item["id"] for item in listed["data"]]
    assert slug in load_snapshot(container.engine).links


def test_a_repair_still_follows_the_campaign_lifecycle(
    api: TestClient, graph: dict[str, dict[str, Any]], container: Container
) -> None:
    campaign_id = graph["campaign"]["id"]
    write_stored_data(container.engine, campaigns, campaign_id, daily_budget="-5", status="ended")
    response = api.patch(
        f"/api/campaigns/{campaign_id}", json={"daily_budget": "25", "status": "active"}
    )
    assert response.status_code == 409 and _error(response)["code"] == "illegal_transition"


def test_an_object_that_no_longer_validates_can_be_archived_as_stored(
    api: TestClient, graph: dict[str, dict[str, Any]], container: Container
) -> None:
    publisher_id = graph["publisher"]["id"]
    write_stored_data(container.engine, publishers, publisher_id, channel="carrier_pigeon")
    before = api.get("/api/publishers").json()
    assert [entry["id"] for entry in before["invalid"]] == [publisher_id]
    assert before["invalid"][0]["field"] == "channel"
    archived = api.delete(f"/api/publishers/{publisher_id}")
    assert archived.status_code == 200, archived.text
    body = archived.json()
    assert body["archived_at"] is not None and body["channel"] == "carrier_pigeon"
    listed = api.get("/api/publishers")
    assert listed.status_code == 200 and publisher_id not in listed.text
    assert listed.json()["invalid"] == []  # archived objects are not listed by default
    again = api.delete(f"/api/publishers/{publisher_id}")  # archiving twice changes nothing
    assert again.status_code == 200 and again.json()["version"] == body["version"]


def test_paging_goes_past_an_invalid_object(
    api: TestClient, graph: dict[str, dict[str, Any]], container: Container
) -> None:
    first = graph["publisher"]["id"]
    second = api.post("/api/publishers", json={"name": "Second", "channel": "native"})
    assert second.status_code == 201, second.text
    write_stored_data(container.engine, publishers, first, channel="carrier_pigeon")

    page = api.get("/api/publishers", params={"limit": 1}).json()
    assert page["data"] == [] and [entry["id"] for entry in page["invalid"]] == [first]
    assert page["next_cursor"] == first
    rest = api.get("/api/publishers", params={"limit": 1, "cursor": first}).json()
    assert [item["id"] for item in rest["data"]] == [second.json()["id"]]
    assert rest["invalid"] == [] and rest["next_cursor"] is None
