"""Settings: API keys, postback secrets and the team; for publishers, their postback URL."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool

from perfmark.adapters.store.kinds import ADVERTISERS, PUBLISHERS
from perfmark.billing.domain.postbacks import ALLOWED_MACROS
from perfmark.dashboard.pages.common import ContainerDep, page_context
from perfmark.dashboard.rendering import DASHBOARD_PREFIX, render
from perfmark.dashboard.routing import CurrentSession, form_text, see_other
from perfmark.dashboard.services import (
    own_publisher,
    require_roles,
    set_own_postback_template,
    staff_roles,
)
from perfmark.dashboard.users import create_user, list_team, remove_user
from perfmark.domain.accounts import WRITE_ROLES, Role, UserSpec
from perfmark.errors import PerfmarkError, ValidationError
from perfmark.services import accounts, catalog
from perfmark.services.accounts import CreatedApiKey
from perfmark.services.container import Container, Principal

__all__ = ["add_routes"]

_MEMBER_FIELDS = ("email", "name", "role", "advertiser_id", "publisher_id")
_KEY_FIELDS = ("name", "role", "advertiser_id", "publisher_id")


def _parties(container: Container, principal: Principal, kind: Any) -> dict[str, str]:
    page = catalog.list_objects(container, principal, kind, limit=200)
    return {record.id: record.spec.name for record in page.items}


def _settings_page(
    request: Request,
    container: Container,
    principal: Principal,
    *,
    new_key: CreatedApiKey | None = None,
    key_form: dict[str, str] | None = None,
    key_errors: dict[str, str] | None = None,
    member_form: dict[str, str] | None = None,
    member_errors: dict[str, str] | None = None,
    notice: str = "",
    status_code: int = 200,
) -> Response:
    if principal.role is Role.PUBLISHER:
        return _postback_page(request, container, principal, notice=notice)
    require_roles(principal, staff_roles(), "settings")
    admin = principal.role in WRITE_ROLES
    return render(
        request,
        "settings.html",
        page_context(
            request,
            "settings",
            "Settings",
            admin=admin,
            keys=accounts.list_api_keys(container, principal) if admin else (),
            team=list_team(container, principal),
            advertisers=_parties(container, principal, ADVERTISERS),
            publishers=_parties(container, principal, PUBLISHERS),
            roles=[role.value for role in Role],
            new_key=new_key,
            key_form=key_form or {},
            key_errors=key_errors or {},
            member_form=member_form or {},
            member_errors=member_errors or {},
            notice=notice,
            twin="GET /api/apikeys, GET /api/users, GET /api/advertisers/{id}/secret",
        ),
        status_code=status_code,
    )


def _postback_page(
    request: Request,
    container: Container,
    principal: Principal,
    *,
    typed: str | None = None,
    error: str = "",
    notice: str = "",
    status_code: int = 200,
) -> Response:
    own = own_publisher(container, principal)
    template = typed if typed is not None else (own.record.spec.postback_url_template or "")
    return render(
        request,
        "postback_settings.html",
        page_context(
            request,
            "postback",
            "Postback settings",
            own=own,
            template=template,
            error=error,
            notice=notice,
            macros=ALLOWED_MACROS,
            twin=f"GET /api/publishers/{own.record.id}",
        ),
        status_code=status_code,
    )


def _typed(form: Any, names: tuple[str, ...]) -> dict[str, str]:
    return {name: form_text(form, name).strip() for name in names}


def add_routes(router: APIRouter) -> None:
    """The settings page and its forms."""

    @router.get("/settings", include_in_schema=False)
    def settings_page(
        request: Request, session: CurrentSession, container: ContainerDep, saved: str = ""
    ) -> Response:
        notice = {
            "member": "Team member added.",
            "removed": "Team member removed.",
            "revoked": "API key revoked.",
            "postback": "Postback URL saved.",
        }.get(saved, "")
        return _settings_page(request, container, session.principal, notice=notice)

    @router.post("/settings/keys", include_in_schema=False)
    async def create_key(
        request: Request, session: CurrentSession, container: ContainerDep
    ) -> Response:
        typed = _typed(await request.form(), _KEY_FIELDS)

        def run() -> Response:
            principal = session.principal
            try:
                role = _role(typed["role"])
                created = accounts.create_api_key(
                    container,
                    principal,
                    typed["name"],
                    role,
                    advertiser_id=typed["advertiser_id"] or None,
                    publisher_id=typed["publisher_id"] or None,
                )
            except PerfmarkError as exc:
                if exc.status != 422:
                    raise
                field = exc.field if exc.field in _KEY_FIELDS else "name"
                return _settings_page(
                    request,
                    container,
                    principal,
                    key_form=typed,
                    key_errors={field: exc.message},
                    status_code=422,
                )
            # Rendered, not redirected: the secret must not travel in a URL, and shows once.
            return _settings_page(request, container, principal, new_key=created)

        return await run_in_threadpool(run)

    @router.post("/settings/keys/{key_id}/revoke", include_in_schema=False)
    def revoke_key(session: CurrentSession, container: ContainerDep, key_id: str) -> Response:
        accounts.revoke_api_key(container, session.principal, key_id)
        return see_other(f"{DASHBOARD_PREFIX}/settings?saved=revoked#keys")

    @router.get("/settings/secret/{kind}/{object_id}", include_in_schema=False)
    def show_secret(
        request: Request,
        session: CurrentSession,
        container: ContainerDep,
        kind: str,
        object_id: str,
    ) -> Response:
        resource = catalog.kind_named(kind)
        if resource not in (ADVERTISERS, PUBLISHERS):
            raise ValidationError(f"{kind} have no postback secret", field="kind")
        secret = catalog.postback_secret(container, session.principal, resource, object_id)
        return render(request, "_secret.html", {"secret": secret, "object_id": object_id})

    @router.post("/settings/team", include_in_schema=False)
    async def add_member(
        request: Request, session: CurrentSession, container: ContainerDep
    ) -> Response:
        form = await request.form()
        typed = _typed(form, _MEMBER_FIELDS)
        password = form_text(form, "password")

        def run() -> Response:
            principal = session.principal
            try:
                spec = UserSpec(
                    email=typed["email"],
                    name=typed["name"],
                    role=_role(typed["role"]),
                    advertiser_id=typed["advertiser_id"] or None,
                    publisher_id=typed["publisher_id"] or None,
                )
                create_user(container, principal, spec, password)
            except PerfmarkError as exc:
                if exc.status not in (409, 422):
                    raise
                field = exc.field if exc.field in (*_MEMBER_FIELDS, "password") else "email"
                return _settings_page(
                    request,
                    container,
                    principal,
                    member_form=typed,
                    member_errors={field: exc.message},
                    status_code=exc.status,
                )
            return see_other(f"{DASHBOARD_PREFIX}/settings?saved=member#team")

        return await run_in_threadpool(run)

    @router.post("/settings/team/{user_id}/remove", include_in_schema=False)
    def remove_member(session: CurrentSession, container: ContainerDep, user_id: str) -> Response:
        remove_user(container, session.principal, user_id)
        return see_other(f"{DASHBOARD_PREFIX}/settings?saved=removed#team")

    @router.post("/settings/postback", include_in_schema=False)
    async def save_postback(
        request: Request, session: CurrentSession, container: ContainerDep
    ) -> Response:
        template = form_text(await request.form(), "postback_url_template")

        def run() -> Response:
            principal = session.principal
            try:
                set_own_postback_template(container, principal, template)
            except ValidationError as exc:
                return _postback_page(
                    request,
                    container,
                    principal,
                    typed=template,
                    error=exc.message,
                    status_code=422,
                )
            return see_other(f"{DASHBOARD_PREFIX}/settings?saved=postback")

        return await run_in_threadpool(run)


def _role(value: str) -> Role:
    try:
        return Role(value)
    except ValueError:
        raise ValidationError(
            f"role {value!r} is unknown; use one of {', '.join(Role)}", field="role"
        ) from None
