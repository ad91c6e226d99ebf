"""The dashboard: server-rendered pages for marketers, advertisers and publishers."""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from starlette.routing import BaseRoute, Route
from starlette.staticfiles import StaticFiles

__all__ = ["STATIC_PATH", "install_dashboard"]

#: Where the dashboard's CSS, JS and vendored libraries are served from.
STATIC_PATH = "/dashboard/static"


def _has_root(routes: list[BaseRoute]) -> bool:
    return any(isinstance(route, Route) and route.path == "/" for route in routes)


def install_dashboard(app: FastAPI) -> None:
    """Mount the pages (/dashboard), their static files and JSON twins (/api/dashboard).

    Safe to call twice: the second call changes nothing.
    """
    if getattr(app.state, "dashboard_installed", False):
        return
    # Imported here: building the routers is the caller's decision, not an import side effect.
    from perfmark.dashboard.api import build_dashboard_api_router
    from perfmark.dashboard.routes import build_dashboard_router

    app.include_router(build_dashboard_api_router(), prefix="/api")
    app.include_router(build_dashboard_router())
    static = StaticFiles(directory=str(files("perfmark.dashboard") / "static"))
    app.mount(STATIC_PATH, static, name="dashboard-static")
    if not _has_root(app.router.routes):

        @app.get("/", include_in_schema=False)
        def root() -> RedirectResponse:
            return RedirectResponse("/dashboard/", status_code=302)

    app.state.dashboard_installed = True
