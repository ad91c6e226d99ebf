"""Attribution: every model's credit side by side, the chosen model, and the top paths."""

from __future__ import annotations

from datetime import UTC, date, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response

from perfmark.attribution.api import attribution_to_json
from perfmark.attribution.domain.models import MODEL_NAMES
from perfmark.attribution.journeys import JourneyOptions
from perfmark.attribution.service import run_attribution
from perfmark.dashboard.cache import cached_over_lake
from perfmark.dashboard.pages.common import ContainerDep, chart_spec, page_context
from perfmark.dashboard.rendering import render
from perfmark.dashboard.routing import CurrentSession
from perfmark.dashboard.services import period_ending_today, require_roles, staff_roles
from perfmark.errors import ValidationError
from perfmark.services.container import Container

__all__ = ["DEFAULT_DAYS", "add_routes", "attribution_body", "comparison_chart"]

DEFAULT_DAYS = 30
#: How old the figures shown while fresh ones are computed may be, in seconds.
STALE_FOR_S = 300


def comparison_chart(body: dict[str, Any]) -> dict[str, Any]:
    """Conversions credited to each key (channel, campaign or publisher) by each model."""
    comparison = body["comparison"]
    series = [
        (model, [row[index] for row in comparison["conversions"]], "y")
        for index, model in enumerate(comparison["models"])
    ]
    return chart_spec("bar", comparison["keys"], series)


def attribution_body(
    container: Container,
    workspace_id: str,
    start: date,
    end: date,
    timezone: str,
    model: str,
    by: str,
) -> dict[str, Any]:
    """The page's figures, kept over the lake; `computed_at` says when they were computed.

    Attribution reads every journey of the period (about a second on the demo lake), so
    after new events the page shows the figures computed up to STALE_FOR_S ago, stamped
    with their time, while they are recomputed in the background.
    """
    key = f"attribution:{workspace_id}:{start}:{end}:{timezone}:{model}:{by}"

    def compute() -> dict[str, Any]:
        body = attribution_to_json(
            run_attribution(
                container, workspace_id, start=start, end=end, timezone=timezone,
                model=model, journey_options=JourneyOptions(label=by),
            ),
            by,
        )  # fmt: skip
        body["computed_at"] = container.clock.now().astimezone(UTC).strftime("%H:%M:%S UTC")
        return body

    return cached_over_lake(container, key, compute, stale_for_s=STALE_FOR_S)


def add_routes(router: APIRouter) -> None:
    """GET /attribution."""

    @router.get("/attribution", include_in_schema=False)
    def attribution_page(
        request: Request,
        session: CurrentSession,
        container: ContainerDep,
        from_: Annotated[date | None, Query(alias="from")] = None,
        to: date | None = None,
        model: str = "markov",
        by: Literal["channel", "campaign", "publisher"] = "channel",
    ) -> Response:
        principal = session.principal
        require_roles(principal, staff_roles(), "attribution")
        period = period_ending_today(container, principal, DEFAULT_DAYS)
        end = to or period.end
        start = from_ or end - timedelta(days=DEFAULT_DAYS - 1)
        body: dict[str, Any] | None = None
        error = ""
        try:
            if end < start:
                raise ValidationError(f"to ({end}) is before from ({start})", field="to")
            body = attribution_body(container, principal.workspace_id, start, end,
                                    period.timezone, model, by)  # fmt: skip
        except ValidationError as exc:
            error = exc.message
        return render(
            request,
            "attribution.html",
            page_context(
                request,
                "attribution",
                "Attribution",
                body=body,
                error=error,
                chart=comparison_chart(body) if body else None,
                start=start,
                end=end,
                model=model,
                by=by,
                models=MODEL_NAMES,
                timezone=period.timezone,
                twin=f"GET /api/attribution?from={start}&to={end}&model={model}&by={by}",
            ),
        )
