"""Imports as operators run them: ``scim-bridge sync`` killed and restarted, and ``dev``.

Real processes, a real Redis and a real SQLite database filled by the application itself.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import redis

from scim_bridge.store import Kind
from scim_bridge.workers.identity import derived_id
from scim_bridge.workers.settings import Settings
from tests.legacy_rows import prefill
from tests.support import free_port, running_dev, wait_until

ROOT = Path(__file__).parent.parent


def _env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCIM_BRIDGE_")}
    env["PYTHONPATH"] = str(ROOT)
    env.update(values)
    return env


def test_a_sync_killed_mid_pass_and_restarted_loses_and_duplicates_nothing(redis_server, tmp_path):
    database = tmp_path / "legacy.db"
    prefill(database, 2000)
    prefix = f"kill{uuid.uuid4().hex[:8]}"
    env = _env(
        SCIM_BRIDGE_REDIS_URL=redis_server.url,
        SCIM_BRIDGE_KEY_PREFIX=prefix,
        SCIM_BRIDGE_AUTH_MODE="none",
        SCIM_BRIDGE_ADAPTER="sql",
        SCIM_BRIDGE_SQL_URL=f"sqlite:///{database}",
        SCIM_BRIDGE_SYNC_PAGE_SIZE="50",
        SCIM_BRIDGE_SIMULATE_LATENCY_S="0.05",
    )
    command = [sys.executable, "-m", "scim_bridge.cli", "sync", "--json"]
    client = redis.Redis.from_url(redis_server.url)
    first = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    try:
        wait_until(lambda: int(client.hget(f"{prefix}:sync:run", "listed") or 0) >= 400, timeout=60)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    listed_before = int(client.hget(f"{prefix}:sync:run", "listed"))
    assert listed_before < 2000
    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr
    summary = json.loads(second.stdout)
    assert summary["status"] == "done"
    # It continued from the checkpoint: at most one page was listed again.
    assert 2000 <= summary["tally"]["listed"] <= 2050
    assert client.zcard(f"{prefix}:u:order") == 2000
    assert client.hlen(f"{prefix}:u:ix:userName") == 2000
    namespace = Settings(
        redis_url=redis_server.url, auth_mode="none", key_prefix=prefix
    ).id_namespace_uuid()
    assert client.hget(f"{prefix}:u:ix:userName", "person1234@legacy.example.com").decode() == (
        derived_id(namespace, Kind.USER, "1235")
    )
    assert not client.exists(f"{prefix}:sync:run")


def test_dev_imports_what_its_database_holds_and_an_okta_put_changes_the_row_in_place(
    tmp_path: Path,
):
    prefill(tmp_path / "scim-bridge-legacy.db", 30)
    port = free_port()
    with running_dev(tmp_path, port, _env(), timeout=90) as dev:
        header = dev.header
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}/scim/v2",
            headers={"Authorization": header},
            timeout=10,
        ) as http:
            wait_until(lambda: http.get("/Users").json()["totalResults"] == 30, timeout=60)
            found = http.get(
                "/Users", params={"filter": 'userName eq "person7@legacy.example.com"'}
            ).json()["Resources"][0]
            namespace = Settings(auth_mode="none", adapter="sql").id_namespace_uuid()
            assert found["id"] == derived_id(namespace, Kind.USER, "8")
            assert found["name"] == {"givenName": "Given7", "familyName": "Family7"}
            body = {k: v for k, v in found.items() if k != "meta"} | {"displayName": "From Okta"}
            replaced = http.put(f"/Users/{found['id']}", json=body)
            assert replaced.status_code == 200, replaced.text

            def row() -> tuple[str, ...] | None:
                with sqlite3.connect(tmp_path / "scim-bridge-legacy.db") as db:
                    return db.execute(
                        "SELECT display_name, user_name FROM legacy_users WHERE id = 8"
                    ).fetchone()

            wait_until(lambda: row()[0] == "From Okta", timeout=30)
            with sqlite3.connect(tmp_path / "scim-bridge-legacy.db") as db:
                assert db.execute("SELECT count(*) FROM legacy_users").fetchone()[0] == 30


def test_a_delta_import_from_the_sql_adapter_sees_rows_the_application_changed(
    tmp_path, legacy, store
):
    from scim_bridge.adapters.sql import SqlAdapter
    from scim_bridge.workers.sync import Importer
    from tests.legacy_rows import touch

    database = tmp_path / "legacy.db"
    prefill(database, 50)
    adapter = SqlAdapter.from_options({"url": f"sqlite:///{database}"})
    try:
        assert adapter.supports_delta
        sync = Importer(store, adapter, namespace=uuid.uuid4(), page_size=20)
        assert sync.full_pass().tally.created == 50
        touch(database, [3, 17, 42], "changed in the application")
        delta = sync.delta_pass()
        assert delta.tally.updated == 3 and delta.tally.created == 0
        rid = derived_id(sync.namespace, Kind.USER, "17")
        assert store.snapshot(Kind.USER, rid).desired["displayName"] == "changed in the application"
    finally:
        adapter.close()
