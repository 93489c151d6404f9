"""The group half of the ``sql`` adapter: groups, memberships (a link table or a column on the
user row) and the delta import over the mapped ``changed`` columns."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import and_, delete, func, insert, or_, select, update
from sqlalchemy.engine import Connection

from scim_bridge.adapters.delta import parse_token
from scim_bridge.adapters.errors import PermanentError
from scim_bridge.adapters.port import Changes, Deadline, LegacyRecord, Page, ScimDocument
from scim_bridge.adapters.sql.resources import Bound
from scim_bridge.adapters.sql.users import UserOperations

_IN_CHUNK = 500  # keeps each IN (...) list well below SQLite's limit on bound parameters


class GroupOperations(UserOperations):
    """Groups and members; :meth:`changes_since` for users and groups."""

    def create_group(self, resource_id: str, group: ScimDocument, *, deadline: Deadline) -> str:
        self._bound(deadline, "create_group")
        bound = self.groups
        values = bound.values(group)
        parameters = bound.parameters(group, values)
        return self._create("create_group", deadline, bound, resource_id, group, values, parameters)

    def update_group(
        self, key: str, group: ScimDocument, *, previous: ScimDocument, deadline: Deadline
    ) -> None:
        with self._transaction(deadline, "update_group") as connection:
            bound = self.groups
            values = bound.values(group)
            parsed = bound.parse_key(key)
            if parsed is None:
                raise self._missing(bound, key)
            name = bound.name_of(group)
            holders = bound.holders(connection, name, other_than=parsed)
            if holders:
                raise bound.conflict(name, holders[0])
            if "update" in bound.mapping.sql:
                parameters = {**bound.parameters(group, values), "key": parsed, "resource_id": None}
                self._custom(connection, bound, "update", parameters)
                return
            self._update(connection, bound, key, values)

    def add_members(self, key: str, member_keys: Sequence[str], *, deadline: Deadline) -> None:
        with self._transaction(deadline, "add_members") as connection:
            bound = self.groups
            parsed = self._existing_group(connection, bound, key)
            wanted = list(dict.fromkeys(member_keys))
            self._require_users(connection, wanted)
            members = self._members_map()
            if "add_member" in bound.mapping.sql:
                for user_key in wanted:
                    parameters = {"group_key": parsed, "user_key": self.users.parse_key(user_key)}
                    self._custom(
                        connection,
                        bound,
                        "add_member",
                        {**parameters, "key": parsed, "resource_id": None},
                    )
                return
            if members.column is not None:
                users = self.users
                column = users.write.c[members.column]
                for chunk in _chunks([users.parse_key(k) for k in wanted]):
                    connection.execute(
                        update(users.write)
                        .where(users.key.in_(chunk))
                        .values({column.name: parsed})
                    )
                return
            table = self._member_table
            assert table is not None
            group_column, user_column = table.c[members.group], table.c[members.user]
            have = set(self._member_keys_of(connection, [parsed]).get(str(parsed), []))
            rows = [
                {
                    **members.defaults,
                    group_column.name: parsed,
                    user_column.name: self._member_key(k),
                }
                for k in wanted
                if k not in have
            ]
            if rows:
                connection.execute(insert(table), rows)

    def remove_members(self, key: str, member_keys: Sequence[str], *, deadline: Deadline) -> None:
        with self._transaction(deadline, "remove_members") as connection:
            bound = self.groups
            parsed = bound.parse_key(key)
            if parsed is None:
                return
            members = self._members_map()
            if "remove_member" in bound.mapping.sql:
                for user_key in member_keys:
                    parameters = {"group_key": parsed, "user_key": self.users.parse_key(user_key)}
                    self._custom(
                        connection,
                        bound,
                        "remove_member",
                        {**parameters, "key": parsed, "resource_id": None},
                    )
                return
            if members.column is not None:
                users = self.users
                column = users.write.c[members.column]
                for chunk in _chunks([users.parse_key(k) for k in member_keys]):
                    connection.execute(
                        update(users.write)
                        .where(and_(users.key.in_(chunk), column == parsed))
                        .values({column.name: None})
                    )
                return
            table = self._member_table
            assert table is not None
            for chunk in _chunks([self._member_key(k) for k in member_keys]):
                connection.execute(
                    delete(table).where(
                        and_(table.c[members.group] == parsed, table.c[members.user].in_(chunk))
                    )
                )

    def delete_group(self, key: str, *, deadline: Deadline) -> None:
        with self._transaction(deadline, "delete_group") as connection:
            bound = self.groups
            parsed = bound.parse_key(key)
            if parsed is None:
                return
            members = self.mapping.groups.members if self.mapping.groups else None
            if members is not None and members.column is not None:
                column = self.users.write.c[members.column]
                connection.execute(
                    update(self.users.write).where(column == parsed).values({column.name: None})
                )
            elif members is not None and self._member_table is not None:
                table = self._member_table
                connection.execute(delete(table).where(table.c[members.group] == parsed))
            self._delete(connection, bound, key, parsed)

    def get_group(self, key: str, *, deadline: Deadline) -> LegacyRecord | None:
        with self._transaction(deadline, "get_group") as connection:
            record = self._get(connection, self.groups, key)
            return None if record is None else self._with_members(connection, [record])[0]

    def find_group(self, resource_id: str, *, deadline: Deadline) -> str | None:
        with self._transaction(deadline, "find_group") as connection:
            return self.groups.linked_key(connection, resource_id)

    def find_created_group(
        self, resource_id: str, group: ScimDocument, *, deadline: Deadline
    ) -> str | None:
        with self._transaction(deadline, "find_group") as connection:
            bound = self.groups
            key = bound.linked_key(connection, resource_id)
            if key is not None or bound.id_column is not None or bound.link is not None:
                return key
            name = bound.name_map.path.get(group)
            holders = bound.holders(connection, name) if isinstance(name, str) and name else []
            return str(holders[0][0]) if holders else None

    def list_groups(self, *, cursor: str | None, limit: int, deadline: Deadline) -> Page:
        with self._transaction(deadline, "list_groups") as connection:
            return self._list(connection, self.groups, cursor, limit)

    # Delta import -----------------------------------------------------------------------------
    def changes_since(self, token: str | None, *, limit: int, deadline: Deadline) -> Changes:
        """Rows whose mapped ``changed`` column is at or after the token, oldest first.

        The token holds, per kind, the last change time seen and the last key at that time, so
        pages of rows stamped at one instant make progress and a pass reads only what came
        after. While that instant is recent (within :data:`SETTLE_S` of the database's clock) a
        row could still be stamped with it, so the token keeps only the time and those rows are
        read again; once it is older, the key is kept, and a table whose rows all carry one old
        stamp (a migration, a bulk update) costs a pass nothing but its changes.
        """
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        with self._transaction(deadline, "changes_since") as connection:
            kinds = [("u", self.users)]
            if self._groups_bound is not None and self._groups_bound.read_changed is not None:
                kinds.append(("g", self._groups_bound))
            if self.users.read_changed is None:
                raise PermanentError("users.changed: the SQL mapping names no change column")
            positions = parse_token(token)
            found: dict[str, list[LegacyRecord]] = {"u": [], "g": []}
            new: dict[str, Any] = {}
            more = False
            settled = _settled_before(connection)
            for kind, bound in kinds:
                changed = bound.read_changed
                assert changed is not None
                if token is None:
                    latest = connection.scalar(select(func.max(changed)))
                    last_key = None
                    if latest is not None and settled(latest):
                        last_key = connection.scalar(
                            select(func.max(bound.read_key)).where(changed == latest)
                        )
                    new[kind] = [_encode(latest), None if last_key is None else str(last_key)]
                    continue
                at, after_key = positions.get(kind, [None, None])
                query = select(*bound.selected, changed.label("_changed_at"))
                if at is not None:
                    at_value = _decode(at)
                    condition = changed >= at_value
                    if after_key is not None:
                        condition = or_(
                            changed > at_value,
                            and_(changed == at_value, bound.read_key > bound.parse_key(after_key)),
                        )
                    query = query.where(condition)
                rows = connection.execute(
                    query.order_by(changed, bound.read_key).limit(limit + 1)
                ).all()
                page = rows[:limit]
                keys = [str(row._mapping[bound.read_key.name]) for row in page]
                ids = bound.resource_ids(connection, keys)
                records = [bound.record(r, ids.get(k)) for r, k in zip(page, keys, strict=True)]
                if kind == "g":
                    records = self._with_members(connection, records)
                found[kind] = records
                if len(rows) > limit:
                    more = True
                    new[kind] = [_encode(page[-1]._mapping["_changed_at"]), keys[-1]]
                elif page:
                    last_at = page[-1]._mapping["_changed_at"]
                    new[kind] = [_encode(last_at), keys[-1] if settled(last_at) else None]
                else:
                    kept = at is not None and after_key is not None and settled(_decode(at))
                    new[kind] = [at, after_key if kept else None]
            return Changes(found["u"], found["g"], json.dumps(new, sort_keys=True), more)

    # Helpers ----------------------------------------------------------------------------------
    def _members_map(self) -> Any:
        members = self.mapping.groups.members if self.mapping.groups else None
        if members is None:
            raise PermanentError("the SQL mapping has no [groups.members]: memberships not kept")
        return members

    def _existing_group(self, connection: Connection, bound: Bound, key: str) -> Any:
        parsed = bound.parse_key(key)
        if (
            parsed is None
            or connection.scalar(select(bound.key).where(bound.key == parsed)) is None
        ):
            raise self._missing(bound, key)
        return parsed

    def _require_users(self, connection: Connection, keys: list[str]) -> None:
        users = self.users
        wanted = {users.parse_key(k): k for k in keys}
        found: set[Any] = set()
        for chunk in _chunks([k for k in wanted if k is not None]):
            found.update(connection.scalars(select(users.key).where(users.key.in_(chunk))))
        missing = [k for parsed, k in wanted.items() if parsed not in found]
        if missing:
            raise PermanentError(
                f"users {', '.join(missing)} do not exist in the legacy application"
            )

    def _member_keys_of(
        self, connection: Connection, group_keys: list[Any]
    ) -> dict[str, list[str]]:
        members = self._members_map()
        result: dict[str, list[str]] = {}
        if members.column is not None:
            users = self.users
            column = users.read.c[members.column]
            for chunk in _chunks(group_keys):
                rows = connection.execute(
                    select(column, users.read_key).where(column.in_(chunk)).order_by(users.read_key)
                )
                for group_key, user_key in rows:
                    result.setdefault(str(group_key), []).append(str(user_key))
            return result
        table = self._member_table
        assert table is not None
        group_column, user_column = table.c[members.group], table.c[members.user]
        for chunk in _chunks(group_keys):
            rows = connection.execute(
                select(group_column, user_column)
                .where(group_column.in_(chunk))
                .order_by(group_column, user_column)
            )
            for group_key, user_key in rows:
                result.setdefault(str(group_key), []).append(str(user_key))
        return result

    def _with_members(
        self, connection: Connection, records: list[LegacyRecord]
    ) -> list[LegacyRecord]:
        if not records:
            return records
        if self.mapping.groups is None or self.mapping.groups.members is None:
            for record in records:
                record.document["members"] = []
            return records
        bound = self.groups
        members = self._member_keys_of(connection, [bound.parse_key(r.key) for r in records])
        for record in records:
            record.document["members"] = members.get(record.key, [])
        return records


def _chunks(values: list[Any]) -> Any:
    for start in range(0, len(values), _IN_CHUNK):
        yield values[start : start + _IN_CHUNK]


SETTLE_S = 60.0
"""How long after an instant no row can still be stamped with it: clocks of the application's
servers may lag the database's, and a transaction may commit a while after it took its stamp."""


def _settled_before(connection: Connection) -> Callable[[Any], bool]:
    """Whether a ``changed`` value is older than :data:`SETTLE_S` by the database's own clock.

    An aware value is compared with ``CURRENT_TIMESTAMP``; a naive one with the database's
    naive clock (``LOCALTIMESTAMP`` where ``CURRENT_TIMESTAMP`` is aware, as in PostgreSQL;
    SQLite's and MySQL's are naive already), so a column without a time zone is read in the
    database's. Values that are not times (a version counter) are never taken as settled: the
    token then keeps only the value, as a position at a recent instant does.
    """
    clocks: dict[bool, datetime | None] = {}
    current = _as_time(connection.scalar(select(func.current_timestamp())))
    if current is not None:
        clocks[current.tzinfo is not None] = current

    def clock(aware: bool) -> datetime | None:
        if aware not in clocks:
            if aware:  # a naive database clock: read as UTC, as SQLite's is
                naive = clocks.get(False)
                clocks[True] = naive.replace(tzinfo=UTC) if naive is not None else None
            else:
                clocks[False] = _as_time(connection.scalar(select(func.localtimestamp())))
        return clocks[aware]

    def settled(value: Any) -> bool:
        stamp = _as_time(value)
        if stamp is None:
            return False
        now = clock(stamp.tzinfo is not None)
        return now is not None and (now - stamp).total_seconds() > SETTLE_S

    return settled


def _as_time(value: Any) -> datetime | None:
    """A timestamp from the database as a datetime, or None for what is not a time."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    return value if isinstance(value, datetime) else None


def _encode(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return {"t": value.isoformat()}
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict) and "t" in value:
        text = str(value["t"])
        return (
            datetime.fromisoformat(text) if "T" in text or ":" in text else date.fromisoformat(text)
        )
    return value
