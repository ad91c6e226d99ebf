"""`perfmark report`: any metrics by any dimensions, as a Rich table, CSV or JSON."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated

import typer

from perfmark.cli.context import local_container, local_owner
from perfmark.cli.render import guarded, print_json, print_table
from perfmark.errors import ValidationError
from perfmark.reports.domain.request import parse_report_request
from perfmark.reports.export import report_columns, report_to_csv, report_to_json
from perfmark.reports.service import run_report

__all__ = ["report_command"]


@guarded
def report_command(
    by: Annotated[str, typer.Option("--by", help="Dimensions, e.g. campaign,day.")] = "campaign",
    start: Annotated[
        str | None, typer.Option("--from", help="First local date (default: 7 days ago).")
    ] = None,
    end: Annotated[
        str | None, typer.Option("--to", help="Last local date (default: today).")
    ] = None,
    tz: Annotated[str, typer.Option("--tz", help="IANA time zone for day boundaries.")] = "UTC",
    metrics: Annotated[
        str | None, typer.Option("--metrics", help="Metrics, e.g. clicks,conversions,cpa,roas.")
    ] = None,
    filters: Annotated[
        list[str] | None, typer.Option("--filter", help="dimension=value[,value] (repeatable).")
    ] = None,
    date_basis: Annotated[str, typer.Option(help="conversion or click.")] = "conversion",
    compare: Annotated[bool, typer.Option(help="Add the previous period.")] = False,
    sort: Annotated[str | None, typer.Option(help="Metric or dimension to sort by.")] = None,
    limit: Annotated[int, typer.Option(help="Rows to show.")] = 100,
    output: Annotated[str, typer.Option("--format", help="table, csv or json.")] = "table",
    workspace: Annotated[str | None, typer.Option(help="Workspace id.")] = None,
) -> None:
    """Print a report."""
    if output not in ("table", "csv", "json"):
        raise ValidationError(
            f"--format {output!r} is unknown; use table, csv or json", field="format"
        )
    parsed_filters: dict[str, str] = {}
    for item in filters or []:
        name, sep, value = item.partition("=")
        if not sep:
            raise ValidationError(f"--filter {item!r} is not dimension=value", field="filter")
        parsed_filters[name.strip()] = value
    today = date.today()
    container = local_container()
    principal = local_owner(container, workspace)
    request = parse_report_request(
        principal.workspace_id,
        start=start or (today - timedelta(days=6)).isoformat(),
        end=end or today.isoformat(),
        timezone=tz,
        dimensions=by,
        metrics=metrics,
        filters=parsed_filters,
        date_basis=date_basis,
        compare=compare,
        order_by=sort,
        limit=limit,
    )
    result = run_report(container, request)
    if output == "json":
        print_json(report_to_json(result))
    elif output == "csv":
        typer.echo(report_to_csv(result), nl=False)
    else:
        columns = report_columns(result)
        rows = [[row.get(c) for c in columns] for row in result.rows]
        total = {**result.totals, **({columns[0]: "TOTAL"} if result.dimensions else {})}
        rows.append([total.get(c) for c in columns])
        print_table(
            f"{request.start} to {request.end} ({request.timezone}, {result.currency})",
            columns,
            rows,
        )
