"""A mapped resource bound to its reflected tables: documents to rows and back, keys, links.

Built once per adapter after :func:`~scim_bridge.adapters.sql.check.check_mapping` found no
problem; every statement the adapter runs is made from these table objects with SQLAlchemy Core,
so values always travel as bound parameters.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    Integer,
    String,
    Table,
    and_,
    bindparam,
    cast,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    union_all,
    update,
)
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import Connection

from scim_bridge.adapters.errors import ConflictError, PermanentError
from scim_bridge.adapters.port import LegacyRecord, ScimDocument
from scim_bridge.adapters.sql.convert import check_length, default_value, from_column, to_column
from scim_bridge.adapters.sql.model import ResourceMapping

SCHEMAS = {
    "users": "urn:ietf:params:scim:schemas:core:2.0:User",
    "groups": "urn:ietf:params:scim:schemas:core:2.0:Group",
}


class Bound:
    """One ``[users]`` or ``[groups]`` mapping with its tables."""

    def __init__(
        self, mapping: ResourceMapping, read: Table, write: Table, link: Table | None
    ) -> None:
        self.mapping = mapping
        self.read = read
        self.write = write
        self.link = link
        self.link_kind = mapping.kind[0]
        self.key = write.c[mapping.key]
        self.read_key = read.c[mapping.key]
        self.name_map = mapping.name_map
        self.name = write.c[self.name_map.column]
        self.read_name = read.c[self.name_map.column]
        self.id_column = write.c[mapping.id_column] if mapping.id_column else None
        self.changed = write.c[mapping.changed] if mapping.changed else None
        self.read_changed = read.c[mapping.changed] if mapping.changed else None
        self.created = write.c[mapping.created] if mapping.created else None
        self.profile = write.c[mapping.profile] if mapping.profile else None
        self.profile_is_json = self.profile is not None and isinstance(self.profile.type, JSON)
        self.active = write.c[mapping.active_column] if mapping.active_column else None
        self.password = write.c[mapping.password_column] if mapping.password_column else None
        self.defaults = {
            name: default_value(write.c[name], value) for name, value in mapping.defaults.items()
        }
        self.columns = [(c, write.c[c.column], read.c[c.column]) for c in mapping.columns]
        self.key_is_integer = isinstance(self.key.type, Integer)
        # Read only what the mapping names: a wide legacy table costs nothing extra.
        names = {mapping.key, *(c.column for c in mapping.columns)}
        for optional in (mapping.id_column, mapping.profile, mapping.active_column):
            if optional and optional in read.c:
                names.add(optional)
        self.selected = [column for column in read.c if column.name in names]
        self._earlier: Any = None
        self._upsert: Any = None
        self._inserts: dict[tuple[str, ...], Any] = {}

    @property
    def noun(self) -> str:
        return "user" if self.mapping.kind == "users" else "group"

    # Keys -------------------------------------------------------------------------------------
    def parse_key(self, key: str) -> Any:
        """The key column's value for a legacy key, or ``None`` for a key no row can have."""
        if self.key_is_integer:
            return int(key) if key.isascii() and key.isdigit() else None
        return key

    def new_key(self, document: ScimDocument) -> Any:
        """The key of a new row from ``key_template``, or ``None`` when the database makes it."""
        template = self.mapping.key_template
        if template is None:
            return None
        values = {c.path.parameter: c.path.get(document) or "" for c in self.mapping.columns}
        values["uuid"] = uuid.uuid4().hex
        try:
            key = template.format(**values)
        except (KeyError, IndexError, ValueError) as exc:
            raise PermanentError(
                f"{self.mapping.kind}.key_template {template!r} cannot be filled: {exc}"
            ) from None
        check_length(f"{self.mapping.kind}.key_template", self.key, key)
        return int(key) if self.key_is_integer else key

    # Documents and rows -----------------------------------------------------------------------
    def name_of(self, document: ScimDocument) -> str:
        name = self.name_map.path.get(document)
        if not name or not isinstance(name, str):
            raise PermanentError(
                f"the {self.noun} has no {self.name_map.path.text}, which the legacy application"
                " requires"
            )
        return name

    def values(self, document: ScimDocument) -> dict[str, Any]:
        """The mapped columns of ``document`` (converted and checked), keyed by column name."""
        self.name_of(document)
        values = {
            write.name: to_column(column_map, write, column_map.path.get(document))
            for column_map, write, _ in self.columns
        }
        if self.profile is not None:
            skip = {"active", "password", "members", "meta", "groups"}
            profile = {k: v for k, v in document.items() if k not in skip}
            values[self.profile.name] = profile if self.profile_is_json else json.dumps(profile)
        return values

    def parameters(self, document: ScimDocument, values: Mapping[str, Any]) -> dict[str, Any]:
        """Named parameters of a custom statement: by attribute (``:name_givenName``) and column."""
        parameters = dict(values)
        for column_map, write, _ in self.columns:
            parameters[column_map.path.parameter] = values.get(write.name)
        return parameters

    def record(self, row: Any, resource_id: str | None) -> LegacyRecord:
        """A row (with :attr:`selected` columns) as the legacy application holds the resource."""
        mapping = row._mapping
        document: dict[str, Any] = {}
        if self.profile is not None and mapping.get(self.profile.name):
            stored = mapping[self.profile.name]
            if isinstance(stored, str):
                try:
                    stored = json.loads(stored)
                except ValueError:
                    stored = None
            document = dict(stored) if isinstance(stored, Mapping) else {}
        document.setdefault("schemas", [SCHEMAS[self.mapping.kind]])
        for column_map, _, read in self.columns:
            column_map.path.set(document, from_column(column_map, read, mapping[read.name]))
        if self.active is not None and self.mapping.active is not None:
            document["active"] = self.mapping.active.from_stored(mapping[self.active.name])
        elif self.mapping.kind == "users":
            document["active"] = True
        if self.id_column is not None:
            resource_id = mapping[self.id_column.name]
        return LegacyRecord(str(mapping[self.read_key.name]), resource_id, document)

    # Uniqueness and links ---------------------------------------------------------------------
    def holders(self, connection: Connection, name: str, other_than: Any = None) -> list[Any]:
        """Rows holding ``name`` case-insensitively (``lower()`` on both sides: the database's
        notion of case decides)."""
        columns = [self.key] + ([self.id_column] if self.id_column is not None else [])
        query = select(*columns).where(func.lower(self.name) == func.lower(name))
        if other_than is not None:
            query = query.where(self.key != other_than)
        return list(connection.execute(query.limit(2)).all())

    def conflict(self, name: str, holder: Any) -> ConflictError:
        noun = "login name" if self.mapping.kind == "users" else "name"
        resource_id = holder[1] if len(holder) > 1 else None
        owner = f"SCIM id {resource_id}" if resource_id else "not linked to a SCIM id"
        return ConflictError(
            f"{self.noun} {noun} {name!r} is already used by {self.noun} {holder[0]} of the legacy"
            f" application ({owner}, table {self.write.name}); rename or remove that"
            f" {self.noun} first"
        )

    def _link_join(self) -> Any:
        """The link table joined to the record it names (a stale link finds no record)."""
        assert self.link is not None
        legacy_key = self.link.c.legacy_key
        target = cast(legacy_key, self.key.type) if self.key_is_integer else legacy_key
        return self.link.join(self.write, self.key == target)

    def linked_key(self, connection: Connection, resource_id: str) -> str | None:
        """The key the link (id column or link table) gives ``resource_id``, if its row exists."""
        if self.id_column is not None:
            found = connection.scalar(select(self.key).where(self.id_column == resource_id))
            return None if found is None else str(found)
        if self.link is None:
            return None
        found = connection.scalar(
            select(self.key)
            .select_from(self._link_join())
            .where(and_(self.link.c.kind == self.link_kind, self.link.c.scim_id == resource_id))
            .limit(1)
        )
        return None if found is None else str(found)

    def earlier_or_holders(
        self, connection: Connection, resource_id: str, name: str
    ) -> tuple[str | None, list[Any]]:
        """In one statement: the key an earlier delivery of this create made (if any), and the
        rows holding ``name`` case-insensitively, each as ``(key, resource_id)``."""
        if self._earlier is None:
            self._earlier = self._earlier_statement()
        rows = list(connection.execute(self._earlier, {"sb_rid": resource_id, "sb_name": name}))
        for row in rows:
            if row[1] == resource_id:
                return str(row[0]), []
        return None, rows

    def _earlier_statement(self) -> Any:
        # Built once with bound parameters: composing it per call costs more than running it.
        by_name = func.lower(self.name) == func.lower(bindparam("sb_name"))
        resource_id: Any = bindparam("sb_rid")
        if self.id_column is not None:
            return select(self.key, self.id_column).where(
                or_(self.id_column == resource_id, by_name)
            )
        if self.link is None:
            return select(self.key, literal(None, String).label("scim_id")).where(by_name)
        link = self.link
        key_text = cast(self.key, String) if self.key_is_integer else self.key
        named = (
            select(self.key, link.c.scim_id)
            .select_from(
                self.write.outerjoin(
                    link, and_(link.c.kind == self.link_kind, link.c.legacy_key == key_text)
                )
            )
            .where(by_name)
        )
        linked = (
            select(self.key, link.c.scim_id)
            .select_from(self._link_join())
            .where(and_(link.c.kind == self.link_kind, link.c.scim_id == resource_id))
        )
        return union_all(named, linked)

    def insert_row(self, connection: Connection, row: dict[str, Any]) -> Any:
        """Insert ``row``; the database's key (``None`` if it made none)."""
        statements = self._inserts
        columns = tuple(row)
        if columns not in statements:
            statements[columns] = insert(self.write)
        result = connection.execute(statements[columns], row)
        inserted = result.inserted_primary_key
        return None if inserted is None else inserted[0]

    def update_row(self, connection: Connection, key: Any, values: dict[str, Any]) -> int:
        """Set ``values`` on the row ``key``; how many rows matched."""
        columns = ("update", *values)
        if columns not in self._inserts:
            self._inserts[columns] = update(self.write).where(self.key == bindparam("sb_key"))
        result = connection.execute(self._inserts[columns], {**values, "sb_key": key})
        return int(result.rowcount)

    def link_to(self, connection: Connection, resource_id: str, key: str) -> None:
        """Record ``key`` as ``resource_id``'s, replacing a stale link of a reused key."""
        if self.link is None or self.id_column is not None:
            return
        values = {"kind": self.link_kind, "legacy_key": key, "scim_id": resource_id}
        if self._upsert is None:
            self._upsert = self._upsert_statement(connection.dialect.name)
        if self._upsert is False:
            self.unlink(connection, key)
            connection.execute(insert(self.link), values)
        else:
            connection.execute(self._upsert, values)

    def _upsert_statement(self, dialect: str) -> Any:
        assert self.link is not None
        if dialect in ("sqlite", "postgresql"):
            module: Any = sqlite if dialect == "sqlite" else postgresql
            statement = module.insert(self.link)
            return statement.on_conflict_do_update(
                index_elements=["kind", "legacy_key"], set_={"scim_id": statement.excluded.scim_id}
            )
        if dialect in ("mysql", "mariadb"):
            statement = mysql.insert(self.link)
            return statement.on_duplicate_key_update(scim_id=statement.inserted.scim_id)
        return False  # elsewhere: delete, then insert

    def unlink(self, connection: Connection, key: str) -> None:
        if self.link is not None:
            connection.execute(
                delete(self.link).where(
                    and_(self.link.c.kind == self.link_kind, self.link.c.legacy_key == key)
                )
            )

    def resource_ids(self, connection: Connection, keys: list[str]) -> dict[str, str]:
        """SCIM ids of ``keys`` from the link table (empty without one)."""
        if self.link is None or self.id_column is not None or not keys:
            return {}
        found: dict[str, str] = {}
        for start in range(0, len(keys), 500):
            rows = connection.execute(
                select(self.link.c.legacy_key, self.link.c.scim_id).where(
                    and_(
                        self.link.c.kind == self.link_kind,
                        self.link.c.legacy_key.in_(keys[start : start + 500]),
                    )
                )
            )
            found.update({row[0]: row[1] for row in rows})
        return found


def key_column(bound: Bound) -> Column[Any]:
    return bound.key
