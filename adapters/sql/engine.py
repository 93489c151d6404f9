"""Engines, per-dialect deadline hooks and the translation of database errors into the port's.

Deadlines: each call checks its deadline first and bounds its waits by what remains of it. On
SQLite the wait for the write lock is the remaining time (``PRAGMA busy_timeout``), and every
transaction starts with ``BEGIN IMMEDIATE`` so that two processes never deadlock upgrading a read
lock. On PostgreSQL every statement is bounded by ``SET LOCAL statement_timeout``; on MariaDB by
``max_statement_time`` and ``innodb_lock_wait_timeout`` (whole seconds, at least 1), set for the
session at the start of each transaction. A network that silently drops packets is bounded by the
driver's read timeout (PyMySQL) or TCP keepalives (libpq: ``?keepalives_idle=10`` in the URL).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from scim_bridge.adapters.errors import AdapterError, ConflictError, PermanentError, TransientError
from scim_bridge.adapters.port import Deadline

DEFAULT_URL = "sqlite:///scim-bridge-legacy.db"
DEFAULT_CONNECT_TIMEOUT_S = 5.0
# The execution option through which a call's deadline reaches the "begin" hooks below.
DEADLINE_OPTION = "scim_bridge_deadline"
# MariaDB/MySQL error numbers that a retry can get past: lock wait, deadlock, statement time-out,
# lost or refused connections, too many connections, server shutting down.
_MYSQL_TRANSIENT = {1040, 1053, 1205, 1213, 1969, 2002, 2003, 2006, 2013, 3024, 4031}


class UniqueViolation(ConflictError):
    """A unique constraint of the database refused a row (told apart for create's race)."""


def build_engine(options: Mapping[str, Any]) -> Engine:
    """The engine for the adapter's ``url`` option (it connects on the first call, not here)."""
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
    elif backend in ("mysql", "mariadb"):
        connect_args["connect_timeout"] = max(1, math.ceil(connect_timeout_s))
        # A read blocked longer than any call may last is a dead connection.
        connect_args["read_timeout"] = max(1, math.ceil(float(options.get("read_timeout_s", 60))))
        connect_args["charset"] = "utf8mb4"
        engine_options["pool_pre_ping"] = True
    if not (backend == "sqlite" and url.database in (None, "", ":memory:")):
        # An in-memory SQLite database uses a pool without a checkout timeout.
        engine_options["pool_timeout"] = connect_timeout_s
    return create_engine(url, connect_args=connect_args, **engine_options)


def install_hooks(engine: Engine) -> None:
    """Register the per-dialect connection hooks once per engine."""
    hooks: list[tuple[str, Any]] = []
    if engine.dialect.name == "sqlite":
        hooks = [("connect", _on_sqlite_connect), ("begin", _on_sqlite_begin)]
    elif engine.dialect.name == "postgresql":
        hooks = [("begin", _on_postgresql_begin)]
    elif engine.dialect.name in ("mysql", "mariadb"):
        hooks = [("begin", _on_mysql_begin)]
    for identifier, hook in hooks:
        if not event.contains(engine, identifier, hook):
            event.listen(engine, identifier, hook)


def _on_sqlite_connect(dbapi_connection: Any, connection_record: Any) -> None:
    # Leave transactions to the "begin" hook below instead of pysqlite's implicit BEGIN.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        # WAL lets readers and one writer work at once: several worker processes share a file.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


def _deadline(connection: Connection) -> Deadline | None:
    deadline = connection.get_execution_options().get(DEADLINE_OPTION)
    return deadline if isinstance(deadline, Deadline) else None


def _on_sqlite_begin(connection: Connection) -> None:
    deadline = _deadline(connection)
    if deadline is not None:
        connection.exec_driver_sql(f"PRAGMA busy_timeout = {_milliseconds(deadline)}")
    # Take the write lock up front: a deferred transaction that reads and then writes fails at
    # once with SQLITE_BUSY (no waiting) when another process wrote in between.
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def _on_postgresql_begin(connection: Connection) -> None:
    deadline = _deadline(connection)
    if deadline is not None:
        connection.exec_driver_sql(f"SET LOCAL statement_timeout = {_milliseconds(deadline)}")


def _on_mysql_begin(connection: Connection) -> None:
    deadline = _deadline(connection)
    if deadline is None:
        return
    seconds = _milliseconds(deadline) / 1000
    if connection.dialect.name == "mariadb" or getattr(connection.dialect, "is_mariadb", False):
        connection.exec_driver_sql(f"SET SESSION max_statement_time = {seconds:.3f}")
    connection.exec_driver_sql(
        f"SET SESSION innodb_lock_wait_timeout = {max(1, math.ceil(seconds))}"
    )


def _milliseconds(deadline: Deadline) -> int:
    # Never 0: to SQLite, PostgreSQL and MariaDB, 0 means "no limit".
    return max(1, int(deadline.remaining() * 1000))


def port_error(exc: DBAPIError | PoolTimeoutError, what: str) -> AdapterError:
    """The port's error for a database error raised during ``what``."""
    if isinstance(exc, PoolTimeoutError):
        return TransientError(f"legacy database busy: no free connection for {what}")
    reason = cause(exc)
    if exc.connection_invalidated or (isinstance(exc, OperationalError) and _transient(exc)):
        return TransientError(f"legacy database unavailable during {what}: {reason}")
    if isinstance(exc, IntegrityError) and _unique_violation(exc):
        return UniqueViolation(f"a unique value is already taken in the legacy database: {reason}")
    return PermanentError(f"the legacy database refused {what}: {reason}")


def _transient(exc: OperationalError) -> bool:
    # SQLite reports SQL errors ("no such column": a table that does not match) as
    # OperationalError too, under its generic code 1; those cannot succeed on retry.
    code = getattr(exc.orig, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF != 1
    args = getattr(exc.orig, "args", ())
    if args and isinstance(args[0], int):  # MariaDB/MySQL: (errno, message)
        return args[0] in _MYSQL_TRANSIENT
    return True


def _unique_violation(exc: IntegrityError) -> bool:
    if getattr(exc.orig, "sqlstate", None) == "23505":  # PostgreSQL: unique_violation
        return True
    args = getattr(exc.orig, "args", ())
    if args and args[0] in (1062, 1586):  # MariaDB/MySQL: duplicate entry
        return True
    return "unique" in str(exc.orig).lower()  # SQLite


def cause(exc: DBAPIError) -> str:
    """The driver's message only: SQLAlchemy's own text carries the SQL and bound parameters,
    which include password hashes and whole profiles."""
    args: tuple[Any, ...] = tuple(getattr(exc.orig, "args", ()))
    if len(args) == 2 and isinstance(args[0], int) and isinstance(args[1], str):
        return args[1]  # PyMySQL: (errno, message)
    # PostgreSQL's "Failing row contains (...)" detail would carry every value of the row,
    # password hash included; the constraint's name and message say enough.
    lines = [
        line
        for line in str(exc.orig).strip().splitlines()
        if "failing row contains" not in line.lower()
    ]
    return " ".join(line.strip() for line in lines[:2]) or type(exc.orig).__name__
