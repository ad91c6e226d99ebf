"""`perfmark campaigns list|create` and `perfmark links create|list`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from perfmark.adapters.store.codec import decode_spec, encode_spec
from perfmark.adapters.store.kinds import CAMPAIGNS, LINKS
from perfmark.cli.context import local_container, local_owner
from perfmark.cli.render import console, guarded, print_json, print_table
from perfmark.domain.campaigns import CampaignSpec
from perfmark.domain.links import TrackingLinkSpec, tracking_url
from perfmark.errors import ValidationError
from perfmark.services import catalog

__all__ = ["campaigns_app", "links_app"]

campaigns_app = typer.Typer(help="List and create campaigns.", no_args_is_help=True)
links_app = typer.Typer(help="Create and list tracking links.", no_args_is_help=True)

WorkspaceOption = Annotated[
    str | None, typer.Option("--workspace", help="Workspace id (default: the first one).")
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _parse_price(option: str, text: str) -> dict[str, str]:
    """`cpa:5`, `cpm:6.00`, `revshare:12%` or `hybrid:2+10%` into a price dict."""
    model, _, rest = text.partition(":")
    if not rest:
        raise ValidationError(
            f"--{option} {text!r} is not MODEL:AMOUNT; examples: cpa:5, cpm:6, revshare:12%, "
            "hybrid:2+10%",
            field=option,
        )
    amount, percent = "0", "0"
    if "+" in rest:
        amount, percent = rest.split("+", 1)
    elif rest.endswith("%"):
        percent = rest
    else:
        amount = rest
    return {"model": model.lower(), "amount": amount, "percent": percent.rstrip("%")}


@campaigns_app.command("list")
@guarded
def list_campaigns(
    workspace: WorkspaceOption = None,
    status: Annotated[str | None, typer.Option(help="Only this status.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """List the workspace's campaigns."""
    container = local_container()
    principal = local_owner(container, workspace)
    filters = {"status": status} if status else {}
    page = catalog.list_objects(container, principal, CAMPAIGNS, filters=filters, limit=200)
    if as_json:
        print_json([{"id": r.id, **encode_spec(r.spec)} for r in page.items])
        return
    print_table(
        "Campaigns",
        ("id", "name", "status", "channel", "pricing", "daily budget"),
        [
            (
                r.id,
                r.spec.name,
                r.spec.status.value,
                r.spec.channel.value,
                ", ".join(rule.pays.model.value for rule in r.spec.pricing),
                f"{r.spec.daily_budget} {r.spec.currency}" if r.spec.daily_budget else "-",
            )
            for r in page.items
        ],
    )


@campaigns_app.command("create")
@guarded
def create_campaign(
    name: Annotated[str | None, typer.Option(help="Campaign name.")] = None,
    advertiser: Annotated[str | None, typer.Option(help="Advertiser id.")] = None,
    offer: Annotated[str | None, typer.Option(help="Offer id.")] = None,
    channel: Annotated[
        str, typer.Option(help="Channel, e.g. affiliate, paid_search.")
    ] = "affiliate",
    goal: Annotated[list[str] | None, typer.Option(help="Goal id bought (repeatable).")] = None,
    pays: Annotated[
        str | None,
        typer.Option(help="What the advertiser pays, e.g. cpa:5, cpc:0.4, revshare:10%."),
    ] = None,
    earns: Annotated[
        str | None, typer.Option(help="What the publisher earns, same format.")
    ] = None,
    currency: Annotated[str, typer.Option(help="The advertiser's currency.")] = "USD",
    daily_budget: Annotated[str | None, typer.Option(help="Daily budget.")] = None,
    total_budget: Annotated[str | None, typer.Option(help="Total budget.")] = None,
    status: Annotated[str, typer.Option(help="draft, active or paused.")] = "draft",
    from_file: Annotated[
        Path | None, typer.Option("--from-file", help="A JSON file with the whole campaign spec.")
    ] = None,
    workspace: WorkspaceOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Create a campaign from options or from a JSON spec file."""
    if from_file is not None:
        try:
            data: dict[str, Any] = json.loads(from_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ValidationError(f"--from-file {from_file}: {exc}", field="from_file") from None
    else:
        missing = [
            flag
            for flag, value in (("--name", name), ("--advertiser", advertiser), ("--offer", offer))
            if not value
        ]
        if missing:
            raise ValidationError(
                f"missing {', '.join(missing)} (or use --from-file)", field=missing[0].strip("-")
            )
        goals = list(goal or [])
        pricing = []
        if pays or earns:
            if not (pays and earns):
                raise ValidationError(
                    "give both --pays and --earns", field="pays" if not pays else "earns"
                )
            pays_price, earns_price = _parse_price("pays", pays), _parse_price("earns", earns)
            rule: dict[str, Any] = {"pays": pays_price, "earns": earns_price}
            if pays_price["model"] not in ("cpc", "cpm"):
                if not goals:
                    raise ValidationError(
                        f"a {pays_price['model']} price needs --goal", field="goal"
                    )
                rule["goal_id"] = goals[0]
            pricing.append(rule)
        data = {
            "name": name, "advertiser_id": advertiser, "offer_id": offer, "channel": channel,
            "goal_ids": goals, "pricing": pricing, "currency": currency, "status": status,
            "daily_budget": daily_budget or None, "total_budget": total_budget or None,
        }  # fmt: skip
    spec = decode_spec(CampaignSpec, data)
    container = local_container()
    record = catalog.create_object(container, local_owner(container, workspace), CAMPAIGNS, spec)
    if as_json:
        print_json({"id": record.id, **encode_spec(record.spec)})
    else:
        console.print(f"Campaign [bold]{record.id}[/] created ({record.spec.status.value}).")


@links_app.command("create")
@guarded
def create_link(
    campaign: Annotated[str, typer.Option(help="Campaign id.")],
    publisher: Annotated[str, typer.Option(help="Publisher id.")],
    slug: Annotated[str, typer.Option(help="Slug (random when empty).")] = "",
    sub: Annotated[
        list[str] | None, typer.Option(help="Fixed sub id as subN=value (repeatable).")
    ] = None,
    utm: Annotated[
        list[str] | None, typer.Option(help="Fixed UTM as source=value (repeatable).")
    ] = None,
    workspace: WorkspaceOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Create a tracking link and print the URL the publisher pastes."""
    data: dict[str, Any] = {"campaign_id": campaign, "publisher_id": publisher, "slug": slug}
    for option, prefix, items in (("sub", "", sub or []), ("utm", "utm_", utm or [])):
        for item in items:
            key, sep, value = item.partition("=")
            if not sep:
                raise ValidationError(f"--{option} {item!r} is not name=value", field=option)
            data[prefix + key] = value
    try:
        spec = TrackingLinkSpec(**data)
    except TypeError:
        raise ValidationError(
            "unknown --sub or --utm name; use sub1..sub5 and source, medium, campaign, term, content",
            field="sub",
        ) from None
    container = local_container()
    record = catalog.create_object(container, local_owner(container, workspace), LINKS, spec)
    url = tracking_url(container.settings.base_url, record.spec.slug)
    if as_json:
        print_json({"id": record.id, "tracking_url": url, **encode_spec(record.spec)})
    else:
        console.print(f"Link [bold]{record.id}[/]: {url}")


@links_app.command("list")
@guarded
def list_links(
    campaign: Annotated[str | None, typer.Option(help="Only this campaign's links.")] = None,
    workspace: WorkspaceOption = None,
    as_json: JsonFlag = False,
) -> None:
    """List tracking links with their URLs."""
    container = local_container()
    filters = {"campaign_id": campaign} if campaign else {}
    page = catalog.list_objects(
        container, local_owner(container, workspace), LINKS, filters=filters, limit=200
    )
    rows = [
        (
            r.id,
            r.spec.campaign_id,
            r.spec.publisher_id,
            tracking_url(container.settings.base_url, r.spec.slug),
        )
        for r in page.items
    ]
    if as_json:
        print_json(
            [
                dict(zip(("id", "campaign_id", "publisher_id", "tracking_url"), row, strict=True))
                for row in rows
            ]
        )
        return
    print_table("Tracking links", ("id", "campaign", "publisher", "tracking URL"), rows)
