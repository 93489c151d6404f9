"""A whole scim-bridge on 127.0.0.1 for one fault case, made of real processes.

A :class:`Stack` owns one temporary directory and, inside it, everything a case needs:

- a ``redis-server`` with its append-only file (``tests.support.RedisServer``), restartable on
  the same port and directory; or, with ``sentinel=True``, a primary, a replica and three
  Sentinels (``tests.support.SentinelGroup``) that every process reaches through Sentinel;
- the legacy application: a SQLite database (``legacy.db``) behind the ``sql`` adapter;
- Celery workers as subprocesses (``python -m scim_bridge.cli worker``, or
  ``tests/faults/worker_main.py`` when a case needs a simulator flag no setting reaches), each in
  its own process group so that ``kill -9`` can reach its pool children too;
- beat (``python -m scim_bridge.cli beat``), which runs the sweeper every second;
- the api under gunicorn (``python -m scim_bridge.cli serve``).

Every process is started in its own session, logs to a file of the stack's directory, and is
killed in :meth:`Stack.close` whatever happened. Nothing here sleeps a fixed time to wait for
something: it polls a condition with a bound. The clients of a case are in
:mod:`tests.faults.clients`.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis
from cryptography.fernet import Fernet

from scim_bridge.cli import processes
from scim_bridge.cli.processes import free_port, wait_until
from scim_bridge.store import Store, redis_client
from tests.support import TOKEN, RedisServer, SentinelGroup

ROOT = Path(__file__).resolve().parents[2]

# The budget every case runs with: a 2 s adapter deadline gives a 17 s lock TTL, and the sweeper
# re-publishes a dirty resource untouched for 18 s (settings require grace > lock TTL).
BASE_SETTINGS = {
    "SCIM_BRIDGE_AUTH_MODE": "header",
    "SCIM_BRIDGE_AUTH_HEADER_VALUE": TOKEN,
    "SCIM_BRIDGE_ADAPTER": "sql",
    "SCIM_BRIDGE_TIMEOUT_BUDGET_S": "30",
    "SCIM_BRIDGE_ADAPTER_DEADLINE_S": "2",
    "SCIM_BRIDGE_CONFIRM_WAIT_S": "0.3",
    "SCIM_BRIDGE_SWEEP_INTERVAL_S": "1",
    "SCIM_BRIDGE_SWEEP_GRACE_S": "18",
    "SCIM_BRIDGE_RETRY_BACKOFF_BASE_S": "0.2",
    "SCIM_BRIDGE_RETRY_BACKOFF_MAX_S": "2",
    "SCIM_BRIDGE_MAX_TRANSIENT_ATTEMPTS": "40",
    # The breaker's pause, shortened with the rest of the time line (default 30 s).
    "SCIM_BRIDGE_BREAKER_OPEN_S": "3",
    "SCIM_BRIDGE_SIMULATE_LATENCY_S": "0.05",
    "SCIM_BRIDGE_LOG_LEVEL": "INFO",
}


@dataclass
class Process:
    """One started process (the leader of its own process group)."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    spec: dict[str, Any] = field(default_factory=dict)
    """How it was started (a worker's concurrency, runner and environment), to restart it."""

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def group_pids(self) -> list[int]:
        """Every live process of this process group (the leader and its pool children)."""
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = (entry / "stat").read_text()
                # Fields after the command name, which may hold spaces and parentheses.
                fields = stat[stat.rindex(")") + 2 :].split()
                if int(fields[2]) == self.pid and fields[0] != "Z":
                    found.append(int(entry.name))
        return found

    def children(self) -> list[int]:
        """The leader's direct children (a Celery worker's pool processes)."""
        pids: list[int] = []
        for task in Path(f"/proc/{self.pid}/task").glob("*"):
            with contextlib.suppress(OSError):
                pids.extend(int(p) for p in (task / "children").read_text().split())
        return pids

    def children_in_legacy_calls(self) -> list[int]:
        """Pool children asleep in a timer right now: inside a simulated legacy call.

        The simulated legacy application's latency is a sleep, and a reconciling pool child
        sleeps nowhere else (an idle one waits on its pipe), so a child whose kernel wait
        channel is a nanosleep is in the middle of a legacy call.
        """
        busy = []
        for pid in self.children():
            with contextlib.suppress(OSError):
                if "nanosleep" in Path(f"/proc/{pid}/wchan").read_text():
                    busy.append(pid)
        return busy

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def terminate(process: Process, grace_s: float = 20.0) -> None:
    """SIGTERM to the leader, then SIGKILL of the whole group after ``grace_s``; reaps it."""
    processes.stop_group(process.popen, grace_s, whole_group=False)
    _wait_group_gone(process)


def kill_group(process: Process) -> None:
    """SIGKILL to every process of the group (no-op for the ones already gone); reaps."""
    processes.kill_group(process.popen)
    _wait_group_gone(process)


def _wait_group_gone(process: Process) -> None:
    deadline = time.monotonic() + 10
    while process.group_pids() and time.monotonic() < deadline:
        time.sleep(0.05)


class Stack:
    """Redis, the legacy database, workers, beat and the api of one case."""

    def __init__(self, directory: Path, *, sentinel: bool = False, **settings: str) -> None:
        """With ``sentinel``, Redis is a :class:`~tests.support.SentinelGroup` (a primary, a
        replica, three Sentinels) and every process finds the primary through the Sentinels."""
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.redis_dir = directory / "redis"
        self.redis_dir.mkdir(exist_ok=True)
        self.db_path = directory / "legacy.db"
        self.sql_url = f"sqlite:///{self.db_path}"
        self.group = SentinelGroup(self.redis_dir) if sentinel else None
        self.redis = self.group.primary if self.group else RedisServer(self.redis_dir)
        redis_settings = self.group.settings() if self.group else {}
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("SCIM_BRIDGE_")},
            **BASE_SETTINGS,
            "SCIM_BRIDGE_REDIS_URL": self.redis.url,
            **redis_settings,
            "SCIM_BRIDGE_PASSWORD_KEY": Fernet.generate_key().decode(),
            "SCIM_BRIDGE_SQL_URL": self.sql_url,
            **settings,
        }
        self.env.pop("FAULT_RECORD_CALLS", None)
        self.processes: list[Process] = []
        self.workers: list[Process] = []
        self.exits: list[dict[str, Any]] = []
        """Workers that exited on their own, seen by :meth:`supervise`."""
        self._supervising = threading.Event()
        self.api_url = ""
        self._counter = 0
        if self.group is not None:  # the checks follow the primary too
            self.client = redis_client(self.redis.url, timeout_s=5, sentinels=self.group.spec())
        else:
            self.client = redis.Redis.from_url(self.redis.url, socket_timeout=5)
        self.store = Store(self.client, "sb")

    # Starting things --------------------------------------------------------------------------
    def _start(self, name: str, argv: list[str], env: Mapping[str, str]) -> Process:
        self._counter += 1
        log = self.directory / f"{self._counter:02d}-{name}.log"
        popen = processes.start_in_session(argv, log, dict(env), ROOT)
        process = Process(name, popen, log)
        self.processes.append(process)
        return process

    def start_worker(
        self, concurrency: int = 2, *, runner: str = "cli", wait: bool = True, **env: str
    ) -> Process:
        """A Celery worker subprocess; ``runner="faults"`` uses tests/faults/worker_main.py."""
        merged = {**self.env, **env}
        # Several workers share this host: each serves its metrics on a port of its own.
        merged.setdefault("SCIM_BRIDGE_WORKER_METRICS_PORT", str(free_port()))
        if runner == "cli":
            argv = [
                sys.executable,
                "-m",
                "scim_bridge.cli",
                "worker",
                "--concurrency",
                str(concurrency),
            ]
        else:
            argv = [sys.executable, "-m", "tests.faults.worker_main", str(concurrency)]
        worker = self._start("worker", argv, merged)
        worker.spec = {"concurrency": concurrency, "runner": runner, "env": env}
        self.workers.append(worker)
        if wait:
            self.wait_worker_ready(worker)
        return worker

    def wait_worker_ready(self, worker: Process, timeout: float = 30.0) -> None:
        """Until the worker's consumer announced itself in Redis (its heartbeat)."""

        def ready() -> bool:
            if not worker.alive():
                raise AssertionError(f"worker exited:\n{worker.tail()}")
            with contextlib.suppress(redis.RedisError):
                return any(f":{worker.pid}:" in host for host in self.store.live_workers())
            return False

        wait_until(ready, timeout=timeout, interval=0.05)

    def start_beat(self) -> Process:
        schedule = self.directory / f"beat-schedule-{self._counter}"
        return self._start(
            "beat",
            [sys.executable, "-m", "scim_bridge.cli", "beat", "--schedule", str(schedule)],
            self.env,
        )

    def start_api(self, workers: int = 2, threads: int = 16, **env: str) -> Process:
        port = free_port()
        api = self._start(
            "api",
            processes.serve_command(port, workers, threads),
            # gunicorn's control socket goes under XDG_RUNTIME_DIR: one per stack, so that no
            # other gunicorn on the machine shares (or removes) it.
            {**self.env, "XDG_RUNTIME_DIR": str(self.directory), **env},
        )
        self.api_url = f"http://127.0.0.1:{port}"

        def up() -> bool:
            if not api.alive():
                raise AssertionError(f"api exited:\n{api.tail()}")
            try:
                return httpx.get(f"{self.api_url}/readyz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(up, timeout=30, interval=0.1)
        return api

    def supervise(self, restart: str = "on-failure") -> None:
        """Watch the workers as the shipped service units do, until :meth:`close`.

        A worker that exits on its own is recorded in :attr:`exits`; with ``"on-failure"`` (the
        systemd units' ``Restart=on-failure``) it is started again only if its exit status is
        not 0, with ``"always"`` (Kubernetes, compose ``restart: always``) in any case.
        """

        def watch() -> None:
            while not self._supervising.wait(0.2):
                for worker in list(self.workers):
                    status = worker.popen.poll()
                    if status is None:
                        continue
                    self.workers.remove(worker)
                    again = restart == "always" or status != 0
                    self.exits.append(
                        {
                            "pid": worker.pid,
                            "status": status,
                            "restarted": again,
                            "log": [
                                line[:300]
                                for line in worker.log.read_text(errors="replace").splitlines()
                                if "CRITICAL" in line or line.startswith("AttributeError")
                            ][:4],
                        }
                    )
                    kill_group(worker)
                    if again:
                        with contextlib.suppress(Exception):
                            self.start_worker(
                                worker.spec["concurrency"],
                                runner=worker.spec["runner"],
                                wait=False,
                                **worker.spec["env"],
                            )

        threading.Thread(target=watch, name="supervisor", daemon=True).start()

    # Faults -----------------------------------------------------------------------------------
    def stop_worker(self, worker: Process, grace_s: float = 20.0) -> None:
        terminate(worker, grace_s)
        if worker in self.workers:
            self.workers.remove(worker)

    def restart_redis(self, down_s: float, during: Callable[[], None] | None = None) -> float:
        """SIGTERM redis-server (it writes its append-only file), wait, start it again.

        Returns how long nothing answered on the port. ``during`` runs while it is down.
        """
        stopped = time.monotonic()
        self.redis.stop()
        if during is not None:
            during()
        remaining = down_s - (time.monotonic() - stopped)
        if remaining > 0:
            time.sleep(remaining)  # the outage itself: its length is the fault
        self.redis.start()
        return time.monotonic() - stopped

    @contextlib.contextmanager
    def legacy_locked(self) -> Iterator[None]:
        """The legacy database unavailable: an exclusive lock held by a maintenance job.

        Every worker transaction begins with BEGIN IMMEDIATE and waits its deadline for the
        lock, then fails with "database is locked" (a transient error).
        """
        connection = sqlite3.connect(self.db_path, timeout=30, isolation_level=None)
        try:
            connection.execute("BEGIN EXCLUSIVE")
            yield
        finally:
            with contextlib.suppress(sqlite3.Error):
                connection.execute("ROLLBACK")
            connection.close()

    def locks_held(self) -> int:
        """How many per-resource reconcile locks are held right now (tasks mid-reconcile)."""
        return sum(1 for _ in self.client.scan_iter(match="sb:lock:*", count=1000))

    # Waiting ----------------------------------------------------------------------------------
    def drain(self, timeout: float = 90.0) -> float:
        """Poll until no resource is dirty; returns the time it took (raises after ``timeout``)."""
        started = time.monotonic()

        def drained() -> bool:
            try:
                return self.store.backlog() == 0
            except redis.RedisError:
                return False

        try:
            wait_until(drained, timeout=timeout, interval=0.2)
        except AssertionError:
            pending = self.client.zrange("sb:dirty", 0, 20, withscores=True)
            raise AssertionError(
                f"backlog not drained after {timeout:g}s: {self.store.backlog()} dirty, "
                f"first {pending}\n{self.logs()}"
            ) from None
        return time.monotonic() - started

    def logs(self, lines: int = 25) -> str:
        return "\n".join(
            f"--- {p.name} {p.pid} ({p.log.name})\n{p.tail(lines)}" for p in self.processes
        )

    def grep_logs(self, needle: str) -> list[str]:
        found = []
        for process in self.processes:
            with contextlib.suppress(OSError):
                found.extend(
                    line
                    for line in process.log.read_text(errors="replace").splitlines()
                    if needle in line
                )
        return found

    def close(self) -> None:
        self._supervising.set()
        for process in reversed(self.processes):
            if process.name == "api":
                terminate(process, 10)
        for process in reversed(self.processes):
            terminate(process, 5) if process.alive() else kill_group(process)
        with contextlib.suppress(Exception):
            self.client.close()
        if self.group is not None:
            self.group.stop()
        with contextlib.suppress(Exception):
            self.redis.stop()
        if self.redis.process is not None:
            self.redis.process.kill()

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
