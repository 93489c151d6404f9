"""The SQL adapter passes the contract kit on SQLite (always) and PostgreSQL (when reachable),
and keeps the promises of its module docstring: table layout, hashed passwords, WAL, deadlines."""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, inspect, text

from scim_bridge.adapters.contract import (
    PASSWORD,
    AdapterContract,
    budget,
    group_document,
    user_document,
)
from scim_bridge.adapters.errors import ConflictError, PermanentError, TransientError
from scim_bridge.adapters.mapping import PasswordScheme
from scim_bridge.adapters.port import Capability, Deadline
from scim_bridge.adapters.sql import SqlAdapter


def verify_password(password_hash: str, password: str) -> bool:
    return PasswordScheme("scrypt").verify(password, password_hash)


POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'legacy.db'}"


@pytest.fixture
def legacy_db(sqlite_url: str) -> Iterator[Engine]:
    """The SQLite file as the legacy application itself (or an operator) sees it."""
    engine = create_engine(sqlite_url)
    yield engine
    engine.dispose()


@pytest.fixture
def sql_adapter(sqlite_url: str) -> Iterator[SqlAdapter]:
    adapter = SqlAdapter.from_options({"url": sqlite_url})
    yield adapter
    adapter.close()


class TestSqlAdapterOnSqlite(AdapterContract):
    @pytest.fixture
    def adapter(self, sql_adapter: SqlAdapter) -> SqlAdapter:
        return sql_adapter


@pytest.fixture(scope="module")
def postgres_engine() -> Iterator[Engine]:
    pytest.importorskip("psycopg")
    engine = create_engine(POSTGRES_URL, connect_args={"connect_timeout": 2})
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:  # any reason the server cannot be used skips this variant only
        engine.dispose()
        pytest.skip(f"PostgreSQL is not reachable at {POSTGRES_URL}: {exc}")
    yield engine
    engine.dispose()


class TestSqlAdapterOnPostgresql(AdapterContract):
    @pytest.fixture
    def adapter(self, postgres_engine: Engine) -> Iterator[SqlAdapter]:
        # A table prefix of its own gives each test empty tables in the shared database.
        adapter = SqlAdapter(postgres_engine, table_prefix=f"t{uuid.uuid4().hex[:12]}_")
        yield adapter
        adapter.metadata.drop_all(postgres_engine)


def test_the_tables_have_the_documented_names_and_columns(
    sql_adapter: SqlAdapter, legacy_db: Engine
) -> None:
    sql_adapter.get_user("1", deadline=budget())  # the first call creates the tables
    inspector = inspect(legacy_db)
    assert {"legacy_users", "legacy_groups", "legacy_memberships"} <= set(
        inspector.get_table_names()
    )
    assert [c["name"] for c in inspector.get_columns("legacy_users")] == [
        "id",
        "scim_id",
        "user_name",
        "external_id",
        "given_name",
        "family_name",
        "display_name",
        "email",
        "active",
        "password_hash",
        "profile",
        "created_at",
        "updated_at",
    ]
    assert inspector.get_pk_constraint("legacy_memberships")["constrained_columns"] == [
        "group_id",
        "user_id",
    ]


def test_the_table_prefix_option_names_the_tables(sqlite_url: str, legacy_db: Engine) -> None:
    adapter = SqlAdapter.from_options({"url": sqlite_url, "table_prefix": "acme_"})
    adapter.create_user("id-ada", user_document("ada"), password=None, deadline=budget())
    assert {"acme_users", "acme_groups", "acme_memberships"} <= set(
        inspect(legacy_db).get_table_names()
    )
    adapter.close()


def test_a_table_prefix_that_is_not_an_identifier_is_refused(sqlite_url: str) -> None:
    with pytest.raises(ValueError, match="table_prefix"):
        SqlAdapter.from_options({"url": sqlite_url, "table_prefix": "legacy; DROP"})


def test_only_a_salted_hash_of_the_password_is_stored(
    sql_adapter: SqlAdapter, legacy_db: Engine
) -> None:
    ada = sql_adapter.create_user(
        "id-ada", user_document("ada"), password=PASSWORD, deadline=budget()
    )
    grace = sql_adapter.create_user(
        "id-grace", user_document("grace"), password=None, deadline=budget()
    )
    sql_adapter.set_password(grace, PASSWORD, deadline=budget())
    with legacy_db.connect() as connection:
        result = connection.execute(text("SELECT id, password_hash FROM legacy_users"))
        rows: dict[int, str] = {row.id: row.password_hash for row in result}
        dump = "\n".join(connection.connection.iterdump())
    assert PASSWORD not in dump
    hashes = [rows[int(ada)], rows[int(grace)]]
    assert hashes[0] != hashes[1]  # one salt per hash
    assert all(verify_password(h, PASSWORD) for h in hashes)
    assert not verify_password(hashes[0], PASSWORD + "x")


def test_sqlite_runs_in_wal_mode(sql_adapter: SqlAdapter, sqlite_url: str) -> None:
    sql_adapter.get_user("1", deadline=budget())
    with sqlite3.connect(sqlite_url.removeprefix("sqlite:///")) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_the_conflict_message_names_the_taken_login_and_its_holder(
    sql_adapter: SqlAdapter,
) -> None:
    holder = sql_adapter.create_user(
        "id-ada", user_document("Ada"), password=None, deadline=budget()
    )
    with pytest.raises(ConflictError) as raised:
        sql_adapter.create_user("id-other", user_document("ADA"), password=None, deadline=budget())
    assert "'ADA'" in raised.value.message
    assert f"user {holder}" in raised.value.message
    assert "id-ada" in raised.value.message


def test_renaming_a_user_to_a_taken_login_is_a_conflict(sql_adapter: SqlAdapter) -> None:
    sql_adapter.create_user("id-ada", user_document("ada"), password=None, deadline=budget())
    grace = sql_adapter.create_user(
        "id-grace", user_document("grace"), password=None, deadline=budget()
    )
    with pytest.raises(ConflictError):
        sql_adapter.update_user(
            grace, user_document("Ada"), previous=user_document("grace"), deadline=budget()
        )


def test_a_second_group_with_a_taken_name_is_a_conflict(sql_adapter: SqlAdapter) -> None:
    sql_adapter.create_group("id-staff", group_document("Staff"), deadline=budget())
    with pytest.raises(ConflictError, match="'staff'"):
        sql_adapter.create_group("id-other", group_document("staff"), deadline=budget())


def test_changing_a_user_that_does_not_exist_is_permanent(sql_adapter: SqlAdapter) -> None:
    for key in ("999", "not-a-key"):
        with pytest.raises(PermanentError, match="does not exist"):
            sql_adapter.deactivate_user(key, deadline=budget())
        with pytest.raises(PermanentError, match="does not exist"):
            sql_adapter.update_user(
                key, user_document("ada"), previous=user_document("ada"), deadline=budget()
            )
        assert sql_adapter.get_user(key, deadline=budget()) is None
        sql_adapter.delete_user(key, deadline=budget())


def test_a_user_without_user_name_is_permanent(sql_adapter: SqlAdapter) -> None:
    user = user_document("ada")
    del user["userName"]
    with pytest.raises(PermanentError, match="userName"):
        sql_adapter.create_user("id-ada", user, password=None, deadline=budget())


def test_a_change_made_in_the_legacy_columns_shows_in_the_record(
    sql_adapter: SqlAdapter, legacy_db: Engine
) -> None:
    key = sql_adapter.create_user("id-ada", user_document("ada"), password=None, deadline=budget())
    with legacy_db.begin() as connection:
        connection.execute(
            text("UPDATE legacy_users SET email = 'countess@example.org', given_name = 'Augusta'")
        )
    record = sql_adapter.get_user(key, deadline=budget())
    assert record is not None
    assert record.document["emails"][0]["value"] == "countess@example.org"
    assert record.document["emails"][0]["type"] == "work"
    assert record.document["name"] == {"givenName": "Augusta", "familyName": "Lovelace"}


def test_a_row_the_legacy_application_created_itself_is_listed(
    sql_adapter: SqlAdapter, legacy_db: Engine
) -> None:
    sql_adapter.get_user("1", deadline=budget())
    with legacy_db.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO legacy_users (user_name, email, active, created_at, updated_at)"
                " VALUES ('hopper', 'grace@example.org', 1, '2024-01-01', '2024-01-01')"
            )
        )
    (record,) = sql_adapter.list_users(cursor=None, limit=10, deadline=budget()).records
    assert record.resource_id is None
    assert record.document["userName"] == "hopper"
    assert record.document["emails"] == [{"value": "grace@example.org", "primary": True}]
    assert record.document["active"] is True


def test_a_locked_database_is_a_transient_error_within_the_deadline(
    sql_adapter: SqlAdapter, sqlite_url: str
) -> None:
    sql_adapter.get_user("1", deadline=budget())
    blocker = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        started = time.monotonic()
        with pytest.raises(TransientError, match="unavailable"):
            sql_adapter.create_user(
                "id-ada", user_document("ada"), password=None, deadline=Deadline.after(0.3)
            )
        assert time.monotonic() - started < 1.0
    finally:
        blocker.rollback()
        blocker.close()
    assert sql_adapter.list_users(cursor=None, limit=10, deadline=budget()).records == []


def test_an_unreachable_database_is_a_transient_error() -> None:
    pytest.importorskip("psycopg")
    adapter = SqlAdapter.from_options(
        {"url": "postgresql+psycopg://postgres@127.0.0.1:1/test", "connect_timeout_s": 2}
    )
    with pytest.raises(TransientError, match="unavailable"):
        adapter.get_user("1", deadline=budget())
    adapter.close()


def test_a_table_that_does_not_match_is_a_permanent_error(
    sqlite_url: str, legacy_db: Engine
) -> None:
    with legacy_db.begin() as connection:
        connection.execute(text("CREATE TABLE legacy_users (id INTEGER PRIMARY KEY, login TEXT)"))
    adapter = SqlAdapter.from_options({"url": sqlite_url})
    with pytest.raises(PermanentError) as raised:
        adapter.get_user("1", deadline=budget())
    assert "users.columns.userName: no column user_name in legacy_users" in raised.value.message
    adapter.close()


def test_worker_processes_sharing_one_sqlite_file_all_succeed(sqlite_url: str) -> None:
    # Two adapters with their own engines stand for two worker processes.
    adapters = [SqlAdapter.from_options({"url": sqlite_url}) for _ in range(2)]
    errors: list[BaseException] = []

    def provision(adapter: SqlAdapter, worker: int) -> None:
        try:
            for n in range(10):
                name = f"w{worker}-{n}"
                key = adapter.create_user(
                    f"id-{name}", user_document(name), password=None, deadline=budget()
                )
                adapter.deactivate_user(key, deadline=budget())
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=provision, args=(adapters[worker % 2], worker))
        for worker in range(6)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    page = adapters[0].list_users(cursor=None, limit=100, deadline=budget())
    assert len(page.records) == 60
    for adapter in adapters:
        adapter.close()


def test_list_groups_pages_with_members(sql_adapter: SqlAdapter) -> None:
    ada = sql_adapter.create_user("id-ada", user_document("ada"), password=None, deadline=budget())
    keys = [
        sql_adapter.create_group(f"id-g{n}", group_document(f"g{n}"), deadline=budget())
        for n in range(3)
    ]
    sql_adapter.add_members(keys[1], [ada], deadline=budget())
    first = sql_adapter.list_groups(cursor=None, limit=2, deadline=budget())
    assert first.cursor is not None
    last = sql_adapter.list_groups(cursor=first.cursor, limit=2, deadline=budget())
    assert last.cursor is None
    records = [*first.records, *last.records]
    assert [r.key for r in records] == keys
    assert [r.document["members"] for r in records] == [[], [ada], []]


def test_an_invalid_cursor_is_permanent(sql_adapter: SqlAdapter) -> None:
    with pytest.raises(PermanentError, match="cursor"):
        sql_adapter.list_users(cursor="abc", limit=10, deadline=budget())


def test_every_provisioning_function_is_declared(sql_adapter: SqlAdapter) -> None:
    assert sql_adapter.capabilities.functions == frozenset(Capability)


def test_a_lock_held_past_the_deadline_is_a_transient_error_on_postgresql(
    postgres_engine: Engine,
) -> None:
    prefix = f"t{uuid.uuid4().hex[:12]}_"
    adapter = SqlAdapter(postgres_engine, table_prefix=prefix)
    try:
        adapter.create_user("id-ada", user_document("ada"), password=None, deadline=budget())
        with postgres_engine.begin() as blocker:
            blocker.execute(text(f"LOCK TABLE {prefix}users IN ACCESS EXCLUSIVE MODE"))
            started = time.monotonic()
            with pytest.raises(TransientError, match="unavailable"):
                adapter.get_user("1", deadline=Deadline.after(0.3))
            assert time.monotonic() - started < 1.0
    finally:
        adapter.metadata.drop_all(postgres_engine)


def test_concurrent_deliveries_of_one_create_leave_one_row_on_postgresql(
    postgres_engine: Engine,
) -> None:
    # READ COMMITTED lets every delivery miss the others' uncommitted row; the unique scim_id
    # refuses all inserts but one, and the losers must answer with the winner's key.
    adapter = SqlAdapter(postgres_engine, table_prefix=f"t{uuid.uuid4().hex[:12]}_")
    adapter.get_user("1", deadline=budget())  # create the tables before the race
    start = threading.Barrier(8)
    keys: list[str] = []
    errors: list[BaseException] = []

    def deliver() -> None:
        start.wait()
        try:
            keys.append(
                adapter.create_user(
                    "id-ada", user_document("ada"), password=None, deadline=budget()
                )
            )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=deliver) for _ in range(8)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert len(set(keys)) == 1
        assert len(adapter.list_users(cursor=None, limit=10, deadline=budget()).records) == 1
    finally:
        adapter.metadata.drop_all(postgres_engine)
