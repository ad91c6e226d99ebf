"""Publishers and payouts; advertisers and invoices (a portal user sees only its own)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fastapi import APIRouter, Request, Response

from perfmark.billing.domain.statements import StatementKind
from perfmark.dashboard.billing_views import party_balances, statements
from perfmark.dashboard.pages.common import ContainerDep, DaysQuery, page_context
from perfmark.dashboard.rendering import render
from perfmark.dashboard.routing import CurrentSession
from perfmark.dashboard.services import (
    Listing,
    PartnerRow,
    Period,
    advertiser_rows,
    period_ending_today,
    publisher_rows,
)
from perfmark.domain.accounts import Role
from perfmark.services.container import Container, Principal

__all__ = ["add_routes"]


@dataclass(frozen=True)
class _PartnerPage:
    """What tells the publishers page from the advertisers page."""

    party: str
    #: The page key, also the dashboard API path of the page's figures.
    key: str
    title: str
    #: A portal user of this role sees its own statements, under `own_key` and `own_title`.
    own_role: Role
    own_key: str
    own_title: str
    rows: Callable[[Container, Principal, Period], Listing[PartnerRow]]
    statement_kind: StatementKind
    metric_names: tuple[str, ...]


_PUBLISHERS = _PartnerPage(
    party="publisher",
    key="publishers",
    title="Publishers & payouts",
    own_role=Role.PUBLISHER,
    own_key="payouts",
    own_title="Payouts",
    rows=publisher_rows,
    statement_kind=StatementKind.PAYOUT,
    metric_names=("clicks", "conversions", "conversions_approved", "payout"),
)
_ADVERTISERS = _PartnerPage(
    party="advertiser",
    key="advertisers",
    title="Advertisers & invoices",
    own_role=Role.ADVERTISER,
    own_key="invoices",
    own_title="Invoices",
    rows=advertiser_rows,
    statement_kind=StatementKind.INVOICE,
    metric_names=("clicks", "conversions", "conversions_approved", "cost", "revenue"),
)


def _render_partners(
    request: Request, container: Container, principal: Principal, days: int, page: _PartnerPage
) -> Response:
    period = period_ending_today(container, principal, days)
    listing = page.rows(container, principal, period)
    rows = listing.rows
    own = principal.role is page.own_role
    return render(
        request,
        "partners.html",
        page_context(
            request,
            page.own_key if own else page.key,
            page.own_title if own else page.title,
            party=page.party,
            rows=rows,
            party_names={r.id: r.name for r in rows},
            invalid=listing.invalid,
            currency=listing.currency,
            period=period,
            days=days,
            balances=party_balances(container, principal),
            statements=statements(container, principal, page.statement_kind.value),
            metric_names=page.metric_names,
            twin=f"GET /api/dashboard/{page.key}?days={days}",
        ),
    )


def add_routes(router: APIRouter) -> None:
    """GET /publishers and GET /advertisers."""

    @router.get("/publishers", include_in_schema=False)
    def publishers_page(
        request: Request, session: CurrentSession, container: ContainerDep, days: DaysQuery = 30
    ) -> Response:
        return _render_partners(request, container, session.principal, days, _PUBLISHERS)

    @router.get("/advertisers", include_in_schema=False)
    def advertisers_page(
        request: Request, session: CurrentSession, container: ContainerDep, days: DaysQuery = 30
    ) -> Response:
        return _render_partners(request, container, session.principal, days, _ADVERTISERS)
