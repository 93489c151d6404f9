"""The report of bench/bench_metrics.py: RESULTS-metrics.md from the run's figures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

READ_TARGET = 0.95
"""Each read path keeps at least this share of its requests/s (and CPU per request) with metrics."""


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
