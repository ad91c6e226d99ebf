"""Conversions log: filters, pages, and approve or reject, one by one or in bulk."""

from __future__ import annotations

from datetime import date
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from perfmark.billing.domain.approval import ConversionStatus
from perfmark.billing.services.conversions import change_statuses
from perfmark.dashboard.conversions import ConversionFilters, list_conversions
from perfmark.dashboard.pages.common import ContainerDep, page_context
from perfmark.dashboard.rendering import DASHBOARD_PREFIX, render
from perfmark.dashboard.routing import CurrentSession, form_text, see_other
from perfmark.dashboard.services import require_roles, staff_roles
from perfmark.domain.accounts import WRITE_ROLES, Role
from perfmark.domain.events import TrackedEvent
from perfmark.errors import ValidationError
from perfmark.services.accounts import get_workspace

__all__ = ["add_routes"]

_FILTER_NAMES = ("status", "campaign_id", "publisher_id", "goal", "search", "from", "to")
_STATUSES = ("pending", "approved", "rejected", "refunded", "over_cap")
_REVIEW_TARGETS = frozenset({"approved", "rejected"})
Text = Annotated[str | None, Query(max_length=128)]


def add_routes(router: APIRouter) -> None:
    """GET /conversions and POST /conversions/status."""

    @router.get("/conversions", include_in_schema=False)
    def conversions_page(
        request: Request,
        session: CurrentSession,
        container: ContainerDep,
        status: Text = None,
        campaign_id: Text = None,
        publisher_id: Text = None,
        goal: Text = None,
        search: Text = None,
        from_: Annotated[date | None, Query(alias="from")] = None,
        to: date | None = None,
        cursor: Text = None,
        changed: int | None = None,
        unchanged: int | None = None,
        refused: int | None = None,
    ) -> Response:
        principal = session.principal
        require_roles(principal, staff_roles() | {Role.ADVERTISER}, "the conversions log")
        timezone = get_workspace(container, principal.workspace_id).spec.timezone
        typed = {
            "status": status,
            "campaign_id": campaign_id,
            "publisher_id": publisher_id,
            "goal": goal,
            "search": search,
            "from": from_,
            "to": to,
        }
        filters = ConversionFilters(
            status=status or None,
            campaign_id=campaign_id or None,
            publisher_id=publisher_id or None,
            goal_key=goal or None,
            search=search or None,
            start=from_,
            end=to,
            timezone=timezone,
        )
        page = list_conversions(container, principal, filters, cursor=cursor or None)
        kept = {k: v for k, v in typed.items() if v}
        next_link = (
            f"{DASHBOARD_PREFIX}/conversions?{urlencode({**kept, 'cursor': page.next_cursor})}"
            if page.next_cursor
            else ""
        )
        return render(
            request,
            "conversions.html",
            page_context(
                request,
                "conversions",
                "Conversions",
                page=page,
                typed=typed,
                statuses=_STATUSES,
                timezone=timezone,
                next_link=next_link,
                back_query=urlencode(kept),
                changed=changed,
                unchanged=unchanged,
                refused=refused,
                editable=principal.role in WRITE_ROLES,
                twin="GET /api/conversions, POST /api/conversions/approve and /reject",
            ),
        )

    @router.post("/conversions/status", include_in_schema=False)
    async def conversions_status(
        request: Request, session: CurrentSession, container: ContainerDep
    ) -> Response:
        form = await request.form()
        one = form_text(form, "one")
        if one:
            conversion_id, _, status = one.partition(":")
            ids = [conversion_id]
        else:
            ids = [value for value in form.getlist("ids") if isinstance(value, str)]
            status = form_text(form, "status")
        back = form_text(form, "back")
        if status not in _REVIEW_TARGETS:
            raise ValidationError(
                f"status {status!r} cannot be set here; use approved or rejected", field="status"
            )
        wal = request.app.state.wal

        def emit(event: TrackedEvent) -> None:
            wal.append(event.to_json())

        # Billing posts the ledger effect (approval, reversal) with the status change.
        result = await run_in_threadpool(
            lambda: change_statuses(
                container, session.principal, ids, ConversionStatus(status), emit=emit
            )
        )
        query = urlencode(
            {
                "changed": len(result.changed),
                "unchanged": len(result.unchanged),
                "refused": len(result.refused),
            }
        )
        return see_other(f"{DASHBOARD_PREFIX}/conversions?{back}&{query}")
