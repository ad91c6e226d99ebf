"""Fixtures for report tests: a workspace billed in EUR whose lake holds the standard dataset."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ibis
import pytest

from perfmark.domain.accounts import WorkspaceSpec
from perfmark.reports.domain.request import parse_report_request
from perfmark.reports.query import LakeQuery
from perfmark.reports.service import ReportResult, run_report
from perfmark.services.accounts import NewWorkspace, create_workspace
from perfmark.services.container import Container
from perfmark.settings import lake_directory

from .lake_data import standard_events, write_events


@pytest.fixture(scope="session")
def duckdb_backend() -> Iterator[Any]:
    """One in-process DuckDB for the session's queries."""
    backend = ibis.duckdb.connect()
    yield backend
    backend.disconnect()


@pytest.fixture
def eur_workspace(container: Container) -> NewWorkspace:
    """A workspace whose reports are in EUR."""
    return create_workspace(container, WorkspaceSpec(name="Reports", currency="EUR"), "o@x.org")


@pytest.fixture
def lake(container: Container, eur_workspace: NewWorkspace) -> Path:
    """The container's lake, holding the standard dataset of `eur_workspace`."""
    path = lake_directory(container.settings)
    write_events(path, standard_events(eur_workspace.workspace.id))
    return path


@pytest.fixture
def query(lake: Path, duckdb_backend: Any) -> LakeQuery:
    """The query layer on DuckDB over `lake`."""
    return LakeQuery(lake, duckdb_backend, "duckdb")


class Reporter:
    """Runs reports of one workspace the way the API does, from keyword arguments."""

    def __init__(self, container: Container, workspace_id: str, query: LakeQuery) -> None:
        self.container = container
        self.workspace_id = workspace_id
        self.query = query

    def __call__(self, rates: Any = None, **arguments: Any) -> ReportResult:
        arguments.setdefault("start", "2026-01-14")
        arguments.setdefault("end", "2026-01-16")
        request = parse_report_request(self.workspace_id, **arguments)
        return run_report(self.container, request, rates=rates, query=self.query)


@pytest.fixture
def report(container: Container, eur_workspace: NewWorkspace, query: LakeQuery) -> Reporter:
    """Run a report over the standard dataset on DuckDB."""
    return Reporter(container, eur_workspace.workspace.id, query)
