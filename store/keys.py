"""The Redis key layout and the resource hash's field names: named once, here.

``{p}`` is the key prefix, ``{k}`` is ``u`` for users and ``g`` for groups. By area::

    resources and indexes
    {p}:{k}:r:{id}          hash   one resource (fields: :class:`Field`)
    {p}:{k}:order           zset   creation sequence -> id: the stable paging order
    {p}:{k}:mod             zset   meta.lastModified (epoch s) -> id: incremental imports
    {p}:{k}:ix:{attr}       hash   normalised unique value -> id (userName, externalId, ...)
    {p}:{k}:mv:{attr}:{v}   set    ids holding a looked-up value (emails.value, ...), lower-cased
    {p}:g:of:{user id}      set    groups whose desired members include the user
    {p}:seq                 string creation sequence
    {p}:capabilities        string the adapter's Okta provisioning functions (JSON list)
    imports (store/imports.py lists them)
    {p}:{k}:keys            hash   legacy key -> id, kept by imports and by settle
    {p}:sync:*              the import passes' checkpoint, locks, counters, held removals
    the work queue and outcomes
    {p}:dirty               zset   ref -> last time a task was published for it
    {p}:pending             zset   ref -> when its unfinished change began
    {p}:out:{k}:{id}:{v}    list   outcome of version v, for the api waiting on it (expires)
    {p}:lock:{k}:{id}       string per-resource reconcile lock (token, expires)
    scim-bridge             list   the Celery queue (kombu's Redis transport)
    unacked                 hash   tasks delivered and not acknowledged (kombu)
    dead letters
    {p}:dlq                 hash   ref -> dead-letter entry (JSON)
    {p}:dlq:dropped         list   entries an operator dropped, with the reason
    the fleet of workers and the legacy guard
    {p}:workers             hash   worker -> its concurrency
    {p}:workers:until       zset   worker -> until when its last heartbeat holds
    {p}:stats               hash   reconcile duration average, for the backlog estimate
    {p}:legacy:slots        zset   holders of the global cap, scored by lease expiry
    {p}:legacy:breaker      hash   circuit breaker state
    {p}:legacy:problem      string why the last worker start refused the adapter (a bind refused)

Resource hashes live under ``r:``, so no id can name a bookkeeping key; ids are also checked
against the minted format before any key is built (:func:`valid_id`).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from enum import StrEnum


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


class Field:
    """Fields of a resource hash: short on the wire, readable in the code.

    The Lua scripts read the same names: each script starts with a prelude of ``F_<NAME>``
    locals made from this class (store/scripts.py).
    """

    DESIRED = "doc"
    """The desired document, SCIM 2.0 compact JSON ('' once deleted)."""
    DESIRED_V1 = "doc1"
    """The same document rendered in SCIM 1.1 (absent after a rollback)."""
    VERSION = "v"
    DELETED = "del"
    SEQUENCE = "seq"
    SYNC_STATE = "st"
    APPLIED = "app"
    """The applied document, or :data:`APPLIED_IS_DESIRED`."""
    APPLIED_VERSION = "av"
    LEGACY_KEY = "lk"
    STARTS = "starts"
    DOUBT = "doubt"
    PASSWORD = "pw"  # noqa: S105 (a field name)
    """A pending password, sealed."""
    PASSWORD_VERSION = "pwv"  # noqa: S105
    PASSWORD_HASH = "pwh"  # noqa: S105
    """Salted hash of the last password pushed."""
    FAILURES = "fails"
    ERROR = "err"
    ORIGIN = "org"
    """Who made the resource: ``okta``, ``imported`` or ``linked`` (store/imports.py)."""
    IMPORTED_VERSION = "iv"
    """The version an import last wrote."""
    REQUEST_ID = "rq"
    """The correlation id of the request that made the pending change (its log lines)."""


APPLIED_IS_DESIRED = "="
"""The applied field's marker for "the applied state is the desired document"."""

QUEUE = "scim-bridge"
"""The Celery queue name, which kombu's Redis transport uses as the list's key."""
UNACKED = "unacked"
"""kombu's Redis transport: tasks delivered and not yet acknowledged."""

_MINTED = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def mint_id() -> str:
    """A new resource id (a random UUID, lower-case)."""
    return str(uuid.uuid4())


def valid_id(rid: str) -> bool:
    """Whether ``rid`` has the minted format; anything else cannot name a resource."""
    return bool(_MINTED.match(rid))


def ref(kind: Kind, rid: str) -> str:
    """A resource's entry in the dirty and pending sets and the dead-letter store."""
    return f"{kind}:{rid}"


def parse_ref(entry: str | bytes) -> tuple[Kind, str]:
    """Inverse of :func:`ref`."""
    text = entry.decode() if isinstance(entry, bytes) else entry
    kind, _, rid = text.partition(":")
    return Kind(kind), rid


@dataclass(frozen=True)
class Keys:
    """Every key name under one prefix."""

    prefix: str = "sb"

    def resource(self, kind: Kind, rid: str) -> str:
        """The hash of one resource."""
        return f"{self.prefix}:{kind}:r:{rid}"

    def order(self, kind: Kind) -> str:
        """Creation order of live resources."""
        return f"{self.prefix}:{kind}:order"

    def modified(self, kind: Kind) -> str:
        """Live resources by lastModified."""
        return f"{self.prefix}:{kind}:mod"

    def unique_index(self, kind: Kind, attribute: str) -> str:
        """Normalised unique value -> id."""
        return f"{self.prefix}:{kind}:ix:{attribute}"

    def lookup(self, kind: Kind, attribute: str, value: str) -> str:
        """Ids holding a looked-up value."""
        return f"{self.prefix}:{kind}:mv:{attribute}:{value}"

    def groups_of(self, user_id: str) -> str:
        """Groups whose desired members include a user."""
        return f"{self.prefix}:{Kind.GROUP}:of:{user_id}"

    def legacy_keys(self, kind: Kind) -> str:
        """Legacy key -> id, as imports saw them."""
        return f"{self.prefix}:{kind}:keys"

    def sync(self, name: str) -> str:
        """One of the imports' own keys (``run``, ``lock``, ``counts``...: store/imports.py)."""
        return f"{self.prefix}:sync:{name.removeprefix('sync:')}"

    @property
    def sequence(self) -> str:
        """The creation sequence counter."""
        return f"{self.prefix}:seq"

    @property
    def dirty(self) -> str:
        """Unfinished work: the sweeper's source of truth."""
        return f"{self.prefix}:dirty"

    @property
    def pending(self) -> str:
        """Unfinished changes by when they became pending."""
        return f"{self.prefix}:pending"

    def outcome(self, kind: Kind, rid: str, version: int) -> str:
        """Where the api waits for the outcome of one version."""
        return f"{self.prefix}:out:{kind}:{rid}:{version}"

    def lock(self, kind: Kind, rid: str) -> str:
        """The per-resource reconcile lock."""
        return f"{self.prefix}:lock:{kind}:{rid}"

    @property
    def dead_letters(self) -> str:
        """The dead-letter store."""
        return f"{self.prefix}:dlq"

    @property
    def dropped(self) -> str:
        """Dead letters an operator dropped."""
        return f"{self.prefix}:dlq:dropped"

    @property
    def workers(self) -> str:
        """Worker -> concurrency."""
        return f"{self.prefix}:workers"

    @property
    def workers_until(self) -> str:
        """Worker -> heartbeat expiry."""
        return f"{self.prefix}:workers:until"

    @property
    def stats(self) -> str:
        """Reconcile duration average."""
        return f"{self.prefix}:stats"

    @property
    def capabilities(self) -> str:
        """The adapter's declared functions."""
        return f"{self.prefix}:capabilities"

    @property
    def legacy_slots(self) -> str:
        """The global cap's leases."""
        return f"{self.prefix}:legacy:slots"

    @property
    def legacy_breaker(self) -> str:
        """The circuit breaker."""
        return f"{self.prefix}:legacy:breaker"

    @property
    def legacy_problem(self) -> str:
        """Why the last worker start refused the adapter, for ``scim-bridge status``."""
        return f"{self.prefix}:legacy:problem"

    @property
    def fleet_keys(self) -> tuple[str, ...]:
        """Keys that describe the workers rather than the data (kept by a data clean-up)."""
        return (
            self.workers,
            self.workers_until,
            self.stats,
            self.capabilities,
            self.legacy_problem,
        )
