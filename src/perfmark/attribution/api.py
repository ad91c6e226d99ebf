"""`GET /api/attribution`: credits per channel, campaign or publisher, and model comparison."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query

from perfmark.attribution.domain.models import ModelOptions
from perfmark.attribution.domain.results import AttributionResult
from perfmark.attribution.journeys import JourneyOptions
from perfmark.attribution.service import AttributionReport, run_attribution
from perfmark.domain.accounts import Role
from perfmark.errors import ForbiddenError, ValidationError
from perfmark.services.container import Container
from perfmark.web.api.deps import CurrentPrincipal, get_container
from perfmark.web.api.resources import ERROR_RESPONSES

__all__ = ["attribution_to_json", "build_attribution_router", "parse_options"]


def _result_json(result: AttributionResult) -> dict[str, Any]:
    return {
        "model": result.model,
        "total_conversions": result.total_conversions,
        "total_value": result.total_value,
        "parameters": dict(result.parameters),
        "notes": list(result.notes),
        "credits": [
            {
                "key": credit.channel,
                "conversions": credit.conversions,
                "value": credit.value,
                "removal_effect_conversions": credit.removal_effect_conversions,
                "removal_effect_value": credit.removal_effect_value,
                "error_conversions": credit.error_conversions,
                "error_value": credit.error_value,
            }
            for credit in result.credits
        ],
    }


def attribution_to_json(report: AttributionReport, by: str) -> dict[str, Any]:
    """The API body of an attribution report."""
    comparison_keys = sorted({c.channel for r in report.comparison for c in r.credits})
    return {
        "by": by,
        "result": _result_json(report.model),
        "comparison": {
            "keys": comparison_keys,
            "models": [r.model for r in report.comparison],
            "conversions": [
                [r.conversions_by_channel().get(key, 0.0) for r in report.comparison]
                for key in comparison_keys
            ],
        },
        "top_paths": list(report.top_paths),
        "assisted": list(report.assisted),
        "path_length": {str(k): v for k, v in sorted(report.journeys.path_length.items())},
        "time_lag_days": {str(k): v for k, v in sorted(report.journeys.time_lag_days.items())},
        "conversions_without_touches": report.journeys.conversions_without_touches,
        "conversions": list(report.conversions),
    }


def parse_options(order: int, half_life_days: float, position: str, seed: int) -> ModelOptions:
    """Model options from request parameters, with errors naming the parameter."""
    try:
        shares = tuple(float(part) for part in position.split(","))
    except ValueError:
        raise ValidationError(
            f"position {position!r} is not three numbers like 40,20,40", field="position"
        ) from None
    if len(shares) != 3:
        raise ValidationError(
            f"position {position!r} needs three shares: first,middle,last", field="position"
        )
    total = sum(shares)
    scaled = (shares[0] / total, shares[1] / total, shares[2] / total) if total > 0 else shares
    return ModelOptions(
        order=order, half_life_days=half_life_days, position_shares=scaled, seed=seed
    )


def build_attribution_router() -> APIRouter:
    """The attribution endpoint."""
    router = APIRouter()

    @router.get(
        "/attribution",
        responses=ERROR_RESPONSES,
        tags=["attribution"],
        summary="Attribution credits, model comparison, top paths and journey shapes",
    )
    def attribution(
        container: Annotated[Container, Depends(get_container)],
        principal: CurrentPrincipal,
        from_: Annotated[date, Query(alias="from")],
        to: Annotated[date, Query()],
        tz: Annotated[str, Query(max_length=64)] = "UTC",
        model: Annotated[
            Literal[
                "first_touch",
                "last_touch",
                "last_non_direct",
                "linear",
                "time_decay",
                "position_based",
                "markov",
                "shapley",
            ],
            Query(),
        ] = "markov",
        order: Annotated[int, Query(ge=1, le=3, description="Markov chain order")] = 1,
        by: Annotated[Literal["channel", "campaign", "publisher"], Query()] = "channel",
        half_life_days: Annotated[float, Query(gt=0, le=365)] = 7.0,
        position: Annotated[
            str, Query(max_length=40, description="first,middle,last shares")
        ] = "40,20,40",
        click_window_days: Annotated[int, Query(ge=1, le=365)] = 30,
        view_window_days: Annotated[int, Query(ge=0, le=365)] = 1,
        seed: Annotated[int, Query(ge=0, le=2**31)] = 0,
        drilldown: Annotated[
            int,
            Query(
                ge=0, le=1000, description="Per-conversion credit rows for the latest N conversions"
            ),
        ] = 0,
    ) -> Any:
        if principal.role in (Role.ADVERTISER, Role.PUBLISHER):
            raise ForbiddenError(
                "attribution covers the whole workspace; use an owner, admin or analyst key"
            )
        if to < from_:
            raise ValidationError(f"to ({to}) is before from ({from_})", field="to")
        report = run_attribution(
            container,
            principal.workspace_id,
            start=from_,
            end=to,
            timezone=tz,
            model=model,
            options=parse_options(order, half_life_days, position, seed),
            journey_options=JourneyOptions(
                click_window_days=click_window_days, view_window_days=view_window_days, label=by
            ),
            drilldown_limit=drilldown,
        )
        return attribution_to_json(report, by)

    return router
