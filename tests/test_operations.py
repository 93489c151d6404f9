"""What protects the legacy application and what operators see."""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import threading
import time
import uuid

import falcon.testing

from scim_bridge.adapters.errors import TransientError
from scim_bridge.adapters.port import Deadline
from scim_bridge.api.app import create_app
from scim_bridge.cli.main import main
from scim_bridge.cli.processes import wait_until
from scim_bridge.store import Field, Kind
from scim_bridge.workers.guard import CircuitOpen, LegacyGuard
from tests.support import TOKEN, make_settings
from tests.test_users import user_body

USERS = "/scim/v2/Users"


def guard_for(store, **options) -> LegacyGuard:
    values = {"max_concurrency": 3, "failure_threshold": 3, "open_s": 0.5}
    values.update(options)
    return LegacyGuard(store, **values)


def test_the_global_cap_holds_across_guards_sharing_redis(store, legacy):
    guards = [guard_for(store) for _ in range(4)]  # four worker processes
    running, peak, lock = 0, 0, threading.Lock()

    def legacy_call():
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.05)
        with lock:
            running -= 1

    def work(i: int) -> None:
        guards[i % 4].call("update_user", Deadline.after(10), legacy_call)

    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        list(pool.map(work, range(36)))
    assert peak == 3
    assert guards[0].in_flight() == 0


def test_a_dead_holders_slot_frees_when_its_lease_expires(store, legacy):
    guard = guard_for(store, max_concurrency=1)
    store.take_slot("dead-worker", 1, 0.3)  # never released
    started = time.monotonic()
    guard.call("update_user", Deadline.after(5), lambda: None)
    assert 0.2 < time.monotonic() - started < 2


def test_the_breaker_opens_fails_fast_probes_and_closes(store, legacy):
    guard = guard_for(store)

    def failing():
        raise TransientError("connection refused")

    for _ in range(3):
        with contextlib.suppress(TransientError):
            guard.call("create_user", Deadline.after(5), failing)
    assert guard.breaker().state == "open"
    calls = []
    try:
        guard.call("create_user", Deadline.after(5), lambda: calls.append(1))
        raise AssertionError("the breaker let a call through while open")
    except CircuitOpen as exc:
        assert exc.retry_in_s <= 0.5
    assert calls == []
    time.sleep(0.6)
    guard.call("create_user", Deadline.after(5), lambda: calls.append(1))  # the probe
    assert calls == [1] and guard.breaker().state == "closed"


def test_backpressure_refuses_writes_with_503_and_keeps_reads(settings, store, legacy, publisher):
    tight = make_settings(
        settings.redis_url, settings.password_key.get_secret_value(), max_backlog=2
    )
    client = falcon.testing.TestClient(
        create_app(tight, store=store, publish=lambda k, r: None), headers={"Authorization": TOKEN}
    )
    quick = make_settings(
        settings.redis_url, settings.password_key.get_secret_value(), confirm_wait_s=0.0
    )
    accepted = falcon.testing.TestClient(
        create_app(quick, store=store, publish=lambda k, r: None), headers={"Authorization": TOKEN}
    )
    ids = [
        accepted.simulate_post(USERS, json=user_body(f"p{i}@example.com")).json["id"]
        for i in range(2)
    ]
    refused = client.simulate_post(USERS, json=user_body("over@example.com"))
    assert refused.status_code == 503
    assert int(refused.headers["Retry-After"]) >= 1
    assert "not accepted" in refused.json["detail"]
    assert store.find_unique(Kind.USER, "userName", "over@example.com") is None
    assert client.simulate_get(f"{USERS}/{ids[0]}").status_code == 200
    assert (
        client.simulate_put(
            f"{USERS}/{ids[0]}", json=user_body("p0@example.com", active=False)
        ).status_code
        == 503
    )


def test_concurrent_writers_get_exactly_the_backlog_limit_accepted(settings, store, legacy):
    limit = 20
    tight = make_settings(
        settings.redis_url,
        settings.password_key.get_secret_value(),
        max_backlog=limit,
        confirm_wait_s=0.0,
    )
    app = create_app(tight, store=store, publish=lambda k, r: None)
    start = threading.Barrier(16)

    def writer(n: int) -> list[int]:
        client = falcon.testing.TestClient(app, headers={"Authorization": TOKEN})
        start.wait()
        return [
            client.simulate_post(USERS, json=user_body(f"w{n}-{i}@example.com")).status_code
            for i in range(5)
        ]

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        statuses = [s for batch in pool.map(writer, range(16)) for s in batch]
    assert statuses.count(201) == limit, statuses
    assert statuses.count(503) == len(statuses) - limit, statuses
    assert store.backlog() == limit
    assert store.count(Kind.USER) == limit


def test_redis_unreachable_gives_a_503_scim_error_within_a_second(settings, legacy):
    from scim_bridge.cli.processes import free_port

    dead = make_settings(
        f"redis://127.0.0.1:{free_port()}/0", settings.password_key.get_secret_value()
    )
    from scim_bridge.workers.runtime import Runtime

    runtime = Runtime(dead)
    client = falcon.testing.TestClient(
        create_app(dead, store=runtime.store, publish=lambda k, r: None),
        headers={"Authorization": TOKEN},
    )
    for method, path, body in (
        ("GET", f"{USERS}/{uuid.uuid4()}", None),
        ("GET", USERS, None),
        ("POST", USERS, user_body()),
    ):
        started = time.monotonic()
        response = client.simulate_request(method, path, json=body)
        assert response.status_code == 503, response.text
        assert response.json["status"] == "503"
        assert time.monotonic() - started < 1.0
    ready = client.simulate_get("/readyz")
    assert ready.status_code == 503


def test_status_and_the_dead_letter_store(client, legacy, store, capsys, settings, monkeypatch):
    for name, value in {
        "SCIM_BRIDGE_REDIS_URL": settings.redis_url,
        "SCIM_BRIDGE_AUTH_HEADER_VALUE": TOKEN,
        "SCIM_BRIDGE_PASSWORD_KEY": settings.password_key.get_secret_value(),
        "SCIM_BRIDGE_ADAPTER": "memory",
    }.items():
        monkeypatch.setenv(name, value)
    legacy.adapter.refuse["refused@example.com"] = "no such department"
    assert client.simulate_post(USERS, json=user_body("refused@example.com")).status_code == 400
    main(["status", "--json"])
    current = json.loads(capsys.readouterr().out)
    assert current["dead_letters"] == 1 and current["backlog"] == 0
    assert current["circuit"]["state"] == "closed" and current["workers"]
    main(["status"])
    assert "dead letters" in capsys.readouterr().out
    main(["dlq", "list", "--json"])
    entries = json.loads(capsys.readouterr().out)
    ((member, entry),) = entries.items()
    assert entry["error"] == "no such department" and entry["operation"] == "create"
    # The operator fixes the cause, then retries: the user is created.
    legacy.adapter.refuse.clear()
    main(["dlq", "retry", member])
    wait_until(lambda: legacy.adapter.users)
    wait_until(lambda: store.backlog() == 0)
    assert store.dead_letters() == {}
    # A refused update, dropped: the read model keeps the applied state.
    rid = member.split(":", 1)[1]
    legacy.adapter.refuse["refused@example.com"] = "title too long"
    response = client.simulate_put(
        f"{USERS}/{rid}", json=user_body("refused@example.com", title="x" * 50)
    )
    assert response.status_code == 400
    main(["dlq", "drop", member, "--reason", "title not supported"])
    assert store.dead_letters() == {}
    assert "title" not in client.simulate_get(f"{USERS}/{rid}").json
    dropped = json.loads(store.redis.lindex(store.keys.dropped, -1))
    assert dropped["reason"] == "title not supported"


def test_a_poison_change_is_dead_lettered_instead_of_looping(client, legacy, store):
    rid = client.simulate_post(USERS, json=user_body("poison@example.com")).json["id"]
    wait_until(lambda: store.backlog() == 0)
    # The create's task releases its lock (and resets the starts) just after it settles.
    wait_until(lambda: store.redis.get(store.keys.lock(Kind.USER, rid)) is None)
    # Each earlier start of this change killed its worker before it finished.
    for _ in range(5):
        store.redis.hincrby(store.keys.resource(Kind.USER, rid), Field.STARTS, 1)
    response = client.simulate_put(
        f"{USERS}/{rid}", json=user_body("poison@example.com", displayName="boom")
    )
    assert response.status_code == 400
    assert "poison" in response.json["detail"]
    assert "poison" in store.dead_letters()[f"u:{rid}"]["error"]


def test_metrics_show_the_queue_figures(client, legacy):
    response = client.simulate_get("/metrics")
    assert response.status_code == 200
    for name in (
        "scim_bridge_backlog",
        "scim_bridge_oldest_pending_age_seconds",
        "scim_bridge_dead_letters",
        "scim_bridge_queue_length",
        "scim_bridge_worker_capacity",
        'scim_bridge_circuit_state{state="closed"} 1.0',
        "scim_bridge_legacy_calls_in_flight",
    ):
        assert name in response.text
