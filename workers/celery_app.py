"""The Celery application: broker settings derived from the budget, and the task registry.

``create_celery(settings)`` is the only way to get one; the ``worker`` and ``beat`` commands and
the tests call it, the api uses it to publish. Delivery settings follow Celery's advice for
slow, idempotent work: ``acks_late`` (the reconciler is idempotent), reject on a lost worker so
the message is redelivered, one prefetched task per process, JSON arguments only.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from typing import Any
from urllib.parse import urlsplit

from celery import Celery, bootsteps

from scim_bridge.workers.capabilities import advertised_functions
from scim_bridge.workers.runtime import AdapterFactory, Runtime
from scim_bridge.workers.settings import Settings
from scim_bridge.workers.sync_tasks import DELTA, import_schedule, register_import_tasks
from scim_bridge.workers.tasks import QUEUE, SWEEP, register_tasks

log = logging.getLogger("scim_bridge.worker")

QUIET_TASKS = (SWEEP, DELTA)
"""Periodic tasks (every few seconds, every minute) whose Celery bookkeeping lines are DEBUG."""


def create_celery(
    settings: Settings,
    *,
    adapter_factory: AdapterFactory | None = None,
    runtime: Runtime | None = None,
) -> Celery:
    """A Celery app for ``settings`` with scim-bridge's tasks registered."""
    broker, sentinel_options = broker_for(settings)
    app = Celery("scim_bridge", broker=broker, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,
        task_default_queue=QUEUE,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        worker_prefetch_multiplier=1,
        worker_concurrency=settings.worker_concurrency,
        task_soft_time_limit=settings.task_soft_time_limit_s,
        task_time_limit=settings.task_time_limit_s,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        broker_transport_options={
            "visibility_timeout": settings.broker_visibility_timeout_s,
            "socket_connect_timeout": settings.redis_timeout_s,
            "socket_timeout": max(settings.redis_timeout_s, 5.0),
            "health_check_interval": 10,
            "retry_on_timeout": True,
            **sentinel_options,
        },
        broker_pool_limit=64,
        # A publish must not hang a request when Redis is away: the dirty mark already
        # records the change, and the sweeper re-publishes it.
        task_publish_retry_policy={
            "max_retries": 1,
            "interval_start": 0,
            "interval_step": 0.2,
            "interval_max": 0.2,
        },
        # SIGTERM: in-flight legacy calls get their deadline to finish; what does not finish is
        # redelivered (acks_late) and reconciled again.
        worker_soft_shutdown_timeout=settings.legacy_deadline_s + 2,
        worker_enable_soft_shutdown_on_idle=True,
        worker_hijack_root_logger=False,
        worker_send_task_events=settings.task_events,
        task_send_sent_event=settings.task_events,
        beat_schedule={
            "sweep-dirty-resources": {"task": SWEEP, "schedule": settings.sweep_interval_s},
            **import_schedule(settings),
        },
    )
    runtime = runtime or Runtime(settings, adapter_factory)
    register_tasks(app, runtime)
    register_import_tasks(app, runtime)
    _heartbeat_while_running(app, runtime)
    return app


def broker_for(settings: Settings) -> tuple[str, dict[str, Any]]:
    """The broker URL and the transport options Sentinel needs (none without Sentinel).

    With Sentinel, kombu's ``sentinel://`` transport asks the Sentinels for the primary on every
    connection; ``redis_url`` gives the database number and the primary's credentials.
    """
    sentinels = settings.sentinels()
    if sentinels is None:
        return settings.redis_url, {}
    parts = urlsplit(settings.redis_url)
    userinfo = parts.netloc.rpartition("@")[0]  # kept quoted, as kombu reads it
    auth = f"{userinfo}@" if userinfo else ""
    db = parts.path.strip("/") or "0"
    url = ";".join(
        f"sentinel://{auth}{f'[{host}]' if ':' in host else host}:{port}/{db}"
        for host, port in sentinels.nodes
    )
    options: dict[str, Any] = {"master_name": sentinels.master}
    if sentinels.password:
        # Given sentinel_kwargs, redis-py uses nothing else for the Sentinel connections.
        options["sentinel_kwargs"] = {
            "password": sentinels.password,
            "socket_connect_timeout": settings.redis_timeout_s,
            "socket_timeout": settings.redis_timeout_s,
        }
    return url, options


def _heartbeat_while_running(app: Celery, runtime: Runtime) -> None:
    """Announce this worker and its concurrency, for the api's backlog estimate.

    A consumer bootstep, so it runs in every kind of worker (the CLI's and the test kit's).
    """

    class Heartbeat(bootsteps.StartStopStep):
        requires = ("celery.worker.consumer.tasks:Tasks",)

        def __init__(self, parent: Any, **kwargs: Any) -> None:
            super().__init__(parent, **kwargs)
            self._stop = threading.Event()

        def start(self, parent: Any) -> None:
            concurrency = int(getattr(getattr(parent, "pool", None), "limit", 0) or 1)
            try:
                functions = advertised_functions(runtime.adapter)
                runtime.store.publish_capabilities(str(f) for f in functions)
            except Exception:  # the api answers 503 on discovery until a worker reports
                log.exception("could not publish the adapter's capabilities")
            host = f"{socket.gethostname()}:{os.getpid()}:{id(parent)}"
            self._stop.clear()
            threading.Thread(
                target=self._beat, args=(host, concurrency), daemon=True, name="heartbeat"
            ).start()

        def _beat(self, host: str, concurrency: int) -> None:
            while not self._stop.is_set():
                try:
                    runtime.store.heartbeat(host, concurrency)
                except Exception:  # Redis down: the next beat retries
                    log.debug("heartbeat failed", exc_info=True)
                self._stop.wait(10)

        def stop(self, parent: Any) -> None:
            self._stop.set()

    app.steps["consumer"].add(Heartbeat)
