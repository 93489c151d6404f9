"""Settings validation, authentication modes, and `scim-bridge dev` as an operator runs it."""

from __future__ import annotations

import base64
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import falcon.testing
import httpx
import pytest

from scim_bridge.api.app import create_app
from scim_bridge.api.capacity import BacklogEstimate
from scim_bridge.cli.processes import free_port, wait_until
from scim_bridge.workers.settings import SettingsError, load_settings
from tests.support import make_settings
from tests.test_users import user_body


def test_settings_come_from_a_toml_file_and_the_environment_wins(tmp_path, monkeypatch):
    config = tmp_path / "scim-bridge.toml"
    config.write_text(
        'auth_mode = "basic"\nauth_username = "okta"\nauth_password = "from-file"\nconfirm_wait_s = 1.5\n'
    )
    monkeypatch.setenv("SCIM_BRIDGE_CONFIG", str(config))
    monkeypatch.setenv("SCIM_BRIDGE_AUTH_PASSWORD", "from-env")
    settings = load_settings()
    assert settings.auth_username == "okta" and settings.confirm_wait_s == 1.5
    assert settings.auth_password.get_secret_value() == "from-env"


def test_a_bad_budget_is_a_start_up_error_that_says_what_to_change():
    with pytest.raises(SettingsError) as error:
        load_settings(auth_mode="none", adapter_deadline_s=20, visibility_timeout_s=30)
    message = str(error.value)
    assert "visibility timeout" in message and "SCIM_BRIDGE_" in message
    with pytest.raises(SettingsError, match="SCIM_BRIDGE_AUTH_HEADER_VALUE"):
        load_settings(auth_mode="header")
    with pytest.raises(SettingsError, match="SCIM_BRIDGE_CONFIRM_WAIT_S"):
        load_settings(auth_mode="none", confirm_wait_s=20)


def test_basic_authentication(settings, store, legacy, publisher):
    basic = make_settings(
        settings.redis_url,
        settings.password_key.get_secret_value(),
        auth_mode="basic",
        auth_username="okta",
        auth_password="s3cret",
    )
    client = falcon.testing.TestClient(create_app(basic, store=store, publish=publisher))
    good = "Basic " + base64.b64encode(b"okta:s3cret").decode()
    bad = "Basic " + base64.b64encode(b"okta:wrong").decode()
    assert client.simulate_get("/scim/v2/Users", headers={"Authorization": good}).status_code == 200
    refused = client.simulate_get("/scim/v2/Users", headers={"Authorization": bad})
    assert refused.status_code == 401 and refused.headers["WWW-Authenticate"].startswith("Basic")
    assert client.simulate_get("/scim/v2/Users").status_code == 401


def test_no_authentication_is_explicit_and_warned_about(settings, store, legacy, publisher, caplog):
    open_settings = make_settings(
        settings.redis_url, settings.password_key.get_secret_value(), auth_mode="none"
    )
    client = falcon.testing.TestClient(create_app(open_settings, store=store, publish=publisher))
    assert client.simulate_get("/scim/v2/Users").status_code == 200
    assert "authentication is off" in caplog.text


def test_a_write_answers_at_once_when_the_backlog_makes_confirmation_impossible(
    settings, store, legacy, publisher
):
    estimate = BacklogEstimate(store, refresh_s=0)
    assert estimate.can_confirm_within(2.0)
    store.redis.hset(store.keys.stats, "reconcile_s", "5.0")  # slow legacy application
    for i in range(5):
        store.redis.zadd(store.keys.dirty, {f"u:backlog-{i}": time.time()})
    try:
        assert not estimate.can_confirm_within(2.0)
        client = falcon.testing.TestClient(
            create_app(settings, store=store, publish=lambda k, r: None),
            headers={"Authorization": "Bearer test-token"},
        )
        started = time.monotonic()
        response = client.simulate_post("/scim/v2/Users", json=user_body("now@example.com"))
        assert response.status_code == 201
        assert response.headers["X-SCIM-Bridge-Sync"] == "pending"
        assert time.monotonic() - started < 1.0
    finally:
        store.redis.zrem(store.keys.dirty, *[f"u:backlog-{i}" for i in range(5)])
        store.redis.hset(store.keys.stats, "reconcile_s", "0.01")


def test_dev_runs_everything_and_ctrl_c_stops_it(tmp_path: Path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCIM_BRIDGE_")}
    dev = subprocess.Popen(
        [sys.executable, "-m", "scim_bridge.cli", "dev", "--port", str(port)],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(Path(__file__).parent.parent)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []
    try:

        def announced() -> bool:
            line = dev.stdout.readline()
            output.append(line)
            return "Ctrl-C stops" in line or dev.poll() is not None

        wait_until(announced, timeout=60, interval=0)
        text = "".join(output)
        assert f"http://127.0.0.1:{port}/scim/v2/" in text, text
        header = re.search(r"credentials\s+: Authorization: (Bearer \S+)", text).group(1)
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}", headers={"Authorization": header}, timeout=10
        ) as http:
            created = http.post("/scim/v2/Users", json=user_body("dev@example.com"))
            assert created.status_code == 201, created.text
            assert created.headers.get("X-SCIM-Bridge-Sync") is None  # confirmed by the worker
        assert (tmp_path / "scim-bridge-legacy.db").exists()
        assert (tmp_path / ".scim-bridge" / "appendonly.aof").exists() or (
            tmp_path / ".scim-bridge" / "appendonlydir"
        ).exists()
    finally:
        dev.send_signal(signal.SIGINT)
        dev.wait(60)
    leftovers = subprocess.run(
        ["pgrep", "-f", f"--port {port}"], capture_output=True, text=True
    ).stdout.split()
    assert leftovers == [], leftovers
