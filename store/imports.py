"""The Redis side of imports: observations, the pass checkpoint, held removals, origins.

Keys (``{p}`` is the prefix, ``{k}`` is ``u`` or ``g``), beside the read model's own::

    {p}:{k}:keys          hash   legacy key -> id (group members are listed by legacy key)
    {p}:{k}:r:{id}        hash   the resource's fields (store/keys.py), plus org (who made it:
                                 okta|imported|linked) and iv (the version an import last wrote)
    {p}:sync:run          hash   the checkpoint of the full pass under way (phase, cursor, counts)
    {p}:sync:seen:{k}     zset   ids listed by the pass under way (what is absent was removed)
    {p}:sync:lock         string the one full pass that runs ("host:pid:token", expires)
    {p}:sync:delta-lock   string the one delta pass that runs
    {p}:sync:counts       hash   drift_imported, drift_enforced, passes, removed, held
    {p}:sync:last         string the summary of the last finished pass (JSON)
    {p}:sync:error        string why the last pass stopped, until one finishes
    {p}:sync:held         hash   "{k}:{id}" -> removal held back by the threshold (JSON)
    {p}:sync:skipped      hash   "{k}:{legacy key}" -> why the last passes skipped a record
    {p}:sync:delta        string the delta import's token
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from scim_bridge.store.keys import APPLIED_IS_DESIRED, Field, Kind, ref
from scim_bridge.store.model import Status, lookup_values, member_ids, unique_values

if TYPE_CHECKING:
    from scim_bridge.store.store import Store

_FIELDS = (
    Field.VERSION,
    Field.SYNC_STATE,
    Field.DESIRED,
    Field.APPLIED,
    Field.LEGACY_KEY,
    Field.ORIGIN,
    Field.IMPORTED_VERSION,
    Field.DELETED,
)


@dataclass
class Stored:
    """What an import needs to know of one resource before it writes."""

    id: str
    version: int = 0
    pending: bool = False
    desired: dict[str, Any] | None = None
    applied: dict[str, Any] | None = None
    legacy_key: str | None = None
    origin: str | None = None


@dataclass(frozen=True)
class Observation:
    """One write an import asks for (``mode``: ``import``, ``enforce`` or ``same``)."""

    kind: Kind
    id: str
    expected_version: int
    mode: str
    legacy_key: str
    doc: Mapping[str, Any] | None = None
    previous: Mapping[str, Any] | None = None
    observed: Mapping[str, Any] | None = None
    origin: str = "imported"


def _dumps(doc: Mapping[str, Any]) -> str:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)


class ImportStore:
    """Typed access to the import keys, on top of the :class:`Store`."""

    def __init__(self, model: Store) -> None:
        self.model = model
        self.redis = model.redis
        self.keys = model.keys
        self.prefix = model.keys.prefix
        self._observe = model.scripts["observe"]
        # Take the pass lock, or take it over from a process of this host that died holding it.
        self._lock = model.scripts["pass_lock"]
        self._unlock = model.scripts["unlock"]

    def key(self, name: str) -> str:
        """The key of one of the import's own structures (``sync:run``, ...)."""
        return self.keys.sync(name)

    def _keys_index(self, kind: Kind) -> str:
        return self.keys.legacy_keys(kind)

    # Reading before writing ----------------------------------------------------------------
    def stored(self, kind: Kind, ids: Sequence[str]) -> list[Stored]:
        """The stored state of ``ids`` (one round trip)."""
        pipe = self.redis.pipeline(transaction=False)
        for rid in ids:
            pipe.hmget(self.keys.resource(kind, rid), _FIELDS)
        if ids:
            pipe.zmscore(self.keys.dirty, [ref(kind, rid) for rid in ids])
        replies = pipe.execute() if ids else []
        dirty = replies[-1] if ids else []
        found = []
        for rid, values, score in zip(ids, replies[:-1], dirty, strict=True):
            v, st, doc, app, lk, org, _iv, deleted = values
            stored = Stored(rid)
            if v is not None:
                desired = json.loads(doc) if doc else None
                stored.version = int(v)
                pending = st == Status.PENDING.encode()
                stored.pending = pending or score is not None or deleted == b"1"
                stored.desired = desired
                if app == APPLIED_IS_DESIRED.encode():
                    stored.applied = desired
                else:
                    stored.applied = json.loads(app) if app else None
                stored.legacy_key = lk.decode() if lk else None
                stored.origin = org.decode() if org else None
            found.append(stored)
        return found

    def ids_of_keys(self, kind: Kind, legacy_keys: Sequence[str]) -> dict[str, str]:
        """legacy key -> id, for the keys an import has seen."""
        if not legacy_keys:
            return {}
        values = cast(list[bytes | None], self.redis.hmget(self._keys_index(kind), legacy_keys))
        return {k: v.decode() for k, v in zip(legacy_keys, values, strict=True) if v}

    # Writing ---------------------------------------------------------------------------------
    def observe(self, observations: Sequence[Observation]) -> list[tuple[Status, str]]:
        """Apply observations atomically each (one round trip); (outcome, detail) of each.

        Outcomes: ``created``, ``updated``, ``same``, ``enforced``, ``pending`` (an Okta change is
        pending: nothing written), ``moved`` (written meanwhile: read again) and ``conflict``
        (detail: the unique attribute another resource holds).
        """
        if not observations:
            return []
        model = self.model
        pipe = self.redis.pipeline(transaction=False)
        now = time.time()
        for obs in observations:
            kind = obs.kind
            old_unique, new_unique = unique_values(kind, obs.previous), unique_values(kind, obs.doc)
            keys = self.keys
            claims = [
                [keys.unique_index(kind, a), v]
                for a, v in new_unique.items()
                if old_unique.get(a) != v
            ]
            releases = [
                [keys.unique_index(kind, a), v]
                for a, v in old_unique.items()
                if new_unique.get(a) != v
            ]
            old_multi = lookup_values(model.lookups[kind], obs.previous)
            new_multi = lookup_values(model.lookups[kind], obs.doc)
            adds = [keys.lookup(kind, a, v) for a, v in new_multi - old_multi]
            removes = [keys.lookup(kind, a, v) for a, v in old_multi - new_multi]
            if kind is Kind.GROUP and obs.mode == "import":
                # The groups each user is in (the store's index of desired memberships).
                old_members, new_members = set(member_ids(obs.previous)), set(member_ids(obs.doc))
                adds += [keys.groups_of(u) for u in new_members - old_members]
                removes += [keys.groups_of(u) for u in old_members - new_members]
            self._observe(
                keys=[
                    keys.resource(kind, obs.id),
                    keys.order(kind),
                    keys.modified(kind),
                    keys.sequence,
                    keys.dirty,
                    keys.pending,
                    self._keys_index(kind),
                    self.key("sync:counts"),
                ],
                args=[
                    obs.id,
                    obs.expected_version,
                    obs.mode,
                    _dumps(obs.doc) if obs.doc is not None else "",
                    _dumps(obs.observed) if obs.observed is not None else "",
                    obs.legacy_key,
                    repr(now),
                    json.dumps(claims),
                    json.dumps(releases),
                    json.dumps(adds),
                    json.dumps(removes),
                    ref(kind, obs.id),
                    repr(now),
                    obs.origin,
                ],
                client=pipe,
            )
        results = pipe.execute()
        return [(Status(outcome.decode()), detail.decode()) for outcome, detail in results]

    # The pass under way --------------------------------------------------------------------
    def checkpoint(self) -> dict[str, str]:
        """The checkpoint of the pass under way, or {} when none is."""
        raw = cast(dict[bytes, bytes], self.redis.hgetall(self.key("sync:run")))
        return {k.decode(): v.decode() for k, v in raw.items()}

    def save_checkpoint(self, values: Mapping[str, str | int | float]) -> None:
        """Record how far the pass got (after the page's writes: a re-done page is harmless)."""
        self.redis.hset(self.key("sync:run"), mapping={k: str(v) for k, v in values.items()})

    def mark_seen(self, kind: Kind, ids: Iterable[str]) -> None:
        """The pass listed these ids."""
        members = dict.fromkeys(ids, 0)
        if members:
            self.redis.zadd(self.key(f"sync:seen:{kind}"), members)

    def unseen(self, kind: Kind, batch: int = 1000) -> list[str]:
        """Ids in the read model the pass did not list.

        In batches (not one ZDIFF): with a million resources a single command would hold Redis,
        and every read waiting on it, for seconds.
        """
        seen = self.key(f"sync:seen:{kind}")
        missing: list[str] = []
        for ids in self.model.iter_ids(kind, batch):
            scores = self.redis.zmscore(seen, ids)
            missing += [rid for rid, score in zip(ids, scores, strict=True) if score is None]
        return missing

    def finish(self, summary: Mapping[str, Any]) -> None:
        """Close the pass: forget its checkpoint and seen sets, keep its summary."""
        pipe = self.redis.pipeline(transaction=True)
        # UNLINK: a seen set of a million ids is freed in the background, not while reads wait.
        pipe.unlink(self.key("sync:run"), self.key("sync:seen:u"), self.key("sync:seen:g"))
        pipe.delete(self.key("sync:error"))
        pipe.set(self.key("sync:last"), json.dumps(summary))
        pipe.hincrby(self.key("sync:counts"), "passes", 1)
        pipe.execute()

    def record_error(self, error: str) -> None:
        """Why the pass stopped (shown by ``scim-bridge status``); the checkpoint stays."""
        self.redis.set(self.key("sync:error"), error)

    def skipped(self, kind: Kind, legacy_key: str, reason: str) -> None:
        """A malformed record the pass skipped, by its legacy key."""
        self.redis.hset(self.key("sync:skipped"), f"{kind}:{legacy_key}", reason)

    def forget_skipped(self, kind: Kind, legacy_keys: Sequence[str]) -> None:
        """Records that were imported after all are no longer reported."""
        if legacy_keys:
            self.redis.hdel(self.key("sync:skipped"), *(f"{kind}:{k}" for k in legacy_keys))

    def count(self, name: str, by: int = 1) -> None:
        """Add to one of the import counters."""
        self.redis.hincrby(self.key("sync:counts"), name, by)

    # The one pass that runs --------------------------------------------------------------------
    @staticmethod
    def lock_owner() -> str:
        """This process's identity in the lock, with a token for this pass."""
        return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex}"

    def acquire(self, owner: str, ttl_s: float, *, name: str = "sync:lock") -> bool:
        """Take (or refresh) a pass lock; a holder on this host whose process died is replaced."""
        current = cast(bytes | None, self.redis.get(self.key(name)))
        dead = ""
        if current is not None:
            host, _, rest = current.decode().partition(":")
            pid = rest.partition(":")[0]
            if host == socket.gethostname() and pid.isdigit() and not _alive(int(pid)):
                dead = current.decode()
        return bool(
            self._lock(keys=[self.key(name)], args=[owner, owner, dead or owner, int(ttl_s * 1000)])
        )

    def release(self, owner: str, *, name: str = "sync:lock") -> None:
        """Let go of a pass lock if ``owner`` still holds it."""
        self._unlock(keys=[self.key(name)], args=[owner])

    # Removals held back -----------------------------------------------------------------------
    def hold(self, entries: Mapping[str, Mapping[str, Any]]) -> None:
        """Replace the held removals with ``entries`` (member -> what it was)."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(self.key("sync:held"))
        if entries:
            pipe.hset(self.key("sync:held"), mapping={m: json.dumps(e) for m, e in entries.items()})
        pipe.execute()

    def held(self) -> dict[str, dict[str, Any]]:
        """Removals waiting for ``scim-bridge sync --confirm-removals``."""
        raw = cast(dict[bytes, bytes], self.redis.hgetall(self.key("sync:held")))
        return {k.decode(): json.loads(v) for k, v in raw.items()}

    def release_held(self, member: str) -> None:
        """One held removal was applied or turned out wrong."""
        self.redis.hdel(self.key("sync:held"), member)

    def forget_key(self, kind: Kind, legacy_key: str | None) -> None:
        """A removed record's legacy key no longer names it."""
        if legacy_key:
            self.redis.hdel(self._keys_index(kind), legacy_key)

    # Delta -------------------------------------------------------------------------------------
    def delta_token(self) -> str | None:
        """Where the delta import continues from."""
        raw = cast(bytes | None, self.redis.get(self.key("sync:delta")))
        return raw.decode() if raw is not None else None

    def set_delta_token(self, token: str) -> None:
        """Record how far the delta import got."""
        self.redis.set(self.key("sync:delta"), token)

    def set_delta_token_if_absent(self, token: str) -> None:
        """Start the delta import here, unless it already started."""
        self.redis.set(self.key("sync:delta"), token, nx=True)

    # What operators see -----------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """Counters, the pass under way, the last pass and its error, held removals."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(self.key("sync:counts"))
        pipe.hgetall(self.key("sync:run"))
        pipe.get(self.key("sync:last"))
        pipe.get(self.key("sync:error"))
        pipe.hlen(self.key("sync:held"))
        pipe.hlen(self.key("sync:skipped"))
        stats, run, last, error, held, skipped = pipe.execute()
        counters = {k.decode(): int(v) for k, v in stats.items()}
        return {
            "drift_imported": counters.get("drift_imported", 0),
            "drift_enforced": counters.get("drift_enforced", 0),
            "passes": counters.get("passes", 0),
            "removed": counters.get("removed", 0),
            "removals_held": int(held),
            "skipped_records": int(skipped),
            "running": {k.decode(): v.decode() for k, v in run.items()} or None,
            "last": json.loads(last) if last else None,
            "error": error.decode() if error else None,
        }

    def origins(self, kind: Kind, batch: int = 1000) -> Iterable[tuple[str, str, str | None]]:
        """(id, origin, userName or displayName) of every live resource of a kind."""
        name = "userName" if kind is Kind.USER else "displayName"
        for ids in self.model.iter_ids(kind, batch):
            pipe = self.redis.pipeline(transaction=False)
            for rid in ids:
                pipe.hmget(
                    self.keys.resource(kind, rid),
                    (Field.ORIGIN, Field.IMPORTED_VERSION, Field.VERSION, Field.DESIRED),
                )
            for rid, (org, iv, v, doc) in zip(ids, pipe.execute(), strict=True):
                origin = org.decode() if org else "okta"
                if origin == "imported" and iv != v:
                    origin = "linked"  # Okta wrote it since it was imported
                label = json.loads(doc).get(name) if doc else None
                yield rid, origin, label


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
