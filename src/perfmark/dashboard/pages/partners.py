"""Publishers and payouts; advertisers and invoices (a portal user sees only its own)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from perfmark.billing.domain.statements import StatementKind
from perfmark.dashboard.billing_views import party_balances, statements
from perfmark.dashboard.pages.common import ContainerDep, DaysQuery, page_context
from perfmark.dashboard.rendering import render
from perfmark.dashboard.routing import CurrentSession
from perfmark.dashboard.services import advertiser_rows, period_ending_today, publisher_rows
from perfmark.domain.accounts import Role

__all__ = ["add_routes"]


def add_routes(router: APIRouter) -> None:
    """GET /publishers and GET /advertisers."""

    @router.get("/publishers", include_in_schema=False)
    def publishers_page(
        request: Request, session: CurrentSession, container: ContainerDep, days: DaysQuery = 30
    ) -> Response:
        principal = session.principal
        period = period_ending_today(container, principal, days)
        rows, currency = publisher_rows(container, principal, period)
        own = principal.role is Role.PUBLISHER
        return render(
            request,
            "partners.html",
            page_context(
                request,
                "payouts" if own else "publishers",
                "Payouts" if own else "Publishers & payouts",
                party="publisher",
                rows=rows,
                party_names={r.id: r.name for r in rows},
                currency=currency,
                period=period,
                days=days,
                balances=party_balances(container, principal),
                statements=statements(container, principal, StatementKind.PAYOUT.value),
                metric_names=("clicks", "conversions", "conversions_approved", "payout"),
                twin=f"GET /api/dashboard/publishers?days={days}",
            ),
        )

    @router.get("/advertisers", include_in_schema=False)
    def advertisers_page(
        request: Request, session: CurrentSession, container: ContainerDep, days: DaysQuery = 30
    ) -> Response:
        principal = session.principal
        period = period_ending_today(container, principal, days)
        rows, currency = advertiser_rows(container, principal, period)
        own = principal.role is Role.ADVERTISER
        return render(
            request,
            "partners.html",
            page_context(
                request,
                "invoices" if own else "advertisers",
                "Invoices" if own else "Advertisers & invoices",
                party="advertiser",
                rows=rows,
                party_names={r.id: r.name for r in rows},
                currency=currency,
                period=period,
                days=days,
                balances=party_balances(container, principal),
                statements=statements(container, principal, StatementKind.INVOICE.value),
                metric_names=("clicks", "conversions", "conversions_approved", "cost", "revenue"),
                twin=f"GET /api/dashboard/advertisers?days={days}",
            ),
        )
