"""Sign-in, sessions, CSRF and which role may open which page (in-process, real store)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from perfmark.adapters.store.kinds import USERS
from perfmark.dashboard.users import set_password
from perfmark.domain.accounts import Role
from perfmark.services import catalog
from perfmark.services.container import Principal

from .conftest import ClientFactory, World, csrf_of, sign_in

OWNER_PAGES = (
    "/dashboard/", "/dashboard/campaigns", "/dashboard/campaigns/new", "/dashboard/reports",
    "/dashboard/attribution", "/dashboard/conversions", "/dashboard/publishers",
    "/dashboard/advertisers", "/dashboard/settings", "/dashboard/overview/live",
)  # fmt: skip
#: (page, status) for each portal role and the analyst.
ROLE_PAGES = {
    "advertiser": {
        "/dashboard/": 200, "/dashboard/campaigns": 200, "/dashboard/reports": 200,
        "/dashboard/conversions": 200, "/dashboard/advertisers": 200,
        "/dashboard/attribution": 403, "/dashboard/publishers": 403, "/dashboard/settings": 403,
        "/dashboard/links": 403, "/dashboard/campaigns/new": 403,
    },
    "publisher": {
        "/dashboard/": 200, "/dashboard/links": 200, "/dashboard/reports": 200,
        "/dashboard/publishers": 200, "/dashboard/settings": 200,
        "/dashboard/campaigns": 403, "/dashboard/conversions": 403, "/dashboard/attribution": 403,
        "/dashboard/advertisers": 403,
    },
}  # fmt: skip


def test_every_page_answers_200_for_the_owner(world: World, client_for: ClientFactory) -> None:
    client = client_for(world, world.owner)
    campaign = world.facts.northwind_campaign
    for path in (*OWNER_PAGES, f"/dashboard/campaigns/{campaign}"):
        response = client.get(path)
        assert response.status_code == 200, (path, response.text[:500])
        assert response.headers["content-type"].startswith("text/html")
        assert "Traceback" not in response.text


@pytest.mark.parametrize("role", sorted(ROLE_PAGES))
def test_portal_roles_open_their_pages_and_are_refused_the_rest(
    world: World, client_for: ClientFactory, role: str
) -> None:
    client = client_for(world, getattr(world, role))
    for path, status in ROLE_PAGES[role].items():
        response = client.get(path)
        assert response.status_code == status, (role, path, response.text[:300])


def test_an_advertiser_gets_404_for_another_advertisers_campaign(
    world: World, client_for: ClientFactory
) -> None:
    client = client_for(world, world.advertiser)
    assert client.get(f"/dashboard/campaigns/{world.facts.northwind_campaign}").status_code == 200
    other = client.get(f"/dashboard/campaigns/{world.facts.lumen_campaign}")
    assert other.status_code == 404
    assert world.facts.lumen_campaign in other.text  # the message names what was asked for


def test_without_a_session_pages_redirect_to_sign_in_and_back(
    world: World, client_for: ClientFactory
) -> None:
    client = client_for(world, None)
    response = client.get("/dashboard/reports?by=day")
    assert response.status_code == 303
    location = urlsplit(response.headers["location"])
    assert location.path == "/dashboard/sign-in"
    query = parse_qs(location.query)
    assert query["next"] == ["/dashboard/reports?by=day"]
    assert "expired" not in query  # never signed in: nothing expired
    back = sign_in(client, world.owner, world.passwords[world.owner], query["next"][0])
    assert back == "/dashboard/reports?by=day"
    assert client.get(back).status_code == 200


def test_the_root_opens_the_dashboard(world: World, client_for: ClientFactory) -> None:
    response = client_for(world, None).get("/")
    assert response.status_code == 302
    assert response.headers["location"] == "/dashboard/"


@pytest.mark.parametrize(
    "target", ["https://evil.example/x", "//evil.example/x", "/\\evil.example", "/api/apikeys"]
)
def test_sign_in_never_returns_to_another_site(
    world: World, client_for: ClientFactory, target: str
) -> None:
    client = client_for(world, None)
    assert sign_in(client, world.owner, world.passwords[world.owner], target) == "/dashboard/"


def test_a_wrong_password_is_refused_and_keeps_the_email(
    world: World, client_for: ClientFactory
) -> None:
    client = client_for(world, None)
    page = client.get("/dashboard/sign-in")
    response = client.post(
        "/dashboard/sign-in",
        data={
            "email": world.owner,
            "password": "wrong password!",
            "csrf_token": csrf_of(page.text),
        },
    )
    assert response.status_code == 401
    assert f'value="{world.owner}"' in response.text
    assert "wrong password!" not in response.text  # the password is never echoed
    assert "pm_session" not in response.cookies


def test_the_session_cookie_is_httponly_and_lax(world: World, client_for: ClientFactory) -> None:
    client = client_for(world, None)
    page = client.get("/dashboard/sign-in")
    response = client.post(
        "/dashboard/sign-in",
        data={"email": world.owner, "password": world.passwords[world.owner],
              "csrf_token": csrf_of(page.text)},
    )  # fmt: skip
    header = next(
        value
        for value in response.headers.get_list("set-cookie")
        if value.startswith("pm_session=")
    )
    attributes = {part.strip().split("=")[0].lower() for part in header.split(";")}
    assert {"httponly", "path", "max-age"} <= attributes
    assert "samesite=lax" in header.lower()
    assert "secure" not in attributes  # base_url is http here
    assert response.headers["content-security-policy"].startswith("default-src 'self'")


def test_posts_without_the_csrf_token_are_refused(world: World, client_for: ClientFactory) -> None:
    client = client_for(world, world.owner)
    campaign = world.facts.lumen_campaign
    for data in ({"status": "paused"}, {"status": "paused", "csrf_token": "forged"}):
        response = client.post(f"/dashboard/campaigns/{campaign}/status", data=data)
        assert response.status_code == 403
        assert "Reload the page" in response.text
    token = csrf_of(client.get("/dashboard/campaigns").text)
    # HTMX sends the token as a header; a wrong header is refused as well.
    forged = client.post(
        f"/dashboard/campaigns/{campaign}/status",
        data={"status": "paused"},
        headers={"X-CSRF-Token": token[::-1], "HX-Request": "true"},
    )
    assert forged.status_code == 403
    assert forged.headers["HX-Retarget"] == "#flash"


def test_sign_in_itself_needs_the_form_token(world: World, client_for: ClientFactory) -> None:
    client = client_for(world, None)
    response = client.post(
        "/dashboard/sign-in",
        data={"email": world.owner, "password": world.passwords[world.owner], "csrf_token": "x"},
    )
    assert response.status_code == 403


def test_an_expired_session_asks_to_sign_in_and_returns_to_the_page(
    fresh_world: World, client_for: ClientFactory
) -> None:
    client = client_for(fresh_world, fresh_world.owner)
    assert client.get("/dashboard/conversions").status_code == 200
    fresh_world.clock.advance(hours=9)  # past the 8-hour idle timeout
    response = client.get("/dashboard/conversions?status=pending")
    assert response.status_code == 303
    query = parse_qs(urlsplit(response.headers["location"]).query)
    assert query == {"next": ["/dashboard/conversions?status=pending"], "expired": ["1"]}
    notice = client.get(response.headers["location"])
    assert "Your session has ended" in notice.text
    back = sign_in(client, fresh_world.owner, fresh_world.passwords[fresh_world.owner],
                   query["next"][0])  # fmt: skip
    assert back == "/dashboard/conversions?status=pending"
    assert client.get(back).status_code == 200


def test_an_htmx_request_without_a_session_gets_a_full_page_redirect(
    world: World, client_for: ClientFactory
) -> None:
    response = client_for(world, None).get(
        "/dashboard/overview/live",
        headers={"HX-Request": "true", "HX-Current-URL": "http://127.0.0.1:8000/dashboard/"},
    )
    assert response.status_code == 401
    assert response.headers["HX-Redirect"].startswith("/dashboard/sign-in?next=/dashboard/")


def test_sign_out_ends_the_session_at_once(fresh_world: World, client_for: ClientFactory) -> None:
    client = client_for(fresh_world, fresh_world.owner)
    stolen = client.cookies.get("pm_session")
    token = csrf_of(client.get("/dashboard/").text)
    assert client.post("/dashboard/sign-out", data={"csrf_token": token}).status_code == 303
    replay = client_for(fresh_world, None)
    replay.cookies.set("pm_session", str(stolen))
    assert replay.get("/dashboard/").status_code == 303


def test_a_password_change_signs_the_user_out(
    fresh_world: World, client_for: ClientFactory
) -> None:
    client = client_for(fresh_world, fresh_world.advertiser)
    assert client.get("/dashboard/").status_code == 200
    owner = Principal(fresh_world.demo.workspace_id, Role.OWNER, actor_id="test")
    found = catalog.list_objects(
        fresh_world.container, owner, USERS, filters={"email": fresh_world.advertiser}
    )
    set_password(fresh_world.container, owner, found.items[0].id, "a new long password")
    assert client.get("/dashboard/").status_code == 303
