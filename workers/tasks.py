"""Celery tasks: thin, like web views. They deserialize ids, call plain code, and retry.

Names are explicit and stable (``scim_bridge.*``), arguments are JSON strings.
"""

from __future__ import annotations

import logging
import random
import time
from contextvars import Token
from typing import TYPE_CHECKING, Any

from scim_bridge.adapters.errors import AdapterError
from scim_bridge.store import Kind, Status
from scim_bridge.store.keys import QUEUE, ref
from scim_bridge.workers import logs
from scim_bridge.workers.guard import CircuitOpen, LegacyBusy
from scim_bridge.workers.metrics import metrics
from scim_bridge.workers.reconciler import RetryLater

if TYPE_CHECKING:
    from celery import Celery, Task

    from scim_bridge.workers.runtime import Runtime

__all__ = ["QUEUE", "RECONCILE", "SWEEP", "backoff_s", "register_tasks"]

RECONCILE = "scim_bridge.reconcile"
SWEEP = "scim_bridge.sweep"

log = logging.getLogger("scim_bridge.tasks")


def backoff_s(attempt: int, base_s: float, max_s: float) -> float:
    """Exponential backoff with jitter: between half and all of ``base * 2**attempt``, capped."""
    ceiling = min(max_s, base_s * 2.0**attempt)
    return ceiling / 2 + random.uniform(0, ceiling / 2)


def retry_cause(exc: RetryLater) -> str:
    """Why a reconciliation waits: the legacy application failed, or it was not even tried."""
    if isinstance(exc.__cause__, CircuitOpen):
        return "circuit_open"
    if isinstance(exc.__cause__, LegacyBusy):
        return "busy"
    if exc.__cause__ is not None and not isinstance(exc.__cause__, AdapterError):
        return "adapter_bug"
    return "transient"


def _observe(kind: Kind, result: str, started: float) -> None:
    elapsed = time.monotonic() - started
    metrics().reconcile_duration.labels(kind.resource_type, result).observe(elapsed)


def _headers(request_id: str | None) -> dict[str, str]:
    """The reconcile task's message headers: the correlation id of the change, when known."""
    return {logs.REQUEST_ID_HEADER: request_id} if request_id else {}


_bindings: dict[str, Token[Any]] = {}


def _bind_task(task_id: str, task: Task[Any, Any], args: Any = (), **_: Any) -> None:
    if task.name == RECONCILE and len(args) == 2:
        request_id = task.request.get(logs.REQUEST_ID_HEADER)
        _bindings[task_id] = logs.bind(request_id=request_id, resource=ref(Kind(args[0]), args[1]))


def _unbind_task(task_id: str, **_: Any) -> None:
    token = _bindings.pop(task_id, None)
    if token is not None:
        logs.unbind(token)


def _bind_logs_to_tasks() -> None:
    """Every line a reconciliation writes, Celery's "succeeded" or "retry" line included, names
    its change's request and resource (task_prerun and task_postrun run around both)."""
    from celery.signals import task_postrun, task_prerun

    task_prerun.connect(_bind_task, weak=False, dispatch_uid="scim_bridge.logs.bind")
    task_postrun.connect(_unbind_task, weak=False, dispatch_uid="scim_bridge.logs.unbind")


def register_tasks(app: Celery, runtime: Runtime) -> None:
    """Register scim-bridge's tasks on ``app``; they use ``runtime``'s collaborators."""
    settings = runtime.settings

    _bind_logs_to_tasks()

    # shared=False: each app keeps its own tasks, bound to its own runtime.
    @app.task(
        name=RECONCILE,
        bind=True,
        max_retries=None,
        shared=False,
        Request="scim_bridge.workers.task_request:TracedRequest",
    )
    def reconcile(self: Task[Any, Any], kind: str, rid: str) -> str:
        """Reconcile one resource with the legacy application."""
        resource_kind = Kind(kind)
        started = time.monotonic()
        try:
            try:
                result = runtime.reconciler.reconcile(resource_kind, rid)
            except RetryLater:
                raise
            except Exception as exc:
                # Port rule 4: anything but the port's errors is an adapter bug, retried as
                # transient and dead-lettered after the configured attempts, never lost in a loop
                # of acknowledged tasks and sweeper re-publications.
                log.exception(
                    "adapter bug in plugin %r while reconciling %s %s: %s",
                    settings.adapter,
                    kind,
                    rid,
                    type(exc).__name__,
                )
                raise RetryLater(
                    f"adapter bug in plugin {settings.adapter!r}: {type(exc).__name__}: {exc}"
                ) from exc
        except RetryLater as exc:
            failures = runtime.store.count_failure(resource_kind, rid) if exc.counts else 0
            if failures >= settings.max_transient_attempts:
                runtime.reconciler.give_up(
                    resource_kind, rid, f"{exc.reason} (gave up after {failures} attempts)"
                )
                _observe(resource_kind, Status.FAILED, started)
                return Status.FAILED.value
            _observe(resource_kind, "retry", started)
            metrics().retries.labels(resource_kind.resource_type, retry_cause(exc)).inc()
            countdown = backoff_s(
                max(failures, 1), settings.retry_backoff_base_s, settings.retry_backoff_max_s
            )
            if exc.after_s is not None:
                countdown = min(max(countdown, exc.after_s), settings.retry_backoff_max_s)
            # The dirty mark's score moves past the retry, so the sweeper leaves it alone.
            runtime.store.touch_dirty(resource_kind, rid, time.time() + countdown)
            log.info("retrying %s %s in %.1fs: %s", kind, rid, countdown, exc.reason)
            raise self.retry(countdown=countdown, exc=exc) from None
        _observe(resource_kind, result.status, started)
        if result.status is Status.REQUEUE:
            reconcile.apply_async(args=(kind, rid), headers=_headers(logs.current_request_id()))
        return result.status.value

    @app.task(name=SWEEP, shared=False)
    def sweep() -> int:
        """Re-publish dirty resources whose task was lost (the dirty set is the truth)."""
        now = time.time()
        lost = runtime.store.dirty_before(now - settings.sweep_grace_s)
        for kind, rid in lost:
            runtime.store.touch_dirty(kind, rid, now)
            request_id = runtime.store.request_id(kind, rid)
            reconcile.apply_async(args=(kind.value, rid), headers=_headers(request_id))
        if lost:
            log.warning(
                "re-published %d dirty resources whose task was lost",
                len(lost),
                extra={"resources": [ref(kind, rid) for kind, rid in lost[:20]]},
            )
        return len(lost)
