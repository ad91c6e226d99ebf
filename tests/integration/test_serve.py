"""`perfmark serve` as a real process: it answers /healthz and the API over TCP, and stops cleanly."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

PERFMARK = Path(sys.executable).with_name("perfmark")
STARTUP_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def environment(tmp_path: Path) -> dict[str, str]:
    """The parent's environment without perfmark settings, and a fresh data directory."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERFMARK_")}
    env["PERFMARK_HOME"] = str(tmp_path / "home")
    return env


@pytest.fixture
def api_key(environment: dict[str, str]) -> str:
    """The owner key printed by `perfmark init --json`."""
    done = subprocess.run(
        [str(PERFMARK), "init", "--json"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    key: str = json.loads(done.stdout)["api_key"]
    return key


@pytest.fixture
def server(
    environment: dict[str, str], tmp_path: Path
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A running `perfmark serve --workers 1` on a free port; stopped afterwards."""
    port = _free_port()
    log = (tmp_path / "serve.log").open("wb")
    process = subprocess.Popen(
        [str(PERFMARK), "serve", "--port", str(port), "--workers", "1"],
        env=environment,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own group, so its helpers can be stopped with it
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    try:
        while True:
            if process.poll() is not None:
                pytest.fail(
                    f"perfmark serve exited with {process.returncode}:\n"
                    + (tmp_path / "serve.log").read_text(errors="replace")
                )
            try:
                if httpx.get(f"{base}/healthz", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("perfmark serve did not answer /healthz within 60 s")
            time.sleep(0.2)
        yield base, process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        # Whatever is left of the session this test started (a stray child) goes too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        log.close()


def test_serve_answers_the_api_and_stops(
    server: tuple[str, subprocess.Popen[bytes]], api_key: str, tmp_path: Path
) -> None:
    log_path = tmp_path / "serve.log"
    base, process = server
    health = httpx.get(f"{base}/healthz", timeout=5)
    assert health.json()["status"] == "ok"
    headers = {"Authorization": f"Bearer {api_key}"}
    made = httpx.post(
        f"{base}/api/advertisers",
        json={"name": "Over TCP", "currency": "EUR"},
        headers=headers,
        timeout=10,
    )
    assert made.status_code == 201, made.text
    body = made.json()
    assert body["name"] == "Over TCP" and body["id"].startswith("adv_")
    fetched = httpx.get(f"{base}/api/advertisers/{body['id']}", headers=headers, timeout=10)
    assert fetched.json() == body
    unauthenticated = httpx.get(f"{base}/api/advertisers", timeout=10)
    assert unauthenticated.status_code == 401
    assert unauthenticated.json()["error"]["code"] == "unauthenticated"
    assert httpx.get(f"{base}/api/docs", timeout=10).status_code == 200
    process.send_signal(signal.SIGTERM)
    # A graceful stop; 143 = 128 + SIGTERM, the conventional status for "stopped by TERM".
    assert process.wait(timeout=STOP_TIMEOUT_S) in (0, 128 + signal.SIGTERM)
    log = log_path.read_text(errors="replace")
    assert "Finished server process" in log
    assert "Traceback" not in log
    # Nothing it started (the event processor) outlives it.
    assert _group_empties(process.pid), "perfmark serve left processes running"


def _group_empties(group_id: int) -> bool:
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            os.killpg(group_id, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False
