"""Records wrap a spec with identity and timestamps; pages carry a cursor."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from perfmark.domain.records import Page, Record

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_a_record_is_archived_only_when_archived_at_is_set() -> None:
    record = Record(id="cmp_1", workspace_id="ws_1", spec="spec", created_at=T0, updated_at=T0)
    assert not record.archived
    assert record.version == 1
    assert dataclasses.replace(record, archived_at=T0).archived


def test_records_and_pages_are_frozen() -> None:
    record = Record(id="cmp_1", workspace_id="ws_1", spec=1, created_at=T0, updated_at=T0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.version = 2  # type: ignore[misc]
    page = Page(items=(record,), next_cursor=None)
    assert page.items == (record,)
    with pytest.raises(dataclasses.FrozenInstanceError):
        page.next_cursor = "x"  # type: ignore[misc]
