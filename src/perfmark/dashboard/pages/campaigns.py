"""Campaigns: the list with metrics and status toggles, the editor, links and instructions."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from perfmark.adapters.store.codec import decode_spec
from perfmark.adapters.store.kinds import CAMPAIGNS, LINKS
from perfmark.dashboard.campaign_form import (
    ROW_SECTIONS,
    CampaignForm,
    form_from_spec,
    parse_campaign_form,
)
from perfmark.dashboard.instructions import campaign_instructions
from perfmark.dashboard.pages.common import ContainerDep, DaysQuery, page_context
from perfmark.dashboard.rendering import DASHBOARD_PREFIX, render
from perfmark.dashboard.routing import CurrentSession, form_text, is_htmx, see_other
from perfmark.dashboard.services import (
    campaign_rows,
    editor_options,
    link_rows,
    period_ending_today,
    require_roles,
    staff_roles,
)
from perfmark.domain.accounts import WRITE_ROLES, Role
from perfmark.domain.campaigns import (
    ALLOWED_TRANSITIONS,
    CampaignSpec,
    CampaignStatus,
    TargetingField,
)
from perfmark.domain.links import TrackingLinkSpec
from perfmark.domain.parties import Channel
from perfmark.domain.pricing import PricingModel
from perfmark.domain.records import Record
from perfmark.errors import PerfmarkError, ValidationError
from perfmark.services import catalog
from perfmark.services.container import Container, Principal

__all__ = ["add_routes"]

_LINK_FIELDS = ("publisher_id", "sub1", "utm_source", "utm_medium", "utm_campaign")
#: The statuses a list toggle moves between.
_TOGGLE = {
    CampaignStatus.ACTIVE: CampaignStatus.PAUSED,
    CampaignStatus.PAUSED: CampaignStatus.ACTIVE,
    CampaignStatus.DRAFT: CampaignStatus.ACTIVE,
    CampaignStatus.CAPPED: CampaignStatus.ACTIVE,
}


def _form_dict(form: FormData) -> dict[str, str]:
    return {key: value for key, value in form.items() if isinstance(value, str)}


def _status_choices(current: CampaignStatus | None) -> list[str]:
    if current is None:
        return ["draft", "active", "paused"]
    return [current.value, *sorted(status.value for status in ALLOWED_TRANSITIONS[current])]


def _editor(
    request: Request,
    container: Container,
    principal: Principal,
    form: CampaignForm,
    record: Record[CampaignSpec] | None,
    *,
    link_form: dict[str, str] | None = None,
    link_errors: dict[str, str] | None = None,
    notice: str = "",
    status_code: int = 200,
) -> Response:
    options = editor_options(container, principal)
    # Which publishers carry a campaign is the network's business, not the advertiser's.
    staff = principal.role in staff_roles()
    links = link_rows(container, principal, campaign_id=record.id) if record and staff else None
    instructions = campaign_instructions(container, principal, record.id) if record else None
    title = record.spec.name if record else "New campaign"
    return render(
        request,
        "campaign_edit.html",
        page_context(
            request,
            "campaigns",
            title,
            record=record,
            form=form,
            options=options,
            sections=ROW_SECTIONS,
            status_choices=_status_choices(record.spec.status if record else None),
            links=links.rows if links is not None else (),
            invalid_links=links.invalid if links is not None else (),
            show_links=staff,
            instructions=instructions,
            models=[model.value for model in PricingModel],
            channels=[channel.value for channel in Channel],
            target_fields=[name.value for name in TargetingField],
            link_form=link_form or {},
            link_errors=link_errors or {},
            notice=notice,
            twin=(
                f"GET /api/campaigns/{record.id} and GET /api/dashboard/campaigns/{record.id}"
                "/instructions"
                if record
                else "POST /api/campaigns"
            ),
        ),
        status_code=status_code,
    )


def _save(
    container: Container,
    principal: Principal,
    form: dict[str, str],
    goal_ids: list[str],
    record: Record[CampaignSpec] | None,
) -> tuple[CampaignForm, Record[CampaignSpec] | None]:
    require_roles(principal, frozenset(WRITE_ROLES), "the campaign editor")
    parsed = parse_campaign_form(form, goal_ids, current=record.spec if record else None)
    if not parsed.valid:
        return parsed, None
    try:
        if record is None:
            saved: Record[CampaignSpec] = catalog.create_object(
                container, principal, CAMPAIGNS, decode_spec(CampaignSpec, parsed.data)
            )
        else:
            changes = {
                key: value
                for key, value in parsed.data.items()
                if key not in ("advertiser_id", "currency")
            }
            saved = catalog.update_object(container, principal, CAMPAIGNS, record.id, changes)
    except PerfmarkError as exc:
        if exc.status not in (409, 422):
            raise
        parsed.add_error(exc)
        return parsed, None
    return parsed, saved


def _toggle_row(
    request: Request, container: Container, principal: Principal, campaign_id: str, status: str
) -> Response:
    record = catalog.update_object(container, principal, CAMPAIGNS, campaign_id, {"status": status})
    if not is_htmx(request):
        return see_other(f"{DASHBOARD_PREFIX}/campaigns")
    return render(
        request,
        "_campaign_status.html",
        {"record": record, "toggle": _TOGGLE, "editable": True},
    )


def add_routes(router: APIRouter) -> None:
    """The campaign pages, and the publisher's own links."""

    @router.get("/campaigns", include_in_schema=False)
    def campaigns_page(
        request: Request,
        session: CurrentSession,
        container: ContainerDep,
        days: DaysQuery = 7,
        status: str | None = None,
    ) -> Response:
        principal = session.principal
        period = period_ending_today(container, principal, days)
        listing = campaign_rows(container, principal, period, status=status or None)
        return render(
            request,
            "campaigns.html",
            page_context(
                request,
                "campaigns",
                "Campaigns",
                rows=listing.rows,
                invalid=listing.invalid,
                currency=listing.currency,
                days=days,
                status=status or "",
                statuses=[s.value for s in CampaignStatus],
                period=period,
                toggle=_TOGGLE,
                editable=principal.role in WRITE_ROLES,
                twin=f"GET /api/dashboard/campaigns?days={days}",
            ),
        )

    @router.post("/campaigns/{campaign_id}/status", include_in_schema=False)
    async def campaign_status(
        request: Request, session: CurrentSession, container: ContainerDep, campaign_id: str
    ) -> Response:
        status = form_text(await request.form(), "status")
        return await run_in_threadpool(
            _toggle_row, request, container, session.principal, campaign_id, status
        )

    @router.get("/campaigns/new", include_in_schema=False)
    def new_campaign(
        request: Request, session: CurrentSession, container: ContainerDep
    ) -> Response:
        require_roles(session.principal, frozenset(WRITE_ROLES), "the campaign editor")
        return _editor(request, container, session.principal, form_from_spec(None), None)

    @router.post("/campaigns/new", include_in_schema=False)
    async def create_campaign(
        request: Request, session: CurrentSession, container: ContainerDep
    ) -> Response:
        form = await request.form()
        goal_ids = [v for v in form.getlist("goal_ids") if isinstance(v, str)]

        def run() -> Response:
            parsed, saved = _save(container, session.principal, _form_dict(form), goal_ids, None)
            if saved is None:
                return _editor(request, container, session.principal, parsed, None, status_code=422)
            return see_other(f"{DASHBOARD_PREFIX}/campaigns/{saved.id}?saved=created")

        return await run_in_threadpool(run)

    @router.get("/campaigns/{campaign_id}", include_in_schema=False)
    def campaign_page(
        request: Request,
        session: CurrentSession,
        container: ContainerDep,
        campaign_id: str,
        saved: str | None = None,
    ) -> Response:
        principal = session.principal
        record: Record[CampaignSpec] = catalog.get_object(
            container, principal, CAMPAIGNS, campaign_id
        )
        notice = {
            "created": "Campaign created.",
            "updated": "Changes saved.",
            "link": "Tracking link created.",
        }.get(saved or "", "")
        return _editor(
            request, container, principal, form_from_spec(record.spec), record, notice=notice
        )

    @router.post("/campaigns/{campaign_id}", include_in_schema=False)
    async def update_campaign(
        request: Request, session: CurrentSession, container: ContainerDep, campaign_id: str
    ) -> Response:
        form = await request.form()
        goal_ids = [v for v in form.getlist("goal_ids") if isinstance(v, str)]

        def run() -> Response:
            principal = session.principal
            record: Record[CampaignSpec] = catalog.get_object(
                container, principal, CAMPAIGNS, campaign_id
            )
            parsed, saved = _save(container, principal, _form_dict(form), goal_ids, record)
            if saved is None:
                return _editor(request, container, principal, parsed, record, status_code=422)
            return see_other(f"{DASHBOARD_PREFIX}/campaigns/{saved.id}?saved=updated")

        return await run_in_threadpool(run)

    @router.post("/campaigns/{campaign_id}/links", include_in_schema=False)
    async def create_link(
        request: Request, session: CurrentSession, container: ContainerDep, campaign_id: str
    ) -> Response:
        form = _form_dict(await request.form())

        def run() -> Response:
            principal = session.principal
            record: Record[CampaignSpec] = catalog.get_object(
                container, principal, CAMPAIGNS, campaign_id
            )
            typed = {name: form.get(name, "").strip() for name in _LINK_FIELDS}
            data: dict[str, Any] = {k: v for k, v in typed.items() if v}
            data["campaign_id"] = campaign_id
            try:
                if not typed["publisher_id"]:
                    raise ValidationError("choose the publisher of this link", field="publisher_id")
                spec = decode_spec(TrackingLinkSpec, data)
                catalog.create_object(container, principal, LINKS, spec)
            except PerfmarkError as exc:
                if exc.status not in (409, 422):
                    raise
                field = exc.field if exc.field in _LINK_FIELDS else "publisher_id"
                return _editor(
                    request,
                    container,
                    principal,
                    form_from_spec(record.spec),
                    record,
                    link_form=typed,
                    link_errors={field: exc.message},
                    status_code=422,
                )
            return see_other(f"{DASHBOARD_PREFIX}/campaigns/{campaign_id}?saved=link#links")

        return await run_in_threadpool(run)

    @router.get("/links", include_in_schema=False)
    def my_links(request: Request, session: CurrentSession, container: ContainerDep) -> Response:
        principal = session.principal
        require_roles(principal, frozenset({Role.PUBLISHER}), "your links")
        listing = link_rows(container, principal)
        return render(
            request,
            "links.html",
            page_context(
                request,
                "links",
                "My links",
                links=listing.rows,
                invalid=listing.invalid,
                twin="GET /api/links",
            ),
        )
