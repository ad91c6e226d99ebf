"""FastAPI dependencies: the container and the authenticated principal."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from perfmark.errors import AuthenticationError
from perfmark.services.accounts import authenticate_api_key
from perfmark.services.container import Container, Principal

__all__ = ["CurrentPrincipal", "get_container", "get_principal"]

_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer pmk_...`")


def get_container(request: Request) -> Container:
    """The container the app was created with."""
    container: Container = request.app.state.container
    return container


async def get_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The caller, from a Bearer API key; 401 when it is missing or unknown."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise AuthenticationError(
            "this endpoint needs an API key: send 'Authorization: Bearer <key>' "
            "(create one with `perfmark apikeys create`)"
        )
    return await run_in_threadpool(
        authenticate_api_key, get_container(request), credentials.credentials
    )


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]
