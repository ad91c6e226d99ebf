"""create_app(): the ASGI application with the management API (and, later, tracking and dashboard)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from perfmark import __version__
from perfmark.adapters.metrics import count_event
from perfmark.adapters.wal_writer import WalWriter
from perfmark.attribution.api import build_attribution_router
from perfmark.billing.api import build_billing_router
from perfmark.costs.api import build_costs_router
from perfmark.dashboard import install_dashboard
from perfmark.ingest.click import ClickTracker
from perfmark.ingest.conversions import ConversionTracker
from perfmark.ingest.segment import SegmentTracker
from perfmark.optimize.api import build_optimize_router
from perfmark.reports.api import build_reports_router
from perfmark.services.container import Container
from perfmark.services.tracking_config import ConfigCache, ConfigSnapshot
from perfmark.settings import wal_directory
from perfmark.web.api.accounts import build_accounts_router
from perfmark.web.api.resources import build_resource_router
from perfmark.web.api.tracking_setup import build_tracking_setup_router
from perfmark.web.api_docs import render_api_docs
from perfmark.web.errors import install_error_handlers
from perfmark.web.limits import BodySizeLimit
from perfmark.web.tracking import TrackingLayer

__all__ = ["create_app"]

API_DESCRIPTION = """
The perfmark management API. Authenticate with `Authorization: Bearer <API key>`.
Every error has the shape `{"error": {"code", "message", "field", "docs"}}`.
Lists are paginated with `limit` and `cursor` (pass the previous page's `next_cursor`).
Creates accept an `Idempotency-Key` header.
"""


def create_app(container: Container) -> FastAPI:
    """Build the application around an already-built container."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        for close in app.state.closers:
            close()

    app = FastAPI(
        lifespan=lifespan,
        title="perfmark",
        version=__version__,
        description=API_DESCRIPTION,
        openapi_url="/api/openapi.json",
        docs_url=None,
        redoc_url=None,
    )
    app.state.container = container
    app.state.closers = []
    install_error_handlers(app)
    app.include_router(build_resource_router(), prefix="/api")
    app.include_router(build_accounts_router(), prefix="/api")
    app.include_router(build_tracking_setup_router(), prefix="/api")
    app.include_router(build_reports_router(), prefix="/api")
    app.include_router(build_attribution_router(), prefix="/api")
    app.include_router(build_costs_router(), prefix="/api")
    app.include_router(build_billing_router(), prefix="/api")
    app.include_router(build_optimize_router(), prefix="/api")

    @app.get("/api/docs", include_in_schema=False)
    def api_docs() -> HTMLResponse:
        return HTMLResponse(render_api_docs(app.openapi(), "/api/openapi.json"))

    @app.get("/healthz", tags=["health"], summary="Liveness check")
    def healthz() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    install_dashboard(app)
    app.add_middleware(BodySizeLimit, max_bytes=container.settings.max_body_bytes)
    _add_tracking(app, container)
    return app


def _add_tracking(app: FastAPI, container: Container) -> None:
    """Put the tracking endpoints in front of the API, with this worker's log and config cache."""
    settings = container.settings
    cache = ConfigCache(container.engine, settings.config_cache_ttl_ms)
    cache.start()
    wal = WalWriter(
        wal_directory(settings),
        f"w{os.getpid()}",
        fsync_interval_ms=settings.wal_fsync_interval_ms,
        strict=settings.wal_strict_durability,
        segment_bytes=settings.wal_segment_bytes,
    )
    app.state.config_cache = cache
    app.state.wal = wal

    def snapshot() -> ConfigSnapshot:
        return cache.snapshot

    clicks = ClickTracker(
        settings, container.secret_key, snapshot, wal, container.clock, count_event
    )
    conversions = ConversionTracker(settings, snapshot, wal, container.clock, count_event)
    segment = SegmentTracker(settings, snapshot, wal, container.clock, count_event)
    app.add_middleware(
        TrackingLayer,
        settings=settings,
        clicks=clicks,
        conversions=conversions,
        segment=segment,
    )

    app.state.closers.extend([cache.stop, wal.close])
