"""Fixtures that run the REAL server: `perfmark demo --no-serve`, then `perfmark serve`.

The server runs as a subprocess in its own session (process group) with its own data
directory, two HTTP workers and the processor, on a free loopback port.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import duckdb
import httpx
import pytest
from sqlalchemy import Engine, create_engine, text

from perfmark.adapters.lake import events_glob

HOST = "127.0.0.1"
PERFMARK = str(Path(sys.executable).with_name("perfmark"))
START_TIMEOUT_S = 90.0
COMMAND_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 15.0
PROCESS_TIMEOUT_S = 30.0
DESKTOP = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36"
)
#: The demo campaigns target these countries; clicks say where they come from like a CDN would.
US = {"cf-ipcountry": "US", "user-agent": DESKTOP}


def free_port() -> int:
    """A loopback TCP port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def wait_until(
    what: str, predicate: Callable[[], Any], timeout_s: float = PROCESS_TIMEOUT_S
) -> Any:
    """Poll `predicate` until it returns something truthy, and return that."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.1)


def click_id_of(response: httpx.Response) -> str:
    """The click id the redirect carries to the landing page."""
    return parse_qs(urlsplit(response.headers["location"]).query)["pm_clid"][0]


def cookies_of(response: httpx.Response) -> dict[str, str]:
    """The cookies a response sets."""
    jar: SimpleCookie = SimpleCookie()
    for header in response.headers.get_list("set-cookie"):
        jar.load(header)
    return {name: morsel.value for name, morsel in jar.items()}


@dataclass
class Server:
    """A `perfmark serve` subprocess with the demo workspace in its data directory."""

    home: Path
    port: int
    env: dict[str, str]
    workers: int = 2
    demo: dict[str, Any] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def slugs(self) -> list[str]:
        """Slugs of the demo's six links, in the demo's campaign order."""
        return [url.rsplit("/", 1)[1] for url in self.demo["links"]]

    @property
    def log(self) -> str:
        path = self.home / "serve.log"
        return path.read_text(errors="replace")[-5000:] if path.exists() else ""

    def run(self, *args: str) -> str:
        """Run a `perfmark` command on this data directory; returns its stdout."""
        done = subprocess.run(
            [PERFMARK, *args], env=self.env, capture_output=True, timeout=COMMAND_TIMEOUT_S
        )
        assert done.returncode == 0, f"perfmark {args} failed: {done.stderr.decode()[-2000:]}"
        return done.stdout.decode()

    def start(self) -> None:
        """Start `perfmark serve` in its own process group and wait for /healthz."""
        log = open(self.home / "serve.log", "ab")  # noqa: SIM115 - the child keeps writing it
        self.process = subprocess.Popen(
            [PERFMARK, "serve", "--port", str(self.port), "--workers", str(self.workers)],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert self.process.poll() is None, f"perfmark serve exited:\n{self.log}"
            assert time.monotonic() < deadline, f"perfmark serve did not answer:\n{self.log}"
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)

    def group_pids(self) -> list[int]:
        """Every live process of the server's process group (the server, workers, processor)."""
        assert self.process is not None
        pgid = self.process.pid
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields_after_name = stat.rsplit(")", 1)[1].split()
            if fields_after_name[0] != "Z" and int(fields_after_name[2]) == pgid:
                found.append(int(entry))
        return found

    def kill(self) -> None:
        """SIGKILL the whole process group: server, HTTP workers and processor, at once."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=STOP_TIMEOUT_S)
        wait_until("the killed processes to be gone", lambda: not self.group_pids(), 10)

    def stop(self) -> None:
        """SIGTERM the process group; SIGKILL what is left after a grace period."""
        if self.process is None or (self.process.poll() is not None and not self.group_pids()):
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=STOP_TIMEOUT_S)
        except (subprocess.TimeoutExpired, ProcessLookupError):
            pass
        if self.group_pids():
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=STOP_TIMEOUT_S)

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.demo['api_key']}"}

    def api(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """Call the management API with the owner key; fails on a non-2xx answer."""
        response = httpx.request(
            method, f"{self.base_url}/api{path}", json=body, headers=self.headers(), timeout=30
        )
        assert response.is_success, f"{method} {path} -> {response.status_code} {response.text}"
        return response.json()

    def advertiser(self, name: str) -> tuple[str, str]:
        """(id, postback secret) of the demo advertiser called `name`."""
        [found] = [a for a in self.api("GET", "/advertisers")["data"] if a["name"] == name]
        return found["id"], self.api("GET", f"/advertisers/{found['id']}/secret")["secret"]

    def store(self) -> Engine:
        return create_engine(f"sqlite:///{self.home / 'perfmark.db'}")

    def sql(self, query: str, **params: Any) -> list[Any]:
        engine = self.store()
        try:
            with engine.connect() as conn:
                return list(conn.execute(text(query), params).all())
        finally:
            engine.dispose()

    def lake(self, query: str = "select * from events") -> list[Any]:
        """Run `query` over the lake (as the view `events`); [] while the lake is empty."""
        lake = self.home / "lake"
        if not list(lake.glob("events/*/*/*.parquet")):
            return []
        connection = duckdb.connect()
        try:
            connection.execute(
                "create view events as select * from "
                f"read_parquet('{events_glob(lake)}', union_by_name=true)"
            )
            return connection.execute(query).fetchall()
        finally:
            connection.close()

    def lake_ids(self) -> list[str]:
        return [row[0] for row in self.lake("select event_id from events")]


def server_env(home: Path, port: int) -> dict[str, str]:
    # The developer's own PERFMARK_* settings (another store, another home) must not leak in.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PERFMARK_", "PROMETHEUS_"))}
    env.update(
        {
            "PERFMARK_HOME": str(home),
            "PERFMARK_HOST": HOST,
            "PERFMARK_BASE_URL": f"http://{HOST}:{port}",
            "PERFMARK_LOG_LEVEL": "warning",
        }
    )
    return env


def seeded_server(home: Path) -> Server:
    """A server object on a seeded data directory (not started yet)."""
    port = free_port()
    server = Server(home, port, server_env(home, port))
    # No synthetic traffic: these tests count what they send themselves.
    output = server.run("demo", "--no-serve", "--json", "--traffic-days", "0")
    server.demo = json.loads(output[output.index("{") :])
    return server


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One real server with two workers and the processor, shared by the tracking tests."""
    live = seeded_server(tmp_path_factory.mktemp("tracking_server"))
    try:
        live.start()
        yield live
    finally:
        live.stop()


@pytest.fixture
def http(server: Server) -> Iterator[httpx.Client]:
    """A client on the server that does not follow redirects (the tests read them)."""
    with httpx.Client(base_url=server.base_url, timeout=30, follow_redirects=False) as client:
        yield client
