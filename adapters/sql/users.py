"""The user half of the ``sql`` adapter (see :mod:`.adapter` for the shared machinery)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Integer, delete, select

from scim_bridge.adapters.errors import PermanentError
from scim_bridge.adapters.port import Deadline, LegacyRecord, Page, ScimDocument
from scim_bridge.adapters.sql.adapter import SqlBase
from scim_bridge.adapters.sql.convert import check_length
from scim_bridge.adapters.sql.resources import Bound


class UserOperations(SqlBase):
    """Users: create (idempotent), update, (de|re)activate, password, delete, read, list."""

    def create_user(
        self, resource_id: str, user: ScimDocument, *, password: str | None, deadline: Deadline
    ) -> str:
        bound = self._bound(deadline, "create_user")
        values = bound.values(user)
        active = bool(user.get("active", True))
        if bound.active is not None and bound.mapping.active is not None:
            values[bound.active.name] = bound.mapping.active.to_stored(active)
        parameters = {**bound.parameters(user, values), "active": active}
        # Hash before the transaction: a slow hash should not hold the database's locks.
        password_hash = self._hash(bound, password) if password is not None else None
        if bound.password is not None:
            values[bound.password.name] = password_hash
        parameters["password_hash"] = password_hash
        return self._create("create_user", deadline, bound, resource_id, user, values, parameters)

    def update_user(
        self, key: str, user: ScimDocument, *, previous: ScimDocument, deadline: Deadline
    ) -> None:
        with self._transaction(deadline, "update_user") as connection:
            bound = self.users
            values = bound.values(user)
            parsed = bound.parse_key(key)
            if parsed is None:
                raise self._missing(bound, key)
            name = bound.name_of(user)
            holders = bound.holders(connection, name, other_than=parsed)
            if holders:
                raise bound.conflict(name, holders[0])
            if "update" in bound.mapping.sql:
                parameters = {**bound.parameters(user, values), "key": parsed}
                parameters["active"] = bool(user.get("active", True))
                parameters["resource_id"] = None
                self._custom(connection, bound, "update", parameters)
                return
            self._update(connection, bound, key, values)

    def deactivate_user(self, key: str, *, deadline: Deadline) -> None:
        with self._transaction(deadline, "deactivate_user") as connection:
            bound = self.users
            if bound.active is None:
                if bound.mapping.deprovision == "delete":
                    self._delete_user(connection, bound, key)
                    return
                if "deactivate" not in bound.mapping.sql:
                    raise PermanentError(
                        "the SQL mapping has no [users.active]: the legacy application cannot"
                        ' deactivate users (map active, or set users.deprovision = "delete")'
                    )
            self._set_active(connection, bound, key, False)

    def reactivate_user(self, key: str, *, deadline: Deadline) -> None:
        with self._transaction(deadline, "reactivate_user") as connection:
            bound = self.users
            if bound.active is None and "reactivate" not in bound.mapping.sql:
                raise PermanentError(
                    "the SQL mapping has no [users.active]: the legacy application cannot"
                    " reactivate users"
                )
            self._set_active(connection, bound, key, True)

    def set_password(self, key: str, password: str, *, deadline: Deadline) -> None:
        bound = self._bound(deadline, "set_password")
        if bound.password is None and "password" not in bound.mapping.sql:
            raise PermanentError(
                "the SQL mapping has no [users.password]: the legacy application keeps no passwords"
            )
        password_hash = self._hash(bound, password)
        with self._transaction(deadline, "set_password") as connection:
            if "password" in bound.mapping.sql:
                parsed = bound.parse_key(key)
                parameters = {"key": parsed, "password_hash": password_hash, "resource_id": None}
                self._custom(connection, bound, "password", parameters)
                return
            assert bound.password is not None
            self._update(connection, bound, key, {bound.password.name: password_hash})

    def delete_user(self, key: str, *, deadline: Deadline) -> None:
        with self._transaction(deadline, "delete_user") as connection:
            self._delete_user(connection, self.users, key)

    def get_user(self, key: str, *, deadline: Deadline) -> LegacyRecord | None:
        with self._transaction(deadline, "get_user") as connection:
            return self._get(connection, self.users, key)

    def find_user(self, resource_id: str, *, deadline: Deadline) -> str | None:
        with self._transaction(deadline, "find_user") as connection:
            return self.users.linked_key(connection, resource_id)

    def find_created_user(
        self, resource_id: str, user: ScimDocument, *, deadline: Deadline
    ) -> str | None:
        with self._transaction(deadline, "find_user") as connection:
            bound = self.users
            key = bound.linked_key(connection, resource_id)
            if key is not None or bound.id_column is not None or bound.link is not None:
                return key
            # No link is kept in the application: the unique login column is the link.
            name = bound.name_map.path.get(user)
            holders = bound.holders(connection, name) if isinstance(name, str) and name else []
            return str(holders[0][0]) if holders else None

    def list_users(self, *, cursor: str | None, limit: int, deadline: Deadline) -> Page:
        with self._transaction(deadline, "list_users") as connection:
            return self._list(connection, self.users, cursor, limit)

    # Helpers ----------------------------------------------------------------------------------
    def _hash(self, bound: Bound, password: str) -> str:
        scheme = bound.mapping.password_scheme
        if scheme is None:
            raise PermanentError("users.password.scheme: no hash scheme for the custom statement")
        # The reconciler also hashes this password, with the same helper, to remember the last
        # one pushed (workers/passwords.py); that hash stays in scim-bridge's store, this one is
        # the application's, in the scheme the application verifies, so the two stay apart.
        password_hash = scheme.hash(password)
        if bound.password is not None:
            check_length("password hash", bound.password, password_hash)
        return password_hash

    def _set_active(self, connection: Any, bound: Bound, key: str, active: bool) -> None:
        operation = "reactivate" if active else "deactivate"
        if operation in bound.mapping.sql:
            parameters = {"key": bound.parse_key(key), "resource_id": None}
            self._custom(connection, bound, operation, parameters)
            return
        assert bound.active is not None and bound.mapping.active is not None
        self._update(
            connection, bound, key, {bound.active.name: bound.mapping.active.to_stored(active)}
        )

    def _delete_user(self, connection: Any, bound: Bound, key: str) -> None:
        parsed = bound.parse_key(key)
        if parsed is None:
            return
        # Memberships first, explicitly: an application's own tables may lack ON DELETE CASCADE.
        members = self._member_table
        if members is not None and self.mapping.groups is not None:
            member_map = self.mapping.groups.members
            assert member_map is not None
            user_column = members.c[member_map.user]
            connection.execute(delete(members).where(user_column == self._member_key(key)))
        self._delete(connection, bound, key, parsed)

    def _member_key(self, key: str) -> Any:
        """A user key as the link table's user column holds it."""
        assert self._member_table is not None and self.mapping.groups is not None
        assert self.mapping.groups.members is not None
        column = self._member_table.c[self.mapping.groups.members.user]
        if isinstance(column.type, Integer):
            return int(key) if key.isascii() and key.isdigit() else -1
        return key

    def _get(self, connection: Any, bound: Bound, key: str) -> LegacyRecord | None:
        parsed = bound.parse_key(key)
        if parsed is None:
            return None
        row = connection.execute(select(*bound.selected).where(bound.read_key == parsed)).first()
        if row is None:
            return None
        resource_id = bound.resource_ids(connection, [key]).get(key)
        return bound.record(row, resource_id)

    def _list(self, connection: Any, bound: Bound, cursor: str | None, limit: int) -> Page:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        query = select(*bound.selected).order_by(bound.read_key).limit(limit + 1)
        if cursor is not None:
            after = bound.parse_key(cursor)
            if after is None:
                raise PermanentError(f"invalid page cursor {cursor!r}")
            query = query.where(bound.read_key > after)
        # One row more than asked tells whether another page follows.
        rows = connection.execute(query).all()
        page = rows[:limit]
        keys = [str(row._mapping[bound.read_key.name]) for row in page]
        resource_ids = bound.resource_ids(connection, keys)
        records = [
            bound.record(row, resource_ids.get(k)) for row, k in zip(page, keys, strict=True)
        ]
        if bound.mapping.kind == "groups":
            records = self._with_members(connection, records)
        return Page(records, keys[-1] if len(rows) > limit else None)
