"""What observability costs: request metrics on the read path, and task events for Flower.

    .venv/bin/python bench/bench_metrics.py [--users 20000] [--duration 8] [--repeat 3]

1. starts its own ``redis-server`` on a free port and loads ``--users`` settled users (the
   core benchmark's loader, bench/bench_core.py);
2. starts two apis with the same gunicorn settings (``scim-bridge serve --workers W --threads
   16``): one with request metrics (``SCIM_BRIDGE_HTTP_METRICS=true``, the default) and one
   without; while the one with metrics is measured, ``/metrics`` is scraped every second (a
   scrape interval far shorter than the deployed 15 s, so the figure is an upper bound);
3. measures GET by random id and filter by random userName against each, alternating (with,
   without; then without, with; ...) so each ratio comes from the same minutes; target: the api
   with metrics keeps ≥ 95 % of the throughput of the one without;
4. counts the instructions one request costs the whole api with and without metrics
   (``--instructions`` requests per case; ``scim-bridge serve --workers 1`` under ``valgrind
   --tool=callgrind``, counts dumped after a warm-up and after the requests): a ratio that
   does not depend on how loaded the machine is, which throughput on a shared host does;
5. measures confirmed creates/s through one worker (``scim-bridge worker``) with task events
   off, then with ``scim-bridge flower --task-events`` running (Flower turns events on in the
   worker), alternating; reports the ratio and the CPU Flower itself takes;
6. writes bench/results-metrics.json and bench/RESULTS-metrics.md.

The load generator is ``wrk`` when it is on PATH (Debian's ``wrk`` package), else the core
benchmark's built-in one.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import random
import secrets
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import redis  # noqa: E402
from core.load import PythonLoad, Wrk  # noqa: E402
from core.loader import USERS_PATH, load_users, user_name, write_paths  # noqa: E402
from core.processes import (  # noqa: E402
    HOST,
    PREFIX,
    ROOT,
    CpuMeter,
    Processes,
    cli,
    code_version,
    deploy_redis_settings,
    machine,
    scim_env,
    wait_http,
    wait_port,
)
from cryptography.fernet import Fernet  # noqa: E402
from metrics_callgrind import measure_instructions  # noqa: E402
from metrics_report import READ_TARGET, write_markdown  # noqa: E402

from scim_bridge.cli.processes import free_port, redis_server_binary  # noqa: E402


def api_cpu_us(run: dict[str, Any]) -> float:
    """The api's CPU time per answered request, in microseconds (its processes' CPU over the
    measurement divided by the requests answered): what throughput is bound by when the api is
    the bottleneck, and far less sensitive than req/s to other users of a shared machine."""
    cores = run.get("cpu_cores", {}).get("api", 0.0)
    return round(cores / run["rps"] * 1e6, 1) if run["rps"] else 0.0


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    rps = [r["rps"] for r in runs]
    return {
        "rps_median": round(statistics.median(rps), 1),
        "api_cpu_us_median": statistics.median(api_cpu_us(r) for r in runs),
        "rps_min": min(rps),
        "rps_max": max(rps),
        "p99_ms_median": round(statistics.median(r["p99_ms"] for r in runs), 2),
        "runs": runs,
    }


def scrape_while(port: int, stop: threading.Event, into: dict[str, int]) -> None:
    """Prometheus's part: a scrape of /metrics every second."""
    while not stop.wait(1.0):
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=5) as r:
                r.read()
            into["scrapes"] = into.get("scrapes", 0) + 1


def start_api(
    procs: Processes, name: str, env: dict[str, str], workers: int, threads: int
) -> tuple[int, subprocess.Popen[bytes]]:
    port = free_port()
    process = procs.start(
        name,
        [
            cli(),
            "serve",
            "--host",
            HOST,
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--threads",
            str(threads),
        ],
        env=env,
    )
    wait_http(port, "/healthz", process, 60)
    return port, process


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per measurement")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--api-workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--out-dir", type=Path, default=HERE)
    parser.add_argument(
        "--instructions",
        type=int,
        default=1000,
        help="requests per scenario counted under callgrind (0: skip; needs valgrind)",
    )
    args = parser.parse_args(argv)

    def log(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)

    signal.signal(signal.SIGTERM, lambda signum, _: sys.exit(128 + signum))
    work = Path(tempfile.mkdtemp(prefix="scim-bridge-bench-metrics-"))
    procs = Processes(work)
    wrk = shutil.which("wrk")
    gen: Any = Wrk(wrk, work) if wrk else PythonLoad(1_000_000)
    report: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "code": code_version(),
        "command": " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]),
        "generator": {"name": gen.name, "version": gen.version},
        "parameters": vars(args) | {"out_dir": str(args.out_dir)},
        "load_average_start": os.getloadavg(),
    }
    try:
        redis_port = free_port()
        redis_proc = procs.start(
            "redis",
            [
                redis_server_binary(),
                *[a for k, v in deploy_redis_settings(ROOT / "deploy/redis/redis.conf")
                  for a in (f"--{k}", v)],
                "--port", str(redis_port), "--bind", HOST, "--save", "",
                "--appendonly", "no", "--dir", str(work),
            ],
        )  # fmt: skip
        wait_port(redis_port, 15, redis_proc)
        redis_url = f"redis://{HOST}:{redis_port}/0"

        password_key = Fernet.generate_key().decode()
        log(f"loading {args.users:,} users")
        # The loader posts through the api's WSGI app with a test client's Host header.
        os.environ["SCIM_BRIDGE_PUBLIC_BASE_URL"] = f"http://{HOST}"
        ids, _ = load_users(redis_url, password_key, args.users, 2)
        token = f"Bearer {secrets.token_urlsafe(24)}"
        env = scim_env(redis_url, token, password_key)
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        env["SCIM_BRIDGE_PUBLIC_BASE_URL"] = f"http://{HOST}"
        rng = random.Random(7)
        sample = rng.sample(ids, min(len(ids), 5000))
        # The loader names user i user_name(i).
        names = [user_name(i) for i in rng.sample(range(args.users), min(args.users, 2000))]
        files = {
            "get_by_id": write_paths(work / "get.txt", [f"{USERS_PATH}/{i}" for i in sample]),
            "filter_userName": write_paths(
                work / "filter.txt",
                [
                    f"{USERS_PATH}?filter=" + urllib.parse.quote(f'userName eq "{n}"', safe="")
                    for n in names
                    if n
                ],
            ),
        }

        # 1. Request metrics on the read path -----------------------------------------------
        with_port, with_proc = start_api(
            procs, "api-with", env | {"SCIM_BRIDGE_HTTP_METRICS": "true"}, args.api_workers,
            args.threads,
        )  # fmt: skip
        without_port, without_proc = start_api(
            procs, "api-without", env | {"SCIM_BRIDGE_HTTP_METRICS": "false"}, args.api_workers,
            args.threads,
        )  # fmt: skip
        reads: dict[str, Any] = {}
        for scenario, paths in files.items():
            runs: dict[str, list[dict[str, Any]]] = {"with": [], "without": []}
            for port in (with_port, without_port):
                gen.run(port, clients=args.clients, duration_s=args.warmup, auth=token,
                        paths_file=paths)  # fmt: skip
            for round_no in range(args.repeat):
                cases = [("with", with_port, with_proc), ("without", without_port, without_proc)]
                # Each goes first every other round, so a drift in the machine's load (it is
                # shared) does not always fall on the same side.
                for label, port, proc in cases if round_no % 2 == 0 else cases[::-1]:
                    stop, scrapes = threading.Event(), {"scrapes": 0}
                    scraper = threading.Thread(
                        target=scrape_while, args=(port, stop, scrapes), daemon=True
                    )
                    if label == "with":
                        scraper.start()
                    meter = CpuMeter({"api": proc.pid, "redis": redis_proc.pid})
                    measured: dict[str, Any] = {}
                    with meter.measure(measured):
                        result = gen.run(
                            port,
                            clients=args.clients,
                            duration_s=args.duration,
                            auth=token,
                            paths_file=paths,
                        )
                    stop.set()
                    result |= measured | scrapes
                    runs[label].append(result)
                    log(
                        f"{scenario} {label} metrics, round {round_no + 1}: "
                        f"{result['rps']:,.0f} req/s, p99 {result['p99_ms']:.2f} ms, "
                        f"errors {result['errors']}"
                    )
            pairs = [
                round(w["rps"] / wo["rps"], 3)
                for w, wo in zip(runs["with"], runs["without"], strict=True)
            ]
            # Capacity: requests per api CPU-second, with over without (same pairs).
            cpu_pairs = [
                round(api_cpu_us(wo) / api_cpu_us(w), 3)
                for w, wo in zip(runs["with"], runs["without"], strict=True)
                if api_cpu_us(w)
            ]
            reads[scenario] = {
                "with": median_run(runs["with"]),
                "without": median_run(runs["without"]),
                "ratio_each_pair": pairs,
                "ratio_median": statistics.median(pairs),
                "cpu_ratio_each_pair": cpu_pairs,
                "cpu_ratio_median": statistics.median(cpu_pairs) if cpu_pairs else 0.0,
            }
        report["read_path"] = reads
        procs.stop(without_proc)
        if shutil.which("valgrind") and args.instructions:
            report["instructions"] = measure_instructions(args, procs, env, token, files, work, log)

        # 2. Task events for Flower ------------------------------------------------------------
        flower_installed = (
            subprocess.run([sys.executable, "-c", "import flower"], capture_output=True).returncode
            == 0
        )
        events: dict[str, Any] = {"flower_installed": flower_installed}
        if flower_installed:
            events |= measure_task_events(args, procs, env, with_port, token, gen, redis_proc, log)
        report["task_events"] = events
    finally:
        procs.stop_all()
        report["load_average_end"] = os.getloadavg()
    out = args.out_dir
    (out / "results-metrics.json").write_text(json.dumps(report, indent=2) + "\n")
    write_markdown(out / "RESULTS-metrics.md", report)
    log(f"wrote {out / 'RESULTS-metrics.md'}")
    verdict = all(r["ratio_median"] >= READ_TARGET for r in report["read_path"].values())
    return 0 if verdict else 1


def measure_task_events(
    args: argparse.Namespace,
    procs: Processes,
    env: dict[str, str],
    api_port: int,
    token: str,
    gen: Any,
    redis_proc: subprocess.Popen[bytes],
    log: Any,
) -> dict[str, Any]:
    """Confirmed creates/s through one worker, task events off, then on with Flower watching."""
    runs: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
    for round_no in range(args.repeat):
        for label in ("off", "on") if round_no % 2 == 0 else ("on", "off"):
            worker_env = env | {"SCIM_BRIDGE_WORKER_METRICS_PORT": str(free_port())}
            worker = procs.start(
                f"worker-{label}", [cli(), "worker", "--concurrency", "4"], env=worker_env
            )
            flower = None
            roots = {"worker": worker.pid, "redis": redis_proc.pid}
            if label == "on":
                flower_port = free_port()
                flower = procs.start(
                    "flower",
                    [cli(), "flower", "--task-events", "--port", str(flower_port)],
                    env=env,
                )
                wait_http(flower_port, "/healthcheck", flower, 60)
                roots["flower"] = flower.pid
            client = redis.Redis.from_url(env["SCIM_BRIDGE_REDIS_URL"])
            deadline = time.monotonic() + 60
            while not client.zcard(f"{PREFIX}:workers:until"):
                if time.monotonic() > deadline:
                    raise RuntimeError("the worker did not report in")
                time.sleep(0.1)
            time.sleep(2)  # Flower's enable_events reaches the worker
            meter = CpuMeter(roots)
            measured: dict[str, Any] = {}
            with meter.measure(measured):
                result = gen.run(
                    api_port,
                    clients=args.clients,
                    duration_s=args.duration,
                    auth=token,
                    post_run=f"{label}{round_no}",
                    slow_ms=2000,
                )
            created = len(result.get("created_ids") or [])
            result.pop("created_ids", None)
            result |= measured | {"created": created}
            runs[label].append(result)
            log(
                f"creates, task events {label}, round {round_no + 1}: {result['rps']:,.0f}/s, "
                f"p99 {result['p99_ms']:.1f} ms, cpu {measured['cpu_cores']}"
            )
            if flower is not None:
                procs.stop(flower)
            procs.stop(worker)
            client.delete(f"{PREFIX}:workers:until", f"{PREFIX}:workers")
    pairs = [round(a["rps"] / b["rps"], 3) for a, b in zip(runs["on"], runs["off"], strict=True)]
    return {
        "off": median_run(runs["off"]),
        "on": median_run(runs["on"]),
        "ratio_each_pair": pairs,
        "ratio_median": statistics.median(pairs),
        "flower_cpu_cores_median": statistics.median(
            r["cpu_cores"].get("flower", 0.0) for r in runs["on"]
        ),
    }


if __name__ == "__main__":
    raise SystemExit(main())
