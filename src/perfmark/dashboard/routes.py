"""The dashboard's router: every page under /dashboard, with HTML errors and sign-in."""

from __future__ import annotations

from fastapi import APIRouter

from perfmark.dashboard.pages import (
    attribution,
    campaigns,
    conversions,
    overview,
    partners,
    reports,
    settings,
)
from perfmark.dashboard.rendering import DASHBOARD_PREFIX
from perfmark.dashboard.routing import DashboardRoute, add_sign_in_routes

__all__ = ["build_dashboard_router"]


def build_dashboard_router() -> APIRouter:
    """Every dashboard page under /dashboard (the JSON twins are mounted under /api)."""
    router = APIRouter(prefix=DASHBOARD_PREFIX, route_class=DashboardRoute)
    add_sign_in_routes(router)
    for page in (overview, campaigns, reports, attribution, conversions, partners, settings):
        page.add_routes(router)
    return router
