"""Whether waiting for the legacy application's answer can pay off.

See docs/architecture.md, "The write path", step 3.

When the backlog is so deep that the workers cannot reach a new change within the confirmation
time, a write answers at once with the accepted desired state instead of waiting for nothing.
The estimate is backlog x average reconcile duration / live worker capacity, refreshed at most
once a second per process.
"""

from __future__ import annotations

import threading
import time

from scim_bridge.store import Store


class BacklogEstimate:
    """Cached estimate of how long a new change waits before a worker takes it."""

    def __init__(self, store: Store, refresh_s: float = 1.0) -> None:
        self.store = store
        self.refresh_s = refresh_s
        self._lock = threading.Lock()
        self._at = 0.0
        self._capacity = 0
        self._average_s = 0.0

    def _refresh(self) -> None:
        now = time.monotonic()
        if now - self._at < self.refresh_s:
            return
        # One thread refreshes; the others go on with the previous figures meanwhile.
        if not self._lock.acquire(blocking=self._at == 0.0):
            return
        try:
            if now - self._at < self.refresh_s:
                return
            self._capacity = sum(self.store.live_workers().values())
            self._average_s = self.store.average_duration() or 0.0
            self._at = now
        finally:
            self._lock.release()

    def drain_time_s(self, backlog: int) -> float:
        """Roughly how long the workers need for ``backlog`` changes (0 when unknown)."""
        self._refresh()
        if self._capacity <= 0 or self._average_s <= 0:
            return 0.0
        return backlog * self._average_s / self._capacity

    def can_confirm_within(self, seconds: float, backlog: int | None = None) -> bool:
        """True when a worker can plausibly answer a new change within ``seconds``.

        ``backlog`` is a count the caller just read, saving a Redis round trip.
        """
        if seconds <= 0:
            return False
        self._refresh()
        if self._capacity <= 0:
            return False  # no live worker: nobody will answer
        if backlog is None:
            backlog = self.store.backlog()
        if backlog <= self._capacity:
            return True
        return backlog * self._average_s / self._capacity < seconds
