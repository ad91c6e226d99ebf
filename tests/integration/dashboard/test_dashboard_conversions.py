"""The conversions log: filters, scoping, and approve/reject reaching the store and the lake."""

from __future__ import annotations

import re

from sqlalchemy import select

from perfmark.adapters.store.engine import transaction
from perfmark.adapters.store.schema import conversions
from perfmark.reports.domain.request import parse_report_request
from perfmark.reports.service import run_report
from perfmark.workers.processor import Processor

from .conftest import ClientFactory, World, csrf_of


def _statuses(world: World) -> dict[str, str]:
    with transaction(world.container.engine) as conn:
        rows = conn.execute(select(conversions.c.id, conversions.c.status)).all()
    return {row[0]: row[1] for row in rows}


def _approved_in_lake(world: World) -> int:
    request = parse_report_request(
        world.demo.workspace_id, start="2025-12-01", end="2026-01-31",
        metrics=("conversions_approved", "conversions_pending", "conversions_rejected"),
    )  # fmt: skip
    return int(run_report(world.container, request).totals["conversions_approved"])


def test_the_log_lists_newest_first_and_filters(world: World, client_for: ClientFactory) -> None:
    client = client_for(world, world.owner)
    html = client.get("/dashboard/conversions").text
    order = re.findall(r'id="row-(cnv_test\d+)"', html)
    assert order == ["cnv_test0002", "cnv_test0001", "cnv_test0000"]  # ids sort by time
    pending = client.get("/dashboard/conversions", params={"status": "pending"}).text
    assert re.findall(r'id="row-(cnv_test\d+)"', pending) == ["cnv_test0001"]
    found = client.get("/dashboard/conversions", params={"search": "T-0"}).text
    assert re.findall(r'id="row-(cnv_test\d+)"', found) == ["cnv_test0002"]
    december = client.get(
        "/dashboard/conversions", params={"from": "2025-12-30", "to": "2025-12-30"}
    ).text
    assert re.findall(r'id="row-(cnv_test\d+)"', december) == ["cnv_test0000"]


def test_an_advertiser_sees_only_its_conversions_and_cannot_change_them(
    world: World, client_for: ClientFactory
) -> None:
    client = client_for(world, world.advertiser)
    html = client.get("/dashboard/conversions").text
    assert set(re.findall(r'id="row-(cnv_test\d+)"', html)) == {"cnv_test0000", "cnv_test0002"}
    assert "Approve selected" not in html
    refused = client.post(
        "/dashboard/conversions/status",
        data={"csrf_token": csrf_of(html), "ids": "cnv_test0001", "status": "approved"},
    )
    assert refused.status_code == 403


def test_bulk_approval_changes_the_store_and_after_processing_the_reports(
    fresh_world: World, client_for: ClientFactory
) -> None:
    world = fresh_world
    assert _approved_in_lake(world) == 2
    client = client_for(world, world.owner)
    page = client.get("/dashboard/conversions").text
    # cnv_test0001 is pending (approvable); cnv_test0000 is already approved (refused).
    response = client.post(
        "/dashboard/conversions/status",
        data={"csrf_token": csrf_of(page), "ids": ["cnv_test0001", "cnv_test0000"],
              "status": "approved", "back": "status=pending"},
    )  # fmt: skip
    assert response.status_code == 303
    assert response.headers["location"].endswith("status=pending&changed=1&unchanged=1&refused=0")
    assert _statuses(world)["cnv_test0001"] == "approved"
    Processor(world.container).drain()  # the status event goes from the log to the lake
    assert _approved_in_lake(world) == 3
    shown = client.get(response.headers["location"]).text
    assert "1 conversion changed; 1 already had that status." in shown


def test_one_row_can_be_rejected_and_a_rejection_is_final(
    fresh_world: World, client_for: ClientFactory
) -> None:
    world = fresh_world
    client = client_for(world, world.owner)
    page = client.get("/dashboard/conversions").text
    response = client.post(
        "/dashboard/conversions/status",
        data={"csrf_token": csrf_of(page), "one": "cnv_test0002:rejected"},
    )
    assert response.status_code == 303
    assert _statuses(world)["cnv_test0002"] == "rejected"
    again = client.post(
        "/dashboard/conversions/status",
        data={"csrf_token": csrf_of(page), "ids": ["cnv_test0002", "cnv_nope"],
              "status": "approved"},
    )  # fmt: skip
    assert again.headers["location"].endswith("changed=0&unchanged=0&refused=2")
    assert _statuses(world)["cnv_test0002"] == "rejected"
    listed = client.get("/dashboard/conversions", params={"status": "rejected"}).text
    assert re.findall(r'id="row-(cnv_test\d+)"', listed) == ["cnv_test0002"]
    assert "30.00 USD" in listed
    assert 'value="cnv_test0002:approved"' not in listed  # no action offered on a final status
    forged = client.post(
        "/dashboard/conversions/status",
        data={"csrf_token": csrf_of(page), "one": "cnv_test0001:refunded"},
    )
    assert forged.status_code == 422
