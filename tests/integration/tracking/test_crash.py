"""SIGKILL the server mid-load, restart it: the lake holds exactly the acknowledged clicks."""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections import Counter

import httpx

from perfmark.adapters.wal import WalReader

from .conftest import US, Server, click_id_of, wait_until

THREADS = 4
#: Bounds on the load: per thread, and in time; the kill comes once this many are acked.
MAX_CLICKS_PER_THREAD = 2000
MAX_LOAD_S = 20.0
KILL_AFTER_ACKED = 600
DRAIN_TIMEOUT_S = 60.0


class Load:
    """Threads clicking as fast as they can, recording every click id a 302 acknowledged."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.run_id = f"crash-{uuid.uuid4().hex[:8]}"  # marks this test's clicks in the lake
        self.acked: list[str] = []
        self.cut = 0  # requests whose answer the kill cut off (each may or may not be logged)
        self.failures: list[str] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.drive, args=(i,)) for i in range(THREADS)]

    def drive(self, index: int) -> None:
        slug = self.server.slugs[index % 2]
        deadline = time.monotonic() + MAX_LOAD_S
        with httpx.Client(base_url=self.server.base_url, timeout=10) as client:
            for _ in range(MAX_CLICKS_PER_THREAD):
                if time.monotonic() > deadline:
                    return
                try:
                    response = client.get(f"/c/{slug}?sub1={self.run_id}", headers=US)
                except httpx.TransportError:
                    with self.lock:
                        self.cut += 1
                    return  # the server is gone: this thread's one request in flight was cut
                with self.lock:
                    if response.status_code == 302:
                        self.acked.append(click_id_of(response))
                    else:
                        self.failures.append(f"{response.status_code} {response.text[:200]}")
                        return

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def join(self) -> None:
        for thread in self.threads:
            thread.join(timeout=MAX_LOAD_S + 30)
            assert not thread.is_alive()


def drained(server: Server) -> bool:
    """The processor has committed everything in the log (and no batch is half done)."""
    reader = WalReader(server.home / "wal")
    return (
        reader.backlog_bytes(reader.load_checkpoint()) == 0
        and not (server.home / "lake" / "_pending_batch.json").exists()
    )


def test_sigkill_mid_load_keeps_exactly_the_acknowledged_clicks(server: Server) -> None:
    # The shared server is killed and restarted here; the other tests then use the restarted one.
    try:
        load = Load(server)
        load.start()
        wait_until("clicks to be acknowledged", lambda: len(load.acked) >= KILL_AFTER_ACKED
                   or not any(t.is_alive() for t in load.threads), MAX_LOAD_S + 30)  # fmt: skip
        assert server.process is not None
        # The HTTP workers first, one by one, then everything left in the group at once.
        workers = [pid for pid in server.group_pids() if pid != server.process.pid]
        assert len(workers) >= server.workers
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
        server.kill()
        load.join()
        assert load.failures == []
        assert load.cut >= 1, "the kill came after the load ended; raise KILL_AFTER_ACKED"
        acknowledged = list(load.acked)
        assert len(acknowledged) >= KILL_AFTER_ACKED

        server.start()  # same data directory: the new processor reads the dead workers' logs
        wait_until(
            "the processor to drain the log",
            lambda: drained(server) and set(acknowledged) <= set(server.lake_ids()),
            DRAIN_TIMEOUT_S,
        )
        in_lake = Counter(
            row[0]
            for row in server.lake(
                f"select event_id from events where type = 'click' and sub1 = '{load.run_id}'"
            )
        )
        duplicates = [event_id for event_id, n in in_lake.items() if n > 1]
        assert duplicates == []
        missing = set(acknowledged) - set(in_lake)
        assert missing == set()
        # Only the requests the kill cut off may have been logged without an answer.
        unacknowledged = set(in_lake) - set(acknowledged)
        assert len(unacknowledged) <= load.cut
        stored = server.sql(
            "select click_id from clicks where json_extract(data, '$.sub1') = :run",
            run=load.run_id,
        )
        assert sorted(row[0] for row in stored) == sorted(in_lake)
    finally:
        if server.process is None or server.process.poll() is not None:
            server.start()  # leave a running server for the other tests
