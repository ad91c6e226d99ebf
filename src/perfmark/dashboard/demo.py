"""Dashboard users for the demo workspace: an owner, an advertiser user and a publisher user."""

from __future__ import annotations

import secrets

from perfmark.adapters.store.kinds import USERS
from perfmark.dashboard.users import create_user, set_password
from perfmark.domain.accounts import Role, UserSpec
from perfmark.errors import NotFoundError
from perfmark.services import catalog
from perfmark.services.container import Container, Principal
from perfmark.services.demo import DEMO_OWNER_EMAIL, DemoWorkspace

__all__ = ["DEMO_ADVERTISER_EMAIL", "DEMO_PUBLISHER_EMAIL", "seed_dashboard_users"]

DEMO_ADVERTISER_EMAIL = "advertiser@demo.perfmark.dev"
DEMO_PUBLISHER_EMAIL = "publisher@demo.perfmark.dev"
#: 12 random bytes: 16 URL-safe characters, printed once by `perfmark demo`.
DEMO_PASSWORD_BYTES = 12


def seed_dashboard_users(container: Container, demo: DemoWorkspace) -> list[tuple[str, str, str]]:
    """Give the demo's owner a password and add an advertiser user and a publisher user.

    The advertiser user sees the first campaign's advertiser, the publisher user the first
    link's publisher. Returns (email, password, role) for each; passwords are random and
    stored only as argon2 hashes, so this list is the one chance to show them.
    """
    owner = Principal(demo.workspace_id, Role.OWNER, actor_id="demo")
    found = catalog.list_objects(container, owner, USERS, filters={"email": DEMO_OWNER_EMAIL})
    if not found.items:
        raise NotFoundError(f"the demo workspace has no owner {DEMO_OWNER_EMAIL!r}")
    owner_password = secrets.token_urlsafe(DEMO_PASSWORD_BYTES)
    set_password(container, owner, found.items[0].id, owner_password)
    seeded = [(DEMO_OWNER_EMAIL, owner_password, Role.OWNER.value)]
    portal_users = (
        (
            DEMO_ADVERTISER_EMAIL,
            "Northwind buyer",
            Role.ADVERTISER,
            demo.campaigns[0].spec.advertiser_id,
            None,
        ),
        (
            DEMO_PUBLISHER_EMAIL,
            "SearchBuy partner",
            Role.PUBLISHER,
            None,
            demo.links[0].spec.publisher_id,
        ),
    )
    for email, name, role, advertiser_id, publisher_id in portal_users:
        password = secrets.token_urlsafe(DEMO_PASSWORD_BYTES)
        spec = UserSpec(email, name, role, advertiser_id=advertiser_id, publisher_id=publisher_id)
        create_user(container, owner, spec, password)
        seeded.append((email, password, role.value))
    return seeded
