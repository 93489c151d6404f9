"""Resources and their indexes: desired documents, paging order, unique and lookup indexes."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from scim_bridge.store.base import Area
from scim_bridge.store.keys import APPLIED_IS_DESIRED, Field, Kind, ref, valid_id
from scim_bridge.store.model import (
    UNIQUE_ATTRIBUTES,
    BacklogFull,
    ReplicationShortfall,
    Snapshot,
    Status,
    SyncState,
    UniquenessConflict,
    VersionConflict,
    dumps,
    lookup_values,
    member_ids,
    normalise,
    now_iso,
    unique_values,
)


@dataclass(frozen=True)
class DesiredWrite:
    """One resource's next desired state (``doc`` None: deleted), as :meth:`write_many` takes."""

    kind: Kind
    id: str
    doc: Mapping[str, Any] | None
    previous: Mapping[str, Any] | None
    expected_version: int
    last_modified: float
    password_token: str | None = None
    rollback: bool = False
    v1_doc: Mapping[str, Any] | None = None
    request_id: str | None = None


def snapshot_from(kind: Kind, rid: str, fields: Mapping[bytes, bytes]) -> Snapshot:
    """A :class:`Snapshot` from a resource hash's fields."""
    snap = Snapshot(kind, rid)
    if not fields:
        return snap
    text = {k.decode(): v for k, v in fields.items()}
    snap.exists = True
    snap.deleted = text.get(Field.DELETED) == b"1"
    doc = text.get(Field.DESIRED)
    snap.desired = json.loads(doc) if doc else None
    snap.version = int(text.get(Field.VERSION, b"0"))
    applied = text.get(Field.APPLIED)
    if applied == APPLIED_IS_DESIRED.encode():
        snap.applied = json.loads(doc) if doc else None
    else:
        snap.applied = json.loads(applied) if applied else None
    snap.applied_version = int(text.get(Field.APPLIED_VERSION, b"0"))
    legacy_key = text.get(Field.LEGACY_KEY)
    snap.legacy_key = legacy_key.decode() if legacy_key else None
    state = text.get(Field.SYNC_STATE)
    snap.state = SyncState(state.decode()) if state else None
    error = text.get(Field.ERROR)
    snap.error = error.decode() if error is not None else None
    token = text.get(Field.PASSWORD)
    snap.password_token = token.decode() if token is not None else None
    password_hash = text.get(Field.PASSWORD_HASH)
    snap.password_hash = password_hash.decode() if password_hash is not None else None
    snap.in_doubt = text.get(Field.DOUBT) == b"1"
    return snap


class ResourceStore(Area):
    """Desired and applied documents and the indexes that find them."""

    lookups: dict[Kind, tuple[str, ...]]
    replica_acks: int
    replica_ack_timeout_s: float

    # Reads --------------------------------------------------------------------------------------
    def get_raw(self, kind: Kind, rid: str, rendering: str = Field.DESIRED) -> bytes | None:
        """The desired document as stored (compact JSON bytes), or None if absent or deleted.

        ``rendering`` is :attr:`Field.DESIRED` (SCIM 2.0) or :attr:`Field.DESIRED_V1`.
        """
        if not valid_id(rid):
            return None
        raw = cast(bytes | None, self.redis.hget(self.keys.resource(kind, rid), rendering))
        return raw or None

    def get_many_raw(
        self, kind: Kind, ids: Sequence[str], rendering: str = Field.DESIRED
    ) -> list[bytes | None]:
        """Desired documents of ``ids``, in order (one round trip)."""
        if not ids:
            return []
        if len(ids) == 1:
            return [self.get_raw(kind, ids[0], rendering)]
        pipe = self.redis.pipeline(transaction=False)
        for rid in ids:
            pipe.hget(self.keys.resource(kind, rid), rendering)
        found = pipe.execute()
        return [
            (raw or None) if valid_id(rid) else None for rid, raw in zip(ids, found, strict=True)
        ]

    def snapshot(self, kind: Kind, rid: str) -> Snapshot:
        """Everything stored for a resource (one round trip)."""
        if not valid_id(rid):
            return Snapshot(kind, rid)
        fields = cast(dict[bytes, bytes], self.redis.hgetall(self.keys.resource(kind, rid)))
        return snapshot_from(kind, rid, fields)

    def find_unique(self, kind: Kind, attribute: str, value: str) -> str | None:
        """The id holding a unique value, or None."""
        folded = UNIQUE_ATTRIBUTES[kind][attribute]
        owner = cast(
            bytes | None,
            self.redis.hget(self.keys.unique_index(kind, attribute), normalise(value, folded)),
        )
        return owner.decode() if owner else None

    def find_multi(self, kind: Kind, attribute: str, value: str) -> set[str]:
        """Ids holding ``value`` in a multi-valued indexed attribute (case-insensitive)."""
        found = cast(
            set[bytes], self.redis.smembers(self.keys.lookup(kind, attribute, value.lower()))
        )
        return {rid.decode() for rid in found}

    def groups_of(self, user_id: str) -> set[str]:
        """Groups whose desired members include ``user_id``."""
        found = cast(set[bytes], self.redis.smembers(self.keys.groups_of(user_id)))
        return {rid.decode() for rid in found}

    def count(self, kind: Kind) -> int:
        """How many live resources of a kind exist."""
        return self.redis.zcard(self.keys.order(kind))

    def page_ids(self, kind: Kind, offset: int, count: int) -> list[str]:
        """Ids in creation order, ``count`` of them from 0-based ``offset``."""
        if count <= 0:
            return []
        ids = cast(
            list[bytes], self.redis.zrange(self.keys.order(kind), offset, offset + count - 1)
        )
        return [i.decode() for i in ids]

    def iter_ids(self, kind: Kind, batch: int = 1000) -> Iterator[list[str]]:
        """Every live id in creation order, in batches (for filters no index answers)."""
        last = "-inf"
        while True:
            chunk = cast(
                list[tuple[bytes, float]],
                self.redis.zrangebyscore(
                    self.keys.order(kind), last, "+inf", start=0, num=batch, withscores=True
                ),
            )
            if not chunk:
                return
            yield [entry.decode() for entry, _ in chunk]
            if len(chunk) < batch:
                return
            last = f"({int(chunk[-1][1])}"

    def modified_ids(self, kind: Kind, low: str, high: str) -> list[str]:
        """Ids whose lastModified (epoch seconds) lies in [low, high] (``(`` for exclusive)."""
        ids = cast(list[bytes], self.redis.zrangebyscore(self.keys.modified(kind), low, high))
        return [i.decode() for i in ids]

    def creation_order(self, kind: Kind, ids: Iterable[str]) -> list[str]:
        """``ids`` that still exist, sorted by creation sequence (the stable paging order)."""
        unique = list(dict.fromkeys(ids))
        if not unique:
            return []
        scores = self.redis.zmscore(self.keys.order(kind), unique)
        ranked = [(s, i) for s, i in zip(scores, unique, strict=True) if s is not None]
        ranked.sort()
        return [i for _, i in ranked]

    # Writes of desired state ------------------------------------------------------------------
    def write_desired(
        self,
        kind: Kind,
        rid: str,
        doc: Mapping[str, Any] | None,
        *,
        previous: Mapping[str, Any] | None,
        expected_version: int,
        last_modified: float,
        password_token: str | None = None,
        rollback: bool = False,
        v1_doc: Mapping[str, Any] | None = None,
    ) -> int:
        """Atomically store a new desired state (``None``: deleted), its indexes and dirty mark.

        ``previous`` is the desired document read at ``expected_version``; index entries are the
        difference between the two. Raises :class:`VersionConflict` when the resource moved and
        :class:`UniquenessConflict` when a unique value belongs to another resource. With
        ``rollback``, the new state is the applied one: not dirty, sync state ``failed``.
        ``v1_doc`` is the same document rendered in SCIM 1.1, stored to serve 1.1 reads as fast.
        """
        write = DesiredWrite(
            kind,
            rid,
            doc,
            previous,
            expected_version,
            last_modified,
            password_token,
            rollback,
            v1_doc,
        )
        return self.write_many([write])

    def write_many(
        self, writes: Sequence[DesiredWrite], *, replicated: bool = False, max_backlog: int = 0
    ) -> int:
        """Store several desired states in one atomic step; the first one's new version.

        Nothing is written when any resource moved or any unique value is taken, nor, with
        ``max_backlog``, when the backlog is full or these writes would take it past the limit
        (:class:`BacklogFull`): admission and write are one step, so the limit is exact. With
        ``replicated`` (a write a client is answered for), return only once ``replica_acks``
        replicas hold it; raises :class:`ReplicationShortfall` when fewer did in time (the
        write stays stored on the primary and dirty, so it is applied if the primary lives).
        """
        script = self.scripts["write"]
        keys = [self.keys.sequence, self.keys.dirty, self.keys.pending]
        args: list[str | int] = [
            json.dumps([self._write_args(w) for w in writes]),
            repr(time.time()),
            max_backlog,
        ]
        wanted = self.replica_acks if replicated else 0
        acks = 0
        if wanted:
            # WAIT counts the replicas that caught up with this connection's writes: it must
            # follow the script on the same connection, which a pipeline guarantees.
            pipe = self.redis.pipeline(transaction=False)
            script(keys=keys, args=args, client=pipe)
            pipe.wait(wanted, int(self.replica_ack_timeout_s * 1000))
            result, acks = pipe.execute()
        else:
            result = script(keys=keys, args=args)
        status, detail = result[0].decode(), result[1].decode()
        if status == Status.MOVED:
            raise VersionConflict(detail)
        if status == Status.CONFLICT:
            raise UniquenessConflict(detail.rsplit(":", 1)[-1])
        if status == Status.BACKLOG:
            raise BacklogFull(int(detail))
        version = int(detail)
        if int(acks) < wanted:
            raise ReplicationShortfall(version, int(acks), wanted, self.replica_ack_timeout_s)
        return version

    def _write_args(self, w: DesiredWrite) -> dict[str, Any]:
        keys, kind = self.keys, w.kind
        old_unique, new_unique = unique_values(kind, w.previous), unique_values(kind, w.doc)
        claims = [
            [keys.unique_index(kind, a), v] for a, v in new_unique.items() if old_unique.get(a) != v
        ]
        releases = [
            [keys.unique_index(kind, a), v] for a, v in old_unique.items() if new_unique.get(a) != v
        ]
        old_multi = lookup_values(self.lookups[kind], w.previous)
        new_multi = lookup_values(self.lookups[kind], w.doc)
        adds = [keys.lookup(kind, a, v) for a, v in new_multi - old_multi]
        removes = [keys.lookup(kind, a, v) for a, v in old_multi - new_multi]
        if kind is Kind.GROUP:
            old_members, new_members = set(member_ids(w.previous)), set(member_ids(w.doc))
            adds += [keys.groups_of(u) for u in new_members - old_members]
            removes += [keys.groups_of(u) for u in old_members - new_members]
        return {
            "h": keys.resource(kind, w.id),
            "order": keys.order(kind),
            "mod": keys.modified(kind),
            "id": w.id,
            "expected": w.expected_version,
            "doc": dumps(w.doc) if w.doc is not None else "",
            "doc1": dumps(w.v1_doc) if w.v1_doc is not None else "",
            "score": repr(w.last_modified),
            "claims": claims,
            "releases": releases,
            "adds": adds,
            "removes": removes,
            "ref": ref(kind, w.id),
            "mode": "rollback" if w.rollback else "write",
            "pw": w.password_token or "",
            "rq": w.request_id or "",
        }

    def write_next(
        self, snap: Snapshot, doc: Mapping[str, Any] | None, *, rollback: bool = False
    ) -> int:
        """Store ``doc`` (None: deleted) as the version after ``snap``, its meta re-stamped.

        For the workers' own writes (a rollback, an operator's retry or drop); raises
        :class:`VersionConflict` when the resource moved since ``snap`` was read.
        """
        stamped = None
        if doc is not None:
            stamped = dict(doc)
            stamped["meta"] = dict(stamped.get("meta") or {}) | {
                "lastModified": now_iso(),
                "version": f'W/"{snap.version + 1}"',
            }
        return self.write_desired(
            snap.kind,
            snap.id,
            stamped,
            previous=snap.desired,
            expected_version=snap.version,
            last_modified=time.time(),
            rollback=rollback,
        )

    def purge(self, kind: Kind, rid: str, snapshot: Snapshot) -> bool:
        """Remove a resource entirely (a create the legacy application refused)."""
        keys = self.keys
        releases = [
            [keys.unique_index(kind, a), v]
            for a, v in unique_values(kind, snapshot.desired).items()
        ]
        removes = [
            keys.lookup(kind, a, v) for a, v in lookup_values(self.lookups[kind], snapshot.desired)
        ]
        if kind is Kind.GROUP:
            removes += [keys.groups_of(u) for u in member_ids(snapshot.desired)]
        result = self.scripts["purge"](
            keys=[
                keys.resource(kind, rid),
                keys.order(kind),
                keys.modified(kind),
                keys.dirty,
                keys.pending,
            ],
            args=[rid, snapshot.version, ref(kind, rid), json.dumps(releases), json.dumps(removes)],
        )
        return bool(result == Status.PURGED.encode())

    # What the legacy application can do ----------------------------------------------------
    def publish_capabilities(self, functions: Iterable[str]) -> None:
        """Workers record the configured adapter's Okta provisioning functions."""
        self.redis.set(self.keys.capabilities, json.dumps(sorted(functions)))

    def capabilities(self) -> list[str] | None:
        """The functions the workers' adapter declared, or None if no worker reported yet."""
        raw = cast(bytes | None, self.redis.get(self.keys.capabilities))
        return list(json.loads(raw)) if raw else None
