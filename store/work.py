"""The work queue and outcomes: the dirty and pending sets, locks, attempts, outcome lists."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, cast

import redis

from scim_bridge.store.base import Area
from scim_bridge.store.keys import QUEUE, UNACKED, Field, Kind, parse_ref, ref
from scim_bridge.store.model import ChangeOutcome, Snapshot, Status, dumps
from scim_bridge.store.resources import snapshot_from


class WorkStore(Area):
    """What the reconciler and the sweeper need besides the documents."""

    wait_redis: redis.Redis

    def claim(self, kind: Kind, rid: str, token: str, ttl_s: float) -> tuple[bool, int, Snapshot]:
        """Take the reconcile lock, count the start and read the resource, atomically.

        Returns (acquired, starts, snapshot); ``starts`` counts reconciliations begun and not
        released, so a value that keeps growing means each one lost its worker.
        """
        result = self.scripts["claim"](
            keys=[self.keys.lock(kind, rid), self.keys.resource(kind, rid)],
            args=[token, int(ttl_s * 1000)],
        )
        if not result[0]:
            return False, 0, Snapshot(kind, rid)
        if len(result) < 3:
            return True, 0, Snapshot(kind, rid)
        flat = result[2]
        fields = {flat[i]: flat[i + 1] for i in range(0, len(flat), 2)}
        return True, int(result[1]), snapshot_from(kind, rid, fields)

    def release(self, kind: Kind, rid: str, token: str, duration_s: float) -> int:
        """Release the lock, close the attempt, record the duration; the version now."""
        return int(
            self.scripts["release"](
                keys=[self.keys.lock(kind, rid), self.keys.resource(kind, rid), self.keys.stats],
                args=[token, repr(duration_s)],
            )
        )

    def acquire_lock(self, kind: Kind, rid: str, token: str, ttl_s: float) -> bool:
        """Take the per-resource reconcile lock; False if another task holds it."""
        return bool(self.redis.set(self.keys.lock(kind, rid), token, nx=True, px=int(ttl_s * 1000)))

    def release_lock(self, kind: Kind, rid: str, token: str) -> None:
        """Release the lock if this token still holds it."""
        self.scripts["unlock"](keys=[self.keys.lock(kind, rid)], args=[token])

    def settle(
        self,
        kind: Kind,
        rid: str,
        *,
        version: int,
        applied: Mapping[str, Any] | None,
        legacy_key: str | None,
        password_hash: str | None = None,
    ) -> Status:
        """Record what the legacy application confirmed; clear the dirty mark if still current.

        Returns :attr:`Status.SETTLED`, :attr:`~Status.PURGED` (a confirmed delete),
        :attr:`~Status.MOVED` (desired changed meanwhile: reconcile again) or :attr:`~Status.GONE`.
        """
        result = self.scripts["settle"](
            keys=[
                self.keys.resource(kind, rid),
                self.keys.dirty,
                self.keys.pending,
                self.keys.legacy_keys(kind),
            ],
            args=[
                version,
                dumps(applied) if applied is not None else "",
                legacy_key or "",
                password_hash or "",
                ref(kind, rid),
                rid,
            ],
        )
        return Status(cast(bytes, result).decode())

    def mark_doubt(self, kind: Kind, rid: str) -> None:
        """The legacy state of a resource is unknown: its next reconciliation pushes it all."""
        self.scripts["mark"](keys=[self.keys.resource(kind, rid)], args=[Field.DOUBT])

    def clear_doubt(self, kind: Kind, rid: str) -> None:
        """Nothing reached the legacy application: its state is the recorded one."""
        self.redis.hdel(self.keys.resource(kind, rid), Field.DOUBT)  # HDEL never creates a key

    def count_failure(self, kind: Kind, rid: str) -> int:
        """Count a transient failure of the current change; reset when it settles."""
        return int(
            self.scripts["count"](keys=[self.keys.resource(kind, rid)], args=[Field.FAILURES])
        )

    def record_error(self, kind: Kind, rid: str, error: str) -> None:
        """Keep the last error of a resource, for status and operators."""
        self.redis.hset(self.keys.resource(kind, rid), Field.ERROR, error)

    def touch_dirty(self, kind: Kind, rid: str, at: float) -> None:
        """Record that a task for this dirty resource was (re)published or is due at ``at``."""
        self.redis.zadd(self.keys.dirty, {ref(kind, rid): at}, xx=True)

    def dirty_before(self, cutoff: float, limit: int = 1000) -> list[tuple[Kind, str]]:
        """Dirty resources whose last task is older than ``cutoff`` (presumed lost)."""
        entries = cast(
            list[bytes],
            self.redis.zrangebyscore(self.keys.dirty, "-inf", cutoff, start=0, num=limit),
        )
        return [parse_ref(e) for e in entries]

    def request_id(self, kind: Kind, rid: str) -> str | None:
        """The correlation id of the request that made a resource's pending change, if known."""
        found = cast(bytes | None, self.redis.hget(self.keys.resource(kind, rid), Field.REQUEST_ID))
        return found.decode() if found else None

    def is_dirty(self, kind: Kind, rid: str) -> bool:
        """Whether a resource has an unfinished change."""
        return self.redis.zscore(self.keys.dirty, ref(kind, rid)) is not None

    def backlog(self) -> int:
        """How many resources have unfinished changes."""
        return self.redis.zcard(self.keys.dirty)

    def oldest_pending(self) -> tuple[str, float] | None:
        """The resource pending the longest (its ref), and since when (epoch seconds)."""
        found = cast(
            list[tuple[bytes, float]], self.redis.zrange(self.keys.pending, 0, 0, withscores=True)
        )
        return (found[0][0].decode(), found[0][1]) if found else None

    def queue_length(self) -> int:
        """Tasks waiting in the broker's queue."""
        return int(self.redis.llen(QUEUE))

    def unacknowledged(self) -> int:
        """Tasks delivered to a worker and not acknowledged yet."""
        return int(self.redis.hlen(UNACKED))

    # Outcomes -----------------------------------------------------------------------------------
    def publish_outcomes(
        self,
        kind: Kind,
        rid: str,
        versions: Iterable[int],
        outcome: ChangeOutcome,
        ttl_s: int = 60,
    ) -> None:
        """Answer the requests waiting for any of ``versions``."""
        pipe = self.redis.pipeline(transaction=False)
        for version in versions:
            key = self.keys.outcome(kind, rid, version)
            pipe.rpush(key, outcome.to_json())
            pipe.expire(key, ttl_s)
        pipe.execute()

    def wait_outcome(
        self, kind: Kind, rid: str, version: int, timeout_s: float
    ) -> ChangeOutcome | None:
        """Block up to ``timeout_s`` for the outcome of ``version``; None on time-out."""
        if timeout_s <= 0:
            return None
        found = self.wait_redis.blpop([self.keys.outcome(kind, rid, version)], timeout=timeout_s)
        if not found:
            return None
        return ChangeOutcome.from_json(found[1])
