"""Fixtures for the ingest steps: trackers over a real write-ahead log and a hand-built config."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from perfmark.adapters.wal import WalWriter
from perfmark.clock import FixedClock
from perfmark.services.tracking_config import ConfigSnapshot
from perfmark.settings import load_settings

from .helpers import Rig, RigFactory, snapshot


@pytest.fixture
def make_rig(tmp_path: Path) -> Iterator[RigFactory]:
    """Build a rig; keyword arguments are settings overrides."""
    made: list[Rig] = []

    def build(config: ConfigSnapshot | None = None, **overrides: Any) -> Rig:
        home = tmp_path / f"home{len(made)}"
        settings = load_settings({"PERFMARK_HOME": str(home)}, overrides)
        wal_dir = home / "wal"
        wal = WalWriter(wal_dir, "t0", fsync_interval_ms=1000)
        rig = Rig(settings, FixedClock(), wal_dir, config or snapshot(), wal)
        made.append(rig)
        return rig

    yield build
    for rig in made:
        rig.wal.close()


@pytest.fixture
def rig(make_rig: RigFactory) -> Rig:
    """A rig with default settings."""
    return make_rig()
