"""The dashboard in Debian's chromium against a live `perfmark serve` (with its processor).

An owner signs in, creates a campaign and a link in the editor, follows the link, fires the
conversion with the postback URL the page shows, and watches it arrive in the overview
(without reloading) and in the conversions log. A publisher sees only its own links and
figures. A form with an error keeps what was typed. The overview on demo traffic is
screenshotted; with PERFMARK_UPDATE_SCREENSHOT=1 it replaces docs/img/dashboard.png, the
README's picture (otherwise a test run leaves the repository as it was).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from playwright.sync_api import Page, expect

import perfmark.web.app
from perfmark.dashboard.demo import seed_dashboard_users
from perfmark.services.container import build_container
from perfmark.services.demo import seed_demo
from perfmark.settings import load_settings
from perfmark.simulation.demo_traffic import drive_demo_traffic

if TYPE_CHECKING:
    from .conftest import LandingSite

pytestmark = pytest.mark.browser

HOST = "127.0.0.1"
PERFMARK = str(Path(sys.executable).with_name("perfmark"))
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "docs" / "img" / "dashboard.png"
SERVER_START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 15.0
#: The overview polls every 10 s and the processor commits within a second or so.
LIVE_UPDATE_TIMEOUT_MS = 45_000
LINK_RESOLVE_TIMEOUT_S = 15.0
DEMO_DAYS = 14
DEMO_VISITORS_PER_DAY = 40
#: Until `create_app` mounts the dashboard itself, the server is started with this shim
#: (install_dashboard is idempotent, so the shim is harmless once it does).
_SHIM = """
import perfmark.web.app as _app_module
from perfmark.dashboard import install_dashboard as _install

_create = _app_module.create_app

def _create_with_dashboard(container):
    app = _create(container)
    _install(app)
    return app

_app_module.create_app = _create_with_dashboard
"""


@dataclass
class DashboardServer:
    """A live server on demo data, with the dashboard users' passwords."""

    base_url: str
    home: Path
    passwords: dict[str, str]
    process: subprocess.Popen[bytes]

    @property
    def log(self) -> str:
        path = self.home / "serve.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def dashboard_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DashboardServer]:
    """Seed the demo with two weeks of traffic and dashboard users, then `perfmark serve`."""
    home = tmp_path_factory.mktemp("dashboard_home")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERFMARK_")}
    env.update(
        PERFMARK_HOME=str(home), PERFMARK_HOST=HOST, PERFMARK_PORT=str(port),
        PERFMARK_BASE_URL=f"http://{HOST}:{port}", PERFMARK_LOG_LEVEL="warning",
    )  # fmt: skip
    if "install_dashboard" not in Path(perfmark.web.app.__file__).read_text():
        shim = tmp_path_factory.mktemp("shim")
        (shim / "sitecustomize.py").write_text(_SHIM)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(shim), env.get("PYTHONPATH")]))
    container = build_container(
        load_settings({k: v for k, v in env.items() if k.startswith("PERFMARK_")})
    )
    demo = seed_demo(container)
    drive_demo_traffic(container, demo, days=DEMO_DAYS, visitors_per_day=DEMO_VISITORS_PER_DAY)
    passwords = {email: password for email, password, _ in seed_dashboard_users(container, demo)}
    container.engine.dispose()
    with open(home / "serve.log", "wb") as log:
        process = subprocess.Popen(
            [PERFMARK, "serve", "--workers", "1"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    server = DashboardServer(f"http://{HOST}:{port}", home, passwords, process)
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while True:
            assert process.poll() is None, f"perfmark serve exited:\n{server.log}"
            assert time.monotonic() < deadline, f"perfmark serve did not answer:\n{server.log}"
            try:
                if httpx.get(f"{server.base_url}/dashboard/sign-in", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT_S)


def _sign_in(page: Page, server: DashboardServer, email: str, path: str = "/dashboard/") -> None:
    page.goto(f"{server.base_url}{path}")
    expect(page).to_have_url(re.compile(r"/dashboard/sign-in\?next="))
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(server.passwords[email])
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{server.base_url}{path}")


def _tile_value(page: Page, metric: str) -> str:
    return page.locator(f"#kpi-{metric} .value").inner_text().strip()


def test_the_overview_on_demo_data_is_screenshotted_for_the_readme(
    dashboard_server: DashboardServer, browser_page: Page, tmp_path: Path
) -> None:
    page = browser_page
    page.set_viewport_size({"width": 1280, "height": 1000})
    _sign_in(page, dashboard_server, "owner@demo.perfmark.dev")
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    assert _tile_value(page, "conversions") not in ("", "0")
    page.wait_for_function(
        "document.querySelector('#trend-canvas') && Chart.getChart('trend-canvas')"
    )
    expect(page.locator("#top-campaigns tbody tr")).not_to_have_count(0)
    target = (
        SCREENSHOT if os.environ.get("PERFMARK_UPDATE_SCREENSHOT") else tmp_path / "overview.png"
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(target), full_page=False)
    assert target.stat().st_size > 10_000  # a rendered page, not an empty image


def test_campaign_link_click_and_conversion_reach_the_overview_and_the_log(
    dashboard_server: DashboardServer, browser_page: Page, landing_site: LandingSite
) -> None:
    server, page = dashboard_server, browser_page
    landing_site.pages["/winter"] = "<!doctype html><title>Winter</title><h1>Winter tents</h1>"
    _sign_in(page, server, "owner@demo.perfmark.dev", "/dashboard/campaigns/new")

    page.get_by_label("Name", exact=True).fill("Browser winter sale")
    page.locator("#advertiser_id").select_option(label="Northwind Outdoor")
    page.locator("#offer_id").select_option(label="Ultralight tents — Northwind Outdoor")
    page.locator("#status").select_option("active")
    page.get_by_role("checkbox", name=re.compile("Purchase")).check()
    page.get_by_role("button", name="Add pricing row").click()
    row = page.locator("#rows-pricing [data-row]").last
    row.locator("select[name$='-goal_id']").select_option(label="Purchase (sale)")
    row.locator("select[name$='-pays_model']").select_option("cpa")
    row.locator("input[name$='-pays_amount']").fill("25")
    row.locator("select[name$='-earns_model']").select_option("cpa")
    row.locator("input[name$='-earns_amount']").fill("18")
    page.get_by_role("button", name="Add landing pages row").click()
    landing = page.locator("#rows-landing_pages [data-row]").last
    landing.get_by_label("Key").fill("winter")
    landing.get_by_label("URL").fill(f"{landing_site.base_url}/winter?clid={{click_id}}")
    page.get_by_role("button", name="Create campaign").click()
    expect(page.get_by_text("Campaign created.")).to_be_visible()

    page.locator("#link-publisher").select_option(label="CouponHub")
    page.get_by_role("button", name="Create link").click()
    expect(page.get_by_text("Tracking link created.")).to_be_visible()
    link_url = page.locator("#links input[readonly]").first.input_value()
    postback = page.locator("pre[id^='postback-']").first.inner_text()

    page.goto(f"{server.base_url}/dashboard/")
    before = int(_tile_value(page, "conversions").replace(",", ""))

    visitor = page.context.new_page()
    deadline = time.monotonic() + LINK_RESOLVE_TIMEOUT_S
    while True:  # a new link reaches the tracker's config cache within its TTL
        visitor.goto(link_url)
        if visitor.url.startswith(f"{landing_site.base_url}/winter"):
            break
        assert time.monotonic() < deadline, f"{link_url} still unknown to the tracker"
        visitor.wait_for_timeout(300)
    click_id = re.search(r"clid=(clk_[0-9a-z]+)", visitor.url)
    assert click_id, visitor.url
    fired = httpx.get(
        postback.replace("{click_id}", click_id.group(1))
        .replace("{value}", "99.50")
        .replace("{transaction_id}", "E2E-WINTER-1")
    )
    assert fired.status_code == 200, fired.text
    visitor.close()

    # No reload: the overview's polling brings the new conversion in.
    expect(page.locator("#kpi-conversions .value")).to_have_text(
        f"{before + 1:,}", timeout=LIVE_UPDATE_TIMEOUT_MS
    )
    page.get_by_role("link", name="Conversions", exact=True).click()
    row = page.locator("#conversions tbody tr", has_text="E2E-WINTER-1")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("Browser winter sale")
    expect(row).to_contain_text("99.50 USD")
    expect(row).to_contain_text("pending")


def test_a_publisher_sees_only_its_own_links_and_figures(
    dashboard_server: DashboardServer, browser_page: Page
) -> None:
    page = browser_page
    _sign_in(page, dashboard_server, "publisher@demo.perfmark.dev")
    expect(page.locator("#kpi-payout")).to_be_visible()
    expect(page.locator("#kpi-cost")).to_have_count(0)
    page.get_by_role("link", name="My links").click()
    rows = page.locator("#links tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Tents - search CPC")
    expect(page.locator("body")).not_to_contain_text("Browser winter sale")
    page.goto(f"{dashboard_server.base_url}/dashboard/campaigns")
    expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
    page.goto(f"{dashboard_server.base_url}/dashboard/publishers")
    expect(page.locator("#publishers tbody tr")).to_have_count(1)
    expect(page.locator("#publishers tbody")).to_contain_text("SearchBuy Agency")


def test_a_form_error_keeps_what_was_typed(
    dashboard_server: DashboardServer, browser_page: Page
) -> None:
    page = browser_page
    _sign_in(page, dashboard_server, "owner@demo.perfmark.dev", "/dashboard/campaigns/new")
    page.get_by_label("Name", exact=True).fill("Typed but invalid")
    page.locator("#advertiser_id").select_option(label="Northwind Outdoor")
    page.locator("#offer_id").select_option(label="Ultralight tents — Northwind Outdoor")
    page.get_by_label("Daily budget").fill("a lot")
    page.get_by_role("button", name="Create campaign").click()
    expect(page.locator("#form-errors")).to_be_visible()
    expect(page.locator("#error-daily_budget")).to_contain_text("daily_budget")
    expect(page.get_by_label("Name", exact=True)).to_have_value("Typed but invalid")
    expect(page.get_by_label("Daily budget")).to_have_value("a lot")
    expect(page.get_by_label("Daily budget")).to_have_attribute("aria-invalid", "true")
