"""The ``sql`` adapter: a legacy application's users and groups as rows, driven by a mapping.

Without a mapping file it uses :mod:`.default`'s tables, through the same code. Each call is one
short transaction bounded by its deadline (:mod:`.engine`), and the port's errors only.

Options (the ``sql`` entry point of ``scim_bridge.adapters``): ``url`` (SQLAlchemy URL:
``sqlite:///file.db``, ``postgresql+psycopg://...``, ``mysql+pymysql://...``), ``mapping`` (path
of the TOML mapping file, ``SCIM_BRIDGE_SQL_MAPPING``), ``table_prefix`` (of the default tables,
``legacy_``), ``connect_timeout_s`` (5.0) and ``read_timeout_s`` (MariaDB, 60).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Self

from sqlalchemy import MetaData, Table, delete, select, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from scim_bridge.adapters.errors import PermanentError
from scim_bridge.adapters.mapping import MappingProblems, capabilities_for
from scim_bridge.adapters.port import (
    Capabilities,
    Deadline,
    LegacyAdapter,
    LegacyRecord,
    ScimDocument,
)
from scim_bridge.adapters.sql.check import check_mapping, reflect
from scim_bridge.adapters.sql.convert import stamp
from scim_bridge.adapters.sql.default import (
    DEFAULT_TABLE_PREFIX,
    default_mapping,
    define_default_tables,
    define_link_table,
)
from scim_bridge.adapters.sql.engine import (
    DEADLINE_OPTION,
    UniqueViolation,
    build_engine,
    install_hooks,
    port_error,
)
from scim_bridge.adapters.sql.model import SqlMapping, load_mapping
from scim_bridge.adapters.sql.resources import Bound


def capabilities_of(mapping: SqlMapping) -> Capabilities:
    """The Okta provisioning functions a mapping supports (``/ServiceProviderConfigs``)."""
    users = mapping.users
    return capabilities_for(
        deactivation=users.active is not None,
        deactivation_deletes=users.deprovision == "delete",
        password=users.password_column is not None or "password" in users.sql,
        group_push=mapping.groups is not None and mapping.groups.members is not None,
    )


class SqlBase(LegacyAdapter):
    """Connections, set-up and the statements users and groups share; see :class:`SqlAdapter`."""

    def __init__(
        self,
        engine: Engine,
        *,
        table_prefix: str = DEFAULT_TABLE_PREFIX,
        mapping: SqlMapping | None = None,
    ) -> None:
        self._engine = engine
        self.default = mapping is None
        self.mapping = mapping if mapping is not None else default_mapping(table_prefix)
        self.metadata = MetaData()
        """The adapter's tables (the default ones and the link table it may create)."""
        self._created: list[Any] = []
        if self.default:
            self._created = list(define_default_tables(self.metadata, table_prefix))
        if self.mapping.link_table is not None:
            self._created.append(define_link_table(self.metadata, self.mapping.link_table))
        self._reflected = MetaData()
        self.capabilities = capabilities_of(self.mapping)
        self._users_bound: Bound | None = None
        self._groups_bound: Bound | None = None
        self._member_table: Table | None = None
        self._ready = False
        self._lock = threading.Lock()
        install_hooks(engine)

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> Self:
        """Entry-point factory: reads the mapping file (no connection is opened here)."""
        mapping_path = options.get("mapping")
        mapping = load_mapping(mapping_path) if mapping_path else None
        prefix = str(options.get("table_prefix", DEFAULT_TABLE_PREFIX))
        if mapping is None:
            default_mapping(prefix)  # validates the prefix before an engine exists
        return cls(build_engine(options), table_prefix=prefix, mapping=mapping)

    def close(self) -> None:
        self._engine.dispose()

    # Set-up -----------------------------------------------------------------------------------
    def check(self) -> list[str]:
        """Every problem of the mapping against the live database (empty: ready to run)."""
        with self._engine.connect() as connection:
            if self._created:
                self.metadata.create_all(connection, tables=self._created, checkfirst=True)
                connection.commit()
            metadata = MetaData()
            return check_mapping(connection, self.mapping, metadata)

    def _prepare(self, connection: Connection) -> None:
        if self._ready:
            return
        with self._lock:
            if self._ready:
                return
            problems = self.check()
            if problems:
                raise PermanentError(str(MappingProblems(self.mapping.source, problems)))
            link = self.metadata.tables.get(self.mapping.link_table or "")
            self._users_bound = self._bind(connection, self.mapping.users, link)
            if self.mapping.groups is not None:
                self._groups_bound = self._bind(connection, self.mapping.groups, link)
                members = self.mapping.groups.members
                if members is not None and members.table is not None:
                    self._member_table = self._table(connection, members.table)
            connection.rollback()  # reflection began a transaction; calls begin their own
            self._ready = True

    def _bind(self, connection: Connection, mapping: Any, link: Any) -> Bound:
        return Bound(
            mapping,
            self._table(connection, mapping.table),
            self._table(connection, mapping.write_table),
            link,
        )

    def _table(self, connection: Connection, name: str) -> Table:
        # The built-in tables as defined (exact types); any other as the database has it.
        table = self.metadata.tables.get(name)
        if table is None:
            table = reflect(connection, self._reflected, name)
        assert table is not None  # the check found it
        return table

    def _bound(self, deadline: Deadline, what: str) -> Bound:
        """The users' binding, checking the mapping first if no call has yet."""
        deadline.check(what)
        if not self._ready:
            try:
                with self._engine.connect() as connection:
                    self._prepare(connection)
            except (DBAPIError, PoolTimeoutError) as exc:
                raise port_error(exc, what) from None
        return self.users

    def _with_members(
        self, connection: Connection, records: list[LegacyRecord]
    ) -> list[LegacyRecord]:
        """Records of groups with their members filled in (:mod:`.groups` overrides this)."""
        return records

    @property
    def users(self) -> Bound:
        assert self._users_bound is not None
        return self._users_bound

    @property
    def groups(self) -> Bound:
        if self._groups_bound is None:
            raise PermanentError("the SQL mapping has no [groups]: group push is not supported")
        return self._groups_bound

    @contextmanager
    def _transaction(self, deadline: Deadline, what: str) -> Iterator[Connection]:
        """One transaction bounded by ``deadline``, its errors turned into the port's."""
        deadline.check(what)
        try:
            with self._engine.connect() as connection:
                self._prepare(connection)
                connection = connection.execution_options(**{DEADLINE_OPTION: deadline})
                with connection.begin():
                    yield connection
        except (DBAPIError, PoolTimeoutError) as exc:
            raise port_error(exc, what) from None

    # Shared statements ------------------------------------------------------------------------
    def _custom(
        self, connection: Connection, bound: Bound, operation: str, parameters: dict[str, Any]
    ) -> Any:
        """Run the mapping's ``[kind.sql] operation`` statement with named bound parameters."""
        statement = bound.mapping.sql[operation]
        return connection.execute(text(statement), parameters)

    def _stamped(self, bound: Bound, values: dict[str, Any]) -> dict[str, Any]:
        if bound.changed is not None:
            values[bound.changed.name] = stamp(bound.changed)
        return values

    def _create(
        self,
        what: str,
        deadline: Deadline,
        bound: Bound,
        resource_id: str,
        document: ScimDocument,
        values: dict[str, Any],
        parameters: dict[str, Any],
    ) -> str:
        """Insert a row unless an earlier delivery of this create did; link it to its SCIM id."""
        name = bound.name_of(document)
        try:
            with self._transaction(deadline, what) as connection:
                earlier, holders = bound.earlier_or_holders(connection, resource_id, name)
                if earlier is not None:
                    return earlier
                if holders:
                    raise bound.conflict(name, holders[0])
                key = self._insert(connection, bound, resource_id, document, values, parameters)
                bound.link_to(connection, resource_id, key)
                return key
        except UniqueViolation:
            # Two deliveries of one create both found nothing and both inserted; a unique
            # constraint refused the loser, which answers with the winner's key. Any other
            # value taken is a real conflict.
            with self._transaction(deadline, what) as connection:
                winner = bound.linked_key(connection, resource_id)
            if winner is None:
                raise
            return winner

    def _insert(
        self,
        connection: Connection,
        bound: Bound,
        resource_id: str,
        document: ScimDocument,
        values: dict[str, Any],
        parameters: dict[str, Any],
    ) -> str:
        row = {**bound.defaults, **values}
        key = bound.new_key(document)
        if key is not None:
            row[bound.key.name] = key
        if bound.id_column is not None:
            row[bound.id_column.name] = resource_id
        if bound.created is not None:
            row[bound.created.name] = stamp(bound.created)
        row = self._stamped(bound, row)
        if "create" in bound.mapping.sql:
            result = self._custom(
                connection,
                bound,
                "create",
                {**bound.parameters(document, row), "key": key, "resource_id": resource_id},
            )
            returned = result.first() if result.returns_rows else None
            if returned is not None:
                return str(returned[0])
        else:
            inserted = bound.insert_row(connection, row)
            if key is None and inserted is not None:
                key = inserted
        if key is None:
            key = connection.scalar(select(bound.key).where(bound.name == bound.name_of(document)))
        if key is None:
            raise PermanentError(f"the new {bound.noun} cannot be found after its insert")
        return str(key)

    def _delete(self, connection: Connection, bound: Bound, key: str, parsed: Any) -> None:
        if "delete" in bound.mapping.sql:
            self._custom(connection, bound, "delete", {"key": parsed, "resource_id": None})
        else:
            connection.execute(delete(bound.write).where(bound.key == parsed))
        bound.unlink(connection, key)

    def _update(
        self, connection: Connection, bound: Bound, key: str, values: dict[str, Any]
    ) -> None:
        parsed = bound.parse_key(key)
        if parsed is None:
            raise self._missing(bound, key)
        if bound.update_row(connection, parsed, self._stamped(bound, values)) == 0:
            raise self._missing(bound, key)

    @staticmethod
    def _missing(bound: Bound, key: str) -> PermanentError:
        return PermanentError(f"{bound.noun} {key} does not exist in the legacy application")
