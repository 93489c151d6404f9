"""Scenarios of a failing legacy application: down, slower than the deadline, answers lost, and its speed."""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path
from typing import Any

from scim_bridge.cli.processes import wait_until
from scim_bridge.store import Kind
from tests.faults.clients import (
    USERS,
    AcceptedWrite,
    Client,
    Ledger,
    Reader,
    burst,
    user_body,
    version_of,
)
from tests.faults.invariants import Report, legacy_rows
from tests.faults.scenarios.outcome import (
    Outcome,
    Trigger,
    _burst_with_trigger,
    _calls_of,
    _drain,
    _finish,
    _reads,
)
from tests.faults.stack import Stack


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
        result = _burst_with_trigger(
            stack, ledger, outcome, trigger, errors, changes=changes, clients=clients, prefix="down"
        )
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


def _landed_unconfirmed(stack: Stack) -> int:
    """Legacy records whose change the read model still holds as not applied."""
    count = 0
    for row in legacy_rows(stack.db_path)["users"]:
        snap = stack.store.snapshot(Kind.USER, row["scim_id"])
        if snap.exists and snap.applied_version < snap.version:
            count += 1
    return count


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

            from tests.faults.clients import HEADERS

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
