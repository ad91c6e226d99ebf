"""Crash tests of the write-ahead log and the leader lock, with real processes and SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import IO

import pytest

from perfmark.adapters.leader import LeaderLock, LeaderLockHeldError
from perfmark.adapters.wal import WalReader, WalRecord
from perfmark.adapters.wal_format import SegmentName

HELPERS = Path(__file__).parent / "wal_helpers"
WRITERS = ("w0", "w1")
WAIT_LIMIT_S = 60.0


@dataclass
class Child:
    """A helper process whose stdout lines are collected by a thread."""

    process: subprocess.Popen[bytes]
    lines: list[str] = field(default_factory=list)
    thread: threading.Thread | None = None

    @classmethod
    def start(cls, script: str, *args: object) -> Child:
        process = subprocess.Popen(
            [sys.executable, str(HELPERS / script), *map(str, args)], stdout=subprocess.PIPE
        )
        child = cls(process)
        assert process.stdout is not None
        child.thread = threading.Thread(target=child._collect, args=(process.stdout,))
        child.thread.start()
        return child

    def _collect(self, stream: IO[bytes]) -> None:
        for line in stream:
            self.lines.append(line.decode().strip())

    def wait_for(self, predicate_name: str, predicate: Callable[[], bool]) -> None:
        deadline = time.monotonic() + WAIT_LIMIT_S
        while not predicate():
            assert self.process.poll() is None, f"child exited early: {self.lines[-3:]}"
            assert time.monotonic() < deadline, f"timed out waiting for {predicate_name}"
            time.sleep(0.01)

    def finish(self) -> int:
        code = self.process.wait(timeout=WAIT_LIMIT_S)
        assert self.thread is not None
        self.thread.join()
        return code

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        assert self.finish() == -signal.SIGKILL

    def acked(self) -> list[int]:
        return [int(line) for line in self.lines if line.isdigit()]


def has_acks(child: Child, count: int) -> bool:
    """Whether `child` has acknowledged at least `count` records."""
    return len(child.acked()) >= count


def expected_payload(writer_id: str, run: int, seq: int) -> bytes:
    """The payload the helper writes for `seq` (mirrors wal_helpers/append_numbered.py)."""
    size = (seq * 7919) % 12_000 if seq % 5 == 0 else (seq * 31) % 400
    return f"{writer_id}:{run}:{seq}:".encode() + bytes([seq % 251]) * size


class Tailer:
    """A consumer that tails the log while writers run, saving its checkpoint every batch."""

    def __init__(self, directory: Path) -> None:
        self.reader = WalReader(directory, consumer="tail")
        self.records: list[WalRecord] = []
        self.torn_segments: list[str] = []
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        try:
            self._tail()
        except BaseException as error:
            self.error = error
            raise

    def _tail(self) -> None:
        checkpoint = self.reader.load_checkpoint()
        while not self.stop.is_set():
            batch = self.reader.read_batch(checkpoint, max_records=2000)
            self.reader.save_checkpoint(batch.checkpoint)
            # Counted as consumed only once the checkpoint that covers them is saved.
            self.records.extend(batch.records)
            self.torn_segments.extend(tail.segment for tail in batch.torn_tails)
            checkpoint = batch.checkpoint
            if not batch.records:
                time.sleep(0.005)


@pytest.mark.parametrize(
    ("strict", "min_acks", "second_run"), [(False, 3000, 1500), (True, 60, 40)]
)
def test_sigkilled_writers_lose_nothing_acknowledged_and_duplicate_nothing(
    tmp_path: Path, strict: bool, min_acks: int, second_run: int
) -> None:
    directory = tmp_path / "wal"
    segment_bytes = 256 * 1024
    tailer = Tailer(directory)
    tailer.thread.start()

    first = {
        w: Child.start("append_numbered.py", directory, w, 1, 0, segment_bytes, int(strict))
        for w in WRITERS
    }
    for writer_id, child in first.items():
        child.wait_for(f"{min_acks} acks from {writer_id}", partial(has_acks, child, min_acks))
    for child in first.values():
        child.kill()
    acked_first = {w: child.acked() for w, child in first.items()}

    second = {
        w: Child.start(
            "append_numbered.py", directory, w, 2, second_run, segment_bytes, int(strict)
        )
        for w in WRITERS
    }
    for child in second.values():
        assert child.finish() == 0
        assert child.lines[-1] == "done"

    tailer.stop.set()
    tailer.thread.join()
    assert tailer.error is None
    assert len(tailer.records) > 0  # it really read while the writers ran
    # A restarted consumer resumes from the tailer's saved checkpoint and drains the rest.
    reader = WalReader(directory, consumer="tail")
    checkpoint = reader.load_checkpoint()
    records = list(tailer.records)
    torn_segments = list(tailer.torn_segments)
    while True:
        batch = reader.read_batch(checkpoint, max_records=5000)
        records.extend(batch.records)
        torn_segments.extend(tail.segment for tail in batch.torn_tails)
        checkpoint = batch.checkpoint
        if not batch.records and set(checkpoint.finished) == set(reader.segments()):
            break

    keys: Counter[tuple[str, int, int]] = Counter()
    runs_per_segment: dict[str, set[int]] = {}
    for record in records:
        writer_bytes, run_text, seq_text, _ = record.payload.split(b":", 3)
        key = (writer_bytes.decode(), int(run_text), int(seq_text))
        assert record.payload == expected_payload(*key), f"corrupt record {key}"
        keys[key] += 1
        runs_per_segment.setdefault(record.segment, set()).add(key[1])
    duplicates = [key for key, count in keys.items() if count > 1]
    assert duplicates == []

    for writer_id in WRITERS:
        acked = acked_first[writer_id]
        assert acked == list(range(len(acked)))  # the helper acknowledges in order
        present = {seq for (w, run, seq) in keys if w == writer_id and run == 1}
        assert set(acked) <= present, f"{writer_id} lost acknowledged records"
        # At most the one record in flight at the kill (written, not yet acknowledged).
        assert present - set(acked) <= {len(acked)}
        present_second = {seq for (w, run, seq) in keys if w == writer_id and run == 2}
        assert present_second == set(range(second_run))

    # The restarted writers wrote new segments only; torn tails are only in killed ones.
    assert all(len(runs) == 1 for runs in runs_per_segment.values())
    second_generations = {
        name.generation
        for name in map(SegmentName.parse, reader.segments())
        if name is not None and runs_per_segment.get(name.file_name) == {2}
    }
    for segment in torn_segments:
        parsed = SegmentName.parse(segment)
        assert parsed is not None and parsed.generation not in second_generations
    assert len(second_generations) == len(WRITERS)


def test_a_failed_partial_write_is_never_read_and_the_writer_carries_on(tmp_path: Path) -> None:
    directory = tmp_path / "wal"
    limit_bytes = 100_000  # not a multiple of the 3014-byte frames: the last write is cut
    child = Child.start("write_until_limit.py", directory, limit_bytes)
    assert child.finish() == 0
    failed = [int(line.split()[1]) for line in child.lines if line.startswith("failed")]
    acked = child.acked()
    assert len(failed) == 1 and failed[0] not in acked
    assert len(acked) == len(set(acked)) == failed[0] + 10

    reader = WalReader(directory)
    batch = reader.read_batch(reader.load_checkpoint(), max_records=10_000)
    seqs = [int(record.payload.split(b":")[0]) for record in batch.records]
    assert seqs == acked
    assert all(record.payload.endswith(b"z" * 3000) for record in batch.records)
    (torn,) = batch.torn_tails
    first_segment = reader.segments()[0]
    assert torn.segment == first_segment
    assert (directory / first_segment).stat().st_size == limit_bytes
    assert torn.offset + torn.skipped_bytes == limit_bytes and torn.skipped_bytes > 0
    assert len(reader.segments()) == 2


def test_leader_lock_is_exclusive_across_processes_and_freed_by_sigkill(tmp_path: Path) -> None:
    lock_path = tmp_path / "processor.lock"
    holder = Child.start("hold_leader.py", lock_path)
    holder.wait_for("the holder to take the lock", lambda: "acquired" in holder.lines)

    lock = LeaderLock(lock_path)
    assert not lock.try_acquire()
    assert not lock.held
    assert lock.holder_pid() == holder.process.pid
    with pytest.raises(LeaderLockHeldError, match=str(holder.process.pid)), lock:
        pass
    assert not lock.acquire(timeout_s=0.3, poll_interval_s=0.05)

    holder.kill()
    assert lock.try_acquire()
    assert lock.holder_pid() == os.getpid()

    contender = Child.start("hold_leader.py", lock_path)
    contender.wait_for("the contender's answer", lambda: bool(contender.lines))
    assert contender.lines == ["refused"]
    contender.kill()
    lock.release()
    assert not lock.held


def test_leader_lock_within_one_process(tmp_path: Path) -> None:
    lock_path = tmp_path / "data" / "processor.lock"
    with LeaderLock(lock_path) as first:
        assert first.held
        assert first.try_acquire()  # already ours
        second = LeaderLock(lock_path)
        assert not second.try_acquire()
    assert not first.held
    second = LeaderLock(lock_path)
    assert second.acquire(timeout_s=1)
    second.release()
    second.release()  # releasing twice is harmless
