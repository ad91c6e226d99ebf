"""The write-ahead log reader: complete records of every segment, in order, from a checkpoint.

A frame that is cut short or fails its CRC is never yielded. While the segment's writer is
alive (it holds the segment's flock) the reader stops there and tries again next time; once
the segment is finished (close marker) or abandoned (no live writer) the bad tail is skipped
for good and reported as a `TornTail`. Delivery is at least once from the saved checkpoint.
"""

from __future__ import annotations

import io
import json
import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from perfmark.adapters.wal_format import (
    CLOSE_MARKER,
    CONTROL_FLAG,
    MAX_PAYLOAD_BYTES,
    RECORD_HEADER_BYTES,
    SEGMENT_HEADER_BYTES,
    SEGMENT_MAGIC,
    SEGMENT_SUFFIX,
    SegmentName,
    fsync_directory,
    is_segment_locked,
    record_crc,
    unpack_record_header,
)

__all__ = [
    "CHECKPOINT_VERSION",
    "DEFAULT_MAX_BATCH_BYTES",
    "DEFAULT_MAX_BATCH_RECORDS",
    "Checkpoint",
    "TornTail",
    "WalBatch",
    "WalReader",
    "WalRecord",
]

CHECKPOINT_VERSION = 1
DEFAULT_MAX_BATCH_RECORDS = 10_000
DEFAULT_MAX_BATCH_BYTES = 16 * 1024 * 1024
_READ_CHUNK_BYTES = 1024 * 1024
_CHECKPOINT_SUFFIX = ".checkpoint.json"
_CREATING_SUFFIX = ".creating"
_STALE_CREATING_AGE_S = 600.0
_CLOSE_LENGTH, _CLOSE_CRC = unpack_record_header(CLOSE_MARKER, 0)


def _frozen_offsets(offsets: Mapping[str, int]) -> Mapping[str, int]:
    return MappingProxyType(dict(offsets))


@dataclass(frozen=True)
class Checkpoint:
    """How far a consumer has read: the byte offset reached in each segment, and which are done.

    An offset of 0 (or a segment missing from `offsets`) means "from the start". A segment
    in `finished` was read to its end, torn tail included, and will never grow again.
    """

    offsets: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    finished: frozenset[str] = frozenset()

    def offset(self, segment: str) -> int:
        """The offset reached in `segment` (0 when it was never read)."""
        return self.offsets.get(segment, 0)

    def to_json(self) -> str:
        """The checkpoint as a JSON document (the form saved in the WAL directory)."""
        segments = {
            name: {"offset": offset, "finished": name in self.finished}
            for name, offset in sorted(self.offsets.items())
        }
        return json.dumps({"version": CHECKPOINT_VERSION, "segments": segments}, indent=1)

    @classmethod
    def from_json(cls, text: str) -> Checkpoint:
        """Parse a checkpoint saved by `to_json`; raises ValueError on anything else."""
        document: Any = json.loads(text)
        if not isinstance(document, dict) or document.get("version") != CHECKPOINT_VERSION:
            raise ValueError(
                f"not a version {CHECKPOINT_VERSION} WAL checkpoint: {text[:80]!r}; "
                "delete it only if replaying the whole log is acceptable"
            )
        offsets: dict[str, int] = {}
        finished: set[str] = set()
        for name, entry in document["segments"].items():
            offset, is_finished = entry["offset"], entry["finished"]
            if not isinstance(offset, int) or offset < 0 or not isinstance(is_finished, bool):
                raise ValueError(f"bad checkpoint entry for segment {name!r}: {entry!r}")
            offsets[name] = offset
            if is_finished:
                finished.add(name)
        return cls(_frozen_offsets(offsets), frozenset(finished))


@dataclass(frozen=True, slots=True)
class WalRecord:
    """One complete, CRC-checked record: its segment, the offset just after it, its payload."""

    segment: str
    offset_after: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class TornTail:
    """Bytes at the end of a finished or abandoned segment that were not a valid record."""

    segment: str
    offset: int
    skipped_bytes: int


@dataclass(frozen=True)
class WalBatch:
    """Records read in one call, the checkpoint after them, and tails skipped for good."""

    records: tuple[WalRecord, ...]
    checkpoint: Checkpoint
    torn_tails: tuple[TornTail, ...] = ()
    finished_segments: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class _SegmentRead:
    records: list[WalRecord]
    offset: int
    finished: bool
    torn: TornTail | None


class WalReader:
    """Reads the segments in `directory` and keeps the `consumer`'s checkpoint there."""

    def __init__(self, directory: Path, *, consumer: str = "processor") -> None:
        if not consumer.replace("-", "").replace("_", "").isalnum():
            raise ValueError(
                f"consumer {consumer!r} cannot name a checkpoint file; use letters, digits, "
                "'-' and '_'"
            )
        self._directory = directory
        self._checkpoint_path = directory / f"{consumer}{_CHECKPOINT_SUFFIX}"

    @property
    def checkpoint_path(self) -> Path:
        """The file the consumer's checkpoint is saved in."""
        return self._checkpoint_path

    def segments(self) -> list[str]:
        """File names of all segments in the directory, in reading order."""
        try:
            names = os.listdir(self._directory)
        except FileNotFoundError:
            return []
        parsed = [SegmentName.parse(name) for name in names if name.endswith(SEGMENT_SUFFIX)]
        return [name.file_name for name in sorted(item for item in parsed if item is not None)]

    def load_checkpoint(self) -> Checkpoint:
        """The saved checkpoint, or an empty one (read everything) when none was saved."""
        try:
            text = self._checkpoint_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return Checkpoint()
        return Checkpoint.from_json(text)

    def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Save `checkpoint` atomically: temporary file, fsync, rename, fsync the directory."""
        temp_path = self._checkpoint_path.with_name(self._checkpoint_path.name + ".tmp")
        data = checkpoint.to_json().encode("utf-8")
        self._directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(temp_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp_path, self._checkpoint_path)
        fsync_directory(self._directory)

    def read_batch(
        self,
        checkpoint: Checkpoint,
        *,
        max_records: int = DEFAULT_MAX_BATCH_RECORDS,
        max_bytes: int = DEFAULT_MAX_BATCH_BYTES,
    ) -> WalBatch:
        """Read up to `max_records` records (about `max_bytes` of payload) after `checkpoint`.

        Segments are read in `segments()` order; each segment with unread bytes gets an
        equal share of the budget, so one busy writer cannot starve the others.
        """
        if max_records < 1 or max_bytes < 1:
            raise ValueError(f"max_records={max_records} and max_bytes={max_bytes} must be >= 1")
        pending = [
            name
            for name in self.segments()
            if name not in checkpoint.finished and self._has_unread(name, checkpoint)
        ]
        offsets = dict(checkpoint.offsets)
        finished = set(checkpoint.finished)
        records: list[WalRecord] = []
        torn_tails: list[TornTail] = []
        newly_finished: list[str] = []
        for index, name in enumerate(pending):
            share = len(pending) - index
            record_quota = math.ceil((max_records - len(records)) / share)
            byte_quota = math.ceil(max_bytes / len(pending))
            if record_quota <= 0:
                break
            result = self._read_segment(name, offsets.get(name, 0), record_quota, byte_quota)
            records.extend(result.records)
            offsets[name] = result.offset
            if result.torn is not None:
                torn_tails.append(result.torn)
            if result.finished:
                finished.add(name)
                newly_finished.append(name)
        new_checkpoint = Checkpoint(_frozen_offsets(offsets), frozenset(finished))
        return WalBatch(tuple(records), new_checkpoint, tuple(torn_tails), tuple(newly_finished))

    def backlog_bytes(self, checkpoint: Checkpoint) -> int:
        """Bytes of segment data not yet read past `checkpoint` (a lag gauge, frames included)."""
        total = 0
        for name in self.segments():
            if name in checkpoint.finished:
                continue
            try:
                size = (self._directory / name).stat().st_size
            except FileNotFoundError:
                continue
            total += max(0, size - max(checkpoint.offset(name), SEGMENT_HEADER_BYTES))
        return total

    def delete_consumed(self) -> Checkpoint:
        """Delete the segments the saved checkpoint marks finished; save and return the rest.

        It works from the checkpoint on disk, never one in memory, so a segment is only
        deleted once its consumption is durable. Leftover half-created segment files of dead
        writers are deleted too.
        """
        saved = self.load_checkpoint()
        for name in sorted(saved.finished):
            (self._directory / name).unlink(missing_ok=True)
        stale_before = time.time() - _STALE_CREATING_AGE_S
        for name in os.listdir(self._directory):
            path = self._directory / name
            if name.endswith(SEGMENT_SUFFIX + _CREATING_SUFFIX) and self._is_stale(
                path, stale_before
            ):
                path.unlink(missing_ok=True)
        fsync_directory(self._directory)
        remaining = {
            name: offset for name, offset in saved.offsets.items() if name not in saved.finished
        }
        pruned = Checkpoint(_frozen_offsets(remaining), frozenset())
        self.save_checkpoint(pruned)
        return pruned

    @staticmethod
    def _is_stale(path: Path, stale_before: float) -> bool:
        # A writer creates the file and only then locks it: a young unlocked file may be
        # one being born, so only old ones count as left behind by a dead writer.
        try:
            if path.stat().st_mtime >= stale_before:
                return False
        except FileNotFoundError:
            return False
        return not is_segment_locked(path)

    def _has_unread(self, name: str, checkpoint: Checkpoint) -> bool:
        # A segment with no new bytes still needs a visit if its writer died or closed it,
        # so that it gets marked finished; only skip it while a live writer holds it.
        try:
            size = (self._directory / name).stat().st_size
        except FileNotFoundError:
            return False
        if size > max(checkpoint.offset(name), SEGMENT_HEADER_BYTES):
            return True
        return not is_segment_locked(self._directory / name)

    def _read_segment(
        self, name: str, start: int, record_quota: int, byte_quota: int
    ) -> _SegmentRead:
        path = self._directory / name
        # Probe liveness BEFORE reading: if the writer was already gone, what we read next is
        # the segment's final content and a bad tail can be skipped for good.
        live = is_segment_locked(path)
        with open(path, "rb", buffering=0) as file:
            size = os.fstat(file.fileno()).st_size
            if start < SEGMENT_HEADER_BYTES:
                header = file.read(SEGMENT_HEADER_BYTES)
                if header != SEGMENT_MAGIC:
                    if live:
                        return _SegmentRead([], start, False, None)
                    return _SegmentRead([], size, True, TornTail(name, 0, size))
                start = SEGMENT_HEADER_BYTES
            return self._read_frames(file, name, start, size, live, record_quota, byte_quota)

    def _read_frames(
        self,
        file: io.FileIO,
        name: str,
        start: int,
        size: int,
        live: bool,
        record_quota: int,
        byte_quota: int,
    ) -> _SegmentRead:
        records: list[WalRecord] = []
        payload_bytes = 0
        file.seek(start)
        buffer = b""
        base = start  # file offset of buffer[0]
        index = 0  # position in buffer of the next frame
        while len(records) < record_quota and payload_bytes < byte_quota:
            available = len(buffer) - index
            if available < RECORD_HEADER_BYTES:
                if base + len(buffer) < size:
                    buffer, base, index, size = self._refill(file, buffer, base, index, size, 0)
                    continue
                break  # end of data: clean if available == 0, else a cut header
            length, crc = unpack_record_header(buffer, index)
            if length & CONTROL_FLAG:
                if length == _CLOSE_LENGTH and crc == _CLOSE_CRC:
                    after = base + index + RECORD_HEADER_BYTES
                    torn = TornTail(name, after, size - after) if size > after else None
                    return _SegmentRead(records, size, True, torn)
                break  # corrupt control frame
            if length > MAX_PAYLOAD_BYTES:
                break  # corrupt length
            frame_end = index + RECORD_HEADER_BYTES + length
            if frame_end > len(buffer):
                if base + len(buffer) < size:
                    buffer, base, index, size = self._refill(
                        file, buffer, base, index, size, frame_end - index
                    )
                    continue
                break  # cut payload
            payload = buffer[index + RECORD_HEADER_BYTES : frame_end]
            if record_crc(length, payload) != crc:
                break  # corrupt frame
            index = frame_end
            payload_bytes += length
            records.append(WalRecord(name, base + index, payload))
        offset = base + index
        stopped_by_quota = len(records) >= record_quota or payload_bytes >= byte_quota
        if live or stopped_by_quota:
            return _SegmentRead(records, offset, False, None)
        torn = TornTail(name, offset, size - offset) if size > offset else None
        return _SegmentRead(records, size, True, torn)

    @staticmethod
    def _refill(
        file: io.FileIO, buffer: bytes, base: int, index: int, size: int, need: int
    ) -> tuple[bytes, int, int, int]:
        # Keep the unparsed rest, read at least what the current frame needs, up to the size
        # seen at the start (bytes after it belong to the next call). A short read means the
        # file shrank under us (it never should): treat its new end as the end.
        rest = buffer[index:]
        position = base + len(buffer)
        want = min(size - position, max(_READ_CHUNK_BYTES, need - len(rest)))
        chunk = file.read(want) or b""
        if len(chunk) < want:
            size = position + len(chunk)
        return rest + chunk, base + index, 0, size
