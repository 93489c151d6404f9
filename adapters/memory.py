"""The reference adapter: a legacy application held in this process's memory.

It is what the contract kit is written against, what the tests and demos use, and the model to
copy when writing an adapter: idempotent creates keyed on the SCIM id, deletes of missing
records that succeed, deadlines checked before every change. It also keeps a journal of the
calls it received (``calls``), so tests can assert what reached the legacy application.
"""

from __future__ import annotations

import copy
import itertools
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from scim_bridge.adapters.errors import ConflictError, PermanentError
from scim_bridge.adapters.port import (
    Changes,
    Deadline,
    LegacyAdapter,
    LegacyRecord,
    Page,
    ScimDocument,
)


class MemoryAdapter(LegacyAdapter):
    """Users and groups in dictionaries; thread-safe; ``calls`` journals every change."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys = itertools.count(1)
        self.users: dict[str, dict[str, Any]] = {}
        self.groups: dict[str, dict[str, Any]] = {}
        self.passwords: dict[str, str] = {}
        self._user_by_resource: dict[str, str] = {}
        self._group_by_resource: dict[str, str] = {}
        self._user_by_name: dict[str, str] = {}  # lower-cased userName -> key
        self.calls: list[tuple[str, str]] = []
        self.refuse: dict[str, str] = {}
        """userName (lower-case) → message: creates and updates of that user are refused."""
        # Delta import: every change takes the next number of one sequence.
        self._change_numbers = itertools.count(1)
        self._changed: dict[tuple[str, str], int] = {}  # ("u"|"g", key) -> its last change

    def _touch(self, kind: str, key: str) -> None:
        self._changed[(kind, key)] = next(self._change_numbers)

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> MemoryAdapter:
        """Entry-point factory; the memory adapter takes no options."""
        return cls()

    def _journal(self, operation: str, key: str) -> None:
        self.calls.append((operation, key))
        if not operation.startswith("delete"):
            self._touch("g" if key.startswith("g") else "u", key)

    def _check_refusal(self, user: ScimDocument) -> None:
        message = self.refuse.get(str(user.get("userName", "")).lower())
        if message:
            raise PermanentError(message)

    def _check_unique_user_name(self, user: ScimDocument, key: str | None) -> None:
        owner = self._user_by_name.get(str(user.get("userName", "")).lower())
        if owner is not None and owner != key:
            raise ConflictError(f"login name {user.get('userName')!r} is taken")

    def _index_name(self, key: str, old: ScimDocument | None, new: ScimDocument | None) -> None:
        if old is not None:
            self._user_by_name.pop(str(old.get("userName", "")).lower(), None)
        if new is not None:
            self._user_by_name[str(new.get("userName", "")).lower()] = key

    # Users ------------------------------------------------------------------------------------
    def create_user(
        self, resource_id: str, user: ScimDocument, *, password: str | None, deadline: Deadline
    ) -> str:
        deadline.check("create_user")
        with self._lock:
            if resource_id in self._user_by_resource:
                return self._user_by_resource[resource_id]
            self._check_refusal(user)
            self._check_unique_user_name(user, None)
            key = f"u{next(self._keys)}"
            self.users[key] = {**copy.deepcopy(dict(user)), "_resource_id": resource_id}
            self._index_name(key, None, user)
            self._user_by_resource[resource_id] = key
            if password is not None:
                self.passwords[key] = password
            self._journal("create_user", key)
            return key

    def update_user(
        self, key: str, user: ScimDocument, *, previous: ScimDocument, deadline: Deadline
    ) -> None:
        deadline.check("update_user")
        with self._lock:
            current = self.users.get(key)
            if current is None:
                raise PermanentError(f"user {key} does not exist in the legacy application")
            self._check_refusal(user)
            self._check_unique_user_name(user, key)
            active = current.get("active", True)
            self._index_name(key, current, user)
            self.users[key] = {
                **copy.deepcopy(dict(user)),
                "active": active,
                "_resource_id": current["_resource_id"],
            }
            self._journal("update_user", key)

    def _set_active(self, key: str, active: bool, deadline: Deadline) -> None:
        deadline.check("deactivate_user" if not active else "reactivate_user")
        with self._lock:
            current = self.users.get(key)
            if current is None:
                raise PermanentError(f"user {key} does not exist in the legacy application")
            current["active"] = active
            self._journal("reactivate_user" if active else "deactivate_user", key)

    def deactivate_user(self, key: str, *, deadline: Deadline) -> None:
        self._set_active(key, False, deadline)

    def reactivate_user(self, key: str, *, deadline: Deadline) -> None:
        self._set_active(key, True, deadline)

    def set_password(self, key: str, password: str, *, deadline: Deadline) -> None:
        deadline.check("set_password")
        with self._lock:
            if key not in self.users:
                raise PermanentError(f"user {key} does not exist in the legacy application")
            self.passwords[key] = password
            self._journal("set_password", key)

    def delete_user(self, key: str, *, deadline: Deadline) -> None:
        deadline.check("delete_user")
        with self._lock:
            user = self.users.pop(key, None)
            self.passwords.pop(key, None)
            if user is not None:
                self._user_by_resource.pop(user["_resource_id"], None)
                self._index_name(key, user, None)
            for group in self.groups.values():
                if key in group["members"]:
                    group["members"].remove(key)
            self._journal("delete_user", key)

    def get_user(self, key: str, *, deadline: Deadline) -> LegacyRecord | None:
        deadline.check("get_user")
        with self._lock:
            user = self.users.get(key)
            if user is None:
                return None
            document = {k: v for k, v in user.items() if k != "_resource_id"}
            return LegacyRecord(key, user["_resource_id"], copy.deepcopy(document))

    def find_user(self, resource_id: str, *, deadline: Deadline) -> str | None:
        deadline.check("find_user")
        with self._lock:
            return self._user_by_resource.get(resource_id)

    def list_users(self, *, cursor: str | None, limit: int, deadline: Deadline) -> Page:
        deadline.check("list_users")
        with self._lock:
            keys = sorted(self.users, key=lambda k: int(k[1:]))
        return self._page(keys, cursor, limit, self.get_user, deadline)

    # Groups -----------------------------------------------------------------------------------
    def create_group(self, resource_id: str, group: ScimDocument, *, deadline: Deadline) -> str:
        deadline.check("create_group")
        with self._lock:
            if resource_id in self._group_by_resource:
                return self._group_by_resource[resource_id]
            key = f"g{next(self._keys)}"
            document = {k: copy.deepcopy(v) for k, v in group.items() if k != "members"}
            self.groups[key] = {**document, "members": [], "_resource_id": resource_id}
            self._group_by_resource[resource_id] = key
            self._journal("create_group", key)
            return key

    def update_group(
        self, key: str, group: ScimDocument, *, previous: ScimDocument, deadline: Deadline
    ) -> None:
        deadline.check("update_group")
        with self._lock:
            current = self.groups.get(key)
            if current is None:
                raise PermanentError(f"group {key} does not exist in the legacy application")
            document = {k: copy.deepcopy(v) for k, v in group.items() if k != "members"}
            self.groups[key] = {
                **document,
                "members": current["members"],
                "_resource_id": current["_resource_id"],
            }
            self._journal("update_group", key)

    def add_members(self, key: str, member_keys: Sequence[str], *, deadline: Deadline) -> None:
        deadline.check("add_members")
        with self._lock:
            group = self.groups.get(key)
            if group is None:
                raise PermanentError(f"group {key} does not exist in the legacy application")
            for member in member_keys:
                if member not in self.users:
                    raise PermanentError(f"user {member} does not exist in the legacy application")
                if member not in group["members"]:
                    group["members"].append(member)
            self._journal("add_members", key)

    def remove_members(self, key: str, member_keys: Sequence[str], *, deadline: Deadline) -> None:
        deadline.check("remove_members")
        with self._lock:
            group = self.groups.get(key)
            if group is None:
                return
            group["members"] = [m for m in group["members"] if m not in set(member_keys)]
            self._journal("remove_members", key)

    def delete_group(self, key: str, *, deadline: Deadline) -> None:
        deadline.check("delete_group")
        with self._lock:
            group = self.groups.pop(key, None)
            if group is not None:
                self._group_by_resource.pop(group["_resource_id"], None)
            self._journal("delete_group", key)

    def get_group(self, key: str, *, deadline: Deadline) -> LegacyRecord | None:
        deadline.check("get_group")
        with self._lock:
            group = self.groups.get(key)
            if group is None:
                return None
            document = {k: v for k, v in group.items() if k != "_resource_id"}
            return LegacyRecord(key, group["_resource_id"], copy.deepcopy(document))

    def find_group(self, resource_id: str, *, deadline: Deadline) -> str | None:
        deadline.check("find_group")
        with self._lock:
            return self._group_by_resource.get(resource_id)

    def list_groups(self, *, cursor: str | None, limit: int, deadline: Deadline) -> Page:
        deadline.check("list_groups")
        with self._lock:
            keys = sorted(self.groups, key=lambda k: int(k[1:]))
        return self._page(keys, cursor, limit, self.get_group, deadline)

    # Delta import ---------------------------------------------------------------------------
    def changes_since(self, token: str | None, *, limit: int, deadline: Deadline) -> Changes:
        deadline.check("changes_since")
        with self._lock:
            latest = max(self._changed.values(), default=0)
            if token is None:
                return Changes((), (), str(latest))
            after = int(token)
            # One sequence for both kinds, cut after ``limit`` changes: a next token never
            # skips a change of the kind that was not full.
            ordered = sorted((n, k, key) for (k, key), n in self._changed.items() if n > after)
        chosen = ordered[:limit]
        users = [self.get_user(key, deadline=deadline) for _, k, key in chosen if k == "u"]
        groups = [self.get_group(key, deadline=deadline) for _, k, key in chosen if k == "g"]
        next_token = str(chosen[-1][0]) if chosen else token
        return Changes(
            [r for r in users if r is not None],
            [r for r in groups if r is not None],
            next_token,
            more=len(ordered) > limit,
        )

    # The application's own changes (tests and demos: accounts made or edited outside Okta) -----
    def insert_user(self, user: ScimDocument, *, password: str | None = None) -> str:
        """Add a user as the application itself would: no SCIM id. Returns its key."""
        with self._lock:
            self._check_unique_user_name(user, None)
            key = f"u{next(self._keys)}"
            self.users[key] = {**copy.deepcopy(dict(user)), "_resource_id": None}
            self.users[key].setdefault("active", True)
            self._index_name(key, None, user)
            if password is not None:
                self.passwords[key] = password
            self._touch("u", key)
            return key

    def edit_user(self, key: str, **changes: Any) -> None:
        """Change a user as the application itself would (a helpdesk disabling an account)."""
        with self._lock:
            current = self.users[key]
            self._index_name(key, current, None)
            current.update(copy.deepcopy(changes))
            self._index_name(key, None, current)
            self._touch("u", key)

    def insert_group(self, group: ScimDocument, members: Sequence[str] = ()) -> str:
        """Add a group as the application itself would, with members by legacy key."""
        with self._lock:
            key = f"g{next(self._keys)}"
            document = {k: copy.deepcopy(v) for k, v in group.items() if k != "members"}
            self.groups[key] = {**document, "members": list(members), "_resource_id": None}
            self._touch("g", key)
            return key

    def remove_user(self, key: str) -> None:
        """Remove a user as the application itself would (no call through the port)."""
        with self._lock:
            user = self.users.pop(key)
            self._changed.pop(("u", key), None)
            self._index_name(key, user, None)
            if user["_resource_id"] is not None:
                self._user_by_resource.pop(user["_resource_id"], None)
            for group in self.groups.values():
                if key in group["members"]:
                    group["members"].remove(key)

    @staticmethod
    def _page(
        keys: list[str],
        cursor: str | None,
        limit: int,
        get: Any,
        deadline: Deadline,
    ) -> Page:
        start = int(cursor) if cursor else 0
        chosen = keys[start : start + limit]
        records = [r for r in (get(k, deadline=deadline) for k in chosen) if r is not None]
        following = start + limit
        return Page(records, str(following) if following < len(keys) else None)
