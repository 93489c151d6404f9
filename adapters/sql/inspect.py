"""``scim-bridge mapping init``: a starting mapping for an existing table, from reflection.

Every guess is marked ``# guess: confirm`` and every NOT NULL column without a database default
that no SCIM attribute fills is listed under ``[users.defaults]`` with a ``# fill in`` mark, so
``mapping check`` passes only once the operator has looked at each.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Boolean, Column, Date, DateTime, Integer, MetaData, String
from sqlalchemy.engine import Connection

from scim_bridge.adapters.sql.check import HASH_LENGTHS, key_is_generated, reflect

# Column-name fragments -> SCIM attribute path, most specific first.
_GUESSES: list[tuple[tuple[str, ...], str]] = [
    (("username", "user_name", "login", "logon", "uid", "account"), "userName"),
    (("givenname", "given_name", "first_name", "firstname", "fname", "vorname"), "name.givenName"),
    (("familyname", "family_name", "last_name", "lastname", "lname", "surname"), "name.familyName"),
    (("display_name", "displayname", "full_name", "fullname"), "displayName"),
    (("email", "mail"), 'emails[type eq "work"].value'),
    (("phone", "tel"), 'phoneNumbers[type eq "work"].value'),
    (("title", "job"), "title"),
    (
        ("dept", "department"),
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
    ),
    (
        ("emp_no", "employee_number", "employee_id", "personnel"),
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber",
    ),
    (("external_id", "externalid"), "externalId"),
    (("locale", "language"), "locale"),
    (("timezone", "tz"), "timezone"),
]
_ACTIVE = ("active", "enabled", "status", "state", "disabled", "locked")
_PASSWORD = ("password", "passwd", "pwd", "pass_hash", "password_hash")
_CHANGED = ("modified", "updated", "changed", "last_update", "mtime", "updated_at")
_ID_COLUMN = ("scim_id", "scimid", "okta_id")


def init_mapping(connection: Connection, table_name: str) -> str:
    """A commented TOML mapping for ``table_name``; raises ``LookupError`` if it is absent."""
    table = reflect(connection, MetaData(), table_name)
    if table is None:
        raise LookupError(f"no table or view {table_name} in the database")
    table.info["dialect"] = connection.dialect.name
    lines = [
        f"# A starting mapping for {table_name}, written by `scim-bridge mapping init`.",
        "# Lines marked `guess: confirm` are guesses from column names and types: check each,",
        "# then run `scim-bridge mapping check`. Reference: docs/sql-mapping.md.",
        "",
        "[users]",
        f"table = {_q(table_name)}",
    ]
    keys = list(table.primary_key.columns)
    key = keys[0] if len(keys) == 1 else None
    if key is None:
        lines.append('key = ""  # fill in: the table has no single-column primary key')
    else:
        lines.append(f"key = {_q(key.name)}")
        if not key_is_generated(key):
            lines.append('key_template = "{userName}"  # guess: the database does not generate it')
    used = {key.name} if key is not None else set()
    id_column = _find(table.c, _ID_COLUMN)
    lines.append(f"id_column = {_q(id_column.name if id_column is not None else '')}")
    if id_column is not None:
        used.add(id_column.name)
    changed = _find(table.c, _CHANGED, (DateTime, Date, Integer))
    if changed is not None:
        lines.append(f"changed = {_q(changed.name)}  # guess: confirm")
        used.add(changed.name)
    active = _find(table.c, _ACTIVE, exclude=used)
    password = _find(table.c, _PASSWORD, (String,), exclude=used)
    used |= {c.name for c in (active, password) if c is not None}
    lines += ["", "[users.columns]"]
    mapped: set[str] = set()
    for column in table.c:
        if column.name in used:
            continue
        path = _guess_path(column.name)
        if path is None or path in mapped:
            lines.append(f"# {_q(column.name)} = {_q(column.name)}  # no guess: map it or drop it")
            continue
        mapped.add(path)
        used.add(column.name)
        lines.append(f"{_q(path)} = {_q(column.name)}  # guess: confirm")
    if "userName" not in mapped:
        lines.append('userName = ""  # fill in: the unique login column')
    if active is not None:
        lines += [
            "",
            "[users.active]  # guess: confirm the stored values",
            f"column = {_q(active.name)}",
        ]
        lines += _active_values(active)
    if password is not None:
        length = getattr(password.type, "length", None) or 255
        scheme = "bcrypt" if length >= HASH_LENGTHS["bcrypt"] else "fill in"
        lines += ["", "[users.password]  # guess: confirm the application's hash format"]
        lines += [f"column = {_q(password.name)}", f"scheme = {_q(scheme)}"]
    required = [
        c
        for c in table.c
        if not c.nullable and c.server_default is None and c.name not in used and not c.primary_key
    ]
    if required:
        lines += ["", "[users.defaults]  # NOT NULL columns without a database default"]
        lines += [f'{_q(c.name)} = ""  # fill in: {c.type}' for c in required]
    lines += [
        "",
        "# Groups: uncomment and name the group table and its link table, if the application",
        "# has groups (roles). Without [groups], GROUP_PUSH is not advertised.",
        '# [groups]\n# table = "roles"\n# key = "role_id"\n# [groups.columns]',
        '# displayName = "role_name"\n# [groups.members]\n# table = "employee_roles"',
        '# group = "role_id"\n# user = "emp_no"',
        "",
        "# Without an id column scim-bridge can keep the SCIM id <-> key link in a table of its",
        "# own in this database (created on first use), if you allow it:",
        '# [link]\n# table = "scim_bridge_links"',
        "",
    ]
    return "\n".join(lines)


def _q(text: str) -> str:
    # A JSON string is a TOML basic string for every character a column name has.
    return json.dumps(text)


def _find(
    columns: Any,
    names: tuple[str, ...],
    types: tuple[type, ...] | None = None,
    exclude: set[str] | None = None,
) -> Column[Any] | None:
    for name in names:
        for column in columns:
            if exclude and column.name in exclude:
                continue
            if types is not None and not isinstance(column.type, types):
                continue
            if column.name.lower() == name:
                return column  # type: ignore[no-any-return]
    return None


def _guess_path(column_name: str) -> str | None:
    lowered = column_name.lower()
    for fragments, path in _GUESSES:
        if any(lowered == f or lowered.startswith(f) or lowered.endswith(f) for f in fragments):
            return path
    return None


def _active_values(column: Column[Any]) -> list[str]:
    if isinstance(column.type, Boolean):
        return ["true = true", "false = false"]
    if isinstance(column.type, Integer):
        return ["true = 1", "false = 0"]
    if column.name.lower() in ("disabled", "locked"):
        return ['true = "N"  # guess: confirm', 'false = "Y"  # guess: confirm']
    return ['true = "A"  # guess: confirm', 'false = "I"  # guess: confirm']
