"""Workspaces, API keys and authentication of API callers."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update

from perfmark.adapters.store.codec import check_storable, decode_spec, encode_spec, storable_text
from perfmark.adapters.store.engine import transaction
from perfmark.adapters.store.kinds import ADVERTISERS, PUBLISHERS, USERS
from perfmark.adapters.store.resources import ResourceKind, ResourceStore, bump_config_version
from perfmark.adapters.store.schema import api_keys, workspaces
from perfmark.clock import utc
from perfmark.domain.accounts import (
    API_KEY_PREFIX,
    Role,
    UserSpec,
    WorkspaceSpec,
    check_scope,
    hash_api_key,
    mint_api_key,
)
from perfmark.domain.records import Record
from perfmark.domain.rules import check_name
from perfmark.errors import AuthenticationError, ForbiddenError, NotFoundError, ValidationError
from perfmark.ids import new_id
from perfmark.services.container import Container, Principal

__all__ = [
    "ApiKeyInfo",
    "CreatedApiKey",
    "NewWorkspace",
    "authenticate_api_key",
    "create_api_key",
    "create_workspace",
    "get_workspace",
    "list_api_keys",
    "list_workspaces",
    "revoke_api_key",
    "update_workspace",
    "workspace_write_key",
]

#: Segment-style write keys identify a workspace to the event API; like Segment's, they are
#: embedded in client code, so they only allow sending events, never reading.
WRITE_KEY_PREFIX = "wk_"
WRITE_KEY_BYTES = 18


@dataclass(frozen=True)
class ApiKeyInfo:
    """An API key as listed: never the secret, only its recognisable start."""

    id: str
    workspace_id: str
    name: str
    role: Role
    preview: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    advertiser_id: str | None = None
    publisher_id: str | None = None


@dataclass(frozen=True)
class CreatedApiKey:
    """A key just created: `secret` is shown this once and cannot be retrieved again."""

    info: ApiKeyInfo
    secret: str


@dataclass(frozen=True)
class NewWorkspace:
    """A workspace with its first owner and owner key."""

    workspace: Record[WorkspaceSpec]
    owner: Record[UserSpec]
    api_key: CreatedApiKey


def create_workspace(
    container: Container, spec: WorkspaceSpec, owner_email: str, owner_name: str = "Owner"
) -> NewWorkspace:
    """Create a tenant with an owner user and an owner API key."""
    now = container.clock.now()
    workspace_id = new_id("ws")
    with transaction(container.engine) as conn:
        conn.execute(
            insert(workspaces).values(
                id=workspace_id,
                name=spec.name,
                data=encode_spec(spec),
                created_at=now,
                updated_at=now,
                version=1,
                write_key=WRITE_KEY_PREFIX + secrets.token_urlsafe(WRITE_KEY_BYTES),
            )
        )
        bump_config_version(conn)
        owner = ResourceStore(USERS).insert(
            conn, workspace_id, UserSpec(email=owner_email, name=owner_name, role=Role.OWNER), now
        )
    principal = Principal(workspace_id, Role.OWNER, actor_id=owner.id)
    key = create_api_key(container, principal, "owner key", Role.OWNER)
    record = Record(workspace_id, workspace_id, spec, now, now)
    return NewWorkspace(record, owner, key)


def _workspace_record(row: Any) -> Record[WorkspaceSpec]:
    return Record(
        id=row["id"],
        workspace_id=row["id"],
        spec=decode_spec(WorkspaceSpec, row["data"]),
        created_at=utc(row["created_at"]),
        updated_at=utc(row["updated_at"]),
        archived_at=utc(row["archived_at"]) if row["archived_at"] else None,
        version=row["version"],
    )


def get_workspace(container: Container, workspace_id: str) -> Record[WorkspaceSpec]:
    """One workspace by id."""
    with transaction(container.engine) as conn:
        row = (
            conn.execute(select(workspaces).where(workspaces.c.id == workspace_id))
            .mappings()
            .first()
        )
    if row is None:
        raise NotFoundError(f"no workspace with id {workspace_id!r}")
    return _workspace_record(row)


def list_workspaces(container: Container) -> list[Record[WorkspaceSpec]]:
    """Every workspace on this install (for the CLI, which runs with local authority)."""
    with transaction(container.engine) as conn:
        rows = conn.execute(select(workspaces).order_by(workspaces.c.id)).mappings().all()
    return [_workspace_record(row) for row in rows]


def update_workspace(
    container: Container, principal: Principal, changes: dict[str, Any]
) -> Record[WorkspaceSpec]:
    """Change workspace settings (owner and admin only)."""
    if principal.role not in (Role.OWNER, Role.ADMIN):
        raise ForbiddenError("only an owner or admin can change workspace settings")
    current = get_workspace(container, principal.workspace_id)
    spec = decode_spec(WorkspaceSpec, {**encode_spec(current.spec), **changes})
    now = container.clock.now()
    with transaction(container.engine) as conn:
        conn.execute(
            update(workspaces)
            .where(workspaces.c.id == principal.workspace_id)
            .values(
                name=spec.name,
                data=encode_spec(spec),
                updated_at=now,
                version=workspaces.c.version + 1,
            )
        )
        bump_config_version(conn)
    return Record(current.id, current.id, spec, current.created_at, now, None, current.version + 1)


def _key_info(row: Any) -> ApiKeyInfo:
    return ApiKeyInfo(
        id=row["id"],
        workspace_id=row["workspace_id"],
        name=row["name"],
        role=Role(row["role"]),
        preview=row["lookup"] + "…",
        created_at=utc(row["created_at"]),
        last_used_at=utc(row["last_used_at"]) if row["last_used_at"] else None,
        revoked_at=utc(row["revoked_at"]) if row["revoked_at"] else None,
        advertiser_id=row["advertiser_id"],
        publisher_id=row["publisher_id"],
    )


def create_api_key(
    container: Container,
    principal: Principal,
    name: str,
    role: Role,
    *,
    advertiser_id: str | None = None,
    publisher_id: str | None = None,
) -> CreatedApiKey:
    """Mint a key for the caller's workspace (owners and admins only, never above their role)."""
    if principal.role not in (Role.OWNER, Role.ADMIN):
        raise ForbiddenError("only an owner or admin can create API keys")
    if role is Role.OWNER and principal.role is not Role.OWNER:
        raise ForbiddenError("only an owner can create an owner key")
    check_storable(name, "name")
    name = check_name("name", name)
    check_scope(role, advertiser_id, publisher_id)
    secret = mint_api_key()
    now = container.clock.now()
    values = {
        "id": new_id("key"),
        "workspace_id": principal.workspace_id,
        "name": name,
        "role": role.value,
        "advertiser_id": advertiser_id,
        "publisher_id": publisher_id,
        "lookup": secret.lookup,
        "digest": secret.digest,
        "created_at": now,
        "last_used_at": None,
        "revoked_at": None,
    }
    with transaction(container.engine) as conn:
        # A portal key must name an advertiser or publisher of this very workspace.
        scopes: tuple[tuple[ResourceKind[Any], str | None, str], ...] = (
            (ADVERTISERS, advertiser_id, "advertiser_id"),
            (PUBLISHERS, publisher_id, "publisher_id"),
        )
        for kind, object_id, field in scopes:
            if object_id is None:
                continue
            record = ResourceStore(kind).get(conn, principal.workspace_id, object_id)
            if record is None or record.archived:
                raise ValidationError(
                    f"{field} {object_id!r} names no {kind.singular} in this workspace; "
                    f"list them at /api/{kind.name}",
                    field=field,
                )
        conn.execute(insert(api_keys).values(**values))
    return CreatedApiKey(_key_info(values), secret.plaintext)


def list_api_keys(container: Container, principal: Principal) -> list[ApiKeyInfo]:
    """The workspace's keys, revoked ones included, newest last."""
    if principal.role not in (Role.OWNER, Role.ADMIN):
        raise ForbiddenError("only an owner or admin can list API keys")
    with transaction(container.engine) as conn:
        rows = (
            conn.execute(
                select(api_keys)
                .where(api_keys.c.workspace_id == principal.workspace_id)
                .order_by(api_keys.c.id)
            )
            .mappings()
            .all()
        )
    return [_key_info(row) for row in rows]


def revoke_api_key(container: Container, principal: Principal, key_id: str) -> ApiKeyInfo:
    """Revoke a key at once; it stops authenticating on the next request."""
    if principal.role not in (Role.OWNER, Role.ADMIN):
        raise ForbiddenError("only an owner or admin can revoke API keys")
    if not storable_text(key_id):
        raise NotFoundError(f"no API key with id {key_id!r} in this workspace")
    now = container.clock.now()
    with transaction(container.engine) as conn:
        condition = (api_keys.c.id == key_id) & (api_keys.c.workspace_id == principal.workspace_id)
        conn.execute(
            update(api_keys)
            .where(condition & api_keys.c.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        row = conn.execute(select(api_keys).where(condition)).mappings().first()
    if row is None:
        raise NotFoundError(f"no API key with id {key_id!r} in this workspace")
    return _key_info(row)


def authenticate_api_key(container: Container, presented: str) -> Principal:
    """The principal of a presented key, or AuthenticationError."""
    if not presented.startswith(API_KEY_PREFIX):
        raise AuthenticationError(
            f"the API key must start with {API_KEY_PREFIX}; send 'Authorization: Bearer <key>'"
        )
    digest = hash_api_key(presented)
    with transaction(container.engine) as conn:
        row = conn.execute(select(api_keys).where(api_keys.c.digest == digest)).mappings().first()
        if row is None or row["revoked_at"] is not None:
            raise AuthenticationError("this API key is unknown or revoked; create a new one")
        now = container.clock.now()
        last = row["last_used_at"]
        # Write last_used_at at most once a minute so reads do not turn into writes.
        if last is None or (now - utc(last)).total_seconds() > 60:
            conn.execute(
                update(api_keys).where(api_keys.c.id == row["id"]).values(last_used_at=now)
            )
    return Principal(
        workspace_id=row["workspace_id"],
        role=Role(row["role"]),
        advertiser_id=row["advertiser_id"],
        publisher_id=row["publisher_id"],
        actor_id=row["id"],
    )


def workspace_write_key(container: Container, principal: Principal) -> str:
    """The workspace's write key for the event API and the JS snippet."""
    if principal.role not in (Role.OWNER, Role.ADMIN):
        raise ForbiddenError("only an owner or admin can read the write key")
    with transaction(container.engine) as conn:
        key = conn.execute(
            select(workspaces.c.write_key).where(workspaces.c.id == principal.workspace_id)
        ).scalar_one_or_none()
    if key is None:
        raise NotFoundError("this workspace has no write key")
    return str(key)
