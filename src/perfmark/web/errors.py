"""The one error renderer: every failure becomes `{"error": {...}}` with a 4xx, or a bare 500."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

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


def render_error(error: PerfmarkError) -> JSONResponse:
    """The JSON response for a safe error."""
    headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
    return JSONResponse(error.to_body(), status_code=error.status, headers=headers)


def _validation_response(exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
    location = [str(part) for part in first.get("loc", ())]
    where = location[0] if location else "body"
    path = ".".join(location[1:]) or where
    kind = first.get("type", "")
    if kind == "json_invalid":
        return JSONResponse(
            error_body(
                "malformed_request",
                "the body is not valid JSON; send a JSON object with Content-Type: "
                "application/json",
            ),
            status_code=400,
        )
    value = first.get("input")
    shown = type(value).__name__ if isinstance(value, dict | list) else repr(value)[:100]
    if kind == "missing":
        message = f"{path} is required ({where})"
    elif kind == "extra_forbidden":
        message = f"{path} is not a known field; remove it (see /api/docs for the fields)"
    else:
        message = f"{path} is {shown}: {first.get('msg', 'invalid')}"
    return JSONResponse(error_body("validation_error", message, path), status_code=422)


def install_error_handlers(app: FastAPI) -> None:
    """Route every exception through the one renderer."""

    @app.exception_handler(PerfmarkError)
    async def _safe(_request: Request, exc: PerfmarkError) -> JSONResponse:
        return render_error(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return _validation_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(exc.status_code, "error")
        message = str(exc.detail) if exc.detail else code.replace("_", " ")
        if exc.status_code == 404 and exc.detail == "Not Found":
            message = "no such endpoint; see /api/docs for the API"
        return JSONResponse(
            error_body(code, message), status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("internal error on %s %s", request.method, request.url.path)
        return JSONResponse(
            error_body("internal_error", "something went wrong on our side; it has been logged"),
            status_code=500,
        )
