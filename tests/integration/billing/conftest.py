"""Fixtures of the billing integration tests: the rig on SQLite, or on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from perfmark.clock import FixedClock

from .helpers import Rig, make_rig


@pytest.fixture
def rig(request: pytest.FixtureRequest, tmp_path: Path, clock: FixedClock) -> Iterator[Rig]:
    """The rig on SQLite, or on PostgreSQL for tests parametrized with BOTH_STORES."""
    url = None
    if getattr(request, "param", "sqlite") == "postgres":
        url = request.getfixturevalue("postgres_url")
    built = make_rig(tmp_path, clock, url)
    yield built
    built.wal.close()
    built.container.engine.dispose()
