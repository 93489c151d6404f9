"""The mapping against the live database: tables, columns, types, NOT NULL, uniqueness.

One function, :func:`check_mapping`, serves ``scim-bridge mapping check``, the worker's start
and the adapter's first call, so the three say the same thing: one line per problem, naming the
TOML key and the column, with what to change.
"""

from __future__ import annotations

import warnings
from typing import Any

from sqlalchemy import JSON, Boolean, Column, Date, DateTime, Integer, MetaData, String, Table, Text
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.engine import Connection
from sqlalchemy.exc import NoSuchTableError, SAWarning

from scim_bridge.adapters.sql.model import ColumnMap, ResourceMapping, SqlMapping

# Longest hash each scheme writes with libpass' defaults (the column must hold it).
HASH_LENGTHS = {
    "bcrypt": 60,
    "argon2": 100,
    "pbkdf2_sha256": 90,
    "pbkdf2_sha512": 135,
    "sha512_crypt": 123,
    "sha256_crypt": 80,
    "scrypt": 100,
}


def reflect(connection: Connection, metadata: MetaData, name: str) -> Table | None:
    """The table or view ``name`` as the database has it, or ``None`` when absent."""
    if name in metadata.tables:
        return metadata.tables[name]
    schema, _, table = name.rpartition(".")
    try:
        with warnings.catch_warnings():
            # Expression indexes (lower(login)) are not reflected; _unique asks the database.
            warnings.simplefilter("ignore", SAWarning)
            return Table(table, metadata, schema=schema or None, autoload_with=connection)
    except NoSuchTableError:
        return None


def check_mapping(connection: Connection, mapping: SqlMapping, metadata: MetaData) -> list[str]:
    """Every problem of ``mapping`` against the database behind ``connection``."""
    problems: list[str] = []
    _resource(connection, mapping.users, metadata, problems)
    if mapping.groups is not None:
        _resource(connection, mapping.groups, metadata, problems)
        _members(connection, mapping, metadata, problems)
    return problems


def key_is_generated(column: Column[Any]) -> bool:
    """Whether the database makes the key itself (auto-increment, identity, sequence)."""
    if column.identity is not None or column.autoincrement is True:
        return True
    default = column.server_default
    if default is not None and "nextval" in str(getattr(default, "arg", "")):
        return True
    table = column.table
    return (
        isinstance(column.type, Integer)
        and column.primary_key
        and len(table.primary_key.columns) == 1
        and column.autoincrement == "auto"
        and _dialect_of(table) == "sqlite"
    )


def _dialect_of(table: Table) -> str:
    return str(table.info.get("dialect", ""))


def _resource(
    connection: Connection, mapping: ResourceMapping, metadata: MetaData, problems: list[str]
) -> None:
    kind = mapping.kind
    read = reflect(connection, metadata, mapping.table)
    if read is None:
        problems.append(f"{kind}.table: no table or view {mapping.table} in the database")
        return
    read.info["dialect"] = connection.dialect.name
    write = read
    if mapping.write_table != mapping.table:
        found = reflect(connection, metadata, mapping.write_table)
        if found is None:
            problems.append(f"{kind}.write_table: no table {mapping.write_table} in the database")
            return
        found.info["dialect"] = connection.dialect.name
        write = found
    for table in {read.name: read, write.name: write}.values():
        if mapping.key not in table.c:
            problems.append(f"{kind}.key: no column {mapping.key} in {table.name}")
            return
    key = write.c[mapping.key]
    if not (key.primary_key or _unique(connection, write, key.name)):
        problems.append(f"{kind}.key: column {write.name}.{key.name} is neither primary nor unique")
    handled = {key.name} if (key_is_generated(key) or mapping.key_template) else set()
    if not handled and "create" not in mapping.sql:
        problems.append(
            f"{kind}.key_template: the database does not generate {write.name}.{key.name};"
            ' give a template (e.g. "{userName}") or a [' + kind + ".sql] create statement"
        )
    for option in ("id_column", "changed", "created", "profile"):
        name = getattr(mapping, option)
        if name is not None:
            if name not in write.c:
                problems.append(f"{kind}.{option}: no column {name} in {write.name}")
                continue
            handled.add(name)
            _option_type(kind, option, write.c[name], problems)
    for column_map in mapping.columns:
        if column_map.column not in write.c or column_map.column not in read.c:
            missing_in = write.name if column_map.column not in write.c else read.name
            problems.append(f"{column_map.key}: no column {column_map.column} in {missing_in}")
            continue
        handled.add(column_map.column)
        _column_type(column_map, write.c[column_map.column], problems)
    name_map = mapping.name_map
    if name_map.column in write.c and not _unique(connection, write, name_map.column):
        problems.append(
            f"{name_map.key}: column {write.name}.{name_map.column} is not unique; add a unique"
            " index (scim-bridge finds records again by it)"
        )
    if mapping.active_column is not None:
        _active(mapping, write, problems)
        handled.add(mapping.active_column)
    if mapping.password_column is not None:
        _password(mapping, write, problems)
    for name in mapping.defaults:
        if name not in write.c:
            problems.append(f"{kind}.defaults.{name}: no column {name} in {write.name}")
        handled.add(name)
    for column in write.c:
        required = not column.nullable and column.server_default is None
        if required and column.name not in handled and not column.primary_key:
            problems.append(
                f"{kind}.defaults: column {write.name}.{column.name} is NOT NULL without a"
                f" database default; map it in [{kind}.columns] or give it in [{kind}.defaults]"
            )


def _members(
    connection: Connection, mapping: SqlMapping, metadata: MetaData, problems: list[str]
) -> None:
    assert mapping.groups is not None
    members = mapping.groups.members
    if members is None:
        return
    if members.column is not None:
        users = metadata.tables.get(mapping.users.write_table)
        if users is not None and members.column not in users.c:
            problems.append(f"groups.members.column: no column {members.column} in {users.name}")
        return
    assert members.table is not None
    table = reflect(connection, metadata, members.table)
    if table is None:
        problems.append(f"groups.members.table: no table {members.table} in the database")
        return
    for option in ("group", "user"):
        name = getattr(members, option)
        if name not in table.c:
            problems.append(f"groups.members.{option}: no column {name} in {table.name}")
    for name in members.defaults:
        if name not in table.c:
            problems.append(f"groups.members.defaults.{name}: no column {name} in {table.name}")
    for column in table.c:
        handled = {members.group, members.user, *members.defaults}
        required = not column.nullable and column.server_default is None
        generated = column.primary_key and key_is_generated(column)
        if required and column.name not in handled and not generated:
            problems.append(
                f"groups.members.defaults: column {table.name}.{column.name} is NOT NULL"
                " without a database default; give it in [groups.members.defaults]"
            )


def _unique(connection: Connection, table: Table, column: str) -> bool:
    """Whether ``column`` alone is the primary key, a unique constraint or a unique index
    (``lower(column)`` counts: it is stricter)."""
    if [c.name for c in table.primary_key.columns] == [column]:
        return True
    inspector = sa_inspect(connection)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SAWarning)  # expression indexes: read below
        constraints = inspector.get_unique_constraints(table.name, schema=table.schema)
        # SQLite names an inline UNIQUE only as an automatic index.
        extra = {"include_auto_indexes": True} if connection.dialect.name == "sqlite" else {}
        indexes = inspector.get_indexes(table.name, schema=table.schema, **extra)
    if any(list(constraint["column_names"]) == [column] for constraint in constraints):
        return True
    for index in indexes:
        if not index.get("unique"):
            continue
        names = list(index.get("column_names") or [])
        expressions = " ".join(str(e) for e in index.get("expressions") or []).lower()
        if names == [column] or f"lower({column.lower()})" in expressions.replace('"', ""):
            return True
    return False


def _option_type(kind: str, option: str, column: Column[Any], problems: list[str]) -> None:
    where = f"{kind}.{option}: column {column.table.name}.{column.name}"
    if option in ("changed", "created") and not isinstance(column.type, DateTime | Date | Integer):
        problems.append(f"{where} is {column.type}, not a date/time or number")
    unbounded_text = (
        isinstance(column.type, String) and getattr(column.type, "length", None) is None
    )
    if option == "profile" and not (isinstance(column.type, JSON | Text) or unbounded_text):
        problems.append(f"{where} is {column.type}; the profile needs JSON or TEXT")
    if option == "id_column" and getattr(column.type, "length", 64) < 36:
        problems.append(f"{where} holds {column.type}; SCIM ids need at least 36 characters")


def _column_type(column_map: ColumnMap, column: Column[Any], problems: list[str]) -> None:
    kind = column.type
    if column_map.boolean is not None:
        _fits(column_map.key, column, [column_map.boolean.true, column_map.boolean.false], problems)
    elif column_map.date_format is not None and not isinstance(kind, String):
        problems.append(f"{column_map.key}: format needs a text column; {column.name} is {kind}")
    elif isinstance(kind, Boolean | Integer | DateTime | Date | JSON | String):
        return
    elif type(kind).__name__ in ("LargeBinary", "BLOB", "BYTEA"):
        problems.append(f"{column_map.key}: column {column.name} is {kind}, which holds no text")


def _active(mapping: ResourceMapping, table: Table, problems: list[str]) -> None:
    name = mapping.active_column
    assert name is not None and mapping.active is not None
    if name not in table.c:
        problems.append(f"users.active.column: no column {name} in {table.name}")
        return
    _fits("users.active", table.c[name], [mapping.active.true, mapping.active.false], problems)


def _fits(key: str, column: Column[Any], values: list[Any], problems: list[str]) -> None:
    kind = column.type
    for value in values:
        if isinstance(kind, Integer | Boolean) and not isinstance(value, bool | int):
            problems.append(f"{key}: {value!r} does not fit column {column.name} ({kind})")
        elif isinstance(kind, String) and not isinstance(value, str):
            problems.append(f"{key}: give {value!r} as a string; column {column.name} is {kind}")
        elif isinstance(kind, String) and kind.length is not None and len(value) > kind.length:
            problems.append(f"{key}: {value!r} is longer than column {column.name} ({kind})")


def _password(mapping: ResourceMapping, table: Table, problems: list[str]) -> None:
    name = mapping.password_column
    assert name is not None and mapping.password_scheme is not None
    if name not in table.c:
        problems.append(f"users.password.column: no column {name} in {table.name}")
        return
    length = getattr(table.c[name].type, "length", None)
    needed = HASH_LENGTHS.get(mapping.password_scheme.name, 0)
    if isinstance(length, int) and length < needed:
        problems.append(
            f"users.password.column: column {table.name}.{name} holds {length} characters;"
            f" {mapping.password_scheme.name} hashes need {needed}"
        )
