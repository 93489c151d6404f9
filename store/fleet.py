"""The fleet of workers: heartbeats, concurrency, reconcile durations, and the legacy guard's
shared state (the global cap's leases and the circuit breaker)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import cast

from scim_bridge.store.base import Area


@dataclass(frozen=True)
class BreakerState:
    """What ``scim-bridge status`` and the metrics show of the breaker."""

    state: str
    consecutive_failures: int
    opened_at: float | None
    opens: int


class FleetStore(Area):
    """Workers announce themselves here; the guard keeps its cap and breaker here."""

    def heartbeat(self, host: str, concurrency: int, ttl_s: int = 30) -> None:
        """A worker announces itself and its concurrency, valid for ``ttl_s``."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(self.keys.workers, host, concurrency)
        pipe.zadd(self.keys.workers_until, {host: time.time() + ttl_s})
        pipe.execute()

    def live_workers(self) -> dict[str, int]:
        """Live workers and their concurrency (no scan, whatever the size of the keyspace)."""
        now = time.time()
        pipe = self.redis.pipeline(transaction=False)
        pipe.zrangebyscore(self.keys.workers_until, now, "+inf")
        pipe.zrangebyscore(self.keys.workers_until, "-inf", now)
        alive, dead = cast(list[list[bytes]], pipe.execute())
        if dead:
            cleanup = self.redis.pipeline(transaction=False)
            cleanup.zrem(self.keys.workers_until, *dead)
            cleanup.hdel(self.keys.workers, *dead)
            cleanup.execute()
        if not alive:
            return {}
        values = cast(list[bytes | None], self.redis.hmget(self.keys.workers, alive))
        return {
            host.decode(): int(value)
            for host, value in zip(alive, values, strict=True)
            if value is not None
        }

    def average_duration(self) -> float | None:
        """Moving average of a reconciliation's duration, if any was recorded."""
        value = self.redis.hget(self.keys.stats, "reconcile_s")
        return float(value) if value is not None else None

    def report_adapter_problem(self, problem: str | None) -> None:
        """Record why a worker refused to start on its adapter (``None``: clear it)."""
        if problem is None:
            self.redis.delete(self.keys.legacy_problem)
        else:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            self.redis.set(self.keys.legacy_problem, f"{problem} (worker start at {stamp})")

    def adapter_problem(self) -> str | None:
        """What :meth:`report_adapter_problem` recorded last, if anything."""
        value = self.redis.get(self.keys.legacy_problem)
        return value.decode() if isinstance(value, bytes) else None

    # The legacy guard ---------------------------------------------------------------------------
    def take_slot(self, token: str, limit: int, lease_s: float) -> bool:
        """Take one of ``limit`` slots of the global cap for ``lease_s`` (Redis server time)."""
        return bool(
            self.scripts["slot_acquire"](
                keys=[self.keys.legacy_slots], args=[token, limit, lease_s]
            )
        )

    def free_slot(self, token: str) -> None:
        """Give a slot back."""
        self.redis.zrem(self.keys.legacy_slots, token)

    def slots_in_use(self) -> int:
        """Legacy calls holding a slot now (expired leases excluded)."""
        return self.redis.zcount(self.keys.legacy_slots, time.time(), "+inf")

    def breaker_verdict(self, open_s: float, probe_s: float) -> tuple[str, str]:
        """``allow``, ``probe`` (one call may test the application) or ``deny`` (with wait)."""
        verdict, detail = (
            part.decode()
            for part in self.scripts["breaker_allow"](
                keys=[self.keys.legacy_breaker], args=["", open_s, probe_s]
            )
        )
        return verdict, detail

    def breaker_result(self, success: bool, failure_threshold: int) -> tuple[str, str]:
        """Fold one call's result into the breaker: the state it is in now, and was in before."""
        entered, left = (
            part.decode()
            for part in self.scripts["breaker_result"](
                keys=[self.keys.legacy_breaker],
                args=["success" if success else "failure", failure_threshold],
            )
        )
        return entered, left

    def breaker(self) -> BreakerState:
        """The breaker's state."""
        fields = cast(dict[bytes, bytes], self.redis.hgetall(self.keys.legacy_breaker))
        text = {k.decode(): v.decode() for k, v in fields.items()}
        opened = text.get("opened_at")
        return BreakerState(
            state=text.get("state", "closed"),
            consecutive_failures=int(text.get("failures", "0")),
            opened_at=float(opened) if opened and text.get("state") != "closed" else None,
            opens=int(text.get("opens", "0")),
        )
