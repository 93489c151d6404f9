"""Bring one resource of the legacy application to its desired state.

See docs/architecture.md, "The write path".

Plain code, no Celery: the task in :mod:`scim_bridge.workers.tasks` only calls
:meth:`Reconciler.reconcile` and turns :class:`RetryLater` into a Celery retry. Under the
per-resource lock the reconciler
reads desired and applied state, derives the operations (create, update, deactivate, reactivate,
password change, member add/remove, delete), calls the adapter under one deadline, and records
the applied state. It always applies the *latest* desired state, so duplicated, reordered or
superseded tasks are harmless and ten quick updates cost one legacy call.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from scim_bridge.adapters.errors import ConflictError, PermanentError, TransientError
from scim_bridge.adapters.port import Deadline, LegacyAdapter
from scim_bridge.store import (
    ChangeOutcome,
    Kind,
    OutcomeStatus,
    Snapshot,
    Store,
    UniquenessConflict,
    VersionConflict,
)
from scim_bridge.store.model import member_ids
from scim_bridge.workers.guard import CircuitOpen, LegacyBusy
from scim_bridge.workers.metrics import metrics
from scim_bridge.workers.passwords import PasswordVault, hash_password, password_matches

log = logging.getLogger("scim_bridge.reconcile")

# Attributes that are scim-bridge's bookkeeping, not part of what the legacy application holds.
_NOT_PROFILE = frozenset({"meta", "groups", "password", "members", "active"})
_MAX_PASSES = 5


class RetryLater(Exception):
    """The change could not be applied now; the task retries it with backoff.

    ``counts`` is False when the legacy application was not even tried (breaker open, global
    cap full): such retries do not bring the change closer to the dead-letter store.
    ``after_s`` is the earliest useful retry, when known.
    """

    def __init__(self, reason: str, *, counts: bool = True, after_s: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.counts = counts
        self.after_s = after_s


@dataclass(frozen=True)
class Result:
    """What one reconciliation did: ``applied``, ``noop``, ``locked``, ``failed``, ``gone``."""

    status: str
    operations: tuple[str, ...] = ()


def profile(doc: Mapping[str, Any] | None) -> dict[str, Any]:
    """The part of a resource the legacy application stores as its profile."""
    return {k: v for k, v in (doc or {}).items() if k not in _NOT_PROFILE}


class Reconciler:
    """Applies desired state through an adapter. One instance per worker process."""

    def __init__(
        self,
        store: Store,
        adapter: LegacyAdapter,
        *,
        vault: PasswordVault | None,
        deadline_s: float,
        lock_ttl_s: float,
        max_starts: int = 5,
        pass_budget_s: float | None = None,
    ) -> None:
        self.store = store
        self.adapter = adapter
        self.vault = vault
        self.deadline_s = deadline_s
        self.lock_ttl_s = lock_ttl_s
        self.max_starts = max_starts
        self.pass_budget_s = pass_budget_s or deadline_s

    def reconcile(self, kind: Kind, rid: str) -> Result:
        """Reconcile one resource; raises :class:`RetryLater` on transient trouble.

        ``requeue`` in the result asks the caller to publish another task: desired state moved
        after the last pass, and the task of that write may have found the lock taken.
        """
        token = uuid.uuid4().hex
        acquired, starts, snap = self.store.claim(kind, rid, token, self.lock_ttl_s)
        if not acquired:
            # Another task holds the lock; it re-reads desired state after it lets go.
            return Result("locked")
        started = time.monotonic()
        operations: list[str] = []
        status, seen = "requeue", 0
        try:
            if not snap.exists:
                return Result("gone")
            if starts > self.max_starts:
                # Begun this many times and never finished: each start lost its worker.
                reason = (
                    f"poison change: started {starts - 1} times without finishing "
                    "(the worker was lost each time)"
                )
                if self._fail(snap, PermanentError(reason), operations, unknown=True):
                    return Result("requeue", tuple(operations))
                return Result("failed", tuple(operations))
            for _ in range(_MAX_PASSES):
                seen = snap.version
                status = self._pass(snap, operations)
                if status != "moved":
                    break
                snap = self.store.snapshot(kind, rid)
                if not snap.exists:
                    return Result("gone", tuple(operations))
        finally:
            version_now = self.store.release(kind, rid, token, time.monotonic() - started)
        # A refused change rolled the read model back, which is one version more.
        settled_version = seen + 1 if status == "failed" else seen
        if status in ("moved", "requeue") or version_now > settled_version:
            return Result("requeue", tuple(operations))
        return Result(status, tuple(operations))

    # One pass -----------------------------------------------------------------------------------
    def _pass(self, snap: Snapshot, operations: list[str]) -> str:
        # Each legacy call gets the adapter deadline; the pass as a whole (a full push after an
        # unknown outcome makes several calls) stays inside the task's time limit.
        deadline = Deadline.after(self.pass_budget_s)
        password_hash: str | None = None
        done_before = len(operations)
        try:
            if snap.kind is Kind.USER:
                key, password_hash = self._user(snap, deadline, operations)
            else:
                key = self._group(snap, deadline, operations)
        except (PermanentError, ConflictError) as exc:
            # Calls of this pass that succeeded before the refusal changed the legacy state.
            unknown = snap.in_doubt or len(operations) > done_before
            if unknown and snap.desired == snap.applied and not snap.deleted:
                # Already pushing the restored state, and refused: do not loop on it. The
                # resource stays in doubt, so its next change is pushed in full.
                self._fail(snap, exc, operations, unknown=False)
                self.store.mark_doubt(snap.kind, snap.id)
                return "failed"
            return "requeue" if self._fail(snap, exc, operations, unknown=unknown) else "failed"
        except (CircuitOpen, LegacyBusy) as exc:
            if not snap.in_doubt and len(operations) == done_before:
                # Nothing reached the legacy application: its state is known, no full push.
                self.store.clear_doubt(snap.kind, snap.id)
            after = exc.retry_in_s if isinstance(exc, CircuitOpen) else None
            raise RetryLater(exc.message, counts=False, after_s=after) from exc
        except TransientError as exc:
            self.store.record_error(snap.kind, snap.id, exc.message)
            raise RetryLater(exc.message) from exc
        applied = None if snap.deleted else snap.desired
        settled = self.store.settle(
            snap.kind,
            snap.id,
            version=snap.version,
            applied=applied,
            legacy_key=key,
            password_hash=password_hash,
        )
        self.store.publish_outcomes(
            snap.kind,
            snap.id,
            range(snap.applied_version + 1, snap.version + 1),
            ChangeOutcome(OutcomeStatus.APPLIED, snap.version),
        )
        if settled == "moved":
            return "moved"
        return "applied" if operations else "noop"

    def _user(
        self, snap: Snapshot, deadline: Deadline, operations: list[str]
    ) -> tuple[str | None, str | None]:
        adapter, key = self.adapter, snap.legacy_key
        if key is None and snap.in_doubt:
            # An earlier create may have landed without its answer being recorded.
            # The desired document lets an application without a SCIM id column find the
            # record by its unique login.
            key = adapter.find_created_user(
                snap.id,
                profile(snap.desired or snap.applied or {}),
                deadline=deadline.within(self.deadline_s),
            )
        if snap.deleted:
            if key is not None:
                adapter.delete_user(key, deadline=deadline.within(self.deadline_s))
                operations.append("delete")
            return key, None
        desired = snap.desired or {}
        password = self._pending_password(snap)
        if key is None:
            key = adapter.create_user(
                snap.id,
                profile(desired) | {"active": desired.get("active", True)},
                password=password,
                deadline=deadline.within(self.deadline_s),
            )
            operations.append("create")
            return key, hash_password(password) if password is not None else None
        applied = snap.applied or {}
        was_active, is_active = applied.get("active", True), desired.get("active", True)
        # In doubt, what the legacy application holds is unknown: push every part of the state
        # (each call is idempotent) instead of the difference from what was recorded.
        in_doubt = snap.in_doubt or snap.applied is None
        # Deactivation goes first and reactivation last, so a refused profile change never
        # leaves someone Okta turned off able to sign in.
        if not is_active and (was_active or in_doubt):
            adapter.deactivate_user(key, deadline=deadline.within(self.deadline_s))
            operations.append("deactivate")
        if in_doubt or profile(desired) != profile(applied):
            adapter.update_user(
                key,
                profile(desired) | {"active": is_active},
                previous=profile(applied) | {"active": was_active},
                deadline=deadline.within(self.deadline_s),
            )
            operations.append("update")
        if is_active and (not was_active or in_doubt):
            adapter.reactivate_user(key, deadline=deadline.within(self.deadline_s))
            operations.append("reactivate")
        password_hash = None
        if password is not None and (
            in_doubt or not password_matches(password, snap.password_hash)
        ):
            adapter.set_password(key, password, deadline=deadline.within(self.deadline_s))
            operations.append("password")
            password_hash = hash_password(password)
        return key, password_hash

    def _pending_password(self, snap: Snapshot) -> str | None:
        if snap.password_token is None:
            return None
        if self.vault is None:
            raise PermanentError("a password is pending but no password key is configured")
        return self.vault.open(snap.password_token)

    def _group(self, snap: Snapshot, deadline: Deadline, operations: list[str]) -> str | None:
        adapter, key = self.adapter, snap.legacy_key
        if key is None and snap.in_doubt:
            key = adapter.find_created_group(
                snap.id,
                profile(snap.desired or snap.applied or {}),
                deadline=deadline.within(self.deadline_s),
            )
        if snap.deleted:
            if key is not None:
                adapter.delete_group(key, deadline=deadline.within(self.deadline_s))
                operations.append("delete")
            return key
        desired, applied = snap.desired or {}, snap.applied or {}
        wanted = member_ids(desired)
        if key is not None and (snap.in_doubt or snap.applied is None):
            # What the legacy application holds is unknown: read its members, push everything.
            wanted_keys = self._member_keys(wanted, require=True)
            adapter.update_group(
                key,
                profile(desired),
                previous=profile(applied),
                deadline=deadline.within(self.deadline_s),
            )
            operations.append("update")
            record = adapter.get_group(key, deadline=deadline.within(self.deadline_s))
            had_keys = list(record.document.get("members") or []) if record is not None else []
            to_add = [k for k in wanted_keys if k not in set(had_keys)]
            to_remove = [k for k in had_keys if k not in set(wanted_keys)]
        else:
            had = member_ids(applied) if key is not None else []
            # Members still pending creation make the group wait (a transient error).
            to_add = self._member_keys([m for m in wanted if m not in set(had)], require=True)
            to_remove = self._member_keys([m for m in had if m not in set(wanted)], require=False)
            if key is None:
                key = adapter.create_group(
                    snap.id, profile(desired), deadline=deadline.within(self.deadline_s)
                )
                operations.append("create")
            elif profile(desired) != profile(applied):
                adapter.update_group(
                    key,
                    profile(desired),
                    previous=profile(applied),
                    deadline=deadline.within(self.deadline_s),
                )
                operations.append("update")
        if to_add:
            adapter.add_members(key, to_add, deadline=deadline.within(self.deadline_s))
            operations.append("add_members")
        if to_remove:
            adapter.remove_members(key, to_remove, deadline=deadline.within(self.deadline_s))
            operations.append("remove_members")
        return key

    def _member_keys(self, user_ids: Sequence[str], *, require: bool) -> list[str]:
        """Legacy keys of users; a member still pending creation makes the group wait."""
        keys = []
        for user_id in user_ids:
            user = self.store.snapshot(Kind.USER, user_id)
            if user.legacy_key is not None:
                keys.append(user.legacy_key)
            elif require and user.exists and not user.deleted:
                raise TransientError(
                    f"member {user_id} is not created in the legacy application yet"
                )
        return keys

    def give_up(self, kind: Kind, rid: str, reason: str) -> None:
        """Dead-letter a change that kept failing transiently, as if it had been refused."""
        token = uuid.uuid4().hex
        if not self.store.acquire_lock(kind, rid, token, self.lock_ttl_s):
            return  # a task is working on it right now; it decides
        try:
            snap = self.store.snapshot(kind, rid)
            if snap.exists:
                self._fail(snap, PermanentError(reason), [], unknown=True)
        finally:
            self.store.release_lock(kind, rid, token)

    # Failure ------------------------------------------------------------------------------------
    def _fail(
        self, snap: Snapshot, exc: PermanentError, operations: list[str], *, unknown: bool
    ) -> bool:
        """Dead-letter the change and roll the read model back to the applied state.

        With ``unknown``, some calls may have changed the legacy application (they succeeded
        before the refusal, or their outcome was never learned): the restored state is then
        written as a new change to push in full, and True asks for a reconcile task. A create
        that may have landed becomes a delete, so no record is left behind unknown to Okta.
        """
        operation = (
            "delete" if snap.deleted else ("create" if snap.legacy_key is None else "update")
        )
        log.warning(
            "legacy application refused %s of %s %s: %s",
            operation,
            snap.kind.resource_type,
            snap.id,
            exc.message,
        )
        self.store.dead_letter(
            snap.kind,
            snap.id,
            {
                "kind": snap.kind.resource_type,
                "id": snap.id,
                "version": snap.version,
                "operation": operation,
                "error": exc.message,
                "conflict": isinstance(exc, ConflictError),
                "at": time.time(),
                "desired": snap.desired,
            },
        )
        self.store.record_error(snap.kind, snap.id, exc.message)
        metrics().dead_lettered.labels(snap.kind.resource_type).inc()
        again = False
        try:
            if snap.applied is None and snap.legacy_key is None:
                if unknown:
                    self.store.write_next(snap, None)  # reads 404; the cleanup is reconciled
                    again = True
                else:
                    self.store.purge(snap.kind, snap.id, snap)  # a refused create disappears
            else:
                self.store.write_next(snap, snap.applied or {}, rollback=not unknown)
                again = unknown
        except VersionConflict:
            pass  # a newer desired state arrived; it is reconciled on its own
        except UniquenessConflict as conflict:
            # Only after a refused delete: another resource took the name meanwhile.
            log.error(
                "cannot restore %s %s: %s is taken", snap.kind.resource_type, snap.id, conflict
            )
        self.store.publish_outcomes(
            snap.kind,
            snap.id,
            range(snap.applied_version + 1, snap.version + 1),
            ChangeOutcome(
                OutcomeStatus.FAILED,
                snap.version,
                exc.message,
                "uniqueness" if isinstance(exc, ConflictError) else None,
            ),
        )
        operations.append(f"failed:{operation}")
        return again
