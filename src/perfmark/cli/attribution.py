"""`perfmark attribution`: credits by channel, campaign or publisher for a model."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated

import typer

from perfmark.attribution.api import attribution_to_json, parse_options
from perfmark.attribution.journeys import JourneyOptions
from perfmark.attribution.service import run_attribution
from perfmark.cli.context import local_container, local_owner
from perfmark.cli.render import console, guarded, print_json, print_table
from perfmark.errors import ValidationError

__all__ = ["attribution_command"]


def _date(option: str, value: str | None, default: date) -> date:
    if value is None:
        return default
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValidationError(
            f"--{option} {value!r} is not a date; use YYYY-MM-DD", field=option
        ) from None


@guarded
def attribution_command(
    model: Annotated[
        str,
        typer.Option(
            help="first_touch, last_touch, last_non_direct, linear, time_decay, position_based, markov or shapley."
        ),
    ] = "markov",
    order: Annotated[int, typer.Option(help="Markov chain order (1-3).")] = 1,
    by: Annotated[str, typer.Option(help="channel, campaign or publisher.")] = "channel",
    start: Annotated[
        str | None, typer.Option("--from", help="First date (default 30 days ago).")
    ] = None,
    end: Annotated[str | None, typer.Option("--to", help="Last date (default today).")] = None,
    tz: Annotated[str, typer.Option("--tz", help="IANA time zone.")] = "UTC",
    half_life_days: Annotated[float, typer.Option(help="Time-decay half-life.")] = 7.0,
    position: Annotated[
        str, typer.Option(help="Position-based shares first,middle,last.")
    ] = "40,20,40",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    workspace: Annotated[str | None, typer.Option(help="Workspace id.")] = None,
) -> None:
    """Attribute conversions to channels, campaigns or publishers."""
    if not 1 <= order <= 3:
        raise ValidationError(f"--order {order} must be 1, 2 or 3", field="order")
    today = date.today()
    container = local_container()
    principal = local_owner(container, workspace)
    report = run_attribution(
        container,
        principal.workspace_id,
        start=_date("from", start, today - timedelta(days=29)),
        end=_date("to", end, today),
        timezone=tz,
        model=model,
        options=parse_options(order, half_life_days, position, 0),
        journey_options=JourneyOptions(label=by),
    )
    if as_json:
        print_json(attribution_to_json(report, by))
        return
    result = report.model
    print_table(
        f"{result.model} attribution by {by}",
        (by, "conversions", "value", "removal effect"),
        [
            (c.channel, f"{c.conversions:.2f}", f"{c.value:.2f}",
             "" if c.removal_effect_conversions is None else f"{c.removal_effect_conversions:.4f}")
            for c in sorted(result.credits, key=lambda c: -c.conversions)
        ],
    )  # fmt: skip
    for note in result.notes:
        console.print(f"note: {note}")
