"""``scim-bridge dev``: Redis (unless configured), a worker, beat and the api on one machine."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from scim_bridge.cli import processes
from scim_bridge.cli.common import CONFIGURATION_ERROR, require_adapter, settings_or_exit
from scim_bridge.workers.logs import log_format
from scim_bridge.workers.settings import Settings

LOOPBACK = "127.0.0.1"


class _Refused(Exception):
    """A part exited at start-up because of its configuration."""


def _wait_for_port(
    port: int,
    timeout_s: float,
    part: tuple[str, subprocess.Popen[bytes]] | None = None,
    host: str = LOOPBACK,
) -> None:
    name, process = part or ("", None)
    try:
        processes.wait_for_port(port, timeout_s, process, host=host)
    except RuntimeError as exc:
        if process is not None and process.returncode == CONFIGURATION_ERROR:
            raise _Refused(name) from None
        raise SystemExit(f"scim-bridge: {exc}") from None


def _secret_file(path: Path, make: Callable[[], str]) -> str:
    if not path.exists():
        path.write_text(make())
        path.chmod(0o600)
    return path.read_text().strip()


def dev(port: int, data_dir: Path, host: str = LOOPBACK) -> None:
    """Everything on one machine: Redis (unless configured), a worker, beat and the api.

    Only this machine can reach what it starts unless ``host`` says otherwise: the api and the
    worker's metrics listen on ``host``, Redis on the loopback interface.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    redis_command: list[str] | None = None
    if "SCIM_BRIDGE_REDIS_URL" not in env:
        redis_port = processes.free_port()
        redis_command = processes.redis_server_command(
            redis_port,
            data_dir.resolve(),
            "--maxmemory-policy",
            "noeviction",
            "--logfile",
            "redis.log",
        )
        env["SCIM_BRIDGE_REDIS_URL"] = f"redis://127.0.0.1:{redis_port}/0"
    if "SCIM_BRIDGE_AUTH_MODE" not in env:
        token = _secret_file(data_dir / "token", lambda: secrets.token_urlsafe(24))
        env["SCIM_BRIDGE_AUTH_MODE"] = "header"
        env.setdefault("SCIM_BRIDGE_AUTH_HEADER_NAME", "Authorization")
        env.setdefault("SCIM_BRIDGE_AUTH_HEADER_VALUE", f"Bearer {token}")
    if "SCIM_BRIDGE_PASSWORD_KEY" not in env and "SCIM_BRIDGE_PASSWORD_KEY_FILE" not in env:
        from scim_bridge.workers.passwords import PasswordVault

        key_file = data_dir / "password.key"
        _secret_file(key_file, lambda: PasswordVault.generate_key().decode())
        env["SCIM_BRIDGE_PASSWORD_KEY_FILE"] = str(key_file.resolve())
    env.setdefault("SCIM_BRIDGE_ADAPTER", "sql")
    env.setdefault("SCIM_BRIDGE_SQL_URL", f"sqlite:///{Path('scim-bridge-legacy.db').resolve()}")
    env["SCIM_BRIDGE_WORKER_METRICS_HOST"] = host
    os.environ.update(env)
    # systemd, docker and timeout stop with SIGTERM: stop the children as Ctrl-C would. SIGINT
    # too, even where it was inherited ignored (a shell starts background jobs that way, and
    # Python then keeps it ignored): `kill -INT` must stop dev like Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    # Validate once, here, before anything else starts: a worker that cannot load its adapter
    # would leave the api answering 503 forever.
    settings = settings_or_exit()
    require_adapter(settings, build=True)
    # The children write to this terminal (text) or to whatever collects dev's output (JSON).
    env["SCIM_BRIDGE_LOG_FORMAT"] = log_format(settings.log_format, command="dev")
    started: list[tuple[str, subprocess.Popen[bytes]]] = []
    if redis_command is not None:
        started.append(("redis", subprocess.Popen(redis_command)))
        _wait_for_port(redis_port, 10)
    me = [sys.executable, "-m", "scim_bridge.cli"]
    commands = {
        "worker": [*me, "worker", "--concurrency", "2"],
        "beat": [*me, "beat", "--schedule", str(data_dir / "celerybeat-schedule")],
        "api": [*me, "serve", "--host", host, "--port", str(port), "--workers", "2"],
    }
    # One multiprocess directory per command: shared, each endpoint would serve both's counts.
    envs = {
        name: {**env, "PROMETHEUS_MULTIPROC_DIR": str((data_dir / f"metrics-{name}").resolve())}
        for name in ("worker", "api")
    }
    for name, argv in commands.items():
        started.append((name, subprocess.Popen(argv, env=envs.get(name, env))))
    refused: str | None = None
    try:
        _wait_for_port(port, 30, ("api", dict(started)["api"]), host=_reachable(host))
        _wait_for_worker(settings, 60, dict(started)["worker"])
        _start_import(settings)
        _announce(port, settings, _reachable(host))
        while refused is None:
            time.sleep(0.5)
            for index, (name, process) in enumerate(started):
                if process.poll() is None or name not in commands:
                    continue
                if process.returncode == CONFIGURATION_ERROR:
                    # It printed why; started again, it would refuse again, forever.
                    refused = name
                    break
                # Like a supervisor: a worker, beat or api that died is started again (a Redis
                # restart can take a Celery worker down); everything resumes on its own.
                print(
                    f"scim-bridge: {name} exited with {process.returncode}; restarting it",
                    file=sys.stderr,
                )
                started[index] = (
                    name,
                    subprocess.Popen(commands[name], env=envs.get(name, env)),
                )
            redis_process = next((p for n, p in started if n == "redis"), None)
            if redis_process is not None and redis_process.poll() is not None:
                print("scim-bridge: redis-server stopped; stopping the rest", file=sys.stderr)
                break
    except KeyboardInterrupt:
        print("\nscim-bridge: stopping", file=sys.stderr)
    except _Refused as exc:
        refused = str(exc)
    finally:
        _stop(started)
    if refused is not None:
        print(f"scim-bridge: {refused} refused to start; stopped everything", file=sys.stderr)
        raise SystemExit(CONFIGURATION_ERROR)


def _reachable(host: str) -> str:
    """The address to reach a server bound to ``host`` from this machine."""
    return LOOPBACK if host in ("", "0.0.0.0", "::") else host  # noqa: S104 - compared, not bound


def _start_import(settings: Settings) -> None:
    """One full import at start-up, so the demo serves what its database already holds."""
    from scim_bridge.workers.celery_app import create_celery
    from scim_bridge.workers.sync_tasks import SYNC

    create_celery(settings).send_task(SYNC)


def _wait_for_worker(
    settings: Settings, timeout_s: float, process: subprocess.Popen[bytes]
) -> None:
    """Until a worker has reported in, writes could not be confirmed: wait for one."""
    from scim_bridge.workers.runtime import Runtime

    store = Runtime(settings).store
    deadline = time.monotonic() + timeout_s
    while not store.live_workers():
        if process.poll() == CONFIGURATION_ERROR:
            raise _Refused("worker")
        if time.monotonic() > deadline:
            raise SystemExit(f"scim-bridge: no worker reported in after {timeout_s:g}s")
        time.sleep(0.1)


def _announce(port: int, settings: Settings, host: str) -> None:
    header = settings.auth_header_value.get_secret_value() if settings.auth_header_value else ""
    lines = [
        "",
        "scim-bridge is running",
        f"  SCIM 2.0 base URL : http://{host}:{port}/scim/v2/",
        f"  api metrics       : http://{host}:{port}/metrics",
        (
            f"  worker metrics    : http://{host}:{settings.worker_metrics_port}/metrics"
            if settings.worker_metrics_port
            else "  worker metrics    : off (SCIM_BRIDGE_WORKER_METRICS_PORT=0)"
        ),
        f"  Redis             : {settings.redis_url}",
        (
            f"  legacy app (demo) : {settings.sql_url} ({settings.adapter} adapter)"
            if settings.adapter == "sql"
            else f"  legacy app        : {settings.adapter} adapter"
            + (f", mapping {settings.ldap_mapping}" if settings.adapter == "ldap" else "")
        ),
    ]
    if settings.auth_mode == "header":
        lines.append(f"  credentials       : {settings.auth_header_name}: {header}")
        lines.append(
            f"  try               : curl -H '{settings.auth_header_name}: {header}' "
            f"http://{host}:{port}/scim/v2/Users"
        )
    elif settings.auth_mode == "basic":
        lines.append(f"  credentials       : HTTP Basic, user {settings.auth_username}")
    else:
        lines.append("  credentials       : none (authentication is off)")
    lines.append("  Ctrl-C stops every process started here")
    print("\n".join(lines), flush=True)


def _stop(started: Sequence[tuple[str, subprocess.Popen[bytes]]]) -> None:
    # The api first (no new writes), then workers (finish in-flight calls), Redis last.
    processes.stop_all([process for _, process in started], grace_s=30)
