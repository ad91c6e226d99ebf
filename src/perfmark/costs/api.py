"""Routes for cost data: CSV imports of ad-platform exports, JSON rows, listing, exchange rates."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Query, UploadFile
from pydantic import BaseModel, ConfigDict, Field

from perfmark.billing.domain.pricing import ExchangeRate
from perfmark.costs import services
from perfmark.costs.domain import CostRow, GenericMapping, Layout, parse_campaign_map
from perfmark.domain.rules import check_decimal
from perfmark.errors import ValidationError
from perfmark.services.container import Container
from perfmark.web.api.deps import CurrentPrincipal, get_container
from perfmark.web.api.resources import ERROR_RESPONSES

__all__ = ["build_costs_router"]

ContainerDep = Annotated[Container, Depends(get_container)]

#: Most rows one page of GET /api/costs returns.
MAX_PAGE_ROWS = 1000
_MAX_RATES_PER_REQUEST = 10_000


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CostRowIn(_Strict):
    """One day's spend of one campaign; name the campaign by id or by name."""

    date: dt.date
    spend: str = Field(max_length=40, description='Exact decimal string, e.g. "1234.56"')
    currency: str = Field(max_length=8, description="ISO 4217 code, e.g. EUR")
    campaign_id: str | None = Field(default=None, max_length=64)
    campaign_name: str | None = Field(default=None, max_length=400)


class CostRowsIn(_Strict):
    """Rows of one source; they replace its rows of the same campaigns in the period."""

    source: str = Field(max_length=64, description="e.g. tiktok_ads or google_ads:123-456-7890")
    start_date: dt.date | None = Field(default=None, description="Default: the first row's day")
    end_date: dt.date | None = Field(default=None, description="Default: the last row's day")
    rows: list[CostRowIn] = Field(max_length=services.MAX_ROWS_PER_REQUEST)


class CostRowOut(BaseModel):
    """A stored cost row, in the currency it was paid in."""

    date: dt.date
    campaign_id: str
    source: str
    spend: str
    currency: str


class CostListOut(BaseModel):
    """A page of cost rows and the cursor of the next page."""

    data: list[CostRowOut]
    next_cursor: str | None = None


class CurrencyTotal(BaseModel):
    """The spend written in one currency."""

    currency: str
    spend: str


class ImportOut(BaseModel):
    """What an import replaced and wrote."""

    import_id: str
    source: str
    start_date: dt.date
    end_date: dt.date
    rows: int
    replaced: int
    campaign_ids: list[str]
    totals: list[CurrencyTotal]


class RateIn(_Strict):
    """One unit of `base` is worth `rate` units of `quote` from `valid_from` on."""

    base: str = Field(max_length=8)
    quote: str = Field(max_length=8)
    rate: str = Field(max_length=60, description='Exact decimal string, e.g. "1.0412"')
    valid_from: dt.datetime = Field(description="ISO 8601 instant; no offset means UTC")


class RatesIn(_Strict):
    """Exchange rates; a rate of the same pair and start replaces the stored one."""

    rates: list[RateIn] = Field(max_length=_MAX_RATES_PER_REQUEST)


class RateOut(BaseModel):
    """A stored exchange rate."""

    base: str
    quote: str
    rate: str
    valid_from: dt.datetime


class RateListOut(BaseModel):
    """The workspace's exchange rates."""

    data: list[RateOut]


class RatesImportOut(BaseModel):
    """How many rates were written, and how many of them replaced a stored one."""

    rates: int
    replaced: int


def _row_json(row: CostRow) -> dict[str, Any]:
    return {
        "date": row.date,
        "campaign_id": row.campaign_id,
        "source": row.source,
        "spend": str(row.spend),
        "currency": row.currency,
    }


def _import_json(result: services.ImportResult) -> dict[str, Any]:
    return {
        "import_id": result.import_id,
        "source": result.source,
        "start_date": result.period.start,
        "end_date": result.period.end,
        "rows": result.rows,
        "replaced": result.replaced,
        "campaign_ids": list(result.campaign_ids),
        "totals": [{"currency": c, "spend": str(spend)} for c, spend in result.totals],
    }


def _rate_json(rate: ExchangeRate) -> dict[str, Any]:
    return {
        "base": rate.base,
        "quote": rate.quote,
        "rate": str(rate.rate),
        "valid_from": rate.valid_from,
    }


def _generic_mapping(layout: Layout, options: dict[str, str | None]) -> GenericMapping | None:
    given = {name: value for name, value in options.items() if value is not None}
    if layout is not Layout.GENERIC:
        if given:
            name = sorted(given)[0]
            raise ValidationError(
                f"{name} applies to layout=generic only; the {layout.value} layout has fixed "
                "columns",
                field=name,
            )
        return None
    return GenericMapping(**given)


def _rate(index: int, item: RateIn) -> ExchangeRate:
    try:
        rate = check_decimal("rate", item.rate, exclusive_minimum=True)
        return ExchangeRate(item.base, item.quote, rate, item.valid_from)
    except ValidationError as exc:
        raise ValidationError(
            f"rates[{index}]: {exc.message}", field=f"rates[{index}].{exc.field or 'rate'}"
        ) from None
    except (OverflowError, ValueError):  # an instant whose UTC form is outside year 1-9999
        raise ValidationError(
            f"rates[{index}]: valid_from {item.valid_from.isoformat()} cannot be expressed in "
            "UTC; give a time between years 1 and 9999",
            field=f"rates[{index}].valid_from",
        ) from None


def build_costs_router() -> APIRouter:
    """Routes for /api/costs and /api/rates."""
    router = APIRouter()

    @router.post(
        "/costs/import",
        response_model=ImportOut,
        responses=ERROR_RESPONSES,
        tags=["costs"],
        summary="Import an ad-platform cost export (replaces its period)",
    )
    def import_costs(
        container: ContainerDep,
        principal: CurrentPrincipal,
        file: Annotated[UploadFile, File(description="The exported CSV")],
        layout: Annotated[Layout, Form(description="google_ads, meta_ads or generic")],
        source: Annotated[
            str | None, Form(max_length=64, description="Default: the layout's name")
        ] = None,
        campaign_map: Annotated[
            list[str] | None,
            Form(description="Repeatable 'Platform campaign name=cmp_...' entries"),
        ] = None,
        start_date: Annotated[dt.date | None, Form()] = None,
        end_date: Annotated[dt.date | None, Form()] = None,
        campaign_column: Annotated[str | None, Form(max_length=200)] = None,
        date_column: Annotated[str | None, Form(max_length=200)] = None,
        spend_column: Annotated[str | None, Form(max_length=200)] = None,
        currency_column: Annotated[str | None, Form(max_length=200)] = None,
        currency: Annotated[str | None, Form(max_length=8)] = None,
        date_format: Annotated[str | None, Form(max_length=200)] = None,
        decimal_separator: Annotated[str | None, Form(max_length=1)] = None,
    ) -> Any:
        mapping = _generic_mapping(
            layout,
            {
                "campaign_column": campaign_column,
                "date_column": date_column,
                "spend_column": spend_column,
                "currency_column": currency_column,
                "currency": currency,
                "date_format": date_format,
                "decimal_separator": decimal_separator,
            },
        )
        result = services.import_cost_file(
            container,
            principal,
            file.file.read(),
            layout=layout,
            source=source,
            campaign_map=parse_campaign_map(campaign_map or []),
            mapping=mapping,
            start_date=start_date,
            end_date=end_date,
        )
        return _import_json(result)

    @router.post(
        "/costs",
        response_model=ImportOut,
        responses=ERROR_RESPONSES,
        tags=["costs"],
        summary="Import cost rows as JSON (replaces their period)",
    )
    def post_costs(container: ContainerDep, principal: CurrentPrincipal, body: CostRowsIn) -> Any:
        rows = [
            services.CostInput(
                date=row.date,
                spend=row.spend,
                currency=row.currency,
                campaign_id=row.campaign_id,
                campaign_name=row.campaign_name,
            )
            for row in body.rows
        ]
        result = services.import_cost_rows(
            container,
            principal,
            rows,
            source=body.source,
            start_date=body.start_date,
            end_date=body.end_date,
        )
        return _import_json(result)

    @router.get(
        "/costs",
        response_model=CostListOut,
        responses=ERROR_RESPONSES,
        tags=["costs"],
        summary="List imported cost rows",
    )
    def get_costs(
        container: ContainerDep,
        principal: CurrentPrincipal,
        campaign_id: Annotated[str | None, Query(max_length=64)] = None,
        source: Annotated[str | None, Query(max_length=64)] = None,
        start_date: Annotated[dt.date | None, Query(description="First day included")] = None,
        end_date: Annotated[dt.date | None, Query(description="Last day included")] = None,
        cursor: Annotated[
            str | None, Query(max_length=200, description="next_cursor of the previous page")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE_ROWS)] = 100,
    ) -> Any:
        page = services.list_costs(
            container,
            principal,
            campaign_id=campaign_id,
            source=source,
            start_date=start_date,
            end_date=end_date,
            cursor=cursor,
            limit=limit,
        )
        return {"data": [_row_json(row) for row in page.items], "next_cursor": page.next_cursor}

    @router.post(
        "/rates/import",
        response_model=RatesImportOut,
        responses=ERROR_RESPONSES,
        tags=["rates"],
        summary="Import exchange rates from a base,quote,rate,valid_from CSV",
    )
    def import_rates(
        container: ContainerDep,
        principal: CurrentPrincipal,
        file: Annotated[UploadFile, File(description="CSV: base,quote,rate,valid_from")],
    ) -> Any:
        result = services.import_rates_csv(container, principal, file.file.read())
        return {"rates": result.rates, "replaced": result.replaced}

    @router.post(
        "/rates",
        response_model=RatesImportOut,
        responses=ERROR_RESPONSES,
        tags=["rates"],
        summary="Add or replace exchange rates",
    )
    def post_rates(container: ContainerDep, principal: CurrentPrincipal, body: RatesIn) -> Any:
        rates = [_rate(index, item) for index, item in enumerate(body.rates)]
        result = services.add_rates(container, principal, rates)
        return {"rates": result.rates, "replaced": result.replaced}

    @router.get(
        "/rates",
        response_model=RateListOut,
        responses=ERROR_RESPONSES,
        tags=["rates"],
        summary="List exchange rates",
    )
    def get_rates(
        container: ContainerDep,
        principal: CurrentPrincipal,
        base: Annotated[str | None, Query(max_length=8)] = None,
        quote: Annotated[str | None, Query(max_length=8)] = None,
    ) -> Any:
        rates = services.list_rates(container, principal, base=base, quote=quote)
        return {"data": [_rate_json(rate) for rate in rates]}

    return router
