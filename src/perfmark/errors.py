"""One error hierarchy: errors that are safe to show (code, status, message) vs internal ones.

Every `PerfmarkError` renders to the same JSON shape,
`{"error": {"code", "message", "field", "docs"}}`; anything else is an internal error and
renders as a generic 500 with no detail. Each code is documented in docs/errors.md (a test
checks).
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "AuthenticationError",
    "ConflictError",
    "DOCS_BASE",
    "ForbiddenError",
    "IllegalTransitionError",
    "MalformedRequestError",
    "NotFoundError",
    "PayloadTooLargeError",
    "PerfmarkError",
    "RateLimitedError",
    "StoredObjectInvalidError",
    "ValidationError",
    "error_body",
]

DOCS_BASE = "https://perfmark.dev/docs/errors#"


class PerfmarkError(Exception):
    """An error whose message is safe to show to the caller."""

    code: ClassVar[str] = "error"
    status: ClassVar[int] = 400

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def to_body(self) -> dict[str, Any]:
        """The JSON body that describes this error."""
        return error_body(self.code, self.message, self.field)


def error_body(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    """The one JSON error shape."""
    return {"error": {"code": code, "message": message, "field": field, "docs": DOCS_BASE + code}}


class ValidationError(PerfmarkError):
    """A value that breaks a rule; the message names the field, the value and what is allowed."""

    code = "validation_error"
    status = 422


class MalformedRequestError(PerfmarkError):
    """A request that cannot be parsed at all (bad JSON, wrong content type)."""

    code = "malformed_request"
    status = 400


class PayloadTooLargeError(PerfmarkError):
    """A body or parameter above the configured size limit."""

    code = "payload_too_large"
    status = 413


class AuthenticationError(PerfmarkError):
    """Missing or invalid credentials."""

    code = "unauthenticated"
    status = 401


class ForbiddenError(PerfmarkError):
    """Valid credentials whose role does not allow the action."""

    code = "forbidden"
    status = 403


class NotFoundError(PerfmarkError):
    """No such object in this workspace (another workspace's objects are not found either)."""

    code = "not_found"
    status = 404


class ConflictError(PerfmarkError):
    """The request conflicts with the current state (a duplicate slug, a reused key)."""

    code = "conflict"
    status = 409


class IllegalTransitionError(PerfmarkError):
    """A status change that the object's lifecycle does not allow."""

    code = "illegal_transition"
    status = 409


class StoredObjectInvalidError(PerfmarkError):
    """An object whose stored data no longer passes validation (stored before a rule it
    breaks existed, or edited in the database); a PATCH with valid values repairs it."""

    code = "stored_object_invalid"
    status = 409


class RateLimitedError(PerfmarkError):
    """Too many requests; retry later."""

    code = "rate_limited"
    status = 429
