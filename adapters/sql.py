"""A legacy application whose users and groups are rows in a SQL database (SQLAlchemy 2 Core).

It is the built-in adapter for a legacy application that reads its accounts from a database,
and the one to copy for a real database-backed application: one short transaction per call,
bounded by the call's deadline, and SQLAlchemy's errors turned into the port's.

Options (the ``sql`` entry point of ``scim_bridge.adapters``):

=====================  ====================================  ======================================
option                 default                               meaning
=====================  ====================================  ======================================
``url``                ``sqlite:///scim-bridge-legacy.db``   SQLAlchemy URL; SQLite and PostgreSQL
                                                             (``postgresql+psycopg://``) are tested
``table_prefix``       ``legacy_``                           prefix of the three table names
``connect_timeout_s``  ``5.0``                               longest wait to open a connection, or
                                                             for a free one in the pool
=====================  ====================================  ======================================

Tables (created, with their indexes, on the first call if absent; an existing table is used as it
is, so operators can point the adapter at tables of their own with these names and columns):

``legacy_users``: one row per user; the legacy key is ``str(id)``.

=================  ==============  ==============================================================
column             type            content
=================  ==============  ==============================================================
``id``             INTEGER         primary key, auto-increment
``scim_id``        VARCHAR(64)     the SCIM ``id`` scim-bridge minted (idempotency key of creates);
                                   UNIQUE; NULL for a row the legacy application created itself
``user_name``      VARCHAR(255)    ``userName`` as given; UNIQUE, and unique case-insensitively
                                   (checked with ``lower()``; also a unique index on
                                   ``lower(user_name)`` on SQLite and PostgreSQL)
``external_id``    VARCHAR(255)    ``externalId``
``given_name``     VARCHAR(255)    ``name.givenName``
``family_name``    VARCHAR(255)    ``name.familyName``
``display_name``   VARCHAR(255)    ``displayName``
``email``          VARCHAR(255)    ``value`` of the primary entry of ``emails`` (else the first)
``active``         BOOLEAN         NOT NULL; whether the user may sign in
``password_hash``  VARCHAR(255)    ``scrypt$N$r$p$<salt>$<hash>`` (base64), never the password
``profile``        JSON            the whole SCIM document as last written, without ``active``
                                   and ``password``; NULL for a row the legacy application created
``created_at``     TIMESTAMP       UTC
``updated_at``     TIMESTAMP       UTC, set on every change
=================  ==============  ==============================================================

``legacy_groups``: one row per group; the legacy key is ``str(id)``.

=================  ==============  ==============================================================
column             type            content
=================  ==============  ==============================================================
``id``             INTEGER         primary key, auto-increment
``scim_id``        VARCHAR(64)     the SCIM ``id``; UNIQUE; NULL for a row the application created
``display_name``   VARCHAR(255)    ``displayName``; UNIQUE, and unique case-insensitively
``description``    TEXT            ``description``
``profile``        JSON            the whole SCIM document as last written, without ``members``
``created_at``     TIMESTAMP       UTC
``updated_at``     TIMESTAMP       UTC
=================  ==============  ==============================================================

``legacy_memberships``: ``group_id`` (FK ``legacy_groups.id``) and ``user_id`` (FK
``legacy_users.id``), both ON DELETE CASCADE; primary key ``(group_id, user_id)``.

Reading a record lays the columns over ``profile``, so a change the legacy application makes in
a column (a new e-mail address) shows in imports, and a row it created alone is still listed.

Deadlines: each call checks its deadline first and bounds its waits by what remains of it. On
SQLite the wait for the write lock is the remaining time (``PRAGMA busy_timeout``), and every
transaction starts with ``BEGIN IMMEDIATE`` so that two processes never deadlock upgrading a read
lock. On PostgreSQL every statement is bounded by ``SET LOCAL statement_timeout``. Elsewhere
(MariaDB/MySQL) only the connection's opening and the pool are bounded, by
``connect_timeout_s``; and on every database a network that silently drops packets is bounded only
by TCP keepalives (set them in the URL's query, e.g. ``?keepalives_idle=10`` for libpq).

SQLite runs in WAL mode so that several worker processes can share one file; a ``:memory:``
database is private to one connection, so use a file. SQLite's ``lower()`` folds ASCII letters
only, so there ``Ä`` and ``ä`` count as two different login names.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import os
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

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
    create_engine,
    delete,
    event,
    func,
    insert,
    inspect,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Connection, CursorResult, Engine, Row, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from scim_bridge.adapters.errors import AdapterError, ConflictError, PermanentError, TransientError
from scim_bridge.adapters.port import (
    Capabilities,
    Capability,
    Deadline,
    LegacyAdapter,
    LegacyRecord,
    Page,
    ScimDocument,
)

DEFAULT_URL = "sqlite:///scim-bridge-legacy.db"
DEFAULT_TABLE_PREFIX = "legacy_"
DEFAULT_CONNECT_TIMEOUT_S = 5.0

USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"

# The execution option through which a call's deadline reaches the "begin" hooks below.
_DEADLINE_OPTION = "scim_bridge_deadline"
# Keeps each IN (...) list well below SQLite's limit on bound parameters.
_IN_CHUNK = 500

# scrypt's interactive-login parameters (16 MiB, tens of milliseconds).
_SCRYPT_N = 2**14
_SCRYPT_R = 8
_SCRYPT_P = 1
_SALT_BYTES = 16
_HASH_BYTES = 32


def hash_password(password: str) -> str:
    """A salted scrypt hash of ``password``: ``scrypt$N$r$p$<salt>$<hash>``, base64 parts."""
    salt = os.urandom(_SALT_BYTES)
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=_HASH_BYTES
    )
    parts = ["scrypt", str(_SCRYPT_N), str(_SCRYPT_R), str(_SCRYPT_P), _b64(salt), _b64(digest)]
    return "$".join(parts)


def verify_password(password_hash: str, password: str) -> bool:
    """Whether ``password`` matches a hash made by :func:`hash_password`."""
    try:
        scheme, n, r, p, salt, digest = password_hash.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
        )
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)


class SqlAdapter(LegacyAdapter):
    """Users, groups and memberships in three tables; see the module docstring for their layout."""

    capabilities = Capabilities(functions=frozenset(Capability))

    def __init__(self, engine: Engine, *, table_prefix: str = DEFAULT_TABLE_PREFIX) -> None:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", table_prefix):
            raise ValueError(f"table_prefix {table_prefix!r} must be letters, digits and '_'")
        self._engine = engine
        self.metadata = MetaData()
        """The adapter's tables, for migrations and tests."""
        self._users, self._groups, self._memberships = _define_tables(self.metadata, table_prefix)
        self._schema_ready = False
        self._schema_lock = threading.Lock()
        _install_hooks(engine)

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> SqlAdapter:
        """Entry-point factory: builds the engine (it connects on the first call, not here)."""
        url = make_url(str(options.get("url", DEFAULT_URL)))
        connect_timeout_s = float(options.get("connect_timeout_s", DEFAULT_CONNECT_TIMEOUT_S))
        engine_options: dict[str, Any] = {}
        connect_args: dict[str, Any] = {}
        backend = url.get_backend_name()
        if backend == "sqlite":
            # The busy timeout of statements run outside a call (opening, switching to WAL).
            connect_args["timeout"] = connect_timeout_s
        elif backend == "postgresql":
            # libpq takes whole seconds and treats anything below 2 as 2.
            connect_args["connect_timeout"] = max(2, math.ceil(connect_timeout_s))
        if not (backend == "sqlite" and url.database in (None, "", ":memory:")):
            # An in-memory SQLite database uses a pool without a checkout timeout.
            engine_options["pool_timeout"] = connect_timeout_s
        engine = create_engine(url, connect_args=connect_args, **engine_options)
        return cls(engine, table_prefix=str(options.get("table_prefix", DEFAULT_TABLE_PREFIX)))

    def close(self) -> None:
        self._engine.dispose()

    # Users ------------------------------------------------------------------------------------
    def create_user(
        self, resource_id: str, user: ScimDocument, *, password: str | None, deadline: Deadline
    ) -> str:
        deadline.check("create_user")
        values = {
            **_user_columns(user),
            "active": bool(user.get("active", True)),
            # Hash before the transaction: scrypt's tens of milliseconds should not hold the lock.
            "password_hash": None if password is None else hash_password(password),
        }
        return self._create("create_user", deadline, self._users.c.user_name, resource_id, values)

    def update_user(
        self, key: str, user: ScimDocument, *, previous: ScimDocument, deadline: Deadline
    ) -> None:
        users = self._users
        columns = _user_columns(user)
        user_id = _parse_key(key)
        with self._transaction(deadline, "update_user") as connection:
            if user_id is None:
                raise _missing_user(key)
            self._check_name_free(connection, users.c.user_name, columns["user_name"], user_id)
            result = connection.execute(
                update(users)
                .where(users.c.id == user_id)
                .values(updated_at=datetime.now(UTC), **columns)
            )
            if result.rowcount == 0:
                raise _missing_user(key)

    def deactivate_user(self, key: str, *, deadline: Deadline) -> None:
        self._set_user(key, "deactivate_user", deadline, active=False)

    def reactivate_user(self, key: str, *, deadline: Deadline) -> None:
        self._set_user(key, "reactivate_user", deadline, active=True)

    def set_password(self, key: str, password: str, *, deadline: Deadline) -> None:
        deadline.check("set_password")
        self._set_user(key, "set_password", deadline, password_hash=hash_password(password))

    def delete_user(self, key: str, *, deadline: Deadline) -> None:
        user_id = _parse_key(key)
        with self._transaction(deadline, "delete_user") as connection:
            if user_id is None:
                return
            # Explicit, not left to ON DELETE CASCADE: an operator's own tables may lack it.
            memberships = self._memberships
            connection.execute(delete(memberships).where(memberships.c.user_id == user_id))
            connection.execute(delete(self._users).where(self._users.c.id == user_id))

    def get_user(self, key: str, *, deadline: Deadline) -> LegacyRecord | None:
        user_id = _parse_key(key)
        with self._transaction(deadline, "get_user") as connection:
            if user_id is None:
                return None
            row = connection.execute(select(self._users).where(self._users.c.id == user_id)).first()
        return None if row is None else _user_record(row)

    def find_user(self, resource_id: str, *, deadline: Deadline) -> str | None:
        with self._transaction(deadline, "find_user") as connection:
            found = connection.execute(
                select(self._users.c.id).where(self._users.c.scim_id == resource_id)
            ).scalar()
        return None if found is None else str(found)

    def list_users(self, *, cursor: str | None, limit: int, deadline: Deadline) -> Page:
        users = self._users
        after = _parse_cursor(cursor, limit)
        with self._transaction(deadline, "list_users") as connection:
            # One row more than asked tells whether another page follows.
            rows = connection.execute(
                select(users).where(users.c.id > after).order_by(users.c.id).limit(limit + 1)
            ).all()
        page = rows[:limit]
        return Page([_user_record(row) for row in page], _next_cursor(rows, page))

    # Groups -----------------------------------------------------------------------------------
    def create_group(self, resource_id: str, group: ScimDocument, *, deadline: Deadline) -> str:
        values = _group_columns(group)
        name_column = self._groups.c.display_name
        return self._create("create_group", deadline, name_column, resource_id, values)

    def update_group(
        self, key: str, group: ScimDocument, *, previous: ScimDocument, deadline: Deadline
    ) -> None:
        groups = self._groups
        columns = _group_columns(group)
        group_id = _parse_key(key)
        with self._transaction(deadline, "update_group") as connection:
            if group_id is None:
                raise _missing_group(key)
            name_column = groups.c.display_name
            self._check_name_free(connection, name_column, columns["display_name"], group_id)
            result = connection.execute(
                update(groups)
                .where(groups.c.id == group_id)
                .values(updated_at=datetime.now(UTC), **columns)
            )
            if result.rowcount == 0:
                raise _missing_group(key)

    def add_members(self, key: str, member_keys: Sequence[str], *, deadline: Deadline) -> None:
        try:
            self._add_members(key, member_keys, deadline)
        except _UniqueViolation:
            # A concurrent call added one of these members after we looked; looking again
            # finds it there and adds only the rest.
            self._add_members(key, member_keys, deadline)

    def _add_members(self, key: str, member_keys: Sequence[str], deadline: Deadline) -> None:
        memberships = self._memberships
        group_id = _parse_key(key)
        wanted = {_parse_key(member): member for member in member_keys}
        with self._transaction(deadline, "add_members") as connection:
            if group_id is None or not self._group_exists(connection, group_id):
                raise _missing_group(key)
            user_ids = sorted(user_id for user_id in wanted if user_id is not None)
            known: set[int] = set()
            present: set[int] = set()
            for chunk in _chunks(user_ids):
                known.update(
                    connection.scalars(select(self._users.c.id).where(self._users.c.id.in_(chunk)))
                )
                present.update(
                    connection.scalars(
                        select(memberships.c.user_id).where(
                            memberships.c.group_id == group_id, memberships.c.user_id.in_(chunk)
                        )
                    )
                )
            unknown = [member for user_id, member in wanted.items() if user_id not in known]
            if unknown:
                raise PermanentError(
                    f"cannot add to group {key}: no user with key {', '.join(unknown)}"
                    " exists in the legacy application"
                )
            missing = [user_id for user_id in user_ids if user_id not in present]
            if missing:
                connection.execute(
                    insert(memberships),
                    [{"group_id": group_id, "user_id": user_id} for user_id in missing],
                )

    def remove_members(self, key: str, member_keys: Sequence[str], *, deadline: Deadline) -> None:
        memberships = self._memberships
        group_id = _parse_key(key)
        user_ids = sorted({u for u in map(_parse_key, member_keys) if u is not None})
        with self._transaction(deadline, "remove_members") as connection:
            if group_id is None:
                return
            for chunk in _chunks(user_ids):
                connection.execute(
                    delete(memberships).where(
                        memberships.c.group_id == group_id, memberships.c.user_id.in_(chunk)
                    )
                )

    def delete_group(self, key: str, *, deadline: Deadline) -> None:
        group_id = _parse_key(key)
        with self._transaction(deadline, "delete_group") as connection:
            if group_id is None:
                return
            memberships = self._memberships
            connection.execute(delete(memberships).where(memberships.c.group_id == group_id))
            connection.execute(delete(self._groups).where(self._groups.c.id == group_id))

    def get_group(self, key: str, *, deadline: Deadline) -> LegacyRecord | None:
        group_id = _parse_key(key)
        with self._transaction(deadline, "get_group") as connection:
            if group_id is None:
                return None
            row = connection.execute(
                select(self._groups).where(self._groups.c.id == group_id)
            ).first()
            if row is None:
                return None
            members = self._members_of(connection, [group_id])
        return _group_record(row, members.get(group_id, []))

    def find_group(self, resource_id: str, *, deadline: Deadline) -> str | None:
        with self._transaction(deadline, "find_group") as connection:
            found = connection.execute(
                select(self._groups.c.id).where(self._groups.c.scim_id == resource_id)
            ).scalar()
        return None if found is None else str(found)

    def list_groups(self, *, cursor: str | None, limit: int, deadline: Deadline) -> Page:
        groups = self._groups
        after = _parse_cursor(cursor, limit)
        with self._transaction(deadline, "list_groups") as connection:
            rows = connection.execute(
                select(groups).where(groups.c.id > after).order_by(groups.c.id).limit(limit + 1)
            ).all()
            page = rows[:limit]
            members = self._members_of(connection, [row.id for row in page])
        records = [_group_record(row, members.get(row.id, [])) for row in page]
        return Page(records, _next_cursor(rows, page))

    # Plumbing ---------------------------------------------------------------------------------
    @contextmanager
    def _transaction(self, deadline: Deadline, what: str) -> Iterator[Connection]:
        """One transaction bounded by ``deadline``; SQLAlchemy's errors become the port's."""
        deadline.check(what)
        self._ensure_schema(deadline)
        try:
            with self._engine.connect() as connection:
                connection.execution_options(**{_DEADLINE_OPTION: deadline})
                with connection.begin():
                    yield connection
        except (DBAPIError, PoolTimeoutError) as exc:
            raise _port_error(exc, what) from exc

    def _ensure_schema(self, deadline: Deadline) -> None:
        """Create the tables on the first call (not at start-up, so a worker starts while the
        database is down and its calls fail as transient errors instead)."""
        if self._schema_ready:
            return
        with self._schema_lock:
            if self._schema_ready:
                return
            what = "creating the tables " + ", ".join(self.metadata.tables)
            try:
                with self._engine.connect() as connection:
                    connection.execution_options(**{_DEADLINE_OPTION: deadline})
                    with connection.begin():
                        self.metadata.create_all(connection)
            except (DBAPIError, PoolTimeoutError) as exc:
                # Another worker process may have created them between our check and our CREATE.
                if not self._tables_exist():
                    raise _port_error(exc, what) from exc
            self._schema_ready = True

    def _tables_exist(self) -> bool:
        try:
            with self._engine.connect() as connection:
                present = set(inspect(connection).get_table_names())
        except (DBAPIError, PoolTimeoutError):
            return False
        return set(self.metadata.tables) <= present

    def _set_user(self, key: str, what: str, deadline: Deadline, **values: Any) -> None:
        user_id = _parse_key(key)
        with self._transaction(deadline, what) as connection:
            if user_id is None:
                raise _missing_user(key)
            result = connection.execute(
                update(self._users)
                .where(self._users.c.id == user_id)
                .values(updated_at=datetime.now(UTC), **values)
            )
            if result.rowcount == 0:
                raise _missing_user(key)

    def _create(
        self,
        what: str,
        deadline: Deadline,
        name_column: Column[Any],
        resource_id: str,
        values: dict[str, Any],
    ) -> str:
        """Insert a user or group row unless an earlier delivery of this create did."""
        table = name_column.table
        try:
            with self._transaction(deadline, what) as connection:
                earlier = self._earlier_create(
                    connection, name_column, resource_id, values[name_column.name]
                )
                if earlier is not None:
                    return earlier
                now = datetime.now(UTC)
                result = connection.execute(
                    insert(table).values(
                        scim_id=resource_id, created_at=now, updated_at=now, **values
                    )
                )
                return _inserted_key(result)
        except _UniqueViolation:
            # Two deliveries of one create both found nothing and both inserted; the unique
            # scim_id refused the loser, which answers with the winner's key. Any other value
            # taken is a real conflict.
            with self._transaction(deadline, what) as connection:
                winner = connection.scalar(select(table.c.id).where(table.c.scim_id == resource_id))
            if winner is None:
                raise
            return str(winner)

    def _earlier_create(
        self, connection: Connection, name_column: Column[Any], resource_id: str, name: str
    ) -> str | None:
        """The key of the record an earlier delivery of this create made, or ``None``.

        Raises :class:`ConflictError` if another record holds ``name``. One statement looks for
        both, so that a concurrent delivery of the same create that commits meanwhile is seen as
        itself, not as a record holding the name.
        """
        table = name_column.table
        rows = connection.execute(
            select(table.c.id, table.c.scim_id).where(
                or_(
                    table.c.scim_id == resource_id,
                    func.lower(name_column) == func.lower(name),
                )
            )
        ).all()
        for row in rows:
            if row.scim_id == resource_id:
                return str(row.id)
        if rows:
            raise _name_taken(name_column, name, rows[0].id, rows[0].scim_id)
        return None

    def _check_name_free(
        self, connection: Connection, name_column: Column[Any], name: str, record_id: int | None
    ) -> None:
        """Raise :class:`ConflictError` if a record other than ``record_id`` holds ``name``."""
        table = name_column.table
        # lower() on both sides, so that the database's notion of case decides both.
        query = select(table.c.id, table.c.scim_id).where(
            func.lower(name_column) == func.lower(name)
        )
        if record_id is not None:
            query = query.where(table.c.id != record_id)
        other = connection.execute(query.limit(1)).first()
        if other is not None:
            raise _name_taken(name_column, name, other.id, other.scim_id)

    def _group_exists(self, connection: Connection, group_id: int) -> bool:
        found = connection.scalar(select(self._groups.c.id).where(self._groups.c.id == group_id))
        return found is not None

    def _members_of(self, connection: Connection, group_ids: list[int]) -> dict[int, list[str]]:
        memberships = self._memberships
        members: dict[int, list[str]] = {}
        if not group_ids:
            return members
        rows = connection.execute(
            select(memberships.c.group_id, memberships.c.user_id)
            .where(memberships.c.group_id.in_(group_ids))
            .order_by(memberships.c.group_id, memberships.c.user_id)
        )
        for group_id, user_id in rows:
            members.setdefault(group_id, []).append(str(user_id))
        return members


class _UniqueViolation(ConflictError):
    """A unique constraint of the database refused a row (told apart for create's race)."""


def _define_tables(metadata: MetaData, prefix: str) -> tuple[Table, Table, Table]:
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
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("updated_at", DateTime(timezone=True), nullable=False),
    )
    groups = Table(
        f"{prefix}groups",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("scim_id", String(64), unique=True, nullable=True),
        Column("display_name", String(255), unique=True, nullable=False),
        Column("description", Text),
        Column("profile", JSON),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("updated_at", DateTime(timezone=True), nullable=False),
    )
    memberships = Table(
        f"{prefix}memberships",
        metadata,
        Column("group_id", Integer, ForeignKey(groups.c.id, ondelete="CASCADE"), primary_key=True),
        Column("user_id", Integer, ForeignKey(users.c.id, ondelete="CASCADE"), primary_key=True),
    )
    # The code checks case-insensitive uniqueness; these indexes close the race between two
    # concurrent creates of different resources, where the database can index an expression.
    # (MariaDB cannot, and MySQL's default collation already ignores case.)
    for table, column in ((users, users.c.user_name), (groups, groups.c.display_name)):
        index = Index(f"{table.name}_{column.name}_ci", func.lower(column), unique=True)
        # A tuple of dialect names is documented and supported; the type hint says str only.
        index.ddl_if(dialect=("sqlite", "postgresql"))  # type: ignore[arg-type]
    return users, groups, memberships


def _install_hooks(engine: Engine) -> None:
    """Register the per-dialect connection hooks once per engine."""
    hooks: list[tuple[str, Any]] = []
    if engine.dialect.name == "sqlite":
        hooks = [("connect", _on_sqlite_connect), ("begin", _on_sqlite_begin)]
    elif engine.dialect.name == "postgresql":
        hooks = [("begin", _on_postgresql_begin)]
    for identifier, hook in hooks:
        if not event.contains(engine, identifier, hook):
            event.listen(engine, identifier, hook)


def _on_sqlite_connect(dbapi_connection: Any, connection_record: Any) -> None:
    # Leave transactions to the "begin" hook below instead of pysqlite's implicit BEGIN.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        # WAL lets readers and one writer work at once: the dev setup runs several worker
        # processes against one file.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


def _on_sqlite_begin(connection: Connection) -> None:
    deadline = connection.get_execution_options().get(_DEADLINE_OPTION)
    if isinstance(deadline, Deadline):
        connection.exec_driver_sql(f"PRAGMA busy_timeout = {_milliseconds(deadline)}")
    # Take the write lock up front: a deferred transaction that reads and then writes fails at
    # once with SQLITE_BUSY (no waiting) when another process wrote in between.
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def _on_postgresql_begin(connection: Connection) -> None:
    deadline = connection.get_execution_options().get(_DEADLINE_OPTION)
    if isinstance(deadline, Deadline):
        connection.exec_driver_sql(f"SET LOCAL statement_timeout = {_milliseconds(deadline)}")


def _milliseconds(deadline: Deadline) -> int:
    # Never 0: to both SQLite and PostgreSQL, 0 means "no limit".
    return max(1, int(deadline.remaining() * 1000))


def _port_error(exc: DBAPIError | PoolTimeoutError, what: str) -> AdapterError:
    """The port's error for a database error raised during ``what``."""
    if isinstance(exc, PoolTimeoutError):
        return TransientError(f"legacy database busy: no free connection for {what}")
    cause = _cause(exc)
    if exc.connection_invalidated or (isinstance(exc, OperationalError) and _transient(exc)):
        return TransientError(f"legacy database unavailable during {what}: {cause}")
    if isinstance(exc, IntegrityError) and _unique_violation(exc):
        return _UniqueViolation(f"a unique value is already taken in the legacy database: {cause}")
    return PermanentError(f"the legacy database refused {what}: {cause}")


def _transient(exc: OperationalError) -> bool:
    # SQLite reports SQL errors ("no such column": a table that does not match) as
    # OperationalError too, under its generic code 1; those cannot succeed on retry.
    code = getattr(exc.orig, "sqlite_errorcode", None)
    return not (isinstance(code, int) and code & 0xFF == 1)


def _unique_violation(exc: IntegrityError) -> bool:
    if getattr(exc.orig, "sqlstate", None) == "23505":  # PostgreSQL: unique_violation
        return True
    text = str(exc.orig).lower()
    return "unique" in text or "duplicate" in text  # SQLite, MariaDB/MySQL


def _cause(exc: DBAPIError) -> str:
    # The driver's message only: SQLAlchemy's own text carries the SQL and bound parameters,
    # which include password hashes and whole profiles.
    lines = str(exc.orig).strip().splitlines()
    return " ".join(line.strip() for line in lines[:2]) or type(exc.orig).__name__


def _name_taken(
    name_column: Column[Any], name: str, holder_id: int, holder_scim_id: str | None
) -> ConflictError:
    kind, noun = ("user", "login name") if name_column.name == "user_name" else ("group", "name")
    owner = f"SCIM id {holder_scim_id}" if holder_scim_id else "created in the legacy application"
    return ConflictError(
        f"{kind} {noun} {name!r} is already used by {kind} {holder_id} of the legacy application"
        f" ({owner}, table {name_column.table.name}); rename or remove that {kind} first"
    )


def _missing_user(key: str) -> PermanentError:
    return PermanentError(f"user {key} does not exist in the legacy application")


def _missing_group(key: str) -> PermanentError:
    return PermanentError(f"group {key} does not exist in the legacy application")


def _parse_key(key: str) -> int | None:
    """The row id of a legacy key, or ``None`` for a key no row can have."""
    return int(key) if key.isascii() and key.isdigit() else None


def _parse_cursor(cursor: str | None, limit: int) -> int:
    if limit < 1:
        raise ValueError(f"limit must be at least 1, not {limit}")
    if cursor is None:
        return 0
    after = _parse_key(cursor)
    if after is None:
        raise PermanentError(f"invalid page cursor {cursor!r}")
    return after


def _next_cursor(rows: Sequence[Row[Any]], page: Sequence[Row[Any]]) -> str | None:
    return str(page[-1].id) if len(rows) > len(page) else None


def _chunks(values: list[int]) -> Iterator[list[int]]:
    for start in range(0, len(values), _IN_CHUNK):
        yield values[start : start + _IN_CHUNK]


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _user_columns(user: ScimDocument) -> dict[str, Any]:
    user_name = user.get("userName")
    if not user_name:
        raise PermanentError("the user has no userName, which the legacy application requires")
    name = user.get("name") or {}
    return {
        "user_name": str(user_name),
        "external_id": _text(user.get("externalId")),
        "given_name": _text(name.get("givenName")),
        "family_name": _text(name.get("familyName")),
        "display_name": _text(user.get("displayName")),
        "email": _primary_email(user.get("emails")),
        # ``active`` lives in its column alone; ``password`` should never arrive, but if it
        # did it must not be stored in clear.
        "profile": {k: v for k, v in user.items() if k not in ("active", "password")},
    }


def _group_columns(group: ScimDocument) -> dict[str, Any]:
    display_name = group.get("displayName")
    if not display_name:
        raise PermanentError("the group has no displayName, which the legacy application requires")
    return {
        "display_name": str(display_name),
        "description": _text(group.get("description")),
        "profile": {k: v for k, v in group.items() if k != "members"},
    }


def _primary_email(emails: Any) -> str | None:
    entries = [e for e in emails or () if isinstance(e, Mapping) and e.get("value")]
    chosen = next((e for e in entries if e.get("primary")), entries[0] if entries else None)
    return None if chosen is None else str(chosen["value"])


def _with_email(emails: Any, email: str) -> list[Any]:
    """``emails`` whose primary (else first) entry has the value ``email``."""
    entries = [dict(e) for e in emails or () if isinstance(e, Mapping)]
    if not entries:
        return [{"value": email, "primary": True}]
    chosen = next((e for e in entries if e.get("primary")), entries[0])
    chosen["value"] = email
    return entries


def _user_record(row: Row[Any]) -> LegacyRecord:
    document: dict[str, Any] = dict(row.profile or {})
    document.setdefault("schemas", [USER_SCHEMA])
    document["userName"] = row.user_name
    if row.external_id is not None:
        document["externalId"] = row.external_id
    name = dict(document.get("name") or {})
    if row.given_name is not None:
        name["givenName"] = row.given_name
    if row.family_name is not None:
        name["familyName"] = row.family_name
    if name:
        document["name"] = name
    if row.display_name is not None:
        document["displayName"] = row.display_name
    if row.email is not None and row.email != _primary_email(document.get("emails")):
        document["emails"] = _with_email(document.get("emails"), row.email)
    document["active"] = bool(row.active)
    return LegacyRecord(str(row.id), row.scim_id, document)


def _group_record(row: Row[Any], members: list[str]) -> LegacyRecord:
    document: dict[str, Any] = dict(row.profile or {})
    document.setdefault("schemas", [GROUP_SCHEMA])
    document["displayName"] = row.display_name
    if row.description is not None:
        document["description"] = row.description
    document["members"] = members
    return LegacyRecord(str(row.id), row.scim_id, document)


def _inserted_key(result: CursorResult[Any]) -> str:
    primary_key = result.inserted_primary_key
    assert primary_key is not None  # an INSERT of one row always has one
    return str(primary_key[0])


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")
