"""The SQL mapping file (TOML, named by ``SCIM_BRIDGE_SQL_MAPPING``): its model and its parser.

Parsing checks everything that needs no database: unknown keys, missing required keys, SCIM
attribute paths, the active pair, the hash scheme, identifiers and statement parameters. What
needs the database (tables, columns, types, NOT NULL) is :mod:`.check`'s. Every key is
documented in ``docs/sql-mapping.md``; keep the two in step.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from scim_bridge.adapters.mapping import (
    ActiveMapping,
    AttributePath,
    MappingError,
    MappingProblems,
    PasswordScheme,
    mapped_paths,
    mapped_twice,
    name_map,
    read_toml,
    required_table,
    toml_name,
    toml_pair,
    unique_name,
)
from scim_bridge.adapters.mapping import toml_string as _string
from scim_bridge.adapters.mapping import toml_table as _table
from scim_bridge.adapters.mapping import unknown_keys as _unknown

USER_OPERATIONS = ("create", "update", "deactivate", "reactivate", "password", "delete")
GROUP_OPERATIONS = ("create", "update", "delete", "add_member", "remove_member")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$")
_PARAMETER = re.compile(r"(?<![:\w]):([A-Za-z_][A-Za-z0-9_]*)")


@dataclass(frozen=True)
class ColumnMap:
    """One ``[*.columns]`` entry: a SCIM attribute path stored in a column."""

    key: str
    """Its TOML key, for messages (``users.columns."name.givenName"``)."""
    path: AttributePath
    column: str
    boolean: ActiveMapping | None = None
    """For a boolean attribute stored as a pair of values (``{true = "Y", false = "N"}``)."""
    date_format: str | None = None
    """``strftime`` format of a date kept in a text column (``"%Y%m%d"``)."""


@dataclass(frozen=True)
class Members:
    """``[groups.members]``: a link table, or a group column on the user row."""

    table: str | None = None
    group: str = ""
    user: str = ""
    column: str | None = None
    defaults: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ResourceMapping:
    """``[users]`` or ``[groups]``."""

    kind: str  # "users" or "groups"
    table: str
    write_table: str
    key: str
    key_template: str | None
    id_column: str | None
    changed: str | None
    created: str | None
    profile: str | None
    columns: tuple[ColumnMap, ...]
    defaults: Mapping[str, Any]
    sql: Mapping[str, str]
    active_column: str | None = None
    active: ActiveMapping | None = None
    password_column: str | None = None
    password_scheme: PasswordScheme | None = None
    deprovision: str = "deactivate"
    members: Members | None = None

    @property
    def name_map(self) -> ColumnMap:
        """The unique name column: ``userName`` for users, ``displayName`` for groups."""
        found = name_map(self.kind, self.columns)
        assert found is not None  # parse_mapping requires it
        return found


@dataclass(frozen=True)
class SqlMapping:
    users: ResourceMapping
    groups: ResourceMapping | None
    link_table: str | None
    source: str = "the default mapping"


def load_mapping(path: str | Path) -> SqlMapping:
    """Read and parse the mapping file at ``path``; raises :class:`MappingProblems`."""
    return parse_mapping(read_toml(path), source=str(path))


def parse_mapping(document: Mapping[str, Any], *, source: str = "mapping") -> SqlMapping:
    """Parse a mapping already read from TOML; raises :class:`MappingProblems`."""
    problems: list[str] = []
    _unknown(document, "", {"users", "groups", "link"}, problems)
    users = _resource(document.get("users"), "users", problems)
    groups = None
    if "groups" in document:
        groups = _resource(document.get("groups"), "groups", problems)
    link_table = None
    if "link" in document:
        link = _table(document["link"], "link", problems)
        _unknown(link, "link", {"table"}, problems)
        link_table = _identifier(link, "link", "table", problems, required=True)
    if problems or users is None:
        raise MappingProblems(source, problems or ["users: the [users] table is required"])
    return SqlMapping(users, groups, link_table, source)


def _resource(raw: Any, kind: str, problems: list[str]) -> ResourceMapping | None:
    table = required_table(raw, kind, problems)
    if table is None:
        return None
    allowed = {"table", "write_table", "key", "key_template", "id_column", "changed", "created"}
    allowed |= {"profile", "columns", "defaults", "sql"}
    allowed |= {"active", "password", "deprovision"} if kind == "users" else {"members"}
    _unknown(table, kind, allowed, problems)
    name = _identifier(table, kind, "table", problems, required=True)
    key = _identifier(table, kind, "key", problems, required=True)
    columns = _columns(table.get("columns"), f"{kind}.columns", problems)
    if name_map(kind, columns) is None:
        problems.append(
            f"{kind}.columns: map {unique_name(kind)} to the unique column that holds it"
        )
    operations = USER_OPERATIONS if kind == "users" else GROUP_OPERATIONS
    # Columns the insert fills besides the mapped ones are parameters of a custom create too.
    extra = {str(n) for n in (table.get("defaults") or {})}
    for option in ("changed", "created", "id_column"):
        if isinstance(table.get(option), str) and table[option]:
            extra.add(table[option])
    for part in ("active", "password"):
        if isinstance(table.get(part), Mapping) and isinstance(table[part].get("column"), str):
            extra.add(table[part]["column"])
    sql = _statements(table.get("sql"), f"{kind}.sql", operations, columns, extra, problems)
    mapping = ResourceMapping(
        kind=kind,
        table=name or "",
        write_table=_identifier(table, kind, "write_table", problems) or name or "",
        key=key or "",
        key_template=_string(table, kind, "key_template", problems),
        id_column=_identifier(table, kind, "id_column", problems),
        changed=_identifier(table, kind, "changed", problems),
        created=_identifier(table, kind, "created", problems),
        profile=_identifier(table, kind, "profile", problems),
        columns=columns,
        defaults=_table(table.get("defaults", {}), f"{kind}.defaults", problems),
        sql=sql,
    )
    if kind == "users":
        return _user_parts(mapping, table, problems)
    if "members" in table:
        mapping = _replace(mapping, members=_members(table["members"], problems))
    return mapping


def _user_parts(
    mapping: ResourceMapping, table: Mapping[str, Any], problems: list[str]
) -> ResourceMapping:
    changes: dict[str, Any] = {}
    if "active" in table:
        active = _table(table["active"], "users.active", problems)
        _unknown(active, "users.active", {"column", "true", "false"}, problems)
        changes["active_column"] = _identifier(active, "users.active", "column", problems, True)
        pair = toml_pair(active, "users.active", problems)
        changes["active"] = pair
    if "password" in table:
        password = _table(table["password"], "users.password", problems)
        _unknown(password, "users.password", {"column", "scheme"}, problems)
        column = _identifier(password, "users.password", "column", problems, required=True)
        changes["password_column"] = column
        try:
            changes["password_scheme"] = PasswordScheme(str(password.get("scheme", "bcrypt")))
        except MappingError as exc:
            problems.append(f"users.{exc}")
    deprovision = table.get("deprovision", "deactivate")
    if deprovision not in ("deactivate", "delete"):
        problems.append(f'users.deprovision: {deprovision!r} is neither "deactivate" nor "delete"')
    else:
        changes["deprovision"] = deprovision
    return _replace(mapping, **changes)


def _members(raw: Any, problems: list[str]) -> Members | None:
    where = "groups.members"
    members = _table(raw, where, problems)
    _unknown(members, where, {"table", "group", "user", "column", "defaults"}, problems)
    if "column" in members:
        if "table" in members:
            problems.append(f"{where}: give either table (a link table) or column, not both")
        return Members(column=_identifier(members, where, "column", problems, required=True))
    return Members(
        table=_identifier(members, where, "table", problems, required=True),
        group=_identifier(members, where, "group", problems, required=True) or "",
        user=_identifier(members, where, "user", problems, required=True) or "",
        defaults=_table(members.get("defaults", {}), f"{where}.defaults", problems),
    )


def _columns(raw: Any, where: str, problems: list[str]) -> tuple[ColumnMap, ...]:
    columns: list[ColumnMap] = []
    for key, path, target in mapped_paths(raw, where, problems):
        if isinstance(target, str):
            if _IDENTIFIER.match(target):
                columns.append(ColumnMap(key, path, target))
            else:
                problems.append(f"{key}: {target!r} is not a column name")
            continue
        entry = _table(target, key, problems)
        _unknown(entry, key, {"column", "true", "false", "format"}, problems)
        column = _identifier(entry, key, "column", problems, required=True)
        boolean = toml_pair(entry, key, problems) if "true" in entry or "false" in entry else None
        date_format = _string(entry, key, "format", problems)
        if column:
            columns.append(ColumnMap(key, path, column, boolean, date_format))
    mapped_twice(((c.key, c.column) for c in columns), "column", problems)
    return tuple(columns)


def statement_parameters(statement: str) -> set[str]:
    """The ``:name`` parameters of a custom statement."""
    return set(_PARAMETER.findall(statement))


def known_parameters(
    operation: str, columns: tuple[ColumnMap, ...], extra: set[str] | frozenset[str] = frozenset()
) -> set[str]:
    """The parameters a custom statement of ``operation`` may use."""
    known = {"key", "resource_id"}
    if operation in ("create", "update"):
        known |= {c.path.parameter for c in columns} | {c.column for c in columns}
        known |= {"active"}
    if operation == "create":
        known |= extra
    if operation in ("create", "password"):
        known.add("password_hash")
    if operation in ("add_member", "remove_member"):
        known |= {"group_key", "user_key"}
    return known


def _statements(
    raw: Any,
    where: str,
    operations: tuple[str, ...],
    columns: tuple[ColumnMap, ...],
    extra: set[str],
    problems: list[str],
) -> dict[str, str]:
    if raw is None:
        return {}
    statements = _table(raw, where, problems)
    _unknown(statements, where, set(operations), problems)
    result: dict[str, str] = {}
    for operation, statement in statements.items():
        if operation not in operations:
            continue
        if not isinstance(statement, str) or not statement.strip():
            problems.append(f"{where}.{operation}: give the statement as a non-empty string")
            continue
        known = known_parameters(operation, columns, extra)
        unknown = statement_parameters(statement) - known
        if unknown:
            names = ", ".join(f":{name}" for name in sorted(unknown))
            allowed = ", ".join(f":{n}" for n in sorted(known))
            problems.append(f"{where}.{operation}: unknown parameter {names}; known: {allowed}")
        result[operation] = statement
    return result


_identifier = partial(toml_name, pattern=_IDENTIFIER, what="a table or column name")


def _replace(mapping: ResourceMapping, **changes: Any) -> ResourceMapping:
    from dataclasses import replace

    return replace(mapping, **changes)
