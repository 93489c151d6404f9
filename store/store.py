"""The store: every area over one Redis client, and the one status read."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import redis

from scim_bridge.store.deadletters import DeadLetterStore
from scim_bridge.store.fleet import FleetStore
from scim_bridge.store.imports import ImportStore
from scim_bridge.store.keys import Keys, Kind, parse_ref
from scim_bridge.store.model import DEFAULT_LOOKUPS
from scim_bridge.store.resources import ResourceStore
from scim_bridge.store.scripts import Scripts
from scim_bridge.store.work import WorkStore


@dataclass(frozen=True)
class PipelineStatus:
    """A snapshot of the pipeline: what ``scim-bridge status`` prints and ``/metrics`` serves."""

    backlog: int
    oldest_pending: str | None
    oldest_pending_age_s: float | None
    dead_letters: int
    circuit: dict[str, Any]
    legacy_calls_in_flight: int
    workers: dict[str, int]
    queue_length: int
    unacknowledged: int
    imports: dict[str, Any]
    """Drift counters, the import pass under way, the last one and its error, held removals."""
    redis_used_memory_bytes: int
    adapter_problem: str | None = None
    """Why the last worker start refused the adapter (a directory refusing the bind DN)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


class Store(ResourceStore, WorkStore, DeadLetterStore, FleetStore):
    """Typed access to scim-bridge's Redis keys. Safe to share between threads."""

    def __init__(
        self,
        client: redis.Redis,
        prefix: str = "sb",
        *,
        wait_client: redis.Redis | None = None,
        lookups: Mapping[Kind, tuple[str, ...]] | None = None,
        replica_acks: int = 0,
        replica_ack_timeout_s: float = 1.0,
    ) -> None:
        """``replica_acks``: replicas a replicated write waits for (``WAIT``), up to
        ``replica_ack_timeout_s``; ``client``'s socket timeout must outlast that wait."""
        self.redis = client
        self.replica_acks = replica_acks
        self.replica_ack_timeout_s = replica_ack_timeout_s
        self.wait_redis = wait_client or client
        self.keys = Keys(prefix)
        self.scripts = Scripts(client)
        self.lookups = dict(lookups or DEFAULT_LOOKUPS)

    def ping(self) -> bool:
        """Whether Redis answers (raises ``redis.RedisError`` when it does not)."""
        return bool(self.redis.ping())

    def status(self) -> PipelineStatus:
        """Every figure an operator watches."""
        oldest = self.oldest_pending()
        resource = None
        if oldest is not None:
            kind, rid = parse_ref(oldest[0])
            resource = f"{kind.resource_type} {rid}"
        return PipelineStatus(
            backlog=self.backlog(),
            oldest_pending=resource,
            oldest_pending_age_s=round(max(0.0, time.time() - oldest[1]), 3) if oldest else None,
            dead_letters=self.dead_letter_count(),
            circuit=asdict(self.breaker()),
            legacy_calls_in_flight=self.slots_in_use(),
            workers=self.live_workers(),
            queue_length=self.queue_length(),
            unacknowledged=self.unacknowledged(),
            imports=ImportStore(self).status(),
            redis_used_memory_bytes=int(self.redis.info("memory")["used_memory"]),
            adapter_problem=self.adapter_problem(),
        )

    def clear_data(self) -> None:
        """Delete every resource, index and piece of work under the prefix; keep the fleet's
        keys (live workers stay announced). For tests and for resetting a staging instance."""
        fleet = {k.encode() for k in self.keys.fleet_keys}
        doomed = [
            k
            for k in self.redis.scan_iter(match=f"{self.keys.prefix}:*", count=1000)
            if k not in fleet
        ]
        if doomed:
            self.redis.delete(*doomed)
