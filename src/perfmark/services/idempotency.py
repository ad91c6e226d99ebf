"""Idempotency keys: a retried create with the same key returns the first answer, once."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from perfmark.adapters.store.codec import storable_text
from perfmark.adapters.store.engine import transaction
from perfmark.adapters.store.schema import idempotency_keys
from perfmark.errors import ConflictError, ValidationError
from perfmark.services.container import Container

__all__ = ["StoredResponse", "finish", "fingerprint", "forget", "reserve"]

MAX_KEY_CHARS = 255
_IN_PROGRESS = 0


@dataclass(frozen=True)
class StoredResponse:
    """The answer given the first time a key was used."""

    status_code: int
    body: str


def fingerprint(method: str, path: str, body: bytes) -> str:
    """What identifies "the same request" for a key."""
    digest = hashlib.sha256()
    for part in (method.encode(), b"\0", path.encode(), b"\0", body):
        digest.update(part)
    return digest.hexdigest()


def reserve(
    container: Container, workspace_id: str, key: str, request_fingerprint: str
) -> StoredResponse | None:
    """Claim `key` for this request; return the stored answer if it was used before."""
    if not key or len(key) > MAX_KEY_CHARS or not storable_text(key):
        raise ValidationError(
            f"Idempotency-Key must be 1-{MAX_KEY_CHARS} characters of text without NUL",
            field="Idempotency-Key",
        )
    try:
        with transaction(container.engine) as conn:
            conn.execute(
                insert(idempotency_keys).values(
                    workspace_id=workspace_id,
                    key=key,
                    request_fingerprint=request_fingerprint,
                    status_code=_IN_PROGRESS,
                    response_body="",
                    created_at=container.clock.now(),
                )
            )
        return None
    except IntegrityError:
        pass
    with transaction(container.engine) as conn:
        row = (
            conn.execute(
                select(idempotency_keys).where(
                    idempotency_keys.c.workspace_id == workspace_id,
                    idempotency_keys.c.key == key,
                )
            )
            .mappings()
            .one()
        )
    if row["request_fingerprint"] != request_fingerprint:
        raise ConflictError(
            "this Idempotency-Key was already used for a different request; use a new key"
        )
    if row["status_code"] == _IN_PROGRESS:
        raise ConflictError(
            "a request with this Idempotency-Key is still being processed; retry shortly"
        )
    return StoredResponse(row["status_code"], row["response_body"])


def finish(container: Container, workspace_id: str, key: str, status_code: int, body: str) -> None:
    """Record the answer for a reserved key."""
    with transaction(container.engine) as conn:
        conn.execute(
            update(idempotency_keys)
            .where(idempotency_keys.c.workspace_id == workspace_id, idempotency_keys.c.key == key)
            .values(status_code=status_code, response_body=body)
        )


def forget(container: Container, workspace_id: str, key: str) -> None:
    """Release a reserved key after an internal failure, so the client can retry."""
    with transaction(container.engine) as conn:
        conn.execute(
            delete(idempotency_keys).where(
                idempotency_keys.c.workspace_id == workspace_id, idempotency_keys.c.key == key
            )
        )
