"""``scim-bridge serve`` always runs gunicorn with the shipped configuration, or the one named."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from scim_bridge.cli.processes import free_port, wait_until
from scim_bridge.cli.serve import shipped_config
from tests.support import TOKEN

ROOT = Path(__file__).resolve().parent.parent


def test_serve_loads_the_shipped_gunicorn_configuration(gunicorn):
    # The access log line format and the JSON logging exist only in api/gunicorn_conf.py: a
    # serve that did not load it would log no requests at all (gunicorn's default is no access
    # log), and in text.
    answer = httpx.get(f"{gunicorn.base_url}/healthz", timeout=5)
    assert answer.status_code == 200

    def logged() -> dict[str, object] | None:
        lines = [json.loads(line) for line in gunicorn.log.read_text().splitlines()]
        request_id = answer.headers["X-Request-ID"]
        return next((entry for entry in lines if entry.get("request_id") == request_id), None)

    entry = wait_until(logged, timeout=10)
    assert entry["logger"] == "gunicorn.access" and entry["status"] == 200, entry
    assert f" {entry['duration_ms']}ms request_id=" in str(entry["message"]), entry


def test_the_shipped_configuration_is_the_installed_module():
    assert shipped_config() == ROOT / "api" / "gunicorn_conf.py"
    assert not (ROOT / "deploy" / "gunicorn.conf.py").exists()  # no second copy to drift


def test_serve_config_names_another_file_whose_values_apply(tmp_path, settings):
    port = free_port()
    config = tmp_path / "other.conf.py"
    config.write_text(
        f'bind = "127.0.0.1:{port}"\n'
        'worker_class = "gthread"\n'
        "workers = 1\n"
        'accesslog = "-"\n'
        'access_log_format = "from-the-other-file %(s)s %(U)s"\n'
        "control_socket_disable = True\n"
    )
    log = tmp_path / "serve.log"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SCIM_BRIDGE_")},
        "SCIM_BRIDGE_REDIS_URL": settings.redis_url,
        "SCIM_BRIDGE_AUTH_MODE": "header",
        "SCIM_BRIDGE_AUTH_HEADER_VALUE": TOKEN,
        "SCIM_BRIDGE_PASSWORD_KEY": settings.password_key.get_secret_value(),
        "SCIM_BRIDGE_ADAPTER": "memory",
    }
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "scim_bridge.cli", "serve", "--config", str(config)],
            env=env,
            cwd=ROOT,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:

        def up() -> bool:
            assert process.poll() is None, log.read_text()
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).is_success
            except httpx.HTTPError:
                return False

        wait_until(up, timeout=30, interval=0.1)
        wait_until(lambda: "from-the-other-file 200 /healthz" in log.read_text(), timeout=10)
        assert "request_id=" not in log.read_text()  # the shipped file was not loaded as well
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)
