"""The machine and the processes a benchmark starts: facts, CPU and memory meters, servers."""

from __future__ import annotations

import contextlib
import http.client
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from scim_bridge.cli.processes import (
    start_in_session,
    stop_group,
    wait_for_port,
)

HERE = Path(__file__).resolve().parent.parent
ROOT = HERE.parent
HOST = "127.0.0.1"
PREFIX = "sb"


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
            ).stdout.rstrip()
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
