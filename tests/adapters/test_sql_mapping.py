"""The sql adapter's mapping on real databases: conversions, bad input, custom statements,
capabilities, links without an id column, delta import, ``mapping check`` and ``mapping init``."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from scim_bridge.adapters.contract import PASSWORD, budget, group_document, user_document
from scim_bridge.adapters.errors import ConflictError, PermanentError
from scim_bridge.adapters.mapping import PasswordScheme
from scim_bridge.adapters.port import Capability
from scim_bridge.adapters.sql import SqlAdapter
from scim_bridge.adapters.sql.commands import check, refuse_broken_mapping
from tests.adapters.databases import HR_MAPPING, KINDS, fresh_database, hr_schema

DEPT = "urn:okta:onprem_app:1.0:user:custom"


@pytest.fixture(params=KINDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from fresh_database(request.param, tmp_path)


def hr(url: str, tmp_path: Path, mapping: str = HR_MAPPING, extra: list[str] = ()) -> SqlAdapter:
    engine = create_engine(url)
    with engine.begin() as connection:
        for statement in [*hr_schema(engine.dialect.name), *extra]:
            connection.execute(text(statement))
    engine.dispose()
    path = tmp_path / "mapping.toml"
    path.write_text(mapping)
    return SqlAdapter.from_options({"url": url, "mapping": str(path)})


def rows(url: str, query: str) -> list[Any]:
    engine = create_engine(url)
    with engine.connect() as connection:
        found = [tuple(row) for row in connection.execute(text(query))]
    engine.dispose()
    return found


def employee(name: str, **extra: Any) -> dict[str, Any]:
    user = user_document(name)
    user[DEPT] = {"departmentName": "Engines", **extra}
    return user


def test_values_land_in_the_applications_own_format(url: str, tmp_path: Path) -> None:
    adapter = hr(url, tmp_path)
    key = adapter.create_user(
        "id-ada", employee("ada", hireDate="2024-05-01"), password=PASSWORD, deadline=budget()
    )
    adapter.deactivate_user(key, deadline=budget())
    ((login, status, dept, created_by, pwd, hired),) = rows(
        url, "SELECT login, status, dept, created_by, pwd, hired FROM employees"
    )
    assert (login, status, dept, created_by) == ("ada", "T", "Engines", "okta")
    assert pwd.startswith("$2b$") and PasswordScheme("bcrypt").verify(PASSWORD, pwd)
    assert str(hired) == "2024-05-01"
    record = adapter.get_user(key, deadline=budget())
    assert record is not None and record.document["active"] is False
    assert record.document[DEPT] == {"departmentName": "Engines", "hireDate": "2024-05-01"}
    assert record.document["emails"] == [{"type": "work", "value": "ada@example.com"}]
    adapter.close()


def test_a_value_longer_than_its_column_is_permanent_and_names_attribute_and_limit(
    url: str, tmp_path: Path
) -> None:
    adapter = hr(url, tmp_path)
    with pytest.raises(PermanentError) as raised:
        adapter.create_user(
            "id-x", user_document("x", given_name="A" * 41), password=None, deadline=budget()
        )
    assert "name.givenName is 41 characters long" in raised.value.message
    assert "employees.fname holds at most 40" in raised.value.message
    assert rows(url, "SELECT count(*) FROM employees") == [(0,)]
    adapter.close()


def test_sql_looking_strings_are_stored_as_data(url: str, tmp_path: Path) -> None:
    adapter = hr(url, tmp_path)
    evil = "x'); DROP TABLE employees; --"
    key = adapter.create_user(
        "id-e", user_document("evil", family_name=evil), password=None, deadline=budget()
    )
    record = adapter.get_user(key, deadline=budget())
    assert record is not None and record.document["name"]["familyName"] == evil
    assert rows(url, "SELECT lname FROM employees") == [(evil,)]
    adapter.close()


def test_a_value_the_database_refuses_is_permanent_with_its_reason_and_leaves_nothing(
    url: str, tmp_path: Path
) -> None:
    # A check constraint of the application's, met through a custom create statement: the
    # administrator reads the database's own reason, and no row stays behind.
    mapping = HR_MAPPING.replace(
        "[groups]",
        '[users.sql]\ncreate = "INSERT INTO employees (login, fname, status, created_by, mail)'
        ' VALUES (:userName, :name_givenName, :status, :created_by, :mail)"\n\n[groups]',
    )
    engine = create_engine(url)
    schema = hr_schema(engine.dialect.name)
    engine.dispose()
    schema[0] = schema[0].rstrip().rstrip(")") + ", CONSTRAINT fname_not_x CHECK (fname <> 'X'))"
    with create_engine(url).begin() as connection:
        for statement in schema:
            connection.execute(text(statement))
    path = tmp_path / "mapping.toml"
    path.write_text(mapping)
    adapter = SqlAdapter.from_options({"url": url, "mapping": str(path)})
    with pytest.raises(PermanentError) as raised:
        adapter.create_user(
            "id-x", user_document("x", given_name="X"), password=None, deadline=budget()
        )
    assert "refused create_user" in raised.value.message
    assert "fname_not_x" in raised.value.message  # the database's own reason
    assert "Failing row" not in raised.value.message  # ... without the row's values
    assert rows(url, "SELECT count(*) FROM employees") == [(0,)]
    adapter.close()


def test_custom_statements_run_with_named_parameters(url: str, tmp_path: Path) -> None:
    mapping = HR_MAPPING.replace(
        "[groups]",
        "[users.sql]\n"
        "deactivate = \"UPDATE employees SET status = 'T', dept = 'LEAVERS' WHERE emp_no = :key\"\n"
        "\n[groups]",
    )
    adapter = hr(url, tmp_path, mapping)
    key = adapter.create_user("id-ada", employee("ada"), password=None, deadline=budget())
    adapter.deactivate_user(key, deadline=budget())
    assert rows(url, "SELECT status, dept FROM employees") == [("T", "LEAVERS")]
    adapter.close()


def test_without_a_link_a_lost_create_is_found_by_its_login(url: str, tmp_path: Path) -> None:
    mapping = HR_MAPPING.replace('[link]\ntable = "scim_bridge_links"\n', "")
    adapter = hr(url, tmp_path, mapping)
    key = adapter.create_user("id-ada", employee("Ada"), password=None, deadline=budget())
    assert adapter.find_user("id-ada", deadline=budget()) is None  # nothing kept in the app
    assert adapter.find_created_user("id-ada", employee("ada"), deadline=budget()) == key
    assert adapter.find_created_user("id-bob", employee("bob"), deadline=budget()) is None
    with pytest.raises(ConflictError):
        adapter.create_user("id-ada", employee("ada"), password=None, deadline=budget())
    group = adapter.create_group("id-g", group_document("staff"), deadline=budget())
    assert adapter.find_created_group("id-g", group_document("Staff"), deadline=budget()) == group
    adapter.close()


def test_capabilities_follow_the_mapping(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    bare = '[users]\ntable = "employees"\nkey = "emp_no"\n[users.columns]\nuserName = "login"\n'
    path = tmp_path / "bare.toml"
    path.write_text(bare)
    functions = SqlAdapter.from_options({"url": url, "mapping": str(path)}).capabilities.functions
    assert Capability.PUSH_PASSWORD_UPDATES not in functions
    assert Capability.PUSH_USER_DEACTIVATION not in functions
    assert Capability.GROUP_PUSH not in functions
    assert Capability.PUSH_NEW_USERS in functions
    path.write_text(bare.replace('key = "emp_no"', 'key = "emp_no"\ndeprovision = "delete"'))
    functions = SqlAdapter.from_options({"url": url, "mapping": str(path)}).capabilities.functions
    assert Capability.PUSH_USER_DEACTIVATION in functions
    assert Capability.REACTIVATE_USERS not in functions
    path.write_text(HR_MAPPING)
    functions = SqlAdapter.from_options({"url": url, "mapping": str(path)}).capabilities.functions
    assert functions == frozenset(Capability)


def test_deprovision_delete_removes_the_user(url: str, tmp_path: Path) -> None:
    mapping = HR_MAPPING.replace('[users.active]\ncolumn = "status"\ntrue = "A"\nfalse = "T"\n', "")
    mapping = mapping.replace(
        'changed = "modified"', 'changed = "modified"\ndeprovision = "delete"'
    )
    mapping = mapping.replace('created_by = "okta"', 'created_by = "okta"\nstatus = "A"')
    adapter = hr(url, tmp_path, mapping)
    key = adapter.create_user("id-ada", employee("ada"), password=None, deadline=budget())
    adapter.deactivate_user(key, deadline=budget())
    assert adapter.get_user(key, deadline=budget()) is None
    adapter.close()


def test_changes_since_reports_what_changed_after_the_token(url: str, tmp_path: Path) -> None:
    for adapter in (SqlAdapter.from_options({"url": url}), hr(url, tmp_path)):
        start = adapter.changes_since(None, limit=10, deadline=budget())
        assert (list(start.users), list(start.groups), start.more) == ([], [], False)
        keys = [
            adapter.create_user(f"id-{n}", employee(f"u{n}"), password=None, deadline=budget())
            for n in range(5)
        ]
        seen: list[str] = []
        token, more = start.token, True
        while more:
            page = adapter.changes_since(token, limit=2, deadline=budget())
            assert len(page.users) <= 2
            seen += [r.key for r in page.users]
            token, more = page.token, page.more
        assert set(seen) == set(keys)
        adapter.update_user(
            keys[2],
            employee("u2", departmentName="Looms"),
            previous=employee("u2"),
            deadline=budget(),
        )
        later = adapter.changes_since(token, limit=10, deadline=budget())
        assert keys[2] in [r.key for r in later.users]
        changed = next(r for r in later.users if r.key == keys[2])
        assert changed.document[DEPT]["departmentName"] == "Looms"
        adapter.close()


def test_a_delta_over_rows_that_share_one_old_stamp_reads_only_what_changed(
    tmp_path: Path,
) -> None:
    """A table the application filled in bulk (every row stamped at one instant, long ago):
    the token keeps the last key at that settled instant, so a delta pass reads the changed rows
    alone instead of every row at the stamp, pass after pass."""
    from tests.legacy_rows import prefill, touch

    database = tmp_path / "legacy.db"
    prefill(database, 300)
    adapter = SqlAdapter.from_options({"url": f"sqlite:///{database}"})
    try:
        start = adapter.changes_since(None, limit=1000, deadline=budget())
        assert json.loads(start.token)["u"][1] is not None  # the old instant is settled
        nothing = adapter.changes_since(start.token, limit=1000, deadline=budget())
        assert list(nothing.users) == []
        touch(database, [7, 70, 170], "changed in the application")
        changes = adapter.changes_since(nothing.token, limit=1000, deadline=budget())
        assert sorted(r.key for r in changes.users) == ["170", "7", "70"]
        # Those were stamped just now: that instant is not settled, so the token keeps only the
        # time and the next pass reads again what carries it (a row stamped at that instant
        # after this pass is not missed).
        assert json.loads(changes.token)["u"][1] is None
    finally:
        adapter.close()


def test_mapping_check_names_each_problem_by_key_and_column(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hr.db'}"
    engine = create_engine(url)
    with engine.begin() as connection:
        for statement in hr_schema("sqlite"):
            connection.execute(text(statement))
        connection.execute(text("CREATE TABLE plain (id INTEGER PRIMARY KEY, login VARCHAR(9))"))
    engine.dispose()
    broken = HR_MAPPING.replace('"name.givenName" = "fname"', '"name.givenName" = "first"')
    broken = broken.replace('created_by = "okta"\n', "")
    broken = broken.replace('table = "roles"', 'table = "rolez"')
    path = tmp_path / "broken.toml"
    path.write_text(broken)
    problems, summary = check(url, path)
    assert 'users.columns."name.givenName": no column first in employees' in problems
    assert any(
        p.startswith("users.defaults: column employees.created_by is NOT NULL") for p in problems
    )
    assert "groups.table: no table or view rolez in the database" in problems
    assert "3 problem(s)" in summary or "problem(s)" in summary
    path.write_text('[users]\ntable = "plain"\nkey = "id"\n[users.columns]\nuserName = "login"\n')
    problems, _ = check(url, path)
    assert problems == [
        "users.columns.userName: column plain.login is not unique; add a unique index"
        " (scim-bridge finds records again by it)"
    ]


def test_the_worker_refuses_a_broken_mapping_with_the_same_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from scim_bridge.workers.settings import Settings

    path = tmp_path / "m.toml"
    path.write_text('[users]\ntable = "nowhere"\nkey = "id"\n[users.columns]\nuserName = "x"\n')
    settings = Settings(
        sql_url=f"sqlite:///{tmp_path / 'w.db'}", sql_mapping=path, auth_header_value="Bearer t"
    )
    with pytest.raises(SystemExit):
        refuse_broken_mapping(settings)
    assert "users.table: no table or view nowhere in the database" in capsys.readouterr().err


def test_mapping_init_writes_a_mapping_that_checks_once_confirmed(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from scim_bridge.cli.main import main

    hr(url, tmp_path).close()
    out = tmp_path / "init.toml"
    with pytest.raises(SystemExit) as done:
        main(["mapping", "init", url, "--table", "employees", "--output", str(out)])
    assert done.value.code == 0
    written = out.read_text()
    assert "guess: confirm" in written
    parsed = tomllib.loads(written)
    assert parsed["users"]["key"] == "emp_no"
    assert parsed["users"]["columns"]["userName"] == "login"
    assert parsed["users"]["active"]["column"] == "status"
    assert parsed["users"]["defaults"] == {"created_by": ""}
    problems, _ = check(url, out)
    assert problems == []


def test_a_refused_delete_leaves_every_earlier_statement_of_the_call_undone(
    url: str, tmp_path: Path
) -> None:
    # delete_user removes the memberships, then the row; the application's own foreign key
    # (timesheets) refuses the row, and the memberships must come back with it.
    adapter = hr(
        url,
        tmp_path,
        extra=["CREATE TABLE timesheets (emp_no INTEGER NOT NULL REFERENCES employees (emp_no))"],
    )
    key = adapter.create_user("id-ada", employee("ada"), password=None, deadline=budget())
    group = adapter.create_group("id-staff", group_document("staff"), deadline=budget())
    adapter.add_members(group, [key], deadline=budget())
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text(f"INSERT INTO timesheets (emp_no) VALUES ({int(key)})"))
    engine.dispose()
    with pytest.raises(PermanentError) as raised:
        adapter.delete_user(key, deadline=budget())
    assert "refused delete_user" in raised.value.message
    assert "foreign key" in raised.value.message.lower()
    assert rows(url, "SELECT emp_no FROM employee_roles") == [(int(key),)]
    assert adapter.get_user(key, deadline=budget()) is not None
    adapter.close()
