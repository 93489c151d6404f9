"""What the store holds for a resource, in the vocabulary the rest of scim-bridge speaks."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from scim_bridge.store.keys import Kind


class Status(StrEnum):
    """The one vocabulary of statuses across the store and the workers.

    A resource's sync state and a version's outcome (the narrower :class:`SyncState` and
    :class:`OutcomeStatus` below take their values from here), what a reconciliation did
    (:class:`scim_bridge.workers.reconciler.Result`), what the store's scripts answer (the Lua
    scripts read them as ``S_<NAME>``), what an import's observation did and how an import
    pass ended (:class:`scim_bridge.workers.sync.PassResult`).
    """

    PENDING = "pending"
    """A change is accepted and not yet applied."""
    APPLIED = "applied"
    """The legacy application confirmed the desired state."""
    FAILED = "failed"
    """The change was refused or kept failing: it is dead-lettered."""
    SUPERSEDED = "superseded"
    """A later version replaced this one before it was applied."""
    NOOP = "noop"
    """Desired and applied state were equal: no legacy call."""
    LOCKED = "locked"
    """Another task holds the resource's reconcile lock."""
    GONE = "gone"
    """The resource no longer exists."""
    REQUEUE = "requeue"
    """Desired state moved during the reconciliation: reconcile again."""
    MOVED = "moved"
    """The resource changed since it was read."""
    SETTLED = "settled"
    """The applied state is recorded and the dirty mark cleared."""
    PURGED = "purged"
    """A confirmed delete or a refused create: the resource's hash is removed."""
    CONFLICT = "conflict"
    """A unique value belongs to another resource."""
    BACKLOG = "backlog"
    """Backpressure: the backlog is at its limit, nothing was written."""
    CREATED = "created"
    """An import recorded a resource the legacy application holds and the store did not."""
    UPDATED = "updated"
    """An import recorded a change made in the legacy application."""
    SAME = "same"
    """An import found what the store holds (it may learn the legacy key)."""
    ENFORCED = "enforced"
    """An import found drift and marked the desired state to be pushed back."""
    DONE = "done"
    """An import pass finished."""
    MORE = "more"
    """A slice of an import pass ended with more to do."""
    BUSY = "busy"
    """Another import pass holds the lock."""


class SyncState(StrEnum):
    """Where a resource's desired state stands with the legacy application."""

    PENDING = Status.PENDING
    APPLIED = Status.APPLIED
    FAILED = Status.FAILED


class OutcomeStatus(StrEnum):
    """What became of one version, as the waiting api learns it."""

    APPLIED = Status.APPLIED
    FAILED = Status.FAILED
    SUPERSEDED = Status.SUPERSEDED


UNIQUE_ATTRIBUTES: dict[Kind, dict[str, bool]] = {
    # attribute -> case-insensitive?
    Kind.USER: {"userName": True, "externalId": False},
    Kind.GROUP: {"displayName": True, "externalId": False},
}
DEFAULT_LOOKUPS: dict[Kind, tuple[str, ...]] = {Kind.USER: ("emails",), Kind.GROUP: ()}


class UniquenessConflict(Exception):
    """Another resource holds a unique value of this one."""

    def __init__(self, attribute: str) -> None:
        super().__init__(attribute)
        self.attribute = attribute


class VersionConflict(Exception):
    """The resource changed between read and write; the caller reads again."""


class ReplicationShortfall(Exception):
    """A write is stored on the primary, but fewer replicas than required confirmed it in time:
    it would be lost if the primary failed now."""

    def __init__(self, version: int, acks: int, wanted: int, timeout_s: float) -> None:
        super().__init__(f"{acks} of {wanted} replicas confirmed version {version}")
        self.version, self.acks, self.wanted, self.timeout_s = version, acks, wanted, timeout_s


class BacklogFull(Exception):
    """Backpressure: the write would take the backlog past its limit; nothing was written."""

    def __init__(self, backlog: int) -> None:
        super().__init__(backlog)
        self.backlog = backlog


def normalise(value: str, case_insensitive: bool) -> str:
    """How a unique value is keyed in its index."""
    return value.lower() if case_insensitive else value


def unique_values(kind: Kind, doc: Mapping[str, Any] | None) -> dict[str, str]:
    """attribute -> normalised value of the unique attributes a document holds."""
    if not doc:
        return {}
    values = {}
    for attribute, folded in UNIQUE_ATTRIBUTES[kind].items():
        value = doc.get(attribute)
        if isinstance(value, str) and value:
            values[attribute] = normalise(value, folded)
    return values


def lookup_values(paths: Iterable[str], doc: Mapping[str, Any] | None) -> set[tuple[str, str]]:
    """(path, lower-cased value) of a document's looked-up attributes.

    A path is a multi-valued complex attribute (``emails``: every item's ``value``), an
    extension attribute (``urn:...:departmentName``) or a core attribute.
    """
    if not doc:
        return set()
    values: set[tuple[str, str]] = set()
    for path in paths:
        if path.startswith("urn:"):
            extension, _, name = path.rpartition(":")
            found: Any = (doc.get(extension) or {}).get(name)
        else:
            found = doc.get(path)
        items = found if isinstance(found, list) else [found]
        for item in items:
            value = item.get("value") if isinstance(item, Mapping) else item
            if isinstance(value, bool) or value is None or isinstance(value, (dict, list)):
                continue
            values.add((path, str(value).lower()))
    return values


def member_ids(doc: Mapping[str, Any] | None) -> list[str]:
    """The user ids of a group document's members, in order, without duplicates."""
    values = (m.get("value") for m in (doc or {}).get("members") or ())
    return list(dict.fromkeys(v for v in values if isinstance(v, str)))


@dataclass
class Snapshot:
    """Everything stored for one resource."""

    kind: Kind
    id: str
    exists: bool = False
    deleted: bool = False
    desired: dict[str, Any] | None = None
    version: int = 0
    applied: dict[str, Any] | None = None
    applied_version: int = 0
    legacy_key: str | None = None
    state: SyncState | None = None
    error: str | None = None
    password_token: str | None = None
    password_hash: str | None = None
    in_doubt: bool = False
    """A reconciliation began and did not settle: the legacy state is unknown."""


@dataclass(frozen=True)
class ChangeOutcome:
    """The reconciler's answer for one version, as the waiting api receives it."""

    status: OutcomeStatus
    version: int
    error: str | None = None
    scim_type: str | None = None

    def to_json(self) -> str:
        """Serialise for the outcome list."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: bytes | str) -> ChangeOutcome:
        """Parse from the outcome list."""
        fields = json.loads(raw)
        fields["status"] = OutcomeStatus(fields["status"])
        return cls(**fields)


def now_iso() -> str:
    """The current instant as SCIM writes it (UTC, milliseconds)."""
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def dumps(doc: Any) -> str:
    """Compact JSON, the one form documents are stored and served in."""
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
