"""Dashboard sign-in: argon2 password hashes, server-side sessions and their CSRF tokens."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, insert, select, update

from perfmark.adapters.store.engine import transaction
from perfmark.adapters.store.schema import sessions, users
from perfmark.clock import utc
from perfmark.domain.accounts import Role
from perfmark.errors import AuthenticationError, ValidationError
from perfmark.services.container import Container, Principal

__all__ = [
    "PASSWORD_MAX_CHARS",
    "PASSWORD_MIN_CHARS",
    "SESSION_IDLE_TIMEOUT_S",
    "SESSION_MAX_AGE_S",
    "DashboardSession",
    "check_password",
    "csrf_matches",
    "end_session",
    "end_user_sessions",
    "hash_password",
    "load_session",
    "sign_in",
    "verify_password",
]

PASSWORD_MIN_CHARS = 10
#: argon2 hashes any length, but a megabyte "password" is a cheap way to burn our CPU.
PASSWORD_MAX_CHARS = 1024
#: A session unused this long is over (sliding), and none lasts longer than the maximum.
SESSION_IDLE_TIMEOUT_S = 8 * 3600
SESSION_MAX_AGE_S = 7 * 24 * 3600
#: last_seen_at is written at most this often, so reading pages does not turn into writes.
SESSION_TOUCH_INTERVAL_S = 60
_TOKEN_BYTES = 32

#: argon2id at OWASP's recommended minimum (19 MiB, 2 passes, 1 lane): about 50 ms on an
#: idle core. The library's default (64 MiB, 3 passes, 4 lanes) took over a second per
#: sign-in on a busy 2-core server. Stored hashes carry their parameters, so a later change
#: here upgrades each hash at its user's next sign-in (see `check_needs_rehash`).
ARGON2_TIME_COST = 2
ARGON2_MEMORY_KIB = 19 * 1024
ARGON2_PARALLELISM = 1
_hasher = PasswordHasher(
    time_cost=ARGON2_TIME_COST, memory_cost=ARGON2_MEMORY_KIB, parallelism=ARGON2_PARALLELISM
)


@cache
def _dummy_hash() -> str:
    """Verified when the email is unknown, so that answer takes as long as a wrong password."""
    return _hasher.hash(secrets.token_urlsafe(16))


@dataclass(frozen=True)
class DashboardSession:
    """A signed-in user: who, in which workspace, with which role, and the CSRF token."""

    digest: str
    user_id: str
    workspace_id: str
    email: str
    name: str
    role: Role
    csrf_token: str
    expires_at: datetime
    advertiser_id: str | None = None
    publisher_id: str | None = None

    @property
    def principal(self) -> Principal:
        """The same principal an API key of this role would be, for the services."""
        return Principal(
            workspace_id=self.workspace_id,
            role=self.role,
            advertiser_id=self.advertiser_id,
            publisher_id=self.publisher_id,
            actor_id=self.user_id,
        )


def check_password(password: str) -> str:
    """A password long enough to resist guessing and short enough to hash."""
    if len(password) < PASSWORD_MIN_CHARS:
        raise ValidationError(
            f"the password has {len(password)} characters; use at least {PASSWORD_MIN_CHARS} "
            "(a few words are easier to remember than symbols)",
            field="password",
        )
    if len(password) > PASSWORD_MAX_CHARS:
        raise ValidationError(
            f"the password is longer than {PASSWORD_MAX_CHARS} characters", field="password"
        )
    return password


def hash_password(password: str) -> str:
    """The argon2id hash to store for a new password (checked first)."""
    return _hasher.hash(check_password(password))


def verify_password(stored_hash: str, password: str) -> bool:
    """Whether `password` matches a stored argon2 hash (never raises on a bad hash)."""
    try:
        return _hasher.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def sign_in(container: Container, email: str, password: str) -> tuple[str, DashboardSession]:
    """Check an email and password; returns the new session's cookie token and the session.

    The same email may belong to users of several workspaces: the first (oldest) whose
    password matches is signed in. Unknown emails cost one hash check too, so timing does
    not tell which emails exist.
    """
    wanted = email.strip().lower()
    with transaction(container.engine) as conn:
        rows = (
            conn.execute(
                select(users)
                .where(
                    users.c.email == wanted,
                    users.c.archived_at.is_(None),
                    users.c.password_hash.is_not(None),
                )
                .order_by(users.c.id)
            )
            .mappings()
            .all()
        )
    password = password[:PASSWORD_MAX_CHARS]
    if not rows:
        verify_password(_dummy_hash(), password)
    user = next((row for row in rows if verify_password(row["password_hash"], password)), None)
    if user is None:
        raise AuthenticationError("the email or the password is wrong; check both and try again")
    if _hasher.check_needs_rehash(user["password_hash"]):
        with transaction(container.engine) as conn:
            conn.execute(
                update(users)
                .where(users.c.id == user["id"])
                .values(password_hash=_hasher.hash(password))
            )
    token = secrets.token_urlsafe(_TOKEN_BYTES)
    now = container.clock.now()
    values = {
        "id": _digest(token),
        "user_id": user["id"],
        "workspace_id": user["workspace_id"],
        "csrf_token": secrets.token_urlsafe(_TOKEN_BYTES),
        "created_at": now,
        "last_seen_at": now,
        "expires_at": _expiry(now, now),
    }
    with transaction(container.engine) as conn:
        # Expired sessions are swept here, where sessions are made, rather than by a job.
        conn.execute(delete(sessions).where(sessions.c.expires_at < now))
        conn.execute(insert(sessions).values(**values))
    return token, _session(values, user)


def _expiry(created_at: datetime, seen_at: datetime) -> datetime:
    return min(
        seen_at + timedelta(seconds=SESSION_IDLE_TIMEOUT_S),
        created_at + timedelta(seconds=SESSION_MAX_AGE_S),
    )


def _session(row: Any, user: Any) -> DashboardSession:
    data = user["data"] or {}
    return DashboardSession(
        digest=row["id"],
        user_id=user["id"],
        workspace_id=user["workspace_id"],
        email=user["email"],
        name=user["name"],
        role=Role(user["role"]),
        csrf_token=row["csrf_token"],
        expires_at=utc(row["expires_at"]),
        advertiser_id=data.get("advertiser_id"),
        publisher_id=data.get("publisher_id"),
    )


def load_session(container: Container, token: str | None) -> DashboardSession | None:
    """The live session of a cookie token, extended on use; None when absent or expired."""
    if not token or len(token) > 2 * _TOKEN_BYTES:
        return None
    digest = _digest(token)
    now = container.clock.now()
    with transaction(container.engine) as conn:
        row = (
            conn.execute(
                select(sessions, users.c.archived_at.label("user_archived_at"))
                .join(users, users.c.id == sessions.c.user_id)
                .where(sessions.c.id == digest)
            )
            .mappings()
            .first()
        )
        if row is None:
            return None
        if utc(row["expires_at"]) <= now or row["user_archived_at"] is not None:
            conn.execute(delete(sessions).where(sessions.c.id == digest))
            return None
        user = conn.execute(select(users).where(users.c.id == row["user_id"])).mappings().one()
        values = dict(row)
        if (now - utc(row["last_seen_at"])).total_seconds() > SESSION_TOUCH_INTERVAL_S:
            values["expires_at"] = _expiry(utc(row["created_at"]), now)
            conn.execute(
                update(sessions)
                .where(sessions.c.id == digest)
                .values(last_seen_at=now, expires_at=values["expires_at"])
            )
    return _session(values, user)


def end_session(container: Container, token: str | None) -> None:
    """Sign out: the session is deleted, so its cookie stops working at once."""
    if token:
        with transaction(container.engine) as conn:
            conn.execute(delete(sessions).where(sessions.c.id == _digest(token)))


def end_user_sessions(container: Container, user_id: str) -> int:
    """Sign a user out everywhere (after a password change or removal); returns how many."""
    with transaction(container.engine) as conn:
        result = conn.execute(delete(sessions).where(sessions.c.user_id == user_id))
    return max(result.rowcount, 0)


def csrf_matches(session: DashboardSession, presented: str | None) -> bool:
    """Constant-time check of a form's or header's CSRF token against the session's."""
    return bool(presented) and hmac.compare_digest(
        session.csrf_token.encode(), (presented or "").encode()
    )
