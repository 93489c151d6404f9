"""The metrics benchmark's instruction counts: an api worker under callgrind, with and without
metrics, a ratio the machine's load does not move (bench/bench_metrics.py runs it)."""

from __future__ import annotations

import argparse
import http.client
import sys
import time
from pathlib import Path
from typing import Any

from core.processes import HOST, Processes, cli, wait_http

from scim_bridge.cli.processes import free_port


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
    connection = http.client.HTTPConnection(HOST, port, timeout=600)
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
    procs: Processes,
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
            port = free_port()
            prefix = work / f"callgrind-{scenario}-{label}"
            config = work / f"gunicorn-callgrind-{scenario}-{label}.py"
            config.write_text(
                CALLGRIND_CONFIG.format(warmup=warmup, last=warmup + args.instructions)
            )
            process = procs.start(
                f"api-callgrind-{scenario}-{label}",
                [
                    "valgrind", "--tool=callgrind", "--dump-before=sched_yield",
                    f"--callgrind-out-file={prefix}.%p", sys.executable, cli(), "serve",
                    "--host", HOST, "--port", str(port), "--workers", "1",
                    "--threads", "4", "--config", str(config),
                ],
                env=env | {"SCIM_BRIDGE_HTTP_METRICS": flag, "PYTHONHASHSEED": "0"},
            )  # fmt: skip
            wait_http(port, "/healthz", process, 900)
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
