"""Logs as an operator collects them: ``scim-bridge serve``, ``worker`` and ``beat`` write one
JSON object per line, and one correlation id follows a change from the request to the legacy
call."""

from __future__ import annotations

import io
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import falcon.testing
import httpx
import pytest

from scim_bridge.api.app import create_app
from scim_bridge.cli.processes import (
    free_port,
    serve_command,
    start_in_session,
    stop_group,
    wait_until,
)
from scim_bridge.store import Kind
from scim_bridge.workers import logs
from scim_bridge.workers.runtime import Runtime
from scim_bridge.workers.settings import Settings
from tests.support import TOKEN, make_settings
from tests.test_users import user_body

ROOT = Path(__file__).resolve().parent.parent
SECRET = "Pa55-kept-out-of-logs-QZX"


class Stack:
    """A Redis database of its own, and the processes started on it, each with its log file."""

    def __init__(self, settings: Settings, directory: Path, **overrides: str) -> None:
        # Database 2 of the test Redis: a broker and read model away from the session's worker.
        self.url = settings.redis_url.rsplit("/", 1)[0] + "/2"
        key = settings.password_key.get_secret_value()
        self.settings = make_settings(self.url, key, **overrides)
        self.runtime = Runtime(self.settings)
        self.runtime.store.redis.flushdb()
        self.directory = directory
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("SCIM_BRIDGE_")},
            "PYTHONPATH": str(ROOT),
            "SCIM_BRIDGE_REDIS_URL": self.url,
            "SCIM_BRIDGE_AUTH_HEADER_VALUE": TOKEN,
            "SCIM_BRIDGE_PASSWORD_KEY": key,
            "SCIM_BRIDGE_ADAPTER": "memory",
            "SCIM_BRIDGE_WORKER_METRICS_PORT": "0",
            "SCIM_BRIDGE_CONFIRM_WAIT_S": "5",
            **{f"SCIM_BRIDGE_{name.upper()}": value for name, value in overrides.items()},
        }
        self.started: list[tuple[str, object]] = []

    def start(self, name: str, argv: list[str]) -> Path:
        log = self.directory / f"{name}.log"
        self.started.append((name, start_in_session(argv, log, self.env, ROOT)))
        return log

    def cli(self, name: str, *args: str) -> Path:
        return self.start(name, [sys.executable, "-m", "scim_bridge.cli", *args])

    def stop(self) -> None:
        for _, process in reversed(self.started):
            stop_group(process, grace_s=30, whole_group=False)  # type: ignore[arg-type]
        self.runtime.store.redis.flushdb()


@pytest.fixture
def stacks(settings: Settings, tmp_path: Path) -> Iterator[Callable[..., Stack]]:
    made: list[Stack] = []

    def make(**overrides: str) -> Stack:
        made.append(Stack(settings, tmp_path, **overrides))
        return made[-1]

    yield make
    for stack in made:
        stack.stop()


def _lines(log: Path) -> list[dict[str, object]]:
    """Every line of ``log`` as JSON (a line that is not fails the test, with the line)."""
    parsed = []
    for number, line in enumerate(log.read_text().splitlines(), 1):
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            raise AssertionError(f"{log.name}:{number} is not JSON: {line!r}") from None
        assert isinstance(entry, dict), line
        assert {"time", "level", "logger", "message", "process"} <= entry.keys(), line
        assert str(entry["time"]).endswith("Z"), line  # ISO 8601, UTC
        parsed.append(entry)
    return parsed


def test_a_change_is_traced_by_its_request_id_through_api_worker_and_legacy_call(stacks):
    # DEBUG: every line there is, Celery's and gunicorn's chatter included, must be JSON.
    stack = stacks(log_level="DEBUG")
    worker_log = stack.cli("worker", "worker", "--concurrency", "1")
    port = free_port()
    api_log = stack.start("api", serve_command(port, workers=1, threads=4))
    wait_until(lambda: stack.runtime.store.live_workers(), timeout=60)
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(up, timeout=30, interval=0.1)
    headers = {"Authorization": TOKEN, "X-Request-ID": "abc-123"}
    with httpx.Client(base_url=base, timeout=15) as http:
        created = http.post(
            "/scim/v2/Users", json=user_body("traced@example.com", password=SECRET), headers=headers
        )
        assert created.status_code == 201, created.text
        assert created.headers["X-Request-ID"] == "abc-123"
        assert created.headers.get("X-SCIM-Bridge-Sync") is None  # the legacy call answered
        # An id the api cannot trust (too long, or with a space) is replaced by one it mints.
        for offered in ("x" * 200, "a b", ""):
            answered = http.get(
                "/scim/v2/Users", headers={"Authorization": TOKEN, "X-Request-ID": offered}
            )
            assert answered.headers["X-Request-ID"] not in (offered, "abc-123")
            assert len(answered.headers["X-Request-ID"]) == 32
        refused = http.get("/scim/v2/Users", headers={"X-Request-ID": "refused-1"})
        assert refused.status_code == 401 and refused.headers["X-Request-ID"] == "refused-1"
    rid = created.json()["id"]
    stack.stop()  # every line written and flushed, the shutdown's too

    api = _lines(api_log)
    access = [
        e for e in api if e["logger"] == "gunicorn.access" and e.get("request_id") == "abc-123"
    ]
    assert [(e["method"], e["status"]) for e in access] == [("POST", 201)], access
    assert isinstance(access[0]["duration_ms"], int)
    assert any(e["logger"] == "gunicorn.error" for e in api)  # gunicorn's own lines, in JSON too

    worker = _lines(worker_log)
    traced = [e for e in worker if e.get("request_id") == "abc-123"]
    by_logger = {e["logger"]: e for e in traced}
    assert {
        "celery.worker.strategy",
        "celery.app.trace",
        "scim_bridge.legacy",
    } <= by_logger.keys(), traced
    call = by_logger["scim_bridge.legacy"]
    assert call["operation"] == "create_user" and call["outcome"] == "ok", call
    assert isinstance(call["duration_s"], float) and call["duration_s"] >= 0
    assert call["resource"] == f"u:{rid}"
    assert "succeeded" in str(by_logger["celery.app.trace"]["message"])
    for log in (api_log, worker_log):
        assert SECRET not in log.read_text()


def test_the_sweeper_is_quiet_until_it_publishes_a_lost_change_again_under_its_request_id(stacks):
    stack = stacks(sweep_interval_s="0.2", confirm_wait_s="0")
    # The worker at DEBUG shows that Celery's lines about each sweep are there, demoted.
    worker_log = stack.cli("worker", "worker", "--concurrency", "1", "--loglevel", "DEBUG")
    beat_log = stack.cli("beat", "beat", "--schedule", str(stack.directory / "celerybeat-schedule"))

    def sweeps() -> int:
        return worker_log.read_text().count("Task scim_bridge.sweep[")

    wait_until(lambda: sweeps() >= 10, timeout=60, interval=0.1)
    # A change whose task was lost (never published) an hour ago: only the sweeper can find it.
    app = create_app(stack.settings, store=stack.runtime.store, publish=lambda kind, rid: None)
    client = falcon.testing.TestClient(app, headers={"Authorization": TOKEN})
    created = client.simulate_post(
        "/scim/v2/Users", json=user_body("lost@example.com"), headers={"X-Request-ID": "lost-7"}
    )
    assert created.status_code == 201 and created.headers["X-Request-ID"] == "lost-7"
    stack.runtime.store.touch_dirty(Kind.USER, created.json["id"], time.time() - 3600)
    wait_until(lambda: stack.runtime.store.backlog() == 0, timeout=60, interval=0.1)
    stack.stop()

    beat, worker = _lines(beat_log), _lines(worker_log)
    assert not [e for e in beat if "scim_bridge.sweep" in str(e["message"])], beat
    sweeps_logged = [e for e in worker if "scim_bridge.sweep" in str(e["message"])]
    assert {e["level"] for e in sweeps_logged} == {"DEBUG"}, sweeps_logged
    # What the sweeper did, once, and nothing for the sweeps that found nothing.
    loud = [e for e in worker if e["logger"] == "scim_bridge.tasks"]
    assert [(e["level"], e["message"]) for e in loud] == [
        ("WARNING", "re-published 1 dirty resources whose task was lost")
    ], loud
    traced = {e["logger"] for e in worker if e.get("request_id") == "lost-7"}
    assert {"celery.worker.strategy", "scim_bridge.legacy", "celery.app.trace"} <= traced, worker


def test_text_lines_escape_what_a_client_sent_and_json_lines_hold_it_whole():
    forged = "/scim/v2/Users/x\n2026-01-01T00:00:00.000Z INFO scim_bridge.api forged line"
    record = logging.LogRecord(
        "scim_bridge.api",
        logging.ERROR,
        __file__,
        1,
        "Redis unavailable during %s %s",
        ("GET", forged),
        None,
    )
    with logs.bound(request_id="r-1"):
        logs.ContextFilter().filter(record)
    text = logs.TextFormatter().format(record)
    assert "\n" not in text and "[r-1]" in text
    assert "x\\n2026-01-01T00:00:00.000Z INFO" in text
    line = logs.JsonFormatter().format(record)
    assert "\n" not in line
    assert json.loads(line)["message"] == f"Redis unavailable during GET {forged}"
    assert json.loads(line)["request_id"] == "r-1"


def test_which_format_a_command_writes(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stdout", Terminal())
    assert logs.log_format(None, command="dev") == "text"
    assert [logs.log_format(None, command=c) for c in ("serve", "worker", "beat")] == ["json"] * 3
    assert logs.log_format("json", command="dev") == "json"
    monkeypatch.setattr(sys, "stdout", io.StringIO())  # dev's output collected: JSON
    assert logs.log_format(None, command="dev") == "json"
    assert logs.log_format("text", command="serve") == "text"
