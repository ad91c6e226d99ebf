"""The API docs page is rendered from the spec, lists every operation, and loads nothing remote."""

from __future__ import annotations

import asyncio
import re

import httpx

from perfmark.services.container import Container
from perfmark.web.app import create_app


def test_docs_page_lists_every_operation_and_needs_no_internet(container: Container) -> None:
    app = create_app(container)

    async def fetch() -> tuple[httpx.Response, dict[str, object]]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            page = await client.get("/api/docs")
            spec = (await client.get("/api/openapi.json")).json()
            return page, spec

    page, spec = asyncio.run(fetch())
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    operations = [
        operation["operationId"]
        for methods in spec["paths"].values()  # type: ignore[attr-defined]
        for operation in methods.values()
    ]
    assert len(operations) > 30
    for operation_id in operations:
        assert f'id="{operation_id}"' in page.text
    assert not re.search(r"""(src|href)=["']https?://""", page.text), (
        "the page must not load remote assets"
    )
