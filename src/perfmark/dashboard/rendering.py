"""Jinja2 rendering for the dashboard: autoescaped templates, number filters, safe headers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, StrictUndefined

from perfmark import __version__
from perfmark.dashboard.auth import DashboardSession
from perfmark.domain.accounts import Role
from perfmark.money import currency_exponent, is_currency
from perfmark.reports.domain.catalog import METRICS

__all__ = [
    "DASHBOARD_PREFIX",
    "NavItem",
    "SECURITY_HEADERS",
    "format_change",
    "format_metric",
    "format_money",
    "format_number",
    "navigation",
    "render",
]

DASHBOARD_PREFIX = "/dashboard"
#: Scripts and styles come only from our own static files (no inline code), so an injected
#: tag could not run even if a value ever escaped the templates' autoescaping.
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
    ),
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}
_PERCENT_METRICS = frozenset({"ctr", "conversion_rate", "margin", "roi"})
_TIMES_METRICS = frozenset({"roas"})
_DASH = "–"


def format_number(value: Any) -> str:
    """A count with thousands separators; a dash for no value."""
    if value is None or value == "":
        return _DASH
    number = Decimal(str(value))
    if number == number.to_integral_value():
        return f"{int(number):,}"
    return f"{number.quantize(Decimal('0.01'), ROUND_HALF_EVEN):,}"


def format_money(value: Any, currency: str | None) -> str:
    """An amount rounded half-even to its currency's minor unit, with the currency code."""
    if value is None or value == "":
        return _DASH
    code = currency if currency and is_currency(currency) else None
    places = currency_exponent(code) if code else 2
    quantum = Decimal(1).scaleb(-places)
    amount = Decimal(str(value)).quantize(quantum, ROUND_HALF_EVEN)
    return f"{amount:,.{places}f} {code}" if code else f"{amount:,.{places}f}"


def format_change(value: Any) -> str:
    """A relative change as a signed percentage, or "n/a" when there is nothing to compare."""
    if value is None or value == "":
        return "n/a"
    percent = (Decimal(str(value)) * 100).quantize(Decimal("0.1"), ROUND_HALF_EVEN)
    sign = "+" if percent > 0 else ("−" if percent < 0 else "±")
    return f"{sign}{abs(percent)} %"


def format_metric(value: Any, name: str, currency: str | None = None) -> str:
    """A metric's value shown the way its kind reads: money, percent, times or count."""
    if value is None or value == "":
        return _DASH
    if name in _PERCENT_METRICS:
        return f"{(Decimal(str(value)) * 100).quantize(Decimal('0.01'), ROUND_HALF_EVEN)} %"
    if name in _TIMES_METRICS:
        return f"{Decimal(str(value)).quantize(Decimal('0.01'), ROUND_HALF_EVEN)}×"
    metric = METRICS.get(name)
    if metric is not None and metric.money:
        return format_money(value, currency)
    return format_number(value)


def _local(value: datetime | None, timezone: str = "UTC") -> str:
    if value is None:
        return _DASH
    return value.astimezone(ZoneInfo(timezone)).strftime("%Y-%m-%d %H:%M")


@dataclass(frozen=True)
class NavItem:
    """One entry of the main navigation."""

    key: str
    label: str
    path: str


_NAV: tuple[tuple[str, str, str, frozenset[Role]], ...] = (
    ("overview", "Overview", "/", frozenset(Role)),
    (
        "campaigns",
        "Campaigns",
        "/campaigns",
        frozenset({Role.OWNER, Role.ADMIN, Role.ANALYST, Role.ADVERTISER}),
    ),
    ("links", "My links", "/links", frozenset({Role.PUBLISHER})),
    ("reports", "Reports", "/reports", frozenset(Role)),
    (
        "attribution",
        "Attribution",
        "/attribution",
        frozenset({Role.OWNER, Role.ADMIN, Role.ANALYST}),
    ),
    (
        "conversions",
        "Conversions",
        "/conversions",
        frozenset({Role.OWNER, Role.ADMIN, Role.ANALYST, Role.ADVERTISER}),
    ),
    (
        "publishers",
        "Publishers & payouts",
        "/publishers",
        frozenset({Role.OWNER, Role.ADMIN, Role.ANALYST}),
    ),
    ("payouts", "Payouts", "/publishers", frozenset({Role.PUBLISHER})),
    (
        "advertisers",
        "Advertisers & invoices",
        "/advertisers",
        frozenset({Role.OWNER, Role.ADMIN, Role.ANALYST}),
    ),
    ("invoices", "Invoices", "/advertisers", frozenset({Role.ADVERTISER})),
    ("settings", "Settings", "/settings", frozenset({Role.OWNER, Role.ADMIN, Role.ANALYST})),
    ("postback", "Postback settings", "/settings", frozenset({Role.PUBLISHER})),
)


def navigation(role: Role) -> tuple[NavItem, ...]:
    """The pages a role may open, in menu order."""
    return tuple(
        NavItem(key, label, DASHBOARD_PREFIX + path)
        for key, label, path, roles in _NAV
        if role in roles
    )


@cache
def _environment() -> Environment:
    """The template environment, built on first use (nothing is built at import)."""
    environment = Environment(
        loader=PackageLoader("perfmark.dashboard", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters.update(
        number=format_number,
        money=format_money,
        change=format_change,
        metric=format_metric,
        localtime=_local,
    )
    environment.globals.update(prefix=DASHBOARD_PREFIX, version=__version__)
    return environment


def render(
    request: Request,
    template: str,
    context: dict[str, Any] | None = None,
    *,
    status_code: int = 200,
    session: DashboardSession | None = None,
) -> HTMLResponse:
    """Render a template with the signed-in user, the navigation and the CSRF token."""
    session = session or getattr(request.state, "dashboard_session", None)
    values: dict[str, Any] = {
        "request_path": request.url.path,
        "session": session,
        "nav": navigation(session.role) if session else (),
        "csrf_token": session.csrf_token if session else "",
        "page_key": "",
        "title": "perfmark",
    }
    values.update(context or {})
    html = _environment().get_template(template).render(values)
    return HTMLResponse(html, status_code=status_code, headers=SECURITY_HEADERS)
