"""The Redis store: the one package that knows the key layout (docs/architecture.md, "The
store"). One area per module: resources and indexes, the work queue and outcomes, dead letters,
the fleet of workers; :class:`Store` combines them."""

from scim_bridge.store.connection import Sentinels, redis_client
from scim_bridge.store.keys import Field, Keys, Kind, parse_ref, ref, valid_id
from scim_bridge.store.model import (
    BacklogFull,
    ChangeOutcome,
    OutcomeStatus,
    ReplicationShortfall,
    Snapshot,
    Status,
    SyncState,
    UniquenessConflict,
    VersionConflict,
    dumps,
    now_iso,
)
from scim_bridge.store.store import PipelineStatus, Store

__all__ = [
    "BacklogFull",
    "ChangeOutcome",
    "Field",
    "Keys",
    "Kind",
    "OutcomeStatus",
    "PipelineStatus",
    "ReplicationShortfall",
    "Sentinels",
    "Snapshot",
    "Status",
    "Store",
    "SyncState",
    "UniquenessConflict",
    "VersionConflict",
    "dumps",
    "now_iso",
    "parse_ref",
    "redis_client",
    "ref",
    "valid_id",
]
