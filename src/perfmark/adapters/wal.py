"""The write-ahead log: per-worker append-only segments that the processor tails.

`WalWriter` (wal_writer.py) appends on the hot path; `WalReader` (wal_reader.py) reads
complete records from a `Checkpoint`; wal_format.py holds the on-disk format. docs/wal.md
describes the format, the durability modes and the recovery rules.
"""

from __future__ import annotations

from perfmark.adapters.wal_format import (
    MAX_PAYLOAD_BYTES,
    WalClosedError,
    WalError,
    WalWriteError,
    encode_record,
)
from perfmark.adapters.wal_reader import Checkpoint, TornTail, WalBatch, WalReader, WalRecord
from perfmark.adapters.wal_writer import (
    DEFAULT_FSYNC_INTERVAL_MS,
    DEFAULT_SEGMENT_BYTES,
    WalWriter,
)

__all__ = [
    "DEFAULT_FSYNC_INTERVAL_MS",
    "DEFAULT_SEGMENT_BYTES",
    "MAX_PAYLOAD_BYTES",
    "Checkpoint",
    "TornTail",
    "WalBatch",
    "WalClosedError",
    "WalError",
    "WalReader",
    "WalRecord",
    "WalWriteError",
    "WalWriter",
    "encode_record",
]
