"""The baseline of bench/tracking.py: the least an ASGI app can do to answer a click with a 302.

No routing, no parsing, no logging: one fixed redirect. Served by the same uvicorn stack as
`perfmark serve` (`uvicorn --app-dir bench bare_asgi:app --workers 2`), it is the ceiling
the tracker's click path is measured against.
"""

from __future__ import annotations

from starlette.types import Receive, Scope, Send

__all__ = ["LOCATION", "app"]

LOCATION = b"https://shop.example/landing?pm_clid=clk_01baseline0000000000000000"
_START = {
    "type": "http.response.start",
    "status": 302,
    "headers": [
        (b"content-type", b"text/plain"),
        (b"content-length", b"0"),
        (b"cache-control", b"no-store"),
        (b"location", LOCATION),
    ],
}
_BODY = {"type": "http.response.body", "body": b""}


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """Answer every HTTP request with the same 302 (lifespan events are acknowledged)."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    await send(_START)
    await send(_BODY)
