"""The one error renderer: every failure becomes `{"error": {...}}` with a 4xx, or a bare 500."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from perfmark.errors import PerfmarkError, error_body

__all__ = ["install_error_handlers", "render_error"]

logger = logging.getLogger("perfmark.web")

_STATUS_CODES = {
    400: "malformed_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
}


MALFORMED_JSON_MESSAGE = (
    "the body is not valid JSON; send a JSON object with Content-Type: application/json"
)
#: What FastAPI says when it cannot parse a body (e.g. JSON nested too deep to decode).
_FASTAPI_PARSE_FAILURE = "There was an error parsing the body"


def _encodable(text: str) -> str:
    # A message may quote the caller's input; unpaired surrogates would break UTF-8 encoding.
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _error_response(
    code: str,
    message: str,
    field: str | None,
    status: int,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body = error_body(code, _encodable(message), None if field is None else _encodable(field))
    return JSONResponse(body, status_code=status, headers=headers)


def render_error(error: PerfmarkError) -> JSONResponse:
    """The JSON response for a safe error."""
    headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
    return _error_response(error.code, error.message, error.field, error.status, headers)


def _validation_response(exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
    location = [str(part) for part in first.get("loc", ())]
    where = location[0] if location else "body"
    path = ".".join(location[1:]) or where
    kind = first.get("type", "")
    value = first.get("input")
    if kind == "json_invalid":
        return _error_response("malformed_request", MALFORMED_JSON_MESSAGE, None, 400)
    if where == "body" and isinstance(value, bytes):
        # FastAPI hands over the raw bytes when the Content-Type is not JSON.
        return _error_response(
            "unsupported_media_type",
            "the body must be a JSON object sent with Content-Type: application/json",
            None,
            415,
        )
    shown = type(value).__name__ if isinstance(value, dict | list) else repr(value)[:100]
    if kind == "missing":
        message = f"{path} is required ({where})"
    elif kind == "extra_forbidden":
        message = f"{path} is not a known field; remove it (see /api/docs for the fields)"
    else:
        message = f"{path} is {shown}: {first.get('msg', 'invalid')}"
    return _error_response("validation_error", message, path, 422)


_PROBED_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route accepts on this path (Starlette names only the first route's)."""
    allowed = []
    for method in _PROBED_METHODS:
        scope = {**request.scope, "method": method}
        if any(route.matches(scope)[0] is Match.FULL for route in request.app.router.routes):
            allowed.append(method)
    return allowed


def install_error_handlers(app: FastAPI) -> None:
    """Route every exception through the one renderer."""

    @app.exception_handler(PerfmarkError)
    async def _safe(_request: Request, exc: PerfmarkError) -> JSONResponse:
        return render_error(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return _validation_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(exc.status_code, "error")
        message = str(exc.detail) if exc.detail else code.replace("_", " ")
        if exc.status_code == 404 and exc.detail == "Not Found":
            message = f"no endpoint at {request.url.path}; see /api/docs for the API"
        elif exc.status_code == 405:
            allowed = _allowed_methods(request)
            headers = {**(exc.headers or {}), "Allow": ", ".join(allowed)}
            message = (
                f"{request.method} is not allowed on {request.url.path}; "
                f"use {' or '.join(allowed) or 'another method'}"
            )
            return _error_response(code, message, None, 405, headers)
        elif exc.status_code == 400 and exc.detail == _FASTAPI_PARSE_FAILURE:
            message = MALFORMED_JSON_MESSAGE
        return _error_response(code, message, None, exc.status_code, exc.headers)

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("internal error on %s %s", request.method, request.url.path)
        return _error_response(
            "internal_error", "something went wrong on our side; it has been logged", None, 500
        )
