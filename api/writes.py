"""The write path: validate, apply PUT/PATCH semantics, store desired state atomically, publish
a reconcile task, and wait a bounded time for the legacy application (docs/architecture.md,
"The write path").

Somewhat over 400 lines on purpose: it is one class, :class:`WriteService`, whose private steps
(admission, validation, If-Match, known members, the groups a deleted user leaves, the store
write, the confirmation wait) are the stages of one flow that every command runs in order;
spread over modules, a reader would follow one write through several files.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import redis
from falcon import ETag
from pydantic import ValidationError
from scim2_models import (
    Context,
    NotFoundException,
    PatchOp,
    PreconditionFailedException,
    Resource,
    SCIMException,
    UniquenessException,
)

from scim_bridge.api.capacity import BacklogEstimate
from scim_bridge.api.deadline import check_before_storing, remaining
from scim_bridge.api.dialects import SCIM_1
from scim_bridge.api.errors import ScimError, from_validation
from scim_bridge.api.limits import RequestLimits
from scim_bridge.api.members import apply_member_operations
from scim_bridge.api.redact import Redactor
from scim_bridge.api.schemas import ScimSchemas, canonical
from scim_bridge.store import (
    BacklogFull,
    ChangeOutcome,
    Kind,
    OutcomeStatus,
    ReplicationShortfall,
    Snapshot,
    Store,
    UniquenessConflict,
    VersionConflict,
    now_iso,
)
from scim_bridge.store.model import member_ids
from scim_bridge.store.resources import DesiredWrite
from scim_bridge.workers import logs
from scim_bridge.workers.passwords import PasswordVault

log = logging.getLogger("scim_bridge.api.writes")

Publish = Callable[[Kind, str], None]
_ATTEMPTS = 8


# The parsed If-Match header (``falcon.Request.if_match``): None when there is none, ``["*"]``
# for any version, an empty list for a blank header (which no version matches).
Preconditions = Sequence[ETag | str] | None


@dataclass(frozen=True)
class NextState:
    """The next desired state of a resource (``None``: deleted) and a password to push."""

    document: dict[str, Any] | None
    password: str | None


def _content(doc: Mapping[str, Any] | None) -> dict[str, Any]:
    """A document without its ``meta``: what a change is about."""
    return {k: v for k, v in (doc or {}).items() if k != "meta"}


@dataclass(frozen=True)
class Written:
    """A write the store accepted: the stored document and whether the legacy app confirmed it."""

    id: str
    document: dict[str, Any] | None
    version: int
    confirmed: bool
    existing: bool = False
    """A duplicate create answered by updating the existing resource."""
    accepted_async: bool = False
    """The client asked ``Prefer: respond-async``: answered 202 without waiting."""


class WriteService:
    """Creates, replaces, patches and deletes resources."""

    def __init__(
        self,
        store: Store,
        publish: Publish,
        schemas: ScimSchemas,
        *,
        vault: PasswordVault | None,
        confirm_wait_s: float,
        backlog: BacklogEstimate,
        duplicate_create_updates: bool = False,
        max_backlog: int = 10_000,
        limits: RequestLimits,
    ) -> None:
        self.max_backlog = max_backlog
        self.limits = limits
        self.store = store
        self.schemas = schemas
        self.duplicate_create_updates = duplicate_create_updates
        self.publish = publish
        self.vault = vault
        self.confirm_wait_s = confirm_wait_s
        self.backlog = backlog
        self.redactor = Redactor((schemas.user, schemas.group))

    # Commands -----------------------------------------------------------------------------------
    def create(
        self, kind: Kind, body: Mapping[str, Any], *, respond_async: bool = False
    ) -> Written:
        """POST: a new resource with an id minted here.

        With ``duplicate_create_updates``, a POST for an existing userName updates and returns
        that user (Okta re-sends creates after re-assignment); otherwise it is 409.
        """
        backlog = self._admit(kind)
        model = self._validate(kind, body, Context.RESOURCE_CREATION_REQUEST)
        updates_duplicates = self.duplicate_create_updates and kind is Kind.USER
        user_name = str(getattr(model, "user_name", ""))
        if updates_duplicates and self.store.find_unique(kind, "userName", user_name):
            return self._update_existing(kind, body, user_name, respond_async)
        password = self._take_password(model)
        rid = str(uuid.uuid4())
        now = now_iso()
        doc = canonical(kind, model, rid, created=now, last_modified=now, version=1)
        doc = self._known_members(kind, doc, previous=None)
        try:
            version = self._store(kind, rid, doc, previous=None, expected=0, password=password)
        except UniquenessException:
            # Lost a race with a concurrent create of the same userName: update that one.
            if updates_duplicates and self.store.find_unique(kind, "userName", user_name):
                return self._update_existing(kind, body, user_name, respond_async)
            raise
        return self._confirm(kind, rid, doc, version, respond_async, backlog)

    def replace(
        self,
        kind: Kind,
        rid: str,
        body: Mapping[str, Any],
        if_match: Preconditions,
        *,
        respond_async: bool = False,
    ) -> Written:
        """PUT: the body is the whole new resource."""
        backlog = self._admit(kind)
        # Some agents were reported to send a membership change as two PUTs: keep the evidence
        # at debug level. The body is not validated yet: redact what may be secret.
        if kind is Kind.GROUP and log.isEnabledFor(logging.DEBUG):
            log.debug("PUT Group %s: %s", rid, self.redactor.body(body))
        model = self._validate(kind, body, Context.RESOURCE_REPLACEMENT_REQUEST)
        password = self._take_password(model)

        def change(snap: Snapshot) -> NextState:
            return NextState(self._next(kind, snap, model), password)

        return self._write(kind, rid, if_match, change, respond_async, backlog)

    def patch(
        self,
        kind: Kind,
        rid: str,
        body: Mapping[str, Any],
        if_match: Preconditions,
        *,
        respond_async: bool = False,
    ) -> Written:
        """PATCH: operations applied to the current desired state (scim2-models does the work)."""
        backlog = self._admit(kind)
        try:
            operations = PatchOp[self.schemas.model(kind)].model_validate(  # type: ignore[misc]
                body, scim_ctx=Context.RESOURCE_PATCH_REQUEST
            )
        except ValidationError as exc:
            raise from_validation(exc, "invalid PATCH request") from None

        def change(snap: Snapshot) -> NextState | None:
            model, desired = self.schemas.model(kind), snap.desired or {}
            members = None
            if kind is Kind.GROUP:
                listed = desired.get("members") or ()
                members = apply_member_operations(listed, body.get("Operations"))
            try:
                if members is not None:  # Okta's membership changes, at any group size
                    current = model.model_validate(desired | {"members": members})
                else:
                    current = model.model_validate(desired)
                    operations.patch(current)
            except ValidationError as exc:
                raise from_validation(exc, "PATCH leaves an invalid resource") from None
            except SCIMException as exc:
                if isinstance(exc.__cause__, ValidationError):  # a value that does not fit
                    raise from_validation(exc.__cause__, "invalid PATCH value") from None
                raise
            password = self._take_password(current)
            doc = self._next(kind, snap, current)
            self.limits.check_document(doc)
            if password is None and _content(doc) == _content(snap.desired):
                return None  # nothing changes: no new version, no legacy call
            return NextState(doc, password)

        return self._write(kind, rid, if_match, change, respond_async, backlog)

    def delete(
        self, kind: Kind, rid: str, if_match: Preconditions, *, respond_async: bool = False
    ) -> Written:
        """DELETE: reads answer 404 at once; the legacy record goes in the background."""
        backlog = self._admit(kind)
        return self._write(
            kind, rid, if_match, lambda snap: NextState(None, None), respond_async, backlog
        )

    def _update_existing(
        self, kind: Kind, body: Mapping[str, Any], user_name: str, respond_async: bool
    ) -> Written:
        existing = self.store.find_unique(kind, "userName", user_name)
        if existing is None:  # deleted meanwhile: a plain create is right after all
            return self.create(kind, body, respond_async=respond_async)
        written = self.replace(kind, existing, body, None, respond_async=respond_async)
        return replace(written, existing=True)

    def _write(
        self,
        kind: Kind,
        rid: str,
        if_match: Preconditions,
        change: Callable[[Snapshot], NextState | None],
        respond_async: bool,
        backlog: int,
    ) -> Written:
        """Read, change, store with the version read; read again if another write came first."""
        for _ in range(_ATTEMPTS):
            snap = self._current(kind, rid, if_match)
            new = change(snap)
            if new is None:
                return Written(rid, snap.desired, snap.version, confirmed=False)
            document = new.document
            if document is not None:
                document = self._known_members(kind, document, previous=snap.desired)
            # A deleted user leaves every group in the same atomic step.
            leaving = self._groups_leaving(rid) if kind is Kind.USER and document is None else []
            try:
                version = self._store(
                    kind,
                    rid,
                    document,
                    previous=snap.desired,
                    expected=snap.version,
                    password=new.password,
                    also=leaving,
                )
            except VersionConflict:
                continue
            return self._confirm(kind, rid, document, version, respond_async, backlog)
        raise ScimError(409, f"{kind.resource_type} {rid} is being changed concurrently; retry")

    # Steps --------------------------------------------------------------------------------------
    def _admit(self, kind: Kind) -> int:
        """Backpressure: past the backlog limit, refuse the write before any work is done.

        The exact admission is the store's write script (:class:`BacklogFull`); this early
        refusal spares an overloaded connector the validation. Returns the backlog, which the
        confirmation wait reuses.
        """
        backlog = self.store.backlog()
        if backlog >= self.max_backlog:
            raise self._backlog_full(kind, backlog)
        return backlog

    def _backlog_full(self, kind: Kind, backlog: int) -> ScimError:
        retry_after = max(1, min(300, int(self.backlog.drain_time_s(backlog)) or 30))
        return ScimError(
            503,
            f"the connector has {backlog} unfinished changes for the legacy application "
            f"(limit {self.max_backlog}); this {kind.resource_type} change was not accepted, "
            f"retry in {retry_after} s",
            Retry_After=str(retry_after),
        )

    def _validate(self, kind: Kind, body: Mapping[str, Any], context: Context) -> Resource[Any]:
        try:
            return self.schemas.model(kind).model_validate(body, scim_ctx=context)
        except ValidationError as exc:
            raise from_validation(exc, f"invalid {kind.resource_type}") from None

    def _take_password(self, model: Resource[Any]) -> str | None:
        password = getattr(model, "password", None)
        if password is None:
            return None
        model.password = None  # type: ignore[attr-defined]
        return str(password)

    def _current(self, kind: Kind, rid: str, if_match: Preconditions) -> Snapshot:
        snap = self.store.snapshot(kind, rid)
        if not snap.exists or snap.deleted or snap.desired is None:
            raise NotFoundException(detail=f"{kind.resource_type} {rid} not found")
        if if_match is not None and "*" not in if_match:
            current = ETag.loads(snap.desired["meta"]["version"])
            # Weak comparison (RFC 7232 §2.3.2): versions are weak ETags, the opaque values match.
            if current not in if_match:
                asked = ", ".join(tag.dumps() if isinstance(tag, ETag) else tag for tag in if_match)
                raise PreconditionFailedException(
                    detail=f"{kind.resource_type} {rid} is at version {current.dumps()}, "
                    f"not {asked or 'a blank If-Match'}"
                )
        return snap

    @staticmethod
    def _next(kind: Kind, snap: Snapshot, model: Resource[Any]) -> dict[str, Any]:
        created = (snap.desired or {}).get("meta", {}).get("created") or now_iso()
        return canonical(
            kind, model, snap.id, created=created, last_modified=now_iso(), version=snap.version + 1
        )

    def _known_members(
        self, kind: Kind, doc: dict[str, Any], *, previous: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        """A group's members must be users scim-bridge knows.

        A member the group already had and that no longer exists is gone (its user was deleted):
        it is dropped rather than blocking every later change of the group. A new unknown member
        is the client's error.
        """
        if kind is not Kind.GROUP:
            return doc
        values = [m.get("value") for m in doc.get("members") or ()]
        if not values:
            return doc
        had = set(member_ids(previous))
        gone = set()
        for value, raw in zip(values, self.store.get_many_raw(Kind.USER, values), strict=True):
            if raw is not None:
                continue
            if value not in had:
                raise ScimError(400, f"member {value!r} is not a known user", "invalidValue")
            gone.add(value)
        if not gone:
            return doc
        return doc | {"members": [m for m in doc["members"] if m.get("value") not in gone]}

    def _groups_leaving(self, user_id: str) -> list[DesiredWrite]:
        """The next desired state of every group that lists ``user_id``, without it."""
        writes = []
        for group_id in sorted(self.store.groups_of(user_id)):
            snap = self.store.snapshot(Kind.GROUP, group_id)
            if not snap.exists or snap.deleted or snap.desired is None:
                continue
            doc = dict(snap.desired)
            doc["members"] = [m for m in doc.get("members") or () if m.get("value") != user_id]
            doc["meta"] = dict(doc.get("meta") or {}) | {
                "lastModified": now_iso(),
                "version": f'W/"{snap.version + 1}"',
            }
            writes.append(
                DesiredWrite(
                    Kind.GROUP,
                    group_id,
                    doc,
                    snap.desired,
                    snap.version,
                    time.time(),
                    v1_doc=SCIM_1.render(Kind.GROUP, doc),
                )
            )
        return writes

    def _store(
        self,
        kind: Kind,
        rid: str,
        doc: dict[str, Any] | None,
        *,
        previous: Mapping[str, Any] | None,
        expected: int,
        password: str | None,
        also: Sequence[DesiredWrite] = (),
    ) -> int:
        token = None
        if password is not None:
            if self.vault is None:
                log.info(
                    "password of %s %s ignored: passwords are not accepted", kind.resource_type, rid
                )
            else:
                token = self.vault.seal(password)
        check_before_storing(f"this {kind.resource_type} change")
        write = DesiredWrite(
            kind,
            rid,
            doc,
            previous,
            expected,
            time.time(),
            password_token=token,
            v1_doc=SCIM_1.render(kind, doc) if doc is not None else None,
            request_id=logs.current_request_id(),
        )
        # Kept with the change, so a task the sweeper publishes again still names its request.
        also = [replace(other, request_id=write.request_id) for other in also]
        try:
            version = self.store.write_many(
                [write, *also], replicated=True, max_backlog=self.max_backlog
            )
        except BacklogFull as full:
            raise self._backlog_full(kind, full.backlog) from None
        except UniquenessConflict as conflict:
            value = (doc or {}).get(conflict.attribute)
            taken = (
                f"{conflict.attribute} {value!r} is already used by another {kind.resource_type}"
            )
            raise UniquenessException(detail=taken) from None
        except ReplicationShortfall as short:
            # Stored on the primary and dirty: applied if the primary lives, and a retry of the
            # same request converges either way (docs/architecture.md, "Redis failover").
            self._publish_all(kind, rid, also)
            log.warning(
                "%s %s v%s: only %s of %s Redis replicas confirmed it within %g s; answered 503",
                kind.resource_type,
                rid,
                short.version,
                short.acks,
                short.wanted,
                short.timeout_s,
            )
            raise ScimError(
                503,
                f"the {kind.resource_type} change was stored, but only {short.acks} of "
                f"{short.wanted} Redis replicas confirmed it within {short.timeout_s:g} s, so a "
                "failover could still lose it; retry the request",
                Retry_After="1",
            ) from None
        self._publish_all(kind, rid, also)
        return version

    def _publish_all(self, kind: Kind, rid: str, also: Sequence[DesiredWrite]) -> None:
        self._publish(kind, rid)
        for other in also:
            self._publish(other.kind, other.id)

    def _publish(self, kind: Kind, rid: str) -> None:
        try:
            self.publish(kind, rid)
        except Exception:
            # The change is stored and marked dirty: the sweeper publishes it later.
            log.warning(
                "could not publish the task of %s %s; the sweeper will",
                kind.resource_type,
                rid,
                exc_info=True,
            )

    def _confirm(
        self,
        kind: Kind,
        rid: str,
        doc: dict[str, Any] | None,
        version: int,
        respond_async: bool,
        backlog: int,
    ) -> Written:
        """Wait for the legacy application's answer while one can still come in time.

        ``backlog`` is the one read on admission (this change adds one resource at most).
        """
        if respond_async:
            return Written(rid, doc, version, confirmed=False, accepted_async=True)
        outcome: ChangeOutcome | None = None
        # Never past the request's own deadline: the change is stored, the answer says pending.
        wait_s = remaining(self.confirm_wait_s)
        if self.backlog.can_confirm_within(wait_s, backlog + 1):
            try:
                outcome = self.store.wait_outcome(kind, rid, version, wait_s)
            except redis.RedisError as exc:
                # The change is stored (and replicated, when replicas are required): a lost
                # wait only means its outcome is not known yet.
                log.warning("waiting for %s %s v%s: %s", kind.resource_type, rid, version, exc)
        if outcome is not None and outcome.status is OutcomeStatus.FAILED:
            refusal = f"the legacy application refused {kind.resource_type} {rid}: {outcome.error}"
            # The header tells a refusal by the legacy application from one by the connector.
            if outcome.scim_type == "uniqueness":
                raise ScimError(409, refusal, "uniqueness", X_SCIM_Bridge_Sync="failed")
            raise ScimError(400, refusal, "invalidValue", X_SCIM_Bridge_Sync="failed")
        return Written(rid, doc, version, confirmed=outcome is not None)
