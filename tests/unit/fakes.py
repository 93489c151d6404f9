"""An in-memory fake of the store areas the write path and the reconciler use.

:class:`MemoryStore` has the interface of :class:`scim_bridge.store.Store` for what
``WriteService`` (api/writes.py), ``BacklogEstimate`` and ``Reconciler`` call, over Python
dictionaries laid out like the Redis keyspace: the same key names (``store/keys.py``), the same
resource-hash fields (``Field``) and each Lua script ported line for line, so versions, the
``=`` applied marker, the dirty and pending sets, doubt, pending passwords and unique indexes
behave as in Redis. It inherits what the store computes without Redis (index differences,
re-stamped meta, the hash decoding), so only the keyspace operations are written again here.
``tests/test_store_fake.py`` runs the same tests against this fake and a real Redis.

A method the fake does not implement fails loudly: there is no Redis client behind it.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from scim_bridge.store import Snapshot, Status, UniquenessConflict, VersionConflict
from scim_bridge.store.deadletters import DeadLetterStore
from scim_bridge.store.keys import APPLIED_IS_DESIRED, Field, Keys, Kind, parse_ref, ref, valid_id
from scim_bridge.store.model import (
    DEFAULT_LOOKUPS,
    UNIQUE_ATTRIBUTES,
    BacklogFull,
    ChangeOutcome,
    dumps,
    lookup_values,
    member_ids,
    normalise,
    unique_values,
)
from scim_bridge.store.resources import DesiredWrite, ResourceStore, snapshot_from
from scim_bridge.store.work import WorkStore


class MemoryStore(ResourceStore, WorkStore, DeadLetterStore):
    """The store's resources, work and dead-letter areas (and two fleet reads) in memory.

    One lock makes every method atomic, as a Lua script is in Redis.
    """

    def __init__(self, lookups: Mapping[Kind, tuple[str, ...]] | None = None) -> None:
        self.keys = Keys("sb")
        self.lookups = dict(lookups or DEFAULT_LOOKUPS)
        self.hashes: dict[str, dict[str, str]] = defaultdict(dict)
        self.zsets: dict[str, dict[str, float]] = defaultdict(dict)
        self.sets: dict[str, set[str]] = defaultdict(set)
        self.lists: dict[str, list[str]] = defaultdict(list)
        self.locks: dict[str, tuple[str, float]] = {}
        self.sequence = 0
        self.workers: dict[str, int] = {}
        self._changed = threading.Condition()

    # Keyspace helpers ---------------------------------------------------------------------------
    def _exists(self, key: str) -> bool:
        return bool(self.hashes.get(key))

    def _hdel(self, key: str, *fields: str) -> None:
        found = self.hashes.get(key)
        if found is None:
            return
        for name in fields:
            found.pop(name, None)
        if not found:
            del self.hashes[key]  # Redis drops an empty hash

    def _zrem(self, key: str, member: str) -> None:
        self.zsets[key].pop(member, None)

    def _lock_holder(self, key: str) -> str | None:
        held = self.locks.get(key)
        if held is None or held[1] <= time.monotonic():
            self.locks.pop(key, None)
            return None
        return held[0]

    # Resources: reads ---------------------------------------------------------------------------
    def get_raw(self, kind: Kind, rid: str, rendering: str = Field.DESIRED) -> bytes | None:
        if not valid_id(rid):
            return None
        with self._changed:
            raw = self.hashes.get(self.keys.resource(kind, rid), {}).get(rendering)
        return raw.encode() if raw else None

    def get_many_raw(
        self, kind: Kind, ids: Sequence[str], rendering: str = Field.DESIRED
    ) -> list[bytes | None]:
        return [self.get_raw(kind, rid, rendering) for rid in ids]

    def snapshot(self, kind: Kind, rid: str) -> Snapshot:
        if not valid_id(rid):
            return Snapshot(kind, rid)
        with self._changed:
            fields = dict(self.hashes.get(self.keys.resource(kind, rid), {}))
        return snapshot_from(kind, rid, {k.encode(): v.encode() for k, v in fields.items()})

    def find_unique(self, kind: Kind, attribute: str, value: str) -> str | None:
        folded = UNIQUE_ATTRIBUTES[kind][attribute]
        index = self.hashes.get(self.keys.unique_index(kind, attribute), {})
        return index.get(normalise(value, folded)) or None

    def find_multi(self, kind: Kind, attribute: str, value: str) -> set[str]:
        return set(self.sets.get(self.keys.lookup(kind, attribute, value.lower()), ()))

    def groups_of(self, user_id: str) -> set[str]:
        return set(self.sets.get(self.keys.groups_of(user_id), ()))

    def count(self, kind: Kind) -> int:
        return len(self.zsets[self.keys.order(kind)])

    # Resources: writes (store/write.lua and store/purge.lua) ----------------------------------
    def write_many(
        self, writes: Sequence[DesiredWrite], *, replicated: bool = False, max_backlog: int = 0
    ) -> int:
        # One process's memory has no replicas: a replicated write is acknowledged at once
        # (the real store's WAIT is tested against real replicas in tests/test_sentinel.py).
        changes = [self._write_args(w) for w in writes]
        now = time.time()
        with self._changed:
            if max_backlog > 0:
                dirty = self.zsets[self.keys.dirty]
                adding = sum(1 for w in changes if w["mode"] == "write" and w["ref"] not in dirty)
                if len(dirty) + max(adding, 1) > max_backlog:
                    raise BacklogFull(len(dirty))
            for w in changes:
                current = int(self.hashes.get(w["h"], {}).get(Field.VERSION, "0"))
                if current != w["expected"]:
                    raise VersionConflict(str(current))
                for index, value in w["claims"]:
                    owner = self.hashes.get(index, {}).get(value)
                    if owner and owner != w["id"]:
                        raise UniquenessConflict(index.rsplit(":", 1)[-1])
            versions = [self._write_one(w, now) for w in changes]
        return versions[0]

    def _write_one(self, w: Mapping[str, Any], now: float) -> int:
        h, rid = self.hashes[w["h"]], w["id"]
        for index, value in w["releases"]:
            if self.hashes.get(index, {}).get(value) == rid:
                self._hdel(index, value)
        for index, value in w["claims"]:
            self.hashes[index][value] = rid
        for key in w["removes"]:
            self.sets[key].discard(rid)
        for key in w["adds"]:
            self.sets[key].add(rid)
        version = w["expected"] + 1
        if h.get(Field.APPLIED) == APPLIED_IS_DESIRED:
            h[Field.APPLIED] = h[Field.DESIRED]
        h[Field.VERSION] = str(version)
        if w["doc"] == "":
            h.update({Field.DELETED: "1", Field.DESIRED: ""})
            h.pop(Field.DESIRED_V1, None)
            self._zrem(w["order"], rid)
            self._zrem(w["mod"], rid)
        else:
            h.update({Field.DELETED: "0", Field.DESIRED: w["doc"]})
            if w["doc1"]:
                h[Field.DESIRED_V1] = w["doc1"]
            else:
                h.pop(Field.DESIRED_V1, None)
            if Field.SEQUENCE not in h:
                self.sequence += 1
                h[Field.SEQUENCE] = str(self.sequence)
            self.zsets[w["order"]][rid] = float(h[Field.SEQUENCE])
            self.zsets[w["mod"]][rid] = float(w["score"])
        if w["pw"]:
            h.update({Field.PASSWORD: w["pw"], Field.PASSWORD_VERSION: str(version)})
        if w["mode"] == "write":
            h[Field.SYNC_STATE] = Status.PENDING
            if w.get("rq"):
                h[Field.REQUEST_ID] = w["rq"]
            else:
                h.pop(Field.REQUEST_ID, None)
            self.zsets[self.keys.dirty][w["ref"]] = now
            self.zsets[self.keys.pending].setdefault(w["ref"], now)
        else:
            h.update(
                {
                    Field.SYNC_STATE: Status.FAILED,
                    Field.APPLIED_VERSION: str(version),
                    Field.APPLIED: APPLIED_IS_DESIRED,
                }
            )
            for name in (Field.PASSWORD, Field.PASSWORD_VERSION, Field.FAILURES, Field.DOUBT):
                h.pop(name, None)
            self._zrem(self.keys.dirty, w["ref"])
            self._zrem(self.keys.pending, w["ref"])
        return version

    def purge(self, kind: Kind, rid: str, snapshot: Snapshot) -> bool:
        h = self.keys.resource(kind, rid)
        with self._changed:
            if self.hashes.get(h, {}).get(Field.VERSION) != str(snapshot.version):
                return False
            for attribute, value in unique_values(kind, snapshot.desired).items():
                index = self.keys.unique_index(kind, attribute)
                if self.hashes.get(index, {}).get(value) == rid:
                    self._hdel(index, value)
            removes = [
                self.keys.lookup(kind, a, v)
                for a, v in lookup_values(self.lookups[kind], snapshot.desired)
            ]
            if kind is Kind.GROUP:
                removes += [self.keys.groups_of(u) for u in member_ids(snapshot.desired)]
            for key in removes:
                self.sets[key].discard(rid)
            self.hashes.pop(h, None)
            for zset in (self.keys.order(kind), self.keys.modified(kind)):
                self._zrem(zset, rid)
            for zset in (self.keys.dirty, self.keys.pending):
                self._zrem(zset, ref(kind, rid))
        return True

    # Work: locks and attempts (claim.lua, release.lua, unlock.lua) ---------------------------
    def acquire_lock(self, kind: Kind, rid: str, token: str, ttl_s: float) -> bool:
        key = self.keys.lock(kind, rid)
        with self._changed:
            if self._lock_holder(key) is not None:
                return False
            self.locks[key] = (token, time.monotonic() + ttl_s)
            return True

    def release_lock(self, kind: Kind, rid: str, token: str) -> None:
        key = self.keys.lock(kind, rid)
        with self._changed:
            if self._lock_holder(key) == token:
                del self.locks[key]

    def claim(self, kind: Kind, rid: str, token: str, ttl_s: float) -> tuple[bool, int, Snapshot]:
        if not self.acquire_lock(kind, rid, token, ttl_s):
            return False, 0, Snapshot(kind, rid)
        h = self.keys.resource(kind, rid)
        with self._changed:
            if not self._exists(h):
                return True, 0, Snapshot(kind, rid)
            fields = self.hashes[h]
            starts = int(fields.get(Field.STARTS, "0")) + 1
            fields[Field.STARTS] = str(starts)
            seen = {k.encode(): v.encode() for k, v in fields.items()}
            fields[Field.DOUBT] = "1"
        return True, starts, snapshot_from(kind, rid, seen)

    def release(self, kind: Kind, rid: str, token: str, duration_s: float) -> int:
        self.release_lock(kind, rid, token)
        h = self.keys.resource(kind, rid)
        with self._changed:
            self._hdel(h, Field.STARTS)
            stats = self.hashes[self.keys.stats]
            previous = stats.get("reconcile_s")
            seconds = duration_s if previous is None else 0.8 * float(previous) + 0.2 * duration_s
            stats["reconcile_s"] = repr(seconds)
            return int(self.hashes.get(h, {}).get(Field.VERSION, "0"))

    # Work: settling (settle.lua, mark.lua, count.lua) -----------------------------------------
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
        key, entry = self.keys.resource(kind, rid), ref(kind, rid)
        with self._changed:
            if not self._exists(key):
                return Status.GONE
            h = self.hashes[key]
            current = h.get(Field.VERSION) == str(version)
            stored = APPLIED_IS_DESIRED if current else _compact(applied)
            h.update(
                {
                    Field.APPLIED_VERSION: str(version),
                    Field.APPLIED: stored,
                    Field.LEGACY_KEY: legacy_key or "",
                }
            )
            index = self.hashes.setdefault(self.keys.legacy_keys(kind), {})
            if legacy_key:
                index[legacy_key] = rid
            h.pop(Field.ERROR, None)
            if current:
                h.pop(Field.DOUBT, None)
            if password_hash:
                h[Field.PASSWORD_HASH] = password_hash
            if 0 <= int(h.get(Field.PASSWORD_VERSION, "-1")) <= version:
                h.pop(Field.PASSWORD, None)
                h.pop(Field.PASSWORD_VERSION, None)
            if not current:
                return Status.MOVED
            self._zrem(self.keys.dirty, entry)
            self._zrem(self.keys.pending, entry)
            if h.get(Field.DELETED) == "1":
                del self.hashes[key]
                if legacy_key and index.get(legacy_key) == rid:
                    del index[legacy_key]
                return Status.PURGED
            h[Field.SYNC_STATE] = Status.APPLIED
            h.pop(Field.FAILURES, None)
            h.pop(Field.REQUEST_ID, None)
            return Status.SETTLED

    def mark_doubt(self, kind: Kind, rid: str) -> None:
        key = self.keys.resource(kind, rid)
        with self._changed:
            if self._exists(key):
                self.hashes[key][Field.DOUBT] = "1"

    def clear_doubt(self, kind: Kind, rid: str) -> None:
        with self._changed:
            self._hdel(self.keys.resource(kind, rid), Field.DOUBT)

    def count_failure(self, kind: Kind, rid: str) -> int:
        key = self.keys.resource(kind, rid)
        with self._changed:
            if not self._exists(key):
                return 0
            failures = int(self.hashes[key].get(Field.FAILURES, "0")) + 1
            self.hashes[key][Field.FAILURES] = str(failures)
            return failures

    def record_error(self, kind: Kind, rid: str, error: str) -> None:
        with self._changed:
            self.hashes[self.keys.resource(kind, rid)][Field.ERROR] = error

    # Work: the dirty and pending sets ---------------------------------------------------------
    def touch_dirty(self, kind: Kind, rid: str, at: float) -> None:
        with self._changed:
            dirty = self.zsets[self.keys.dirty]
            if ref(kind, rid) in dirty:
                dirty[ref(kind, rid)] = at

    def dirty_before(self, cutoff: float, limit: int = 1000) -> list[tuple[Kind, str]]:
        with self._changed:
            entries = sorted((at, e) for e, at in self.zsets[self.keys.dirty].items())
        return [parse_ref(e) for at, e in entries if at <= cutoff][:limit]

    def is_dirty(self, kind: Kind, rid: str) -> bool:
        return ref(kind, rid) in self.zsets[self.keys.dirty]

    def backlog(self) -> int:
        return len(self.zsets[self.keys.dirty])

    def oldest_pending(self) -> tuple[str, float] | None:
        with self._changed:
            entries = sorted((at, e) for e, at in self.zsets[self.keys.pending].items())
        return (entries[0][1], entries[0][0]) if entries else None

    # Outcomes (the outcome lists; their expiry is not modelled) -------------------------------
    def publish_outcomes(
        self,
        kind: Kind,
        rid: str,
        versions: Iterable[int],
        outcome: ChangeOutcome,
        ttl_s: int = 60,
    ) -> None:
        with self._changed:
            for version in versions:
                self.lists[self.keys.outcome(kind, rid, version)].append(outcome.to_json())
            self._changed.notify_all()

    def wait_outcome(
        self, kind: Kind, rid: str, version: int, timeout_s: float
    ) -> ChangeOutcome | None:
        if timeout_s <= 0:
            return None
        waiting = self.lists[self.keys.outcome(kind, rid, version)]
        with self._changed:
            if not self._changed.wait_for(lambda: bool(waiting), timeout=timeout_s):
                return None
            return ChangeOutcome.from_json(waiting.pop(0))

    # Dead letters -------------------------------------------------------------------------------
    def dead_letter(self, kind: Kind, rid: str, entry: Mapping[str, Any]) -> None:
        self.hashes[self.keys.dead_letters][ref(kind, rid)] = json.dumps(entry)

    def dead_letters(self) -> dict[str, dict[str, Any]]:
        stored = self.hashes.get(self.keys.dead_letters, {})
        return {k: json.loads(v) for k, v in stored.items()}

    def dead_letter_count(self) -> int:
        return len(self.hashes.get(self.keys.dead_letters, {}))

    # The fleet: what the backlog estimate reads ------------------------------------------------
    def heartbeat(self, host: str, concurrency: int, ttl_s: int = 30) -> None:
        """A live worker (heartbeats do not expire here)."""
        self.workers[host] = concurrency

    def live_workers(self) -> dict[str, int]:
        return dict(self.workers)

    def average_duration(self) -> float | None:
        seconds = self.hashes.get(self.keys.stats, {}).get("reconcile_s")
        return float(seconds) if seconds is not None else None


def _compact(doc: Mapping[str, Any] | None) -> str:
    return dumps(doc) if doc is not None else ""
