"""The entry point uvicorn workers import: builds the app from settings in the environment."""

from __future__ import annotations

from starlette.types import ASGIApp

from perfmark.dashboard.warmup import start_warmup
from perfmark.services.container import build_container
from perfmark.settings import load_settings
from perfmark.web.app import create_app
from perfmark.web.tracking import tracking_in_front

__all__ = ["app_factory"]


def app_factory() -> ASGIApp:
    """Build one worker's app; the parent process has already migrated the store.

    With `dashboard_warmup`, the dashboard's default figures are computed in the background
    as the worker starts (see `perfmark.dashboard.warmup`). The tracking layer answers in front of FastAPI (see `tracking_in_front`): a click does
    not pass through the API's middleware and exception handling, which it does not need.
    """
    container = build_container(load_settings(), run_migrations=False)
    app = create_app(container)
    if container.settings.dashboard_warmup:
        start_warmup(container)
    return tracking_in_front(app)
