"""Fixtures for the management API: the app in-process with an owner key, and seeded objects."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI

from perfmark.domain.accounts import WorkspaceSpec
from perfmark.services.accounts import NewWorkspace, create_workspace
from perfmark.services.container import Container, build_container
from perfmark.settings import load_settings
from perfmark.web.app import create_app

from .helpers import bearer, seed_graph

with warnings.catch_warnings():
    # Starlette asks for its httpx fork; plain httpx still works and is what is installed.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient


@pytest.fixture(scope="session")
def shared_app(tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    """One app for the session: building the routes costs about half a second each time."""
    home = tmp_path_factory.mktemp("shared_app_home")
    return create_app(build_container(load_settings({"PERFMARK_HOME": str(home)})))


@pytest.fixture
def app(shared_app: FastAPI, container: Container) -> FastAPI:
    """The shared app, pointed at this test's container (routes read it from app.state)."""
    shared_app.state.container = container
    return shared_app


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    """A client on the app with no credentials."""
    with TestClient(app, base_url="http://testserver") as test_client:
        yield test_client


@pytest.fixture
def api(client: TestClient, workspace: NewWorkspace) -> TestClient:
    """A client that sends the workspace owner's key on every request."""
    client.headers.update(bearer(workspace.api_key.secret))
    return client


@pytest.fixture
def other_workspace(container: Container) -> NewWorkspace:
    """A second tenant on the same install."""
    return create_workspace(container, WorkspaceSpec(name="Other"), "other@example.com")


@pytest.fixture
def other_api(app: FastAPI, other_workspace: NewWorkspace) -> Iterator[TestClient]:
    """A client with the second workspace's owner key."""
    with TestClient(app, headers=bearer(other_workspace.api_key.secret)) as test_client:
        yield test_client


@pytest.fixture
def graph(api: TestClient) -> dict[str, dict[str, Any]]:
    """One of each object in the owner's workspace."""
    return seed_graph(api)
