"""Running the processor as a process: leader lock, signals, and a clean stop."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from types import FrameType

from perfmark.adapters.leader import LeaderLock
from perfmark.services.container import build_container
from perfmark.settings import Settings, load_settings
from perfmark.workers.postbacks import run_billing_worker
from perfmark.workers.processor import Processor
from perfmark.workers.scheduler import run_scheduler

__all__ = ["leader_lock_path", "run_processor", "run_processor_from_environment"]

logger = logging.getLogger("perfmark.processor")


def leader_lock_path(settings: Settings) -> Path:
    """The lock file that elects the one processor of a data directory."""
    return settings.home / "processor.lock"


def run_processor(settings: Settings, stop: threading.Event | None = None) -> None:
    """Wait to become the leader, then process until SIGTERM/SIGINT or `stop`."""
    stop = stop or threading.Event()

    def request_stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
    lock = LeaderLock(leader_lock_path(settings))
    while not stop.is_set():
        if lock.acquire(timeout_s=1.0):
            break
    if stop.is_set():
        return
    try:
        container = build_container(settings, run_migrations=False)
        logger.info("processor is the leader for %s", settings.home)
        # Outbound postbacks, webhooks and scheduled billing checks run beside the processor.
        threading.Thread(
            target=run_billing_worker, args=(container, stop), name="perfmark-billing", daemon=True
        ).start()
        threading.Thread(
            target=run_scheduler, args=(container, stop), name="perfmark-optimizer", daemon=True
        ).start()
        Processor(container).run(stop)
    finally:
        lock.release()


def run_processor_from_environment() -> None:
    """Entry point of the processor child process started by `perfmark serve`."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s processor %(message)s")
    run_processor(load_settings())
