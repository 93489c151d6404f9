"""Fault benchmark of scim-bridge: the fault suite's scenarios, larger, with their numbers.

    /work/venv/bin/python bench/bench_faults.py [--only kill,redis,...] [--quick]

Each scenario (tests/faults/scenarios.py) starts its own Redis (append-only file on), SQLite
legacy database, Celery workers (``scim-bridge worker``), beat and api (``scim-bridge serve``,
gunicorn) as real processes on 127.0.0.1, produces its fault for real, waits until nothing is
dirty, and checks the invariant of tests/faults/invariants.py. Recorded per fault: changes
accepted (2xx answers), applied, dead-lettered, lost (must be 0), duplicated in the legacy
application (must be 0), and the api's read latency (GET /Users/{id} from a reader thread
during the fault). The speed case adds the answer time of creates and the drain rate with
1 s legacy calls under the global cap of 8 concurrent legacy calls.

Writes bench/results-faults.json and bench/RESULTS-faults.md (after every scenario, so a run
that is stopped keeps what it measured).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from core import processes  # noqa: E402

from scim_bridge.cli.processes import redis_server_binary  # noqa: E402
from tests.faults import scenarios  # noqa: E402
from tests.faults.stack import BASE_SETTINGS  # noqa: E402

SCENARIOS: dict[str, tuple[str, Callable[[Path, bool], Any]]] = {
    "kill": (
        "kill -9 of workers during a burst",
        lambda d, q: scenarios.kill_workers(
            d, changes=500 if q else 2000, kills=4 if q else 8, clients=8
        ),
    ),
    "redis": (
        "Redis restarted during a burst (workers restarted on failure, as the systemd units)",
        lambda d, q: scenarios.redis_restart(
            d,
            changes=500 if q else 2000,
            restarts=1 if q else 2,
            down_s=3.0,
            clients=8,
            drain_s=90,
            restart_policy="on-failure",
        ),
    ),
    "redis-always": (
        "Redis restarted during a burst (workers always restarted, as Kubernetes)",
        lambda d, q: scenarios.redis_restart(
            d,
            changes=500 if q else 2000,
            restarts=1 if q else 2,
            down_s=3.0,
            clients=8,
            drain_s=90,
            restart_policy="always",
        ),
    ),
    "down": (
        "legacy application down, then back",
        lambda d, q: scenarios.legacy_down(
            d, changes=200 if q else 1000, down_s=6.0 if q else 15.0, clients=8
        ),
    ),
    "slow": (
        "legacy slower than the deadline (effect lands)",
        lambda d, q: scenarios.slow_legacy(
            d, changes=60 if q else 300, slow_s=6.0 if q else 12.0, clients=6
        ),
    ),
    "duplicates": (
        "duplicated and reordered deliveries",
        lambda d, q: scenarios.duplicate_and_reordered(d, users=3 if q else 20),
    ),
    "group": (
        "group pushed with members still being created",
        lambda d, q: scenarios.group_with_pending_members(
            d, members=6 if q else 50, late_members=1 if q else 20
        ),
    ),
    "lost": (
        "changes whose answer was lost, then undone or followed",
        lambda d, q: scenarios.lost_answers(d),
    ),
    "speed": (
        "speed: 1,000 creates, 1 s legacy calls, cap 8",
        lambda d, q: scenarios.speed(d, creates=200 if q else 1000, clients=10),
    ),
}


def machine() -> dict[str, Any]:
    """The core benchmark's machine facts, and the redis-server version the stacks run."""
    redis_version = "unknown"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(
            [redis_server_binary(), "--version"], capture_output=True, text=True, timeout=10
        ).stdout
        redis_version = out.split("v=")[1].split()[0] if "v=" in out else out.strip()
    return processes.machine() | {"redis": redis_version}


def code_version() -> str:
    """The commit measured, and whether the working tree differed from it."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "api", "workers", "adapters"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return f"{commit}{' with local changes to api/workers/adapters' if changed else ''}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(SCENARIOS), help="comma-separated scenarios")
    parser.add_argument("--quick", action="store_true", help="the fault suite's sizes")
    parser.add_argument("--out", type=Path, default=HERE, help="where to write the results")
    parser.add_argument("--keep", action="store_true", help="keep the scenario directories")
    args = parser.parse_args()
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenarios {unknown}; choose from {list(SCENARIOS)}")
    command = shlex.join([sys.executable, *sys.argv])
    results: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": command,
        "code": code_version(),
        "machine": machine(),
        "settings": BASE_SETTINGS | {"SCIM_BRIDGE_AUTH_HEADER_VALUE": "<test token>"},
        "scenarios": {},
    }
    work = Path(tempfile.mkdtemp(prefix="scim-bridge-faults-"))
    try:
        for name in chosen:
            title, run = SCENARIOS[name]
            print(f"== {name}: {title}", flush=True)
            began = time.monotonic()
            try:
                outcome = run(work / name, args.quick)
                summary = outcome.summary()
                summary["name"] = title
            except Exception as exc:  # recorded, the other scenarios still run
                summary = {
                    "name": title,
                    "error": f"{type(exc).__name__}: {exc}",
                    "traceback": traceback.format_exc()[-3000:],
                }
            summary["wall_s"] = round(time.monotonic() - began, 1)
            results["scenarios"][name] = summary
            print(
                json.dumps({k: v for k, v in summary.items() if k != "traceback"}, default=str)[
                    :1500
                ],
                flush=True,
            )
            results["machine"]["loadavg_at_end"] = Path("/proc/loadavg").read_text().split()[:3]
            write(args.out, results)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"scenario directories kept in {work}")
    failed = [
        n
        for n, s in results["scenarios"].items()
        if s.get("error") or s.get("lost") or s.get("duplicated")
    ]
    return 1 if failed else 0


# Reporting ----------------------------------------------------------------------------------
def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def what_happened(name: str, s: dict[str, Any]) -> str:
    f = s.get("facts", {})
    if s.get("error"):
        return f"scenario error: {s['error']}"
    notes: list[str] = []
    if name == "kill":
        shapes = [k["shape"] for k in f.get("kills", [])]
        notes.append(
            f"{len(shapes)} SIGKILLs ({', '.join(shapes)}), each while a pool child of the victim "
            f"was inside a legacy call; sweeper re-published {f.get('sweeper_republished')}"
        )
    elif name.startswith("redis"):
        exits = f.get("worker_exits", [])
        notes.append(
            f"outages {f.get('outages_s')} s; answers not accepted (retried) "
            f"{f.get('not_accepted_answers')}; creates found stored after a lost answer "
            f"{f.get('adopted_creates')}; worker exits {len(exits)} (status "
            f"{sorted({e['status'] for e in exits})}, restarted "
            f"{sum(1 for e in exits if e['restarted'])}); workers alive at the end "
            f"{f.get('workers_alive')}"
        )
    elif name == "down":
        notes.append(
            f"legacy database locked {f.get('down_s')} s; backlog at the end of the outage "
            f"{f.get('backlog_at_end_of_outage')}; 'database is locked' logged "
            f"{f.get('locked_errors_logged')}x"
        )
    elif name == "slow":
        notes.append(
            f"{f.get('timeouts_logged')} timeouts logged; {f.get('landed_while_unconfirmed')} "
            "legacy records held a change the read model still had as not applied"
        )
    elif name == "duplicates":
        results = f.get("task_results", {})
        notes.append("; ".join(f"{k}: {'/'.join(v)}" for k, v in results.items()))
    elif name == "group":
        notes.append(
            f"group waited for members {f.get('group_waited_for_members')}x; add_members calls "
            f"{f.get('add_members_calls')}; memberships in the legacy application "
            f"{f.get('legacy_memberships')} of {f.get('members')}"
        )
    elif name == "lost":
        notes.append("; ".join(f"{k}: {v}" for k, v in f.get("verdicts", {}).items()))
    elif name == "speed":
        notes.append(
            f"answer p99 {fmt(f.get('answer_p99_ms'))} ms; drain "
            f"{fmt(f.get('drain_rate_per_s'))}/s = {fmt(f.get('drain_rate_vs_ceiling_pct'))} % "
            f"of {fmt(f.get('ceiling_per_s'))}/s"
        )
    notes.append(f"drained {fmt(f.get('drain_s'))} s after the burst")
    return "; ".join(notes)


def write(out: Path, results: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results-faults.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    m = results["machine"]
    lines = [
        "# scim-bridge fault benchmark",
        "",
        f"- date: {results['date']}",
        f"- machine: {m['nproc']} CPUs (nproc), {m['cpu_model']}, {m['mem_gib']} GiB, Linux "
        f"{m['kernel']}, Python {m['python']}, redis-server {m['redis']}; load average at start "
        f"{' '.join(m['loadavg_at_start'])}, at end {' '.join(m.get('loadavg_at_end', []))}",
        f"- command: `{results['command']}`; code: {results.get('code', 'unknown')}",
        "- every process real and on 127.0.0.1: redis-server (append-only file, fsync every "
        "second), `scim-bridge worker` (Celery prefork), `scim-bridge beat` (sweeper every 1 s, "
        "grace 18 s), `scim-bridge serve` (gunicorn, 2 workers x 16 threads), the legacy "
        "application a SQLite database behind the `sql` adapter; settings in "
        "results-faults.json",
        "- invariant (tests/faults/invariants.py), checked after the system drained: the legacy "
        "application holds exactly the desired state of every resource, no userName or id twice, "
        "no record the read model does not know; every accepted change applied or dead-lettered "
        "with its reason",
        "",
        "## Per fault",
        "",
        "| fault | accepted | applied | dead-lettered | lost (must be 0) "
        "| duplicated (must be 0) | read p99 ms (p50; reads) | what happened |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for name, s in results["scenarios"].items():
        lost, dup = s.get("lost"), s.get("duplicated")
        lines.append(
            f"| {s['name']} | {fmt(s.get('accepted'))} | {fmt(s.get('applied'))} "
            f"| {fmt(s.get('dead_lettered'))} | {fmt(lost)}{' ❌' if lost else ''} "
            f"| {fmt(dup)}{' ❌' if dup else ''} "
            f"| {fmt(s.get('read_p99_ms'))} ({fmt(s.get('read_p50_ms'))}; {fmt(s.get('reads'))}) "
            f"| {what_happened(name, s)} |"
        )
    speed = results["scenarios"].get("speed")
    if speed and not speed.get("error"):
        f = speed["facts"]
        p99 = f.get("answer_p99_ms")
        pct = f.get("drain_rate_vs_ceiling_pct")
        clean = not speed.get("lost") and not speed.get("duplicated")
        lines += [
            "",
            "## Speed with a slow legacy application",
            "",
            f"{fmt(f['creates'])} user creates from {f['clients']} clients; every legacy call "
            f"takes {f['legacy_latency_s']} s; at most {f['legacy_cap']} legacy calls at once "
            f"across all workers (`SCIM_BRIDGE_LEGACY_MAX_CONCURRENCY={f['legacy_cap']}`, "
            f"{f['worker_slots']} worker processes in the pool); `SCIM_BRIDGE_CONFIRM_WAIT_S=1.0`.",
            "",
            "| measure | target | result | verdict |",
            "| --- | --- | ---: | --- |",
            f"| POST /Users answer time, p99 | ≤ 2,000 ms | {fmt(p99)} ms "
            f"| {'pass' if p99 is not None and p99 <= 2000 else '**FAIL**'} |",
            f"| drain rate (first POST to nothing dirty) vs {fmt(f['ceiling_per_s'])}/s "
            f"| ≥ 90 % | {fmt(f['drain_rate_per_s'])}/s = {fmt(pct)} % "
            f"| {'pass' if pct is not None and pct >= 90 else '**FAIL**'} |",
            f"| lost / duplicated | 0 / 0 | {fmt(speed.get('lost'))} / "
            f"{fmt(speed.get('duplicated'))} "
            f"| {'pass' if clean else '**FAIL**'} |",
            f"| legacy calls in flight, highest seen | ≤ {f['legacy_cap']} "
            f"| {fmt(f['peak_legacy_calls_in_flight'])} "
            f"| {'pass' if f['peak_legacy_calls_in_flight'] <= f['legacy_cap'] else '**FAIL**'} |",
            "",
            f"Answer p50 {fmt(f['answer_p50_ms'])} ms, max {fmt(f['answer_max_ms'])} ms; "
            f"{fmt(f['confirmed_in_request'])} creates confirmed inside their request; the burst "
            f"was answered in {fmt(f['burst_s'])} s and the last change applied "
            f"{fmt(f['first_post_to_drained_s'])} s after the first POST; the legacy application "
            f"received creates at {fmt(f.get('legacy_steady_rate_per_s'))}/s between its first "
            "and its last.",
        ]
    problems = [
        (s["name"], p) for s in results["scenarios"].values() for p in s.get("problems", [])[:8]
    ]
    if problems:
        lines += ["", "## Invariant violations, as the checker reported them", ""]
        lines += [f"- {name}: {problem}" for name, problem in problems]
    lines += [
        "",
        "Read p99 counts every answer of the reader thread, including 404 for users deleted "
        "during the burst and 503 while Redis was down; the per-status counts are in "
        "results-faults.json.",
        "",
    ]
    (out / "RESULTS-faults.md").write_text("\n".join(lines))


if __name__ == "__main__":
    raise SystemExit(main())
