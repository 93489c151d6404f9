"""``scim-bridge worker`` and ``scim-bridge beat``: the Celery side.

:func:`worker_argv` is the one Celery worker command line; the fault suite's worker
(``tests/faults/worker_main.py``) starts the same one.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from scim_bridge.cli.common import (
    CONFIGURATION_ERROR,
    require_adapter,
    require_password_key,
    settings_or_exit,
)

if TYPE_CHECKING:
    from scim_bridge.workers.settings import Settings


def worker_argv(concurrency: int, loglevel: str = "INFO") -> list[str]:
    """The arguments of ``celery worker`` for a scim-bridge worker."""
    from scim_bridge.workers.tasks import QUEUE

    return [
        "worker",
        f"--loglevel={loglevel}",
        f"--queues={QUEUE}",
        f"--concurrency={concurrency}",
        # The process id makes the name unique per process: the fleet's heartbeats tell two
        # workers of one host apart by it.
        f"--hostname=scim-bridge@{socket.gethostname()}:{os.getpid()}",
        # Workers share nothing but Redis: no start-up sync, no gossip traffic between them.
        "--without-mingle",
        "--without-gossip",
    ]


def worker(concurrency: int | None, loglevel: str | None) -> None:
    """A Celery worker consuming reconcile tasks."""
    settings = settings_or_exit()
    require_password_key(settings)
    require_adapter(settings, build=True)
    from scim_bridge.store import Kind
    from scim_bridge.workers.celery_app import create_celery
    from scim_bridge.workers.metrics import command_directory, show_worker_series

    # Before the pool forks: every pool process records into this command's directory.
    command_directory("worker")
    show_worker_series(kind.resource_type for kind in Kind)
    if settings.worker_metrics_port:
        from scim_bridge.workers.metrics_endpoint import WorkerMetricsServer

        try:
            WorkerMetricsServer(
                settings.worker_metrics_port, settings.worker_metrics_host
            ).connect_pool_signals()
        except OSError as exc:
            print(
                f"scim-bridge: cannot serve worker metrics on port "
                f"{settings.worker_metrics_port} ({exc.strerror}): give each worker on this host "
                "its own SCIM_BRIDGE_WORKER_METRICS_PORT, or 0 to serve none",
                file=sys.stderr,
            )
            raise SystemExit(CONFIGURATION_ERROR) from None
    if settings.adapter == "sql":
        from scim_bridge.adapters.sql.commands import refuse_broken_mapping

        refuse_broken_mapping(settings)
    elif settings.adapter == "ldap":
        from scim_bridge.adapters.ldap import commands as ldap
        from scim_bridge.workers.runtime import Runtime

        store = Runtime(settings).store

        def report(problem: str | None) -> None:
            import redis

            try:
                store.report_adapter_problem(problem)
            except redis.RedisError as exc:  # the refusal still stops the worker, and says why
                print(f"scim-bridge: cannot record the adapter problem: {exc}", file=sys.stderr)

        ldap.refuse_broken_mapping(settings, report)
    app = create_celery(settings)
    level = loglevel or settings.log_level
    argv = worker_argv(concurrency or settings.worker_concurrency, level)
    # Celery's exit status must reach the supervisor: a worker that died of a broker error has
    # to be restarted (systemd's on-failure, Kubernetes), not taken for a clean stop.
    raise SystemExit(app.start([*_logging(settings, "worker", level), *argv]) or 0)


def beat(schedule: str, loglevel: str | None) -> None:
    """Celery beat: runs the sweeper. Run exactly one."""
    settings = settings_or_exit()
    from scim_bridge.workers.celery_app import create_celery

    app = create_celery(settings)
    level = loglevel or settings.log_level
    argv = ["beat", f"--loglevel={level}", f"--schedule={schedule}"]
    raise SystemExit(app.start([*_logging(settings, "beat", level), *argv]) or 0)


def _logging(settings: Settings, command: str, level: str) -> list[str]:
    """Put scim-bridge's logging in place of Celery's; the options (before the command) that
    go with it.

    It is in place before Celery starts (its first warnings included); a receiver of Celery's
    ``setup_logging`` signal makes Celery leave it alone (no root handler of its own, no
    redirected streams). In JSON, Celery's start-up banner is left out (it is not a log line)
    and what it prints (the shutdown notices) becomes log lines.
    """
    from celery.signals import setup_logging, worker_shutting_down

    from scim_bridge.workers import logs
    from scim_bridge.workers.celery_app import QUIET_TASKS

    fmt = logs.log_format(settings.log_format, command=command)
    logs.configure(fmt, level, quiet_tasks=QUIET_TASKS)
    setup_logging.connect(lambda **_: None, weak=False)
    if fmt == "text":
        return []
    lines = logs.LinesToLog(f"celery.{command}")
    sys.stdout = lines
    sys.__stdout__ = lines  # type: ignore[misc,assignment]  # what Celery's notices go to
    worker_shutting_down.connect(_log_shutdown, weak=False)
    return ["--quiet"]


def _log_shutdown(sig: str = "", how: str = "", **_: object) -> None:
    logging.getLogger("scim_bridge.worker").info("%s shutdown (%s)", how.lower(), sig)


def flower(port: int, address: str, task_events: bool, extra: Sequence[str]) -> None:
    """Flower against the configured Redis (task events only with ``--task-events``)."""
    from scim_bridge.workers.flower import FlowerMissing, run_flower

    try:
        code = run_flower(
            settings_or_exit(), port=port, address=address, task_events=task_events, extra=extra
        )
    except FlowerMissing as exc:
        print(f"scim-bridge: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    raise SystemExit(code)
