"""Team members who sign in to the dashboard: create with a password, reset it, remove."""

from __future__ import annotations

from sqlalchemy import update

from perfmark.adapters.store.engine import transaction
from perfmark.adapters.store.kinds import USERS
from perfmark.adapters.store.schema import users
from perfmark.dashboard.auth import check_password, end_user_sessions, hash_password
from perfmark.domain.accounts import WRITE_ROLES, Role, UserSpec
from perfmark.domain.records import Record
from perfmark.errors import ForbiddenError, ValidationError
from perfmark.services import catalog
from perfmark.services.container import Container, Principal

__all__ = ["create_user", "list_team", "remove_user", "set_password"]

TEAM_LIMIT = 200


def _require_admin(principal: Principal, what: str) -> None:
    if principal.role not in WRITE_ROLES:
        raise ForbiddenError(f"only an owner or admin can {what}")


def create_user(
    container: Container, principal: Principal, spec: UserSpec, password: str
) -> Record[UserSpec]:
    """Add a team member who signs in with `password` (owners and admins; owners by owners)."""
    _require_admin(principal, "add team members")
    if spec.role is Role.OWNER and principal.role is not Role.OWNER:
        raise ForbiddenError("only an owner can add another owner")
    password_hash = hash_password(password)  # checked before anything is stored
    record: Record[UserSpec] = catalog.create_object(container, principal, USERS, spec)
    with transaction(container.engine) as conn:
        conn.execute(
            update(users).where(users.c.id == record.id).values(password_hash=password_hash)
        )
    return record


def set_password(container: Container, principal: Principal, user_id: str, password: str) -> None:
    """Set a new password (one's own, or anyone's for an admin) and end that user's sessions."""
    if user_id != principal.actor_id:
        _require_admin(principal, "set another member's password")
    target: Record[UserSpec] = catalog.get_object(
        container, Principal(principal.workspace_id, Role.OWNER), USERS, user_id
    )
    if target.spec.role is Role.OWNER and principal.role is not Role.OWNER:
        raise ForbiddenError("only an owner can set an owner's password")
    password_hash = hash_password(check_password(password))
    with transaction(container.engine) as conn:
        conn.execute(
            update(users)
            .where(users.c.id == user_id, users.c.workspace_id == principal.workspace_id)
            .values(password_hash=password_hash)
        )
    end_user_sessions(container, user_id)


def list_team(container: Container, principal: Principal) -> tuple[Record[UserSpec], ...]:
    """The workspace's team members (staff roles only)."""
    if principal.role not in (*WRITE_ROLES, Role.ANALYST):
        raise ForbiddenError(f"the {principal.role.value} role cannot see the team")
    page = catalog.list_objects(container, principal, USERS, limit=TEAM_LIMIT)
    return tuple(page.items)


def remove_user(container: Container, principal: Principal, user_id: str) -> Record[UserSpec]:
    """Archive a team member and sign them out everywhere (never oneself, never the last owner)."""
    _require_admin(principal, "remove team members")
    if user_id == principal.actor_id:
        raise ValidationError(
            "you cannot remove yourself; ask another owner or admin", field="user_id"
        )
    target: Record[UserSpec] = catalog.get_object(container, principal, USERS, user_id)
    if target.spec.role is Role.OWNER:
        if principal.role is not Role.OWNER:
            raise ForbiddenError("only an owner can remove an owner")
        owners = [u for u in list_team(container, principal) if u.spec.role is Role.OWNER]
        if len(owners) <= 1:
            raise ValidationError(
                "this is the workspace's last owner; make someone else owner first",
                field="user_id",
            )
    archived: Record[UserSpec] = catalog.archive_object(container, principal, USERS, user_id)
    end_user_sessions(container, user_id)
    return archived
