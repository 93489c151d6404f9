"""What every fault scenario shares: its outcome, triggers, bursts, draining, and the legacy
calls it recorded."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.faults.clients import BurstResult, Ledger, Reader, burst
from tests.faults.invariants import Report, check
from tests.faults.stack import Stack


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


def _burst_with_trigger(
    stack: Stack,
    ledger: Ledger,
    outcome: Outcome,
    trigger: Trigger,
    errors: list[str],
    *,
    changes: int,
    clients: int,
    prefix: str,
) -> BurstResult:
    """A burst of client writes that fires ``trigger`` at its marks, reads measured meanwhile;
    the burst's and the trigger's errors go to ``errors``."""
    with Reader(stack.api_url, ledger.ids) as reader:
        result = burst(
            stack.api_url,
            ledger,
            changes=changes,
            clients=clients,
            prefix=prefix,
            on_progress=trigger.progress,
        )
        trigger.finish()
    _reads(outcome, reader)
    errors += result.errors + trigger.errors
    return result


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


def _calls(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
