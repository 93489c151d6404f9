"""The dashboard and the alerts, proven against a real Prometheus scraping a running connector.

``scim-bridge dev`` runs the whole stack (its own Redis, a worker with two pool processes, the api
under gunicorn with two workers) against a simulated legacy application that fails a share of its
calls; a real Prometheus (Debian's ``prometheus`` package, which ``scripts/test.sh`` installs when
it is missing) scrapes the api's and the worker's endpoints every second while a burst of writes
runs. Then every expression of every panel of deploy/monitoring/grafana-dashboard.json and every
alert rule of deploy/monitoring/alerts.yml is evaluated through Prometheus's HTTP API: each must
parse and return data, so a renamed metric or label breaks the suite, not the on-call's night.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.support import free_port, wait_until

ROOT = Path(__file__).resolve().parent.parent
MONITORING = ROOT / "deploy" / "monitoring"
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
BURST = 60
# What Grafana substitutes into the expressions; the rate interval covers a few 1 s scrapes.
GRAFANA_VARIABLES = {
    "$api_job": "scim-bridge-api",
    "$worker_job": "scim-bridge-worker",
    "$__rate_interval": "30s",
}

pytestmark = pytest.mark.skipif(
    shutil.which("prometheus") is None,
    reason="Prometheus is not installed (scripts/test.sh installs Debian's `prometheus` package "
    "with apt-get when it can; install it by hand where it cannot)",
)


@dataclass
class Stack:
    api: str
    worker_metrics: str
    prometheus: str
    token: str
    banner: str


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    home = tmp_path_factory.mktemp("prometheus-stack")
    api_port, worker_port, prom_port = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCIM_BRIDGE_")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update(
        # dev's default adapter, on a database of this test (the memory adapter would hold one
        # legacy application per pool process).
        SCIM_BRIDGE_ADAPTER="sql",
        SCIM_BRIDGE_SQL_URL=f"sqlite:///{home / 'legacy.db'}",
        SCIM_BRIDGE_WORKER_METRICS_PORT=str(worker_port),
        # Legacy calls that fail now and then: retries, transient outcomes, breaker changes.
        SCIM_BRIDGE_SIMULATE_LATENCY_S="0.01",
        SCIM_BRIDGE_SIMULATE_ERROR_RATE="0.25",
        SCIM_BRIDGE_BREAKER_FAILURE_THRESHOLD="2",
        SCIM_BRIDGE_BREAKER_OPEN_S="1",
        SCIM_BRIDGE_RETRY_BACKOFF_BASE_S="0.05",
        SCIM_BRIDGE_RETRY_BACKOFF_MAX_S="0.5",
        SCIM_BRIDGE_CONFIRM_WAIT_S="1",
        SCIM_BRIDGE_LEGACY_MAX_CONCURRENCY="4",
        SCIM_BRIDGE_LOG_LEVEL="WARNING",
    )
    log = home / "dev.log"
    dev = subprocess.Popen(
        [sys.executable, "-m", "scim_bridge.cli", "dev", "--port", str(api_port)],
        cwd=home,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    rules = home / "alerts.yml"
    shutil.copy(MONITORING / "alerts.yml", rules)
    config = home / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(rules)],
                "scrape_configs": [
                    {
                        "job_name": "scim-bridge-api",
                        "static_configs": [{"targets": [f"127.0.0.1:{api_port}"]}],
                    },
                    {
                        "job_name": "scim-bridge-worker",
                        "static_configs": [{"targets": [f"127.0.0.1:{worker_port}"]}],
                    },
                ],
            }
        )
    )
    prometheus = subprocess.Popen(
        [
            shutil.which("prometheus") or "prometheus",
            f"--config.file={config}",
            f"--storage.tsdb.path={home / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
        ],
        stdout=(home / "prometheus.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        try:
            wait_until(lambda: "is running" in log.read_text(errors="replace"), timeout=120)
        except AssertionError:
            raise AssertionError(log.read_text(errors="replace")[-5000:]) from None
        base = f"http://127.0.0.1:{prom_port}"
        wait_until(lambda: _answers(f"{base}/-/ready"), timeout=60)
        yield Stack(
            api=f"http://127.0.0.1:{api_port}",
            worker_metrics=f"http://127.0.0.1:{worker_port}/metrics",
            prometheus=base,
            token=(home / ".scim-bridge" / "token").read_text().strip(),
            banner=log.read_text(errors="replace"),
        )
    finally:
        _stop(prometheus)
        _stop(dev)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _burst(stack: Stack) -> dict[str, int]:
    """Creates, replaces, patches, reads and a few refused writes, from concurrent clients."""
    headers = {"Authorization": f"Bearer {stack.token}", "Content-Type": "application/scim+json"}
    sent = {"create": 0, "invalid": 0}
    with httpx.Client(base_url=stack.api, headers=headers, timeout=30) as client:

        def one(n: int) -> None:
            name = f"burst-{n}-{time.monotonic_ns()}@example.com"
            made = client.post("/scim/v2/Users", json={"schemas": [USER], "userName": name})
            assert made.status_code == 201, made.text
            rid = made.json()["id"]
            client.get(f"/scim/v2/Users/{rid}").raise_for_status()
            client.get("/scim/Users", params={"filter": f'userName eq "{name}"'})
            patched = client.patch(
                f"/scim/v2/Users/{rid}",
                json={
                    "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                    "Operations": [{"op": "replace", "value": {"active": False}}],
                },
            )
            assert patched.status_code == 200, patched.text

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(one, range(BURST)))
        sent["create"] = BURST
        for _ in range(3):  # the connector refuses these itself: result="rejected"
            assert client.post("/scim/v2/Users", json={"schemas": [USER]}).status_code == 400
            sent["invalid"] += 1
    return sent


@pytest.fixture(scope="module")
def burst(stack: Stack) -> dict[str, int]:
    return _burst(stack)


def _samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    found = []
    for line in text.splitlines():
        match = re.match(rf"^{re.escape(name)}(?:\{{(.*)\}})? (\S+)$", line)
        if match:
            labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(1) or ""))
            found.append((labels, float(match.group(2))))
    return found


def test_dev_prints_both_metrics_addresses(stack: Stack) -> None:
    assert f"{stack.api}/metrics" in stack.banner
    assert stack.worker_metrics in stack.banner


def test_counts_are_summed_over_every_gunicorn_worker_and_pool_process(
    stack: Stack, burst: dict[str, int]
) -> None:
    api_text = httpx.get(f"{stack.api}/metrics", timeout=10).text
    creates = sum(
        value
        for labels, value in _samples(api_text, "scim_bridge_http_requests_total")
        if labels["route"] == "/scim/v2/Users"
        and labels["method"] == "POST"
        and labels["status"] == "201"
    )
    # Two gunicorn workers answered them: only the sum over both processes is the whole burst.
    assert creates == burst["create"]
    writes = {
        (labels["op"], labels["result"]): value
        for labels, value in _samples(api_text, "scim_bridge_writes_total")
        if labels["kind"] == "User"
    }
    assert writes[("create", "confirmed")] + writes[("create", "pending")] == burst["create"]
    assert writes[("create", "rejected")] == burst["invalid"]
    # Route templates only: no id, no userName ever becomes a label value.
    routes = {
        labels["route"] for labels, _ in _samples(api_text, "scim_bridge_http_requests_total")
    }
    assert "/scim/v2/Users/{rid}" in routes
    assert not any("burst-" in route or re.search(r"[0-9a-f]{8}-", route) for route in routes)

    def reconciled() -> float:
        text = httpx.get(stack.worker_metrics, timeout=10).text
        return sum(
            value
            for labels, value in _samples(text, "scim_bridge_legacy_call_duration_seconds_count")
            if labels["operation"] == "create_user" and labels["outcome"] == "ok"
        )

    # Every create reaches the legacy application once, through one of two pool processes.
    assert wait_until(lambda: reconciled() >= burst["create"], timeout=120)
    assert reconciled() == burst["create"]


def _query(stack: Stack, expr: str) -> dict[str, Any]:
    answer = httpx.get(f"{stack.prometheus}/api/v1/query", params={"query": expr}, timeout=10)
    body = answer.json()
    assert answer.status_code == 200 and body["status"] == "success", (expr, body)
    return body["data"]  # type: ignore[no-any-return]


def dashboard_expressions() -> list[tuple[str, str]]:
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    found = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            found.append((panel["title"], expr))
    return found


def alert_rules() -> list[tuple[str, str]]:
    groups = yaml.safe_load((MONITORING / "alerts.yml").read_text())["groups"]
    return [(rule["alert"], rule["expr"].strip()) for g in groups for rule in g["rules"]]


def _top_level_split(expr: str, separators: tuple[str, ...]) -> list[str]:
    parts, depth, start, i = [], 0, 0, 0
    while i < len(expr):
        char = expr[i]
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif depth == 0:
            for separator in separators:
                if expr.startswith(separator, i):
                    parts.append(expr[start:i])
                    start = i = i + len(separator)
                    break
            else:
                i += 1
            continue
        i += 1
    parts.append(expr[start:])
    return [p.strip() for p in parts if p.strip()]


def operands(expr: str) -> list[str]:
    """The series an alert compares: its condition with the thresholds taken off.

    An alert's condition is empty while all is well; what must return data is what it looks at.
    """
    found = []
    for part in _top_level_split(" ".join(expr.split()), (" and ", " or ", " unless ")):
        part = _top_level_split(part, (" >= ", " <= ", " == ", " != ", " > ", " < "))[0]
        absent = re.fullmatch(r"absent\((.*)\)", part)
        found.append(absent.group(1) if absent else part)
    return found


def test_operands_of_a_condition_are_what_it_compares() -> None:
    assert operands("max by (job) (deriv(x[5m])) * 60 > 0\nand\nmin(y) > 0") == [
        "max by (job) (deriv(x[5m])) * 60",
        "min(y)",
    ]
    assert operands('absent(up{job="a"})') == ['up{job="a"}']
    assert operands('histogram_quantile(0.99, sum by (le) (rate(h{r!~"a|b"}[5m]))) > 20') == [
        'histogram_quantile(0.99, sum by (le) (rate(h{r!~"a|b"}[5m])))'
    ]


def test_every_dashboard_panel_and_alert_rule_returns_data_from_prometheus(
    stack: Stack, burst: dict[str, int]
) -> None:
    expressions = dashboard_expressions()
    rules = alert_rules()
    assert len(expressions) >= 30 and len(rules) >= 10

    def scraped_both() -> bool:
        up = _query(stack, "up == 1")["result"]
        return {s["metric"]["job"] for s in up} == {"scim-bridge-api", "scim-bridge-worker"}

    wait_until(scraped_both, timeout=60)

    # Rates need a few scrapes after the burst; then every panel must show something.
    def empty_panels() -> list[tuple[str, str]]:
        return [(t, e) for t, e in expressions if not _query(stack, e)["result"]]

    try:
        wait_until(lambda: not empty_panels(), timeout=90, interval=1)
    except AssertionError:
        raise AssertionError(f"panels without data: {empty_panels()}") from None

    for name, expr in rules:
        _query(stack, expr)  # the whole condition parses and evaluates
        for operand in operands(expr):
            assert _query(stack, operand)["result"], f"{name}: no data for {operand}"

    # Prometheus itself evaluated every loaded rule without an error.
    def rule_health() -> dict[str, str]:
        answer = httpx.get(f"{stack.prometheus}/api/v1/rules", timeout=10).json()
        return {
            rule["name"]: rule["health"]
            for group in answer["data"]["groups"]
            for rule in group["rules"]
        }

    wait_until(lambda: all(h != "unknown" for h in rule_health().values()), timeout=30)
    health = rule_health()
    assert set(health) == {name for name, _ in rules}
    assert set(health.values()) == {"ok"}, health
