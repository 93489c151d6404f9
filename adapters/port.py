"""The port every legacy application implements: one class, a handful of methods.

Rules (each proven by :mod:`scim_bridge.adapters.contract`, which every adapter's tests subclass):

1. **Synchronous, bounded.** Every method takes a keyword-only ``deadline`` and never outlives
   it: pass :meth:`Deadline.remaining` to every socket, driver or HTTP call you make, and raise
   :class:`~scim_bridge.adapters.errors.TransientError` when it runs out.
2. **Idempotent.** scim-bridge delivers at least once. ``create_user`` called twice with one
   ``resource_id`` leaves one record and returns the same key; deleting or removing something
   already gone succeeds; adding a member who is already there changes nothing. When a call's
   outcome is unknown (it timed out, its worker died), scim-bridge asks ``find_user`` /
   ``find_group`` and then pushes the whole desired state, so no call has to be exactly-once.
3. **Whole resources, never PATCH operations.** Methods receive the resource as canonical
   SCIM 2.0 JSON (``password`` removed, ``meta`` and ``groups`` left out) and, for updates, the
   state the legacy application last confirmed, so an adapter can make the fewest calls.
4. **Only the port's errors.** Raise :class:`~scim_bridge.adapters.errors.TransientError`,
   :class:`~scim_bridge.adapters.errors.PermanentError` or
   :class:`~scim_bridge.adapters.errors.ConflictError`; any other exception is treated as
   transient and logged as an adapter bug.
5. **Declared capabilities.** :attr:`LegacyAdapter.capabilities` says which Okta provisioning
   functions the application supports; scim-bridge advertises exactly those.
6. **Enumerable.** ``list_users``/``list_groups`` page through every record, for imports and
   for rebuilding the read model. An adapter that can tell what changed since a point in time
   also implements :meth:`LegacyAdapter.changes_since` (delta import); the others inherit the
   default, which says it is not supported.

The legacy key is whatever identifies the record in the legacy application (a primary key, a
login name). scim-bridge stores it and passes it back; the SCIM ``id`` (``resource_id``) is
minted by scim-bridge and is the idempotency key of creates.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from scim_bridge.adapters.errors import TransientError

ScimDocument = Mapping[str, Any]


class Deadline:
    """An absolute point in time (monotonic clock) by which a call must return."""

    __slots__ = ("_at",)

    def __init__(self, at: float) -> None:
        self._at = at

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        """A deadline ``seconds`` from now."""
        return cls(time.monotonic() + seconds)

    def within(self, seconds: float) -> Deadline:
        """A deadline ``seconds`` from now, but never later than this one."""
        return Deadline(min(time.monotonic() + seconds, self._at))

    def remaining(self) -> float:
        """Seconds left, never negative: pass this as the timeout of every I/O call."""
        return max(0.0, self._at - time.monotonic())

    def expired(self) -> bool:
        """Whether the deadline has passed."""
        return time.monotonic() >= self._at

    def check(self, what: str) -> None:
        """Raise :class:`TransientError` if the deadline has passed before ``what``."""
        if self.expired():
            raise TransientError(f"deadline passed before {what}")

    def __repr__(self) -> str:
        return f"Deadline(remaining={self.remaining():.3f}s)"


class Capability(StrEnum):
    """Okta's provisioning functions (``userManagementCapabilities``), the whole set."""

    GROUP_PUSH = "GROUP_PUSH"
    IMPORT_NEW_USERS = "IMPORT_NEW_USERS"
    IMPORT_PROFILE_UPDATES = "IMPORT_PROFILE_UPDATES"
    PUSH_NEW_USERS = "PUSH_NEW_USERS"
    PUSH_PASSWORD_UPDATES = "PUSH_PASSWORD_UPDATES"  # noqa: S105 - a capability name
    PUSH_PENDING_USERS = "PUSH_PENDING_USERS"
    PUSH_PROFILE_UPDATES = "PUSH_PROFILE_UPDATES"
    PUSH_USER_DEACTIVATION = "PUSH_USER_DEACTIVATION"
    REACTIVATE_USERS = "REACTIVATE_USERS"


@dataclass(frozen=True)
class Capabilities:
    """What an adapter can do and store.

    ``user_attributes``/``group_attributes`` list the SCIM attribute paths the legacy
    application keeps (``"name.givenName"``, ``"emails"``); ``None`` means every attribute.
    """

    functions: frozenset[Capability] = field(default_factory=lambda: frozenset(Capability))
    user_attributes: frozenset[str] | None = None
    group_attributes: frozenset[str] | None = None


@dataclass(frozen=True)
class LegacyRecord:
    """One record as the legacy application holds it."""

    key: str
    resource_id: str | None
    document: dict[str, Any]


@dataclass(frozen=True)
class Page:
    """One page of :meth:`LegacyAdapter.list_users` or ``list_groups``.

    ``cursor`` is opaque; ``None`` means this was the last page.
    """

    records: Sequence[LegacyRecord]
    cursor: str | None


@dataclass(frozen=True)
class Changes:
    """One page of :meth:`LegacyAdapter.changes_since`.

    ``users`` and ``groups`` hold the records created or changed since the token given (whole
    records, as ``get_user``/``get_group`` return them). ``token`` is opaque and is what the next
    call passes; ``more`` says another page is ready now. Records that disappeared are not
    reported here: the full pass finds them.
    """

    users: Sequence[LegacyRecord]
    groups: Sequence[LegacyRecord]
    token: str
    more: bool = False


class DeltaNotSupported(NotImplementedError):
    """Raised by the default :meth:`LegacyAdapter.changes_since`."""


class LegacyAdapter(ABC):
    """A legacy application, as scim-bridge's workers see it. Read the module docstring."""

    capabilities: Capabilities = Capabilities()

    # Users ------------------------------------------------------------------------------------
    @abstractmethod
    def create_user(
        self, resource_id: str, user: ScimDocument, *, password: str | None, deadline: Deadline
    ) -> str:
        """Create the user (active or not, as ``user["active"]`` says) and return its key.

        If a record for ``resource_id`` already exists (an earlier call whose answer was lost),
        return its key and change nothing else.
        """

    @abstractmethod
    def update_user(
        self, key: str, user: ScimDocument, *, previous: ScimDocument, deadline: Deadline
    ) -> None:
        """Change the profile from ``previous`` (last confirmed) to ``user``; not ``active``."""

    @abstractmethod
    def deactivate_user(self, key: str, *, deadline: Deadline) -> None:
        """Disable the user's access; deactivating an inactive user succeeds."""

    @abstractmethod
    def reactivate_user(self, key: str, *, deadline: Deadline) -> None:
        """Restore the user's access; reactivating an active user succeeds."""

    @abstractmethod
    def set_password(self, key: str, password: str, *, deadline: Deadline) -> None:
        """Set the user's password. Never log ``password``."""

    @abstractmethod
    def delete_user(self, key: str, *, deadline: Deadline) -> None:
        """Remove the user; a missing user is success."""

    @abstractmethod
    def get_user(self, key: str, *, deadline: Deadline) -> LegacyRecord | None:
        """The user as the legacy application holds it, or ``None``."""

    @abstractmethod
    def find_user(self, resource_id: str, *, deadline: Deadline) -> str | None:
        """The key of the user created for ``resource_id``, or ``None``.

        After a call whose outcome is unknown (a time-out, a lost worker), scim-bridge asks this
        to learn whether a create took effect before it deletes or updates.
        """

    def find_created_user(
        self, resource_id: str, user: ScimDocument, *, deadline: Deadline
    ) -> str | None:
        """Like :meth:`find_user`, also given the desired ``user`` (optional to implement).

        The reconciler calls this after an unknown outcome. An application with no place for the
        SCIM id (a mapping without an id column or link table) finds the record by its unique
        login instead; the default asks :meth:`find_user`, so adapters written before this
        method behave as they did.
        """
        return self.find_user(resource_id, deadline=deadline)

    @abstractmethod
    def list_users(self, *, cursor: str | None, limit: int, deadline: Deadline) -> Page:
        """At most ``limit`` users in a stable order, from ``cursor`` (``None``: the first)."""

    # Groups -----------------------------------------------------------------------------------
    @abstractmethod
    def create_group(self, resource_id: str, group: ScimDocument, *, deadline: Deadline) -> str:
        """Create the group without members and return its key (idempotent on ``resource_id``)."""

    @abstractmethod
    def update_group(
        self, key: str, group: ScimDocument, *, previous: ScimDocument, deadline: Deadline
    ) -> None:
        """Change the group's own attributes (displayName, description); not its members."""

    @abstractmethod
    def add_members(self, key: str, member_keys: Sequence[str], *, deadline: Deadline) -> None:
        """Add users (by legacy key) to the group; members already there are left as they are."""

    @abstractmethod
    def remove_members(self, key: str, member_keys: Sequence[str], *, deadline: Deadline) -> None:
        """Remove users (by legacy key) from the group; absent members are ignored."""

    @abstractmethod
    def delete_group(self, key: str, *, deadline: Deadline) -> None:
        """Remove the group; a missing group is success."""

    @abstractmethod
    def get_group(self, key: str, *, deadline: Deadline) -> LegacyRecord | None:
        """The group (``members`` as legacy keys in ``document["members"]``), or ``None``."""

    @abstractmethod
    def find_group(self, resource_id: str, *, deadline: Deadline) -> str | None:
        """The key of the group created for ``resource_id``, or ``None``."""

    def find_created_group(
        self, resource_id: str, group: ScimDocument, *, deadline: Deadline
    ) -> str | None:
        """Like :meth:`find_group`, also given ``group``; see :meth:`find_created_user`."""
        return self.find_group(resource_id, deadline=deadline)

    @abstractmethod
    def list_groups(self, *, cursor: str | None, limit: int, deadline: Deadline) -> Page:
        """One page of at most ``limit`` groups in a stable order."""

    # Delta import (optional) ----------------------------------------------------------------
    def changes_since(self, token: str | None, *, limit: int, deadline: Deadline) -> Changes:
        """Records changed after ``token``, at most ``limit`` of each kind, oldest change first.

        ``token=None`` returns no records and the token for "now", so a delta that starts after a
        full import sees only what changed later. A record changed at the same instant as the
        token may be returned again (harmless: imports compare before they write); none may be
        missed. Adapters that cannot tell leave this default.
        """
        raise DeltaNotSupported(f"{type(self).__name__} has no delta import")

    @property
    def supports_delta(self) -> bool:
        """Whether this adapter implements :meth:`changes_since`."""
        return type(self).changes_since is not LegacyAdapter.changes_since

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections; called when the worker process stops."""
