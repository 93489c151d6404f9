"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import time
from collections.abc import Iterator

import falcon
import redis
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from scim_bridge.workers.guard import LegacyGuard
from scim_bridge.workers.readmodel import ReadModel
from scim_bridge.workers.tasks import QUEUE


class Health:
    """``/healthz``: the process answers."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"status": "ok"}
        resp.content_type = falcon.MEDIA_JSON


class Readiness:
    """``/readyz``: Redis answers, so requests can be served."""

    def __init__(self, store: ReadModel) -> None:
        self.store = store

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = falcon.MEDIA_JSON
        try:
            self.store.redis.ping()
        except redis.RedisError as exc:
            resp.status = falcon.HTTP_503
            resp.media = {"status": "not ready", "reason": f"Redis: {exc}"}
            return
        resp.media = {"status": "ready"}


class QueueCollector(Collector):
    """Gauges read from Redis at scrape time, the same from every api process."""

    def __init__(self, store: ReadModel) -> None:
        self.store = store
        # Read-only use: the figures the workers' guard keeps in Redis.
        self.guard = LegacyGuard(
            store.redis, store.prefix, max_concurrency=0, failure_threshold=1, open_s=1
        )

    def collect(self) -> Iterator[GaugeMetricFamily]:
        store = self.store
        backlog = GaugeMetricFamily("scim_bridge_backlog", "Resources with changes not yet applied")
        backlog.add_metric([], store.backlog())
        yield backlog
        oldest = store.oldest_pending()
        age = GaugeMetricFamily(
            "scim_bridge_oldest_pending_age_seconds", "Age of the oldest dirty mark"
        )
        age.add_metric([], max(0.0, time.time() - oldest[1]) if oldest else 0.0)
        yield age
        dead = GaugeMetricFamily("scim_bridge_dead_letters", "Changes in the dead-letter store")
        dead.add_metric([], float(store.redis.hlen(store.dlq_key)))
        yield dead
        queue = GaugeMetricFamily(
            "scim_bridge_queue_length", "Tasks waiting in the broker queue", labels=["queue"]
        )
        queue.add_metric([QUEUE], float(store.redis.llen(QUEUE)))
        yield queue
        workers = GaugeMetricFamily("scim_bridge_worker_capacity", "Concurrency of live workers")
        workers.add_metric([], float(sum(store.live_workers().values())))
        yield workers
        breaker = self.guard.breaker()
        circuit = GaugeMetricFamily(
            "scim_bridge_circuit_state",
            "Legacy circuit breaker: 1 for the current state",
            labels=["state"],
        )
        for state in ("closed", "open", "half_open"):
            circuit.add_metric([state], 1.0 if breaker.state == state else 0.0)
        yield circuit
        in_flight = GaugeMetricFamily(
            "scim_bridge_legacy_calls_in_flight", "Legacy calls holding a slot of the global cap"
        )
        in_flight.add_metric([], float(self.guard.in_flight()))
        yield in_flight


class Metrics:
    """``/metrics`` in the Prometheus text format."""

    def __init__(self, store: ReadModel) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(QueueCollector(store))

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = CONTENT_TYPE_LATEST
        resp.data = generate_latest(self.registry)
