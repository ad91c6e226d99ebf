"""Forms: the campaign editor, links, status toggles, settings; errors keep what was typed."""

from __future__ import annotations

import re
from typing import Any

from perfmark.adapters.store.kinds import CAMPAIGNS, LINKS
from perfmark.domain.accounts import Role
from perfmark.services import catalog
from perfmark.services.container import Principal

from .conftest import ClientFactory, World, csrf_of


def _owner(world: World) -> Principal:
    return Principal(world.demo.workspace_id, Role.OWNER, actor_id="test")


def _new_campaign_form(world: World, token: str, **overrides: Any) -> dict[str, Any]:
    first = world.demo.campaigns[0].spec
    form: dict[str, Any] = {
        "csrf_token": token, "name": "Winter tents", "advertiser_id": first.advertiser_id,
        "offer_id": first.offer_id, "channel": "email", "currency": "USD", "status": "active",
        "goal_ids": list(first.goal_ids), "daily_budget": "150", "total_budget": "3000",
        "pricing-0-goal_id": first.goal_ids[0], "pricing-0-pays_model": "cpa",
        "pricing-0-pays_amount": "30", "pricing-0-earns_model": "cpa",
        "pricing-0-earns_amount": "20", "targeting-0-field": "country",
        "targeting-0-values": "US, CA", "landing_pages-0-key": "winter",
        "landing_pages-0-url": "https://shop.northwind.example/winter?clid={click_id}",
        "landing_pages-0-weight": "3", "landing_pages-1-key": "winter-b",
        "landing_pages-1-url": "https://shop.northwind.example/winter-b", "landing_pages-1-weight": "1",
        "creatives-0-key": "banner", "creatives-0-url": "https://cdn.northwind.example/b.png",
        "creatives-0-weight": "2", "attribution_window_days": "30", "hold_days": "0",
        "billing_attribution": "last_click",
    }  # fmt: skip
    form.update(overrides)
    return form


def test_a_new_campaign_is_saved_with_every_part_of_the_editor(
    fresh_world: World, client_for: ClientFactory
) -> None:
    client = client_for(fresh_world, fresh_world.owner)
    token = csrf_of(client.get("/dashboard/campaigns/new").text)
    response = client.post("/dashboard/campaigns/new", data=_new_campaign_form(fresh_world, token))
    assert response.status_code == 303, response.text[:2000]
    campaign_id = response.headers["location"].split("/")[-1].split("?")[0]
    stored = catalog.get_object(fresh_world.container, _owner(fresh_world), CAMPAIGNS, campaign_id)
    spec = stored.spec
    assert spec.name == "Winter tents" and spec.status.value == "active"
    assert str(spec.daily_budget) == "150" and str(spec.total_budget) == "3000"
    assert [(p.key, p.weight) for p in spec.landing_pages] == [("winter", 3), ("winter-b", 1)]
    assert [(c.key, c.weight) for c in spec.creatives] == [("banner", 2)]
    assert spec.targeting[0].values == ("US", "CA")
    assert (spec.pricing[0].pays.amount, spec.pricing[0].earns.amount) == (30, 20)
    page = client.get(response.headers["location"])
    assert "Campaign created." in page.text
    assert "/postback?token=" in page.text  # the instructions carry the advertiser's token


def test_an_invalid_campaign_keeps_every_input_and_marks_the_fields(
    fresh_world: World, client_for: ClientFactory
) -> None:
    client = client_for(fresh_world, fresh_world.owner)
    token = csrf_of(client.get("/dashboard/campaigns/new").text)
    form = _new_campaign_form(
        fresh_world, token, daily_budget="lots", **{"landing_pages-1-url": "ftp://nope"}
    )
    response = client.post("/dashboard/campaigns/new", data=form)
    assert response.status_code == 422
    html = response.text
    assert 'value="lots"' in html and 'value="Winter tents"' in html
    assert 'value="ftp://nope"' in html  # the bad row is shown again as typed
    assert 'value="US, CA"' in html
    assert re.search(r'id="error-landing_pages">row 2: url', html)
    assert 'aria-invalid="true" aria-describedby="error-landing_pages"' in html
    # Nothing was stored.
    names = [
        r.spec.name
        for r in catalog.list_objects(
            fresh_world.container, _owner(fresh_world), CAMPAIGNS, limit=50
        ).items
    ]
    assert "Winter tents" not in names
    fixed = client.post(
        "/dashboard/campaigns/new",
        data={**form, "landing_pages-1-url": "https://x.example/b"},
    )
    assert fixed.status_code == 422  # the budget is still wrong, and says so
    assert re.search(r'id="error-daily_budget">daily_budget', fixed.text)


def test_a_campaign_error_from_the_store_lands_on_its_field(
    fresh_world: World, client_for: ClientFactory
) -> None:
    client = client_for(fresh_world, fresh_world.owner)
    token = csrf_of(client.get("/dashboard/campaigns/new").text)
    lumen_offer = fresh_world.demo.campaigns[5].spec.offer_id  # another advertiser's offer
    response = client.post(
        "/dashboard/campaigns/new",
        data=_new_campaign_form(fresh_world, token, offer_id=lumen_offer),
    )
    assert response.status_code == 422
    assert re.search(r'id="error-offer_id">offer .* belongs to advertiser', response.text)


def test_a_link_is_created_from_the_campaign_page(
    fresh_world: World, client_for: ClientFactory
) -> None:
    client = client_for(fresh_world, fresh_world.owner)
    campaign = fresh_world.demo.campaigns[1]
    page = client.get(f"/dashboard/campaigns/{campaign.id}").text
    publisher = fresh_world.demo.links[0].spec.publisher_id
    missing = client.post(
        f"/dashboard/campaigns/{campaign.id}/links",
        data={"csrf_token": csrf_of(page), "publisher_id": "", "sub1": "kept-sub"},
    )
    assert missing.status_code == 422
    assert 'value="kept-sub"' in missing.text and 'id="error-publisher_id"' in missing.text
    created = client.post(
        f"/dashboard/campaigns/{campaign.id}/links",
        data={"csrf_token": csrf_of(page), "publisher_id": publisher, "utm_source": "newsletter"},
    )
    assert created.status_code == 303
    links = catalog.list_objects(
        fresh_world.container, _owner(fresh_world), LINKS, filters={"campaign_id": campaign.id}
    ).items
    new = next(link for link in links if link.spec.utm_source == "newsletter")
    shown = client.get(created.headers["location"]).text
    assert f"http://127.0.0.1:8000/c/{new.spec.slug}" in shown
    assert f'data-copy="link-{new.id}"' in shown


def test_the_status_toggle_pauses_and_returns_the_cell(
    fresh_world: World, client_for: ClientFactory
) -> None:
    client = client_for(fresh_world, fresh_world.owner)
    campaign = fresh_world.demo.campaigns[2]
    token = csrf_of(client.get("/dashboard/campaigns").text)
    response = client.post(
        f"/dashboard/campaigns/{campaign.id}/status",
        data={"status": "paused"},
        headers={"X-CSRF-Token": token, "HX-Request": "true"},
    )
    assert response.status_code == 200
    assert response.text.lstrip().startswith(f'<td id="status-{campaign.id}"')
    assert "status-paused" in response.text and ">Activate<" in response.text
    stored = catalog.get_object(fresh_world.container, _owner(fresh_world), CAMPAIGNS, campaign.id)
    assert stored.spec.status.value == "paused"
    illegal = client.post(
        f"/dashboard/campaigns/{campaign.id}/status",
        data={"status": "draft"},
        headers={"X-CSRF-Token": token, "HX-Request": "true"},
    )
    assert illegal.status_code == 409  # paused cannot go back to draft
    assert illegal.headers["HX-Retarget"] == "#flash"


def test_an_analyst_reads_but_cannot_change(world: World, client_for: ClientFactory) -> None:
    from perfmark.dashboard.users import create_user
    from perfmark.domain.accounts import UserSpec

    email = "analyst@demo.perfmark.dev"
    if email not in world.passwords:
        create_user(
            world.container, _owner(world), UserSpec(email, "Ana", Role.ANALYST), "analyst pass 1"
        )
        world.passwords[email] = "analyst pass 1"
    client = client_for(world, email)
    page = client.get(f"/dashboard/campaigns/{world.facts.northwind_campaign}")
    assert page.status_code == 200
    assert "<fieldset disabled>" in page.text and "ADVERTISER_TOKEN" in page.text
    refused = client.post(
        f"/dashboard/campaigns/{world.facts.northwind_campaign}/status",
        data={"status": "paused", "csrf_token": csrf_of(page.text)},
    )
    assert refused.status_code == 403


def test_settings_create_a_key_once_and_add_a_member(
    fresh_world: World, client_for: ClientFactory
) -> None:
    client = client_for(fresh_world, fresh_world.owner)
    token = csrf_of(client.get("/dashboard/settings").text)
    created = client.post(
        "/dashboard/settings/keys", data={"csrf_token": token, "name": "ci", "role": "analyst"}
    )
    assert created.status_code == 200
    secret = re.search(r'id="new-key" value="(pmk_[^"]+)"', created.text)
    assert secret
    assert (
        client.get(
            "/api/dashboard/overview", headers={"Authorization": f"Bearer {secret.group(1)}"}
        ).status_code
        == 200
    )
    assert secret.group(1) not in client.get("/dashboard/settings").text  # shown once
    short = client.post(
        "/dashboard/settings/team",
        data={"csrf_token": token, "email": "new@demo.perfmark.dev", "name": "New Person",
              "role": "analyst", "password": "short"},
    )  # fmt: skip
    assert short.status_code == 422
    assert 'value="new@demo.perfmark.dev"' in short.text and 'id="error-password"' in short.text
    added = client.post(
        "/dashboard/settings/team",
        data={"csrf_token": token, "email": "new@demo.perfmark.dev", "name": "New Person",
              "role": "analyst", "password": "long enough pass"},
    )  # fmt: skip
    assert added.status_code == 303
    fresh_world.passwords["new@demo.perfmark.dev"] = "long enough pass"
    assert client_for(fresh_world, "new@demo.perfmark.dev").get("/dashboard/").status_code == 200


def test_a_publisher_sets_its_own_postback_url(
    fresh_world: World, client_for: ClientFactory
) -> None:
    client = client_for(fresh_world, fresh_world.publisher)
    page = client.get("/dashboard/settings")
    assert page.status_code == 200 and "Signing secret" in page.text
    bad = client.post(
        "/dashboard/settings/postback",
        data={"csrf_token": csrf_of(page.text),
              "postback_url_template": "https://pb.example/x?c={nope}"},
    )  # fmt: skip
    assert bad.status_code == 422
    assert 'value="https://pb.example/x?c={nope}"' in bad.text and "unknown macro" in bad.text
    good = client.post(
        "/dashboard/settings/postback",
        data={"csrf_token": csrf_of(page.text),
              "postback_url_template": "https://pb.example/x?c={click_id}"},
    )  # fmt: skip
    assert good.status_code == 303
    assert 'value="https://pb.example/x?c={click_id}"' in client.get("/dashboard/settings").text
