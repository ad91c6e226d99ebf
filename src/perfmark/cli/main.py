"""`perfmark`: init, serve, demo, settings, and the object commands."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
from typing import Annotated

import typer
import uvicorn

from perfmark.adapters.store.engine import make_engine, migrate
from perfmark.billing.services import funds
from perfmark.cli.apikeys import apikeys_app
from perfmark.cli.attribution import attribution_command
from perfmark.cli.billing import billing_app
from perfmark.cli.costs import costs_app, rates_app
from perfmark.cli.objects import campaigns_app, links_app
from perfmark.cli.optimize import experiments_app, recommend_app, rules_app, simulate_command
from perfmark.cli.render import console, error_console, guarded, print_json, print_table
from perfmark.cli.report import report_command
from perfmark.cli.users import users_app
from perfmark.dashboard.demo import seed_dashboard_users
from perfmark.domain.accounts import Role, WorkspaceSpec
from perfmark.domain.links import tracking_url
from perfmark.services.accounts import create_workspace, list_workspaces
from perfmark.services.container import Principal, build_container
from perfmark.services.demo import seed_demo
from perfmark.settings import Settings, load_settings, setting_table
from perfmark.simulation.demo_traffic import drive_demo_traffic
from perfmark.workers.processor import Processor
from perfmark.workers.run import run_processor, run_processor_from_environment

__all__ = ["app", "main"]

app = typer.Typer(
    name="perfmark",
    help="perfmark: self-hosted performance marketing (tracking, attribution, billing).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(campaigns_app, name="campaigns")
app.add_typer(links_app, name="links")
app.add_typer(apikeys_app, name="apikeys")
app.add_typer(users_app, name="users")
app.add_typer(billing_app, name="billing")
app.add_typer(rules_app, name="rules")
app.add_typer(experiments_app, name="experiments")
app.add_typer(recommend_app, name="recommend")
app.command("simulate")(simulate_command)
app.add_typer(costs_app, name="costs")
app.add_typer(rates_app, name="rates")
app.command("report")(report_command)
app.command("attribution")(attribution_command)

WORKER_STARTUP_TIMEOUT_S = 60
DEMO_OPENING_BALANCE = "5000.00"
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


@app.command()
@guarded
def init(
    workspace: Annotated[str, typer.Option(help="Name of the first workspace.")] = "My workspace",
    email: Annotated[str, typer.Option(help="Owner's email.")] = "owner@example.com",
    as_json: JsonFlag = False,
) -> None:
    """Create the data directory and store, and a first workspace with an owner API key."""
    container = build_container(load_settings())
    existing = list_workspaces(container)
    if existing:
        message = f"already initialised: workspace {existing[0].id} ({existing[0].spec.name})"
        if as_json:
            print_json({"workspace_id": existing[0].id, "created": False})
        else:
            console.print(message)
        return
    created = create_workspace(container, WorkspaceSpec(name=workspace), email)
    if as_json:
        print_json(
            {
                "workspace_id": created.workspace.id,
                "api_key": created.api_key.secret,
                "created": True,
            }
        )
        return
    console.print(f"Workspace [bold]{created.workspace.id}[/] created in {container.settings.home}")
    console.print(f"Owner API key (shown once): [bold]{created.api_key.secret}[/]")


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    # uvicorn shuts down gracefully on SIGTERM, restores this handler and raises the signal
    # again; leaving through SystemExit (not dying of the signal) runs _serve's `finally`,
    # which stops the processor child instead of orphaning it.
    raise SystemExit(128 + signum)


def _serve(
    settings: Settings, host: str, port: int, workers: int, *, processor: bool = True
) -> None:
    # Migrate and mint the secret key once here; workers then start without racing on either.
    build_container(settings).engine.dispose()
    metrics_dir = settings.home / "metrics"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    child = None
    if processor:
        child = multiprocessing.get_context("spawn").Process(
            target=run_processor_from_environment, name="perfmark-processor", daemon=True
        )
        child.start()
    previous_handler = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        uvicorn.run(
            "perfmark.web.asgi:app_factory",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level=settings.log_level,
            proxy_headers=True,
            access_log=settings.log_level == "debug",
            # Workers import the whole app before answering uvicorn's health pings; on a
            # busy 2-core machine that can take longer than uvicorn's 5 s default.
            timeout_worker_healthcheck=WORKER_STARTUP_TIMEOUT_S,
        )
    finally:
        signal.signal(signal.SIGTERM, previous_handler)
        if child is not None and child.is_alive():
            child.terminate()
            child.join(timeout=10)


@app.command()
@guarded
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    workers: Annotated[int | None, typer.Option(help="HTTP worker processes.")] = None,
    processor: Annotated[
        bool, typer.Option("--processor/--no-processor", help="Also run the event processor.")
    ] = True,
) -> None:
    """Run the tracker, API and dashboard (and the event processor)."""
    settings = load_settings()
    _serve(
        settings,
        host or settings.host,
        port or settings.port,
        workers or settings.workers,
        processor=processor,
    )


@app.command()
@guarded
def process(
    once: Annotated[bool, typer.Option("--once", help="Drain the log once, then exit.")] = False,
) -> None:
    """Run the event processor alone (one leader per data directory)."""
    settings = load_settings()
    if once:
        migrate(make_engine(settings.resolved_database_url))
        written = Processor(build_container(settings, run_migrations=False)).drain()
        console.print(f"processed {written} events")
        return
    run_processor(settings)


@app.command()
@guarded
def demo(
    host: Annotated[str | None, typer.Option(help="Interface to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    serve_after: Annotated[
        bool, typer.Option("--serve/--no-serve", help="Start the server after seeding.")
    ] = True,
    traffic_days: Annotated[
        int, typer.Option(help="Days of synthetic traffic to send through the endpoints (0: none).")
    ] = 14,
    as_json: JsonFlag = False,
) -> None:
    """Seed a realistic demo workspace (once), send it traffic, print how to try it, serve it."""
    settings = load_settings()
    container = build_container(settings)
    existing = [w for w in list_workspaces(container) if w.spec.name == "Demo workspace"]
    if existing:
        if as_json:
            print_json({"workspace_id": existing[0].id, "created": False})
        else:
            console.print(
                f"Demo workspace {existing[0].id} already exists in {settings.home}; delete "
                "that directory to start over, or create keys with `perfmark apikeys create`."
            )
    else:
        seeded = seed_demo(container)
        # Prepaid advertisers start with an opening balance, so billing does not pause their
        # campaigns at the first charge of the demo traffic.
        owner = Principal(seeded.workspace_id, Role.OWNER)
        for advertiser_id in sorted({c.spec.advertiser_id for c in seeded.campaigns}):
            if funds.balance_of(container, owner, advertiser_id).billing_mode == "prepaid":
                funds.top_up(
                    container, owner, advertiser_id, DEMO_OPENING_BALANCE,
                    reference="demo-opening-balance",
                )  # fmt: skip
        if traffic_days > 0:
            # Progress goes to stderr so that --json output stays parseable.
            error_console.print(
                f"Sending {traffic_days} days of demo traffic through the tracker..."
            )
            summary = drive_demo_traffic(container, seeded, days=traffic_days)
            error_console.print(
                f"  {summary.clicks} clicks, {summary.impressions} impressions, "
                f"{summary.page_views} page views, {summary.conversions} conversions "
                f"({summary.bots} bot hits, {summary.duplicates} duplicate postbacks)"
            )
        dashboard_users = seed_dashboard_users(container, seeded)
        if as_json:
            print_json(
                {
                    "workspace_id": seeded.workspace_id,
                    "api_key": seeded.api_key,
                    "created": True,
                    "dashboard_users": [
                        {"email": email, "password": password, "role": role}
                        for email, password, role in dashboard_users
                    ],
                    "links": [
                        tracking_url(settings.base_url, link.spec.slug) for link in seeded.links
                    ],
                }
            )
        else:
            base = settings.base_url.rstrip("/")
            console.print(f"[bold green]Demo workspace[/] {seeded.workspace_id} is ready.")
            console.print(f"  Dashboard:  {base}/dashboard/")
            for email, password, role in dashboard_users:
                console.print(
                    f"    {role:<10} {email}  password: [bold]{password}[/] (shown once)",
                    soft_wrap=True,
                )
            console.print(f"  API:        {base}/api/docs")
            console.print(f"  API key:    [bold]{seeded.api_key}[/] (shown once)")
            console.print(
                f"  Try:        curl -H 'Authorization: Bearer {seeded.api_key}' {base}/api/campaigns",
                soft_wrap=True,
            )
            print_table(
                "Tracking links",
                ("campaign", "tracking URL"),
                [
                    (campaign.spec.name, tracking_url(settings.base_url, link.spec.slug))
                    for campaign, link in zip(seeded.campaigns, seeded.links, strict=True)
                ],
            )
            if list_workspaces(container)[0].id != seeded.workspace_id:
                # CLI commands act on the first workspace unless told otherwise.
                console.print(
                    f"  CLI:        add --workspace {seeded.workspace_id} "
                    f"(or set PERFMARK_WORKSPACE={seeded.workspace_id})",
                    soft_wrap=True,
                )
    if serve_after:
        _serve(settings, host or settings.host, port or settings.port, settings.workers)


@app.command("settings")
@guarded
def show_settings(as_json: JsonFlag = False) -> None:
    """Show every setting: its value now, its default and what it does."""
    current = load_settings()
    rows = [
        (
            name,
            "***"
            if name == "secret_key" and getattr(current, name)
            else str(getattr(current, name)),
            str(default),
            help_text,
        )
        for name, _type, default, help_text in setting_table()
    ]
    if as_json:
        print_json({name: value for name, value, _default, _help in rows})
        return
    print_table(
        "Settings (PERFMARK_<NAME> or perfmark.toml)", ("name", "value", "default", "help"), rows
    )


def main() -> None:
    """Console-script entry point."""
    app()
