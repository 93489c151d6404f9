"""The ``scim-bridge`` command: ``dev`` runs everything on one machine; ``serve``, ``worker`` and
``beat`` run one part each against the configured Redis (the production topology).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from scim_bridge.cli.dev import dev
from scim_bridge.cli.dlq import dead_letters
from scim_bridge.cli.serve import serve
from scim_bridge.cli.status import operator_runtime, show_status
from scim_bridge.cli.worker import beat, flower, worker


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``scim-bridge`` console script."""
    parser = argparse.ArgumentParser(prog="scim-bridge", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    p_dev = commands.add_parser("dev", help="run Redis, a worker, beat and the api on this machine")
    p_dev.add_argument("--port", type=int, default=8080)
    p_dev.add_argument("--data-dir", type=Path, default=Path(".scim-bridge"))
    p_dev.add_argument(
        "--host",
        default="127.0.0.1",
        help="address the api and the worker's metrics listen on (default: only this machine)",
    )
    p_serve = commands.add_parser("serve", help="run the api under gunicorn")
    p_serve.add_argument(
        "--port", type=int, default=None, help="default: $SCIM_BRIDGE_PORT or 8080"
    )
    p_serve.add_argument("--host", default=None, help="default: $SCIM_BRIDGE_HOST or 0.0.0.0")
    p_serve.add_argument(
        "--workers", type=int, default=None, help="default: $SCIM_BRIDGE_API_WORKERS or 2 x CPUs"
    )
    p_serve.add_argument(
        "--threads", type=int, default=None, help="default: $SCIM_BRIDGE_API_THREADS or 16"
    )
    p_serve.add_argument(
        "--config",
        type=Path,
        default=None,
        help="a gunicorn configuration file to use instead of the shipped one "
        "(scim_bridge/api/gunicorn_conf.py)",
    )
    p_serve.add_argument(
        "--certfile",
        type=Path,
        default=None,
        help="serve HTTPS with this PEM certificate (chain); default: $SCIM_BRIDGE_TLS_CERTFILE",
    )
    p_serve.add_argument(
        "--keyfile",
        type=Path,
        default=None,
        help="the certificate's PEM private key; default: $SCIM_BRIDGE_TLS_KEYFILE",
    )
    p_worker = commands.add_parser("worker", help="run a Celery worker")
    p_worker.add_argument("--concurrency", type=int, default=None)
    p_worker.add_argument("--loglevel", default=None, help="default: $SCIM_BRIDGE_LOG_LEVEL")
    p_beat = commands.add_parser("beat", help="run Celery beat (the sweeper); exactly one")
    p_beat.add_argument("--schedule", default="celerybeat-schedule")
    p_beat.add_argument("--loglevel", default=None, help="default: $SCIM_BRIDGE_LOG_LEVEL")
    p_flower = commands.add_parser("flower", help="Celery's Flower against the same Redis")
    p_flower.add_argument("--port", type=int, default=5555)
    p_flower.add_argument("--address", default="127.0.0.1")
    p_flower.add_argument(
        "--task-events",
        action="store_true",
        help="ask every worker for task events while Flower runs (a publish per task state)",
    )
    p_flower.add_argument(
        "flower_args", nargs=argparse.REMAINDER, help="after --: Flower's own options"
    )
    from scim_bridge.check import main as check

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
    from scim_bridge.cli import sync

    sync.add_sync_arguments(
        commands.add_parser("sync", help="import the application's accounts (a full pass)")
    )
    p_accounts = commands.add_parser("accounts", help="records by origin (Okta, linked, imported)")
    p_accounts.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "dev":
        dev(args.port, args.data_dir, args.host)
    elif args.command == "serve":
        serve(
            args.port,
            args.host,
            args.workers,
            args.threads,
            args.config,
            args.certfile,
            args.keyfile,
        )
    elif args.command == "worker":
        worker(args.concurrency, args.loglevel)
    elif args.command == "beat":
        beat(args.schedule, args.loglevel)
    elif args.command == "flower":
        flower(
            args.port, args.address, args.task_events, [a for a in args.flower_args if a != "--"]
        )
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
    elif args.command == "sync":
        raise SystemExit(sync.run_sync(args, operator_runtime()))
    elif args.command == "accounts":
        raise SystemExit(sync.run_accounts(args, operator_runtime()))


if __name__ == "__main__":
    main()
