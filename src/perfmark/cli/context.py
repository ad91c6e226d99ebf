"""How CLI commands reach the store: settings from the environment, local owner authority."""

from __future__ import annotations

import os

from perfmark.domain.accounts import Role
from perfmark.errors import NotFoundError
from perfmark.services.accounts import list_workspaces
from perfmark.services.container import Container, Principal, build_container
from perfmark.settings import load_settings

__all__ = ["local_container", "local_owner"]


def local_container() -> Container:
    """A container for this install (the CLI runs with the authority of the machine)."""
    return build_container(load_settings())


def local_owner(container: Container, workspace_id: str | None) -> Principal:
    """Owner authority over the named workspace, or over the only/first one."""
    wanted = workspace_id or os.environ.get("PERFMARK_WORKSPACE")
    workspaces = list_workspaces(container)
    if not workspaces:
        raise NotFoundError("there is no workspace yet; run `perfmark init` or `perfmark demo`")
    if wanted:
        if wanted not in {workspace.id for workspace in workspaces}:
            raise NotFoundError(
                f"no workspace {wanted!r}; known: {', '.join(w.id for w in workspaces)}"
            )
        return Principal(wanted, Role.OWNER, actor_id="cli")
    return Principal(workspaces[0].id, Role.OWNER, actor_id="cli")
