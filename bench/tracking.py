"""Click redirects/s of the real tracker against a bare ASGI 302 on the same server stack, one run.

Starts, on the loopback interface and in a throw-away data directory:
  * `perfmark serve --workers N --no-processor` (the demo workspace seeded first), and
  * `uvicorn --workers N bare_asgi:app` (bench/bare_asgi.py: one fixed 302, nothing else),
then drives each in turn with the same load generator (wrk where installed, else a Python
asyncio/httpx generator, which is far slower and then measures itself more than the servers)
and prints, per round: requests/s of each, their ratio (target >= 0.60), p50/p99 latency;
then p99 of the tracker at half its measured maximum, postback ingest events/s, Segment
batch ingest events/s (POST /v1/batch, --segment-batch page views per request), and whether
EVERY acknowledged click (a 302 the load generator received) reached the Parquet lake after
`perfmark process --once` (distinct click ids in the lake, via DuckDB), and every page view
of every acknowledged batch.

Plain wrk has no constant-rate mode (wrk2's -R): the half-load run paces each connection
with wrk's delay() hook instead, which is closed-loop, so it under-reports queueing delay
(coordinated omission). The output says so.

Prints, never asserts.

    .venv/bin/python bench/tracking.py [--duration 10] [--connections 64] [--threads 2]
        [--workers 2] [--rounds 1] [--postback-duration 5] [--segment-duration 5]
        [--segment-batch 100] [--generator auto|wrk|python] [--keep]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import httpx

HOST = "127.0.0.1"
CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")
BENCH_DIR = Path(__file__).resolve().parent
PERFMARK = str(Path(sys.executable).with_name("perfmark"))
SERVER_START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 20.0
WARMUP_S = 2
HALF_LOAD_FRACTION = 0.5
TARGET_RATIO = 0.60
TARGET_HALF_LOAD_P99_MS = 10.0
TARGET_POSTBACKS_PER_S = 10_000
#: What a browser click sends: a desktop Chrome, a country from the CDN, a language.
CLICK_HEADERS = {
    "User-Agent": (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 Safari/537.36"
    ),
    "CF-IPCountry": "US",
    "Accept-Language": "en-US,en;q=0.9",
}
CLICK_QUERY = "sub1=bench&utm_term=tents&gclid=G-bench-1"


@dataclass(frozen=True)
class Load:
    """What one load run measured."""

    requests: int
    seconds: float
    status_errors: int
    socket_errors: int
    p50_ms: float
    p99_ms: float
    #: CPU the server's processes spent per answered request (set by `measure`).
    server_cpu_us: float = 0.0

    @property
    def rate(self) -> float:
        """Completed requests per second."""
        return self.requests / self.seconds

    @property
    def acknowledged(self) -> int:
        """Responses that were not an HTTP error (the 302s of a click run)."""
        return self.requests - self.status_errors


#: (url, seconds, connections, headers, rate, unique suffix path[, POST body]) -> Load
Generator = Callable[..., Load]


# --- wrk ------------------------------------------------------------------------------------

_WRK_DONE = """
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"status":%d,"socket":%d,"p50_us":%d,"p99_us":%d}\\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""
_WRK_DELAY = "function delay() return {delay_ms} end\n"
_WRK_POST = 'wrk.method = "POST"\nwrk.body = [==[{body}]==]\n'
# Each thread numbers its own requests: thread t sends txid bench-<t>-1, bench-<t>-2, ...
_WRK_UNIQUE = """
local next_thread = 0
function setup(thread) next_thread = next_thread + 1; thread:set("tid", next_thread) end
local n = 0
function request()
  n = n + 1
  return wrk.format(nil, "{path}" .. tid .. "-" .. n)
end
"""


def wrk(
    url: str,
    seconds: float,
    connections: int,
    headers: dict[str, str],
    rate: float | None,
    unique_suffix_path: str | None,
    post_body: str | None = None,
    *,
    threads: int = 2,
    workdir: Path = Path(tempfile.gettempdir()),
) -> Load:
    """One wrk run; `rate` paces connections with delay(); a path template makes URLs unique."""
    script = _WRK_DONE
    if post_body is not None:
        script += _WRK_POST.replace("{body}", post_body)
    if rate is not None:
        script += _WRK_DELAY.format(delay_ms=max(1, round(connections * 1000 / rate)))
    if unique_suffix_path is not None:
        script += _WRK_UNIQUE.replace("{path}", unique_suffix_path)
    script_path = workdir / f"wrk-{os.getpid()}-{time.monotonic_ns()}.lua"
    script_path.write_text(script, encoding="utf-8")
    command = ["wrk", "-t", str(min(threads, connections)), "-c", str(connections)]
    command += ["-d", f"{max(1, round(seconds))}s", "--timeout", "10s", "-s", str(script_path)]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    done = subprocess.run([*command, url], capture_output=True, text=True, check=True)
    script_path.unlink()
    line = next(x for x in done.stdout.splitlines() if x.startswith("WRKJSON "))
    data = json.loads(line[len("WRKJSON ") :])
    return Load(
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        status_errors=data["status"],
        socket_errors=data["socket"],
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
    )


# --- the Python fallback --------------------------------------------------------------------


def python_load(
    url: str,
    seconds: float,
    connections: int,
    headers: dict[str, str],
    rate: float | None,
    unique_suffix_path: str | None,
    post_body: str | None = None,
) -> Load:
    """An asyncio/httpx closed-loop generator: `connections` tasks, each one request at a time."""
    return asyncio.run(
        _python_load(url, seconds, connections, headers, rate, unique_suffix_path, post_body)
    )


async def _python_load(
    url: str,
    seconds: float,
    connections: int,
    headers: dict[str, str],
    rate: float | None,
    unique_suffix_path: str | None,
    post_body: str | None = None,
) -> Load:
    latencies: list[float] = []
    counts = {"status": 0, "socket": 0}
    origin = url.split("/", 3)
    base = "/".join(origin[:3])
    pause_s = connections / rate if rate else 0.0
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits) as client:
        started = time.perf_counter()
        deadline = started + seconds

        async def worker(number: int) -> None:
            sent = 0
            while time.perf_counter() < deadline:
                sent += 1
                target = (
                    f"{unique_suffix_path}py{number}-{sent}"
                    if unique_suffix_path is not None
                    else "/" + origin[3]
                )
                begun = time.perf_counter()
                try:
                    if post_body is None:
                        response = await client.get(target)
                    else:
                        response = await client.post(target, content=post_body)
                except httpx.HTTPError:
                    counts["socket"] += 1
                    continue
                latencies.append(time.perf_counter() - begun)
                if response.status_code >= 400:
                    counts["status"] += 1
                if pause_s:
                    await asyncio.sleep(max(0.0, pause_s - (time.perf_counter() - begun)))

        await asyncio.gather(*(worker(n) for n in range(connections)))
        elapsed = time.perf_counter() - started
    cuts = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    return Load(len(latencies), elapsed, counts["status"], counts["socket"],
                cuts[49] * 1000, cuts[98] * 1000)  # fmt: skip


# --- servers --------------------------------------------------------------------------------


def free_port() -> int:
    """A loopback TCP port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


class Server:
    """A server process started in its own session, so its workers stop with it."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.log = log
        with open(log, "wb") as output:
            self.process = subprocess.Popen(
                command, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
            )

    def wait_ready(self, url: str) -> None:
        """Poll `url` until it answers (any status)."""
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.log.read_text()[-3000:]}")
            try:
                httpx.get(url, timeout=2)
                return
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    log = self.log.read_text()
                    raise RuntimeError(f"{self.name} did not start:\n{log}") from None
                time.sleep(0.2)

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server and all its processes so far."""
        return process_tree_cpu_seconds(self.process.pid)

    def stop(self) -> None:
        """SIGTERM to the server's process group (its own id), SIGKILL if it lingers."""
        if self.process.poll() is not None:
            return
        group = os.getpgid(self.process.pid)
        os.killpg(group, signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(group, signal.SIGKILL)
            self.process.wait(timeout=STOP_TIMEOUT_S)


def process_tree_cpu_seconds(root: int) -> float:
    """CPU seconds used by `root` and its descendants, from /proc (Linux)."""
    parents: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the process ended meanwhile
        pid = int(stat.parent.name)
        # After the command name: state, ppid, ..., utime (11th) and stime (12th).
        parents[pid], ticks[pid] = int(fields[1]), int(fields[11]) + int(fields[12])
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent and pid not in tree]
        tree.update(children)
        frontier.extend(children)
    return sum(ticks.get(pid, 0) for pid in tree) / CLOCK_TICKS_PER_S


def perfmark_env(home: Path, port: int) -> dict[str, str]:
    """The environment of every perfmark command of the run (the shell's settings left out)."""
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


def perfmark(env: dict[str, str], *args: str) -> str:
    """Run a perfmark command; its stdout."""
    return subprocess.run(
        [PERFMARK, *args], env=env, capture_output=True, text=True, check=True
    ).stdout


# --- the run --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Setup:
    """What the benchmark needs from the seeded demo workspace."""

    click_url: str
    postback_path: str
    write_key: str


def segment_batch_body(messages: int) -> str:
    """A /v1/batch body of page views (no messageId: each request's events are new events)."""
    batch = [
        {
            "type": "page",
            "anonymousId": f"bench-visitor-{number}",
            "name": "Pricing",
            "properties": {
                "url": "https://shop.example/pricing?pm_clid=clk_01m8h5jcmswkr91g362kf6q9pw"
                "&utm_source=newsletter&utm_medium=email",
                "referrer": "https://news.example/",
            },
            "context": {
                "ip": "203.0.113.7",
                "userAgent": CLICK_HEADERS["User-Agent"],
                "locale": "en-US",
            },
        }
        for number in range(messages)
    ]
    return json.dumps({"batch": batch}, separators=(",", ":"))


def prepare(base_url: str, api_key: str, link_url: str) -> Setup:
    """A click URL on the demo's first link, a postback path with the advertiser's token."""
    auth = {"Authorization": f"Bearer {api_key}"}
    advertiser = httpx.get(f"{base_url}/api/advertisers", headers=auth).json()["data"][0]["id"]
    secret = httpx.get(f"{base_url}/api/advertisers/{advertiser}/secret", headers=auth).json()
    click_url = f"{link_url}?{CLICK_QUERY}"
    probe = httpx.get(click_url, headers=CLICK_HEADERS)
    if probe.status_code != 302:
        raise RuntimeError(f"{click_url} answered {probe.status_code}, not 302")
    click_id = probe.headers["location"].rsplit("pm_clid=", 1)[1].split("&", 1)[0]
    postback_path = (
        f"/postback?token={secret['secret']}&click_id={click_id}&goal=sale"
        "&value=19.90&currency=USD&txid=bench-"
    )
    write_key = httpx.get(f"{base_url}/api/workspace/write-key", headers=auth).json()
    return Setup(click_url, postback_path, write_key["write_key"])


def json_document(output: str) -> Any:
    """The JSON document a `--json` command printed (after any progress lines)."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("{"))
    return json.loads("\n".join(lines[start:]))


def lake_counts(home: Path) -> dict[str, tuple[int, int, int]]:
    """Per event type: rows, distinct event ids, distinct click ids in the lake."""
    pattern = home / "lake" / "events" / "date=*" / "hour=*" / "*.parquet"
    if not any((home / "lake" / "events").glob("date=*/hour=*/*.parquet")):
        return {}
    rows = (
        duckdb.connect()
        .execute(
            f"select type, count(*), count(distinct event_id), count(distinct click_id) "
            f"from read_parquet('{pattern}') group by type"
        )
        .fetchall()
    )
    return {str(kind): (int(a), int(b), int(c)) for kind, a, b, c in rows}


def subtract(
    after: dict[str, tuple[int, int, int]], before: dict[str, tuple[int, int, int]]
) -> dict[str, tuple[int, int, int]]:
    """What the run added to the lake (every event and click id is new, so counts subtract)."""
    added = {}
    for kind, (rows, events, clicks) in after.items():
        old_rows, old_events, old_clicks = before.get(kind, (0, 0, 0))
        added[kind] = (rows - old_rows, events - old_events, clicks - old_clicks)
    return added


def measure(server: Server, run_load: Callable[[], Load]) -> Load:
    """Run a load and charge the server's CPU time to its answered requests."""
    cpu_before = server.cpu_seconds()
    load = run_load()
    cpu_us = (server.cpu_seconds() - cpu_before) * 1e6 / max(load.requests, 1)
    return dataclasses.replace(load, server_cpu_us=cpu_us)


def describe(name: str, load: Load) -> str:
    """Two lines of figures for a run."""
    errors = f", {load.status_errors:,} HTTP errors" if load.status_errors else ""
    errors += f", {load.socket_errors:,} socket errors" if load.socket_errors else ""
    return (
        f"  {name:<34} {load.rate:>8,.0f} req/s  p50 {load.p50_ms:6.2f} ms  "
        f"p99 {load.p99_ms:6.2f} ms\n  {'':<34} server CPU {load.server_cpu_us:5.0f} us/request"
        f"  ({load.requests:,} in {load.seconds:.1f} s{errors})"
    )


def run(args: argparse.Namespace) -> None:
    """Start both servers, measure, process the log, check the lake, print."""
    use_wrk = args.generator == "wrk" or (args.generator == "auto" and shutil.which("wrk"))
    home = Path(tempfile.mkdtemp(prefix="perfmark-bench-", dir=args.dir))
    generate: Generator = (
        (lambda *a: wrk(*a, threads=args.threads, workdir=home)) if use_wrk else python_load
    )
    port, bare_port = free_port(), free_port()
    env = perfmark_env(home, port)
    servers: list[Server] = []
    try:
        demo = json_document(perfmark(env, "demo", "--no-serve", "--json", "--traffic-days", "0"))
        # Whatever the demo logged is processed first, so the lake check counts only this run.
        perfmark(env, "process", "--once")
        before = lake_counts(home)
        tracker = Server(
            "perfmark serve",
            [PERFMARK, "serve", "--workers", str(args.workers), "--no-processor"],
            env,
            home / "serve.log",
        )
        servers.append(tracker)
        bare = Server(
            "bare ASGI",
            [sys.executable, "-m", "uvicorn", "--app-dir", str(BENCH_DIR), "bare_asgi:app",
             "--host", HOST, "--port", str(bare_port), "--workers", str(args.workers),
             "--no-access-log", "--log-level", "warning"],
            env,
            home / "bare.log",
        )  # fmt: skip
        servers.append(bare)
        base_url = f"http://{HOST}:{port}"
        tracker.wait_ready(f"{base_url}/metrics")
        bare.wait_ready(f"http://{HOST}:{bare_port}/")
        setup = prepare(base_url, demo["api_key"], demo["links"][0])
        bare_url = f"http://{HOST}:{bare_port}/c/bare?{CLICK_QUERY}"

        print(f"generator: {'wrk' if use_wrk else 'python asyncio/httpx (slow: it limits both servers)'}, "
              f"{args.connections} connections, {args.threads} threads, "
              f"{args.workers} server workers, {args.duration:g} s per run, loopback")  # fmt: skip
        print(f"click URL: {setup.click_url}")
        conn, seconds = args.connections, args.duration

        def clicks(rate: float | None = None, duration: float = seconds) -> Load:
            return measure(
                tracker,
                lambda: generate(setup.click_url, duration, conn, CLICK_HEADERS, rate, None),
            )

        def baseline() -> Load:
            return measure(
                bare, lambda: generate(bare_url, seconds, conn, CLICK_HEADERS, None, None)
            )

        generate(bare_url, WARMUP_S, conn, CLICK_HEADERS, None, None)
        click_loads = [clicks(duration=WARMUP_S)]
        ratios, cpu_ratios = [], []
        for round_number in range(1, args.rounds + 1):
            base = baseline()
            click = clicks()
            click_loads.append(click)
            ratios.append(click.rate / base.rate)
            cpu_ratios.append(base.server_cpu_us / click.server_cpu_us)
            print(f"round {round_number}:")
            print(describe("bare ASGI 302 (baseline)", base))
            print(describe("perfmark /c/<slug> (click logged)", click))
            print(f"  ratio {ratios[-1]:.2f} (target >= {TARGET_RATIO:.2f}); "
                  f"by server CPU per request {cpu_ratios[-1]:.2f}")  # fmt: skip

        half_rate = statistics.median(load.rate for load in click_loads[1:]) * HALF_LOAD_FRACTION
        half = clicks(rate=half_rate)
        click_loads.append(half)
        pacing = (
            "wrk delay() pacing, closed loop: coordinated omission not corrected"
            if use_wrk
            else "paced python tasks, closed loop"
        )
        print(f"half load (asked {half_rate:,.0f} req/s; {pacing}; wrk2 -R is not installed):")
        print(describe("perfmark /c/<slug> at half load", half))
        print(f"  p99 {half.p99_ms:.2f} ms (target < {TARGET_HALF_LOAD_P99_MS:g} ms)")

        postbacks = measure(
            tracker,
            lambda: generate(base_url, args.postback_duration, conn, {}, None, setup.postback_path),
        )
        print("postback ingest (GET /postback, token auth, unique txid per request):")
        print(describe("perfmark /postback", postbacks))
        print(f"  {postbacks.rate:,.0f} events/s (target >= {TARGET_POSTBACKS_PER_S:,})")
        body = segment_batch_body(args.segment_batch)
        basic = base64.b64encode(f"{setup.write_key}:".encode()).decode()
        segment_headers = {"Authorization": f"Basic {basic}", "Content-Type": "application/json"}
        batches = measure(
            tracker,
            lambda: generate(f"{base_url}/v1/batch", args.segment_duration, conn,
                             segment_headers, None, None, body),
        )  # fmt: skip
        print(f"Segment batch ingest (POST /v1/batch, {args.segment_batch} page views per "
              f"request, write key auth, {len(body):,} bytes):")  # fmt: skip
        print(describe("perfmark /v1/batch", batches))
        print(f"  {batches.rate * args.segment_batch:,.0f} events/s "
              f"(target >= {TARGET_POSTBACKS_PER_S:,}); server CPU "
              f"{batches.server_cpu_us / args.segment_batch:,.1f} us/event")  # fmt: skip
        acked_clicks = 1 + sum(load.acknowledged for load in click_loads)  # 1: the probe

        tracker.stop()  # graceful: the log is closed (and fsynced) before processing
        print("processing the log into the lake (perfmark process --once)...", flush=True)
        started = time.perf_counter()
        output = perfmark(env, "process", "--once")
        processing_s = time.perf_counter() - started
        counts = subtract(lake_counts(home), before)
        print(f"processor: {output.strip()} in {processing_s:.1f} s "
              f"({sum(c[0] for c in counts.values()) / processing_s:,.0f} events/s)")  # fmt: skip
        report_lake(counts, acked_clicks, postbacks.acknowledged, conn * len(click_loads))
        page_views = counts.get("pageview", (0, 0, 0))[1]
        acked_views = batches.acknowledged * args.segment_batch
        print(f"  page views in the lake: {page_views:,}; acknowledged in batches: "
              f"{acked_views:,} ({'all there' if page_views >= acked_views else 'MISSING SOME'})")  # fmt: skip
        print(f"median click ratio over {len(ratios)} round(s): {statistics.median(ratios):.2f} "
              f"(by server CPU per request: {statistics.median(cpu_ratios):.2f})")  # fmt: skip
    finally:
        for server in servers:
            server.stop()
        if args.keep:
            print(f"data kept in {home}")
        else:
            shutil.rmtree(home, ignore_errors=True)


def report_lake(
    counts: dict[str, tuple[int, int, int]],
    acked_clicks: int,
    acked_postbacks: int,
    in_flight_bound: int,
) -> None:
    """Compare acknowledged requests with what reached the lake."""
    rows, events, click_ids = counts.get("click", (0, 0, 0))
    # A run stops with up to one request in flight per connection: the server may have
    # logged (and answered) it, uncounted by the generator; so the lake may hold a few more.
    extra = click_ids - acked_clicks
    every = click_ids >= acked_clicks and rows == events == click_ids
    verdict = "YES" if every else "NO"
    print(f"lake: {click_ids:,} distinct click ids in {rows:,} click rows; {acked_clicks:,} clicks")
    print(f"  acknowledged with a 302; every acknowledged click in the lake: {verdict}")
    print(f"  (lake - acknowledged = {extra:+,}, unread in-flight answers: at most "
          f"{in_flight_bound:,}; duplicate rows: {rows - click_ids:,})")  # fmt: skip
    _rows, conversions, _ids = counts.get("conversion", (0, 0, 0))
    found = "all there" if conversions >= acked_postbacks else "MISSING SOME"
    print(f"  conversions in the lake: {conversions:,} distinct events; postbacks acknowledged:")
    print(f"  {acked_postbacks:,} ({found})")


def main() -> None:
    """Parse the options and run."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per run")
    parser.add_argument("--postback-duration", type=float, default=5.0, help="seconds")
    parser.add_argument("--segment-duration", type=float, default=5.0, help="seconds")
    parser.add_argument("--segment-batch", type=int, default=100, help="messages per batch")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--workers", type=int, default=2, help="server worker processes")
    parser.add_argument("--rounds", type=int, default=1, help="baseline/tracker pairs")
    parser.add_argument("--generator", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--dir", default=None, help="parent of the temporary data directory")
    parser.add_argument("--keep", action="store_true", help="keep the data directory")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
