"""Routes an integrator needs to set up tracking: the workspace's write key and snippet."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from perfmark.services import accounts
from perfmark.services.container import Container
from perfmark.web.api.deps import CurrentPrincipal, get_container
from perfmark.web.api.resources import ERROR_RESPONSES

__all__ = ["build_tracking_setup_router"]


class WriteKeyOut(BaseModel):
    """The write key, and the snippet and event endpoint that use it."""

    write_key: str
    snippet: str
    events_endpoint: str


def build_tracking_setup_router() -> APIRouter:
    """Routes under /api/workspace for tracking setup."""
    router = APIRouter()

    @router.get(
        "/workspace/write-key",
        response_model=WriteKeyOut,
        responses=ERROR_RESPONSES,
        tags=["workspace"],
        summary="The write key for the event API and the JS snippet",
    )
    def write_key(
        container: Annotated[Container, Depends(get_container)], principal: CurrentPrincipal
    ) -> Any:
        key = accounts.workspace_write_key(container, principal)
        base = container.settings.base_url.rstrip("/")
        return {
            "write_key": key,
            "snippet": f'<script src="{base}/t.js" data-write-key="{key}" async></script>',
            "events_endpoint": f"{base}/v1/batch",
        }

    return router
