"""Turn domain specs into JSON-safe dicts and back, with the domain's own validation re-run."""

from __future__ import annotations

from typing import Any, TypeVar, cast

from pydantic import TypeAdapter
from pydantic import ValidationError as PydanticValidationError

from perfmark.errors import ValidationError

__all__ = ["check_storable", "decode_spec", "encode_spec", "storable_text", "validation_error_from"]

SpecT = TypeVar("SpecT")


_ADAPTERS: dict[object, TypeAdapter[Any]] = {}


def _adapter(spec_type: Any) -> TypeAdapter[Any]:
    adapter = _ADAPTERS.get(spec_type)
    if adapter is None:
        adapter = _ADAPTERS[spec_type] = TypeAdapter(spec_type)
    return adapter


def storable_text(value: str) -> bool:
    """Whether both databases can keep `value`: no NUL (PostgreSQL), no lone surrogate (UTF-8)."""
    if "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_storable(data: Any, field: str = "") -> None:
    """Refuse any text in `data` (nested dicts and lists too) that the store cannot keep.

    JSON allows "\\u0000" and unpaired "\\ud800"; SQLite stores them but PostgreSQL and the
    UTF-8 encoder do not, so they are refused up front with the field named, not as a 500.
    """
    if isinstance(data, str):
        if not storable_text(data):
            # repr() escapes NUL and surrogates, so the message itself stays encodable.
            raise ValidationError(
                f"{field or 'body'} {data[:100]!r} contains a NUL character or an unpaired "
                "surrogate; send valid Unicode text without U+0000",
                field=field or None,
            )
    elif isinstance(data, dict):
        for key, value in data.items():
            check_storable(key, field)
            name = f"{field}.{key}" if field else str(key)
            check_storable(value, name)
    elif isinstance(data, list | tuple):
        for index, value in enumerate(data):
            check_storable(value, f"{field}.{index}" if field else str(index))


def encode_spec(spec: object) -> dict[str, Any]:
    """A JSON-safe dict of a spec dataclass (Decimals as strings, enums as values)."""
    return cast(dict[str, Any], _adapter(type(spec)).dump_python(spec, mode="json"))


def decode_spec(spec_type: type[SpecT], data: dict[str, Any]) -> SpecT:
    """Rebuild a spec dataclass from its dict, running its validation.

    Type errors (a number where text is expected, an unknown field) become perfmark
    ValidationErrors naming the field path, the value and the expected type.
    """
    check_storable(data)
    try:
        return cast(SpecT, _adapter(spec_type).validate_python(data))
    except PydanticValidationError as exc:
        raise validation_error_from(exc) from None


def validation_error_from(exc: PydanticValidationError) -> ValidationError:
    """The first problem pydantic found, as a perfmark ValidationError."""
    first = exc.errors(include_url=False)[0]
    path = ".".join(str(part) for part in first["loc"] if part != "body")
    value = first.get("input")
    shown = repr(value) if not isinstance(value, dict | list) else type(value).__name__
    message = first["msg"]
    if first["type"] == "missing":
        return ValidationError(f"{path} is required", field=path or None)
    return ValidationError(f"{path or 'body'} is {shown[:100]}: {message}", field=path or None)
