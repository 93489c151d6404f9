"""Protecting the legacy application: a global cap on concurrent calls and a circuit breaker.

Both live in Redis, so they hold across every worker process on every host: adding workers
never overloads the legacy application (Celery's ``rate_limit`` is per worker and cannot do
this), and a failing application is left alone by all workers at once.

- The **cap** is a semaphore of leases: a sorted set of holder tokens scored by lease expiry
  (Redis server time). A holder that dies frees its slot when the lease runs out.
- The **breaker** opens after ``failure_threshold`` consecutive transient failures, fails
  calls fast while open, lets one probe through after ``open_s``, and closes when it succeeds.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar, cast

import redis

from scim_bridge.adapters.errors import TransientError
from scim_bridge.adapters.port import Deadline, LegacyAdapter
from scim_bridge.adapters.wrapper import AdapterWrapper

T = TypeVar("T")


class CircuitOpen(TransientError):
    """Calls fail fast while the breaker is open; retry after ``retry_in_s``."""

    def __init__(self, message: str, retry_in_s: float) -> None:
        super().__init__(message)
        self.retry_in_s = retry_in_s


class LegacyBusy(TransientError):
    """No slot of the global cap freed up within the deadline."""


_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
  return 1
end
return 0
"""

# Breaker states: closed (calls pass), open (calls fail fast), half_open (one probe passes).
_ALLOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
if state == 'closed' then return {'allow', state} end
local opened = tonumber(redis.call('HGET', KEYS[1], 'opened_at') or '0')
local probe_until = tonumber(redis.call('HGET', KEYS[1], 'probe_until') or '0')
if state == 'open' and now - opened < tonumber(ARGV[2]) then
  return {'deny', tostring(tonumber(ARGV[2]) - (now - opened))}
end
if probe_until > now then return {'deny', tostring(probe_until - now)} end
local lease = now + tonumber(ARGV[3])
redis.call('HSET', KEYS[1], 'state', 'half_open', 'probe', ARGV[1], 'probe_until', lease)
return {'probe', 'half_open'}
"""

_RESULT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
if ARGV[1] == 'success' then
  if state ~= 'closed' then redis.call('HINCRBY', KEYS[1], 'closes', 1) end
  redis.call('HSET', KEYS[1], 'state', 'closed', 'failures', 0)
  redis.call('HDEL', KEYS[1], 'probe', 'probe_until')
  return 'closed'
end
local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
if state == 'half_open' or (state == 'closed' and failures >= tonumber(ARGV[2])) then
  redis.call('HSET', KEYS[1], 'state', 'open', 'opened_at', now)
  redis.call('HDEL', KEYS[1], 'probe', 'probe_until')
  redis.call('HINCRBY', KEYS[1], 'opens', 1)
  return 'open'
end
return state
"""


@dataclass(frozen=True)
class BreakerState:
    """What ``scim-bridge status`` and the metrics show of the breaker."""

    state: str
    consecutive_failures: int
    opened_at: float | None
    opens: int


class LegacyGuard:
    """The Redis-backed cap and breaker, shared by every worker."""

    def __init__(
        self,
        client: redis.Redis,
        prefix: str,
        *,
        max_concurrency: int,
        failure_threshold: int,
        open_s: float,
        poll_s: float = 0.02,
    ) -> None:
        self.redis = client
        self.max_concurrency = max_concurrency
        self.failure_threshold = failure_threshold
        self.open_s = open_s
        self.poll_s = poll_s
        self.slots_key = f"{prefix}:legacy:slots"
        self.breaker_key = f"{prefix}:legacy:breaker"
        self._acquire = client.register_script(_ACQUIRE)
        self._allow = client.register_script(_ALLOW)
        self._result = client.register_script(_RESULT)

    def call(self, operation: str, deadline: Deadline, function: Callable[[], T]) -> T:
        """Run one legacy call under the breaker and the cap, within ``deadline``."""
        verdict, detail = (
            part.decode()
            for part in self._allow(
                keys=[self.breaker_key], args=["", self.open_s, max(deadline.remaining(), 1.0)]
            )
        )
        if verdict == "deny":
            wait_s = float(detail)
            raise CircuitOpen(
                f"circuit open: the legacy application kept failing; next probe in {wait_s:.0f} s",
                wait_s,
            )
        token = self._take_slot(operation, deadline)
        try:
            result = function()
        except TransientError:
            self._result(keys=[self.breaker_key], args=["failure", self.failure_threshold])
            raise
        except Exception:
            # A refusal is an answer: the application is up. Other errors are the caller's.
            self._result(keys=[self.breaker_key], args=["success", self.failure_threshold])
            raise
        finally:
            if token is not None:
                self.redis.zrem(self.slots_key, token)
        self._result(keys=[self.breaker_key], args=["success", self.failure_threshold])
        return result

    def _take_slot(self, operation: str, deadline: Deadline) -> str | None:
        if self.max_concurrency <= 0:
            return None
        token = uuid.uuid4().hex
        # The lease outlives the call's deadline a little, so a live holder never loses it.
        lease_s = deadline.remaining() + 5
        while True:
            if self._acquire(keys=[self.slots_key], args=[token, self.max_concurrency, lease_s]):
                return token
            if deadline.remaining() <= self.poll_s:
                raise LegacyBusy(
                    f"{operation}: the legacy application is at its limit of "
                    f"{self.max_concurrency} concurrent calls"
                )
            time.sleep(self.poll_s)

    def in_flight(self) -> int:
        """Legacy calls holding a slot now (expired leases excluded)."""
        return self.redis.zcount(self.slots_key, time.time(), "+inf")

    def breaker(self) -> BreakerState:
        """The breaker's state."""
        fields = cast(dict[bytes, bytes], self.redis.hgetall(self.breaker_key))
        text = {k.decode(): v.decode() for k, v in fields.items()}
        opened = text.get("opened_at")
        return BreakerState(
            state=text.get("state", "closed"),
            consecutive_failures=int(text.get("failures", "0")),
            opened_at=float(opened) if opened and text.get("state") != "closed" else None,
            opens=int(text.get("opens", "0")),
        )


class GuardedAdapter(AdapterWrapper):
    """Any adapter, with every call going through a :class:`LegacyGuard`."""

    def __init__(self, inner: LegacyAdapter, guard: LegacyGuard) -> None:
        super().__init__(inner)
        self.guard = guard

    def _call(self, what: str, deadline: Deadline, call: Callable[[], T]) -> T:
        return self.guard.call(what, deadline, call)
