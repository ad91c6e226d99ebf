"""`perfmark costs import|list` and `perfmark rates import|list`."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer

from perfmark.cli.context import local_container, local_owner
from perfmark.cli.render import console, guarded, print_json, print_table
from perfmark.costs import services
from perfmark.costs.domain import GenericMapping, Layout, parse_campaign_map
from perfmark.errors import ValidationError

__all__ = ["costs_app", "rates_app"]

costs_app = typer.Typer(help="Import and list ad-platform costs.", no_args_is_help=True)
rates_app = typer.Typer(help="Import and list exchange rates.", no_args_is_help=True)

WorkspaceOption = Annotated[
    str | None, typer.Option("--workspace", help="Workspace id (default: the first one).")
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
#: Most rows `perfmark costs list` prints.
LIST_ROWS = 1000


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ValidationError(
            f"cannot read {str(path)!r}: {exc.strerror or exc}; give the path of a CSV file",
            field="file",
        ) from None


def _day(option: str, text: str | None) -> dt.date | None:
    if text is None:
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise ValidationError(
            f"--{option} {text!r} is not a date like 2026-01-31", field=option
        ) from None


def _mapping(layout: Layout, options: dict[str, str | None]) -> GenericMapping | None:
    given = {name: value for name, value in options.items() if value is not None}
    if layout is not Layout.GENERIC:
        if given:
            name = sorted(given)[0]
            raise ValidationError(
                f"--{name.replace('_', '-')} applies to --layout generic only", field=name
            )
        return None
    return GenericMapping(**given)


@costs_app.command("import")
@guarded
def import_costs(
    file: Annotated[Path, typer.Argument(help="The exported CSV file.")],
    layout: Annotated[Layout, typer.Option(help="Which export the file is.", case_sensitive=False)],
    campaign_map: Annotated[
        list[str] | None,
        typer.Option(
            "--campaign-map", help="'Platform campaign name=cmp_...'; repeat for each campaign."
        ),
    ] = None,
    source: Annotated[
        str | None, typer.Option(help="Source name (default: the layout, e.g. google_ads).")
    ] = None,
    from_date: Annotated[
        str | None, typer.Option("--from", help="First day replaced (default: the file's).")
    ] = None,
    to_date: Annotated[
        str | None, typer.Option("--to", help="Last day replaced (default: the file's).")
    ] = None,
    campaign_column: Annotated[str | None, typer.Option(help="generic: campaign column.")] = None,
    date_column: Annotated[str | None, typer.Option(help="generic: date column.")] = None,
    spend_column: Annotated[str | None, typer.Option(help="generic: spend column.")] = None,
    currency_column: Annotated[str | None, typer.Option(help="generic: currency column.")] = None,
    currency: Annotated[
        str | None, typer.Option(help="generic: one currency for every row.")
    ] = None,
    date_format: Annotated[
        str | None, typer.Option(help="generic: strptime format, e.g. %d.%m.%Y.")
    ] = None,
    decimal_separator: Annotated[str | None, typer.Option(help="generic: '.' or ','.")] = None,
    workspace: WorkspaceOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Import a cost export; it replaces the source's costs of its campaigns and days."""
    mapping = _mapping(
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
    data = _read(file)
    container = local_container()
    result = services.import_cost_file(
        container,
        local_owner(container, workspace),
        data,
        layout=layout,
        source=source,
        campaign_map=parse_campaign_map(campaign_map or [], field="campaign-map"),
        mapping=mapping,
        start_date=_day("from", from_date),
        end_date=_day("to", to_date),
    )
    totals = {currency_code: str(spend) for currency_code, spend in result.totals}
    if as_json:
        print_json(
            {
                "import_id": result.import_id,
                "source": result.source,
                "start_date": result.period.start.isoformat(),
                "end_date": result.period.end.isoformat(),
                "rows": result.rows,
                "replaced": result.replaced,
                "campaign_ids": list(result.campaign_ids),
                "totals": totals,
            }
        )
        return
    console.print(
        f"Imported {result.rows} rows from {result.source} for {result.period.start} to "
        f"{result.period.end} ({len(result.campaign_ids)} campaigns; replaced "
        f"{result.replaced} stored rows).",
        highlight=False,
    )
    print_table("Spend imported", ("currency", "spend"), sorted(totals.items()))


@costs_app.command("list")
@guarded
def list_costs(
    campaign: Annotated[str | None, typer.Option(help="Only this campaign id.")] = None,
    source: Annotated[str | None, typer.Option(help="Only this source.")] = None,
    from_date: Annotated[str | None, typer.Option("--from", help="First day.")] = None,
    to_date: Annotated[str | None, typer.Option("--to", help="Last day.")] = None,
    workspace: WorkspaceOption = None,
    as_json: JsonFlag = False,
) -> None:
    """List imported cost rows (the first 1000)."""
    container = local_container()
    page = services.list_costs(
        container,
        local_owner(container, workspace),
        campaign_id=campaign,
        source=source,
        start_date=_day("from", from_date),
        end_date=_day("to", to_date),
        limit=LIST_ROWS,
    )
    rows = [
        (row.date.isoformat(), row.campaign_id, row.source, str(row.spend), row.currency)
        for row in page.items
    ]
    if as_json:
        keys = ("date", "campaign_id", "source", "spend", "currency")
        print_json([dict(zip(keys, row, strict=True)) for row in rows])
        return
    print_table("Costs", ("date", "campaign", "source", "spend", "currency"), rows)


@rates_app.command("import")
@guarded
def import_rates(
    file: Annotated[Path, typer.Argument(help="CSV with the header base,quote,rate,valid_from.")],
    workspace: WorkspaceOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Import exchange rates; a rate of the same pair and start replaces the stored one."""
    data = _read(file)
    container = local_container()
    result = services.import_rates_csv(container, local_owner(container, workspace), data)
    if as_json:
        print_json({"rates": result.rates, "replaced": result.replaced})
        return
    console.print(f"Imported {result.rates} rates ({result.replaced} replaced).")


@rates_app.command("list")
@guarded
def list_rates(
    base: Annotated[str | None, typer.Option(help="Only this base currency.")] = None,
    quote: Annotated[str | None, typer.Option(help="Only this quote currency.")] = None,
    workspace: WorkspaceOption = None,
    as_json: JsonFlag = False,
) -> None:
    """List exchange rates."""
    container = local_container()
    rates = services.list_rates(
        container, local_owner(container, workspace), base=base, quote=quote
    )
    rows = [(r.base, r.quote, str(r.rate), r.valid_from.isoformat()) for r in rates]
    if as_json:
        keys = ("base", "quote", "rate", "valid_from")
        print_json([dict(zip(keys, row, strict=True)) for row in rows])
        return
    print_table("Exchange rates", ("base", "quote", "rate", "valid from"), rows)
