"""create_app(): the ASGI application with the management API (and, later, tracking and dashboard)."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse

from perfmark import __version__
from perfmark.services.container import Container
from perfmark.web.api.accounts import build_accounts_router
from perfmark.web.api.resources import build_resource_router
from perfmark.web.errors import install_error_handlers
from perfmark.web.limits import BodySizeLimit

__all__ = ["create_app"]

API_DESCRIPTION = """
The perfmark management API. Authenticate with `Authorization: Bearer <API key>`.
Every error has the shape `{"error": {"code", "message", "field", "docs"}}`.
Lists are paginated with `limit` and `cursor` (pass the previous page's `next_cursor`).
Creates accept an `Idempotency-Key` header.
"""


def create_app(container: Container) -> FastAPI:
    """Build the application around an already-built container."""
    app = FastAPI(
        title="perfmark",
        version=__version__,
        description=API_DESCRIPTION,
        openapi_url="/api/openapi.json",
        docs_url=None,
        redoc_url=None,
    )
    app.state.container = container
    install_error_handlers(app)
    app.include_router(build_resource_router(), prefix="/api")
    app.include_router(build_accounts_router(), prefix="/api")

    @app.get("/api/docs", include_in_schema=False)
    def api_docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/api/openapi.json", title="perfmark API")

    @app.get("/healthz", tags=["health"], summary="Liveness check")
    def healthz() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    app.add_middleware(BodySizeLimit, max_bytes=container.settings.max_body_bytes)
    return app
