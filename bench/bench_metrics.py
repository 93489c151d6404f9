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
import http.client
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

from scim_bridge.cli.processes import free_port, redis_server_binary  # noqa: E402

READ_TARGET = 0.95


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


def callgrind_total(out_file: Path) -> int:
    """The instruction count ("totals:" or "summary:") of a callgrind output file."""
    for line in out_file.read_text().splitlines():
        if line.startswith(("totals:", "summary:")):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {out_file}")


def send_requests(port: int, paths: Path, count: int, auth: str) -> dict[int, int]:
    """``count`` GETs of the paths in the file, in turn, on one keep-alive connection."""
    lines = [line for line in paths.read_text().splitlines() if line]
    statuses: dict[int, int] = {}
    connection = http.client.HTTPConnection(core.HOST, port, timeout=600)
    try:
        for i in range(count):
            connection.request("GET", lines[i % len(lines)], headers={"Authorization": auth})
            response = connection.getresponse()
            response.read()
            statuses[response.status] = statuses.get(response.status, 0) + 1
    finally:
        connection.close()
    return statuses


CALLGRIND_CONFIG = """\
# bench_metrics.py: the shipped configuration, adjusted for a worker under callgrind (about 50x
# slower: no heartbeat kill, no recycling), and a mark after the warm-up and after the measured
# requests. The mark is a call of sched_yield(2), which nothing else in the api makes:
# valgrind --dump-before=sched_yield writes the counts so far and zeroes them at each mark.
import os

from scim_bridge.api.gunicorn_conf import *  # noqa: F403

timeout = 900
max_requests = 0
max_requests_jitter = 0
_MARKS = {{{warmup}, {last}}}
_served = 0


def post_request(worker, req, environ, resp):
    global _served
    _served += 1
    if _served in _MARKS:
        os.sched_yield()
"""


def measure_instructions(
    args: argparse.Namespace,
    procs: core.Processes,
    env: dict[str, str],
    token: str,
    files: dict[str, Path],
    work: Path,
    log: Any,
) -> dict[str, Any]:
    """Instructions per request of the whole api worker (gunicorn included), by callgrind.

    ``scim-bridge serve --workers 1`` runs under ``valgrind --tool=callgrind``; per scenario,
    100 warm-up requests, then ``--instructions`` measured ones, sent one after another on a
    keep-alive connection. The worker marks the end of each (CALLGRIND_CONFIG), callgrind dumps
    its counts there, and the second dump holds exactly the measured requests. Instruction counts
    do not depend on the load of the machine, so the ratio holds on a shared host.
    """
    warmup = 100
    result: dict[str, Any] = {"requests": args.instructions}
    per: dict[str, dict[str, float]] = {scenario: {} for scenario in files}
    for scenario, paths in files.items():
        for label, flag in (("with", "true"), ("without", "false")):
            port = core.free_port()
            prefix = work / f"callgrind-{scenario}-{label}"
            config = work / f"gunicorn-callgrind-{scenario}-{label}.py"
            config.write_text(
                CALLGRIND_CONFIG.format(warmup=warmup, last=warmup + args.instructions)
            )
            process = procs.start(
                f"api-callgrind-{scenario}-{label}",
                [
                    "valgrind", "--tool=callgrind", "--dump-before=sched_yield",
                    f"--callgrind-out-file={prefix}.%p", sys.executable, core.cli(), "serve",
                    "--host", core.HOST, "--port", str(port), "--workers", "1",
                    "--threads", "4", "--config", str(config),
                ],
                env=env | {"SCIM_BRIDGE_HTTP_METRICS": flag, "PYTHONHASHSEED": "0"},
            )  # fmt: skip
            core.wait_http(port, "/healthz", process, 900)
            statuses = send_requests(port, paths, warmup + args.instructions, token)
            # The worker's second dump: "<prefix>.<pid>.2" (the first is start-up and warm-up).
            deadline = time.monotonic() + 120
            while not (dumps := sorted(work.glob(f"{prefix.name}.*.2"))):
                if time.monotonic() > deadline:
                    raise RuntimeError("callgrind wrote no dump of the measured requests")
                time.sleep(0.5)
            procs.stop(process)
            if len(dumps) != 1 or set(statuses) != {200}:
                raise RuntimeError(f"unexpected callgrind run: {dumps}, statuses {statuses}")
            per[scenario][label] = callgrind_total(dumps[0]) / args.instructions
            log(f"instructions, {scenario}, {label} metrics: {per[scenario][label]:,.0f}/request")
        counts = per[scenario]
        result[scenario] = {
            "with": round(counts["with"]),
            "without": round(counts["without"]),
            "ratio": round(counts["without"] / counts["with"], 4),
        }
    return result


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


def write_markdown(path: Path, report: dict[str, Any]) -> None:
    m = report["machine"]
    lines = [
        "# What observability costs: request metrics and task events",
        "",
        f"- date: {report['date']}",
        f"- machine: {m.get('nproc')} CPUs, {m.get('cpu_model', '')}, Python {m.get('python')}; "
        f"load average at start {' '.join(f'{x:.2f}' for x in report['load_average_start'])}, "
        f"at end {' '.join(f'{x:.2f}' for x in report['load_average_end'])} "
        "(the machine is shared: other users' load is in the `others` CPU column of the json)",
        f"- command: `{report['command']}`",
        f"- code: commit {report['code'].get('commit')}",
        f"- load generator: {report['generator']['name']} "
        f"{' '.join(report['generator']['version'])}, on the same machine, 127.0.0.1 only",
        f"- {report['parameters']['users']:,} users; {report['parameters']['clients']} clients; "
        f"{report['parameters']['repeat']} measurements of {report['parameters']['duration']:g} s "
        "per case, alternating; api `scim-bridge serve --workers "
        f"{report['parameters']['api_workers']} --threads {report['parameters']['threads']}`",
        "",
        "## Request metrics on the read path (target: with ≥ 95 % of without)",
        "",
        "With metrics, `/metrics` was scraped every second during each measurement.",
        "",
        "| scenario | with metrics req/s, median (min-max) | p99 ms | without req/s, median"
        " (min-max) | p99 ms | ratio, median (each pair) | verdict |",
        "| --- | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    cpu_lines = [
        "",
        "The same measurements as api CPU per answered request (its gunicorn processes' CPU"
        " time over the requests answered) and the capacity ratio it gives (requests per api"
        " CPU-second, with over without):",
        "",
        "| scenario | with µs/request | without µs/request | capacity ratio, median (each pair)"
        " | verdict |",
        "| --- | ---: | ---: | --- | --- |",
    ]
    for scenario, r in report["read_path"].items():
        w, wo = r["with"], r["without"]
        verdict = "pass" if r["ratio_median"] >= READ_TARGET else "FAIL"
        lines.append(
            f"| {scenario} | {w['rps_median']:,.1f} ({w['rps_min']:,.1f}-{w['rps_max']:,.1f}) "
            f"| {w['p99_ms_median']} | {wo['rps_median']:,.1f} ({wo['rps_min']:,.1f}-"
            f"{wo['rps_max']:,.1f}) | {wo['p99_ms_median']} | {r['ratio_median']:.3f} "
            f"({', '.join(f'{x:.3f}' for x in r['ratio_each_pair'])}) | {verdict} |"
        )
        cpu_verdict = "pass" if r["cpu_ratio_median"] >= READ_TARGET else "FAIL"
        cpu_lines.append(
            f"| {scenario} | {w['api_cpu_us_median']:,.1f} | {wo['api_cpu_us_median']:,.1f} | "
            f"{r['cpu_ratio_median']:.3f} "
            f"({', '.join(f'{x:.3f}' for x in r['cpu_ratio_each_pair'])}) | {cpu_verdict} |"
        )
    lines += cpu_lines
    counted = report.get("instructions")
    if counted:
        lines += [
            "",
            "Instructions per request of the api worker, counted by callgrind: `scim-bridge serve"
            " --workers 1` under `valgrind --tool=callgrind`, the worker's counts dumped after"
            f" 100 warm-up requests and again after {counted['requests']:,} more, sent one after"
            " another on a keep-alive connection (gunicorn's HTTP handling included; the"
            " `/metrics` scrapes are not). Instruction counts"
            " do not move with the load of the machine. The ratio is the throughput the api"
            " keeps with metrics when its CPU is the bound (instructions without over with):",
            "",
            "| scenario | with metrics | without | ratio | verdict |",
            "| --- | ---: | ---: | --- | --- |",
        ]
        for scenario in report["read_path"]:
            c = counted[scenario]
            verdict = "pass" if c["ratio"] >= READ_TARGET else "FAIL"
            lines.append(
                f"| {scenario} | {c['with']:,} | {c['without']:,} | {c['ratio']:.4f} | {verdict} |"
            )
    events = report["task_events"]
    lines += ["", "## Task events for Flower", ""]
    if not events.get("flower_installed"):
        lines.append("Flower is not installed (`pip install '.[flower]'`): not measured.")
    else:
        off, on = events["off"], events["on"]
        lines += [
            "Confirmed creates through one `scim-bridge worker --concurrency 4`: task events off,"
            " then on with `scim-bridge flower --task-events` running (Flower enables events on"
            " the worker), alternating.",
            "",
            "| case | creates/s, median (min-max) | p99 ms |",
            "| --- | ---: | ---: |",
            f"| task events off | {off['rps_median']:,.1f} ({off['rps_min']:,.1f}-"
            f"{off['rps_max']:,.1f}) | {off['p99_ms_median']} |",
            f"| task events on, Flower running | {on['rps_median']:,.1f} ({on['rps_min']:,.1f}-"
            f"{on['rps_max']:,.1f}) | {on['p99_ms_median']} |",
            "",
            f"Ratio on/off: {events['ratio_median']:.3f} (each pair: "
            f"{', '.join(f'{x:.3f}' for x in events['ratio_each_pair'])}); Flower itself used "
            f"{events['flower_cpu_cores_median']} CPU cores (median) while the creates ran.",
        ]
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
