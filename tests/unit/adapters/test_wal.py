"""Unit tests of the write-ahead log: framing, torn tails, CRC, rotation, checkpoints, fsync."""

from __future__ import annotations

import fcntl
import json
import os
import random
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from perfmark.adapters.wal import (
    MAX_PAYLOAD_BYTES,
    Checkpoint,
    WalClosedError,
    WalReader,
    WalWriter,
    encode_record,
)
from perfmark.adapters.wal_format import (
    CLOSE_MARKER,
    SEGMENT_MAGIC,
    SegmentName,
    is_segment_locked,
)

GENERATION = "00000000000000000001-1-abcd"


def frame(payload: bytes) -> bytes:
    """The frame format written out independently of the code under test."""
    length = len(payload).to_bytes(4, "little")
    return length + zlib.crc32(length + payload).to_bytes(4, "little") + payload


def segment_path(directory: Path, seq: int = 0, writer: str = "w0") -> Path:
    return directory / SegmentName(writer, GENERATION, seq).file_name


def write_segment(path: Path, data: bytes) -> None:
    path.write_bytes(data)


@contextmanager
def live_writer_lock(path: Path) -> Iterator[int]:
    """Hold the segment's flock the way a live writer does; yields an appending fd."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        yield fd
    finally:
        os.close(fd)


def read_all(reader: WalReader, checkpoint: Checkpoint | None = None) -> list[bytes]:
    batch = reader.read_batch(checkpoint or Checkpoint(), max_records=1_000_000)
    return [record.payload for record in batch.records]


class CountingWriter(WalWriter):
    """A real writer that counts its fsyncs (and still performs them)."""

    syncs = 0

    def _sync_fd(self, fd: int) -> None:
        self.syncs += 1
        super()._sync_fd(fd)


# --- framing -------------------------------------------------------------------------------


def test_frame_of_a_known_payload_is_pinned() -> None:
    # Length 3 little-endian, then CRC-32 of b"\x03\x00\x00\x00abc", then the payload.
    expected_crc = zlib.crc32(b"\x03\x00\x00\x00abc")
    assert encode_record(b"abc") == b"\x03\x00\x00\x00" + struct.pack("<I", expected_crc) + b"abc"
    assert encode_record(b"") == b"\x00\x00\x00\x00" + struct.pack("<I", zlib.crc32(b"\0" * 4))


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payloads=st.lists(st.binary(max_size=3000), max_size=20))
def test_framing_round_trip(
    tmp_path_factory: pytest.TempPathFactory, payloads: list[bytes]
) -> None:
    directory = tmp_path_factory.mktemp("wal")
    with WalWriter(directory, "w0", fsync_interval_ms=0) as writer:
        for payload in payloads:
            writer.append(payload)
    (path,) = directory.glob("*.wal")
    assert path.read_bytes() == SEGMENT_MAGIC + b"".join(map(frame, payloads)) + CLOSE_MARKER
    assert read_all(WalReader(directory)) == payloads


def test_append_many_is_the_same_bytes_as_appends(tmp_path: Path) -> None:
    payloads = [b"one", b"", b"three" * 50]
    with WalWriter(tmp_path, "w0") as writer:
        writer.append_many(payloads)
        writer.append_many([])
    (path,) = tmp_path.glob("*.wal")
    assert path.read_bytes() == SEGMENT_MAGIC + b"".join(map(frame, payloads)) + CLOSE_MARKER


def test_offsets_after_each_record(tmp_path: Path) -> None:
    with WalWriter(tmp_path, "w0") as writer:
        writer.append(b"a" * 10)
        writer.append(b"b" * 3)
    batch = WalReader(tmp_path).read_batch(Checkpoint())
    assert [record.offset_after for record in batch.records] == [8 + 18, 8 + 18 + 11]


# --- torn tails ------------------------------------------------------------------------------

PAYLOADS = [b"first", b"x" * 300, b"", b"fourth record", bytes(range(256))]


def test_truncation_at_every_byte_of_the_last_record(tmp_path: Path) -> None:
    body = SEGMENT_MAGIC + b"".join(map(frame, PAYLOADS))
    start_last = len(body) - len(frame(PAYLOADS[-1]))
    path = segment_path(tmp_path)
    reader = WalReader(tmp_path)
    for cut in range(start_last, len(body) + 1):
        # Abandoned segment (no writer holds it): the cut record is skipped for good.
        write_segment(path, body[:cut])
        batch = reader.read_batch(Checkpoint())
        expected = PAYLOADS if cut == len(body) else PAYLOADS[:-1]
        assert [r.payload for r in batch.records] == expected
        assert batch.finished_segments == (path.name,)
        assert batch.checkpoint.offset(path.name) == cut
        torn = [(t.offset, t.skipped_bytes) for t in batch.torn_tails]
        assert torn == ([] if cut in (start_last, len(body)) else [(start_last, cut - start_last)])

        # Live segment: the reader stops before the cut record and waits for the rest.
        write_segment(path, body[:cut])
        with live_writer_lock(path) as fd:
            batch = reader.read_batch(Checkpoint())
            assert [r.payload for r in batch.records] == expected
            assert batch.finished_segments == ()
            assert batch.torn_tails == ()
            offset = batch.checkpoint.offset(path.name)
            assert offset == (len(body) if cut == len(body) else start_last)
            os.write(fd, body[cut:] + frame(b"after"))
            batch = reader.read_batch(batch.checkpoint)
            rest = ([PAYLOADS[-1]] if cut < len(body) else []) + [b"after"]
            assert [r.payload for r in batch.records] == rest
            assert batch.finished_segments == ()


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    payloads=st.lists(st.binary(max_size=600), min_size=1, max_size=12),
    cut_fraction=st.floats(min_value=0, max_value=1),
)
def test_a_cut_anywhere_yields_exactly_the_whole_records_before_it(
    tmp_path_factory: pytest.TempPathFactory, payloads: list[bytes], cut_fraction: float
) -> None:
    directory = tmp_path_factory.mktemp("wal")
    frames = [frame(payload) for payload in payloads]
    body = SEGMENT_MAGIC + b"".join(frames)
    cut = round(cut_fraction * len(body))
    write_segment(segment_path(directory), body[:cut])
    whole, end = [], len(SEGMENT_MAGIC)
    for payload, encoded in zip(payloads, frames, strict=True):
        end += len(encoded)
        if end <= cut:
            whole.append(payload)
    assert read_all(WalReader(directory)) == whole


def test_a_flipped_byte_anywhere_in_a_record_stops_before_it(tmp_path: Path) -> None:
    frames = [frame(payload) for payload in PAYLOADS]
    body = SEGMENT_MAGIC + b"".join(frames)
    start = len(SEGMENT_MAGIC) + len(frames[0]) + len(frames[1]) + len(frames[2])
    end = start + len(frames[3])
    path = segment_path(tmp_path)
    for position in range(start, end):
        damaged = bytearray(body)
        damaged[position] ^= 0xFF
        write_segment(path, bytes(damaged))
        batch = WalReader(tmp_path).read_batch(Checkpoint())
        assert [r.payload for r in batch.records] == PAYLOADS[:3], position
        assert [(t.offset, t.skipped_bytes) for t in batch.torn_tails] == [
            (start, len(body) - start)
        ]


def test_a_file_with_a_bad_header_yields_nothing(tmp_path: Path) -> None:
    path = segment_path(tmp_path)
    write_segment(path, b"NOTAWAL!" + frame(b"hidden"))
    batch = WalReader(tmp_path).read_batch(Checkpoint())
    assert batch.records == ()
    assert [(t.offset, t.skipped_bytes) for t in batch.torn_tails] == [(0, 8 + 8 + 6)]


def test_bytes_after_the_close_marker_are_counted_not_read(tmp_path: Path) -> None:
    path = segment_path(tmp_path)
    write_segment(path, SEGMENT_MAGIC + frame(b"a") + CLOSE_MARKER + frame(b"late"))
    with live_writer_lock(path):  # the marker alone says finished, even with a live lock
        batch = WalReader(tmp_path).read_batch(Checkpoint())
    assert [r.payload for r in batch.records] == [b"a"]
    assert batch.finished_segments == (path.name,)
    assert [(t.offset, t.skipped_bytes) for t in batch.torn_tails] == [(8 + 9 + 8, 12)]


# --- writer lifecycle, rotation, naming -----------------------------------------------------


def test_rotation_keeps_segments_under_the_size_and_closes_them(tmp_path: Path) -> None:
    rng = random.Random(7)
    payloads = [f"{i}:".encode() + b"p" * rng.randrange(0, 90) for i in range(300)]
    with WalWriter(tmp_path, "w0", segment_bytes=512) as writer:
        for payload in payloads:
            writer.append(payload)
        writer.append(b"big" * 300)  # larger than a segment: alone in a fresh one
    reader = WalReader(tmp_path)
    names = reader.segments()
    assert len(names) > 10
    parsed = [SegmentName.parse(name) for name in names]
    assert [p.seq for p in parsed if p is not None] == list(range(len(names)))
    for name in names[:-1]:
        data = (tmp_path / name).read_bytes()
        assert len(data) <= 512
        assert data.startswith(SEGMENT_MAGIC) and data.endswith(CLOSE_MARKER)
    last = (tmp_path / names[-1]).read_bytes()
    assert last == SEGMENT_MAGIC + frame(b"big" * 300) + CLOSE_MARKER
    assert read_all(reader) == [*payloads, b"big" * 300]


def test_a_new_writer_never_appends_to_an_old_segment(tmp_path: Path) -> None:
    first = WalWriter(tmp_path, "w0")
    first.append(b"from the first process")
    old_name = first.segment_file_name
    old_bytes = (tmp_path / old_name).read_bytes()
    second = WalWriter(tmp_path, "w0")
    second.append(b"from the second process")
    assert second.segment_file_name != old_name
    assert sorted([old_name, second.segment_file_name]) == [old_name, second.segment_file_name]
    assert (tmp_path / old_name).read_bytes() == old_bytes
    assert is_segment_locked(tmp_path / old_name)
    first.close()
    second.close()
    assert not is_segment_locked(tmp_path / old_name)
    assert read_all(WalReader(tmp_path)) == [b"from the first process", b"from the second process"]


def test_invalid_arguments_are_refused_with_the_value(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"'w\.0'"):
        WalWriter(tmp_path, "w.0")
    with pytest.raises(ValueError, match="-1"):
        WalWriter(tmp_path, "w0", fsync_interval_ms=-1)
    with pytest.raises(ValueError, match="100"):
        WalWriter(tmp_path, "w0", segment_bytes=100)
    with pytest.raises(ValueError, match=str(MAX_PAYLOAD_BYTES + 1)):
        encode_record(b"\0" * (MAX_PAYLOAD_BYTES + 1))


def test_append_after_close_raises_and_close_is_idempotent(tmp_path: Path) -> None:
    writer = WalWriter(tmp_path, "w0")
    writer.append(b"kept")
    writer.close()
    writer.close()
    with pytest.raises(WalClosedError):
        writer.append(b"refused")
    assert read_all(WalReader(tmp_path)) == [b"kept"]


def test_close_never_hangs_on_the_fsync_thread(tmp_path: Path) -> None:
    # close() racing the group-commit thread's wake-up once left the thread asleep forever.
    def open_and_close_many() -> None:
        for _ in range(200):
            writer = WalWriter(tmp_path, "w0", fsync_interval_ms=0)
            for _ in range(20):  # keep the fsync thread busy and contending for the lock
                writer.append(b"x")
            writer.close()

    worker = threading.Thread(target=open_and_close_many, daemon=True)
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive(), "WalWriter.close() hung"
    assert read_all(WalReader(tmp_path)) == [b"x"] * 4000


def test_a_forked_child_cannot_use_the_parents_writer(tmp_path: Path) -> None:
    writer = WalWriter(tmp_path, "w0")
    writer.append(b"parent before fork")
    pid = os.fork()
    if pid == 0:  # child
        try:
            writer.append(b"child")
        except WalClosedError:
            os._exit(0)
        os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert is_segment_locked(tmp_path / writer.segment_file_name)
    writer.append(b"parent after fork")
    writer.close()
    assert read_all(WalReader(tmp_path)) == [b"parent before fork", b"parent after fork"]


# --- durability modes ------------------------------------------------------------------------


def test_strict_mode_fsyncs_before_each_append_returns(tmp_path: Path) -> None:
    writer = CountingWriter(tmp_path, "w0", strict=True)
    for expected in range(1, 6):
        writer.append(b"durable")
        assert writer.syncs == expected
    writer.append_many([b"a", b"b", b"c"])
    assert writer.syncs == 6
    writer.close()
    assert writer.syncs == 7  # the close marker


class SlowDiskWriter(WalWriter):
    """A real strict writer on a slow disk (each fsync also waits 5 ms) that notes what each
    fsync covered: the segment's bytes as they were when the fsync started."""

    def __init__(self, directory: Path) -> None:
        self.syncs = 0
        self.durable = b""
        super().__init__(directory, "w0", strict=True)

    def _sync_fd(self, fd: int) -> None:
        content = (self.directory / self.segment_file_name).read_bytes()
        time.sleep(0.005)
        super()._sync_fd(fd)
        self.syncs += 1
        self.durable = content


def test_strict_appends_from_threads_share_fsyncs_and_return_only_when_covered(
    tmp_path: Path,
) -> None:
    writer = SlowDiskWriter(tmp_path)
    threads_count, per_thread = 8, 15
    uncovered: list[bytes] = []

    def work(thread: int) -> None:
        for index in range(per_thread):
            payload = f"<{thread}:{index}>".encode()
            writer.append(payload)
            if frame(payload) not in writer.durable:
                uncovered.append(payload)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    writer.close()
    assert uncovered == []
    assert len(read_all(WalReader(tmp_path))) == threads_count * per_thread
    # Eight threads waiting on one fsync are covered by the next one: far fewer than 120.
    assert writer.syncs <= threads_count * per_thread // 2


def test_group_commit_defers_fsync_to_the_interval(tmp_path: Path) -> None:
    writer = CountingWriter(tmp_path, "w0", fsync_interval_ms=600_000)
    for _ in range(100):
        writer.append(b"batched")
    time.sleep(0.05)
    assert writer.syncs == 0
    writer.sync()
    assert writer.syncs == 1
    writer.close()
    assert writer.syncs == 2


def test_group_commit_fsyncs_once_per_interval_when_written(tmp_path: Path) -> None:
    writer = CountingWriter(tmp_path, "w0", fsync_interval_ms=20)
    time.sleep(0.1)
    assert writer.syncs == 0  # nothing written, nothing to fsync
    deadline = time.monotonic() + 0.5
    appends = 0
    while time.monotonic() < deadline:
        writer.append(b"x" * 300)
        appends += 1
    time.sleep(0.5)  # let the last group commit finish, even on a slow disk
    syncs = writer.syncs
    # About 0.5 s / 20 ms = 25 group commits (fsync time stretches the period), not one per append.
    assert 2 <= syncs <= 30
    assert appends > 20 * syncs
    time.sleep(0.1)
    assert writer.syncs == syncs  # idle again: no more fsyncs
    writer.close()


# --- concurrency -----------------------------------------------------------------------------


def test_concurrent_appends_never_interleave(tmp_path: Path) -> None:
    threads_count, per_thread = 6, 300
    writer = WalWriter(tmp_path, "w0", fsync_interval_ms=1, segment_bytes=64 * 1024)

    def work(thread: int) -> None:
        rng = random.Random(thread)
        for index in range(per_thread):
            payload = f"{thread}:{index}:".encode() + bytes([thread]) * rng.randrange(0, 5000)
            if index % 10 == 0:
                writer.append_many([payload, payload + b"!"])
            else:
                writer.append(payload)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    writer.close()
    seen: dict[int, list[int]] = {t: [] for t in range(threads_count)}
    for payload in read_all(WalReader(tmp_path)):
        thread_text, index_text, body = payload.split(b":", 2)
        number = int(thread_text)
        assert body.rstrip(b"!") == bytes([number]) * len(body.rstrip(b"!"))
        if not body.endswith(b"!"):
            seen[number].append(int(index_text))
    assert seen == {t: list(range(per_thread)) for t in range(threads_count)}


# --- reader: checkpoints, fairness, cleanup --------------------------------------------------


def test_checkpoint_resume_reads_each_record_once(tmp_path: Path) -> None:
    payloads = [f"event {i}".encode() for i in range(1000)]
    writer = WalWriter(tmp_path, "w0", segment_bytes=4096)
    writer.append_many(payloads[:600])
    got: list[bytes] = []
    for _ in range(3):  # each round a fresh reader, as after a processor restart
        reader = WalReader(tmp_path)
        batch = reader.read_batch(reader.load_checkpoint(), max_records=250)
        got.extend(r.payload for r in batch.records)
        reader.save_checkpoint(batch.checkpoint)
    assert got == payloads[:600]
    writer.append_many(payloads[600:])
    writer.close()
    reader = WalReader(tmp_path)
    batch = reader.read_batch(reader.load_checkpoint(), max_records=10_000)
    got.extend(r.payload for r in batch.records)
    assert got == payloads
    reader.save_checkpoint(batch.checkpoint)
    assert set(batch.checkpoint.finished) == set(reader.segments())
    assert reader.read_batch(reader.load_checkpoint()).records == ()
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_checkpoint_json_round_trip_and_refusal(tmp_path: Path) -> None:
    checkpoint = Checkpoint({"a.wal": 10, "b.wal": 99}, frozenset({"b.wal"}))
    document = json.loads(checkpoint.to_json())
    assert document == {
        "version": 1,
        "segments": {
            "a.wal": {"offset": 10, "finished": False},
            "b.wal": {"offset": 99, "finished": True},
        },
    }
    assert Checkpoint.from_json(checkpoint.to_json()) == checkpoint
    with pytest.raises(ValueError, match="version"):
        Checkpoint.from_json('{"version": 7, "segments": {}}')
    reader = WalReader(tmp_path)
    reader.save_checkpoint(checkpoint)
    assert reader.load_checkpoint() == checkpoint


def test_a_busy_segment_does_not_starve_the_others(tmp_path: Path) -> None:
    with WalWriter(tmp_path, "a") as busy, WalWriter(tmp_path, "b") as quiet:
        busy.append_many([b"a"] * 1000)
        quiet.append_many([b"b"] * 5)
        batch = WalReader(tmp_path).read_batch(Checkpoint(), max_records=10)
    assert sorted(r.payload for r in batch.records) == [b"a"] * 5 + [b"b"] * 5


def test_backlog_and_delete_consumed(tmp_path: Path) -> None:
    reader = WalReader(tmp_path)
    writer = WalWriter(tmp_path, "w0", segment_bytes=1024)
    for _ in range(20):
        writer.append(b"r" * 100)  # 108-byte frames, 9 per 1 KiB segment: 9, 9, 2
    live_name = writer.segment_file_name
    assert reader.backlog_bytes(Checkpoint()) == sum(
        (tmp_path / n).stat().st_size - len(SEGMENT_MAGIC) for n in reader.segments()
    )
    batch = reader.read_batch(Checkpoint())
    assert len(batch.records) == 20
    assert reader.backlog_bytes(batch.checkpoint) == 0
    # Nothing is deleted until the checkpoint that finishes the segments is saved.
    assert reader.delete_consumed() == Checkpoint()
    assert len(reader.segments()) == 3
    reader.save_checkpoint(batch.checkpoint)
    remaining = reader.delete_consumed()
    assert reader.segments() == [live_name]
    assert dict(remaining.offsets) == {live_name: batch.checkpoint.offset(live_name)}
    assert reader.load_checkpoint() == remaining
    writer.append(b"more")
    writer.close()
    assert read_all(reader, reader.load_checkpoint()) == [b"more"]


def test_delete_consumed_removes_only_old_unlocked_half_created_files(tmp_path: Path) -> None:
    old = tmp_path / (segment_path(tmp_path, 0).name + ".creating")
    young = tmp_path / (segment_path(tmp_path, 1).name + ".creating")
    held = tmp_path / (segment_path(tmp_path, 2).name + ".creating")
    for path in (old, young, held):
        path.write_bytes(SEGMENT_MAGIC)
    an_hour_ago = time.time() - 3600
    os.utime(old, (an_hour_ago, an_hour_ago))
    os.utime(held, (an_hour_ago, an_hour_ago))
    with live_writer_lock(held):
        WalReader(tmp_path).delete_consumed()
    assert sorted(p.name for p in tmp_path.glob("*.creating")) == sorted([young.name, held.name])
