"""Load generators: wrk with bench/wrk_scim.lua, or a built-in one of processes."""

from __future__ import annotations

import http.client
import json
import multiprocessing
import os
import random
import statistics
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

from core.loader import USERS_PATH, user_body
from core.processes import HERE, HOST


def summarise(
    latencies_s: list[float], requests: int, duration_s: float, errors: dict[str, int]
) -> dict[str, Any]:
    ordered = sorted(latencies_s)

    def pct(p: float) -> float | None:
        if not ordered:
            return None
        return round(ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000, 2)

    return {
        "requests": requests,
        "duration_s": round(duration_s, 3),
        "rps": round(requests / duration_s, 1) if duration_s else 0.0,
        "p50_ms": pct(50),
        "p90_ms": pct(90),
        "p99_ms": pct(99),
        "p999_ms": pct(99.9),
        "max_ms": round(ordered[-1] * 1000, 2) if ordered else None,
        "mean_ms": round(statistics.fmean(ordered) * 1000, 2) if ordered else None,
        "errors": errors,
    }


class Wrk:
    name = "wrk"

    def __init__(self, binary: str, work: Path) -> None:
        self.binary = binary
        self.work = work
        first = subprocess.run(
            [binary, "-v"], capture_output=True, text=True, timeout=10
        ).stdout.splitlines()[:1]
        self.version = first[0].split()[1:2] if first else []
        self.runs = 0

    def run(
        self,
        port: int,
        *,
        clients: int,
        duration_s: float,
        auth: str,
        paths_file: Path | None = None,
        post_run: str | None = None,
        slow_ms: float = 0,
    ) -> dict[str, Any]:
        self.runs += 1
        out = self.work / f"wrk-{self.runs}.json"
        env = {
            **os.environ,
            "BENCH_MODE": "post" if post_run else "paths",
            "BENCH_AUTH": auth,
            "BENCH_OUT": str(out),
            "BENCH_PATHS": str(paths_file or ""),
            "BENCH_RUN": post_run or "",
            "BENCH_POST_PATH": USERS_PATH,
        }
        threads = max(1, min(2, clients))
        argv = [
            self.binary,
            "-t",
            str(threads),
            "-c",
            str(clients),
            "-d",
            f"{max(1, round(duration_s))}s",
            "--timeout",
            "10s",
            "-s",
            str(HERE / "wrk_scim.lua"),
            f"http://{HOST}:{port}",
        ]
        done = subprocess.run(
            argv, env=env, capture_output=True, text=True, timeout=duration_s + 60
        )
        if done.returncode != 0 or not out.exists():
            raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout}\n{done.stderr}")
        raw = json.loads(out.read_text())
        lat = raw["latency_us"]
        duration = raw["duration_us"] / 1e6
        result = {
            "requests": raw["requests"],
            "duration_s": round(duration, 3),
            "rps": round(raw["requests"] / duration, 1),
            "p50_ms": lat["p50"] / 1000,
            "p90_ms": lat["p90"] / 1000,
            "p99_ms": lat["p99"] / 1000,
            "p999_ms": lat["p999"] / 1000,
            "max_ms": lat["max"] / 1000,
            "mean_ms": round(lat["mean"] / 1000, 3),
            "errors": {k: v for k, v in raw["errors"].items() if v},
            "transfer_mib_s": round(raw["bytes"] / duration / 2**20, 2),
        }
        if post_run:
            result["statuses"] = raw["statuses"]
            result["created_ids"] = raw["created"]
            # wrk gives no per-request latencies: exact only when none can be that slow.
            result["slower_than_confirm_wait"] = 0 if result["max_ms"] < slow_ms else None
        return result


def _python_client(args: tuple[Any, ...]) -> dict[str, Any]:
    (port, auth, paths_file, post_run, index, start_at, stop_at, max_requests) = args
    rng = random.Random(index * 7919 + os.getpid())
    paths = [p for p in Path(paths_file).read_text().splitlines() if p] if paths_file else []
    headers = {"Accept": "application/scim+json"}
    if auth:
        headers["Authorization"] = auth
    if post_run:
        headers["Content-Type"] = "application/scim+json"
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    created: list[str] = []
    errors = 0
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    while time.time() < start_at:
        time.sleep(0.001)
    sent = 0
    while time.time() < stop_at and sent < max_requests:
        sent += 1
        if post_run:
            n = index * 10_000_000 + sent
            name = f"bench-{post_run}-{index}-{sent}@example.com"
            body = user_body(n) | {
                "userName": name,
                "externalId": f"ext-{post_run}-{n}",
                "emails": [{"value": name, "type": "work", "primary": True}],
            }
            method, path, payload = "POST", USERS_PATH, json.dumps(body).encode()
        else:
            method, path, payload = "GET", rng.choice(paths), None
        began = time.perf_counter()
        try:
            conn.request(method, path, body=payload, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException):
            errors += 1
            conn.close()
            conn = http.client.HTTPConnection(HOST, port, timeout=10)
            continue
        latencies.append(time.perf_counter() - began)
        statuses[resp.status] += 1
        if post_run and resp.status == 201:
            created.append(json.loads(data)["id"])
    conn.close()
    return {
        "latencies": latencies,
        "statuses": dict(statuses),
        "created": created,
        "errors": errors,
    }


class PythonLoad:
    name = "python (built-in: one process per client, keep-alive http.client)"
    version: list[str] = []

    def __init__(self, max_requests: int) -> None:
        self.max_requests = max_requests

    def run(
        self,
        port: int,
        *,
        clients: int,
        duration_s: float,
        auth: str,
        paths_file: Path | None = None,
        post_run: str | None = None,
        slow_ms: float = 0,
    ) -> dict[str, Any]:
        start_at = time.time() + 0.5
        stop_at = start_at + duration_s
        jobs = [
            (
                port,
                auth,
                str(paths_file) if paths_file else None,
                post_run,
                i + 1,
                start_at,
                stop_at,
                self.max_requests,
            )
            for i in range(clients)
        ]
        with multiprocessing.get_context("fork").Pool(clients) as pool:
            parts = pool.map_async(_python_client, jobs).get(timeout=duration_s + 60)
        latencies = [x for p in parts for x in p["latencies"]]
        statuses: Counter[str] = Counter()
        for p in parts:
            statuses.update({str(k): v for k, v in p["statuses"].items()})
        non2xx = sum(v for k, v in statuses.items() if not k.startswith("2"))
        errors = {"socket": sum(p["errors"] for p in parts)}
        if non2xx:
            errors["status"] = non2xx
        result = summarise(
            latencies, len(latencies), duration_s, {k: v for k, v in errors.items() if v}
        )
        if post_run:
            result["statuses"] = dict(statuses)
            result["created_ids"] = [x for p in parts for x in p["created"]]
            result["slower_than_confirm_wait"] = sum(1 for x in latencies if x * 1000 > slow_ms)
        return result
