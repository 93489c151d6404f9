"""What operators do: read the state of the pipeline, and handle the dead-letter store.

Plain functions over the read model, used by ``scim-bridge status`` and ``scim-bridge dlq``.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from typing import Any, cast

from scim_bridge.workers.guard import LegacyGuard
from scim_bridge.workers.readmodel import Kind, ReadModel, UniquenessConflict, VersionConflict
from scim_bridge.workers.tasks import QUEUE


@dataclass(frozen=True)
class Status:
    """A snapshot of the pipeline for ``scim-bridge status``."""

    backlog: int
    oldest_pending: str | None
    oldest_pending_age_s: float | None
    dead_letters: int
    circuit: dict[str, Any]
    legacy_calls_in_flight: int
    workers: dict[str, int]
    queue_length: int
    unacknowledged: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def status(store: ReadModel, guard: LegacyGuard) -> Status:
    """Read every figure an operator watches."""
    oldest = store.oldest_pending()
    resource = None
    if oldest is not None:
        kind, rid = store.parse_member(oldest[0])
        resource = f"{kind.resource_type} {rid}"
    return Status(
        backlog=store.backlog(),
        oldest_pending=resource,
        oldest_pending_age_s=round(time.time() - oldest[1], 3) if oldest else None,
        dead_letters=int(store.redis.hlen(store.dlq_key)),
        circuit=asdict(guard.breaker()),
        legacy_calls_in_flight=guard.in_flight(),
        workers=store.live_workers(),
        queue_length=int(store.redis.llen(QUEUE)),
        unacknowledged=int(store.redis.hlen("unacked")),  # kombu's Redis transport
    )


class DeadLetterError(Exception):
    """An operator's request about the dead-letter store that cannot be done."""


def _entry(store: ReadModel, member: str) -> dict[str, Any]:
    raw = cast(bytes | None, store.redis.hget(store.dlq_key, member))
    if raw is None:
        raise DeadLetterError(f"{member} is not in the dead-letter store")
    return cast(dict[str, Any], json.loads(raw))


def retry(store: ReadModel, member: str) -> tuple[Kind, str]:
    """Put a dead-lettered change back as desired state (after the cause was fixed).

    Returns the resource to publish a reconcile task for. A refused create is created anew in
    the read model; a pending password was discarded when the change failed and is not replayed.
    """
    entry = _entry(store, member)
    kind, rid = store.parse_member(member)
    desired = entry.get("desired")
    for _ in range(5):
        snap = store.snapshot(kind, rid)
        doc = desired if entry.get("operation") != "delete" else None
        try:
            store.write_next(snap, doc)
        except VersionConflict:
            continue
        except UniquenessConflict as conflict:
            raise DeadLetterError(
                f"cannot retry {member}: its {conflict.attribute} now belongs to another resource"
            ) from None
        store.redis.hdel(store.dlq_key, member)
        return kind, rid
    raise DeadLetterError(f"{member} keeps changing; retry later")


def drop(store: ReadModel, member: str, reason: str) -> None:
    """Give up on a change: the read model keeps the applied state; the reason is recorded."""
    entry = _entry(store, member)
    kind, rid = store.parse_member(member)
    snap = store.snapshot(kind, rid)
    if snap.exists and snap.applied is not None and snap.desired != snap.applied:
        try:
            store.write_next(snap, snap.applied, rollback=True)
        except (VersionConflict, UniquenessConflict) as exc:
            raise DeadLetterError(f"cannot restore {member} to its applied state: {exc}") from None
    record = {"entry": entry, "reason": reason, "dropped_at": time.time()}
    pipe = store.redis.pipeline(transaction=True)
    pipe.rpush(f"{store.prefix}:dlq:dropped", json.dumps(record))
    pipe.hdel(store.dlq_key, member)
    pipe.execute()
