"""Child for the WAL write-failure test: a file size limit makes a write stop part-way.

Usage: write_until_limit.py DIRECTORY LIMIT_BYTES. Appends 3000-byte records under
RLIMIT_FSIZE until an append fails, lifts the limit, appends ten more and closes. Prints
each acknowledged seq, and `failed SEQ` for the refused one.
"""

from __future__ import annotations

import os
import resource
import signal
import sys
from pathlib import Path

from perfmark.adapters.wal import WalWriteError, WalWriter


def main() -> None:
    directory, limit = Path(sys.argv[1]), int(sys.argv[2])
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG instead of being killed
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    writer = WalWriter(directory, "w0", segment_bytes=4 * limit)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    seq = 0
    while True:
        try:
            writer.append(f"{seq}:".encode() + b"z" * 3000)
        except WalWriteError:
            os.write(1, f"failed {seq}\n".encode())
            break
        os.write(1, f"{seq}\n".encode())
        seq += 1
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    for later in range(seq + 1, seq + 11):
        writer.append(f"{later}:".encode() + b"z" * 3000)
        os.write(1, f"{later}\n".encode())
    writer.close()


if __name__ == "__main__":
    main()
