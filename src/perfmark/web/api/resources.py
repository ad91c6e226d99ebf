"""CRUD routes for every workspace-owned resource, generated from the resource kinds.

Each kind gets POST/GET list/GET one/PATCH/DELETE (archive) with the same auth, pagination,
filters, idempotency and error shape; the request and response schemas come from the
domain's spec dataclasses (see schemas.py).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Iterable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from perfmark.adapters.store.codec import decode_spec, encode_spec
from perfmark.adapters.store.kinds import KINDS, LINKS
from perfmark.adapters.store.resources import ResourceKind
from perfmark.domain.links import tracking_url
from perfmark.domain.records import InvalidRecord, Record
from perfmark.errors import PerfmarkError
from perfmark.services import catalog, idempotency
from perfmark.services.container import Container, Principal
from perfmark.web.api.deps import get_container, get_principal
from perfmark.web.api.schemas import (
    ErrorBody,
    create_model_for,
    list_model_for,
    output_model_for,
    patch_model_for,
)

__all__ = ["ERROR_RESPONSES", "build_resource_router", "invalid_json", "record_to_json"]

#: The error responses every authenticated endpoint documents.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in (
        (400, "Malformed request"),
        (401, "Missing or invalid API key"),
        (403, "The key's role does not allow this"),
        (404, "Not found in this workspace"),
        (409, "Conflict with the current state"),
        (413, "Body too large"),
        (415, "The body is not JSON"),
        (422, "Invalid value: the error names the field"),
    )
}

_ID_PATH = Path(description="The object's id", max_length=64)


class SecretOut(BaseModel):
    """A postback secret, shown to owners and admins."""

    secret: str


def invalid_json(entries: Iterable[InvalidRecord]) -> list[dict[str, Any]]:
    """The objects a list left out because their stored data no longer validates."""
    return [
        {
            "id": entry.id,
            "code": "stored_object_invalid",
            "message": entry.message,
            "field": entry.field,
        }
        for entry in entries
    ]


def _extra_fields(kind: ResourceKind[Any]) -> tuple[tuple[str, Any], ...]:
    return (("tracking_url", str),) if kind is LINKS else ()


def record_to_json(
    container: Container, kind: ResourceKind[Any], record: Record[Any]
) -> dict[str, Any]:
    """The API representation of a stored object."""
    body: dict[str, Any] = {
        "id": record.id,
        "workspace_id": record.workspace_id,
        "created_at": record.created_at.isoformat(),
        "updated_at": record.updated_at.isoformat(),
        "archived_at": record.archived_at.isoformat() if record.archived_at else None,
        "version": record.version,
        **(record.spec if isinstance(record.spec, dict) else encode_spec(record.spec)),
    }
    if kind is LINKS and not isinstance(record.spec, dict):
        body["tracking_url"] = tracking_url(container.settings.base_url, record.spec.slug)
    return body


def _with_signature(function: Callable[..., Any], parameters: list[inspect.Parameter]) -> None:
    # FastAPI reads endpoint parameters from inspect.signature(), which honours __signature__;
    # this is how one generic endpoint gets the per-kind body model and filter parameters.
    function.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]


def _kw(name: str, annotation: Any, default: Any = inspect.Parameter.empty) -> inspect.Parameter:
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default
    )


_DEPENDENCIES = [
    _kw("container", Annotated[Container, Depends(get_container)]),
    _kw("principal", Annotated[Principal, Depends(get_principal)]),
]


def _add_kind_routes(router: APIRouter, kind: ResourceKind[Any]) -> None:
    title = kind.singular.capitalize()
    create_model = create_model_for(kind.spec_type, title)
    patch_model = patch_model_for(kind.spec_type, title)
    output_model = output_model_for(kind.spec_type, title, _extra_fields(kind))
    list_model = list_model_for(output_model)
    tag = kind.name

    def create(**kwargs: Any) -> Any:
        container: Container = kwargs["container"]
        principal: Principal = kwargs["principal"]
        body: BaseModel = kwargs["body"]
        key: str | None = kwargs["idempotency_key"]
        spec = decode_spec(kind.spec_type, body.model_dump(exclude_unset=True))

        def run() -> dict[str, Any]:
            record = catalog.create_object(container, principal, kind, spec)
            # Serialised through the response model now, so a replay is the same bytes.
            rendered = output_model.model_validate(record_to_json(container, kind, record))
            return rendered.model_dump(mode="json")

        if key is None:
            return run()
        fingerprint = idempotency.fingerprint(
            "POST", f"/api/{kind.name}", body.model_dump_json().encode()
        )
        stored = idempotency.reserve(container, principal.workspace_id, key, fingerprint)
        if stored is not None:
            return JSONResponse(
                json.loads(stored.body),
                status_code=stored.status_code,
                headers={"Idempotent-Replayed": "true"},
            )
        try:
            result = run()
        except PerfmarkError as exc:
            body_json = json.dumps(exc.to_body())
            idempotency.finish(container, principal.workspace_id, key, exc.status, body_json)
            raise
        except Exception:
            idempotency.forget(container, principal.workspace_id, key)
            raise
        idempotency.finish(container, principal.workspace_id, key, 201, json.dumps(result))
        return result

    _with_signature(
        create,
        [
            *_DEPENDENCIES,
            _kw("body", create_model),
            _kw(
                "idempotency_key",
                Annotated[
                    str | None,
                    Header(
                        alias="Idempotency-Key",
                        max_length=255,
                        description="Retry-safe creates: the same key returns the first answer",
                    ),
                ],
                None,
            ),
        ],
    )
    router.add_api_route(
        f"/{kind.name}",
        create,
        methods=["POST"],
        status_code=201,
        response_model=output_model,
        responses=ERROR_RESPONSES,
        summary=f"Create a {kind.singular}",
        tags=[tag],
        operation_id=f"create_{kind.singular}",
    )

    def list_(**kwargs: Any) -> Any:
        container: Container = kwargs["container"]
        filters = {name: kwargs[name] for name in kind.filters if kwargs.get(name) is not None}
        page = catalog.list_objects(
            container,
            kwargs["principal"],
            kind,
            filters=filters,
            cursor=kwargs["cursor"],
            limit=kwargs["limit"],
            include_archived=kwargs["include_archived"],
        )
        return {
            "data": [record_to_json(container, kind, record) for record in page.items],
            "next_cursor": page.next_cursor,
            "invalid": invalid_json(page.invalid),
        }

    _with_signature(
        list_,
        [
            *_DEPENDENCIES,
            _kw("limit", Annotated[int, Query(ge=1, le=200, description="Page size")], 50),
            _kw(
                "cursor",
                Annotated[
                    str | None, Query(max_length=64, description="next_cursor of the previous page")
                ],
                None,
            ),
            _kw("include_archived", Annotated[bool, Query()], False),
            *[
                _kw(
                    name,
                    Annotated[
                        str | None,
                        Query(max_length=64, description=f"Only objects with this {name}"),
                    ],
                    None,
                )
                for name in kind.filters
            ],
        ],
    )
    router.add_api_route(
        f"/{kind.name}",
        list_,
        methods=["GET"],
        response_model=list_model,
        responses=ERROR_RESPONSES,
        summary=f"List {kind.name}",
        tags=[tag],
        operation_id=f"list_{kind.name}",
    )

    def get(**kwargs: Any) -> Any:
        container: Container = kwargs["container"]
        record = catalog.get_object(container, kwargs["principal"], kind, kwargs["object_id"])
        return record_to_json(container, kind, record)

    id_param = _kw("object_id", Annotated[str, _ID_PATH])
    _with_signature(get, [*_DEPENDENCIES, id_param])
    router.add_api_route(
        f"/{kind.name}/{{object_id}}",
        get,
        methods=["GET"],
        response_model=output_model,
        responses=ERROR_RESPONSES,
        summary=f"Get a {kind.singular}",
        tags=[tag],
        operation_id=f"get_{kind.singular}",
    )

    def patch(**kwargs: Any) -> Any:
        container: Container = kwargs["container"]
        body: BaseModel = kwargs["body"]
        changes = jsonable_encoder(body.model_dump(exclude_unset=True))
        record = catalog.update_object(
            container, kwargs["principal"], kind, kwargs["object_id"], changes
        )
        return record_to_json(container, kind, record)

    _with_signature(patch, [*_DEPENDENCIES, id_param, _kw("body", patch_model)])
    router.add_api_route(
        f"/{kind.name}/{{object_id}}",
        patch,
        methods=["PATCH"],
        response_model=output_model,
        responses=ERROR_RESPONSES,
        summary=f"Change some fields of a {kind.singular}",
        tags=[tag],
        operation_id=f"update_{kind.singular}",
    )

    def archive(**kwargs: Any) -> Any:
        container: Container = kwargs["container"]
        record = catalog.archive_object(container, kwargs["principal"], kind, kwargs["object_id"])
        if isinstance(record.spec, dict):
            # Archived as stored, its data no longer valid: the response model would refuse
            # it, so the stored fields are returned as they are.
            return JSONResponse(record_to_json(container, kind, record))
        return record_to_json(container, kind, record)

    _with_signature(archive, [*_DEPENDENCIES, id_param])
    router.add_api_route(
        f"/{kind.name}/{{object_id}}",
        archive,
        methods=["DELETE"],
        response_model=output_model,
        responses=ERROR_RESPONSES,
        summary=f"Archive a {kind.singular} (kept for history, hidden from lists)",
        tags=[tag],
        operation_id=f"archive_{kind.singular}",
    )

    if kind.name in ("advertisers", "publishers"):

        def secret(**kwargs: Any) -> Any:
            value = catalog.postback_secret(
                kwargs["container"], kwargs["principal"], kind, kwargs["object_id"]
            )
            return {"secret": value}

        _with_signature(secret, [*_DEPENDENCIES, id_param])
        router.add_api_route(
            f"/{kind.name}/{{object_id}}/secret",
            secret,
            methods=["GET"],
            response_model=SecretOut,
            responses=ERROR_RESPONSES,
            summary=f"The {kind.singular}'s postback secret",
            tags=[tag],
            operation_id=f"get_{kind.singular}_secret",
        )


def build_resource_router() -> APIRouter:
    """Routes for every resource kind."""
    router = APIRouter()
    for kind in KINDS.values():
        _add_kind_routes(router, kind)
    return router
