"""The sql adapter's mapping through the whole pipeline (api, worker, reconciler): a create whose
answer was lost is found again by its login where the application keeps no SCIM id, and a value
its column cannot hold is a clear 400 and a dead letter, with nothing written."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine, text

from scim_bridge.adapters.errors import TransientError
from scim_bridge.adapters.sql import SqlAdapter
from scim_bridge.cli.processes import wait_until
from scim_bridge.store import Kind
from tests.adapters.databases import HR_MAPPING, hr_schema
from tests.test_users import user_body

USERS = "/scim/v2/Users"


class LosesTheFirstCreate(SqlAdapter):
    lost = False

    def create_user(self, resource_id, user, *, password, deadline):
        key = super().create_user(resource_id, user, password=password, deadline=deadline)
        if not self.lost:
            self.lost = True
            raise TransientError("create_user: timed out (the row landed)")
        return key


def test_a_lost_create_is_found_by_login_without_an_id_column(client, legacy, store, tmp_path):
    url = f"sqlite:///{tmp_path / 'hr.db'}"
    engine = create_engine(url)
    with engine.begin() as connection:
        for statement in hr_schema("sqlite"):
            connection.execute(text(statement))
    mapping = Path(tmp_path / "hr.toml")
    mapping.write_text(HR_MAPPING.replace('[link]\ntable = "scim_bridge_links"\n', ""))
    adapter = legacy.use(LosesTheFirstCreate.from_options({"url": url, "mapping": str(mapping)}))
    rid = client.simulate_post(USERS, json=user_body("lost@example.com")).json["id"]
    wait_until(lambda: store.backlog() == 0, timeout=20)
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT emp_no, login FROM employees")).all()
    assert [tuple(row) for row in rows] == [(1, "lost@example.com")]
    snap = store.snapshot(Kind.USER, rid)
    assert snap.legacy_key == "1" and snap.error is None
    assert adapter.lost
    adapter.close()
    engine.dispose()


def test_a_value_the_mapped_column_cannot_hold_is_refused_and_dead_lettered(
    client, legacy, store, tmp_path
):
    url = f"sqlite:///{tmp_path / 'hr.db'}"
    engine = create_engine(url)
    with engine.begin() as connection:
        for statement in hr_schema("sqlite"):
            connection.execute(text(statement))
    mapping = Path(tmp_path / "hr.toml")
    mapping.write_text(HR_MAPPING)
    adapter = legacy.use(SqlAdapter.from_options({"url": url, "mapping": str(mapping)}))
    body = user_body("long@example.com", name={"givenName": "G" * 50, "familyName": "Doe"})
    answer = client.simulate_post(USERS, json=body)
    assert answer.status_code == 400
    assert "name.givenName is 50 characters long" in answer.text
    assert "holds at most 40" in answer.text
    wait_until(lambda: store.backlog() == 0, timeout=20)
    assert any("holds at most 40" in str(entry) for entry in store.dead_letters().values())
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM employees")).scalar() == 0
    adapter.close()
    engine.dispose()
