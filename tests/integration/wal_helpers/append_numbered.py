"""Child writer for the WAL crash test: appends numbered records, prints each acknowledged seq.

Usage: append_numbered.py DIRECTORY WRITER_ID RUN COUNT SEGMENT_BYTES STRICT(0|1)
COUNT 0 means forever (until killed). A record is `writer:run:seq:` then padding derived
from seq, so the reader can check every byte. The seq goes to stdout only after `append`
returned, so a printed seq is an acknowledged one.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from perfmark.adapters.wal import WalWriter


def record(writer_id: str, run: int, seq: int) -> bytes:
    """The payload of record `seq`: sizes from 20 to ~12 KB so some writes span pages."""
    size = (seq * 7919) % 12_000 if seq % 5 == 0 else (seq * 31) % 400
    return f"{writer_id}:{run}:{seq}:".encode() + bytes([seq % 251]) * size


def main() -> None:
    directory, writer_id = Path(sys.argv[1]), sys.argv[2]
    run, count, segment_bytes = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    strict = sys.argv[6] == "1"
    writer = WalWriter(directory, writer_id, strict=strict, segment_bytes=segment_bytes)
    os.write(1, b"ready\n")
    seq = 0
    while count == 0 or seq < count:
        writer.append(record(writer_id, run, seq))
        os.write(1, f"{seq}\n".encode())
        seq += 1
    writer.close()
    os.write(1, b"done\n")


if __name__ == "__main__":
    main()
