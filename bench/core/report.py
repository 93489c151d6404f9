"""The targets, and the report in bench/RESULTS.md."""

from __future__ import annotations

from pathlib import Path
from typing import Any

TARGETS: dict[str, dict[str, Any]] = {
    "get_rps": {"label": "GET /Users/{id}: requests/s", "op": ">=", "value": 2000},
    "get_p99_ms": {"label": "GET /Users/{id}: p99 latency (ms)", "op": "<=", "value": 20},
    "filter_rps": {
        "label": 'GET /Users?filter=userName eq "...": requests/s',
        "op": ">=",
        "value": 1500,
    },
    "page_rps": {
        "label": "GET /Users?startIndex=50001&count=100: pages/s",
        "op": ">=",
        "value": 400,
    },
    "post1_p50_ms": {
        "label": "POST /Users, 1 client, confirmed: p50 (ms)",
        "op": "<=",
        "value": 15,
    },
    "postN_rps": {
        "label": "POST /Users, N clients, confirmed: creates/s",
        "op": ">=",
        "value": 200,
    },
    "post_confirmed_pct": {
        "label": "POST /Users: creates confirmed inside their request (%)",
        "op": ">=",
        "value": 100,
    },
    "redis_bytes_per_user": {
        "label": "Redis used_memory per user (bytes; 3 KiB = 3072)",
        "op": "<=",
        "value": 3072,
    },
    "api_rss_mib": {"label": "api worker process VmRSS, largest (MiB)", "op": "<=", "value": 120},
    # SCIM 1.1 (the Okta agent's default dialect) must be as fast as SCIM 2.0: the same targets.
    "v1_get_rps": {"label": "SCIM 1.1 GET /scim/Users/{id}: requests/s", "op": ">=", "value": 2000},
    "v1_get_p99_ms": {"label": "SCIM 1.1 GET /scim/Users/{id}: p99 (ms)", "op": "<=", "value": 20},
    "v1_filter_rps": {
        "label": 'SCIM 1.1 GET /scim/Users?filter=userName eq "...": requests/s',
        "op": ">=",
        "value": 1500,
    },
    "v1_page_rps": {
        "label": "SCIM 1.1 GET /scim/Users?startIndex=50001&count=100: pages/s",
        "op": ">=",
        "value": 400,
    },
    "v1_import_s": {
        "label": "SCIM 1.1 full import, every page at count=100, one client (s)",
        "op": "<=",
        "value": 60,
    },
}


def passes(key: str, value: float | None) -> bool:
    target = TARGETS[key]
    if value is None:
        return False
    return value >= target["value"] if target["op"] == ">=" else value <= target["value"]


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 100 else f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def write_markdown(path: Path, report: dict[str, Any]) -> None:
    redis_flags = "".join(f" --{k} {v}" for k, v in report.get("redis_settings", {}).items())
    redis_note = (
        "; value-encoding settings taken from the deployed Redis config"
        if report.get("redis_settings")
        else ""
    )
    configs = report["configs"]
    best = report["best_config"]
    clients = report["parameters"]["clients"]
    lines = [
        "# scim-bridge core benchmark",
        "",
        f"- date: {report['date']}",
        f"- machine: {report['machine']['nproc']} CPUs (nproc), {report['machine']['cpu_model']}, "
        f"{report['machine']['mem_gib']} GiB, Linux {report['machine']['kernel']}, "
        f"Python {report['machine']['python']}; load average at start "
        f"{' '.join(report['machine']['loadavg_at_start'])}, at end "
        f"{' '.join(report['machine'].get('loadavg_at_end', []))}",
        f"- command: `{report['command']}`",
        f"- code: commit {report['code']['commit']}"
        + (
            f", with uncommitted changes in {', '.join(report['code']['uncommitted'])}"
            if report["code"]["uncommitted"]
            else ""
        ),
        f"- load generator: {report['generator']['name']} "
        f"{' '.join(report['generator']['version'])}, on the same machine as the servers, "
        f"127.0.0.1 only",
        f"- {report['parameters']['users']:,} users in the read model; {clients} concurrent "
        f"clients; each figure is the median of {report['parameters']['repeat']} measurements "
        f"of {report['parameters']['duration_s']:g} s (after a "
        f"{report['parameters']['warmup_s']:g} s warm-up), scim-bridge and bare alternating; "
        f"api `scim-bridge serve --workers W --threads {report['parameters']['threads']}`; "
        f"one `scim-bridge worker --concurrency {report['parameters']['worker_concurrency']}` "
        f"(memory adapter); redis-server {report['redis']['version']} "
        f'(`--save "" --appendonly no{redis_flags}`{redis_note})',
        f"- **best configuration: workers={best}** (most targets met, then GET throughput); "
        "the verdict column judges that configuration",
        "",
        "## Targets",
        "",
        "| measure | target | " + " | ".join(f"workers={w}" for w in configs) + " | verdict |",
        "| --- | --- | " + " | ".join("---:" for _ in configs) + " | --- |",
    ]
    for key, target in TARGETS.items():
        label = target["label"].replace("N clients", f"{clients} clients")
        cells = []
        for w in configs:
            value = report["figures"][w][key]
            cells.append(f"{fmt(value)} {'✅' if passes(key, value) else '❌'}")
        verdict = "pass" if passes(key, report["figures"][best][key]) else "**FAIL**"
        lines.append(
            f"| {label} | {target['op'].replace('>=', '≥').replace('<=', '≤')} "
            f"{fmt(target['value'])} | " + " | ".join(cells) + f" | {verdict} |"
        )
    lines += [
        "",
        "Redis memory and worker RSS are shared by both columns where they do not depend on "
        "the api configuration (Redis memory is measured once, after loading).",
        "",
        "## scim-bridge against the bare Falcon app (same run, same gunicorn settings)",
        "",
        "The bare app (bench/bare_app.py) does only the Redis reads each request needs and "
        "returns the stored bytes; ratio = scim-bridge requests/s ÷ bare requests/s.",
        "",
        "| scenario | workers | scim-bridge req/s, median (min-max) | p50 / p99 ms "
        "| bare req/s, median (min-max) | p50 / p99 ms | ratio, median (each pair) "
        "| CPU cores: api / bare / redis / generator / other users of the host |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for w, config in configs.items():
        for scenario in (
            "get_by_id",
            "filter_userName",
            "page_50001",
            "v1_get_by_id",
            "v1_filter_userName",
            "v1_page_50001",
        ):
            s, b = config[scenario]["scim"], config[scenario]["bare"]
            cpu_s, cpu_b = s["cpu_cores"], b["cpu_cores"]
            lines.append(
                f"| {scenario} | {w} | {fmt(s['rps'])} ({fmt(s['rps_min'])}-{fmt(s['rps_max'])}) "
                f"| {fmt(s['p50_ms'])} / {fmt(s['p99_ms'])} "
                f"| {fmt(b['rps'])} ({fmt(b['rps_min'])}-{fmt(b['rps_max'])}) "
                f"| {fmt(b['p50_ms'])} / {fmt(b['p99_ms'])} "
                f"| {config[scenario]['ratio_rps']:.2f} "
                f"({', '.join(f'{r:.2f}' for r in config[scenario]['ratios'])}) | "
                f"{cpu_s['api']} / {cpu_b['bare']} / {cpu_s['redis']}, {cpu_b['redis']} / "
                f"{cpu_s['generator']}, {cpu_b['generator']} / "
                f"{cpu_s['others']}, {cpu_b['others']} |"
            )
    lines += [
        "",
        "Latencies are medians over the runs of each run's percentile. "
        "CPU: cores used by each process tree while scim-bridge (api) or the bare app ran "
        "(the median run); "
        "where two figures are given, the first is during the scim-bridge run, the second "
        'during the bare run. "Other users" is the machine\'s busy time (/proc/stat) not '
        "accounted for by the processes of this benchmark: the host is shared.",
        "",
        "## Creates (POST /Users, memory adapter, confirmed by the worker inside the request)",
        "",
        "| workers | clients | creates/s, median (min-max) | p50 ms | p90 ms | p99 ms | max ms "
        "| statuses | answered within the confirm wait | created | applied "
        "| confirmed in request "
        "| CPU api / worker / redis / others |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: "
        "| --- |",
    ]
    for w, config in configs.items():
        for name, n in (("post_1_client", 1), (f"post_{clients}_clients", clients)):
            p = config[name]
            c = p["confirmation"]
            cpu = p["cpu_cores"]
            slower = p.get("slower_than_confirm_wait")
            within = "?" if slower is None else f"{p['requests'] - slower:,} of {p['requests']:,}"
            lines.append(
                f"| {w} | {n} | {fmt(p['rps'])} ({fmt(p['rps_min'])}-{fmt(p['rps_max'])}) "
                f"| {fmt(p['p50_ms'])} | {fmt(p['p90_ms'])} | "
                f"{fmt(p['p99_ms'])} | {fmt(p['max_ms'])} | "
                f"{', '.join(f'{k}: {v}' for k, v in sorted(p.get('statuses', {}).items()))} | "
                f"{within} | {c['created']:,} | {c['applied']:,} | {c['confirmed_in_request']:,} "
                f"({c['confirmed_pct']}%) | {cpu['api']} / {cpu['worker']} / {cpu['redis']} / "
                f"{cpu['others']} |"
            )
    r = report["redis"]
    lines += [
        "",
        "A create counts as confirmed inside its request when the user's sync state "
        "(`sb:u:r:{id}` field `st`) is `applied` and the outcome the worker pushed for it was "
        "consumed by the waiting request (no `sb:out:u:{id}:1` list left behind). "
        f"Confirm wait: {report['parameters']['confirm_wait_s']:g} s.",
        "",
        "## Memory",
        "",
        f"- Redis used_memory: {r['used_memory_before']:,} B before, {r['used_memory_after']:,} B "
        f"after loading {report['parameters']['users']:,} users: **{r['bytes_per_user']:,} B "
        f"per user** ({r['keys_after']:,} keys; stored document {r['doc_bytes_sample']} B)",
        f"- loading took {r['load_s']:.1f} s ({r['load_rate']:,.0f} users/s)",
    ]
    for w, config in configs.items():
        seen = config.get("api_worker_rss_max_seen_mib", {})
        lines.append(
            f"- workers={w}: api worker VmRSS (MiB) after the load: "
            + ", ".join(f"{v}" for v in config["api_worker_rss_mib"].values())
            + f"; master {config['api_master_rss_mib']}; largest seen after any measurement "
            f"{max(seen.values(), default=0.0)} over {len(seen)} worker processes"
            + (
                " (gunicorn recycled workers during the run: max_requests)"
                if len(seen) > int(w)
                else ""
            )
        )
    lines += ["", "Raw figures: bench/results-core.json.", ""]
    if report.get("notes"):
        lines += ["## Notes", ""] + [f"- {n}" for n in report["notes"]] + [""]
    path.write_text("\n".join(lines))
