"""Routes for the caller's workspace settings and its API keys."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, ConfigDict, Field

from perfmark.adapters.store.codec import encode_spec
from perfmark.domain.accounts import Role, WorkspaceSpec
from perfmark.domain.records import Record
from perfmark.services import accounts
from perfmark.services.container import Container
from perfmark.web.api.deps import CurrentPrincipal, get_container
from perfmark.web.api.resources import ERROR_RESPONSES
from perfmark.web.api.schemas import output_model_for, patch_model_for

__all__ = ["build_accounts_router"]

ContainerDep = Annotated[Container, Depends(get_container)]


class ApiKeyCreate(BaseModel):
    """A new API key's name, role and (for portal roles) scope."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    role: Role = Role.ANALYST
    advertiser_id: str | None = Field(default=None, max_length=64)
    publisher_id: str | None = Field(default=None, max_length=64)


class ApiKeyOut(BaseModel):
    """An API key as listed; the secret is never shown again."""

    id: str
    name: str
    role: Role
    preview: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    advertiser_id: str | None
    publisher_id: str | None


class ApiKeyCreated(ApiKeyOut):
    """A key just created, with its secret shown this once."""

    secret: str


class ApiKeyList(BaseModel):
    """The workspace's API keys."""

    data: list[ApiKeyOut]


WorkspaceOut = output_model_for(WorkspaceSpec, "Workspace")
WorkspaceUpdate = patch_model_for(WorkspaceSpec, "Workspace")


def _workspace_json(record: Record[WorkspaceSpec]) -> dict[str, Any]:
    return {
        "id": record.id,
        "workspace_id": record.workspace_id,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
        "archived_at": record.archived_at,
        "version": record.version,
        **encode_spec(record.spec),
    }


def _key_json(info: accounts.ApiKeyInfo) -> dict[str, Any]:
    return {
        "id": info.id,
        "name": info.name,
        "role": info.role,
        "preview": info.preview,
        "created_at": info.created_at,
        "last_used_at": info.last_used_at,
        "revoked_at": info.revoked_at,
        "advertiser_id": info.advertiser_id,
        "publisher_id": info.publisher_id,
    }


def build_accounts_router() -> APIRouter:
    """Routes for /api/workspace and /api/apikeys."""
    router = APIRouter()

    @router.get(
        "/workspace",
        response_model=WorkspaceOut,
        responses=ERROR_RESPONSES,
        tags=["workspace"],
        summary="The caller's workspace",
    )
    def get_workspace(container: ContainerDep, principal: CurrentPrincipal) -> Any:
        return _workspace_json(accounts.get_workspace(container, principal.workspace_id))

    @router.patch(
        "/workspace",
        response_model=WorkspaceOut,
        responses=ERROR_RESPONSES,
        tags=["workspace"],
        summary="Change workspace settings",
    )
    def update_workspace(
        container: ContainerDep,
        principal: CurrentPrincipal,
        body: WorkspaceUpdate,  # type: ignore[valid-type]
    ) -> Any:
        changes = body.model_dump(mode="json", exclude_unset=True)  # type: ignore[attr-defined]
        return _workspace_json(accounts.update_workspace(container, principal, changes))

    @router.post(
        "/apikeys",
        status_code=201,
        response_model=ApiKeyCreated,
        responses=ERROR_RESPONSES,
        tags=["apikeys"],
        summary="Create an API key (the secret is shown once)",
    )
    def create_key(container: ContainerDep, principal: CurrentPrincipal, body: ApiKeyCreate) -> Any:
        created = accounts.create_api_key(
            container,
            principal,
            body.name,
            body.role,
            advertiser_id=body.advertiser_id,
            publisher_id=body.publisher_id,
        )
        return {**_key_json(created.info), "secret": created.secret}

    @router.get(
        "/apikeys",
        response_model=ApiKeyList,
        responses=ERROR_RESPONSES,
        tags=["apikeys"],
        summary="List API keys",
    )
    def list_keys(container: ContainerDep, principal: CurrentPrincipal) -> Any:
        return {"data": [_key_json(info) for info in accounts.list_api_keys(container, principal)]}

    @router.delete(
        "/apikeys/{key_id}",
        response_model=ApiKeyOut,
        responses=ERROR_RESPONSES,
        tags=["apikeys"],
        summary="Revoke an API key",
    )
    def revoke_key(
        container: ContainerDep,
        principal: CurrentPrincipal,
        key_id: Annotated[str, Path(max_length=64)],
    ) -> Any:
        return _key_json(accounts.revoke_api_key(container, principal, key_id))

    return router
