"""The read model in Redis: desired and applied state, indexes, the dirty set, dead letters.

This module is the only code that knows the key layout (``{p}`` is ``key_prefix``, ``{k}`` is
``u`` for users and ``g`` for groups)::

    {p}:{k}:{id}            hash   doc (desired, SCIM 2.0 JSON), doc1 (the same in SCIM 1.1,
                                   absent after a rollback), v (desired version), del (1 = deleted),
                                   seq, st (pending|applied|failed),
                                   app (applied JSON, or "=" when it is doc), av (applied
                                   version), lk (legacy key), starts (reconciliations begun),
                                   doubt (1: a reconciliation began and has not settled),
                                   pw/pwv (pending password, encrypted, and its version),
                                   pwh (salted hash of the last password pushed), err
    {p}:{k}:order           zset   creation sequence -> id: the stable paging order
    {p}:{k}:mod             zset   meta.lastModified (epoch s) -> id: incremental imports
    {p}:{k}:ix:{attr}       hash   normalised unique value -> id (userName, externalId, ...)
    {p}:{k}:mv:{attr}:{v}   set    ids holding a looked-up value (emails.value, the unique user
                                   field when it is an extension attribute), lower-cased
    {p}:seq                 string creation sequence
    {p}:dirty               zset   "{k}:{id}" -> last time a task was published for it
    {p}:pending             zset   "{k}:{id}" -> when its unfinished change began
    {p}:dlq                 hash   "{k}:{id}" -> dead-letter entry (JSON)
    {p}:out:{k}:{id}:{v}    list   outcome of version v, for the api waiting on it (expires)
    {p}:lock:{k}:{id}       string per-resource reconcile lock (token, expires)
    {p}:stats               hash   reconcile duration average, for the backlog estimate
    {p}:workers             hash   worker -> its concurrency
    {p}:workers:until       zset   worker -> until when its last heartbeat holds
    {p}:capabilities        string the adapter's Okta provisioning functions (JSON list)

Every write of desired state is one Lua script: it checks the version the caller read (optimistic
concurrency, so concurrent PUTs never lose an update), claims the unique index entries (so two
concurrent creates of one userName give one winner), writes the document and marks it dirty.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, cast

import redis

_WRITE = """
local h, order, mod, dirty, seqkey, pending = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local id, expected, doc, score = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
local claims, releases = cjson.decode(ARGV[5]), cjson.decode(ARGV[6])
local adds, removes = cjson.decode(ARGV[7]), cjson.decode(ARGV[8])
local member, now, mode, pw, doc1 = ARGV[9], ARGV[10], ARGV[11], ARGV[12], ARGV[13]
local current = tonumber(redis.call('HGET', h, 'v') or '0')
if current ~= expected then return {'version', tostring(current)} end
for _, c in ipairs(claims) do
  local owner = redis.call('HGET', c[1], c[2])
  if owner and owner ~= id then return {'conflict', c[1]} end
end
for _, r in ipairs(releases) do
  if redis.call('HGET', r[1], r[2]) == id then redis.call('HDEL', r[1], r[2]) end
end
for _, c in ipairs(claims) do redis.call('HSET', c[1], c[2], id) end
for _, s in ipairs(removes) do redis.call('SREM', s, id) end
for _, s in ipairs(adds) do redis.call('SADD', s, id) end
local version = current + 1
if redis.call('HGET', h, 'app') == '=' then
  redis.call('HSET', h, 'app', redis.call('HGET', h, 'doc'))
end
if doc == '' then
  redis.call('HSET', h, 'v', version, 'del', '1', 'doc', '')
  redis.call('HDEL', h, 'doc1')
  redis.call('ZREM', order, id)
  redis.call('ZREM', mod, id)
else
  redis.call('HSET', h, 'v', version, 'del', '0', 'doc', doc)
  if doc1 ~= '' then redis.call('HSET', h, 'doc1', doc1) else redis.call('HDEL', h, 'doc1') end
  local seq = redis.call('HGET', h, 'seq')
  if not seq then
    seq = redis.call('INCR', seqkey)
    redis.call('HSET', h, 'seq', seq)
  end
  redis.call('ZADD', order, seq, id)
  redis.call('ZADD', mod, score, id)
end
if pw ~= '' then redis.call('HSET', h, 'pw', pw, 'pwv', version) end
if mode == 'write' then
  redis.call('HSET', h, 'st', 'pending')
  redis.call('ZADD', dirty, now, member)
  redis.call('ZADD', pending, 'NX', now, member)
else
  -- a rollback: desired is the applied state again
  redis.call('HSET', h, 'st', 'failed', 'av', version, 'app', '=')
  redis.call('HDEL', h, 'pw', 'pwv', 'fails', 'doubt')
  redis.call('ZREM', dirty, member)
  redis.call('ZREM', pending, member)
end
return {'ok', tostring(version)}
"""

_SETTLE = """
local h, dirty, pending = KEYS[1], KEYS[2], KEYS[3]
local version, applied, legacy_key, pwh, member = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
if redis.call('EXISTS', h) == 0 then return 'gone' end
local current = redis.call('HGET', h, 'v') == version
-- '=' means "the applied state is the desired document": most resources are settled, and the
-- marker saves a second copy of every document (the write script copies it out before a change).
redis.call('HSET', h, 'av', version, 'app', current and '=' or applied, 'lk', legacy_key)
redis.call('HDEL', h, 'err')
if current then redis.call('HDEL', h, 'doubt') end
if pwh ~= '' then redis.call('HSET', h, 'pwh', pwh) end
local pwv = tonumber(redis.call('HGET', h, 'pwv') or '-1')
if pwv >= 0 and pwv <= tonumber(version) then redis.call('HDEL', h, 'pw', 'pwv') end
if not current then return 'moved' end
redis.call('ZREM', dirty, member)
redis.call('ZREM', pending, member)
if redis.call('HGET', h, 'del') == '1' then
  redis.call('DEL', h)
  return 'purged'
end
redis.call('HSET', h, 'st', 'applied')
redis.call('HDEL', h, 'fails')
return 'settled'
"""

_PURGE = """
local h, order, mod, dirty, pending = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local id, expected, member = ARGV[1], ARGV[2], ARGV[3]
local releases, removes = cjson.decode(ARGV[4]), cjson.decode(ARGV[5])
if redis.call('HGET', h, 'v') ~= expected then return 'moved' end
for _, r in ipairs(releases) do
  if redis.call('HGET', r[1], r[2]) == id then redis.call('HDEL', r[1], r[2]) end
end
for _, s in ipairs(removes) do redis.call('SREM', s, id) end
redis.call('DEL', h)
redis.call('ZREM', order, id)
redis.call('ZREM', mod, id)
redis.call('ZREM', dirty, member)
redis.call('ZREM', pending, member)
return 'purged'
"""

# Take the per-resource lock, count the start, and read the resource: one round trip.
_CLAIM = """
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return {0} end
if redis.call('EXISTS', KEYS[2]) == 0 then return {1, 0} end
local starts = redis.call('HINCRBY', KEYS[2], 'starts', 1)
local fields = redis.call('HGETALL', KEYS[2])
-- From here until settled, what the legacy application holds is in doubt: a call may land
-- and its answer be lost (time-out, lost worker). The next reconciliation then pushes it all.
redis.call('HSET', KEYS[2], 'doubt', '1')
return {1, starts, fields}
"""

# Let go of the lock, close the attempt, fold in the duration, and report the version now.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
redis.call('HDEL', KEYS[2], 'starts')
local previous = tonumber(redis.call('HGET', KEYS[3], 'reconcile_s'))
local seconds = tonumber(ARGV[2])
if previous then seconds = 0.8 * previous + 0.2 * seconds end
redis.call('HSET', KEYS[3], 'reconcile_s', tostring(seconds))
return tonumber(redis.call('HGET', KEYS[2], 'v') or '0')
"""

# Counters of a resource that must not bring a purged resource back to life.
_COUNT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
return redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
"""

_MARK = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
return redis.call('HSET', KEYS[1], ARGV[1], '1')
"""

_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Kind(StrEnum):
    """The resource types scim-bridge stores."""

    USER = "u"
    GROUP = "g"

    @property
    def resource_type(self) -> str:
        """The SCIM resourceType name."""
        return "User" if self is Kind.USER else "Group"

    @property
    def endpoint(self) -> str:
        """The SCIM endpoint, as in ``/Users``."""
        return "Users" if self is Kind.USER else "Groups"


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
    state: str | None = None
    error: str | None = None
    password_token: str | None = None
    password_hash: str | None = None
    in_doubt: bool = False
    """A reconciliation began and did not settle: the legacy state is unknown."""
    seq: int = 0


@dataclass(frozen=True)
class Outcome:
    """The reconciler's answer for one version, as the waiting api receives it."""

    status: str  # "applied" | "failed" | "superseded"
    version: int
    error: str | None = None
    scim_type: str | None = None

    def to_json(self) -> str:
        """Serialise for the outcome list."""
        return json.dumps(self.__dict__)

    @classmethod
    def from_json(cls, raw: bytes | str) -> Outcome:
        """Parse from the outcome list."""
        return cls(**json.loads(raw))


def now_iso() -> str:
    """The current instant as SCIM writes it (UTC, milliseconds)."""
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def dumps(doc: Mapping[str, Any]) -> str:
    """Compact JSON, the form documents are stored and served in."""
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)


class ReadModel:
    """Typed access to scim-bridge's Redis keys. Safe to share between threads."""

    def __init__(
        self,
        client: redis.Redis,
        prefix: str = "sb",
        *,
        wait_client: redis.Redis | None = None,
        lookups: Mapping[Kind, tuple[str, ...]] | None = None,
    ) -> None:
        self.redis = client
        self.lookups = dict(lookups or DEFAULT_LOOKUPS)
        self._wait_redis = wait_client or client
        self.prefix = prefix
        self._write = client.register_script(_WRITE)
        self._settle = client.register_script(_SETTLE)
        self._purge = client.register_script(_PURGE)
        self._unlock = client.register_script(_UNLOCK)
        self._count = client.register_script(_COUNT)
        self._mark = client.register_script(_MARK)
        self._claim = client.register_script(_CLAIM)
        self._release = client.register_script(_RELEASE)

    # Keys ---------------------------------------------------------------------------------------
    def _h(self, kind: Kind, rid: str) -> str:
        return f"{self.prefix}:{kind}:{rid}"

    def _order(self, kind: Kind) -> str:
        return f"{self.prefix}:{kind}:order"

    def _mod(self, kind: Kind) -> str:
        return f"{self.prefix}:{kind}:mod"

    def _ix(self, kind: Kind, attribute: str) -> str:
        return f"{self.prefix}:{kind}:ix:{attribute}"

    def _mv(self, kind: Kind, attribute: str, value: str) -> str:
        return f"{self.prefix}:{kind}:mv:{attribute}:{value}"

    @property
    def dirty_key(self) -> str:
        """The dirty set: unfinished work, the source of truth for the sweeper."""
        return f"{self.prefix}:dirty"

    @property
    def pending_key(self) -> str:
        """Unfinished changes scored by when they became pending (for the oldest one's age)."""
        return f"{self.prefix}:pending"

    @property
    def dlq_key(self) -> str:
        """The dead-letter store."""
        return f"{self.prefix}:dlq"

    @staticmethod
    def member(kind: Kind, rid: str) -> str:
        """A resource's member name in the dirty set and the dead-letter store."""
        return f"{kind}:{rid}"

    @staticmethod
    def parse_member(member: str | bytes) -> tuple[Kind, str]:
        """Inverse of :meth:`member`."""
        text = member.decode() if isinstance(member, bytes) else member
        kind, _, rid = text.partition(":")
        return Kind(kind), rid

    # Reads --------------------------------------------------------------------------------------
    def get_raw(self, kind: Kind, rid: str, rendering: str = "doc") -> bytes | None:
        """The desired document as stored (compact JSON bytes), or None if absent or deleted.

        ``rendering`` is ``doc`` (SCIM 2.0) or ``doc1`` (SCIM 1.1, absent after a rollback).
        """
        raw = cast(bytes | None, self.redis.hget(self._h(kind, rid), rendering))
        return raw or None

    def get_many_raw(
        self, kind: Kind, ids: Sequence[str], rendering: str = "doc"
    ) -> list[bytes | None]:
        """Desired documents of ``ids``, in order (one round trip)."""
        if not ids:
            return []
        if len(ids) == 1:
            return [self.get_raw(kind, ids[0], rendering)]
        pipe = self.redis.pipeline(transaction=False)
        for rid in ids:
            pipe.hget(self._h(kind, rid), rendering)
        return [raw or None for raw in pipe.execute()]

    def snapshot(self, kind: Kind, rid: str) -> Snapshot:
        """Everything stored for a resource (one round trip)."""
        fields = cast(dict[bytes, bytes], self.redis.hgetall(self._h(kind, rid)))
        return self._snapshot(kind, rid, fields)

    @staticmethod
    def _snapshot(kind: Kind, rid: str, fields: dict[bytes, bytes]) -> Snapshot:
        snap = Snapshot(kind, rid)
        if not fields:
            return snap
        text = {k.decode(): v for k, v in fields.items()}
        snap.exists = True
        snap.deleted = text.get("del") == b"1"
        doc = text.get("doc")
        snap.desired = json.loads(doc) if doc else None
        snap.version = int(text.get("v", b"0"))
        app = text.get("app")
        if app == b"=":
            snap.applied = json.loads(doc) if doc else None
        else:
            snap.applied = json.loads(app) if app else None
        snap.applied_version = int(text.get("av", b"0"))
        snap.legacy_key = text["lk"].decode() if text.get("lk") else None
        snap.state = text["st"].decode() if "st" in text else None
        snap.error = text["err"].decode() if "err" in text else None
        snap.password_token = text["pw"].decode() if "pw" in text else None
        snap.password_hash = text["pwh"].decode() if "pwh" in text else None
        snap.seq = int(text.get("seq", b"0"))
        snap.in_doubt = text.get("doubt") == b"1"
        return snap

    def claim(self, kind: Kind, rid: str, token: str, ttl_s: float) -> tuple[bool, int, Snapshot]:
        """Take the reconcile lock, count the start and read the resource, atomically.

        Returns (acquired, starts, snapshot); ``starts`` counts reconciliations begun and not
        released, so a value that keeps growing means each one lost its worker.
        """
        result = self._claim(
            keys=[f"{self.prefix}:lock:{kind}:{rid}", self._h(kind, rid)],
            args=[token, int(ttl_s * 1000)],
        )
        if not result[0]:
            return False, 0, Snapshot(kind, rid)
        if len(result) < 3:
            return True, 0, Snapshot(kind, rid)
        flat = result[2]
        fields = {flat[i]: flat[i + 1] for i in range(0, len(flat), 2)}
        return True, int(result[1]), self._snapshot(kind, rid, fields)

    def release(self, kind: Kind, rid: str, token: str, duration_s: float) -> int:
        """Release the lock, close the attempt, record the duration; the version now."""
        return int(
            self._release(
                keys=[
                    f"{self.prefix}:lock:{kind}:{rid}",
                    self._h(kind, rid),
                    f"{self.prefix}:stats",
                ],
                args=[token, repr(duration_s)],
            )
        )

    def find_unique(self, kind: Kind, attribute: str, value: str) -> str | None:
        """The id holding a unique value, or None."""
        folded = UNIQUE_ATTRIBUTES[kind][attribute]
        owner = cast(
            bytes | None, self.redis.hget(self._ix(kind, attribute), normalise(value, folded))
        )
        return owner.decode() if owner else None

    def find_multi(self, kind: Kind, attribute: str, value: str) -> set[str]:
        """Ids holding ``value`` in a multi-valued indexed attribute (case-insensitive)."""
        members = cast(set[bytes], self.redis.smembers(self._mv(kind, attribute, value.lower())))
        return {m.decode() for m in members}

    def count(self, kind: Kind) -> int:
        """How many live resources of a kind exist."""
        return self.redis.zcard(self._order(kind))

    def page_ids(self, kind: Kind, offset: int, count: int) -> list[str]:
        """Ids in creation order, ``count`` of them from 0-based ``offset``."""
        if count <= 0:
            return []
        ids = cast(list[bytes], self.redis.zrange(self._order(kind), offset, offset + count - 1))
        return [i.decode() for i in ids]

    def iter_ids(self, kind: Kind, batch: int = 1000) -> Iterator[list[str]]:
        """Every live id in creation order, in batches (for filters no index answers)."""
        last = "-inf"
        while True:
            chunk = cast(
                list[tuple[bytes, float]],
                self.redis.zrangebyscore(
                    self._order(kind), last, "+inf", start=0, num=batch, withscores=True
                ),
            )
            if not chunk:
                return
            yield [member.decode() for member, _ in chunk]
            if len(chunk) < batch:
                return
            last = f"({int(chunk[-1][1])}"

    def modified_ids(self, kind: Kind, low: str, high: str) -> list[str]:
        """Ids whose lastModified (epoch seconds) lies in [low, high] (``(`` for exclusive)."""
        ids = cast(list[bytes], self.redis.zrangebyscore(self._mod(kind), low, high))
        return [i.decode() for i in ids]

    def creation_order(self, kind: Kind, ids: Iterable[str]) -> list[str]:
        """``ids`` that still exist, sorted by creation sequence (the stable paging order)."""
        unique = list(dict.fromkeys(ids))
        if not unique:
            return []
        scores = self.redis.zmscore(self._order(kind), unique)
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
        old_unique, new_unique = unique_values(kind, previous), unique_values(kind, doc)
        claims = [[self._ix(kind, a), v] for a, v in new_unique.items() if old_unique.get(a) != v]
        releases = [[self._ix(kind, a), v] for a, v in old_unique.items() if new_unique.get(a) != v]
        old_multi = lookup_values(self.lookups[kind], previous)
        new_multi = lookup_values(self.lookups[kind], doc)
        adds = [self._mv(kind, a, v) for a, v in new_multi - old_multi]
        removes = [self._mv(kind, a, v) for a, v in old_multi - new_multi]
        result = self._write(
            keys=[
                self._h(kind, rid),
                self._order(kind),
                self._mod(kind),
                self.dirty_key,
                f"{self.prefix}:seq",
                self.pending_key,
            ],
            args=[
                rid,
                expected_version,
                dumps(doc) if doc is not None else "",
                repr(last_modified),
                json.dumps(claims),
                json.dumps(releases),
                json.dumps(adds),
                json.dumps(removes),
                self.member(kind, rid),
                repr(time.time()),
                "rollback" if rollback else "write",
                password_token or "",
                dumps(v1_doc) if v1_doc is not None else "",
            ],
        )
        status, detail = (part.decode() for part in result)
        if status == "version":
            raise VersionConflict(detail)
        if status == "conflict":
            raise UniquenessConflict(detail.rsplit(":", 1)[-1])
        return int(detail)

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
        releases = [
            [self._ix(kind, a), v] for a, v in unique_values(kind, snapshot.desired).items()
        ]
        removes = [
            self._mv(kind, a, v) for a, v in lookup_values(self.lookups[kind], snapshot.desired)
        ]
        result = self._purge(
            keys=[
                self._h(kind, rid),
                self._order(kind),
                self._mod(kind),
                self.dirty_key,
                self.pending_key,
            ],
            args=[
                rid,
                snapshot.version,
                self.member(kind, rid),
                json.dumps(releases),
                json.dumps(removes),
            ],
        )
        return bool(result == b"purged")

    # The reconciler's side -------------------------------------------------------------------
    def settle(
        self,
        kind: Kind,
        rid: str,
        *,
        version: int,
        applied: Mapping[str, Any] | None,
        legacy_key: str | None,
        password_hash: str | None = None,
    ) -> str:
        """Record what the legacy application confirmed; clear the dirty mark if still current.

        Returns ``settled``, ``purged`` (a confirmed delete), ``moved`` (desired changed
        meanwhile: reconcile again) or ``gone``.
        """
        result = self._settle(
            keys=[self._h(kind, rid), self.dirty_key, self.pending_key],
            args=[
                version,
                dumps(applied) if applied is not None else "",
                legacy_key or "",
                password_hash or "",
                self.member(kind, rid),
            ],
        )
        return cast(bytes, result).decode()

    def mark_doubt(self, kind: Kind, rid: str) -> None:
        """The legacy state of a resource is unknown: its next reconciliation pushes it all."""
        self._mark(keys=[self._h(kind, rid)], args=["doubt"])

    def clear_doubt(self, kind: Kind, rid: str) -> None:
        """Nothing reached the legacy application: its state is the recorded one."""
        self.redis.hdel(self._h(kind, rid), "doubt")  # HDEL never creates a key

    def count_failure(self, kind: Kind, rid: str) -> int:
        """Count a transient failure of the current change; reset when it settles."""
        return int(self._count(keys=[self._h(kind, rid)], args=["fails"]))

    def record_error(self, kind: Kind, rid: str, error: str) -> None:
        """Keep the last error of a resource, for status and operators."""
        self.redis.hset(self._h(kind, rid), "err", error)

    def dead_letter(self, kind: Kind, rid: str, entry: Mapping[str, Any]) -> None:
        """Store a change that cannot be applied, with its reason."""
        self.redis.hset(self.dlq_key, self.member(kind, rid), json.dumps(entry))

    def dead_letters(self) -> dict[str, dict[str, Any]]:
        """Every dead-letter entry, by member."""
        raw = cast(dict[bytes, bytes], self.redis.hgetall(self.dlq_key))
        return {k.decode(): json.loads(v) for k, v in raw.items()}

    def touch_dirty(self, kind: Kind, rid: str, at: float) -> None:
        """Record that a task for this dirty resource was (re)published or is due at ``at``."""
        self.redis.zadd(self.dirty_key, {self.member(kind, rid): at}, xx=True)

    def dirty_before(self, cutoff: float, limit: int = 1000) -> list[tuple[Kind, str]]:
        """Dirty resources whose last task is older than ``cutoff`` (presumed lost)."""
        members = cast(
            list[bytes],
            self.redis.zrangebyscore(self.dirty_key, "-inf", cutoff, start=0, num=limit),
        )
        return [self.parse_member(m) for m in members]

    def backlog(self) -> int:
        """How many resources have unfinished changes."""
        return self.redis.zcard(self.dirty_key)

    def oldest_pending(self) -> tuple[str, float] | None:
        """The resource pending the longest, and since when (epoch seconds)."""
        found = cast(
            list[tuple[bytes, float]], self.redis.zrange(self.pending_key, 0, 0, withscores=True)
        )
        return (found[0][0].decode(), found[0][1]) if found else None

    # Locks --------------------------------------------------------------------------------------
    def acquire_lock(self, kind: Kind, rid: str, token: str, ttl_s: float) -> bool:
        """Take the per-resource reconcile lock; False if another task holds it."""
        key = f"{self.prefix}:lock:{kind}:{rid}"
        return bool(self.redis.set(key, token, nx=True, px=int(ttl_s * 1000)))

    def release_lock(self, kind: Kind, rid: str, token: str) -> None:
        """Release the lock if this token still holds it."""
        self._unlock(keys=[f"{self.prefix}:lock:{kind}:{rid}"], args=[token])

    # Outcomes -----------------------------------------------------------------------------------
    def _out(self, kind: Kind, rid: str, version: int) -> str:
        return f"{self.prefix}:out:{kind}:{rid}:{version}"

    def publish_outcomes(
        self, kind: Kind, rid: str, versions: Iterable[int], outcome: Outcome, ttl_s: int = 60
    ) -> None:
        """Answer the requests waiting for any of ``versions``."""
        pipe = self.redis.pipeline(transaction=False)
        for version in versions:
            key = self._out(kind, rid, version)
            pipe.rpush(key, outcome.to_json())
            pipe.expire(key, ttl_s)
        pipe.execute()

    def wait_outcome(self, kind: Kind, rid: str, version: int, timeout_s: float) -> Outcome | None:
        """Block up to ``timeout_s`` for the outcome of ``version``; None on time-out."""
        if timeout_s <= 0:
            return None
        found = self._wait_redis.blpop([self._out(kind, rid, version)], timeout=timeout_s)
        if not found:
            return None
        return Outcome.from_json(found[1])

    # What the legacy application can do ----------------------------------------------------
    def publish_capabilities(self, functions: Iterable[str]) -> None:
        """Workers record the configured adapter's Okta provisioning functions."""
        self.redis.set(f"{self.prefix}:capabilities", json.dumps(sorted(functions)))

    def capabilities(self) -> list[str] | None:
        """The functions the workers' adapter declared, or None if no worker reported yet."""
        raw = cast(bytes | None, self.redis.get(f"{self.prefix}:capabilities"))
        return list(json.loads(raw)) if raw else None

    # Capacity, for the backlog estimate --------------------------------------------------------
    def average_duration(self) -> float | None:
        """Moving average of a reconciliation's duration, if any was recorded."""
        value = self.redis.hget(f"{self.prefix}:stats", "reconcile_s")
        return float(value) if value is not None else None

    def heartbeat(self, host: str, concurrency: int, ttl_s: int = 30) -> None:
        """A worker announces itself and its concurrency, valid for ``ttl_s``."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(f"{self.prefix}:workers", host, concurrency)
        pipe.zadd(f"{self.prefix}:workers:until", {host: time.time() + ttl_s})
        pipe.execute()

    def live_workers(self) -> dict[str, int]:
        """Live workers and their concurrency (no scan, whatever the size of the keyspace)."""
        now = time.time()
        pipe = self.redis.pipeline(transaction=False)
        pipe.zrangebyscore(f"{self.prefix}:workers:until", now, "+inf")
        pipe.zrangebyscore(f"{self.prefix}:workers:until", "-inf", now)
        alive, dead = cast(list[list[bytes]], pipe.execute())
        if dead:
            cleanup = self.redis.pipeline(transaction=False)
            cleanup.zrem(f"{self.prefix}:workers:until", *dead)
            cleanup.hdel(f"{self.prefix}:workers", *dead)
            cleanup.execute()
        if not alive:
            return {}
        values = cast(list[bytes | None], self.redis.hmget(f"{self.prefix}:workers", alive))
        return {
            host.decode(): int(value)
            for host, value in zip(alive, values, strict=True)
            if value is not None
        }
