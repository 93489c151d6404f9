"""Import benchmark: full import from the ``sql`` adapter (SQLite), memory, delta, reads during it.

    .venv/bin/python bench/bench_import.py [--users 100000] [--read-seconds 10] [--clients 4]
                                           [--million]

Every process is started here and stopped in ``finally``; all traffic on 127.0.0.1.

1. starts its own ``redis-server`` (no persistence, the deployed memory encodings) and fills a
   SQLite database with ``--users`` rows the way the application would (no SCIM id);
2. runs ``scim-bridge sync --json`` into the empty read model and times it (wall clock, process
   start included); Redis ``used_memory`` before and after gives the memory per user;
3. runs it again over unchanged data: nothing may be written (idempotence), timed;
4. delta: changes 100 rows and runs one delta pass (``scim-bridge sync --delta``; the pass's own
   time is the figure, the process start is reported beside it). When the ``sql`` adapter has no
   ``changes_since`` yet, the delta is measured in-process on the memory adapter holding the same
   number of users, and the report says so;
5. reads during an import: ``scim-bridge serve`` (2 gunicorn workers) answers GET /Users/{id} for
   random imported ids, first idle, then while a second full import of as many users runs into
   another key prefix of the same Redis; the ratio comes from one run;
6. with ``--million``, a 1,000,000-user import into a fresh Redis (time and memory per user);
7. writes bench/results-import.json and bench/RESULTS-import.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

import redis  # noqa: E402
from core.load import PythonLoad  # noqa: E402
from core.loader import write_paths  # noqa: E402
from core.processes import (  # noqa: E402
    HOST,
    Processes,
    cli,
    code_version,
    deploy_redis_settings,
    machine,
    wait_http,
    wait_port,
)

from scim_bridge.cli.processes import free_port, redis_server_binary  # noqa: E402

TARGETS: dict[str, dict[str, Any]] = {
    "import_s": {
        "label": "full import of N users from SQLite, empty read model (s)",
        "op": "<=",
        "value": 60,
    },
    "bytes_per_user": {
        "label": "Redis used_memory per imported user (bytes)",
        "op": "<=",
        "value": 3072,
    },
    "delta_s": {
        "label": "delta pass finding 100 changes among N users (s)",
        "op": "<=",
        "value": 2,
    },
    "reads_during_import_pct": {
        "label": "GET /Users/{id} during an import, % of idle",
        "op": ">=",
        "value": 80,
    },
    "million_import_s": {"label": "full import of 1,000,000 users (s)", "op": "<=", "value": 600},
    "million_bytes_per_user": {
        "label": "Redis used_memory per user at 1,000,000 (bytes)",
        "op": "<=",
        "value": 3072,
    },
}


def start_redis(processes: Processes, work: Path) -> tuple[str, redis.Redis]:
    port = free_port()
    settings = deploy_redis_settings(ROOT / "deploy" / "redis" / "redis.conf")
    encodings = [arg for name, value in settings for arg in (f"--{name}", value)]
    if not encodings:
        encodings = ["--hash-max-ziplist-value", "4096"]
    (work / f"redis-{port}").mkdir()
    process = processes.start(
        f"redis-{port}",
        [
            redis_server_binary(),
            "--port",
            str(port),
            "--bind",
            HOST,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(work / f"redis-{port}"),
            *encodings,
        ],
    )
    wait_port(port, 10, process)
    url = f"redis://{HOST}:{port}/0"
    return url, redis.Redis.from_url(url)


def sync_env(redis_url: str, database: Path, prefix: str, **extra: str) -> dict[str, str]:
    # The import's own knobs (SCIM_BRIDGE_SYNC_MAX_RATE, _NICENESS, _PAGE_SIZE) pass through, to
    # measure other values than the defaults; every other setting is the benchmark's.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("SCIM_BRIDGE_") or k.startswith("SCIM_BRIDGE_SYNC_")
    }
    env.update(
        {
            "SCIM_BRIDGE_REDIS_URL": redis_url,
            "SCIM_BRIDGE_AUTH_MODE": "header",
            "SCIM_BRIDGE_AUTH_HEADER_VALUE": "Bearer bench-import",
            "SCIM_BRIDGE_ACCEPT_PASSWORDS": "false",
            "SCIM_BRIDGE_ADAPTER": "sql",
            "SCIM_BRIDGE_SQL_URL": f"sqlite:///{database}",
            "SCIM_BRIDGE_KEY_PREFIX": prefix,
            "PYTHONPATH": str(ROOT),
            **extra,
        }
    )
    return env


def run_sync(env: dict[str, str], *flags: str) -> tuple[float, dict[str, Any]]:
    began = time.perf_counter()
    done = subprocess.run(
        [cli(), "sync", "--json", *flags],
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    wall = time.perf_counter() - began
    if done.returncode != 0:
        raise RuntimeError(f"sync failed ({done.returncode}): {done.stdout}\n{done.stderr}")
    return wall, json.loads(done.stdout)


def memory_delta(users: int) -> dict[str, Any]:
    """The delta pass in-process on the memory adapter, when the sql adapter has none."""
    from scim_bridge.adapters.memory import MemoryAdapter
    from scim_bridge.store import Store
    from scim_bridge.workers.sync import Importer

    with tempfile.TemporaryDirectory() as tmp:
        processes = Processes(Path(tmp))
        try:
            _, client = start_redis(processes, Path(tmp))
            adapter = MemoryAdapter()
            keys = [
                adapter.insert_user(
                    {
                        "userName": f"m{i}@legacy.example.com",
                        "displayName": f"M {i}",
                        "active": True,
                    }
                )
                for i in range(users)
            ]
            importer = Importer(Store(client, "sb"), adapter, namespace=uuid.uuid4())
            importer.full_pass()
            importer.delta_pass()
            for key in keys[:: max(1, users // 100)][:100]:
                adapter.edit_user(key, displayName="changed in the application")
            began = time.perf_counter()
            result = importer.delta_pass()
            return {
                "adapter": "memory (in-process)",
                "pass_s": round(time.perf_counter() - began, 3),
                "updated": result.tally.updated,
            }
        finally:
            processes.stop_all()


def sql_delta(env: dict[str, str], database: Path, users: int) -> dict[str, Any]:
    from tests.legacy_rows import touch

    ids = list(range(1, users + 1, max(1, users // 100)))[:100]
    touch(database, ids, "changed in the application")
    wall, summary = run_sync(env, "--delta")
    return {
        "adapter": "sql (scim-bridge sync --delta)",
        "pass_s": round(summary["elapsed_s"], 3),
        "process_wall_s": round(wall, 3),
        "updated": summary["tally"]["updated"],
    }


def reads(
    processes: Processes,
    client: redis.Redis,
    redis_url: str,
    database: Path,
    work: Path,
    *,
    seconds: float,
    clients: int,
) -> dict[str, Any]:
    port = free_port()
    env = sync_env(redis_url, database, "sb")
    api = processes.start(
        "api",
        [
            cli(),
            "serve",
            "--port",
            str(port),
            "--host",
            HOST,
            "--workers",
            "2",
        ],
        env=env,
    )
    wait_http(port, "/healthz", api, 60)
    ids = [i.decode() for i in client.zrange("sb:u:order", 0, 20_000)]
    paths = write_paths(work / "paths.txt", [f"/scim/v2/Users/{i}" for i in ids])
    load = PythonLoad(max_requests=10**9)
    auth = "Bearer bench-import"
    idle = load.run(port, clients=clients, duration_s=seconds, auth=auth, paths_file=paths)
    importing = processes.start(
        "second-import",
        [cli(), "sync", "--json"],
        env=sync_env(redis_url, database, "second"),
    )
    time.sleep(1.0)  # past the process start: the import is paging
    during = load.run(port, clients=clients, duration_s=seconds, auth=auth, paths_file=paths)
    still_running = importing.poll() is None
    importing.wait(3600)
    processes.stop(api)
    return {
        "idle_rps": idle["rps"],
        "during_rps": during["rps"],
        "idle_p99_ms": idle["p99_ms"],
        "during_p99_ms": during["p99_ms"],
        "import_ran_throughout": still_running,
        "pct": round(100 * during["rps"] / idle["rps"], 1),
        "clients": clients,
        "errors": {"idle": idle["errors"], "during": during["errors"]},
    }


def passes(op: str, measured: float | None, value: float) -> bool | None:
    if measured is None:
        return None
    return measured <= value if op == "<=" else measured >= value


def write_markdown(path: Path, report: dict[str, Any]) -> None:
    lines = [
        "# Import benchmark",
        "",
        f"Run {report['at']} on {report['machine']['nproc']} cores "
        f"({report['machine']['cpu_model']}), load average at start "
        f"{' '.join(report['machine']['loadavg_at_start'])}, "
        f"at end {' '.join(report['loadavg_at_end'])}"
        " (the machine is shared: other work ran meanwhile).",
        f"Commit {report['code']['commit']}. Command: `{report['command']}`.",
        "",
        "| figure | target | measured | holds |",
        "|---|---|---|---|",
    ]
    for name, target in TARGETS.items():
        measured = report["figures"].get(name)
        verdict = passes(target["op"], measured, target["value"])
        shown = "not run" if measured is None else measured
        holds = "not measured" if verdict is None else ("yes" if verdict else "**no**")
        lines.append(
            f"| {target['label']} | {target['op']} {target['value']} | {shown} | {holds} |"
        )
    delta = report["details"].get("delta", {})
    lines += [
        "",
        f"The delta pass was measured on the {delta.get('adapter', '?')} adapter"
        + (
            " (the sql adapter has no `changes_since` yet)."
            if "memory" in str(delta.get("adapter"))
            else "."
        ),
        "Reads: GET /scim/v2/Users/{id} for random imported ids, "
        f"{report['details'].get('reads', {}).get('clients', '?')} clients, 2 gunicorn workers; "
        "the import during the second measurement runs at the default "
        "SCIM_BRIDGE_SYNC_MAX_RATE.",
        *report.get("notes", []),
    ]
    lines += ["", "Details:", "", "```json", json.dumps(report["details"], indent=2), "```", ""]
    path.write_text("\n".join(lines))


def rewrite_markdown(out: Path, notes: list[str]) -> None:
    """Re-render RESULTS-import.md from results-import.json, with notes added."""
    report = json.loads((out / "results-import.json").read_text())
    report["notes"] = notes
    (out / "results-import.json").write_text(json.dumps(report, indent=2) + "\n")
    write_markdown(out / "RESULTS-import.md", report)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--read-seconds", type=float, default=10)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--million", action="store_true")
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args(argv)
    from tests.legacy_rows import prefill

    report: dict[str, Any] = {
        "at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine(),
        "code": code_version(),
        "command": " ".join(["bench/bench_import.py", *(argv or sys.argv[1:])]),
        "users": args.users,
    }
    figures: dict[str, Any] = {}
    details: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-import-") as tmp:
        work = Path(tmp)
        processes = Processes(work)
        try:
            url, client = start_redis(processes, work)
            database = work / "legacy.db"
            began = time.perf_counter()
            prefill(database, args.users)
            details["prefill_s"] = round(time.perf_counter() - began, 2)
            env = sync_env(url, database, "sb")
            before = int(client.info("memory")["used_memory"])
            wall, summary = run_sync(env)
            after = int(client.info("memory")["used_memory"])
            figures["import_s"] = round(wall, 2)
            figures["bytes_per_user"] = round((after - before) / args.users)
            details["import"] = {
                "wall_s": round(wall, 2),
                "pass_s": round(summary["elapsed_s"], 2),
                "tally": summary["tally"],
                "users_per_s": round(args.users / wall),
            }
            wall2, again = run_sync(env)
            details["second_pass_unchanged"] = {"wall_s": round(wall2, 2), "tally": again["tally"]}
            from scim_bridge.adapters.port import LegacyAdapter
            from scim_bridge.adapters.sql import SqlAdapter

            if SqlAdapter.changes_since is not LegacyAdapter.changes_since:
                details["delta"] = sql_delta(env, database, args.users)
            else:
                details["delta"] = memory_delta(args.users)
            figures["delta_s"] = details["delta"]["pass_s"]
            details["reads"] = reads(
                processes,
                client,
                url,
                database,
                work,
                seconds=args.read_seconds,
                clients=args.clients,
            )
            figures["reads_during_import_pct"] = details["reads"]["pct"]
            if args.million:
                processes.stop_all()
                url, client = start_redis(processes, work)
                million = work / "million.db"
                prefill(million, 1_000_000)
                before = int(client.info("memory")["used_memory"])
                wall, summary = run_sync(sync_env(url, million, "sb"))
                after = int(client.info("memory")["used_memory"])
                figures["million_import_s"] = round(wall, 1)
                figures["million_bytes_per_user"] = round((after - before) / 1_000_000)
                details["million"] = {"wall_s": round(wall, 1), "tally": summary["tally"]}
        finally:
            processes.stop_all()
    report["loadavg_at_end"] = Path("/proc/loadavg").read_text().split()[:3]
    report["figures"] = figures
    report["details"] = details
    report["targets"] = TARGETS
    (args.out / "results-import.json").write_text(json.dumps(report, indent=2) + "\n")
    write_markdown(args.out / "RESULTS-import.md", report)
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        raise SystemExit(main())
