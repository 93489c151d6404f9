"""Counters and histograms of scim-bridge, summed across every process that records them.

The api runs under gunicorn (several worker processes, recycled after ``max_requests``) and a
``scim-bridge worker`` runs Celery's prefork pool (several children): a figure kept in one
process's memory would be a fraction of the truth, and lost when that process is recycled. So the
metrics use prometheus-client's multiprocess mode whenever ``PROMETHEUS_MULTIPROC_DIR`` is set:
each process writes its values to memory-mapped files in that directory, and the one process that
serves ``/metrics`` sums the files at scrape time, those of processes that already exited
included (so counters never go backwards when a process is recycled). The ``scim-bridge serve``
and ``scim-bridge worker`` commands set the directory up, one per command, emptied on start
(:func:`prepare_directory`); without it (tests in one process) the values live in memory.

prometheus-client picks its storage when it is first imported, and the metric objects are bound to
it: hence :func:`metrics` builds them on first use, after the command set the directory, never at
import time.

Labels are bounded by construction: route templates (``/scim/v2/Users/{id}``), never ids or
userNames; operations are the adapter port's method names; results and outcomes are fixed sets.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Okta's agent gives up after its "Timeout for API calls" (30 s at least): the buckets reach past
# it so p99 near the timeout is visible, and start low because reads answer in milliseconds.
HTTP_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 20, 30, 60)
# Legacy calls and reconciliations: tens of milliseconds (a database) to the adapter deadline.
LEGACY_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60)

WRITE_RESULTS = ("confirmed", "pending", "refused", "rejected")
"""``confirmed``: the legacy application applied it within the request; ``pending``: accepted,
finishing in the background; ``refused``: the legacy application refused it; ``rejected``: the
connector refused it before it reached the legacy application (invalid, conflict, backpressure)."""

LEGACY_OUTCOMES = ("ok", "transient", "permanent", "conflict", "timeout")
WRITE_OPS = ("create", "replace", "patch", "delete")
RETRY_CAUSES = ("transient", "circuit_open", "busy", "adapter_bug")
"""``transient``: the legacy application failed; ``circuit_open``, ``busy``: it was not tried
(breaker open, cap full); ``adapter_bug``: the plugin raised something that is not a port error."""
BREAKER_STATES = ("closed", "open", "half_open")


@dataclass(frozen=True)
class Metrics:
    """Every counter and histogram, one object per process."""

    http_requests: Counter
    http_request_duration: Histogram
    writes: Counter
    reconcile_duration: Histogram
    legacy_call_duration: Histogram
    retries: Counter
    dead_lettered: Counter
    breaker_transitions: Counter
    registry: CollectorRegistry
    """Where the objects are registered: the exposition when not in multiprocess mode."""


@cache
def metrics() -> Metrics:
    """This process's metric objects, built on first use (see the module docstring)."""
    from prometheus_client import values

    if multiprocess_dir() is not None and values.ValueClass.__name__ == "MutexValue":
        # prometheus-client was imported before the command set the directory: choose the
        # storage again, or this process's counts would never reach the files.
        values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
    registry = CollectorRegistry(auto_describe=True)
    http_labels = ("method", "route", "status", "dialect")
    return Metrics(
        http_requests=Counter(
            "scim_bridge_http_requests",
            "HTTP requests answered by the api",
            http_labels,
            registry=registry,
        ),
        http_request_duration=Histogram(
            "scim_bridge_http_request_duration_seconds",
            "Time from request to answer in the api",
            http_labels,
            buckets=HTTP_BUCKETS_S,
            registry=registry,
        ),
        writes=Counter(
            "scim_bridge_writes",
            "Writes by resource kind, operation and result (confirmed, pending, refused, rejected)",
            ("kind", "op", "result"),
            registry=registry,
        ),
        reconcile_duration=Histogram(
            "scim_bridge_reconcile_duration_seconds",
            "Time of one reconcile task, by resource kind and result",
            ("kind", "result"),
            buckets=LEGACY_BUCKETS_S,
            registry=registry,
        ),
        legacy_call_duration=Histogram(
            "scim_bridge_legacy_call_duration_seconds",
            "Time of one call into the legacy application, by adapter operation and outcome",
            ("operation", "outcome"),
            buckets=LEGACY_BUCKETS_S,
            registry=registry,
        ),
        retries=Counter(
            "scim_bridge_retries",
            "Reconciliations put back for a later retry, by resource kind and cause",
            ("kind", "cause"),
            registry=registry,
        ),
        dead_lettered=Counter(
            "scim_bridge_dead_lettered",
            "Changes moved to the dead-letter store, by resource kind",
            ("kind",),
            registry=registry,
        ),
        breaker_transitions=Counter(
            "scim_bridge_breaker_transitions",
            "Circuit breaker state changes seen by this connector, by the state entered",
            ("to",),
            registry=registry,
        ),
        registry=registry,
    )


def show_worker_series(kinds: Iterable[str]) -> None:
    """Put the worker's counters on the page at zero, so ``rate()`` and alerts see a series
    before the first retry, dead letter or breaker change instead of no data at all."""
    m = metrics()
    for kind in kinds:
        m.dead_lettered.labels(kind)
        for cause in RETRY_CAUSES:
            m.retries.labels(kind, cause)
    for state in BREAKER_STATES:
        m.breaker_transitions.labels(state)


def show_write_series(kinds: Iterable[str]) -> None:
    """Every write counter at zero, so a ratio of results has data from the first scrape."""
    m = metrics()
    for kind in kinds:
        for op in WRITE_OPS:
            for result in WRITE_RESULTS:
                m.writes.labels(kind, op, result)


def multiprocess_dir() -> Path | None:
    """The multiprocess directory in force, if any."""
    value = os.environ.get(MULTIPROC_ENV, "").strip()
    return Path(value) if value else None


def prepare_directory(directory: Path) -> None:
    """Make ``directory`` the multiprocess directory of this process and its children.

    Emptied first: files left by an earlier run (a crash, a restart) would add that run's
    counts to this one's and keep dead processes' series alive.
    """
    directory.mkdir(parents=True, exist_ok=True)
    for entry in directory.iterdir():
        if entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    os.environ[MULTIPROC_ENV] = str(directory)


def command_directory(role: str) -> Path:
    """Set up the multiprocess directory of one ``serve`` or ``worker`` command, emptied.

    ``PROMETHEUS_MULTIPROC_DIR`` when the operator set it (one directory per command: two
    commands sharing one would each serve the other's counts too); else a private directory in
    memory (``/dev/shm``) when there is one, removed when the command ends.
    """
    directory = multiprocess_dir()
    if directory is None:
        shm = Path("/dev/shm")  # noqa: S108 - memory-backed, like gunicorn's heartbeat files
        parent = str(shm) if shm.is_dir() else None
        directory = Path(tempfile.mkdtemp(prefix=f"scim-bridge-{role}-metrics-", dir=parent))
        owner = os.getpid()

        def remove() -> None:
            # Forked children (gunicorn workers, pool processes) run atexit handlers too.
            if os.getpid() == owner:
                shutil.rmtree(directory, ignore_errors=True)

        atexit.register(remove)
    prepare_directory(directory)
    return directory


def process_exited(pid: int) -> None:
    """Tell the multiprocess store that process ``pid`` is gone (gunicorn's ``child_exit``).

    Its counters and histograms keep counting in the sums; only live-process gauge files, which
    scim-bridge does not use, are removed. Nothing to do outside multiprocess mode.
    """
    if multiprocess_dir() is None:
        return
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def exposition_collectors() -> list[Collector]:
    """What a ``/metrics`` endpoint serves of the counters: all processes' sums, or this one's."""
    directory = multiprocess_dir()
    if directory is None:
        return [_Registered(metrics().registry)]
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(directory))  # type: ignore[no-untyped-call]
    return [_Registered(registry)]


class _Registered(Collector):
    """A registry seen as one collector, so it can sit in another registry beside gauges."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterable[Metric]:
        return self.registry.collect()
