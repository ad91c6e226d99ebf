"""Event ids a client may send again (Segment retries reuse a messageId), remembered a while.

Conversions are deduplicated in the store, which remembers them forever; other events
(page views, custom events, identifies) would need a table of every id ever seen. Clients
retry within seconds or minutes, so the processor remembers these ids for a window and
up to a count instead, and rebuilds the memory from the lake when it starts.
"""

from __future__ import annotations

from collections import OrderedDict

__all__ = ["DEDUPE_WINDOW_MS", "MAX_REMEMBERED_IDS", "RecentEventIds"]

#: Segment's own API deduplicates messageIds over a day; so do we.
DEDUPE_WINDOW_MS = 24 * 3600 * 1000
#: About 100 bytes each: a bound of a few tens of MB however busy the install.
MAX_REMEMBERED_IDS = 500_000


class RecentEventIds:
    """Ids seen in the last `window_ms` (by the time they were added), at most `capacity`."""

    def __init__(
        self, window_ms: int = DEDUPE_WINDOW_MS, capacity: int = MAX_REMEMBERED_IDS
    ) -> None:
        self.window_ms = window_ms
        self.capacity = capacity
        self._seen: OrderedDict[str, int] = OrderedDict()

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._seen

    def __len__(self) -> int:
        return len(self._seen)

    def add(self, event_id: str, now_ms: int) -> None:
        """Remember `event_id` as seen at `now_ms`; forget what fell out of the window."""
        if event_id not in self._seen:
            self._seen[event_id] = now_ms
        cutoff = now_ms - self.window_ms
        while self._seen and (
            len(self._seen) > self.capacity or next(iter(self._seen.values())) < cutoff
        ):
            self._seen.popitem(last=False)
