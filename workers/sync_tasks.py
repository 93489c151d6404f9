"""The import tasks and their beat schedule: thin, like the reconcile task.

A full pass runs in slices that fit the task time limits: each slice continues from the pass's
checkpoint and, when the pass is not finished, publishes the next slice.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from scim_bridge.store import Kind, Status
from scim_bridge.workers.guard import GuardedAdapter
from scim_bridge.workers.sync import Importer
from scim_bridge.workers.tasks import RECONCILE

if TYPE_CHECKING:
    from celery import Celery

    from scim_bridge.workers.runtime import Runtime
    from scim_bridge.workers.settings import Settings

SYNC = "scim_bridge.sync"
DELTA = "scim_bridge.delta"

log = logging.getLogger("scim_bridge.tasks")


def build_importer(runtime: Runtime, publish: Any = None) -> Importer:
    """An importer over the runtime's adapter, behind the global cap and the circuit breaker."""
    settings = runtime.settings
    return Importer(
        runtime.store,
        GuardedAdapter(runtime.adapter, runtime.guard),
        namespace=settings.id_namespace_uuid(),
        drift=settings.drift,
        max_removals=settings.sync_max_removals,
        page_size=settings.sync_page_size,
        deadline_s=settings.legacy_deadline_s,
        lock_ttl_s=settings.lock_ttl_s,
        publish=publish,
        max_rate=settings.sync_max_rate,
        niceness=settings.sync_niceness,
    )


def slice_budget_s(settings: Settings) -> float:
    """How long one slice may keep starting pages: its last page still ends before the limit."""
    return max(1.0, settings.task_soft_time_limit_s - settings.legacy_deadline_s - 2)


def import_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """Beat entries of the imports (an interval of 0 turns one off)."""
    schedule: dict[str, dict[str, Any]] = {}
    if settings.sync_interval_s > 0:
        schedule["full-import"] = {"task": SYNC, "schedule": settings.sync_interval_s}
    if settings.delta_interval_s > 0:
        schedule["delta-import"] = {"task": DELTA, "schedule": settings.delta_interval_s}
    return schedule


def register_import_tasks(app: Celery, runtime: Runtime) -> None:
    """Register the full and delta import tasks on ``app``."""

    def publish(kind: Kind, rid: str) -> None:
        app.send_task(RECONCILE, args=(kind.value, rid))

    @app.task(name=SYNC, shared=False)
    def sync() -> str:
        """One slice of the full import; publishes the next slice until the pass is done."""
        result = build_importer(runtime, publish).full_pass(
            budget_s=slice_budget_s(runtime.settings)
        )
        if result.status is Status.MORE:
            app.send_task(SYNC)
        return result.status.value

    @app.task(name=DELTA, shared=False)
    def delta() -> str:
        """Import what changed since the last delta (when the adapter can tell)."""
        result = build_importer(runtime, publish).delta_pass(
            budget_s=slice_budget_s(runtime.settings)
        )
        if result.status is Status.MORE:
            app.send_task(DELTA)
        return result.status.value
