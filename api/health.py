"""Liveness, readiness and Prometheus metrics: gauges read from Redis, and the counters and
histograms of every api process (:mod:`scim_bridge.workers.metrics`)."""

from __future__ import annotations

from collections.abc import Iterator

import falcon
import redis
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from scim_bridge.store import Store
from scim_bridge.store.keys import QUEUE
from scim_bridge.workers.metrics import exposition_collectors


class Health:
    """``/healthz``: the process answers."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"status": "ok"}
        resp.content_type = falcon.MEDIA_JSON


class Readiness:
    """``/readyz``: Redis answers, so requests can be served."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = falcon.MEDIA_JSON
        try:
            self.store.ping()
        except redis.RedisError as exc:
            resp.status = falcon.HTTP_503
            resp.media = {"status": "not ready", "reason": f"Redis: {exc}"}
            return
        resp.media = {"status": "ready"}


class QueueCollector(Collector):
    """Gauges read at scrape time from :meth:`Store.status`, the same from every api process."""

    def __init__(self, store: Store, *, legacy_cap: int = 0) -> None:
        self.store = store
        self.legacy_cap = legacy_cap

    def collect(self) -> Iterator[GaugeMetricFamily]:
        status = self.store.status()
        backlog = GaugeMetricFamily("scim_bridge_backlog", "Resources with changes not yet applied")
        backlog.add_metric([], status.backlog)
        yield backlog
        age = GaugeMetricFamily(
            "scim_bridge_oldest_pending_age_seconds", "Age of the oldest dirty mark"
        )
        age.add_metric([], status.oldest_pending_age_s or 0.0)
        yield age
        dead = GaugeMetricFamily("scim_bridge_dead_letters", "Changes in the dead-letter store")
        dead.add_metric([], float(status.dead_letters))
        yield dead
        queue = GaugeMetricFamily(
            "scim_bridge_queue_length", "Tasks waiting in the broker queue", labels=["queue"]
        )
        queue.add_metric([QUEUE], float(status.queue_length))
        yield queue
        workers = GaugeMetricFamily("scim_bridge_worker_capacity", "Concurrency of live workers")
        workers.add_metric([], float(sum(status.workers.values())))
        yield workers
        alive = GaugeMetricFamily(
            "scim_bridge_workers_alive", "Worker processes that announced themselves recently"
        )
        alive.add_metric([], float(len(status.workers)))
        yield alive
        memory = GaugeMetricFamily(
            "scim_bridge_redis_used_memory_bytes", "Redis used_memory, as the connector sees it"
        )
        memory.add_metric([], float(status.redis_used_memory_bytes))
        yield memory
        circuit = GaugeMetricFamily(
            "scim_bridge_circuit_state",
            "Legacy circuit breaker: 1 for the current state",
            labels=["state"],
        )
        for state in ("closed", "open", "half_open"):
            circuit.add_metric([state], 1.0 if status.circuit["state"] == state else 0.0)
        yield circuit
        in_flight = GaugeMetricFamily(
            "scim_bridge_legacy_calls_in_flight", "Legacy calls holding a slot of the global cap"
        )
        in_flight.add_metric([], float(status.legacy_calls_in_flight))
        yield in_flight
        cap = GaugeMetricFamily(
            "scim_bridge_legacy_max_concurrency",
            "The global cap on concurrent legacy calls (0: no cap)",
        )
        cap.add_metric([], float(self.legacy_cap))
        yield cap


class Metrics:
    """``/metrics`` in the Prometheus text format."""

    def __init__(self, store: Store, *, legacy_cap: int = 0) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(QueueCollector(store, legacy_cap=legacy_cap))
        for collector in exposition_collectors():
            self.registry.register(collector)

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = CONTENT_TYPE_LATEST
        resp.data = generate_latest(self.registry)
