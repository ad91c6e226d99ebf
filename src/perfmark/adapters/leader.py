"""The processor leader lock: an exclusive, non-blocking flock on a file in the data directory.

Exactly one processor runs per data directory. The kernel releases a flock when the process
holding it dies, however it dies, so a SIGKILLed leader never leaves a stale lock behind.
The lock belongs to the open file: a child made by fork() shares it (and keeps it held
after the parent dies), while a child started by exec() does not inherit the descriptor.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from pathlib import Path
from types import TracebackType

__all__ = ["DEFAULT_POLL_INTERVAL_S", "LeaderLock", "LeaderLockHeldError"]

DEFAULT_POLL_INTERVAL_S = 0.2


class LeaderLockHeldError(RuntimeError):
    """Another process holds the leader lock."""


class LeaderLock:
    """The leader lock on `path`; `try_acquire()` or use it as a context manager."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._fd: int | None = None

    @property
    def path(self) -> Path:
        """The lock file."""
        return self._path

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None

    def try_acquire(self) -> bool:
        """Take the lock if it is free and return True; return False at once if it is held."""
        if self._fd is not None:
            return True
        self._path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(fd)
            if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return False
            raise
        # The pid is only for messages and operators; the flock alone decides who leads.
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return True

    def acquire(
        self, timeout_s: float | None = None, *, poll_interval_s: float = DEFAULT_POLL_INTERVAL_S
    ) -> bool:
        """Wait until the lock is taken (True) or `timeout_s` passes (False); None waits forever."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while not self.try_acquire():
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(poll_interval_s)
        return True

    def release(self) -> None:
        """Release the lock (a no-op when it is not held)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the only descriptor releases the flock

    def holder_pid(self) -> int | None:
        """The pid the current holder wrote into the lock file, if any (informational)."""
        try:
            text = self._path.read_text(encoding="ascii").strip()
        except (FileNotFoundError, UnicodeDecodeError):
            return None
        return int(text) if text.isdigit() else None

    def __enter__(self) -> LeaderLock:
        if not self.try_acquire():
            raise LeaderLockHeldError(
                f"another processor (pid {self.holder_pid()}) holds the leader lock "
                f"{self._path}; run one processor per data directory, or stop that one first"
            )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()
