"""``scim-bridge flower``: Celery's Flower on the same Redis, task events off unless asked.

Flower shows workers, queues and (with task events) every task's life. Task events cost a
broker publish per task state change on every worker, so they stay off by default: Flower then
shows the workers and the broker queue, and asks no worker to emit events. ``--task-events`` (or
``SCIM_BRIDGE_TASK_EVENTS=true``) turns them on, for as long as Flower runs (Flower enables them
on each worker it sees). Flower is an optional extra: ``pip install 'scim-bridge[flower]'``.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence

from scim_bridge.workers.settings import Settings


class FlowerMissing(RuntimeError):
    """Flower is not installed in this environment."""


def flower_argv(
    settings: Settings, *, port: int, address: str, task_events: bool, extra: Sequence[str] = ()
) -> list[str]:
    """The arguments of Celery's ``flower`` command for these settings."""
    events = task_events or settings.task_events
    return [
        "flower",
        f"--port={port}",
        f"--address={address}",
        f"--enable_events={events}",
        # The worker list follows the heartbeats that task events carry; without them, forget a
        # worker that stopped answering instead of showing it forever.
        "--purge_offline_workers=60",
        *extra,
    ]


def run_flower(
    settings: Settings, *, port: int, address: str, task_events: bool, extra: Sequence[str] = ()
) -> int:
    """Run Flower in this process until it is stopped; returns its exit status."""
    if importlib.util.find_spec("flower") is None:
        raise FlowerMissing(
            "Flower is not installed: pip install 'scim-bridge[flower]' (or pip install flower)"
        )
    from scim_bridge.workers.celery_app import create_celery

    app = create_celery(settings)
    argv = flower_argv(settings, port=port, address=address, task_events=task_events, extra=extra)
    return int(app.start(argv) or 0)
