"""A stored object: its spec (what the user set) plus identity, ownership and timestamps."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

__all__ = ["InvalidRecord", "Page", "Record"]

SpecT = TypeVar("SpecT")
ItemT = TypeVar("ItemT")


@dataclass(frozen=True)
class Record(Generic[SpecT]):
    """One object of one workspace; `version` rises by one on every update."""

    id: str
    workspace_id: str
    spec: SpecT
    created_at: datetime
    updated_at: datetime
    archived_at: datetime | None = None
    version: int = 1

    @property
    def archived(self) -> bool:
        """Whether the object was archived (kept for history, hidden from default lists)."""
        return self.archived_at is not None


@dataclass(frozen=True)
class InvalidRecord:
    """An object a list left out because its stored data no longer passes validation."""

    id: str
    message: str  #: names the field and the rule, and how to repair it
    field: str | None


@dataclass(frozen=True)
class Page(Generic[ItemT]):
    """One page of a list, with the cursor that fetches the next one (None at the end)."""

    items: tuple[ItemT, ...]
    next_cursor: str | None
    #: Objects of this page left out of `items` (their stored data no longer validates).
    invalid: tuple[InvalidRecord, ...] = ()
