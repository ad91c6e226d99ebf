"""Tests of the mapped WAL writer's on-disk rules: reserved zero tail, header last, exact size.

The writer stores frames into a shared map of space it reserved ahead, so a live or killed
writer's segment runs on in zeros; these tests pin what the reader makes of that, with real
processes where a second CPU or a SIGKILL matters.
"""

from __future__ import annotations

import fcntl
import os
import random
import signal
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from perfmark.adapters.wal import Checkpoint, WalReader, WalWriter, encode_record
from perfmark.adapters.wal_format import (
    CLOSE_MARKER,
    RECORD_HEADER_BYTES,
    SEGMENT_MAGIC,
    ZERO_HEADER,
    SegmentName,
    is_segment_locked,
)
from perfmark.adapters.wal_writer import RESERVE_CHUNK_BYTES

WAIT_LIMIT_S = 60.0

# The child writers below write `payload(seq)`; this module's copy checks every byte.
PAYLOAD_SOURCE = """
def payload(seq):
    size = (seq * 7919) % 9000 if seq % 3 == 0 else (seq * 31) % 300
    return f"{seq}:".encode() + bytes([seq % 251]) * size
"""

APPEND_THEN_WAIT = (
    PAYLOAD_SOURCE
    + """
import os, sys
from pathlib import Path
from perfmark.adapters.wal import WalWriter
writer = WalWriter(Path(sys.argv[1]), "w0", segment_bytes=int(sys.argv[3]))
for seq in range(int(sys.argv[2])):
    writer.append(payload(seq))
os.write(1, b"ready\\n")
os.read(0, 1)  # wait to be killed
"""
)

APPEND_FAST_THEN_CLOSE = (
    PAYLOAD_SOURCE
    + """
import os, sys
from pathlib import Path
from perfmark.adapters.wal import WalWriter
writer = WalWriter(Path(sys.argv[1]), "w0", segment_bytes=int(sys.argv[3]))
seq, count = 0, int(sys.argv[2])
while seq < count:
    if seq % 10 == 0:  # some batches too: their first header is stored last
        writer.append_many([payload(s) for s in range(seq, min(seq + 4, count))])
        seq = min(seq + 4, count)
    else:
        writer.append(payload(seq))
        seq += 1
writer.close()
"""
)


def payload(seq: int) -> bytes:
    """What the child writers append as record `seq` (mirrors PAYLOAD_SOURCE)."""
    size = (seq * 7919) % 9000 if seq % 3 == 0 else (seq * 31) % 300
    return f"{seq}:".encode() + bytes([seq % 251]) * size


def frame(data: bytes) -> bytes:
    """The frame format written out independently of the code under test."""
    length = len(data).to_bytes(4, "little")
    return length + zlib.crc32(length + data).to_bytes(4, "little") + data


@contextmanager
def live_writer_lock(path: Path) -> Iterator[int]:
    """Hold the segment's flock the way a live writer does; yields a writable fd."""
    fd = os.open(path, os.O_WRONLY)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        yield fd
    finally:
        os.close(fd)


def start_child(script: str, *args: object) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", script, *map(str, args)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )


def read_everything(reader: WalReader, checkpoint: Checkpoint) -> tuple[list[bytes], Checkpoint]:
    batch = reader.read_batch(checkpoint, max_records=1_000_000, max_bytes=1 << 30)
    assert batch.torn_tails == ()
    return [record.payload for record in batch.records], batch.checkpoint


def test_an_all_zero_header_is_never_a_frame() -> None:
    # Only a zero length could give a zero header, and the empty record's CRC is not 0.
    assert encode_record(b"")[:RECORD_HEADER_BYTES] != ZERO_HEADER


def test_a_zero_tail_ends_the_data_live_or_abandoned(tmp_path: Path) -> None:
    payloads = [b"first", b"", b"x" * 700]
    written = SEGMENT_MAGIC + b"".join(map(frame, payloads))
    path = tmp_path / SegmentName("w0", "00000000000000000001-1-abcd", 0).file_name
    path.write_bytes(written + bytes(4096))
    reader = WalReader(tmp_path)

    with live_writer_lock(path) as fd:
        batch = reader.read_batch(Checkpoint())
        assert [r.payload for r in batch.records] == payloads
        assert (batch.finished_segments, batch.torn_tails) == ((), ())
        assert batch.checkpoint.offset(path.name) == len(written)
        assert reader.backlog_bytes(Checkpoint()) == len(written) - len(SEGMENT_MAGIC)
        # The writer's order: the payload first (its header still zero: nothing to read
        # yet, and no corruption either), then the header.
        late = frame(b"late record")
        os.pwrite(fd, late[RECORD_HEADER_BYTES:], len(written) + RECORD_HEADER_BYTES)
        assert reader.backlog_bytes(batch.checkpoint) == 0
        waiting = reader.read_batch(batch.checkpoint)
        assert (waiting.records, waiting.torn_tails, waiting.finished_segments) == ((), (), ())
        os.pwrite(fd, late[:RECORD_HEADER_BYTES], len(written))
        assert reader.backlog_bytes(batch.checkpoint) == len(late)
        batch = reader.read_batch(batch.checkpoint)
        assert [r.payload for r in batch.records] == [b"late record"]
        assert batch.finished_segments == ()

    # The writer is gone: the data ends at the zeros, for good, and that is no torn tail.
    batch = reader.read_batch(batch.checkpoint)
    assert (batch.records, batch.torn_tails) == ((), ())
    assert batch.finished_segments == (path.name,)
    assert batch.checkpoint.offset(path.name) == len(written) + len(late)


def test_bytes_after_a_zero_header_of_a_dead_segment_are_a_torn_tail(tmp_path: Path) -> None:
    # The writer died after storing a payload but before its header (the record was never
    # acknowledged), or a header was damaged: the good records are read, the rest reported.
    good = [b"kept one", b"kept two"]
    written = SEGMENT_MAGIC + b"".join(map(frame, good))
    orphan = frame(b"never acknowledged")[RECORD_HEADER_BYTES:]
    path = tmp_path / SegmentName("w0", "00000000000000000001-1-abcd", 0).file_name
    tail = ZERO_HEADER + orphan + bytes(4096)
    path.write_bytes(written + tail)

    batch = WalReader(tmp_path).read_batch(Checkpoint())

    assert [r.payload for r in batch.records] == good
    assert batch.finished_segments == (path.name,)
    (torn,) = batch.torn_tails
    assert (torn.segment, torn.offset, torn.skipped_bytes) == (path.name, len(written), len(tail))


def test_a_killed_writers_zero_tailed_segment_is_read_exactly(tmp_path: Path) -> None:
    count = 400
    child = start_child(APPEND_THEN_WAIT, tmp_path, count, 64 * 1024 * 1024)
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == b"ready\n"
        reader = WalReader(tmp_path)
        (name,) = reader.segments()
        path = tmp_path / name
        written = len(SEGMENT_MAGIC) + sum(len(frame(payload(seq))) for seq in range(count))
        assert path.stat().st_size > written  # the reserved tail is there

        # Live: every record, then the reader waits at the zeros.
        assert reader.backlog_bytes(Checkpoint()) == written - len(SEGMENT_MAGIC)
        live_payloads, live_checkpoint = read_everything(reader, Checkpoint())
        assert live_payloads == [payload(seq) for seq in range(count)]
        assert live_checkpoint.finished == frozenset()
        assert live_checkpoint.offset(name) == written
        assert reader.backlog_bytes(live_checkpoint) == 0
    finally:
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=WAIT_LIMIT_S) == -signal.SIGKILL
    assert not is_segment_locked(path)
    assert path.stat().st_size > written  # nobody cut the tail: the writer was killed

    # Abandoned: nothing more, finished where the data ends, no torn tail.
    more, finished_checkpoint = read_everything(reader, live_checkpoint)
    assert more == []
    assert finished_checkpoint.finished == frozenset({name})
    assert finished_checkpoint.offset(name) == written
    # A fresh consumer reads exactly the same records and finishes it in one go.
    again, fresh_checkpoint = read_everything(reader, Checkpoint())
    assert again == [payload(seq) for seq in range(count)]
    assert fresh_checkpoint == finished_checkpoint
    assert reader.backlog_bytes(Checkpoint()) == written - len(SEGMENT_MAGIC)
    reader.save_checkpoint(finished_checkpoint)
    reader.delete_consumed()
    assert reader.segments() == []


def test_a_reader_tailing_a_live_writer_never_sees_a_partial_or_corrupt_record(
    tmp_path: Path,
) -> None:
    count = 4000  # about 6 MB in 256 KiB segments: many rotations, frames across pages
    child = start_child(APPEND_FAST_THEN_CLOSE, tmp_path, count, 256 * 1024)
    reader = WalReader(tmp_path)
    checkpoint = Checkpoint()
    got: list[bytes] = []
    batches_while_writing = 0
    deadline = time.monotonic() + WAIT_LIMIT_S
    while True:
        running = child.poll() is None
        batch = reader.read_batch(checkpoint, max_records=500)
        # A live segment's incomplete frame is waited for, never reported or yielded.
        assert batch.torn_tails == ()
        for record in batch.records:
            assert record.payload == payload(len(got)), f"record {len(got)} is wrong"
            got.append(record.payload)
        checkpoint = batch.checkpoint
        batches_while_writing += running and bool(batch.records)
        if not running and len(got) == count:
            break
        assert time.monotonic() < deadline, f"read {len(got)} of {count} records"
        if not batch.records:
            time.sleep(0.001)
    assert child.wait(timeout=WAIT_LIMIT_S) == 0
    assert batches_while_writing >= 3  # it really read while the writer ran
    last = reader.read_batch(checkpoint)
    assert last.records == ()
    assert set(last.checkpoint.finished) == set(reader.segments())


def test_finished_segments_are_exactly_their_written_bytes(tmp_path: Path) -> None:
    rng = random.Random(11)
    payloads = [f"{i}:".encode() + b"q" * rng.randrange(0, 3000) for i in range(200)]
    segment_bytes = 48 * 1024
    writer = WalWriter(tmp_path, "w0", segment_bytes=segment_bytes)
    expected: dict[str, bytes] = {}
    for item in payloads:
        name = writer.segment_file_name
        writer.append(item)
        if writer.segment_file_name != name:  # rotated: `item` went to the next segment
            expected[name] += CLOSE_MARKER
            name = writer.segment_file_name
        expected[name] = expected.get(name, SEGMENT_MAGIC) + frame(item)
    live = writer.segment_file_name
    # While written to, the file is its reservation: larger than its data.
    assert (tmp_path / live).stat().st_size == min(RESERVE_CHUNK_BYTES, segment_bytes)
    assert (tmp_path / live).stat().st_size > len(expected[live])
    writer.close()
    expected[live] += CLOSE_MARKER
    assert len(expected) > 3
    for name, content in expected.items():
        assert (tmp_path / name).stat().st_size == len(content), name
        assert (tmp_path / name).read_bytes() == content, name
    reader = WalReader(tmp_path)
    total = sum(len(content) - len(SEGMENT_MAGIC) for content in expected.values())
    assert reader.backlog_bytes(Checkpoint()) == total


def test_a_segment_grows_its_reservation_and_a_huge_record_gets_its_own(tmp_path: Path) -> None:
    big = b"B" * (RESERVE_CHUNK_BYTES + 5000)  # more than one reservation step
    with WalWriter(tmp_path, "w0", segment_bytes=3 * RESERVE_CHUNK_BYTES) as writer:
        small = [bytes([i % 256]) * 2000 for i in range(600)]  # 1.2 MB: the map grows once
        writer.append_many(small[:10])
        for item in small[10:]:
            writer.append(item)
        writer.append(big)
        huge = b"H" * (4 * RESERVE_CHUNK_BYTES)  # above segment_bytes: alone in a segment
        writer.append(huge)
        writer.append(b"after")
    reader = WalReader(tmp_path)
    names = reader.segments()
    assert len(names) == 3
    assert (tmp_path / names[1]).read_bytes() == SEGMENT_MAGIC + frame(huge) + CLOSE_MARKER
    payloads, _ = read_everything(reader, Checkpoint())
    assert payloads == [*small, big, huge, b"after"]


def test_a_forked_child_keeps_no_map_of_the_parents_segment(tmp_path: Path) -> None:
    writer = WalWriter(tmp_path, "w0")
    writer.append(b"parent")
    segment = str(tmp_path / writer.segment_file_name)
    with open("/proc/self/maps", encoding="utf-8") as maps:
        assert segment in maps.read()  # the parent writes through a map of it
    pid = os.fork()
    if pid == 0:  # child: the fork hook unmapped it, so no store can reach the parent's file
        with open("/proc/self/maps", encoding="utf-8") as maps:
            os._exit(1 if segment in maps.read() else 0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    writer.append(b"parent again")
    writer.close()
    payloads, _ = read_everything(WalReader(tmp_path), Checkpoint())
    assert payloads == [b"parent", b"parent again"]
