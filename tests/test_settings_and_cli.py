"""Settings validation, authentication modes, and `scim-bridge dev` as an operator runs it."""

from __future__ import annotations

import base64
import ipaddress
import os
import subprocess
import sys
import time
from pathlib import Path

import falcon.testing
import httpx
import pytest

from scim_bridge.api.app import create_app
from scim_bridge.api.capacity import BacklogEstimate
from scim_bridge.cli.processes import free_port, start_in_session, stop_group, wait_until
from scim_bridge.workers.settings import SettingsError, load_settings
from tests.support import make_settings, running_dev
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


def test_dev_runs_everything_on_loopback_and_ctrl_c_stops_it(tmp_path: Path):
    port, metrics_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCIM_BRIDGE_")}
    with running_dev(
        tmp_path,
        port,
        {
            **env,
            "PYTHONPATH": str(Path(__file__).parent.parent),
            "SCIM_BRIDGE_WORKER_METRICS_PORT": str(metrics_port),
        },
        timeout=60,
    ) as dev:
        text = dev.banner
        assert f"http://127.0.0.1:{port}/scim/v2/" in text, text
        header = dev.header
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}", headers={"Authorization": header}, timeout=10
        ) as http:
            created = http.post("/scim/v2/Users", json=user_body("dev@example.com"))
            assert created.status_code == 201, created.text
            assert created.headers.get("X-SCIM-Bridge-Sync") is None  # confirmed by the worker

        # Nothing dev started (api, worker metrics, Redis) can be reached from another machine.
        def bound() -> dict[int, ipaddress.IPv4Address | ipaddress.IPv6Address] | None:
            found = _listening(dev.process.pid)
            return found if found.keys() >= {port, metrics_port} else None

        listening = wait_until(bound, timeout=10)
        assert len(listening) >= 3, listening  # and Redis
        assert all(address.is_loopback for address in listening.values()), listening
        assert (tmp_path / "scim-bridge-legacy.db").exists()
        assert (tmp_path / ".scim-bridge" / "appendonly.aof").exists() or (
            tmp_path / ".scim-bridge" / "appendonlydir"
        ).exists()
    leftovers = subprocess.run(
        ["pgrep", "-f", f"--port {port}"], capture_output=True, text=True
    ).stdout.split()
    assert leftovers == [], leftovers


def test_an_unknown_adapter_stops_dev_worker_and_serve_with_the_installed_names(tmp_path):
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SCIM_BRIDGE_")},
        "PYTHONPATH": str(Path(__file__).parent.parent),
        "SCIM_BRIDGE_ADAPTER": "acme-typo",
        "SCIM_BRIDGE_AUTH_MODE": "none",
        "SCIM_BRIDGE_ACCEPT_PASSWORDS": "false",
        "SCIM_BRIDGE_WORKER_METRICS_PORT": "0",
    }
    # Nothing listens there: a worker or api that does not refuse at once keeps retrying it
    # (dev starts a Redis of its own).
    redis = {"SCIM_BRIDGE_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    for command in (
        ["dev", "--port", str(free_port())],
        ["worker"],
        ["serve", "--port", str(free_port())],
    ):
        log = tmp_path / f"{command[0]}.log"
        process = start_in_session(
            [sys.executable, "-m", "scim_bridge.cli", *command],
            log,
            env if command[0] == "dev" else {**env, **redis},
            tmp_path,
        )
        try:
            code = process.wait(30)
        except subprocess.TimeoutExpired:
            code = None
        finally:
            stop_group(process, grace_s=10)
        output = log.read_text()
        assert code == 2, (command, output)
        assert "no adapter named 'acme-typo' is installed" in output, output
        assert "available adapters: ldap, memory, sql" in output, output


def _listening(root: int) -> dict[int, ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """Port -> address of every TCP socket that ``root`` or a descendant listens on (Linux)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    family, grew = {root}, True
    while grew:
        more = {pid for pid, parent in parents.items() if parent in family} - family
        family |= more
        grew = bool(more)
    inodes = set()
    for pid in family:
        try:
            links = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
        except OSError:
            continue
        inodes |= {link[8:-1] for link in links if link.startswith("socket:[")}
    found: dict[int, ipaddress.IPv4Address | ipaddress.IPv6Address] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A" or fields[9] not in inodes:  # 0A: LISTEN
                continue
            address, port = fields[1].split(":")
            raw = b"".join(
                bytes.fromhex(address[i : i + 8])[::-1] for i in range(0, len(address), 8)
            )
            found[int(port, 16)] = ipaddress.ip_address(raw)
    return found
