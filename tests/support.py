"""What the tests share besides fixtures: the token, test settings and a Redis server.

Imported by the fixtures (``conftest.py``), the tests and the fault suite; nothing imports
``conftest``. Process, port and wait helpers are in :mod:`scim_bridge.cli.processes`.
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path
from typing import Any

import redis

from scim_bridge.cli.processes import free_port, redis_server_command, wait_until
from scim_bridge.workers.settings import Settings, load_settings

TOKEN = "Bearer test-token"


class RedisServer:
    """A redis-server process of the test session."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            redis_server_command(self.port, self.directory),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port)
        wait_until(lambda: _pings(client), timeout=10)

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(10)
            self.process = None


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


def make_settings(redis_url: str, password_key: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "redis_url": redis_url,
        "auth_mode": "header",
        "auth_header_value": TOKEN,
        "adapter": "memory",
        "password_key": password_key,
        "confirm_wait_s": 3.0,
        "sweep_grace_s": 30.0,
        "retry_backoff_base_s": 0.05,
        "retry_backoff_max_s": 0.5,
        "max_transient_attempts": 5,
        "worker_concurrency": 1,
        # Falcon's test client names this host; gunicorn tests use 127.0.0.1 (a default).
        "allowed_hosts": ["falconframework.org", "127.0.0.1", "localhost"],
    }
    values.update(overrides)
    return load_settings(**values)
