"""Schema shapes beyond the contract kit's: a login as the key (a template), one group per user
in a column of the user row, booleans as Y/N, a date kept as text, an integer status."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from scim_bridge.adapters.contract import budget, group_document, user_document
from scim_bridge.adapters.sql import SqlAdapter
from tests.adapters.databases import KINDS, fresh_database

EXT = "urn:okta:onprem_app:1.0:user:custom"
MAPPING = f'''
[users]
table = "accounts"
key = "username"
key_template = "{{userName}}"
[users.columns]
userName = "username"
displayName = "full_name"
"{EXT}:isManager" = {{ column = "mgr", true = "Y", false = "N" }}
"{EXT}:hireDate" = {{ column = "hired", format = "%Y%m%d" }}
[users.active]
column = "enabled"
true = 1
false = 0
[groups]
table = "departments"
key = "dept_code"
key_template = "{{displayName}}"
[groups.columns]
displayName = "dept_code"
[groups.members]
column = "dept_code"
'''


@pytest.fixture(params=KINDS)
def adapter(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlAdapter]:
    for url in fresh_database(request.param, tmp_path):
        engine = create_engine(url)
        with engine.begin() as connection:
            connection.execute(text("CREATE TABLE departments (dept_code VARCHAR(20) PRIMARY KEY)"))
            connection.execute(
                text(
                    "CREATE TABLE accounts (username VARCHAR(64) PRIMARY KEY, full_name"
                    " VARCHAR(100), enabled INTEGER NOT NULL, mgr CHAR(1), hired VARCHAR(8),"
                    " dept_code VARCHAR(20) NULL REFERENCES departments (dept_code))"
                )
            )
        engine.dispose()
        (tmp_path / "m.toml").write_text(MAPPING)
        built = SqlAdapter.from_options({"url": url, "mapping": str(tmp_path / "m.toml")})
        built.url = url  # type: ignore[attr-defined]
        yield built
        built.close()


def test_a_login_key_flags_and_dates_round_trip(adapter: SqlAdapter) -> None:
    user = user_document("ada")
    user[EXT] = {"isManager": True, "hireDate": "2024-05-01"}
    key = adapter.create_user("id-ada", user, password=None, deadline=budget())
    assert key == "ada"
    engine = create_engine(adapter.url)  # type: ignore[attr-defined]
    with engine.connect() as connection:
        row = connection.execute(text("SELECT mgr, hired, enabled FROM accounts")).one()
    engine.dispose()
    assert tuple(row) == ("Y", "20240501", 1)
    adapter.deactivate_user(key, deadline=budget())
    record = adapter.get_user(key, deadline=budget())
    assert record is not None
    assert record.document[EXT] == {"isManager": True, "hireDate": "2024-05-01"}
    assert record.document["active"] is False


def test_one_group_per_user_lives_in_the_user_row(adapter: SqlAdapter) -> None:
    ada = adapter.create_user("id-ada", user_document("ada"), password=None, deadline=budget())
    bob = adapter.create_user("id-bob", user_document("bob"), password=None, deadline=budget())
    eng = adapter.create_group("id-eng", group_document("ENG"), deadline=budget())
    assert eng == "ENG"
    adapter.add_members(eng, [ada, bob], deadline=budget())
    record = adapter.get_group(eng, deadline=budget())
    assert record is not None and sorted(record.document["members"]) == ["ada", "bob"]
    adapter.remove_members(eng, [bob], deadline=budget())
    assert adapter.get_group(eng, deadline=budget()).document["members"] == ["ada"]  # type: ignore[union-attr]
    adapter.delete_group(eng, deadline=budget())
    assert adapter.get_group(eng, deadline=budget()) is None
    assert adapter.get_user(ada, deadline=budget()) is not None
