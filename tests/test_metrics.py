"""Request, write, reconcile and legacy-call metrics: what each counts, and summing across processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest
import redis

from scim_bridge.adapters.errors import ConflictError, PermanentError, TransientError
from scim_bridge.adapters.port import Deadline
from scim_bridge.api.http_metrics import dialect_label, write_result
from scim_bridge.store import Store
from scim_bridge.workers.flower import flower_argv
from scim_bridge.workers.guard import CircuitOpen, LegacyBusy, LegacyGuard
from scim_bridge.workers.metrics import (
    MULTIPROC_ENV,
    command_directory,
    exposition_collectors,
    metrics,
    prepare_directory,
    show_worker_series,
)
from scim_bridge.workers.metrics_endpoint import WorkerMetricsServer
from scim_bridge.workers.reconciler import RetryLater
from scim_bridge.workers.tasks import retry_cause
from tests.support import free_port, make_settings, wait_until
from tests.test_users import user_body

USERS = "/scim/v2/Users"


def value(name: str, **labels: str) -> float:
    return metrics().registry.get_sample_value(name, labels) or 0.0


def test_requests_are_counted_by_route_template_never_by_id(client, legacy):
    rid = client.simulate_post(USERS, json=user_body()).json["id"]
    labels = {"method": "GET", "route": "/scim/v2/Users/{rid}", "status": "200", "dialect": "2.0"}
    before = value("scim_bridge_http_requests_total", **labels)
    assert client.simulate_get(f"{USERS}/{rid}").status_code == 200
    assert value("scim_bridge_http_requests_total", **labels) == before + 1
    assert value("scim_bridge_http_request_duration_seconds_count", **labels) >= before + 1
    page = client.simulate_get("/metrics").text
    assert rid not in page and "jane@example.com" not in page


def test_an_unauthenticated_or_unknown_request_is_unrouted(client, legacy):
    labels = {"method": "GET", "route": "unrouted", "status": "401", "dialect": "none"}
    before = value("scim_bridge_http_requests_total", **labels)
    assert client.simulate_get(USERS, headers={"Authorization": "Bearer nope"}).status_code == 401
    assert value("scim_bridge_http_requests_total", **labels) == before + 1


def test_a_write_the_legacy_application_applied_in_time_is_confirmed(client, legacy):
    before = value("scim_bridge_writes_total", kind="User", op="create", result="confirmed")
    created = client.simulate_post(USERS, json=user_body())
    assert created.status_code == 201 and "X-SCIM-Bridge-Sync" not in created.headers
    assert value("scim_bridge_writes_total", kind="User", op="create", result="confirmed") == (
        before + 1
    )


def test_an_asynchronous_write_and_an_unconfirmed_delete_are_pending(client, legacy):
    rid = client.simulate_post(USERS, json=user_body()).json["id"]
    labels = {"kind": "User", "op": "delete", "result": "pending"}
    before = value("scim_bridge_writes_total", **labels)
    gone = client.simulate_delete(f"{USERS}/{rid}", headers={"Prefer": "respond-async"})
    assert gone.status_code == 202
    assert gone.headers["X-SCIM-Bridge-Sync"] == "pending"
    assert value("scim_bridge_writes_total", **labels) == before + 1


def test_a_write_the_legacy_application_refused_is_refused_and_dead_lettered(client, legacy):
    legacy.adapter.refuse["refused@example.com"] = "department 'Testing' is closed"
    writes = {"kind": "User", "op": "create", "result": "refused"}
    before = value("scim_bridge_writes_total", **writes)
    dead_before = value("scim_bridge_dead_lettered_total", kind="User")
    calls_before = value(
        "scim_bridge_legacy_call_duration_seconds_count",
        operation="create_user",
        outcome="permanent",
    )
    refused = client.simulate_post(USERS, json=user_body("refused@example.com"))
    assert refused.status_code == 400
    assert refused.headers["X-SCIM-Bridge-Sync"] == "failed"
    assert value("scim_bridge_writes_total", **writes) == before + 1
    # The worker of the test session runs in this process: its counters are in the same registry.
    assert value("scim_bridge_dead_lettered_total", kind="User") == dead_before + 1
    assert (
        value(
            "scim_bridge_legacy_call_duration_seconds_count",
            operation="create_user",
            outcome="permanent",
        )
        == calls_before + 1
    )


def test_a_write_the_connector_refused_itself_is_rejected(client, legacy):
    labels = {"kind": "User", "op": "create", "result": "rejected"}
    before = value("scim_bridge_writes_total", **labels)
    bad = client.simulate_post(USERS, json={"schemas": user_body()["schemas"]})
    assert bad.status_code == 400 and "X-SCIM-Bridge-Sync" not in bad.headers
    assert value("scim_bridge_writes_total", **labels) == before + 1


def test_write_results_and_dialects_from_the_answer():
    assert write_result(201, None) == "confirmed"
    assert write_result(200, "pending") == "pending"
    assert write_result(202, None) == "pending"
    assert write_result(409, "failed") == "refused"
    assert write_result(409, None) == "rejected"
    assert write_result(503, None) == "rejected"
    assert dialect_label("/scim/v2/Users/{rid}") == "2.0"
    assert dialect_label("/scim/Users") == "1.1"
    assert dialect_label("/scim/v1/Groups") == "1.1"
    assert dialect_label("/metrics") == "none"


def _guard(redis_server, **overrides) -> LegacyGuard:
    client = redis.Redis.from_url(redis_server.url)
    prefix = f"metrics-{os.getpid()}-{free_port()}"
    options = {"max_concurrency": 0, "failure_threshold": 2, "open_s": 0.2}
    options.update(overrides)
    return LegacyGuard(Store(client, prefix), **options)


def test_legacy_calls_are_timed_by_operation_and_outcome(redis_server):
    guard = _guard(redis_server, failure_threshold=100)

    def count(outcome: str) -> float:
        return value(
            "scim_bridge_legacy_call_duration_seconds_count",
            operation="update_user",
            outcome=outcome,
        )

    before = {o: count(o) for o in ("ok", "transient", "timeout", "permanent", "conflict")}
    guard.call("update_user", Deadline.after(5), lambda: None)

    def fail(error: Exception) -> None:
        raise error

    for error in (TransientError("503"), PermanentError("no"), ConflictError("taken")):
        with pytest.raises(type(error)):
            guard.call("update_user", Deadline.after(5), lambda error=error: fail(error))

    def times_out(deadline: Deadline) -> None:
        time.sleep(deadline.remaining())  # what a client with the deadline as timeout does
        raise TransientError("no answer in time")

    short = Deadline.after(0.05)
    with pytest.raises(TransientError):
        guard.call("update_user", short, lambda: times_out(short))
    assert {o: count(o) - before[o] for o in before} == {
        "ok": 1,
        "transient": 1,
        "timeout": 1,
        "permanent": 1,
        "conflict": 1,
    }


def test_breaker_transitions_are_counted_once_each(redis_server):
    guard = _guard(redis_server)

    def entered(state: str) -> float:
        return value("scim_bridge_breaker_transitions_total", to=state)

    before = {s: entered(s) for s in ("open", "half_open", "closed")}

    def broken() -> None:
        raise TransientError("refused connection")

    for _ in range(2):
        with pytest.raises(TransientError):
            guard.call("create_user", Deadline.after(5), broken)
    with pytest.raises(CircuitOpen):  # failing fast is not a transition
        guard.call("create_user", Deadline.after(5), broken)
    wait_until(lambda: guard.breaker().opened_at is not None)
    time.sleep(0.25)  # the breaker's open period, so the next call is the probe
    guard.call("create_user", Deadline.after(5), lambda: None)
    assert {s: entered(s) - before[s] for s in before} == {"open": 1, "half_open": 1, "closed": 1}


def test_retries_say_whether_the_legacy_application_was_tried():
    def cause(error: Exception) -> str:
        try:
            raise RetryLater("later") from error
        except RetryLater as exc:
            return retry_cause(exc)

    assert cause(TransientError("503")) == "transient"
    assert cause(CircuitOpen("open", 3.0)) == "circuit_open"
    assert cause(LegacyBusy("cap")) == "busy"


_RECORD = textwrap.dedent(
    """
    from scim_bridge.workers.metrics import metrics
    for _ in range(5):
        metrics().writes.labels("User", "create", "confirmed").inc()
    metrics().legacy_call_duration.labels("create_user", "ok").observe(0.2)
    """
)


def test_counts_of_processes_that_exited_stay_in_the_sum(tmp_path, monkeypatch):
    directory = tmp_path / "metrics"
    monkeypatch.setenv(MULTIPROC_ENV, str(directory))  # first: monkeypatch restores what it saw
    prepare_directory(directory)
    # Two processes record and exit, as recycled gunicorn workers or pool processes do.
    for _ in range(2):
        env = {**os.environ, MULTIPROC_ENV: str(directory)}
        subprocess.run([sys.executable, "-c", _RECORD], env=env, check=True, cwd=Path.cwd())
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for collector in exposition_collectors()
        for family in collector.collect()
        for sample in family.samples
    }
    writes = (("kind", "User"), ("op", "create"), ("result", "confirmed"))
    assert samples[("scim_bridge_writes_total", writes)] == 10
    calls = (("operation", "create_user"), ("outcome", "ok"))
    assert samples[("scim_bridge_legacy_call_duration_seconds_count", calls)] == 2


def test_a_command_starts_from_an_empty_directory(tmp_path, monkeypatch):
    directory = tmp_path / "given"
    directory.mkdir()
    (directory / "counter_4242.db").write_bytes(b"left by an earlier run")
    monkeypatch.setenv(MULTIPROC_ENV, str(directory))
    assert command_directory("worker") == directory
    assert list(directory.iterdir()) == []


def test_a_command_without_a_directory_gets_its_own(monkeypatch):
    # Empty means unset, and monkeypatch puts back what the variable was before the test.
    monkeypatch.setenv(MULTIPROC_ENV, "")
    first = command_directory("api")
    monkeypatch.setenv(MULTIPROC_ENV, "")
    second = command_directory("api")
    assert first != second and first.is_dir() and second.is_dir()
    assert os.environ[MULTIPROC_ENV] == str(second)


def test_the_worker_endpoint_serves_its_counters_from_the_first_scrape():
    show_worker_series(["User", "Group"])
    server = WorkerMetricsServer(free_port(), host="127.0.0.1")
    try:
        page = httpx.get(f"http://127.0.0.1:{server.port}/metrics", timeout=5).text
    finally:
        server.close()
    assert 'scim_bridge_retries_total{cause="circuit_open",kind="Group"}' in page
    assert 'scim_bridge_dead_lettered_total{kind="User"}' in page
    assert 'scim_bridge_breaker_transitions_total{to="open"}' in page


def test_flower_asks_for_task_events_only_when_told(redis_server, password_key):
    quiet = make_settings(redis_server.url, password_key)
    assert "--enable_events=False" in flower_argv(
        quiet, port=5555, address="127.0.0.1", task_events=False
    )
    assert "--enable_events=True" in flower_argv(
        quiet, port=5555, address="127.0.0.1", task_events=True
    )
    told = make_settings(redis_server.url, password_key, task_events=True)
    argv = flower_argv(told, port=6000, address="0.0.0.0", task_events=False, extra=["--x=1"])
    assert argv[0] == "flower" and "--enable_events=True" in argv and argv[-1] == "--x=1"
    assert "--port=6000" in argv and "--address=0.0.0.0" in argv


def test_scim_bridge_flower_serves_flower_on_the_configured_redis(redis_server, tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCIM_BRIDGE_")}
    env["SCIM_BRIDGE_REDIS_URL"] = redis_server.url
    env["SCIM_BRIDGE_AUTH_HEADER_VALUE"] = "Bearer flower-test"  # the settings must be valid
    log = tmp_path / "flower.log"
    flower = subprocess.Popen(
        [sys.executable, "-m", "scim_bridge.cli", "flower", "--port", str(port)],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:

        def healthy() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthcheck", timeout=2).text == "OK"
            except httpx.HTTPError:
                return False

        try:
            wait_until(healthy, timeout=60, interval=0.2)
        except AssertionError:
            raise AssertionError(log.read_text()) from None
        # Its own Prometheus metrics, for those who scrape Flower too.
        assert "flower_" in httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    finally:
        flower.send_signal(signal.SIGTERM)
        flower.wait(30)


def test_a_worker_whose_metrics_port_is_taken_says_so_and_stops(redis_server):
    import socket

    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("SCIM_BRIDGE_")}
        env |= {
            "SCIM_BRIDGE_REDIS_URL": redis_server.url,
            "SCIM_BRIDGE_AUTH_HEADER_VALUE": "Bearer t",
            "SCIM_BRIDGE_ACCEPT_PASSWORDS": "false",
            "SCIM_BRIDGE_WORKER_METRICS_PORT": str(port),
        }
        done = subprocess.run(
            [sys.executable, "-m", "scim_bridge.cli", "worker"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 2
    assert f"cannot serve worker metrics on port {port}" in done.stderr
    assert "SCIM_BRIDGE_WORKER_METRICS_PORT" in done.stderr
