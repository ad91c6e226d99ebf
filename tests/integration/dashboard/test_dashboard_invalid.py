"""A campaign or partner whose stored data no longer validates: named on its list page.

One such object used to make the whole page fail; now the page lists the others and says
which objects it left out, why, and how to repair them (the JSON twins say the same).
"""

from __future__ import annotations

from sqlalchemy import select

from perfmark.adapters.store.engine import transaction
from perfmark.adapters.store.schema import campaigns, links, publishers
from perfmark.domain.accounts import Role
from perfmark.services.accounts import create_api_key
from perfmark.services.container import Principal

from ..api.helpers import write_stored_data
from .conftest import ClientFactory, World


def _analyst_key(world: World) -> dict[str, str]:
    owner = Principal(world.demo.workspace_id, Role.OWNER, actor_id="test")
    created = create_api_key(world.container, owner, "invalid-test", Role.ANALYST)
    return {"Authorization": f"Bearer {created.secret}"}


def test_list_pages_name_what_they_leave_out(fresh_world: World, client_for: ClientFactory) -> None:
    world = fresh_world
    campaign = world.facts.northwind_campaign
    publisher = world.facts.couponhub
    write_stored_data(world.container.engine, campaigns, campaign, daily_budget="-5")
    write_stored_data(world.container.engine, publishers, publisher, channel="carrier_pigeon")
    browser = client_for(world, world.owner)

    page = browser.get("/dashboard/campaigns")
    assert page.status_code == 200
    assert page.text.count('class="badge status-active"') == 5  # the other campaigns
    assert 'id="left-out"' in page.text and "1 campaign not shown" in page.text
    assert campaign in page.text and "daily_budget" in page.text and "PATCH" in page.text

    partners = browser.get("/dashboard/publishers")
    assert partners.status_code == 200 and "1 publisher not shown" in partners.text
    assert publisher in partners.text and "SearchBuy" in partners.text

    api = client_for(world, None)
    twin = api.get("/api/dashboard/campaigns", headers=_analyst_key(world)).json()
    assert campaign not in [row["id"] for row in twin["data"]]
    assert [(e["id"], e["field"]) for e in twin["invalid"]] == [(campaign, "daily_budget")]
    twin = api.get("/api/dashboard/publishers", headers=_analyst_key(world)).json()
    assert [(e["id"], e["field"]) for e in twin["invalid"]] == [(publisher, "channel")]


def test_nothing_is_said_when_nothing_is_left_out(world: World, client_for: ClientFactory) -> None:
    page = client_for(world, world.owner).get("/dashboard/campaigns")
    assert page.status_code == 200 and 'id="left-out"' not in page.text


def test_link_lists_name_the_links_they_leave_out(
    fresh_world: World, client_for: ClientFactory
) -> None:
    world = fresh_world
    with transaction(world.container.engine) as conn:
        link_id, campaign_id = conn.execute(
            select(links.c.id, links.c.campaign_id).where(
                links.c.publisher_id == world.facts.searchbuy
            )
        ).first()
    write_stored_data(world.container.engine, links, link_id, status="bogus")

    edit = client_for(world, world.owner).get(f"/dashboard/campaigns/{campaign_id}")
    assert edit.status_code == 200
    assert "1 link not shown" in edit.text
    assert f"<li><code>{link_id}</code>: link {link_id} as stored no longer passes" in edit.text

    own = client_for(world, world.publisher).get("/dashboard/links")
    assert own.status_code == 200
    assert "1 link not shown" in own.text and link_id in own.text
