"""The tracking endpoints as a pure ASGI layer in front of the API (the hot path).

Clicks, pixels, postbacks and the Segment-compatible API are answered here without
FastAPI's routing and validation, which measured about 3x slower for a redirect (see
docs/architecture.md); everything else passes through to the management API. The served
app (`web/asgi.py`) puts this layer in front of the whole FastAPI app with
`tracking_in_front`, so a click does not pass FastAPI's own layers either; it then answers
an unexpected error itself: a plain 500 in the API's error shape, the traceback only logged.
"""

from __future__ import annotations

import json
import logging
import zlib
from collections.abc import Iterable
from importlib.resources import files
from typing import Any
from urllib.parse import parse_qsl, unquote

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from perfmark.adapters.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from perfmark.adapters.metrics import render_metrics
from perfmark.domain.events import DropReason, EventType
from perfmark.errors import error_body
from perfmark.ingest.click import ClickTracker
from perfmark.ingest.conversions import CLICK_COOKIE, ConversionRejected, ConversionTracker
from perfmark.ingest.hits import Hit, ParameterTooLong, TooManyParameters
from perfmark.ingest.segment import MAX_MESSAGE_BYTES, SegmentTracker, write_key_from
from perfmark.ingest.visitor import VISITOR_COOKIE
from perfmark.settings import Settings

__all__ = ["GIF", "TrackingLayer", "tracking_in_front"]

logger = logging.getLogger("perfmark.web")

#: The classic 1x1 transparent GIF, 43 bytes.
GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00"
    b"\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)
MAX_QUERY_FIELDS = 100
MAX_SEGMENT_BATCH_BYTES = 500 * 1024
_NO_CACHE = [
    (b"cache-control", b"no-store, no-cache, must-revalidate, max-age=0"),
    (b"pragma", b"no-cache"),
    (b"expires", b"0"),
]
_NOT_FOUND_PAGE = (
    b"<!doctype html><meta charset=utf-8><title>Link not available</title>"
    b"<h1>This link is not available</h1><p>The offer behind it is unknown or no longer running.</p>"
)
_CORS = [(b"access-control-allow-origin", b"*")]
#: The headers every redirected click starts with (then its cookies and its location). A
#: 302 is never cached without explicit freshness, so `no-store` alone keeps proxies from it;
#: the HTTP/1.0 pragma and expires headers and a content type for the empty body are left
#: out: uvicorn checks every header of every response (measured ~0.7 us each).
_CLICK_HEADERS = (
    (b"content-length", b"0"),
    (b"cache-control", b"no-store"),
    (b"referrer-policy", b"no-referrer-when-downgrade"),
)
#: The same for a click answered with a page (unknown link, nowhere to send it).
_NOT_FOUND_HEADERS = (*_NO_CACHE, (b"referrer-policy", b"no-referrer-when-downgrade"))
_INTERNAL_ERROR_MESSAGE = "something went wrong on our side; it has been logged"
_SEGMENT_PATHS = {
    "/v1/track": "track",
    "/v1/identify": "identify",
    "/v1/page": "page",
    "/v1/screen": "screen",
    "/v1/batch": None,
    "/v1/import": None,
}
_HEADERS_READ = {
    b"user-agent": "user_agent",
    b"referer": "referrer",
    b"accept-language": "accept_language",
}


class TrackingLayer:
    """Answers /c/, /i/, /p.gif, /postback, /v1/*, /t.js and /metrics; passes the rest on."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        settings: Settings,
        clicks: ClickTracker,
        conversions: ConversionTracker,
        segment: SegmentTracker,
        answer_errors: bool = False,
    ) -> None:
        self.app = app
        self.settings = settings
        self.clicks = clicks
        self.conversions = conversions
        self.segment = segment
        #: In front of the whole app nothing else turns an exception into a 500: do it here.
        self.answer_errors = answer_errors
        self.country_header = b"cf-ipcountry"
        self.cookie_max_age = settings.cookie_lifetime_days * 86400
        secure = "; Secure" if settings.base_url.startswith("https://") else ""
        same_site = "None" if secure else "Lax"
        #: What follows `name=value` in each Set-Cookie (the settings do not change at run time).
        self.cookie_attributes = (
            f"; Max-Age={self.cookie_max_age}; Path=/; HttpOnly; SameSite={same_site}{secure}"
        ).encode()
        self.snippet = (files("perfmark.web") / "static" / "t.js").read_bytes()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        try:
            if path.startswith("/c/"):
                await self._click(scope, send, path[3:])
            elif path.startswith("/i/") and path.endswith(".gif"):
                await self._impression(scope, send, path[3:-4])
            elif path == "/p.gif":
                await self._conversion_pixel(scope, send)
            elif path == "/postback":
                await self._postback(scope, receive, send)
            elif path in _SEGMENT_PATHS:
                await self._segment(scope, receive, send, _SEGMENT_PATHS[path])
            elif path == "/t.js":
                await _respond(send, 200, self.snippet, b"application/javascript; charset=utf-8",
                               [(b"cache-control", b"public, max-age=3600")])  # fmt: skip
            elif path == "/metrics":
                await _respond(send, 200, render_metrics(), METRICS_CONTENT_TYPE.encode())
            else:
                await self.app(scope, receive, send)
        except ParameterTooLong as exc:
            self.clicks.count(_event_type_of(path), DropReason.MALFORMED)
            await _json_error(send, 400, "malformed_request", str(exc), exc.name)
        except Exception:
            if not self.answer_errors:
                raise  # the app around this layer renders it
            logger.exception("internal error on %s %s", scope["method"], path)
            try:
                await _json_error(send, 500, "internal_error", _INTERNAL_ERROR_MESSAGE)
            except Exception:  # the answer had already begun: the server closes the connection
                logger.debug("could not answer the failed request with a 500", exc_info=True)

    def _hit(self, scope: Scope) -> Hit:
        hit = Hit(method=scope["method"])
        query: bytes = scope.get("query_string", b"")
        if query:
            pairs = _query_pairs(query)
            limit = self.settings.max_param_chars
            if len(query) > limit:  # decoding only shortens: a short query has no long part
                for name, value in pairs:
                    if len(value) > limit or len(name) > limit:
                        raise ParameterTooLong(name, max(len(value), len(name)), limit)
            hit.params = dict(pairs)
        for name, value in scope["headers"]:
            attribute = _HEADERS_READ.get(name)
            if attribute is not None:
                setattr(hit, attribute, value.decode("latin-1")[:1024])
            elif name == b"cookie":
                hit.cookies = _parse_cookies(value.decode("latin-1"))
            elif name == self.country_header:
                country = value.decode("latin-1").strip().upper()
                if len(country) == 2 and country.isalpha() and country != "XX":
                    hit.country = country
        client = scope.get("client")
        hit.ip = client[0] if client else None
        return hit

    async def _click(self, scope: Scope, send: Send, slug: str) -> None:
        if scope["method"] not in ("GET", "HEAD"):
            await _json_error(send, 405, "method_not_allowed", "tracking links answer GET and HEAD")
            return
        outcome = self.clicks.click(slug, self._hit(scope))
        location = outcome.location if outcome.status == 302 else None
        headers = list(_CLICK_HEADERS if location else _NOT_FOUND_HEADERS)
        if outcome.new_visitor and outcome.visitor_id:
            headers.append(self._cookie(VISITOR_COOKIE, outcome.visitor_id))
        # Only a counted click may replace the click cookie (a not-targeted one would
        # overwrite the visitor's real click), and cookieless mode sets no cookie at all.
        if (
            outcome.click_id
            and outcome.status == 302
            and outcome.drop is None
            and not self.settings.cookieless
        ):
            headers.append(self._cookie(CLICK_COOKIE, outcome.click_id))
        if location:
            headers.append((b"location", location.encode("latin-1", "strict")))
            await send({"type": "http.response.start", "status": 302, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
        else:
            await _respond(send, 404, _NOT_FOUND_PAGE, b"text/html; charset=utf-8", headers)

    def _cookie(self, name: str, value: str) -> tuple[bytes, bytes]:
        return (b"set-cookie", f"{name}={value}".encode() + self.cookie_attributes)

    async def _impression(self, scope: Scope, send: Send, slug: str) -> None:
        try:
            outcome = self.clicks.impression(slug, self._hit(scope))
            headers = list(_NO_CACHE)
            if outcome.new_visitor and outcome.visitor_id:
                headers.append(self._cookie(VISITOR_COOKIE, outcome.visitor_id))
        except ParameterTooLong:
            self.clicks.count(EventType.IMPRESSION, DropReason.MALFORMED)
            headers = list(_NO_CACHE)
        await _respond(send, 200, GIF, b"image/gif", headers)

    async def _conversion_pixel(self, scope: Scope, send: Send) -> None:
        headers = list(_NO_CACHE)
        try:
            event_id = self.conversions.pixel(self._hit(scope))
            headers.append((b"x-perfmark-event", event_id.encode()))
        except ConversionRejected as exc:
            headers.append((b"x-perfmark-error", exc.reason.value.encode()))
        except ParameterTooLong:
            self.conversions.count(EventType.CONVERSION, DropReason.MALFORMED)
            headers.append((b"x-perfmark-error", b"malformed"))
        await _respond(send, 200, GIF, b"image/gif", headers)

    async def _postback(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] not in ("GET", "POST"):
            await _json_error(send, 405, "method_not_allowed", "postbacks are GET or POST")
            return
        body = await _read_body(receive, self.settings.max_body_bytes)
        if body is None:
            await _json_error(send, 413, "payload_too_large", "the postback body is too large")
            return
        hit = self._hit(scope)
        if scope["method"] == "POST" and body and _is_form(scope):
            form = parse_qsl(body.decode("utf-8", "replace"), max_num_fields=MAX_QUERY_FIELDS)
            hit.params = {**dict(form), **hit.params}
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        raw_query = scope.get("query_string", b"").decode("latin-1")
        try:
            event_id = self.conversions.postback(hit, raw_query, body, headers)
        except ConversionRejected as exc:
            code = {401: "bad_signature", 422: "unknown_goal"}.get(exc.status, "malformed_request")
            await _json_error(send, exc.status, code, exc.message, exc.field)
            return
        payload = json.dumps({"status": "accepted", "event_id": event_id}).encode()
        await _respond(send, 200, payload, b"application/json", list(_NO_CACHE))

    async def _segment(self, scope: Scope, receive: Receive, send: Send, kind: str | None) -> None:
        if scope["method"] == "OPTIONS":  # CORS preflight from browser SDKs
            await _respond(send, 204, b"", b"text/plain", [
                *_CORS,
                (b"access-control-allow-methods", b"POST, OPTIONS"),
                (b"access-control-allow-headers", b"authorization, content-type, content-encoding"),
                (b"access-control-max-age", b"86400"),
            ])  # fmt: skip
            return
        if scope["method"] != "POST":
            await _json_error(send, 405, "method_not_allowed", "the event API takes POST")
            return
        limit = MAX_SEGMENT_BATCH_BYTES if kind is None else MAX_MESSAGE_BYTES
        raw = await _read_body(receive, limit)
        if raw is None:
            await _json_error(send, 413, "payload_too_large", f"the body is above {limit} bytes")
            return
        try:
            body = json.loads(_decompress(scope, raw, limit) or b"{}")
        except _InflatedTooLarge:
            await _json_error(
                send, 413, "payload_too_large", f"the decompressed body is above {limit} bytes"
            )
            return
        except (ValueError, OSError, zlib.error):
            await _json_error(send, 400, "malformed_request", "the body is not valid JSON")
            return
        if not isinstance(body, dict):
            await _json_error(send, 400, "malformed_request", "the body must be a JSON object")
            return
        authorization = next(
            (v.decode("latin-1") for k, v in scope["headers"] if k == b"authorization"), None
        )
        try:
            workspace_id = self.segment.workspace_for(write_key_from(authorization, body))
            messages: Any = body.get("batch") if kind is None else [body]
            if not isinstance(messages, list):
                raise ConversionRejected(
                    DropReason.MALFORMED, 400, "batch must be a list of messages", "batch"
                )
            context = body.get("context") if kind is None else None
            if isinstance(context, dict):
                messages = [_with_context(m, context) for m in messages]
            hit = self._hit(scope)
            await run_in_threadpool(self.segment.ingest, workspace_id, messages, kind, hit)
        except ConversionRejected as exc:
            code = "unauthenticated" if exc.status == 401 else "malformed_request"
            await _json_error(send, exc.status, code, exc.message, exc.field)
            return
        await _respond(send, 200, b'{"success":true}', b"application/json", _CORS)


def tracking_in_front(app: Starlette) -> TrackingLayer:
    """Move the TrackingLayer that create_app() installed to in front of the whole `app`.

    create_app() adds the layer as middleware, inside Starlette's error handling and
    FastAPI's own layers, which a click then passes through for nothing (about 20 us of a
    click, measured). Call this before the app has served a request; it returns the ASGI
    app to serve (the layer, which hands everything else, lifespan included, to `app`).
    """
    for index, middleware in enumerate(app.user_middleware):
        factory: object = middleware.cls
        if factory is TrackingLayer:
            if app.middleware_stack is not None:
                raise RuntimeError("the app has already started; call this before serving")
            del app.user_middleware[index]
            options: dict[str, Any] = dict(middleware.kwargs)
            return TrackingLayer(app, answer_errors=True, **options)
    raise ValueError("the app has no TrackingLayer middleware; build it with create_app()")


def _query_pairs(query: bytes) -> list[tuple[str, str]]:
    """The pairs of parse_qsl(query decoded as UTF-8, max_num_fields=MAX_QUERY_FIELDS).

    The same result (blank values dropped, `+` and %-escapes decoded), without
    parse_qsl's per-call argument coercion and with unquote() only where there is
    something to decode: a click's query is parsed on every request.
    """
    # Browsers %-encode; a raw non-ASCII byte can only be meant as UTF-8.
    text = query.decode("utf-8", "replace")
    if text.count("&") >= MAX_QUERY_FIELDS:  # parse_qsl's limit: 1 + separators fields
        raise TooManyParameters(MAX_QUERY_FIELDS)
    pairs = []
    for part in text.split("&"):
        name, _equals, value = part.partition("=")
        if not value:  # no "=" or nothing after it: a blank value, which is not kept
            continue
        if "%" in part or "+" in part:
            name = unquote(name.replace("+", " "))
            value = unquote(value.replace("+", " "))
        pairs.append((name, value))
    return pairs


def _event_type_of(path: str) -> str:
    """The event type a tracking path records, for counting a request refused early."""
    if path.startswith("/c/"):
        return EventType.CLICK.value
    if path in _SEGMENT_PATHS:
        return "segment"
    return EventType.CONVERSION.value


def _with_context(message: Any, context: dict[str, Any]) -> Any:
    if isinstance(message, dict) and "context" not in message:
        return {**message, "context": context}
    return message


def _is_form(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-type":
            return bool(value.startswith(b"application/x-www-form-urlencoded"))
    return False


class _InflatedTooLarge(ValueError):
    """A compressed body that inflates past the size limit."""


def _decompress(scope: Scope, raw: bytes, limit: int) -> bytes:
    for name, value in scope["headers"]:
        if name == b"content-encoding" and value.strip().lower() == b"gzip":
            decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
            data = decompressor.decompress(raw, limit + 1)
            if len(data) > limit:
                raise _InflatedTooLarge
            return data
    return raw


def _parse_cookies(header: str) -> dict[str, str]:
    cookies = {}
    for part in header.split(";"):
        name, sep, value = part.strip().partition("=")
        if sep and name in (VISITOR_COOKIE, CLICK_COOKIE):
            cookies[name] = value.strip().strip('"')[:128]
    return cookies


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    chunks = []
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        more = message.get("more_body", False)
    return b"".join(chunks)


async def _respond(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes,
    headers: Iterable[tuple[bytes, bytes]] = (),
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _json_error(
    send: Send, status: int, code: str, message: str, field: str | None = None
) -> None:
    await _respond(
        send, status, json.dumps(error_body(code, message, field)).encode(), b"application/json"
    )
