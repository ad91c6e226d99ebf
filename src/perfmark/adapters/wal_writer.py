"""The write-ahead log writer: one per HTTP worker process, one `os.write` per append.

`append` returns once the framed record is in the operating system's page cache, so a
killed process loses nothing it acknowledged; a background thread fsyncs the segment every
`fsync_interval_ms` when there were writes (group commit), or `strict=True` fsyncs before
`append` returns. Every method is thread-safe (one lock around the write, fsync outside it).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import threading
import time
import weakref
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

from perfmark.adapters.wal_format import (
    CLOSE_MARKER,
    SEGMENT_HEADER_BYTES,
    SEGMENT_MAGIC,
    SegmentName,
    WalClosedError,
    WalWriteError,
    encode_record,
    fsync_directory,
    validate_writer_id,
)

__all__ = [
    "DEFAULT_FSYNC_INTERVAL_MS",
    "DEFAULT_SEGMENT_BYTES",
    "MIN_SEGMENT_BYTES",
    "WalWriter",
]

DEFAULT_FSYNC_INTERVAL_MS = 50
DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024
#: Small enough for tests that rotate often, large enough for a header and a few frames.
MIN_SEGMENT_BYTES = 256
_CREATING_SUFFIX = ".creating"
_FILE_MODE = 0o644

# Writers alive in this process, so that a forked child can disown its inherited copies.
_LIVE_WRITERS: weakref.WeakSet[WalWriter] = weakref.WeakSet()
_fork_hook_registered = False
_fork_hook_lock = threading.Lock()


def _disown_writers_after_fork() -> None:
    for writer in list(_LIVE_WRITERS):
        writer._disown_after_fork()


def _register_fork_hook() -> None:
    global _fork_hook_registered
    with _fork_hook_lock:
        if not _fork_hook_registered:
            os.register_at_fork(after_in_child=_disown_writers_after_fork)
            _fork_hook_registered = True


class _Segment:
    """The open segment: its fd, name and size, and whether it is finished or damaged."""

    __slots__ = ("closed", "damaged", "fd", "name", "size", "synced_size")

    def __init__(self, fd: int, name: SegmentName) -> None:
        self.fd = fd
        self.name = name
        self.size = SEGMENT_HEADER_BYTES  # bytes written (only grows once a write returned)
        self.synced_size = 0  # bytes known durable
        self.closed = False
        # A write failed part-way through a frame: the segment ends in a torn frame and no
        # further frame may follow it, so the next append starts a new segment.
        self.damaged = False


class WalWriter:
    """Appends framed records to this writer's own segments in `directory`."""

    def __init__(
        self,
        directory: Path,
        writer_id: str,
        *,
        fsync_interval_ms: int = DEFAULT_FSYNC_INTERVAL_MS,
        strict: bool = False,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
    ) -> None:
        if fsync_interval_ms < 0:
            raise ValueError(
                f"fsync_interval_ms={fsync_interval_ms} is negative; use 0 (fsync as soon as "
                "possible) or a positive number of milliseconds"
            )
        if segment_bytes < MIN_SEGMENT_BYTES:
            raise ValueError(
                f"segment_bytes={segment_bytes} is below the minimum of {MIN_SEGMENT_BYTES}; "
                "use a larger segment size (the default is 64 MiB)"
            )
        self._directory = directory
        self._writer_id = validate_writer_id(writer_id)
        self._fsync_interval_s = fsync_interval_ms / 1000
        self._strict = strict
        self._rotate_above_bytes = segment_bytes - len(CLOSE_MARKER)
        # Wall-clock nanoseconds first so a restarted writer's segments sort after the old
        # ones; pid and randomness so two processes can never pick the same names.
        self._generation = f"{time.time_ns():020d}-{os.getpid()}-{secrets.token_hex(4)}"
        self._lock = threading.Lock()  # guards the segment, the size and the flags
        self._sync_lock = threading.Lock()  # held while an fd is fsynced, so it stays open
        self._dirty = False
        self._closed = False
        self._disowned = False
        self._failure: OSError | None = None
        # True once closed, disowned or failed: the hot path tests this one flag.
        self._refusing = False
        self._wake = threading.Event()
        self._stop = threading.Event()
        directory.mkdir(parents=True, exist_ok=True)
        self._segment = self._create_segment(0)
        self._syncer: threading.Thread | None = None
        if not strict:
            self._syncer = threading.Thread(
                target=self._sync_loop, name=f"wal-fsync-{writer_id}", daemon=True
            )
            self._syncer.start()
        _register_fork_hook()
        _LIVE_WRITERS.add(self)

    @property
    def writer_id(self) -> str:
        """The id this writer's segment names start with."""
        return self._writer_id

    @property
    def directory(self) -> Path:
        """The WAL directory."""
        return self._directory

    @property
    def segment_file_name(self) -> str:
        """The file name of the segment appends currently go to."""
        return self._segment.name.file_name

    def append(self, payload: bytes) -> None:
        """Append one record; on return it survives a killed process (and, if strict, a crash)."""
        self._write(encode_record(payload))

    def append_many(self, payloads: Iterable[bytes]) -> None:
        """Append several records with one write; all are acknowledged together."""
        data = b"".join([encode_record(payload) for payload in payloads])
        if data:
            self._write(data)

    def sync(self) -> None:
        """fsync everything appended so far, now."""
        with self._lock:
            self._check_usable()
            segment = self._segment
            self._dirty = False
        self._sync_segment(segment)

    def close(self) -> None:
        """Flush, fsync and mark the current segment closed; later appends raise."""
        with self._lock:
            if self._closed or self._disowned:
                self._closed = self._refusing = True
                return
            self._closed = self._refusing = True
        self._stop.set()
        self._wake.set()
        if self._syncer is not None:
            self._syncer.join()
        with self._lock:
            self._finish_segment(self._segment)
        _LIVE_WRITERS.discard(self)

    def __enter__(self) -> WalWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _sync_fd(self, fd: int) -> None:
        """Make the data written to `fd` durable; a hook tests override to count fsyncs."""
        os.fdatasync(fd)

    def _write(self, data: bytes) -> None:
        # The hot path: keep it to one lock, one flag test, one os.write.
        with self._lock:
            if self._refusing:
                self._check_usable()
            segment = self._segment
            if segment.damaged or (
                segment.size + len(data) > self._rotate_above_bytes
                and segment.size > SEGMENT_HEADER_BYTES
            ):
                try:
                    segment = self._rotate()
                except OSError as error:
                    raise WalWriteError(
                        f"could not start a new write-ahead log segment in {self._directory} "
                        f"({error}); the event was not recorded: answer 503 and check the disk"
                    ) from error
            try:
                written = os.write(segment.fd, data)
                if written != len(data):
                    # A regular file only writes short when the disk is full or a limit is
                    # hit; finish the frame if we can, otherwise the next write fails below.
                    written = self._write_rest(segment, data, written)
            except OSError as error:
                raise self._write_error(segment, 0, len(data), error) from error
            segment.size += written
            written_through = segment.size
            if not self._dirty:
                self._dirty = True
                self._wake.set()
        if self._strict:
            # Yield the GIL before taking the sync lock: the threads the last fsync woke then
            # write their records first and this fsync covers them too (without it, a thread
            # returning from one fsync often took the next one alone: 46-76 fsyncs for 120
            # appends from 8 threads on a busy machine, against 19-30 with it).
            time.sleep(0)
            self._sync_segment(segment, written_through)

    def _write_rest(self, segment: _Segment, data: bytes, written: int) -> int:
        try:
            while written < len(data):
                written += os.write(segment.fd, data[written:])
        except OSError as error:
            segment.damaged = True  # a torn frame ends the segment: nothing may follow it
            raise self._write_error(segment, written, len(data), error) from error
        return written

    def _write_error(
        self, segment: _Segment, written: int, total: int, error: OSError
    ) -> WalWriteError:
        return WalWriteError(
            f"write-ahead log write to {self._directory / segment.name.file_name} failed "
            f"after {written} of {total} bytes ({error}); the event was not recorded: "
            "answer 503 and check free disk space"
        )

    def _check_usable(self) -> None:
        if self._disowned:
            raise WalClosedError(
                f"WAL writer {self._writer_id!r} was created in another process (before a "
                "fork); create one writer in each worker process after it starts"
            )
        if self._closed:
            raise WalClosedError(f"WAL writer {self._writer_id!r} is closed")
        if self._failure is not None:
            raise WalWriteError(
                f"an earlier fsync of the write-ahead log in {self._directory} failed "
                f"({self._failure}); records may not be durable: restart the worker"
            ) from self._failure

    def _create_segment(self, seq: int) -> _Segment:
        name = SegmentName(self._writer_id, self._generation, seq)
        final_path = self._directory / name.file_name
        temp_path = self._directory / (name.file_name + _CREATING_SUFFIX)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC
        fd = os.open(temp_path, flags, _FILE_MODE)
        try:
            # Locked before the file has its final name, so a reader never sees this segment
            # unlocked while its writer lives (unlocked means finished or abandoned).
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.write(fd, SEGMENT_MAGIC)
            os.rename(temp_path, final_path)
            fsync_directory(self._directory)
        except BaseException:
            os.close(fd)
            temp_path.unlink(missing_ok=True)
            raise
        return _Segment(fd, name)

    def _rotate(self) -> _Segment:
        old = self._segment
        new = self._create_segment(old.name.seq + 1)
        self._segment = new
        self._finish_segment(old)
        return new

    def _finish_segment(self, segment: _Segment) -> None:
        # Called with self._lock held; takes the sync lock so no fsync runs on a closed fd.
        with self._sync_lock:
            if segment.closed:
                return
            try:
                if not segment.damaged:
                    # Without the marker (disk full) the segment still ends: its lock goes.
                    with contextlib.suppress(OSError):
                        os.write(segment.fd, CLOSE_MARKER)
                self._sync_fd(segment.fd)
            except OSError as error:
                self._failure = error  # as in _sync_segment: durability can't be promised
                self._refusing = True
                raise
            finally:
                segment.closed = True
                os.close(segment.fd)

    def _sync_segment(self, segment: _Segment, through: int | None = None) -> None:
        # Strict appends from several threads share fsyncs: whoever waited for the sync
        # lock while another fsync ran finds its bytes covered, or covers everyone's.
        with self._sync_lock:
            if segment.closed:
                return  # closing fsynced it
            if through is not None and segment.synced_size >= through:
                return
            # A lower bound of what is written: size grows only after os.write returned.
            covered = segment.size
            try:
                self._sync_fd(segment.fd)
                segment.synced_size = covered
            except OSError as error:
                # After a failed fsync the kernel may have dropped dirty pages: nothing
                # written since the last good fsync can be trusted as durable any more.
                self._failure = error
                self._refusing = True
                raise WalWriteError(
                    f"fsync of the write-ahead log {segment.name.file_name} failed ({error})"
                ) from error

    def _sync_loop(self) -> None:
        while True:
            self._wake.wait()
            # Let the writes of the next interval join this fsync (the group commit).
            if self._stop.wait(self._fsync_interval_s):
                return  # close() does the final fsync itself
            with self._lock:
                self._wake.clear()
                dirty, self._dirty = self._dirty, False
                segment = self._segment
            # close() sets stop, then wake: if we cleared its wake-up, we see its stop here.
            if self._stop.is_set():
                return
            if not dirty:
                continue
            try:
                self._sync_segment(segment)
            except WalWriteError:
                return  # appends now raise; the failure is recorded

    def _disown_after_fork(self) -> None:
        # Runs in a forked child: the locks may have been held by parent threads at fork
        # time, so replace them; closing the inherited fd keeps the parent's flock intact.
        self._lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._disowned = self._refusing = True
        self._syncer = None
        if not self._segment.closed:
            self._segment.closed = True
            with contextlib.suppress(OSError):
                os.close(self._segment.fd)
