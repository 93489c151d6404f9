"""The default mapping: scim-bridge's own three tables, created on the first call if absent.

Without ``SCIM_BRIDGE_SQL_MAPPING`` the adapter uses the mapping below, through the same code as
any other mapping; the tables (documented in ``docs/sql-mapping.md``) are created when missing, so
a demo or a new application needs nothing else. An existing table is used as it is.
"""

from __future__ import annotations

import re

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    func,
)
from sqlalchemy.dialects import mysql

from scim_bridge.adapters.sql.model import SqlMapping, parse_mapping

DEFAULT_TABLE_PREFIX = "legacy_"

# MariaDB's DATETIME keeps whole seconds unless told otherwise; delta imports need finer.
_TIMESTAMP = DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def default_mapping(prefix: str = DEFAULT_TABLE_PREFIX) -> SqlMapping:
    """The mapping of the built-in tables named with ``prefix``."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", prefix):
        raise ValueError(f"table_prefix {prefix!r} must be letters, digits and '_'")
    return parse_mapping(
        {
            "users": {
                "table": f"{prefix}users",
                "key": "id",
                "id_column": "scim_id",
                "changed": "updated_at",
                "created": "created_at",
                "profile": "profile",
                "columns": {
                    "userName": "user_name",
                    "externalId": "external_id",
                    "name.givenName": "given_name",
                    "name.familyName": "family_name",
                    "displayName": "display_name",
                    "emails[primary eq true].value": "email",
                },
                "active": {"column": "active", "true": True, "false": False},
                "password": {"column": "password_hash", "scheme": "scrypt"},
            },
            "groups": {
                "table": f"{prefix}groups",
                "key": "id",
                "id_column": "scim_id",
                "changed": "updated_at",
                "created": "created_at",
                "profile": "profile",
                "columns": {"displayName": "display_name", "description": "description"},
                "members": {
                    "table": f"{prefix}memberships",
                    "group": "group_id",
                    "user": "user_id",
                },
            },
        },
        source="the default mapping",
    )


def define_default_tables(metadata: MetaData, prefix: str) -> tuple[Table, Table, Table]:
    """The built-in tables, for ``create_all`` on first use."""
    users = Table(
        f"{prefix}users",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("scim_id", String(64), unique=True, nullable=True),
        Column("user_name", String(255), unique=True, nullable=False),
        Column("external_id", String(255)),
        Column("given_name", String(255)),
        Column("family_name", String(255)),
        Column("display_name", String(255)),
        Column("email", String(255)),
        Column("active", Boolean, nullable=False, default=True),
        Column("password_hash", String(255)),
        Column("profile", JSON),
        Column("created_at", _TIMESTAMP, nullable=False),
        Column("updated_at", _TIMESTAMP, nullable=False),
    )
    groups = Table(
        f"{prefix}groups",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("scim_id", String(64), unique=True, nullable=True),
        Column("display_name", String(255), unique=True, nullable=False),
        Column("description", Text),
        Column("profile", JSON),
        Column("created_at", _TIMESTAMP, nullable=False),
        Column("updated_at", _TIMESTAMP, nullable=False),
    )
    memberships = Table(
        f"{prefix}memberships",
        metadata,
        Column("group_id", Integer, ForeignKey(groups.c.id, ondelete="CASCADE"), primary_key=True),
        Column("user_id", Integer, ForeignKey(users.c.id, ondelete="CASCADE"), primary_key=True),
    )
    # The code checks case-insensitive uniqueness; these indexes close the race between two
    # concurrent creates of different resources, where the database can index an expression.
    # (MariaDB's default collation already ignores case in the plain unique index.)
    for table, column in ((users, users.c.user_name), (groups, groups.c.display_name)):
        index = Index(f"{table.name}_{column.name}_ci", func.lower(column), unique=True)
        # A tuple of dialect names is documented and supported; the type hint says str only.
        index.ddl_if(dialect=("sqlite", "postgresql"))  # type: ignore[arg-type]
    return users, groups, memberships


def define_link_table(metadata: MetaData, name: str) -> Table:
    """The table keeping SCIM id <-> legacy key when the application has no column for it.

    Created in the application's database only when the mapping names it (``[link] table``).
    """
    # One link per record (the key is primary); a SCIM id whose record the application deleted
    # may keep a stale row, which lookups skip by joining the record's table.
    return Table(
        name,
        metadata,
        Column("kind", String(1), primary_key=True),  # "u" or "g"
        Column("legacy_key", String(255), primary_key=True),
        Column("scim_id", String(64), nullable=False),
        Index(f"{name}_scim_id", "kind", "scim_id"),
    )
