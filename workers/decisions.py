"""Which legacy calls bring one resource to its desired state: a pure function of what is known.

See docs/architecture.md, "Decisions". :func:`decide` reads a :class:`Situation` (desired and
applied state, doubt, a pending password, the members' legacy keys) and returns the ordered
:class:`Operation` list; the reconciler (:mod:`scim_bridge.workers.reconciler`) only executes
it. Two operations are questions rather than changes (:data:`QUESTIONS`): when the situation
lacks an answer (did a create in doubt land? which members does a group in doubt have?), the
list ends with the question, and the reconciler asks the legacy application, records the answer
in the situation and decides again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from scim_bridge.store.keys import Kind
from scim_bridge.store.model import Snapshot, member_ids

# Attributes that are scim-bridge's bookkeeping, not part of what the legacy application holds.
_NOT_PROFILE = frozenset({"meta", "groups", "password", "members", "active"})


class Action(StrEnum):
    """One call of the adapter port (or, for :attr:`WAIT`, the reason not to call it yet)."""

    FIND_CREATED = "find_created"
    """Ask whether a create in doubt landed (``find_created_user``/``find_created_group``)."""
    READ_MEMBERS = "read_members"
    """Ask which members a group in doubt holds (``get_group``)."""
    WAIT = "wait"
    """Members are still pending creation: the group waits (a transient error)."""
    CREATE = "create"
    UPDATE = "update"
    DEACTIVATE = "deactivate"
    REACTIVATE = "reactivate"
    PASSWORD = "password"  # noqa: S105 (an action's name)
    ADD_MEMBERS = "add_members"
    REMOVE_MEMBERS = "remove_members"
    DELETE = "delete"


QUESTIONS = frozenset({Action.FIND_CREATED, Action.READ_MEMBERS})
"""Operations whose answer changes the situation: a decision list ends with at most one."""


@dataclass(frozen=True)
class Operation:
    """One step: the action and what it sends.

    ``document`` and ``previous`` are profiles (create, update, find); ``members`` are legacy
    keys (add/remove members) or, for :attr:`Action.WAIT`, the user ids not created yet. A
    create or password operation takes the pending password, which the reconciler holds.
    """

    action: Action
    document: Mapping[str, Any] | None = None
    previous: Mapping[str, Any] | None = None
    members: tuple[str, ...] = ()


@dataclass(frozen=True)
class Situation:
    """What is known of one resource when its legacy calls are decided."""

    kind: Kind
    id: str
    desired: Mapping[str, Any] | None
    applied: Mapping[str, Any] | None
    deleted: bool = False
    legacy_key: str | None = None
    in_doubt: bool = False
    """A reconciliation began and did not settle: the legacy state is unknown."""
    searched: bool = False
    """The legacy application was asked whether a create in doubt landed (``legacy_key``)."""
    password_pending: bool = False
    password_unchanged: bool = False
    """The pending password is the one last pushed (only checked when nothing is in doubt)."""
    member_keys: Mapping[str, str] = field(default_factory=dict)
    """User id -> legacy key, for the members (desired and applied) that have one."""
    members_not_created: frozenset[str] = frozenset()
    """Members that exist but whose create has not reached the legacy application yet."""
    legacy_members: tuple[str, ...] | None = None
    """Legacy keys of the members the legacy application holds, once read (a group in doubt)."""

    @classmethod
    def of(cls, snap: Snapshot, **known: Any) -> Situation:
        """The situation of a stored resource; ``known`` adds what the store alone cannot say."""
        return cls(
            kind=snap.kind,
            id=snap.id,
            desired=snap.desired,
            applied=snap.applied,
            deleted=snap.deleted,
            legacy_key=snap.legacy_key,
            in_doubt=snap.in_doubt,
            password_pending=snap.password_token is not None,
            **known,
        )


def profile(doc: Mapping[str, Any] | None) -> dict[str, Any]:
    """The part of a resource the legacy application stores as its profile."""
    return {k: v for k, v in (doc or {}).items() if k not in _NOT_PROFILE}


def decide(situation: Situation) -> list[Operation]:
    """The ordered operations that bring the legacy application to the desired state."""
    s = situation
    if s.legacy_key is None and s.in_doubt and not s.searched:
        # An earlier create may have landed without its answer being recorded. The desired
        # document lets an application without a SCIM id column find the record by its login.
        return [Operation(Action.FIND_CREATED, document=profile(s.desired or s.applied))]
    if s.deleted:
        return [Operation(Action.DELETE)] if s.legacy_key is not None else []
    if s.kind is Kind.USER:
        return _user(s)
    return _group(s)


def _user(s: Situation) -> list[Operation]:
    desired = s.desired or {}
    if s.legacy_key is None:
        document = profile(desired) | {"active": desired.get("active", True)}
        return [Operation(Action.CREATE, document=document)]
    applied = s.applied or {}
    was_active, is_active = applied.get("active", True), desired.get("active", True)
    # In doubt, what the legacy application holds is unknown: push every part of the state
    # (each call is idempotent) instead of the difference from what was recorded.
    in_doubt = s.in_doubt or s.applied is None
    operations = []
    # Deactivation goes first and reactivation last, so a refused profile change never leaves
    # someone Okta turned off able to sign in.
    if not is_active and (was_active or in_doubt):
        operations.append(Operation(Action.DEACTIVATE))
    if in_doubt or profile(desired) != profile(applied):
        operations.append(
            Operation(
                Action.UPDATE,
                document=profile(desired) | {"active": is_active},
                previous=profile(applied) | {"active": was_active},
            )
        )
    if is_active and (not was_active or in_doubt):
        operations.append(Operation(Action.REACTIVATE))
    if s.password_pending and (in_doubt or not s.password_unchanged):
        operations.append(Operation(Action.PASSWORD))
    return operations


def _group(s: Situation) -> list[Operation]:
    desired, applied = s.desired or {}, s.applied or {}
    wanted = member_ids(desired)
    operations: list[Operation] = []
    if s.legacy_key is not None and (s.in_doubt or s.applied is None):
        # What the legacy application holds is unknown: push the profile, read its members,
        # then add and remove the difference.
        if s.legacy_members is None:
            waiting = _not_created(s, wanted)
            if waiting:
                return [waiting]
            return [
                Operation(Action.UPDATE, document=profile(desired), previous=profile(applied)),
                Operation(Action.READ_MEMBERS),
            ]
        wanted_keys = _keys(s, wanted)
        to_add = [k for k in wanted_keys if k not in set(s.legacy_members)]
        to_remove = [k for k in s.legacy_members if k not in set(wanted_keys)]
    else:
        had = member_ids(applied) if s.legacy_key is not None else []
        adding = [m for m in wanted if m not in set(had)]
        waiting = _not_created(s, adding)
        if waiting:
            return [waiting]
        to_add = _keys(s, adding)
        to_remove = _keys(s, [m for m in had if m not in set(wanted)])
        if s.legacy_key is None:
            operations.append(Operation(Action.CREATE, document=profile(desired)))
        elif profile(desired) != profile(applied):
            operations.append(
                Operation(Action.UPDATE, document=profile(desired), previous=profile(applied))
            )
    if to_add:
        operations.append(Operation(Action.ADD_MEMBERS, members=tuple(to_add)))
    if to_remove:
        operations.append(Operation(Action.REMOVE_MEMBERS, members=tuple(to_remove)))
    return operations


def _not_created(s: Situation, user_ids: Sequence[str]) -> Operation | None:
    """A group waits while members it must add are still pending creation."""
    waiting = tuple(u for u in user_ids if u in s.members_not_created)
    return Operation(Action.WAIT, members=waiting) if waiting else None


def _keys(s: Situation, user_ids: Sequence[str]) -> list[str]:
    """Legacy keys of the users that have one (a member deleted meanwhile has none)."""
    return [s.member_keys[u] for u in user_ids if u in s.member_keys]
