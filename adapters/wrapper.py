"""A base for adapters that wrap another one and run each of its calls through ``_call``.

The simulator (latency, errors, a concurrency limit) and the workers' guard (global cap, circuit
breaker) are such wrappers: they differ only in what ``_call`` does around the inner call.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Sequence
from typing import TypeVar

from scim_bridge.adapters.port import (
    Changes,
    Deadline,
    LegacyAdapter,
    LegacyRecord,
    Page,
    ScimDocument,
)

_T = TypeVar("_T")


class AdapterWrapper(LegacyAdapter):
    """Forwards every method of the port to ``inner`` through :meth:`_call`."""

    def __init__(self, inner: LegacyAdapter) -> None:
        self.inner = inner
        self.capabilities = inner.capabilities

    @abstractmethod
    def _call(self, what: str, deadline: Deadline, call: Callable[[], _T]) -> _T:
        """Run ``call`` (the inner adapter's method ``what``) with this wrapper's behaviour."""

    # Users ------------------------------------------------------------------------------------
    def create_user(
        self, resource_id: str, user: ScimDocument, *, password: str | None, deadline: Deadline
    ) -> str:
        return self._call(
            "create_user",
            deadline,
            lambda: self.inner.create_user(resource_id, user, password=password, deadline=deadline),
        )

    def update_user(
        self, key: str, user: ScimDocument, *, previous: ScimDocument, deadline: Deadline
    ) -> None:
        self._call(
            "update_user",
            deadline,
            lambda: self.inner.update_user(key, user, previous=previous, deadline=deadline),
        )

    def deactivate_user(self, key: str, *, deadline: Deadline) -> None:
        self._call(
            "deactivate_user", deadline, lambda: self.inner.deactivate_user(key, deadline=deadline)
        )

    def reactivate_user(self, key: str, *, deadline: Deadline) -> None:
        self._call(
            "reactivate_user", deadline, lambda: self.inner.reactivate_user(key, deadline=deadline)
        )

    def set_password(self, key: str, password: str, *, deadline: Deadline) -> None:
        self._call(
            "set_password",
            deadline,
            lambda: self.inner.set_password(key, password, deadline=deadline),
        )

    def delete_user(self, key: str, *, deadline: Deadline) -> None:
        self._call("delete_user", deadline, lambda: self.inner.delete_user(key, deadline=deadline))

    def get_user(self, key: str, *, deadline: Deadline) -> LegacyRecord | None:
        return self._call("get_user", deadline, lambda: self.inner.get_user(key, deadline=deadline))

    def find_user(self, resource_id: str, *, deadline: Deadline) -> str | None:
        return self._call(
            "find_user", deadline, lambda: self.inner.find_user(resource_id, deadline=deadline)
        )

    def find_created_user(
        self, resource_id: str, user: ScimDocument, *, deadline: Deadline
    ) -> str | None:
        return self._call(
            "find_user",
            deadline,
            lambda: self.inner.find_created_user(resource_id, user, deadline=deadline),
        )

    def list_users(self, *, cursor: str | None, limit: int, deadline: Deadline) -> Page:
        return self._call(
            "list_users",
            deadline,
            lambda: self.inner.list_users(cursor=cursor, limit=limit, deadline=deadline),
        )

    # Groups -----------------------------------------------------------------------------------
    def create_group(self, resource_id: str, group: ScimDocument, *, deadline: Deadline) -> str:
        return self._call(
            "create_group",
            deadline,
            lambda: self.inner.create_group(resource_id, group, deadline=deadline),
        )

    def update_group(
        self, key: str, group: ScimDocument, *, previous: ScimDocument, deadline: Deadline
    ) -> None:
        self._call(
            "update_group",
            deadline,
            lambda: self.inner.update_group(key, group, previous=previous, deadline=deadline),
        )

    def add_members(self, key: str, member_keys: Sequence[str], *, deadline: Deadline) -> None:
        self._call(
            "add_members",
            deadline,
            lambda: self.inner.add_members(key, member_keys, deadline=deadline),
        )

    def remove_members(self, key: str, member_keys: Sequence[str], *, deadline: Deadline) -> None:
        self._call(
            "remove_members",
            deadline,
            lambda: self.inner.remove_members(key, member_keys, deadline=deadline),
        )

    def delete_group(self, key: str, *, deadline: Deadline) -> None:
        self._call(
            "delete_group", deadline, lambda: self.inner.delete_group(key, deadline=deadline)
        )

    def get_group(self, key: str, *, deadline: Deadline) -> LegacyRecord | None:
        return self._call(
            "get_group", deadline, lambda: self.inner.get_group(key, deadline=deadline)
        )

    def find_group(self, resource_id: str, *, deadline: Deadline) -> str | None:
        return self._call(
            "find_group", deadline, lambda: self.inner.find_group(resource_id, deadline=deadline)
        )

    def find_created_group(
        self, resource_id: str, group: ScimDocument, *, deadline: Deadline
    ) -> str | None:
        return self._call(
            "find_group",
            deadline,
            lambda: self.inner.find_created_group(resource_id, group, deadline=deadline),
        )

    def list_groups(self, *, cursor: str | None, limit: int, deadline: Deadline) -> Page:
        return self._call(
            "list_groups",
            deadline,
            lambda: self.inner.list_groups(cursor=cursor, limit=limit, deadline=deadline),
        )

    # Delta import -----------------------------------------------------------------------------
    @property
    def supports_delta(self) -> bool:
        return self.inner.supports_delta

    def changes_since(self, token: str | None, *, limit: int, deadline: Deadline) -> Changes:
        return self._call(
            "changes_since",
            deadline,
            lambda: self.inner.changes_since(token, limit=limit, deadline=deadline),
        )

    def close(self) -> None:
        self.inner.close()
