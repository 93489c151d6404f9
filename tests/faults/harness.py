"""The machinery of the fault suite: a whole scim-bridge on 127.0.0.1, made of real processes.

A :class:`Stack` owns one temporary directory and, inside it, everything a case needs:

- a ``redis-server`` with its append-only file (``tests.support.RedisServer``), restartable on
  the same port and directory; or, with ``sentinel=True``, a primary, a replica and three
  Sentinels (``tests.support.SentinelGroup``) that every process reaches through Sentinel;
- the legacy application: a SQLite database (``legacy.db``) behind the ``sql`` adapter;
- Celery workers as subprocesses (``python -m scim_bridge.cli worker``, or ``tests/faults/worker_main.py``
  when a case needs a simulator flag no setting reaches), each in its own process group so that
  ``kill -9`` can reach its pool children too;
- beat (``python -m scim_bridge.cli beat``), which runs the sweeper every second;
- the api under gunicorn (``python -m scim_bridge.cli serve``).

Every process is started in its own session, logs to a file of the stack's directory, and is
killed in :meth:`Stack.close` whatever happened. Nothing here sleeps a fixed time to wait for
something: it polls a condition with a bound.

:class:`Ledger` is the clients' memory: every write they made, which ones were accepted (a 2xx
answer) and the state each resource should end in. :func:`burst` is the load: a few client
threads that create, replace and delete users through HTTP and retry what was not accepted, the
way the Okta agent does. :class:`Reader` measures GET /Users/{id} while a fault is on.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
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
from scim_bridge.store import Kind, Store, redis_client
from tests.support import TOKEN, RedisServer, SentinelGroup

ROOT = Path(__file__).resolve().parents[2]
USERS = "/scim/v2/Users"
GROUPS = "/scim/v2/Groups"
HEADERS = {"Authorization": TOKEN, "Content-Type": "application/scim+json"}
USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"

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


def user_body(
    user_name: str, given: str = "Jane", family: str = "Doe", active: bool = True, **extra: Any
) -> dict[str, Any]:
    body = {
        "schemas": [USER_SCHEMA],
        "userName": user_name,
        "name": {"givenName": given, "familyName": family},
        "emails": [{"value": user_name, "type": "work", "primary": True}],
        "active": active,
    }
    body.update(extra)
    return body


def group_body(name: str, members: list[str]) -> dict[str, Any]:
    return {
        "schemas": [GROUP_SCHEMA],
        "displayName": name,
        "members": [{"value": m} for m in members],
    }


def version_of(document: Mapping[str, Any]) -> int:
    """The version number of a returned resource (``W/"3"`` -> 3)."""
    return int(str(document["meta"]["version"]).removeprefix("W/").strip('"'))


# Processes --------------------------------------------------------------------------------------
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


# What the clients did ----------------------------------------------------------------------------
@dataclass
class AcceptedWrite:
    """One write a client made and scim-bridge accepted (answered 2xx)."""

    kind: Kind
    rid: str
    op: str  # create | replace | delete
    version: int  # the version the answer carried (0 for a delete: it has no body)
    status: int


@dataclass
class Ledger:
    """Every accepted change, and what each resource should end as, thread-safe."""

    changes: list[AcceptedWrite] = field(default_factory=list)
    final: dict[tuple[Kind, str], dict[str, Any] | None] = field(default_factory=dict)
    """The client's last intent per resource: its last body, None for deleted."""
    attempts: int = 0
    refused: dict[int, int] = field(default_factory=dict)
    """Status -> count of answers that were not accepted (the client retried them)."""
    adopted: int = 0
    """Creates answered 5xx that the client then found stored (checked by userName)."""
    resolved: int = 0
    """Deletes answered 5xx whose retry found the user gone (the first attempt was stored)."""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def accept(self, change: AcceptedWrite, intent: dict[str, Any] | None) -> None:
        with self._lock:
            self.changes.append(change)
            self.final[(change.kind, change.rid)] = intent

    def adopt(self, kind: Kind, rid: str, intent: dict[str, Any] | None) -> None:
        with self._lock:
            self.adopted += 1
            self.final[(kind, rid)] = intent

    def resolve(self, kind: Kind, rid: str, intent: dict[str, Any] | None) -> None:
        with self._lock:
            self.resolved += 1
            self.final[(kind, rid)] = intent

    def not_accepted(self, status: int) -> None:
        with self._lock:
            self.refused[status] = self.refused.get(status, 0) + 1

    def attempt(self) -> None:
        with self._lock:
            self.attempts += 1

    @property
    def accepted(self) -> int:
        return len(self.changes)

    def ids(self, kind: Kind = Kind.USER) -> list[str]:
        with self._lock:
            return [rid for (k, rid) in self.final if k is kind]


class GaveUp(Exception):
    """A write that was still not accepted when the client's own deadline ran out."""


class Client:
    """One SCIM client thread's connection, retrying what is not accepted (5xx, no answer).

    A retried POST first looks the userName up, as the Okta agent does before it creates: the
    earlier attempt may have been stored although its answer was lost.
    """

    def __init__(
        self, base_url: str, ledger: Ledger, *, give_up_s: float = 60.0, prefer_async: bool = False
    ) -> None:
        headers = dict(HEADERS)
        if prefer_async:
            headers["Prefer"] = "respond-async"
        self.http = httpx.Client(base_url=base_url, headers=headers, timeout=10)
        self.ledger = ledger
        self.give_up_s = give_up_s

    def close(self) -> None:
        self.http.close()

    def _send(self, method: str, url: str, body: Any | None = None) -> httpx.Response | None:
        self.ledger.attempt()
        try:
            return self.http.request(method, url, json=body)
        except httpx.HTTPError:
            self.ledger.not_accepted(0)
            return None

    def _retrying(self, attempt: Callable[[], httpx.Response | None]) -> httpx.Response:
        """Repeat ``attempt`` while it gets no answer or a 5xx."""
        deadline = time.monotonic() + self.give_up_s
        delay = 0.1
        while True:
            answer = attempt()
            if answer is not None and answer.status_code < 500:
                return answer
            if answer is not None:
                self.ledger.not_accepted(answer.status_code)
            if time.monotonic() > deadline:
                raise GaveUp(f"no answer but {answer and answer.status_code}")
            time.sleep(delay)  # a client's back-off between retries
            delay = min(1.0, delay * 1.5)

    def create_user(self, body: dict[str, Any]) -> str:
        deadline = time.monotonic() + self.give_up_s
        first = True
        while True:
            if not first:
                found = self.find_user(body["userName"])
                if found is not None:
                    self.ledger.adopt(Kind.USER, found, body)
                    return found
            first = False
            answer = self._send("POST", USERS, body)
            if answer is not None and answer.status_code in (201, 202):
                doc = answer.json()
                self.ledger.accept(
                    AcceptedWrite(
                        Kind.USER, doc["id"], "create", version_of(doc), answer.status_code
                    ),
                    body,
                )
                return str(doc["id"])
            if answer is not None and answer.status_code < 500 and answer.status_code != 409:
                raise AssertionError(f"create refused: {answer.status_code} {answer.text}")
            # 5xx, no answer, or 409 after a lost answer: look the userName up and try again.
            if answer is not None:
                self.ledger.not_accepted(answer.status_code)
            if time.monotonic() > deadline:
                raise GaveUp(f"create of {body['userName']} never accepted")
            time.sleep(0.2)

    def find_user(self, user_name: str) -> str | None:
        query = {"filter": f'userName eq "{user_name}"'}
        answer = self._retrying(lambda: self._get(USERS, params=query))
        found = answer.json().get("Resources") or []
        return str(found[0]["id"]) if found else None

    def _get(self, url: str, params: dict[str, str] | None = None) -> httpx.Response | None:
        try:
            return self.http.get(url, params=params)
        except httpx.HTTPError:
            return None

    def replace_user(self, rid: str, body: dict[str, Any]) -> int:
        answer = self._retrying(lambda: self._send("PUT", f"{USERS}/{rid}", body))
        if answer.status_code not in (200, 202):
            raise AssertionError(f"replace refused: {answer.status_code} {answer.text}")
        doc = answer.json()
        self.ledger.accept(
            AcceptedWrite(Kind.USER, rid, "replace", version_of(doc), answer.status_code), body
        )
        return version_of(doc)

    def delete_user(self, rid: str) -> None:
        tries = [0]

        def attempt() -> httpx.Response | None:
            tries[0] += 1
            return self._send("DELETE", f"{USERS}/{rid}")

        answer = self._retrying(attempt)
        if answer.status_code in (202, 204):
            self.ledger.accept(AcceptedWrite(Kind.USER, rid, "delete", 0, answer.status_code), None)
        elif answer.status_code == 404 and tries[0] > 1:
            self.ledger.resolve(Kind.USER, rid, None)  # an earlier attempt was stored
        else:
            raise AssertionError(f"delete refused: {answer.status_code} {answer.text}")


@dataclass
class BurstResult:
    seconds: float
    errors: list[str]


def burst(
    base_url: str,
    ledger: Ledger,
    *,
    changes: int,
    clients: int = 6,
    prefix: str = "user",
    seed: int = 7,
    on_progress: Callable[[int], None] | None = None,
    delete_share: float = 0.04,
    prefer_async: bool = False,
) -> BurstResult:
    """``changes`` user writes from ``clients`` threads: creates, PUTs, a few DELETEs.

    Each thread owns the users it creates, so the changes to one user are sequential and the
    client's last accepted body is what the user must end as. ``on_progress(done)`` is called
    (from the client threads, serialised) after every accepted change: fault injectors hook here.
    """
    done = [0]
    progress_lock = threading.Lock()
    errors: list[str] = []
    per_thread = [changes // clients + (1 if i < changes % clients else 0) for i in range(clients)]

    def run(index: int) -> None:
        rng = random.Random(seed * 1000 + index)
        client = Client(base_url, ledger, prefer_async=prefer_async)
        owned: list[tuple[str, dict[str, Any]]] = []
        created = 0
        try:
            for _ in range(per_thread[index]):
                roll = rng.random()
                if not owned or roll < 0.4:
                    created += 1
                    body = user_body(
                        f"{prefix}-{index}-{created}@example.com",
                        given=f"G{created}",
                        family=f"F{index}",
                    )
                    rid = client.create_user(body)
                    owned.append((rid, body))
                elif roll < 0.4 + delete_share and len(owned) > 1:
                    rid, _ = owned.pop(rng.randrange(len(owned)))
                    client.delete_user(rid)
                else:
                    slot = rng.randrange(len(owned))
                    rid, body = owned[slot]
                    new = dict(body)
                    if rng.random() < 0.3:
                        new["active"] = not body["active"]
                    else:
                        new["name"] = {
                            "givenName": f"G{rng.randrange(10**6)}",
                            "familyName": body["name"]["familyName"],
                        }
                        new["displayName"] = f"D{rng.randrange(10**6)}"
                    client.replace_user(rid, new)
                    owned[slot] = (rid, new)
                with progress_lock:
                    done[0] += 1
                    if on_progress is not None:
                        on_progress(done[0])
        except Exception as exc:  # reported, the test fails on it
            errors.append(f"client {index}: {type(exc).__name__}: {exc}")
        finally:
            client.close()

    started = time.monotonic()
    threads = [threading.Thread(target=run, args=(i,), name=f"client-{i}") for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    return BurstResult(time.monotonic() - started, errors)


class Reader:
    """A thread reading GET /Users/{id} of known users while a fault is on; latency percentiles.

    Every answer counts (200, 404 for a deleted user, 503 while Redis is down); a request that
    got no answer at all counts as an error and its time is kept too.
    """

    def __init__(self, base_url: str, ids: Callable[[], list[str]], seed: int = 3) -> None:
        self.base_url = base_url
        self.ids = ids
        self.samples: list[float] = []
        self.statuses: dict[int, int] = {}
        self._stop = threading.Event()
        self._rng = random.Random(seed)
        self._thread = threading.Thread(target=self._run, name="reader", daemon=True)

    def __enter__(self) -> Reader:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(15)

    def _run(self) -> None:
        with httpx.Client(base_url=self.base_url, headers=HEADERS, timeout=10) as http:
            while not self._stop.is_set():
                known = self.ids()
                if not known:
                    self._stop.wait(0.01)
                    continue
                rid = self._rng.choice(known)
                started = time.perf_counter()
                try:
                    status = http.get(f"{USERS}/{rid}").status_code
                except httpx.HTTPError:
                    status = 0
                self.samples.append(time.perf_counter() - started)
                self.statuses[status] = self.statuses.get(status, 0) + 1

    def percentile(self, p: float) -> float | None:
        if not self.samples:
            return None
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def legacy_rows(db_path: Path) -> dict[str, Any]:
    """The legacy tables as they are (read-only connection)."""
    if not db_path.exists():
        return {"users": [], "groups": [], "memberships": []}
    connection = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)
    connection.row_factory = sqlite3.Row
    try:
        tables = {
            r[0] for r in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
        users = (
            [dict(r) for r in connection.execute("SELECT * FROM legacy_users ORDER BY id")]
            if "legacy_users" in tables
            else []
        )
        groups = (
            [dict(r) for r in connection.execute("SELECT * FROM legacy_groups ORDER BY id")]
            if "legacy_groups" in tables
            else []
        )
        memberships = (
            [dict(r) for r in connection.execute("SELECT * FROM legacy_memberships")]
            if "legacy_memberships" in tables
            else []
        )
    finally:
        connection.close()
    for row in users + groups:
        if isinstance(row.get("profile"), str):
            row["profile"] = json.loads(row["profile"])
    return {"users": users, "groups": groups, "memberships": memberships}
