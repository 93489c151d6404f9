"""Protecting the legacy application: a global cap on concurrent calls and a circuit breaker.

Both keep their state in the store's fleet area (``store/fleet.py``), so they hold across
every worker process on every host: adding workers never overloads the legacy application
(Celery's ``rate_limit`` is per worker and cannot do this), and a failing application is left
alone by all workers at once.

- The **cap** is a semaphore of leases: a sorted set of holder tokens scored by lease expiry
  (Redis server time). A holder that dies frees its slot when the lease runs out.
- The **breaker** opens after ``failure_threshold`` consecutive transient failures, fails
  calls fast while open, lets one probe through after ``open_s``, and closes when it succeeds.

Every call that reaches the legacy application is timed here (operation and outcome), and every
breaker state change this process causes is counted: the guard is the one place all calls pass.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import TypeVar

from scim_bridge.adapters.errors import ConflictError, PermanentError, TransientError
from scim_bridge.adapters.port import Deadline, LegacyAdapter
from scim_bridge.adapters.wrapper import AdapterWrapper
from scim_bridge.store.fleet import BreakerState, FleetStore
from scim_bridge.workers.metrics import metrics

T = TypeVar("T")

log = logging.getLogger("scim_bridge.legacy")
_PAGE_READS = frozenset({"list_users", "list_groups", "changes_since"})


class CircuitOpen(TransientError):
    """Calls fail fast while the breaker is open; retry after ``retry_in_s``."""

    def __init__(self, message: str, retry_in_s: float) -> None:
        super().__init__(message)
        self.retry_in_s = retry_in_s


class LegacyBusy(TransientError):
    """No slot of the global cap freed up within the deadline."""


class LegacyGuard:
    """The cap and breaker, shared by every worker through the store."""

    def __init__(
        self,
        store: FleetStore,
        *,
        max_concurrency: int,
        failure_threshold: int,
        open_s: float,
        poll_s: float = 0.02,
    ) -> None:
        self.store = store
        self.max_concurrency = max_concurrency
        self.failure_threshold = failure_threshold
        self.open_s = open_s
        self.poll_s = poll_s

    def call(self, operation: str, deadline: Deadline, function: Callable[[], T]) -> T:
        """Run one legacy call under the breaker and the cap, within ``deadline``."""
        verdict, detail = self.store.breaker_verdict(self.open_s, max(deadline.remaining(), 1.0))
        if verdict == "deny":
            wait_s = float(detail)
            raise CircuitOpen(
                f"circuit open: the legacy application kept failing; next probe in {wait_s:.0f} s",
                wait_s,
            )
        if verdict == "probe":
            metrics().breaker_transitions.labels("half_open").inc()
        token = self._take_slot(operation, deadline)
        started = time.monotonic()
        try:
            result = function()
        except TransientError as exc:
            self._observe(operation, started, _transient_outcome(exc, deadline))
            self._record(success=False)
            raise
        except Exception as exc:
            # A refusal is an answer: the application is up. Other errors are the caller's (an
            # adapter bug is retried like a transient failure, and timed as one).
            if isinstance(exc, ConflictError):
                outcome = "conflict"
            elif isinstance(exc, PermanentError):
                outcome = "permanent"
            else:
                outcome = "transient"
            self._observe(operation, started, outcome)
            self._record(success=True)
            raise
        finally:
            if token is not None:
                self.store.free_slot(token)
        self._observe(operation, started, "ok")
        self._record(success=True)
        return result

    def _record(self, *, success: bool) -> None:
        """Feed one call's result to the breaker; count the state change it caused, if any."""
        entered, left = self.store.breaker_result(success, self.failure_threshold)
        if entered != left:
            metrics().breaker_transitions.labels(entered).inc()

    @staticmethod
    def _observe(operation: str, started: float, outcome: str) -> None:
        elapsed = time.monotonic() - started
        metrics().legacy_call_duration.labels(operation, outcome).observe(elapsed)
        # The pages of imports (a delta every minute) would drown the calls made for changes.
        quiet = outcome == "ok" and operation in _PAGE_READS
        log.log(
            logging.DEBUG if quiet else logging.INFO,
            "legacy call %s: %s in %.3f s",
            operation,
            outcome,
            elapsed,
            extra={"operation": operation, "outcome": outcome, "duration_s": round(elapsed, 6)},
        )

    def _take_slot(self, operation: str, deadline: Deadline) -> str | None:
        if self.max_concurrency <= 0:
            return None
        token = uuid.uuid4().hex
        # The lease outlives the call's deadline a little, so a live holder never loses it.
        lease_s = deadline.remaining() + 5
        while True:
            if self.store.take_slot(token, self.max_concurrency, lease_s):
                return token
            if deadline.remaining() <= self.poll_s:
                raise LegacyBusy(
                    f"{operation}: the legacy application is at its limit of "
                    f"{self.max_concurrency} concurrent calls"
                )
            time.sleep(self.poll_s)

    def in_flight(self) -> int:
        """Legacy calls holding a slot now (expired leases excluded)."""
        return self.store.slots_in_use()

    def breaker(self) -> BreakerState:
        """The breaker's state."""
        return self.store.breaker()


def _transient_outcome(exc: TransientError, deadline: Deadline) -> str:
    """``timeout`` when the call ran out of time, else ``transient`` (refused connection, 503)."""
    if deadline.expired() or isinstance(exc.__cause__, TimeoutError):
        return "timeout"
    return "transient"


class GuardedAdapter(AdapterWrapper):
    """Any adapter, with every call going through a :class:`LegacyGuard`."""

    def __init__(self, inner: LegacyAdapter, guard: LegacyGuard) -> None:
        super().__init__(inner)
        self.guard = guard

    def _call(self, what: str, deadline: Deadline, call: Callable[[], T]) -> T:
        return self.guard.call(what, deadline, call)
