"""The fault scenarios, sized by their arguments: the suite runs them small, the benchmark large.

Each scenario starts its own :class:`~tests.faults.harness.Stack` in ``directory``, produces its
fault for real (signals to processes, a stopped Redis, a locked database, a slow simulator,
hand-delivered tasks), waits until the system drained, checks the invariant of
:mod:`tests.faults.invariants`, stops every process it started, and returns a
:class:`Outcome`: the invariant's report, the api's read latency during the fault, and what
the fault did (``facts``), for the test to assert on and the benchmark to record.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import falcon.testing

from scim_bridge.api.app import create_app
from scim_bridge.cli.processes import wait_until
from scim_bridge.store import Kind
from scim_bridge.workers.celery_app import create_celery
from scim_bridge.workers.tasks import RECONCILE
from tests.faults.harness import (
    GROUPS,
    USERS,
    AcceptedWrite,
    Client,
    Ledger,
    Reader,
    Stack,
    burst,
    group_body,
    kill_group,
    legacy_rows,
    user_body,
    version_of,
)
from tests.faults.invariants import Report, check
from tests.support import TOKEN, make_settings


@dataclass
class Outcome:
    """What one scenario measured."""

    name: str
    report: Report
    seconds: float = 0.0
    read_p50_ms: float | None = None
    read_p99_ms: float | None = None
    reads: int = 0
    read_statuses: dict[int, int] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            **self.report.counts(),
            "seconds": round(self.seconds, 1),
            "read_p50_ms": self.read_p50_ms,
            "read_p99_ms": self.read_p99_ms,
            "reads": self.reads,
            "read_statuses": {str(k): v for k, v in sorted(self.read_statuses.items())},
            "facts": self.facts,
            "problems": self.report.problems[:20],
        }


def _reads(outcome: Outcome, reader: Reader) -> None:
    p50, p99 = reader.percentile(50), reader.percentile(99)
    outcome.read_p50_ms = None if p50 is None else round(p50 * 1000, 1)
    outcome.read_p99_ms = None if p99 is None else round(p99 * 1000, 1)
    outcome.reads = len(reader.samples)
    outcome.read_statuses = dict(reader.statuses)


class Trigger:
    """Runs ``action(i)`` in a thread when the burst's progress reaches mark ``i``, in order."""

    def __init__(self, marks: list[int], action: Callable[[int], None]) -> None:
        self.marks = sorted(marks)
        self.action = action
        self._due: list[threading.Event] = [threading.Event() for _ in self.marks]
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fault", daemon=True)
        self._thread.start()

    def progress(self, done: int) -> None:
        for mark, due in zip(self.marks, self._due, strict=True):
            if done >= mark:
                due.set()

    def _run(self) -> None:
        for index, due in enumerate(self._due):
            while not due.wait(0.1):
                if self._stop.is_set():
                    return
            try:
                self.action(index)
            except Exception as exc:  # reported by the scenario
                self.errors.append(f"fault {index}: {type(exc).__name__}: {exc}")

    def finish(self, timeout: float = 120) -> None:
        """Run every fault still due (the burst may end before its mark), then stop."""
        for due in self._due:
            due.set()
        self._thread.join(timeout)
        self._stop.set()


def _drain(stack: Stack, timeout: float, errors: list[str]) -> float | None:
    """Seconds until nothing was dirty, or None (and the reason in ``errors``) after ``timeout``."""
    try:
        return round(stack.drain(timeout), 1)
    except AssertionError as exc:
        errors.append(str(exc).splitlines()[0])
        return None


def _finish(
    outcome: Outcome,
    stack: Stack,
    ledger: Ledger,
    drain_s: float,
    started: float,
    errors: list[str],
) -> Outcome:
    if "drain_s" not in outcome.facts:
        outcome.facts["drain_s"] = _drain(stack, drain_s, errors)
    outcome.report = check(stack.store, stack.db_path, ledger)
    outcome.report.problems[:0] = errors
    outcome.facts["not_accepted_answers"] = {str(k): v for k, v in ledger.refused.items()}
    outcome.facts["adopted_creates"] = ledger.adopted
    outcome.facts["resolved_deletes"] = ledger.resolved
    outcome.facts["dead_letter_reasons"] = sorted(
        {_reason(entry.get("error", "")) for entry in stack.store.dead_letters().values()}
    )
    outcome.seconds = time.monotonic() - started
    return outcome


def _reason(error: str) -> str:
    return re.sub(r"[0-9a-f]{8}-[0-9a-f-]{27}", "<id>", error)[:160]


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
        with Reader(stack.api_url, ledger.ids) as reader:
            result = burst(
                stack.api_url,
                ledger,
                changes=changes,
                clients=clients,
                prefix="kill",
                on_progress=trigger.progress,
            )
            trigger.finish()
        _reads(outcome, reader)
        errors += result.errors + trigger.errors
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
        with Reader(stack.api_url, ledger.ids) as reader:
            result = burst(
                stack.api_url,
                ledger,
                changes=changes,
                clients=clients,
                prefix="redis",
                on_progress=trigger.progress,
            )
            trigger.finish()
        _reads(outcome, reader)
        errors += result.errors + trigger.errors
        outcome.facts.update(
            burst_s=round(result.seconds, 1), outages_s=outages, restart_policy=restart_policy
        )
        _finish(outcome, stack, ledger, drain_s, started, errors)
        outcome.facts.update(
            sweeper_republished=_republished(stack),
            worker_exits=list(stack.exits),
            workers_alive=sum(1 for w in stack.workers if w.alive()),
            beat_alive=beat.alive(),
            api_alive=api.alive(),
        )
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
        with Reader(stack.api_url, ledger.ids) as reader:
            result = burst(
                stack.api_url,
                ledger,
                changes=changes,
                clients=clients,
                prefix="failover",
                on_progress=trigger.progress,
            )
            trigger.finish()
        _reads(outcome, reader)
        errors += result.errors + trigger.errors
        outcome.facts.update(burst_s=round(result.seconds, 1), **seen)
        outcome.facts["primary_now"] = (
            "the old replica" if group.master_ports() == {group.replica.port} else "unchanged"
        )
        _finish(outcome, stack, ledger, drain_s, started, errors)
        outcome.facts.update(
            sweeper_republished=_republished(stack),
            replica_shortfalls_logged=len(stack.grep_logs("Redis replicas confirmed it")),
            worker_exits=list(stack.exits),
            workers_alive=sum(1 for w in stack.workers if w.alive()),
            beat_alive=beat.alive(),
            api_alive=api.alive(),
        )
    return outcome


# 3. The legacy application down for a while ------------------------------------------------------
def legacy_down(
    directory: Path,
    *,
    changes: int = 200,
    down_s: float = 6.0,
    clients: int = 6,
    drain_s: float = 90,
) -> Outcome:
    """The legacy database locked exclusively (a maintenance job) for ``down_s`` seconds in the
    middle of a burst: every legacy call waits its deadline and fails "database is locked",
    the breaker opens; then the lock goes and everything must land."""
    started = time.monotonic()
    outcome = Outcome("legacy application down, then back", Report())
    ledger = Ledger()
    errors: list[str] = []
    with Stack(directory / "down") as stack:
        stack.start_worker(2)
        stack.start_beat()
        stack.start_api()
        seen: dict[str, Any] = {}

        def outage(index: int) -> None:
            with stack.legacy_locked():
                before = len(stack.grep_logs("database is locked"))
                wait_until(
                    lambda: len(stack.grep_logs("database is locked")) > before,
                    timeout=20,
                    interval=0.1,
                )
                time.sleep(down_s)  # the outage itself: its length is the fault
                seen["backlog_at_end_of_outage"] = stack.store.backlog()
            seen["locked_errors_logged"] = len(stack.grep_logs("database is locked"))
            seen["circuit_open_logged"] = len(stack.grep_logs("circuit open"))

        trigger = Trigger([changes // 4], outage)
        with Reader(stack.api_url, ledger.ids) as reader:
            result = burst(
                stack.api_url,
                ledger,
                changes=changes,
                clients=clients,
                prefix="down",
                on_progress=trigger.progress,
            )
            trigger.finish()
        _reads(outcome, reader)
        errors += result.errors + trigger.errors
        outcome.facts.update(burst_s=round(result.seconds, 1), down_s=down_s, **seen)
        _finish(outcome, stack, ledger, drain_s, started, errors)
    return outcome


# 4. The legacy application slower than the deadline -----------------------------------------------
def slow_legacy(
    directory: Path,
    *,
    changes: int = 60,
    latency_s: float = 2.5,
    slow_s: float = 6.0,
    clients: int = 4,
    drain_s: float = 90,
) -> Outcome:
    """Every legacy call takes ``latency_s`` (> the 2 s adapter deadline) and its change lands
    although the worker sees a timeout, for ``slow_s`` seconds of a burst; then the workers are
    replaced by normal ones. No record may be created twice, every change must land."""
    started = time.monotonic()
    outcome = Outcome("legacy slower than the deadline (effect lands)", Report())
    ledger = Ledger()
    errors: list[str] = []
    record = directory / "slow" / "calls.jsonl"
    with Stack(directory / "slow") as stack:
        slow = stack.start_worker(
            4,
            runner="faults",
            SCIM_BRIDGE_SIMULATE_EFFECT_LANDS_ON_TIMEOUT="true",
            FAULT_RECORD_CALLS=str(record),
            SCIM_BRIDGE_SIMULATE_LATENCY_S=str(latency_s),
        )
        stack.start_beat()
        stack.start_api()
        slow_started = time.monotonic()
        with Reader(stack.api_url, ledger.ids) as reader:
            result = burst(stack.api_url, ledger, changes=changes, clients=clients, prefix="slow")
            # Keep the legacy slow until its timeouts have landed effects for a while.
            wait_until(
                lambda: (
                    time.monotonic() - slow_started > slow_s
                    and len(stack.grep_logs("timed out: the legacy application")) > 0
                ),
                timeout=60,
                interval=0.2,
            )
            landed = _landed_unconfirmed(stack)
            timeouts = len(stack.grep_logs("timed out: the legacy application"))
            stack.stop_worker(slow)
            for _ in range(2):
                stack.start_worker(2, runner="faults", FAULT_RECORD_CALLS=str(record))
            outcome.facts["drain_s"] = _drain(stack, drain_s, errors)
        _reads(outcome, reader)
        errors += result.errors
        outcome.facts.update(
            burst_s=round(result.seconds, 1),
            timeouts_logged=timeouts,
            landed_while_unconfirmed=landed,
            circuit_open_logged=len(stack.grep_logs("circuit open")),
        )
        _finish(outcome, stack, ledger, drain_s, started, errors)
        outcome.facts["legacy_calls_of_suspects"] = _calls_of(record, outcome.report.suspects)
    return outcome


def _calls_of(record: Path, ids: list[str]) -> dict[str, list[str]]:
    """The recorded legacy calls that touched each of ``ids`` (by id, then by its keys)."""
    calls = _calls(record)
    found: dict[str, list[str]] = {}
    for rid in ids[:10]:
        keys = {c.get("result") for c in calls if c.get("resource_id") == rid} - {None}
        found[rid] = [
            f"{time.strftime('%H:%M:%S', time.localtime(c['start']))}"
            f".{int(c['start'] * 1000) % 1000:03d} pid {c['pid']} {c['op']}"
            f"({c.get('resource_id') or c.get('key')}) -> "
            f"{c.get('error') or c.get('result') or 'ok'}"
            f" in {c['end'] - c['start']:.2f}s"
            for c in calls
            if c.get("resource_id") == rid or c.get("key") in keys
        ]
    return found


def _landed_unconfirmed(stack: Stack) -> int:
    """Legacy records whose change the read model still holds as not applied."""
    count = 0
    for row in legacy_rows(stack.db_path)["users"]:
        snap = stack.store.snapshot(Kind.USER, row["scim_id"])
        if snap.exists and snap.applied_version < snap.version:
            count += 1
    return count


# 5. Duplicated and reordered deliveries -----------------------------------------------------------
class Deliveries:
    """Writes through the api in-process, whose tasks are held back; delivered by hand."""

    def __init__(self, stack: Stack, ledger: Ledger) -> None:
        settings = make_settings(
            stack.redis.url,
            stack.env["SCIM_BRIDGE_PASSWORD_KEY"],
            adapter="sql",
            sql_url=stack.sql_url,
            confirm_wait_s=0.0,
            adapter_deadline_s=2,
            sweep_grace_s=18,
        )
        self.stack = stack
        self.ledger = ledger
        self.held: list[tuple[Kind, str]] = []
        app = create_app(settings, store=stack.store, publish=lambda k, r: self.held.append((k, r)))
        self.http = falcon.testing.TestClient(app, headers={"Authorization": TOKEN})
        self.celery = create_celery(settings)

    def write(self, method: str, path: str, body: Any = None) -> tuple[dict[str, Any], str]:
        """One accepted write; returns its answer and the id of the task it published."""
        answer = self.http.simulate_request(method, path, json=body)
        assert answer.status_code in (200, 201, 204), answer.text
        ((kind, rid),) = self.held
        self.held.clear()
        doc = answer.json if answer.status_code != 204 else {}
        op = {"POST": "create", "PUT": "replace", "DELETE": "delete"}[method]
        self.ledger.accept(
            AcceptedWrite(kind, rid, op, version_of(doc) if doc else 0, answer.status_code),
            body if method != "DELETE" else None,
        )
        return doc, rid

    def deliver(self, rid: str, times: int = 1) -> list[str]:
        """Publish the reconcile task of user ``rid`` ``times`` times at once; their results."""
        ids = [
            self.celery.send_task(RECONCILE, args=[Kind.USER.value, rid]).id for _ in range(times)
        ]
        return [self.result(task_id) for task_id in ids]

    def result(self, task_id: str, timeout: float = 30) -> str:
        """The worker's log line for the task says how it ended."""

        def ended() -> str | None:
            for line in self.stack.grep_logs(f"[{task_id}]"):
                found = re.search(r"succeeded in [0-9.e-]+s: '(\w+)'", line)
                if found:
                    return found.group(1)
                if "retry:" in line.lower():
                    return "retry"
            return None

        return str(wait_until(ended, timeout=timeout, interval=0.02))


def _calls(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def duplicate_and_reordered(directory: Path, *, users: int = 3) -> Outcome:
    """For each of ``users`` users, with the api's tasks held back and delivered by hand:

    1. a create delivered twice at once, then once more later: one legacy record, one call;
    2. v2 and v3 written, v3's task delivered first, then v2's: the legacy application ends
       with v3 and v2's late task makes no call;
    3. v4 applied, v5 written, and a stale copy of v4's task delivered before v5's: it applies
       v5 (the latest desired state), never brings v4 back, and v5's own task makes no call;
    4. one update delivered twice at once: one legacy call;
    5. a DELETE applied, then the old create task redelivered: nothing comes back.
    """
    started = time.monotonic()
    outcome = Outcome("duplicated and reordered deliveries", Report())
    ledger = Ledger()
    errors: list[str] = []
    record = directory / "dup" / "calls.jsonl"
    with Stack(directory / "dup") as stack:
        stack.start_worker(2, runner="faults", FAULT_RECORD_CALLS=str(record))
        stack.start_worker(2, runner="faults", FAULT_RECORD_CALLS=str(record))
        send = Deliveries(stack, ledger)
        results: dict[str, list[str]] = {}

        def calls(rid: str, op: str, key: str | None = None) -> int:
            return sum(
                1
                for c in _calls(record)
                if c["op"] == op
                and "error" not in c
                and (c.get("resource_id") == rid or (key is not None and c.get("key") == key))
            )

        def legacy_user(rid: str) -> dict[str, Any] | None:
            rows = [r for r in legacy_rows(stack.db_path)["users"] if r["scim_id"] == rid]
            return rows[0] if rows else None

        def expect(condition: bool, message: str) -> None:
            if not condition:
                errors.append(message)

        for n in range(users):
            name = f"dup-{n}@example.com"
            _, rid = send.write("POST", USERS, user_body(name, given="v1"))
            results.setdefault("create twice at once", []).extend(send.deliver(rid, 2))
            results.setdefault("create redelivered later", []).extend(send.deliver(rid))
            row = legacy_user(rid)
            expect(row is not None, f"{rid}: not created")
            key = str(row["id"]) if row else None
            expect(calls(rid, "create_user") == 1, f"{rid}: {calls(rid, 'create_user')} creates")

            send.write("PUT", f"{USERS}/{rid}", user_body(name, given="v2"))
            send.write("PUT", f"{USERS}/{rid}", user_body(name, given="v3"))
            results.setdefault("v3 before v2: v3's task", []).extend(send.deliver(rid))
            row = legacy_user(rid)
            expect(row is not None and row["given_name"] == "v3", f"{rid}: v3 not applied: {row}")
            updates = calls(rid, "update_user", key)
            results.setdefault("v3 before v2: v2's late task", []).extend(send.deliver(rid))
            row = legacy_user(rid)
            expect(row is not None and row["given_name"] == "v3", f"{rid}: v2 came back: {row}")
            expect(calls(rid, "update_user", key) == updates, f"{rid}: v2's late task called")

            send.write("PUT", f"{USERS}/{rid}", user_body(name, given="v4"))
            send.deliver(rid)
            send.write("PUT", f"{USERS}/{rid}", user_body(name, given="v5"))
            results.setdefault("stale v4 before v5: v4's copy", []).extend(send.deliver(rid))
            row = legacy_user(rid)
            expect(row is not None and row["given_name"] == "v5", f"{rid}: v4 came back: {row}")
            updates = calls(rid, "update_user", key)
            results.setdefault("stale v4 before v5: v5's task", []).extend(send.deliver(rid))
            expect(calls(rid, "update_user", key) == updates, f"{rid}: v5's own task called")

            send.write("PUT", f"{USERS}/{rid}", user_body(name, given="v6", active=False))
            before = calls(rid, "update_user", key) + calls(rid, "deactivate_user", key)
            results.setdefault("update twice at once", []).extend(send.deliver(rid, 2))
            after = calls(rid, "update_user", key) + calls(rid, "deactivate_user", key)
            expect(after - before == 2, f"{rid}: v6 made {after - before} calls, not 2")
            row = legacy_user(rid)
            expect(
                row is not None and row["given_name"] == "v6" and not row["active"],
                f"{rid}: v6 not applied: {row}",
            )

            send.write("DELETE", f"{USERS}/{rid}")
            results.setdefault("delete", []).extend(send.deliver(rid))
            results.setdefault("create redelivered after delete", []).extend(send.deliver(rid))
            expect(legacy_user(rid) is None, f"{rid}: came back after its delete")
            expect(calls(rid, "create_user") == 1, f"{rid}: created again after delete")
        outcome.facts["task_results"] = {k: sorted(set(v)) for k, v in results.items()}
        outcome.facts["legacy_calls"] = len(_calls(record))
        _finish(outcome, stack, ledger, 30, started, errors)
    return outcome


# 6. A group pushed with members still being created ------------------------------------------------
def group_with_pending_members(
    directory: Path,
    *,
    members: int = 6,
    late_members: int = 3,
    latency_s: float = 0.3,
    drain_s: float = 60,
) -> Outcome:
    """Users created (answered at once) and a group holding them pushed right after, with a
    slow legacy application; once the group landed, more users and at once a PUT of the group
    adding them. Every
    membership must land, and no add_members call may name a user before its create_user
    finished in the legacy application."""
    started = time.monotonic()
    outcome = Outcome("group pushed with members still being created", Report())
    ledger = Ledger()
    errors: list[str] = []
    record = directory / "group" / "calls.jsonl"
    with Stack(directory / "group") as stack:
        for _ in range(2):
            stack.start_worker(
                4,
                runner="faults",
                FAULT_RECORD_CALLS=str(record),
                SCIM_BRIDGE_SIMULATE_LATENCY_S=str(latency_s),
            )
        stack.start_beat()
        stack.start_api()
        client = Client(stack.api_url, ledger, prefer_async=True)
        try:
            with Reader(stack.api_url, ledger.ids) as reader:
                ids = [
                    client.create_user(user_body(f"member-{i}@example.com")) for i in range(members)
                ]
                answer = client.http.post(GROUPS, json=group_body("Pending members", ids))
                if answer.status_code not in (201, 202):
                    raise AssertionError(f"group refused: {answer.status_code} {answer.text}")
                group = answer.json()
                ledger.accept(
                    AcceptedWrite(
                        Kind.GROUP, group["id"], "create", version_of(group), answer.status_code
                    ),
                    group_body("Pending members", ids),
                )
                # The group lands once its first members did; then more members, still pending.
                wait_until(
                    lambda: stack.store.snapshot(Kind.GROUP, group["id"]).state == "applied",
                    timeout=drain_s,
                    interval=0.05,
                )
                first_wait = len(stack.grep_logs("is not created in the legacy application yet"))
                late = [
                    client.create_user(user_body(f"late-{i}@example.com"))
                    for i in range(late_members)
                ]
                answer = client.http.put(
                    f"{GROUPS}/{group['id']}", json=group_body("Pending members", ids + late)
                )
                if answer.status_code not in (200, 202):
                    raise AssertionError(f"group PUT refused: {answer.status_code} {answer.text}")
                ledger.accept(
                    AcceptedWrite(
                        Kind.GROUP,
                        group["id"],
                        "replace",
                        version_of(answer.json()),
                        answer.status_code,
                    ),
                    group_body("Pending members", ids + late),
                )
                outcome.facts["drain_s"] = _drain(stack, drain_s, errors)
            _reads(outcome, reader)
        finally:
            client.close()
        calls = _calls(record)
        created_at = {
            c["result"]: c["end"] for c in calls if c["op"] == "create_user" and "error" not in c
        }
        early = [
            (c["start"], key)
            for c in calls
            if c["op"] == "add_members"
            for key in c["member_keys"]
            if key not in created_at or created_at[key] > c["start"]
        ]
        if early:
            errors.append(f"add_members named users before their creation finished: {early}")
        failed_adds = [c for c in calls if c["op"] == "add_members" and "error" in c]
        if failed_adds:
            errors.append(f"add_members failed in the legacy application: {failed_adds}")
        waits = len(stack.grep_logs("is not created in the legacy application yet"))
        outcome.facts.update(
            group_waited_for_first_members=first_wait,
            group_waited_for_members=waits,
            add_members_calls=sum(1 for c in calls if c["op"] == "add_members"),
            members=members + late_members,
        )
        _finish(outcome, stack, ledger, drain_s, started, errors)
        legacy = legacy_rows(stack.db_path)
        outcome.facts["legacy_memberships"] = len(legacy["memberships"])
    return outcome


# 7. Speed with a slow legacy application (benchmark only: it takes minutes) -----------------------
def speed(
    directory: Path,
    *,
    creates: int = 1000,
    clients: int = 10,
    latency_s: float = 1.0,
    cap: int = 8,
    worker_processes: int = 2,
    worker_concurrency: int = 5,
    drain_s: float = 400,
) -> Outcome:
    """A burst of ``creates`` user creates from ``clients`` clients while every legacy call
    takes ``latency_s`` and at most ``cap`` legacy calls run at once across all workers
    (``SCIM_BRIDGE_LEGACY_MAX_CONCURRENCY``). Records the answer time of every POST, the drain
    rate against the cap's ceiling (``cap / latency_s`` changes/s), and the highest number of
    legacy calls seen in flight."""
    started = time.monotonic()
    outcome = Outcome(
        f"speed: {creates} creates, {latency_s:g} s legacy calls, cap {cap}", Report()
    )
    ledger = Ledger()
    errors: list[str] = []
    with Stack(
        directory / "speed",
        SCIM_BRIDGE_SIMULATE_LATENCY_S=str(latency_s),
        SCIM_BRIDGE_LEGACY_MAX_CONCURRENCY=str(cap),
        SCIM_BRIDGE_CONFIRM_WAIT_S="1.0",
    ) as stack:
        for _ in range(worker_processes):
            stack.start_worker(worker_concurrency)
        stack.start_beat()
        stack.start_api()
        answers: list[float] = []
        confirmed = [0]
        peak = [0]
        lock = threading.Lock()
        stop = threading.Event()

        def monitor() -> None:
            while not stop.wait(0.05):
                with contextlib.suppress(Exception):
                    now = time.time()
                    peak[0] = max(peak[0], stack.client.zcount("sb:legacy:slots", now, "+inf"))

        def post(index: int) -> None:
            import httpx

            from tests.faults.harness import HEADERS

            with httpx.Client(base_url=stack.api_url, headers=HEADERS, timeout=30) as http:
                for n in range(index, creates, clients):
                    body = user_body(f"speed-{n}@example.com", given=f"G{n}")
                    sent = time.perf_counter()
                    answer = http.post(USERS, json=body)
                    elapsed = time.perf_counter() - sent
                    if answer.status_code != 201:
                        errors.append(f"POST {n}: {answer.status_code} {answer.text[:200]}")
                        continue
                    doc = answer.json()
                    ledger.accept(
                        AcceptedWrite(Kind.USER, doc["id"], "create", version_of(doc), 201), body
                    )
                    with lock:
                        answers.append(elapsed)
                        if answer.headers.get("X-SCIM-Bridge-Sync") != "pending":
                            confirmed[0] += 1

        watcher = threading.Thread(target=monitor, daemon=True)
        watcher.start()
        threads = [threading.Thread(target=post, args=(i,)) for i in range(clients)]
        with Reader(stack.api_url, ledger.ids) as reader:
            burst_started = time.monotonic()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(600)
            burst_s = time.monotonic() - burst_started
            drained = _drain(stack, drain_s, errors)
            total_s = time.monotonic() - burst_started
        stop.set()
        _reads(outcome, reader)
        ordered = sorted(answers)

        def pct(p: float) -> float | None:
            if not ordered:
                return None
            return round(ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000, 1)

        ceiling = cap / latency_s
        rate = len(answers) / total_s if total_s else 0.0
        outcome.facts.update(
            creates=creates,
            clients=clients,
            legacy_latency_s=latency_s,
            legacy_cap=cap,
            worker_slots=worker_processes * worker_concurrency,
            answer_p50_ms=pct(50),
            answer_p99_ms=pct(99),
            answer_max_ms=pct(100),
            confirmed_in_request=confirmed[0],
            burst_s=round(burst_s, 1),
            drain_after_burst_s=drained,
            first_post_to_drained_s=round(total_s, 1),
            drain_rate_per_s=round(rate, 2),
            ceiling_per_s=round(ceiling, 2),
            drain_rate_vs_ceiling_pct=round(100 * rate / ceiling, 1),
            peak_legacy_calls_in_flight=peak[0],
            legacy_steady_rate_per_s=_steady_rate(stack),
            drain_s=drained,
        )
        _finish(outcome, stack, ledger, drain_s, started, errors)
    return outcome


def _steady_rate(stack: Stack) -> float | None:
    """Creates per second as the legacy application saw them (first to last row written)."""
    import datetime as dt

    stamps = sorted(
        dt.datetime.fromisoformat(str(row["created_at"])).timestamp()
        for row in legacy_rows(stack.db_path)["users"]
    )
    if len(stamps) < 2 or stamps[-1] <= stamps[0]:
        return None
    return round((len(stamps) - 1) / (stamps[-1] - stamps[0]), 2)


# 8. Changes whose answer was lost, then undone ---------------------------------------------------
def lost_answers(directory: Path, *, latency_s: float = 2.5, drain_s: float = 60) -> Outcome:
    """Each user gets one change that lands in the legacy application while the worker sees a
    timeout (the simulator is slower than the deadline and its effect lands), and then a change
    that undoes or follows it; then the legacy application is fast again:

    - A: deactivated (answer lost), then reactivated: must end active;
    - B: reactivated (answer lost), then deactivated: must end inactive;
    - C: created (answer lost), then renamed: must end renamed;
    - D: created (answer lost), then deleted: must end absent from the legacy application.
    """
    started = time.monotonic()
    outcome = Outcome("changes whose answer was lost, then undone", Report())
    ledger = Ledger()
    errors: list[str] = []
    record = directory / "lost" / "calls.jsonl"
    recording = {"runner": "faults", "FAULT_RECORD_CALLS": str(record)}
    with Stack(directory / "lost") as stack:
        normal = stack.start_worker(2, **recording)
        stack.start_beat()
        stack.start_api()
        client = Client(stack.api_url, ledger)
        verdicts: dict[str, str] = {}
        try:
            body = {n: user_body(f"lost-{n}@example.com", given=n) for n in "ABCD"}
            a = client.create_user(body["A"])
            b = client.create_user(body["B"])
            client.replace_user(b, {**body["B"], "active": False})
            stack.drain(drain_s)

            stack.stop_worker(normal)
            stack.start_worker(
                2,
                SCIM_BRIDGE_SIMULATE_EFFECT_LANDS_ON_TIMEOUT="true",
                SCIM_BRIDGE_SIMULATE_LATENCY_S=str(latency_s),
                **recording,
            )
            client.replace_user(a, {**body["A"], "active": False})
            client.replace_user(b, {**body["B"], "active": True})
            c = client.create_user(body["C"])
            d = client.create_user(body["D"])

            def landed() -> bool:
                rows = {r["scim_id"]: r for r in legacy_rows(stack.db_path)["users"]}
                return not rows[a]["active"] and bool(rows[b]["active"]) and c in rows and d in rows

            wait_until(landed, timeout=30, interval=0.1)
            pending = [stack.store.snapshot(Kind.USER, rid).state for rid in (a, b, c, d)]
            outcome.facts["read_model_when_the_effects_had_landed"] = pending
            client.replace_user(a, {**body["A"], "active": True})
            client.replace_user(b, {**body["B"], "active": False})
            client.replace_user(c, {**body["C"], "name": {"givenName": "C2", "familyName": "Doe"}})
            client.delete_user(d)
            for worker in list(stack.workers):
                stack.stop_worker(worker)
            stack.start_worker(2, **recording)
            outcome.facts["drain_s"] = _drain(stack, drain_s, errors)
            rows = {r["scim_id"]: r for r in legacy_rows(stack.db_path)["users"]}
            expected = {
                "A: deactivated (answer lost), then reactivated": bool(rows[a]["active"]),
                "B: reactivated (answer lost), then deactivated": not rows[b]["active"],
                "C: created (answer lost), then renamed": rows[c]["given_name"] == "C2",
                "D: created (answer lost), then deleted": d not in rows,
            }
            verdicts = {
                k: "ok" if v else "WRONG in the legacy application" for k, v in expected.items()
            }
            outcome.facts["legacy_calls"] = _calls_of(record, [a, b, c, d])
        finally:
            client.close()
        outcome.facts["verdicts"] = verdicts
        _finish(outcome, stack, ledger, drain_s, started, errors)
    return outcome
