"""The write-ahead log's on-disk format: segment header, record frames, names, liveness probe.

A segment file is `SEGMENT_MAGIC` (8 bytes) followed by frames. A frame is a little-endian
header `<II` (length, crc) and `length` payload bytes; `crc` is CRC-32 of the four length
bytes followed by the payload, so a damaged length is caught as surely as a damaged payload.
A length with `CONTROL_FLAG` set is a control frame with no payload; the only one is the
close marker a writer appends when it finishes a segment. docs/wal.md describes the rules.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "CLOSE_MARKER",
    "CONTROL_FLAG",
    "MAX_PAYLOAD_BYTES",
    "RECORD_HEADER_BYTES",
    "SEGMENT_HEADER_BYTES",
    "SEGMENT_MAGIC",
    "SEGMENT_SUFFIX",
    "SegmentName",
    "WalClosedError",
    "WalError",
    "WalWriteError",
    "encode_record",
    "fsync_directory",
    "is_segment_locked",
    "record_crc",
    "unpack_record_header",
    "validate_writer_id",
]

#: First bytes of every segment file; the trailing digits are the format version.
SEGMENT_MAGIC = b"PMWAL01\n"
SEGMENT_HEADER_BYTES = len(SEGMENT_MAGIC)
SEGMENT_SUFFIX = ".wal"

_RECORD_HEADER = struct.Struct("<II")
_pack_u32 = struct.Struct("<I").pack
_crc32 = zlib.crc32
RECORD_HEADER_BYTES = _RECORD_HEADER.size

#: Bit 31 of the length field marks a control frame (no payload follows).
CONTROL_FLAG = 0x8000_0000
_CLOSE_LENGTH = CONTROL_FLAG
#: The frame a writer appends when it closes a segment: nothing follows it.
CLOSE_MARKER = _RECORD_HEADER.pack(_CLOSE_LENGTH, zlib.crc32(_CLOSE_LENGTH.to_bytes(4, "little")))

#: The largest payload one record may carry; a larger length field is read as corruption.
MAX_PAYLOAD_BYTES = 16 * 1024 * 1024

_WRITER_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_SEGMENT_NAME_PATTERN = re.compile(
    r"^(?P<writer>[A-Za-z0-9_-]{1,64})\.(?P<generation>[0-9a-z-]{1,80})\.(?P<seq>[0-9]{8})"
    + re.escape(SEGMENT_SUFFIX)
    + "$"
)


class WalError(Exception):
    """A write-ahead log operation that failed; the record in hand was not acknowledged."""


class WalClosedError(WalError):
    """An append to a writer that was closed (or inherited across a fork)."""


class WalWriteError(WalError):
    """The operating system refused a write or an fsync; the record was not acknowledged."""


def validate_writer_id(writer_id: str) -> str:
    """Return `writer_id` if it can be part of a segment file name, else raise ValueError."""
    if not _WRITER_ID_PATTERN.match(writer_id):
        raise ValueError(
            f"writer_id {writer_id!r} cannot name a WAL segment: use 1 to 64 characters "
            "from A-Z, a-z, 0-9, '_' and '-' (for example 'w0' or 'node1-w3')"
        )
    return writer_id


def encode_record(payload: bytes) -> bytes:
    """Frame one payload: header (length, CRC-32 of length bytes and payload) then payload."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ValueError(
            f"WAL record payload of {len(payload)} bytes is above the limit of "
            f"{MAX_PAYLOAD_BYTES} bytes; split the event or reject the request"
        )
    # The hot path: the fastest of the spellings measured (join beats two concatenations).
    head = _pack_u32(len(payload))
    return b"".join((head, _pack_u32(_crc32(payload, _crc32(head))), payload))


def unpack_record_header(data: bytes | memoryview, offset: int) -> tuple[int, int]:
    """The (length field, crc) of the frame header at `offset` of `data`."""
    length, crc = _RECORD_HEADER.unpack_from(data, offset)
    return int(length), int(crc)


def record_crc(length: int, payload: bytes | memoryview) -> int:
    """The CRC a frame with this length field and payload must carry."""
    return zlib.crc32(payload, zlib.crc32(length.to_bytes(4, "little")))


@dataclass(frozen=True, slots=True, order=True)
class SegmentName:
    """A segment file name: writer id, the writing process's generation and a sequence number.

    Names sort by (writer id, generation, sequence); the generation starts with the
    wall-clock nanoseconds at which the writer started, so within one writer id they sort
    by creation (on a clock that does not step back).
    """

    writer_id: str
    generation: str
    seq: int

    @property
    def file_name(self) -> str:
        """The name of the segment's file in the WAL directory."""
        return f"{self.writer_id}.{self.generation}.{self.seq:08d}{SEGMENT_SUFFIX}"

    @classmethod
    def parse(cls, file_name: str) -> SegmentName | None:
        """The parts of `file_name`, or None when it is not a segment file name."""
        match = _SEGMENT_NAME_PATTERN.match(file_name)
        if match is None:
            return None
        return cls(match["writer"], match["generation"], int(match["seq"]))


def is_segment_locked(path: Path) -> bool:
    """Whether a live writer holds `path` (its exclusive flock); False when it is gone.

    The writer takes the lock before the file gets its final name and keeps it until it
    closes the segment; the kernel drops it when the process dies, however it dies.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as error:
        if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return True
        raise
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def fsync_directory(directory: Path) -> None:
    """fsync a directory so that file creations, renames and deletions in it are durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
