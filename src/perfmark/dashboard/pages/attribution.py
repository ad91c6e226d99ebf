"""Attribution: every model's credit side by side, the chosen model, and the top paths."""

from __future__ import annotations

from datetime import date, timedelta
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

__all__ = ["add_routes", "comparison_chart"]

DEFAULT_DAYS = 30


def comparison_chart(body: dict[str, Any]) -> dict[str, Any]:
    """Conversions credited to each key (channel, campaign or publisher) by each model."""
    comparison = body["comparison"]
    series = [
        (model, [row[index] for row in comparison["conversions"]], "y")
        for index, model in enumerate(comparison["models"])
    ]
    return chart_spec("bar", comparison["keys"], series)


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
            key = (
                f"attribution:{principal.workspace_id}:{start}:{end}:{period.timezone}:{model}:{by}"
            )
            body = cached_over_lake(
                container,
                key,
                lambda: attribution_to_json(
                    run_attribution(
                        container,
                        principal.workspace_id,
                        start=start,
                        end=end,
                        timezone=period.timezone,
                        model=model,
                        journey_options=JourneyOptions(label=by),
                    ),
                    by,
                ),
            )
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
