"""/metrics on the real server: counters by drop reason, summed over the worker processes."""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

import httpx

from .conftest import US, Server, wait_until

_SAMPLE = re.compile(r"^(perfmark_\w+)\{([^}]*)\} ([0-9.e+]+)$")


def counters(server: Server) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = httpx.get(f"{server.base_url}/metrics", timeout=30)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    found = {}
    for line in response.text.splitlines():
        match = _SAMPLE.match(line)
        if match and match.group(1).endswith("_total"):
            labels = frozenset(re.findall(r'(\w+)="([^"]*)"', match.group(2)))
            found[(match.group(1), labels)] = float(match.group(3))
    return found


def drops(server: Server, event_type: str, reason: str) -> float:
    key = ("perfmark_drops_total", frozenset({("type", event_type), ("reason", reason)}))
    return counters(server).get(key, 0.0)


def accepted(server: Server, event_type: str) -> float:
    return counters(server).get(("perfmark_events_total", frozenset({("type", event_type)})), 0.0)


def holds_open(pid: int, path: Path) -> bool:
    try:
        return any(os.readlink(fd) == str(path) for fd in Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return False


def worker_pids_with_counters(server: Server) -> set[int]:
    """The HTTP workers (children of the server, not the processor) that counted something."""
    assert server.process is not None
    children = {
        pid for pid in server.group_pids()
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]
        == str(server.process.pid)
        and b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    }  # fmt: skip
    # The processor is a child too: it is the one holding the leader lock.
    workers = {pid for pid in children if not holds_open(pid, server.home / "processor.lock")}
    assert len(workers) == server.workers, (children, workers)
    files = {int(path.stem.rsplit("_", 1)[1]) for path in (server.home / "metrics").glob("*.db")}
    return workers & files


def test_drop_reasons_are_summed_across_workers(server: Server) -> None:
    before_unknown = drops(server, "click", "unknown_link")
    before_targeted = drops(server, "click", "not_targeted")
    before_clicks = accepted(server, "click")
    sent = 0
    # Fresh connections until both workers have answered some (bounded).
    while sent < 40 or (len(worker_pids_with_counters(server)) < 2 and sent < 400):
        with httpx.Client(base_url=server.base_url, timeout=30) as client:
            assert client.get(f"/c/nosuch{sent}").status_code == 404
            assert client.get(f"/c/{server.slugs[0]}", headers={"cf-ipcountry": "BR"}).is_redirect
            assert client.get(f"/c/{server.slugs[0]}", headers=US).is_redirect
        sent += 1
    assert len(worker_pids_with_counters(server)) >= 2, "one worker answered everything"
    assert drops(server, "click", "unknown_link") == before_unknown + sent
    assert drops(server, "click", "not_targeted") == before_targeted + sent
    assert accepted(server, "click") == before_clicks + sent


def test_processor_drops_show_up_too(server: Server) -> None:
    # A duplicate is found by the processor (another process again); bots likewise.
    _adv, secret = server.advertiser("Northwind Outdoor")
    before_duplicates = drops(server, "conversion", "duplicate")
    before_bots = drops(server, "click", "bot")
    txid = f"D-{uuid.uuid4().hex[:8]}"
    for _ in range(2):
        response = httpx.get(
            f"{server.base_url}/postback",
            params={"token": secret, "goal": "lead", "txid": txid},
        )
        assert response.status_code == 200
    crawler = {
        **US,
        "user-agent": "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    }
    assert httpx.get(f"{server.base_url}/c/{server.slugs[1]}", headers=crawler).is_redirect
    wait_until(
        "the duplicate and the bot counted",
        lambda: (
            drops(server, "conversion", "duplicate") == before_duplicates + 1
            and drops(server, "click", "bot") == before_bots + 1
        ),
    )
    bad = httpx.get(f"{server.base_url}/p.gif", params={"goal": "sale"})
    assert bad.status_code == 200 and len(bad.content) == 43
