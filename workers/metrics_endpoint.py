"""The ``/metrics`` endpoint of one ``scim-bridge worker``: its pool processes' counts, summed.

Served by the worker's main process (the one that survives its pool children being replaced) on
``SCIM_BRIDGE_WORKER_METRICS_PORT``. Reconcile, legacy-call, retry, dead-letter and breaker
figures are recorded by the pool processes into the command's multiprocess directory and summed
here at scrape time. The queue gauges are the api's: they are read from Redis and the same
everywhere, so they are not repeated here.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server

from scim_bridge.workers.metrics import exposition_collectors, process_exited

log = logging.getLogger("scim_bridge.worker.metrics")


class WorkerMetricsServer:
    """The HTTP server, started in the worker's main process before its pool forks."""

    def __init__(self, port: int, host: str = "0.0.0.0") -> None:  # noqa: S104 - scraped from afar
        registry = CollectorRegistry()
        for collector in exposition_collectors():
            registry.register(collector)
        self.server, self.thread = start_http_server(port, addr=host, registry=registry)
        self.port = int(self.server.server_address[1])
        self._owner = os.getpid()

    def connect_pool_signals(self) -> None:
        """Hook the pool's process life cycle (Celery signals are process-wide)."""
        from celery.signals import worker_process_init, worker_process_shutdown

        worker_process_init.connect(self._in_pool_process, weak=False)
        worker_process_shutdown.connect(self._pool_process_ends, weak=False)

    def _in_pool_process(self, **_: Any) -> None:
        # A forked pool process inherits the listening socket; closed there, the port is free
        # again as soon as the main process ends, even if a pool process outlives it a moment.
        if os.getpid() != self._owner:
            self.server.socket.close()

    @staticmethod
    def _pool_process_ends(**_: Any) -> None:
        process_exited(os.getpid())

    def close(self) -> None:
        """Stop serving (tests and orderly shutdown)."""
        self.server.shutdown()
        self.server.server_close()
