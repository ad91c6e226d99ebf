"""The write-ahead log writer: one per HTTP worker process, storing frames into a shared map.

`append` returns once the framed record is in the operating system's page cache, so a
killed process loses nothing it acknowledged; a background thread fsyncs the segment every
`fsync_interval_ms` when there were writes (group commit), or `strict=True` fsyncs before
`append` returns. Every method is thread-safe (one lock around the store, fsync outside it).

Why a memory map and not one `os.write` per record: inside a real click loop (about 50 us
of Python work between appends) an `os.write` of a framed record cost 13.7 us, against
0.8 us for the same call in a tight loop: after that much Python work the system call runs
with cold caches and TLB (this kernel isolates page tables). A store into a MAP_SHARED map
of the file stayed at about 1 us in the same loop (bench/wal.py, docs/wal.md). Such a
store lands in the file's page cache pages themselves, so it survives a killed process
exactly like `write()` did.

A store into a part of the file that has no disk blocks raises SIGBUS (which kills the
worker) when the disk is full, so the writer reserves the blocks first with
`posix_fallocate`, in `RESERVE_CHUNK_BYTES` steps, and maps only reserved bytes; a refused
reservation is a `WalWriteError` before anything was stored. The file therefore runs on
past the frames in zeroed, reserved bytes; finishing a segment cuts them off.
"""

from __future__ import annotations

import contextlib
import fcntl
import mmap
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
    RECORD_HEADER_BYTES,
    SEGMENT_HEADER_BYTES,
    SEGMENT_MAGIC,
    SegmentName,
    WalClosedError,
    WalWriteError,
    encode_record,
    fsync_directory,
    record_header,
    validate_writer_id,
)

__all__ = [
    "DEFAULT_FSYNC_INTERVAL_MS",
    "DEFAULT_SEGMENT_BYTES",
    "MIN_SEGMENT_BYTES",
    "RESERVE_CHUNK_BYTES",
    "WalWriter",
]

DEFAULT_FSYNC_INTERVAL_MS = 50
DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024
#: Small enough for tests that rotate often, large enough for a header and a few frames.
MIN_SEGMENT_BYTES = 256
#: Disk space a segment reserves (and maps) at a time: one fallocate per few thousand appends.
RESERVE_CHUNK_BYTES = 1024 * 1024
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
    """The open segment: its fd and map, how far it is written and reserved, whether finished."""

    __slots__ = ("closed", "data_limit", "fd", "map", "name", "reserved", "size", "synced_size")

    def __init__(self, fd: int, name: SegmentName, reserved: int) -> None:
        self.fd = fd
        self.name = name
        self.map = mmap.mmap(fd, reserved)  # MAP_SHARED, read and write: the file's own pages
        self.reserved = reserved  # bytes of the file that have disk blocks and are mapped
        # Frames may be stored up to here: the rest of the reservation keeps room for the
        # close marker, so finishing a segment never needs more disk.
        self.data_limit = reserved - len(CLOSE_MARKER)
        self.size = SEGMENT_HEADER_BYTES  # bytes written (only grows once a store is complete)
        self.synced_size = 0  # bytes known durable
        self.closed = False

    def release(self) -> None:
        """Unmap and close the file (in this process; a flock goes with the last fd)."""
        self.closed = True
        self.map.close()
        os.close(self.fd)


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
        self._segment_bytes = segment_bytes
        self._rotate_above_bytes = segment_bytes - len(CLOSE_MARKER)
        # Wall-clock nanoseconds first so a restarted writer's segments sort after the old
        # ones; pid and randomness so two processes can never pick the same names.
        self._generation = f"{time.time_ns():020d}-{os.getpid()}-{secrets.token_hex(4)}"
        self._lock = threading.Lock()  # guards the segment, its map and size, and the flags
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
        self._store(record_header(payload), payload)

    def append_many(self, payloads: Iterable[bytes]) -> None:
        """Append several records at once; all are acknowledged (and seen by readers) together."""
        frames = memoryview(b"".join([encode_record(payload) for payload in payloads]))
        if frames:
            # The first header stored last makes the whole batch appear at once.
            self._store(frames[:RECORD_HEADER_BYTES], frames[RECORD_HEADER_BYTES:])

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
        """Make the data stored in the segment durable; a hook tests override to count fsyncs.

        fdatasync of the fd covers the stores made through the map: on Linux a MAP_SHARED
        map holds the file's page-cache pages themselves, a store marks its page dirty (the
        kernel write-protects clean shared pages and marks them dirty on the fault), and
        fdatasync writes back every dirty page of the file, however it was dirtied (msync
        with MS_SYNC is itself an fsync of the range since Linux 2.6.19). It also makes the
        file size that fallocate extended durable.
        """
        os.fdatasync(fd)

    def _store(self, header: bytes | memoryview, body: bytes | memoryview) -> None:
        # The hot path: one lock, one flag test, one bound test and two stores into the map.
        with self._lock:
            if self._refusing:
                self._check_usable()
            segment = self._segment
            start = segment.size
            end = start + RECORD_HEADER_BYTES + len(body)
            if end > segment.data_limit:
                segment = self._make_room(end - start)
                start = segment.size
                end = start + RECORD_HEADER_BYTES + len(body)
            # Payload first, header last: a reader that finds a non-zero header finds the
            # payload there too (stores become visible in program order on x86-64; on a
            # weaker CPU the CRC rejects a frame seen early and the reader reads it again).
            body_start = start + RECORD_HEADER_BYTES
            segment.map[body_start:end] = body
            segment.map[start:body_start] = header
            segment.size = end
            if not self._dirty:
                self._dirty = True
                self._wake.set()
        if self._strict:
            # Yield the GIL first, as os.write used to: threads that the last fsync woke
            # store their records now, and this fsync covers them too.
            time.sleep(0)
            self._sync_segment(segment, end)

    def _make_room(self, frame_bytes: int) -> _Segment:
        """The segment to store `frame_bytes` in: rotated past `segment_bytes`, reserved ahead."""
        segment = self._segment
        if (
            segment.size + frame_bytes > self._rotate_above_bytes
            and segment.size > SEGMENT_HEADER_BYTES
        ):
            try:
                segment = self._rotate()
            except OSError as error:
                raise WalWriteError(
                    f"could not start a new write-ahead log segment in {self._directory} "
                    f"({error}); the event was not recorded: answer 503 and check the disk"
                ) from error
        needed = segment.size + frame_bytes + len(CLOSE_MARKER)
        if needed > segment.reserved:
            try:
                self._reserve(segment, needed)
            except OSError as error:
                raise WalWriteError(
                    f"could not reserve disk space in the write-ahead log "
                    f"{self._directory / segment.name.file_name} for a {frame_bytes}-byte "
                    f"record ({error}); the event was not recorded: answer 503 and check "
                    "free disk space and the file size limit (ulimit -f)"
                ) from error
        return segment

    def _reserve(self, segment: _Segment, needed: int) -> None:
        """Give the segment disk blocks (and a map) up to at least `needed` bytes.

        The next chunk, up to `segment_bytes`; a record larger than that gets exactly its
        size. The blocks are allocated before they are mapped, so no store can hit a hole.
        """
        grown = max(needed, min(segment.reserved + RESERVE_CHUNK_BYTES, self._segment_bytes))
        # ENOSPC, or EFBIG past RLIMIT_FSIZE: raised before the map grows, nothing stored.
        os.posix_fallocate(segment.fd, segment.reserved, grown - segment.reserved)
        grown_map = mmap.mmap(segment.fd, grown)
        segment.map.close()
        segment.map = grown_map
        segment.reserved = grown
        segment.data_limit = grown - len(CLOSE_MARKER)

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
        fd = os.open(temp_path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, _FILE_MODE)
        segment: _Segment | None = None
        try:
            # Locked before the file has its final name, so a reader never sees this segment
            # unlocked while its writer lives (unlocked means finished or abandoned).
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            first_reservation = min(RESERVE_CHUNK_BYTES, self._segment_bytes)
            os.posix_fallocate(fd, 0, first_reservation)
            segment = _Segment(fd, name, first_reservation)
            segment.map[:SEGMENT_HEADER_BYTES] = SEGMENT_MAGIC
            os.rename(temp_path, final_path)
            fsync_directory(self._directory)
        except BaseException:
            if segment is not None:
                segment.release()
            else:
                os.close(fd)
            temp_path.unlink(missing_ok=True)
            raise
        return segment

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
                # Cut the reserved tail off first, then store the marker in the room kept for
                # it: a reader sees zeros (more may come) or the marker at the very end of
                # the file, never a marker followed by reserved bytes. The finished file is
                # exactly header, frames and marker. If the cut fails (it should not), no
                # marker: the segment still ends, at its zero tail, once its lock goes.
                with contextlib.suppress(OSError):
                    marker_end = segment.size + len(CLOSE_MARKER)
                    os.ftruncate(segment.fd, marker_end)
                    segment.map[segment.size : marker_end] = CLOSE_MARKER
                self._sync_fd(segment.fd)
            except OSError as error:
                self._failure = error  # as in _sync_segment: durability can't be promised
                self._refusing = True
                raise
            finally:
                segment.release()

    def _sync_segment(self, segment: _Segment, through: int | None = None) -> None:
        # Strict appends from several threads share fsyncs: whoever waited for the sync
        # lock while another fsync ran finds its bytes covered, or covers everyone's.
        with self._sync_lock:
            if segment.closed:
                return  # closing fsynced it
            if through is not None and segment.synced_size >= through:
                return
            # A lower bound of what is written: size grows only once the stores are done.
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
        # time, so replace them. The child's copy of the map is shared with the parent's
        # file, so unmap it here: nothing in the child can store into the parent's segment.
        # Closing the inherited fds keeps the parent's flock intact.
        self._lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._disowned = self._refusing = True
        self._syncer = None
        if not self._segment.closed:
            with contextlib.suppress(OSError):
                self._segment.release()
