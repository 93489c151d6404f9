"""Scenarios that lose processes: workers killed with ``kill -9``, Redis restarted, the Redis
primary killed behind Sentinel."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from pathlib import Path
from typing import Any

from scim_bridge.cli.processes import wait_until
from tests.faults.clients import (
    Ledger,
)
from tests.faults.invariants import Report
from tests.faults.scenarios.outcome import (
    Outcome,
    Trigger,
    _burst_with_trigger,
    _calls_of,
    _finish,
)
from tests.faults.stack import Stack, kill_group


# 1. kill -9 of workers during a burst ------------------------------------------------------------
def kill_workers(
    directory: Path, *, changes: int = 500, kills: int = 4, clients: int = 6, drain_s: float = 90
) -> Outcome:
    """``kills`` SIGKILLs of worker processes while ``changes`` user writes arrive.

    The kills cycle through three shapes: one pool child (the worker replaces it and Celery
    rejects its message back to the queue), the whole worker (main process and pool children at
    once, like a lost node; a new worker is started), and the main process alone (its pool
    children are orphaned mid-task; a new worker is started). Each kill waits until a pool child
    of its victim is inside a legacy call (see ``Process.children_in_legacy_calls``).
    """
    started = time.monotonic()
    outcome = Outcome("kill -9 of workers during a burst", Report())
    ledger = Ledger()
    errors: list[str] = []
    with Stack(directory / "kill") as stack:
        stack.start_worker(2)
        stack.start_worker(2)
        stack.start_beat()
        stack.start_api()
        shapes = ["child", "whole", "main"]
        killed: list[dict[str, Any]] = []

        def kill(index: int) -> None:
            shape = shapes[index % len(shapes)]
            victim = stack.workers[index % len(stack.workers)]
            busy = wait_until(victim.children_in_legacy_calls, timeout=20, interval=0.002)
            if shape == "child":
                pids = busy[:1]
            elif shape == "whole":
                pids = victim.group_pids()
            else:
                pids = [victim.pid]
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            killed.append(
                {
                    "shape": shape,
                    "pids": pids,
                    "in_legacy_call": busy,
                    "locks_held": stack.locks_held(),
                }
            )
            if shape != "child":  # the main process replaces a lost pool child itself
                victim.popen.wait(10)
                stack.workers.remove(victim)
                stack.start_worker(2)

        marks = [changes * (i + 1) // (kills + 1) for i in range(kills)]
        trigger = Trigger(marks, kill)
        result = _burst_with_trigger(
            stack, ledger, outcome, trigger, errors, changes=changes, clients=clients, prefix="kill"
        )
        outcome.facts.update(
            burst_s=round(result.seconds, 1),
            kills=killed,
            workers_lost_logged=len(stack.grep_logs("WorkerLostError")),
        )
        _finish(outcome, stack, ledger, drain_s, started, errors)
        outcome.facts["sweeper_republished"] = _republished(stack)
        for process in stack.processes:  # orphaned pool children of a killed main process
            if process.name == "worker" and not process.alive():
                kill_group(process)
    return outcome


def _survivors(stack: Stack, beat: Any, api: Any) -> dict[str, Any]:
    """What a Redis fault left of the processes: exits, who is alive, what the sweeper redid."""
    return {
        "sweeper_republished": _republished(stack),
        "worker_exits": list(stack.exits),
        "workers_alive": sum(1 for w in stack.workers if w.alive()),
        "beat_alive": beat.alive(),
        "api_alive": api.alive(),
    }


def _republished(stack: Stack) -> int:
    total = 0
    for line in stack.grep_logs("re-published"):
        found = re.search(r"re-published (\d+)", line)
        total += int(found.group(1)) if found else 0
    return total


# 2. Redis restarted during a burst ----------------------------------------------------------------
def redis_restart(
    directory: Path,
    *,
    changes: int = 500,
    restarts: int = 1,
    down_s: float = 2.0,
    clients: int = 6,
    drain_s: float = 60,
    restart_policy: str = "on-failure",
    record_calls: bool = False,
) -> Outcome:
    """redis-server stopped (SIGTERM: it writes its append-only file) and started again on the
    same port and directory, ``restarts`` times during a burst. Clients retry what got a 5xx or
    no answer; accepted means answered 2xx. The workers are supervised as the shipped service
    units do (``restart_policy``, see :meth:`Stack.supervise`); every exit is recorded. With
    ``record_calls`` the workers record their legacy calls (tests/faults/worker_main.py)."""
    started = time.monotonic()
    outcome = Outcome("Redis restarted during a burst", Report())
    ledger = Ledger()
    errors: list[str] = []
    record = directory / "redis" / "calls.jsonl"
    recording: dict[str, Any] = (
        {"runner": "faults", "FAULT_RECORD_CALLS": str(record)} if record_calls else {}
    )
    with Stack(directory / "redis") as stack:
        stack.start_worker(2, **recording)
        stack.start_worker(2, **recording)
        beat = stack.start_beat()
        api = stack.start_api()
        stack.supervise(restart_policy)
        outages: list[float] = []

        def restart(index: int) -> None:
            outages.append(round(stack.restart_redis(down_s), 2))

        marks = [changes * (i + 1) // (restarts + 1) for i in range(restarts)]
        trigger = Trigger(marks, restart)
        result = _burst_with_trigger(
            stack,
            ledger,
            outcome,
            trigger,
            errors,
            changes=changes,
            clients=clients,
            prefix="redis",
        )
        outcome.facts.update(
            burst_s=round(result.seconds, 1), outages_s=outages, restart_policy=restart_policy
        )
        _finish(outcome, stack, ledger, drain_s, started, errors)
        outcome.facts.update(_survivors(stack, beat, api))
        if record_calls:
            outcome.facts["legacy_calls_of_suspects"] = _calls_of(record, outcome.report.suspects)
    return outcome


# 2b. The Redis primary killed, Sentinel promotes the replica -----------------------------------
def sentinel_failover(
    directory: Path, *, changes: int = 300, clients: int = 6, drain_s: float = 90
) -> Outcome:
    """Redis behind Sentinel (a primary, a replica, three Sentinels); the primary is killed
    with SIGKILL a third into a burst of creates and updates. The Sentinels promote the replica;
    the killed server is started again as a replica of the new primary (as deploy/'s Redis
    start-up does), and the burst goes on. Every process finds the primary through the
    Sentinels; every accepted write waited for one replica's acknowledgement (the default with
    Sentinel), so the promoted replica holds everything answered 2xx."""
    started = time.monotonic()
    outcome = Outcome("Redis primary killed, Sentinel fails over", Report())
    ledger = Ledger()
    errors: list[str] = []
    with Stack(directory / "sentinel", sentinel=True) as stack:
        group = stack.group
        assert group is not None
        stack.start_worker(2)
        stack.start_worker(2)
        beat = stack.start_beat()
        api = stack.start_api()
        stack.supervise("on-failure")
        seen: dict[str, Any] = {}

        def fail_over(index: int) -> None:
            old, new = group.primary, group.replica
            killed = time.monotonic()
            seen["accepted_before_kill"] = ledger.accepted
            old.kill()
            wait_until(lambda: group.master_ports() == {new.port}, timeout=60, interval=0.05)
            seen["promoted_after_s"] = round(time.monotonic() - killed, 2)
            group.rejoin(old)
            wait_until(lambda: group.replica_synced(old), timeout=60, interval=0.05)
            seen["replica_again_after_s"] = round(time.monotonic() - killed, 2)

        trigger = Trigger([changes // 3], fail_over)
        result = _burst_with_trigger(
            stack,
            ledger,
            outcome,
            trigger,
            errors,
            changes=changes,
            clients=clients,
            prefix="failover",
        )
        outcome.facts.update(burst_s=round(result.seconds, 1), **seen)
        outcome.facts["primary_now"] = (
            "the old replica" if group.master_ports() == {group.replica.port} else "unchanged"
        )
        _finish(outcome, stack, ledger, drain_s, started, errors)
        outcome.facts.update(
            _survivors(stack, beat, api),
            replica_shortfalls_logged=len(stack.grep_logs("Redis replicas confirmed it")),
        )
    return outcome
