"""Fixtures: a demo workspace with dashboard users and a known lake, served in-process."""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi import FastAPI

from perfmark.clock import FixedClock
from perfmark.dashboard import install_dashboard
from perfmark.dashboard.cache import clear_report_cache
from perfmark.dashboard.demo import seed_dashboard_users
from perfmark.services.container import Container, build_container
from perfmark.services.demo import DemoWorkspace, seed_demo
from perfmark.settings import load_settings
from perfmark.web.app import create_app

from .world import LakeFacts, write_known_lake

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient

BASE_URL = "http://127.0.0.1:8000"


@dataclass
class World:
    """Everything a dashboard test needs: store, demo objects, users, the app and the lake."""

    container: Container
    clock: FixedClock
    demo: DemoWorkspace
    passwords: dict[str, str]
    app: FastAPI
    facts: LakeFacts
    home: Path

    @property
    def owner(self) -> str:
        return "owner@demo.perfmark.dev"

    @property
    def advertiser(self) -> str:
        return "advertiser@demo.perfmark.dev"

    @property
    def publisher(self) -> str:
        return "publisher@demo.perfmark.dev"


def build_world(home: Path) -> World:
    """Seed a demo, its dashboard users and the known lake; build the app around it."""
    clock = FixedClock()
    container = build_container(load_settings({"PERFMARK_HOME": str(home)}), clock=clock)
    demo = seed_demo(container)
    passwords = {
        email: password for email, password, _role in seed_dashboard_users(container, demo)
    }
    facts = write_known_lake(container, demo)
    app = create_app(container)
    install_dashboard(app)
    clear_report_cache()
    return World(container, clock, demo, passwords, app, facts, home)


def close_world(target: World) -> None:
    """Stop the app's config cache and log writer (no lifespan runs: clients share the app)."""
    for close in target.app.state.closers:
        close()
    target.container.engine.dispose()


@pytest.fixture(scope="package")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """One world for the read-only tests of this package (seeding and hashing cost seconds)."""
    built = build_world(tmp_path_factory.mktemp("dashboard_world"))
    yield built
    close_world(built)


@pytest.fixture
def fresh_world(tmp_path: Path) -> Iterator[World]:
    """A world of its own, for tests that change data or move the clock."""
    built = build_world(tmp_path / "home")
    yield built
    close_world(built)


def csrf_of(html: str) -> str:
    """The CSRF token a page's forms carry."""
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no CSRF token on the page"
    return found.group(1)


def sign_in(client: TestClient, email: str, password: str, next_path: str = "") -> str:
    """Sign in through the form; returns where the server sent the browser."""
    page = client.get("/dashboard/sign-in", params={"next": next_path} if next_path else None)
    assert page.status_code == 200, page.text
    response = client.post(
        "/dashboard/sign-in",
        data={"email": email, "password": password, "csrf_token": csrf_of(page.text),
              "next": next_path},
    )  # fmt: skip
    assert response.status_code == 303, response.text
    return str(response.headers["location"])


ClientFactory = Callable[[World, str | None], TestClient]


@pytest.fixture
def client_for() -> Iterator[ClientFactory]:
    """Clients on a world's app, signed in as the given email (or not signed in).

    The lifespan is not run (several clients share one app); `close_world` does its work.
    """

    def make(target: World, email: str | None) -> TestClient:
        client = TestClient(target.app, base_url=BASE_URL, follow_redirects=False)
        if email is not None:
            sign_in(client, email, target.passwords[email])
        return client

    yield make
