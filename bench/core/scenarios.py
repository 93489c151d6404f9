"""One api configuration measured: reads against the bare app, creates, memory, import."""

from __future__ import annotations

import argparse
import http.client
import json
import secrets
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import redis

from core.loader import V1_USERS_PATH, check_created
from core.processes import (
    HERE,
    HOST,
    PREFIX,
    CpuMeter,
    Processes,
    cli,
    gunicorn_workers_rss,
    vm_rss_kib,
    wait_http,
)
from scim_bridge.cli.processes import (
    free_port,
)


def combine(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Repeated measurements of one scenario: medians, the spread, and every run."""
    ordered = sorted(runs, key=lambda r: r["rps"])
    median_run = ordered[(len(ordered) - 1) // 2]

    def median(key: str) -> float | None:
        values = [r[key] for r in runs if r.get(key) is not None]
        return round(statistics.median(values), 3) if values else None

    combined: dict[str, Any] = {
        "rps": median("rps"),
        "rps_min": ordered[0]["rps"],
        "rps_max": ordered[-1]["rps"],
        "p50_ms": median("p50_ms"),
        "p90_ms": median("p90_ms"),
        "p99_ms": median("p99_ms"),
        "max_ms": max((r["max_ms"] for r in runs if r.get("max_ms") is not None), default=None),
        "requests": sum(r["requests"] for r in runs),
        "cpu_cores": median_run["cpu_cores"],
        "runs": runs,
    }
    errors: Counter[str] = Counter()
    statuses: Counter[str] = Counter()
    for r in runs:
        errors.update(r.get("errors") or {})
        statuses.update(r.get("statuses") or {})
    combined["errors"] = dict(errors)
    if statuses:
        combined["statuses"] = dict(statuses)
    if any("slower_than_confirm_wait" in r for r in runs):
        slower = [r.get("slower_than_confirm_wait") for r in runs]
        combined["slower_than_confirm_wait"] = (
            None if any(x is None for x in slower) else sum(x for x in slower if x is not None)
        )
    if any("confirmation" in r for r in runs):
        total: Counter[str] = Counter()
        for r in runs:
            for key in ("created", "applied", "confirmed_in_request"):
                total[key] += r["confirmation"].get(key, 0)
        combined["confirmation"] = {
            **dict(total),
            "confirmed_pct": round(100 * total["confirmed_in_request"] / total["created"], 2)
            if total["created"]
            else 0.0,
        }
    return combined


def run_config(
    args: argparse.Namespace,
    workers: int,
    *,
    procs: Processes,
    gen: Any,
    redis_url: str,
    client: redis.Redis,
    env: dict[str, str],
    token: str,
    files: dict[str, Path],
    page_start: int,
    roots: dict[str, int],
    log: Any,
) -> dict[str, Any]:
    result: dict[str, Any] = {"api_workers": workers, "threads": args.threads}
    api_port, bare_port = free_port(), free_port()
    api = procs.start(
        f"api-w{workers}",
        [
            cli(),
            "serve",
            "--host",
            HOST,
            "--port",
            str(api_port),
            "--workers",
            str(workers),
            "--threads",
            str(args.threads),
        ],
        env=env,
    )
    bare_env = {**env, "BARE_REDIS_URL": redis_url, "BARE_KEY_PREFIX": PREFIX}
    bare = procs.start(
        f"bare-w{workers}",
        [
            sys.executable,
            "-m",
            "gunicorn",
            # The configuration scim-bridge serve loads, so both servers log and time alike.
            "--config",
            "python:scim_bridge.api.gunicorn_conf",
            "--pythonpath",
            str(HERE),
            "bare_app:app",
            "--bind",
            f"{HOST}:{bare_port}",
            "--worker-class",
            "gthread",
            "--workers",
            str(workers),
            "--threads",
            str(args.threads),
            "--keep-alive",
            "75",
            "--timeout",
            "40",
            "--graceful-timeout",
            "35",
            "--no-control-socket",
            "--log-level",
            "warning",
        ],
        env=bare_env,
    )
    try:
        wait_http(api_port, "/healthz", api, 60)
        wait_http(bare_port, "/docs/none", bare, 60)
        meter = CpuMeter({**roots, "api": api.pid, "bare": bare.pid})
        rss_seen: dict[str, float] = {}

        def sample_rss() -> None:
            for pid, mib in gunicorn_workers_rss(api.pid).items():
                rss_seen[pid] = max(mib, rss_seen.get(pid, 0.0))

        scenarios = [
            ("get_by_id", files["get"], files["bare_get"]),
            ("filter_userName", files["filter"], files["bare_filter"]),
            ("page_50001", files["page"], files["bare_page"]),
            ("v1_get_by_id", files["v1_get"], files["bare_get"]),
            ("v1_filter_userName", files["v1_filter"], files["bare_filter"]),
            ("v1_page_50001", files["v1_page"], files["bare_page"]),
        ]
        for name, scim_paths, bare_paths in scenarios:
            sides = (("scim", api_port, scim_paths, token), ("bare", bare_port, bare_paths, ""))
            for _, port, paths, auth in sides:
                gen.run(
                    port, clients=args.clients, duration_s=args.warmup, auth=auth, paths_file=paths
                )
            runs: dict[str, list[dict[str, Any]]] = {"scim": [], "bare": []}
            ratios = []
            # scim-bridge and bare alternate, so each ratio compares adjacent minutes.
            for _ in range(args.repeat):
                for side, port, paths, auth in sides:
                    measured: dict[str, Any] = {}
                    with meter.measure(measured):
                        measured.update(
                            gen.run(
                                port,
                                clients=args.clients,
                                duration_s=args.duration,
                                auth=auth,
                                paths_file=paths,
                            )
                        )
                    runs[side].append(measured)
                    sample_rss()
                    log(
                        f"  w={workers} {name:16s} {side}: {measured['rps']:8.1f}/s "
                        f"p50 {measured['p50_ms']} ms p99 {measured['p99_ms']} ms "
                        f"errors {measured['errors']} cpu {measured['cpu_cores']}"
                    )
                ratios.append(runs["scim"][-1]["rps"] / runs["bare"][-1]["rps"])
            result[name] = {
                "scim": combine(runs["scim"]),
                "bare": combine(runs["bare"]),
                "ratio_rps": round(statistics.median(ratios), 3),
                "ratios": [round(r, 3) for r in ratios],
            }
        procs.stop(bare)
        result["v1_import"] = full_import(api_port, token)
        log(f"  w={workers} SCIM 1.1 full import: {result['v1_import']}")
        confirm_wait_ms = float(env.get("SCIM_BRIDGE_CONFIRM_WAIT_S", "2")) * 1000
        for name, clients in (("post_1_client", 1), (f"post_{args.clients}_clients", args.clients)):
            gen.run(
                api_port,
                clients=clients,
                duration_s=min(args.warmup, 2),
                auth=token,
                post_run=f"w{workers}c{clients}{secrets.token_hex(3)}warm",
                slow_ms=confirm_wait_ms,
            )
            post_runs = []
            for _ in range(args.repeat):
                run_tag = f"w{workers}c{clients}{secrets.token_hex(3)}"
                measured = {}
                with meter.measure(measured):
                    measured.update(
                        gen.run(
                            api_port,
                            clients=clients,
                            duration_s=args.duration,
                            auth=token,
                            post_run=run_tag,
                            slow_ms=confirm_wait_ms,
                        )
                    )
                ids = measured.pop("created_ids")
                measured["confirmation"] = check_created(client, ids)
                post_runs.append(measured)
                sample_rss()
                log(
                    f"  w={workers} {name:16s}: {measured['rps']:8.1f}/s "
                    f"p50 {measured['p50_ms']} ms p99 {measured['p99_ms']} ms "
                    f"statuses {measured.get('statuses')} "
                    f"confirmation {measured['confirmation']} cpu {measured['cpu_cores']}"
                )
            result[name] = combine(post_runs)
        result["api_worker_rss_mib"] = gunicorn_workers_rss(api.pid)
        result["api_worker_rss_max_seen_mib"] = rss_seen
        result["api_worker_processes_seen"] = len(rss_seen)
        result["api_master_rss_mib"] = round((vm_rss_kib(api.pid) or 0) / 1024, 1)
        log(f"  w={workers} api worker VmRSS (MiB): {result['api_worker_rss_mib']}")
    finally:
        procs.stop(api)
        procs.stop(bare)
    return result


def valid(measured: dict[str, Any], expected_status: str | None = None) -> bool:
    """A measurement counts only if every response had the expected status."""
    if measured.get("errors", {}).get("status"):
        return False
    if expected_status is not None:
        statuses = measured.get("statuses") or {}
        return bool(statuses) and set(statuses) == {expected_status}
    return True


def figures(
    config: dict[str, Any], shared: dict[str, Any], clients: int, notes: list[str]
) -> dict[str, Any]:
    post_n = config[f"post_{clients}_clients"]
    post_1 = config["post_1_client"]
    created = post_1["confirmation"]["created"] + post_n["confirmation"]["created"]
    confirmed = (
        post_1["confirmation"]["confirmed_in_request"]
        + post_n["confirmation"]["confirmed_in_request"]
    )
    workers = config["api_workers"]

    def checked(
        measured: dict[str, Any], key: str, what: str, expected_status: str | None = None
    ) -> Any:
        if valid(measured, expected_status):
            return measured[key]
        notes.append(
            f"workers={workers} {what}: unexpected statuses or errors "
            f"({measured.get('statuses') or measured.get('errors')}); figure not counted"
        )
        return None

    return {
        "get_rps": checked(config["get_by_id"]["scim"], "rps", "GET by id"),
        "get_p99_ms": checked(config["get_by_id"]["scim"], "p99_ms", "GET by id"),
        "filter_rps": checked(config["filter_userName"]["scim"], "rps", "filter"),
        "page_rps": checked(config["page_50001"]["scim"], "rps", "page"),
        "v1_get_rps": checked(config["v1_get_by_id"]["scim"], "rps", "SCIM 1.1 GET by id"),
        "v1_get_p99_ms": checked(config["v1_get_by_id"]["scim"], "p99_ms", "SCIM 1.1 GET by id"),
        "v1_filter_rps": checked(config["v1_filter_userName"]["scim"], "rps", "SCIM 1.1 filter"),
        "v1_page_rps": checked(config["v1_page_50001"]["scim"], "rps", "SCIM 1.1 page"),
        "v1_import_s": config["v1_import"]["seconds"] if config["v1_import"]["complete"] else None,
        "post1_p50_ms": checked(post_1, "p50_ms", "POST, 1 client", "201"),
        "postN_rps": checked(post_n, "rps", f"POST, {clients} clients", "201"),
        "post_confirmed_pct": round(100 * confirmed / created, 2) if created else 0.0,
        "redis_bytes_per_user": shared["redis"]["bytes_per_user"],
        "api_rss_mib": max(
            [
                *config["api_worker_rss_mib"].values(),
                *config.get("api_worker_rss_max_seen_mib", {}).values(),
            ],
            default=0.0,
        ),
    }


def full_import(port: int, token: str, count: int = 100) -> dict[str, Any]:
    """Okta's full import in SCIM 1.1: every page at ``count``, in order, on one connection."""
    connection = http.client.HTTPConnection(HOST, port, timeout=30)
    headers = {"Authorization": token, "Accept": "application/scim+json"}
    seen: set[str] = set()
    duplicates, pages, start, total = 0, 0, 1, None
    started = time.perf_counter()
    try:
        while total is None or start <= total:
            connection.request(
                "GET", f"{V1_USERS_PATH}?startIndex={start}&count={count}", headers=headers
            )
            response = connection.getresponse()
            body = json.loads(response.read())
            if response.status != 200:
                raise RuntimeError(f"import page at {start}: {response.status} {body}")
            total = body["totalResults"]
            for resource in body["Resources"]:
                duplicates += resource["id"] in seen
                seen.add(resource["id"])
            pages += 1
            start += count
    finally:
        connection.close()
    seconds = time.perf_counter() - started
    return {
        "seconds": round(seconds, 2),
        "pages": pages,
        "users": len(seen),
        "total_results": total,
        "duplicates": duplicates,
        "complete": len(seen) == total and duplicates == 0,
        "pages_per_s": round(pages / seconds, 1),
    }
