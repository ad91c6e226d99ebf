"""Pydantic request and response models derived from the domain's spec dataclasses.

The spec dataclasses are the single definition of each object's fields; these models only
add what HTTP needs (ids and timestamps on output, everything optional for PATCH, unknown
fields refused) so the OpenAPI spec and the domain cannot drift apart.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any, get_type_hints

from pydantic import BaseModel, ConfigDict, Field, create_model

__all__ = [
    "ErrorBody",
    "InvalidObject",
    "create_model_for",
    "list_model_for",
    "output_model_for",
    "patch_model_for",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorDetail(BaseModel):
    """What went wrong, where, and where to read more."""

    code: str
    message: str
    field: str | None = None
    docs: str


class ErrorBody(BaseModel):
    """The one error shape of every perfmark endpoint."""

    error: ErrorDetail


def _fields(spec_type: type[Any]) -> list[tuple[str, Any, Any]]:
    hints = get_type_hints(spec_type)
    result = []
    for item in dataclasses.fields(spec_type):
        if item.default is not dataclasses.MISSING:
            default: Any = item.default
        elif item.default_factory is not dataclasses.MISSING:
            default = Field(default_factory=item.default_factory)
        else:
            default = ...
        result.append((item.name, hints[item.name], default))
    return result


def create_model_for(spec_type: type[Any], name: str) -> type[BaseModel]:
    """The body of a create request: the spec's fields, unknown fields refused."""
    fields: dict[str, Any] = {n: (t, d) for n, t, d in _fields(spec_type)}
    return create_model(f"{name}Create", __base__=_Strict, **fields)


def patch_model_for(spec_type: type[Any], name: str) -> type[BaseModel]:
    """The body of a PATCH: any subset of the spec's fields."""
    fields: dict[str, Any] = {n: (t | None, None) for n, t, _ in _fields(spec_type)}
    return create_model(f"{name}Update", __base__=_Strict, **fields)


def output_model_for(
    spec_type: type[Any], name: str, extra: tuple[tuple[str, Any], ...] = ()
) -> type[BaseModel]:
    """A stored object as returned: id, ownership, timestamps, version and the spec's fields."""
    fields: dict[str, Any] = {
        "id": (str, ...),
        "workspace_id": (str, ...),
        "created_at": (datetime, ...),
        "updated_at": (datetime, ...),
        "archived_at": (datetime | None, None),
        "version": (int, ...),
    }
    fields.update({n: (t, ...) for n, t, _ in _fields(spec_type)})
    fields.update({n: (t, ...) for n, t in extra})
    return create_model(name, **fields)


class InvalidObject(BaseModel):
    """An object a list left out: its stored data no longer passes validation."""

    id: str
    code: str = "stored_object_invalid"
    message: str
    field: str | None = None


def list_model_for(item_model: type[BaseModel]) -> type[BaseModel]:
    """A page of objects, the cursor of the next page, and the objects left out as invalid."""
    fields: dict[str, Any] = {
        "data": (list[item_model], ...),  # type: ignore[valid-type]
        "next_cursor": (str | None, None),
        "invalid": (list[InvalidObject], []),
    }
    return create_model(f"{item_model.__name__}List", **fields)
