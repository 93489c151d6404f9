"""The ``sql`` adapter: a legacy application whose users and groups are rows in SQL tables.

The tables are described by a declarative mapping (``docs/sql-mapping.md``): :mod:`.model` parses
the TOML file, :mod:`.check` validates it against the live database, :mod:`.convert` converts
values, :mod:`.resources` binds a mapping to its reflected tables, :mod:`.adapter`, :mod:`.users`
and :mod:`.groups` are the adapter, :mod:`.engine` its connections and errors, :mod:`.default` the
built-in tables used without a mapping file, :mod:`.inspect` writes a starting mapping and
:mod:`.commands` is ``scim-bridge mapping``.
"""

from __future__ import annotations

from scim_bridge.adapters.mapping import MappingProblems
from scim_bridge.adapters.sql.adapter import capabilities_of
from scim_bridge.adapters.sql.groups import GroupOperations
from scim_bridge.adapters.sql.model import SqlMapping, load_mapping, parse_mapping

__all__ = [
    "MappingProblems",
    "SqlAdapter",
    "SqlMapping",
    "capabilities_of",
    "load_mapping",
    "parse_mapping",
]


class SqlAdapter(GroupOperations):
    """Users, groups and memberships in the tables a :class:`SqlMapping` describes."""
