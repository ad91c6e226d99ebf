"""The error hierarchy: one code and HTTP status per class, one JSON shape with a docs link."""

from __future__ import annotations

import pytest

import perfmark.errors as errors_module
from perfmark.errors import (
    DOCS_BASE,
    AuthenticationError,
    ConflictError,
    ForbiddenError,
    IllegalTransitionError,
    MalformedRequestError,
    NotFoundError,
    PayloadTooLargeError,
    PerfmarkError,
    RateLimitedError,
    StoredObjectInvalidError,
    ValidationError,
    error_body,
)
from perfmark.settings import SettingsError

#: The contract, written out independently of the classes it checks.
EXPECTED = {
    ValidationError: ("validation_error", 422),
    MalformedRequestError: ("malformed_request", 400),
    PayloadTooLargeError: ("payload_too_large", 413),
    AuthenticationError: ("unauthenticated", 401),
    ForbiddenError: ("forbidden", 403),
    NotFoundError: ("not_found", 404),
    ConflictError: ("conflict", 409),
    IllegalTransitionError: ("illegal_transition", 409),
    StoredObjectInvalidError: ("stored_object_invalid", 409),
    RateLimitedError: ("rate_limited", 429),
    SettingsError: ("invalid_setting", 422),
}


@pytest.mark.parametrize(("cls", "expected"), EXPECTED.items(), ids=lambda x: str(x))
def test_each_error_class_has_its_code_and_status(
    cls: type[PerfmarkError], expected: tuple[str, int]
) -> None:
    assert (cls.code, cls.status) == expected
    assert issubclass(cls, PerfmarkError)


def test_every_exported_error_class_is_covered() -> None:
    exported = {
        getattr(errors_module, name)
        for name in errors_module.__all__
        if isinstance(getattr(errors_module, name), type)
        and issubclass(getattr(errors_module, name), PerfmarkError)
        and getattr(errors_module, name) is not PerfmarkError
    }
    assert exported <= set(EXPECTED)
    assert len({cls.code for cls in EXPECTED if cls is not SettingsError}) == len(exported)


@pytest.mark.parametrize("cls", list(EXPECTED), ids=lambda c: c.__name__)
def test_body_shape_is_the_one_json_error_shape(cls: type[PerfmarkError]) -> None:
    error = cls("budget is -1; it must be at least 0", field="daily_budget")
    assert error.to_body() == {
        "error": {
            "code": cls.code,
            "message": "budget is -1; it must be at least 0",
            "field": "daily_budget",
            "docs": DOCS_BASE + cls.code,
        }
    }


def test_field_defaults_to_none_and_message_is_the_exception_text() -> None:
    error = NotFoundError("no campaign cmp_x in this workspace")
    assert error.field is None
    assert error.message == str(error) == "no campaign cmp_x in this workspace"
    assert error.to_body()["error"]["field"] is None


def test_error_body_for_codes_without_a_class() -> None:
    assert error_body("internal_error", "something went wrong") == {
        "error": {
            "code": "internal_error",
            "message": "something went wrong",
            "field": None,
            "docs": "https://perfmark.dev/docs/errors#internal_error",
        }
    }


def test_errors_are_exceptions_that_can_be_caught_by_base_class() -> None:
    with pytest.raises(PerfmarkError) as caught:
        raise IllegalTransitionError("ended is final", field="status")
    assert caught.value.status == 409
    assert caught.value.field == "status"


def test_validation_errors_are_not_value_errors() -> None:
    # A stray ValueError from a library must not pass for a safe, user-facing error.
    assert not issubclass(ValidationError, ValueError)
