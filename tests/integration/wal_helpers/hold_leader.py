"""Child for the leader-lock test: takes the lock, says so, then sleeps until killed."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from perfmark.adapters.leader import LeaderLock

if __name__ == "__main__":
    lock = LeaderLock(Path(sys.argv[1]))
    os.write(1, b"acquired\n" if lock.try_acquire() else b"refused\n")
    time.sleep(600)
