"""SIGTERM lets an in-flight legacy call finish; the worker then stops."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import falcon.testing

from scim_bridge.api.app import create_app
from scim_bridge.cli.processes import wait_until
from scim_bridge.store import Field, Kind
from scim_bridge.workers.celery_app import create_celery
from scim_bridge.workers.runtime import Runtime
from tests.support import TOKEN, make_settings
from tests.test_users import user_body


def test_sigterm_lets_the_in_flight_legacy_call_finish(settings, tmp_path: Path):
    # Database 1 of the test Redis: a broker and read model of its own, away from the session worker.
    url = settings.redis_url.rsplit("/", 1)[0] + "/1"
    legacy_db = tmp_path / "legacy.db"
    isolated = make_settings(url, settings.password_key.get_secret_value(), confirm_wait_s=0.0)
    runtime = Runtime(isolated)
    runtime.store.redis.flushdb()
    env = {
        **os.environ,
        "SCIM_BRIDGE_REDIS_URL": url,
        "SCIM_BRIDGE_AUTH_HEADER_VALUE": TOKEN,
        "SCIM_BRIDGE_PASSWORD_KEY": settings.password_key.get_secret_value(),
        "SCIM_BRIDGE_ADAPTER": "sql",
        "SCIM_BRIDGE_SQL_URL": f"sqlite:///{legacy_db}",
        "SCIM_BRIDGE_SIMULATE_LATENCY_S": "2.5",
        "SCIM_BRIDGE_WORKER_METRICS_PORT": "0",
    }
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "scim_bridge.cli",
            "worker",
            "--concurrency",
            "1",
            "--loglevel",
            "WARNING",
        ],
        env=env,
        cwd=Path(__file__).parent.parent,
    )
    try:
        wait_until(lambda: runtime.store.live_workers(), timeout=30)
        app = create_app(isolated, store=runtime.store, publish=_publisher(isolated))
        client = falcon.testing.TestClient(app, headers={"Authorization": TOKEN})
        rid = client.simulate_post("/scim/v2/Users", json=user_body("inflight@example.com")).json[
            "id"
        ]
        # The reconciliation has started its (slow) legacy call.
        wait_until(
            lambda: (
                runtime.store.redis.hget(runtime.store.keys.resource(Kind.USER, rid), Field.STARTS)
                == b"1"
            ),
            timeout=15,
        )
        time.sleep(0.3)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0
        with sqlite3.connect(legacy_db) as db:
            rows = db.execute("select scim_id from legacy_users").fetchall()
        assert rows == [(rid,)]
        assert runtime.store.snapshot(Kind.USER, rid).state == "applied"
        assert runtime.store.backlog() == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        runtime.store.redis.flushdb()


def _publisher(settings):
    app = create_celery(settings)
    return lambda kind, rid: app.send_task("scim_bridge.reconcile", args=[kind.value, rid])
