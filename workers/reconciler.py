"""Bring one resource of the legacy application to its desired state.

See docs/architecture.md, "The write path".

Plain code, no Celery: the task in :mod:`scim_bridge.workers.tasks` only calls
:meth:`Reconciler.reconcile` and turns :class:`RetryLater` into a Celery retry. Under the
per-resource lock the reconciler reads desired and applied state, lets
:func:`scim_bridge.workers.decisions.decide` choose the operations (create, update, deactivate,
reactivate, password change, member add/remove, delete), executes them under one deadline, and
records the applied state. It always applies the *latest* desired state, so duplicated, reordered or
superseded tasks are harmless and ten quick updates cost one legacy call.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, replace
from typing import Any

from scim_bridge.adapters.errors import ConflictError, PermanentError, TransientError
from scim_bridge.adapters.port import Deadline, LegacyAdapter
from scim_bridge.store import (
    ChangeOutcome,
    Kind,
    OutcomeStatus,
    Snapshot,
    Status,
    Store,
    UniquenessConflict,
    VersionConflict,
)
from scim_bridge.store.model import member_ids
from scim_bridge.workers.decisions import QUESTIONS, Action, Operation, Situation, decide
from scim_bridge.workers.guard import CircuitOpen, LegacyBusy
from scim_bridge.workers.metrics import metrics
from scim_bridge.workers.passwords import PasswordVault, hash_password, password_matches

log = logging.getLogger("scim_bridge.reconcile")

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
    """What one reconciliation did: applied, noop, locked, failed, gone or requeue."""

    status: Status
    operations: tuple[str, ...] = ()


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
            return Result(Status.LOCKED)
        started = time.monotonic()
        operations: list[str] = []
        status, seen = Status.REQUEUE, 0
        try:
            if not snap.exists:
                return Result(Status.GONE)
            if starts > self.max_starts:
                # Begun this many times and never finished: each start lost its worker.
                reason = (
                    f"poison change: started {starts - 1} times without finishing "
                    "(the worker was lost each time)"
                )
                if self._fail(snap, PermanentError(reason), operations, unknown=True):
                    return Result(Status.REQUEUE, tuple(operations))
                return Result(Status.FAILED, tuple(operations))
            for _ in range(_MAX_PASSES):
                seen = snap.version
                status = self._pass(snap, operations)
                if status is not Status.MOVED:
                    break
                snap = self.store.snapshot(kind, rid)
                if not snap.exists:
                    return Result(Status.GONE, tuple(operations))
        finally:
            version_now = self.store.release(kind, rid, token, time.monotonic() - started)
        # A refused change rolled the read model back, which is one version more.
        settled_version = seen + 1 if status is Status.FAILED else seen
        if status in (Status.MOVED, Status.REQUEUE) or version_now > settled_version:
            return Result(Status.REQUEUE, tuple(operations))
        return Result(status, tuple(operations))

    # One pass -----------------------------------------------------------------------------------
    def _pass(self, snap: Snapshot, operations: list[str]) -> Status:
        # Each legacy call gets the adapter deadline; the pass as a whole (a full push after an
        # unknown outcome makes several calls) stays inside the task's time limit.
        deadline = Deadline.after(self.pass_budget_s)
        done_before = len(operations)
        try:
            key, password_hash = self._apply(snap, deadline, operations)
        except (PermanentError, ConflictError) as exc:
            # Calls of this pass that succeeded before the refusal changed the legacy state.
            unknown = snap.in_doubt or len(operations) > done_before
            if unknown and snap.desired == snap.applied and not snap.deleted:
                # Already pushing the restored state, and refused: do not loop on it. The
                # resource stays in doubt, so its next change is pushed in full.
                self._fail(snap, exc, operations, unknown=False)
                self.store.mark_doubt(snap.kind, snap.id)
                return Status.FAILED
            again = self._fail(snap, exc, operations, unknown=unknown)
            return Status.REQUEUE if again else Status.FAILED
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
        if settled is Status.MOVED:
            return Status.MOVED
        return Status.APPLIED if operations else Status.NOOP

    def _apply(
        self, snap: Snapshot, deadline: Deadline, operations: list[str]
    ) -> tuple[str | None, str | None]:
        """Decide, ask the legacy application what the decision needs to know, execute.

        Returns the legacy key and the hash of the password pushed, if one was.
        """
        situation = Situation.of(snap, **self._members(snap))
        password: str | None = None
        while True:
            decided = decide(situation)
            question = decided[-1] if decided and decided[-1].action in QUESTIONS else None
            opens = situation.password_pending and not situation.deleted and password is None
            if question is None and opens:
                # Opened once the search for a create in doubt is done.
                password = self._pending_password(snap)
                unchanged = password_matches(password, snap.password_hash)
                situation = replace(situation, password_unchanged=unchanged)
                continue
            for operation in decided:
                if operation is question:
                    break
                key = self._execute(situation, operation, password, deadline)
                situation = replace(situation, legacy_key=key)
                operations.append(operation.action)
            if question is None:
                break
            situation = self._ask(situation, question, deadline)
        pushed = any(op.action in (Action.CREATE, Action.PASSWORD) for op in decided)
        password_hash = hash_password(password) if pushed and password is not None else None
        return situation.legacy_key, password_hash

    def _pending_password(self, snap: Snapshot) -> str:
        assert snap.password_token is not None
        if self.vault is None:
            raise PermanentError("a password is pending but no password key is configured")
        return self.vault.open(snap.password_token)

    def _ask(self, situation: Situation, question: Operation, deadline: Deadline) -> Situation:
        """The situation with the legacy application's answer to ``question``."""
        adapter, within = self.adapter, deadline.within(self.deadline_s)
        if question.action is Action.FIND_CREATED:
            find = (
                adapter.find_created_user
                if situation.kind is Kind.USER
                else adapter.find_created_group
            )
            key = find(situation.id, dict(question.document or {}), deadline=within)
            return replace(situation, legacy_key=key, searched=True)
        record = adapter.get_group(situation.legacy_key or "", deadline=within)
        held = list(record.document.get("members") or []) if record is not None else []
        return replace(situation, legacy_members=tuple(held))

    def _execute(
        self,
        situation: Situation,
        operation: Operation,
        password: str | None,
        deadline: Deadline,
    ) -> str | None:
        """Make one legacy call; the legacy key afterwards."""
        adapter, key, action = self.adapter, situation.legacy_key, operation.action
        within = deadline.within(self.deadline_s)
        document, previous = dict(operation.document or {}), dict(operation.previous or {})
        user = situation.kind is Kind.USER
        if action is Action.WAIT:
            raise TransientError(
                f"member {operation.members[0]} is not created in the legacy application yet"
            )
        if action is Action.CREATE and user:
            return adapter.create_user(situation.id, document, password=password, deadline=within)
        if action is Action.CREATE:
            return adapter.create_group(situation.id, document, deadline=within)
        assert key is not None, f"{action} needs the legacy key"  # decide() creates first
        if action is Action.DELETE:
            (adapter.delete_user if user else adapter.delete_group)(key, deadline=within)
        elif action is Action.UPDATE:
            update = adapter.update_user if user else adapter.update_group
            update(key, document, previous=previous, deadline=within)
        elif action is Action.DEACTIVATE:
            adapter.deactivate_user(key, deadline=within)
        elif action is Action.REACTIVATE:
            adapter.reactivate_user(key, deadline=within)
        elif action is Action.PASSWORD:
            adapter.set_password(key, password or "", deadline=within)
        elif action is Action.ADD_MEMBERS:
            adapter.add_members(key, list(operation.members), deadline=within)
        elif action is Action.REMOVE_MEMBERS:
            adapter.remove_members(key, list(operation.members), deadline=within)
        return key

    def _members(self, snap: Snapshot) -> dict[str, Any]:
        """What the store knows of a group's members: legacy keys, and who is not created yet."""
        if snap.kind is not Kind.GROUP or snap.deleted:
            return {}
        keys, not_created = {}, set()
        for user_id in dict.fromkeys(member_ids(snap.desired) + member_ids(snap.applied)):
            user = self.store.snapshot(Kind.USER, user_id)
            if user.legacy_key is not None:
                keys[user_id] = user.legacy_key
            elif user.exists and not user.deleted:
                not_created.add(user_id)
        return {"member_keys": keys, "members_not_created": frozenset(not_created)}

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
            Action.DELETE
            if snap.deleted
            else (Action.CREATE if snap.legacy_key is None else Action.UPDATE)
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
