"""End-to-end fixtures: the real `perfmark serve`, a local landing-page site, and chromium."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, Playwright, sync_playwright
from sqlalchemy import Engine, create_engine

from perfmark.adapters.lake import events_glob
from perfmark.settings import lake_directory, load_settings

HOST = "127.0.0.1"
SERVER_START_TIMEOUT_S = 90.0
COMMAND_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 15.0
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PERFMARK = str(Path(sys.executable).with_name("perfmark"))


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def json_document(output: str) -> Any:
    """The JSON document a `--json` command printed (after any progress lines)."""
    start = next((i for i, line in enumerate(output.splitlines()) if line.startswith("{")), None)
    assert start is not None, f"no JSON document in {output!r}"
    return json.loads("\n".join(output.splitlines()[start:]))


def wait_until(what: str, predicate: Callable[[], bool], timeout_s: float, pause_s: float) -> None:
    """Poll `predicate` until it holds; fail naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(pause_s)


@dataclass
class LiveServer:
    """A running `perfmark serve` in its own data directory, with the demo workspace's key."""

    home: Path
    base_url: str
    env: dict[str, str]
    workspace_id: str = ""
    api_key: str = ""
    process: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> str:
        """The server's output so far (for failure messages)."""
        path = self.home / "serve.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def run(self, *args: str) -> str:
        """Run a `perfmark` command against this data directory; returns its stdout."""
        done = subprocess.run(
            [PERFMARK, *args], env=self.env, capture_output=True, timeout=COMMAND_TIMEOUT_S
        )
        assert done.returncode == 0, (
            f"perfmark {' '.join(args)} exited {done.returncode}: {done.stderr.decode()[-2000:]}"
        )
        return done.stdout.decode()

    def api(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """Call the management API with the owner key; fails the test on a non-2xx answer."""
        response = httpx.request(
            method,
            f"{self.base_url}/api{path}",
            json=body,
            headers={"Authorization": f"Bearer {self.api_key}"},
            timeout=30,
        )
        assert response.is_success, f"{method} {path} -> {response.status_code} {response.text}"
        return response.json()

    def process_events(self) -> int:
        """Drain the write-ahead log into the lake and store (`perfmark process --once`)."""
        output = self.run("process", "--once")
        found = re.search(r"processed (\d+) events", output)
        assert found, f"unexpected output of perfmark process --once: {output!r}"
        return int(found.group(1))

    def store(self) -> Engine:
        """An engine on the server's SQLite store."""
        return create_engine(f"sqlite:///{self.home / 'perfmark.db'}")

    def lake_glob(self) -> str:
        """The Parquet glob of the server's event lake."""
        return events_glob(lake_directory(load_settings({"PERFMARK_HOME": str(self.home)})))

    def stop(self) -> None:
        """Stop the server with SIGTERM (SIGKILL if it does not exit in time)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=STOP_TIMEOUT_S)


def _server_env(home: Path, port: int) -> dict[str, str]:
    # Settings of the developer's shell (a PostgreSQL URL, another home) must not leak in.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERFMARK_")}
    env.update(
        {
            "PERFMARK_HOME": str(home),
            "PERFMARK_HOST": HOST,
            "PERFMARK_PORT": str(port),
            "PERFMARK_BASE_URL": f"http://{HOST}:{port}",
            "PERFMARK_LOG_LEVEL": "warning",
        }
    )
    return env


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """`perfmark demo --no-serve` then `perfmark serve --no-processor` on a free port."""
    home = tmp_path_factory.mktemp("live_home")
    port = free_port()
    server = LiveServer(home, f"http://{HOST}:{port}", _server_env(home, port))
    # No synthetic demo traffic: this module's assertions count its own events only.
    demo = json_document(server.run("demo", "--no-serve", "--json", "--traffic-days", "0"))
    server.workspace_id, server.api_key = demo["workspace_id"], demo["api_key"]
    with open(home / "serve.log", "wb") as log:
        server.process = subprocess.Popen(
            [PERFMARK, "serve", "--workers", "1", "--no-processor"],
            env=server.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while True:
            assert server.process.poll() is None, f"perfmark serve exited:\n{server.log}"
            assert time.monotonic() < deadline, f"perfmark serve did not answer:\n{server.log}"
            try:
                if httpx.get(f"{server.base_url}/metrics", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        yield server
    finally:
        server.stop()


@dataclass
class LandingSite:
    """A tiny advertiser site on its own port; pages are HTML strings set by the test."""

    base_url: str
    pages: dict[str, str] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def landing_site() -> Iterator[LandingSite]:
    """Serve `LandingSite.pages` (path -> HTML) on 127.0.0.1 from a thread."""
    site = LandingSite("")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            site.requests.append(self.path)
            page = site.pages.get(self.path.split("?", 1)[0])
            body = (page or "<!doctype html><title>404</title>not found").encode()
            self.send_response(200 if page is not None else 404)
            self.send_header("content-type", "text/html; charset=utf-8")
            self.send_header("content-length", str(len(body)))
            self.send_header("cache-control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the request list above is the log

    server = ThreadingHTTPServer((HOST, 0), Handler)
    site.base_url = f"http://{HOST}:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="landing-site", daemon=True)
    thread.start()
    try:
        yield site
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=STOP_TIMEOUT_S)


@pytest.fixture(scope="module")
def chromium(chromium_path: str) -> Iterator[Browser]:
    """Debian's chromium, headless, driven by Playwright (no downloaded browser)."""
    with sync_playwright() as playwright:
        launched = _launch(playwright, chromium_path)
        try:
            yield launched
        finally:
            launched.close()


def _launch(playwright: Playwright, chromium_path: str) -> Browser:
    return playwright.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Remember each phase's report on the item, so fixtures can tell a failed test."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def browser_page(chromium: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A page in a fresh browser context (no cookies); a screenshot is saved on failure."""
    context = chromium.new_context()
    opened = context.new_page()
    opened.set_default_timeout(20_000)
    try:
        yield opened
    finally:
        report = getattr(request.node, "report_call", None)
        if report is not None and report.failed:
            ARTIFACTS.mkdir(exist_ok=True)
            name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
            opened.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
            (ARTIFACTS / f"{name}.html").write_text(opened.content(), encoding="utf-8")
        context.close()
