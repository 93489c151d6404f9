"""Redis through Sentinel, and accepted writes that wait for a replica (docs/architecture.md,
"Redis failover"). The failover itself, during a burst through gunicorn and Celery, is the fault
suite's case (tests/faults)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import falcon.testing
import pytest
import redis
import yaml

from scim_bridge.api.app import create_app
from scim_bridge.cli.processes import free_port, redis_server_binary, wait_until
from scim_bridge.store import Field, Kind, Store
from scim_bridge.store.keys import QUEUE
from scim_bridge.workers.celery_app import create_celery
from scim_bridge.workers.passwords import PasswordVault
from scim_bridge.workers.runtime import Runtime
from scim_bridge.workers.settings import Settings, SettingsError, load_settings
from scim_bridge.workers.tasks import RECONCILE
from tests.support import (
    MASTER_NAME,
    SENTINEL_PASSWORD,
    TOKEN,
    SentinelGroup,
    _pings,
    make_settings,
    replica_of,
)
from tests.test_users import user_body

USERS = "/scim/v2/Users"


@pytest.fixture(scope="module")
def group(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelGroup]:
    started = SentinelGroup(tmp_path_factory.mktemp("sentinel"))
    yield started
    started.stop()


def sentinel_settings(group: SentinelGroup, password_key: str, **overrides: Any) -> Settings:
    env = group.settings()
    values: dict[str, Any] = {
        "redis_sentinels": env["SCIM_BRIDGE_REDIS_SENTINELS"],
        "redis_sentinel_master": env["SCIM_BRIDGE_REDIS_SENTINEL_MASTER"],
        "redis_sentinel_password": env["SCIM_BRIDGE_REDIS_SENTINEL_PASSWORD"],
        "key_prefix": "sentinel",
        "confirm_wait_s": 0.0,
        "redis_replica_ack_timeout_s": 0.3,
    }
    values.update(overrides)
    url = values.pop("redis_url", env["SCIM_BRIDGE_REDIS_URL"])
    return make_settings(url, password_key, **values)


def api(settings: Settings, store: Store, published: list[tuple[Kind, str]]) -> Any:
    app = create_app(settings, store=store, publish=lambda kind, rid: published.append((kind, rid)))
    return falcon.testing.TestClient(app, headers={"Authorization": TOKEN})


@pytest.fixture
def replica_stopped(group: SentinelGroup) -> Iterator[None]:
    """The replica frozen (SIGSTOP): connected, but it acknowledges nothing."""
    assert group.replica.process is not None
    pid = group.replica.process.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


# Settings --------------------------------------------------------------------------------------
def _problems(**values: Any) -> str:
    with pytest.raises(SettingsError) as raised:
        load_settings(auth_mode="none", **values)
    return str(raised.value)


def test_sentinel_settings_are_checked_at_start():
    assert "set SCIM_BRIDGE_REDIS_SENTINEL_MASTER" in _problems(redis_sentinels="s1:26379")
    assert "without SCIM_BRIDGE_REDIS_SENTINELS" in _problems(redis_sentinel_master="main")
    assert "'s2' is not host:port" in _problems(
        redis_sentinels="s1:26379,s2", redis_sentinel_master="main"
    )
    assert "must be redis://" in _problems(
        redis_sentinels="s1:26379", redis_sentinel_master="main", redis_url="rediss://x/0"
    )
    assert "SCIM_BRIDGE_REDIS_REPLICA_ACK_TIMEOUT_S" in _problems(
        redis_sentinels="s1:26379",
        redis_sentinel_master="main",
        redis_replica_ack_timeout_s=9,
        timeout_budget_s=10,
        confirm_wait_s=1,
    )


def test_sentinel_settings_from_the_environment(monkeypatch):
    monkeypatch.setenv("SCIM_BRIDGE_REDIS_SENTINELS", "s1:26379, s2:26380,[::1]:26381")
    monkeypatch.setenv("SCIM_BRIDGE_REDIS_SENTINEL_MASTER", "main")
    monkeypatch.setenv("SCIM_BRIDGE_REDIS_SENTINEL_PASSWORD", "pw-of-sentinels")
    settings = load_settings(auth_mode="none")
    sentinels = settings.sentinels()
    assert sentinels is not None
    assert sentinels.nodes == (("s1", 26379), ("s2", 26380), ("::1", 26381))
    assert sentinels.master == "main" and sentinels.password == "pw-of-sentinels"
    assert "pw-of-sentinels" not in repr(sentinels) + repr(settings)
    assert settings.replica_acks == 1  # the default with Sentinel
    monkeypatch.setenv("SCIM_BRIDGE_REDIS_MIN_REPLICA_ACKS", "0")
    assert load_settings(auth_mode="none").replica_acks == 0
    monkeypatch.delenv("SCIM_BRIDGE_REDIS_SENTINELS")
    monkeypatch.delenv("SCIM_BRIDGE_REDIS_SENTINEL_MASTER")
    monkeypatch.delenv("SCIM_BRIDGE_REDIS_MIN_REPLICA_ACKS")
    plain = load_settings(auth_mode="none")
    assert plain.sentinels() is None and plain.replica_acks == 0


# Clients that follow the primary ---------------------------------------------------------------
def test_the_store_and_the_broker_find_the_primary_through_sentinel(group, password_key):
    settings = sentinel_settings(group, password_key, redis_url="redis://nowhere.invalid:1/3")
    store = Runtime(settings).store
    primary = ("127.0.0.1", group.current_primary().port)
    for client in (store.redis, store.wait_redis):
        assert client.connection_pool.get_master_address() == primary
    store.publish_capabilities(["CREATE_USER"])
    on_primary = redis.Redis(port=primary[1], db=3)  # the URL's database number counts
    assert on_primary.get(store.keys.capabilities) == b'["CREATE_USER"]'
    assert store.status().workers == {}  # what `scim-bridge status` and /metrics read

    app = create_celery(settings)
    with app.connection_for_write() as connection:
        assert connection.transport_cls == "sentinel"
    app.send_task(RECONCILE, args=[Kind.USER.value, "00000000-0000-4000-8000-000000000000"])
    assert on_primary.llen(QUEUE) == 1
    on_primary.flushdb()


def test_without_the_sentinel_password_no_primary_is_found(group, password_key):
    settings = sentinel_settings(group, password_key, redis_sentinel_password=None)
    with pytest.raises(redis.ConnectionError, match="No master found"):
        Runtime(settings).store.ping()


# Accepted writes wait for a replica ------------------------------------------------------------
def test_an_accepted_create_is_on_the_replica_when_it_is_answered(group, password_key):
    settings = sentinel_settings(group, password_key)
    store, published = Runtime(settings).store, []
    created = api(settings, store, published).simulate_post(USERS, json=user_body("w@ex.com"))
    assert created.status_code == 201, created.text
    on_replica = redis.Redis(port=group.replica.port)
    key = store.keys.resource(Kind.USER, created.json["id"])
    assert on_replica.hget(key, Field.DESIRED) is not None
    assert published == [(Kind.USER, created.json["id"])]
    store.clear_data()


def test_writes_no_replica_confirms_are_503_and_their_retries_converge(
    group, password_key, replica_stopped
):
    settings = sentinel_settings(group, password_key)
    store, published = Runtime(settings).store, []
    client = api(settings, store, published)
    refused = client.simulate_post(USERS, json=user_body("r@ex.com"))
    assert refused.status_code == 503, refused.text
    assert refused.json["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
    assert "0 of 1 Redis replicas confirmed" in refused.json["detail"]
    assert refused.headers["Retry-After"] == "1"
    # Stored on the primary and published: applied if the primary lives.
    found = client.simulate_get(USERS, params={"filter": 'userName eq "r@ex.com"'}).json
    assert found["totalResults"] == 1
    rid = found["Resources"][0]["id"]
    assert published == [(Kind.USER, rid)]
    put = client.simulate_put(f"{USERS}/{rid}", json=user_body("r@ex.com", active=False))
    assert put.status_code == 503
    os.kill(group.replica.process.pid, signal.SIGCONT)
    # The client's retries: the create finds the user stored (no second one), the PUT lands.
    again = client.simulate_post(USERS, json=user_body("r@ex.com"))
    assert again.status_code == 409
    put = client.simulate_put(f"{USERS}/{rid}", json=user_body("r@ex.com", active=False))
    assert put.status_code == 200, put.text
    listed = client.simulate_get(USERS, params={"filter": 'userName eq "r@ex.com"'}).json
    assert [u["id"] for u in listed["Resources"]] == [rid]
    assert redis.Redis(port=group.replica.port).hget(
        store.keys.resource(Kind.USER, rid), Field.DESIRED
    )
    store.clear_data()


def test_without_any_replica_a_create_is_503_yet_applied_exactly_once(
    settings, store, legacy, publisher, tmp_path: Path
):
    # The test session's Redis has no replica: every write stays short of one acknowledgement.
    waiting = settings.model_copy(
        update={"redis_min_replica_acks": 1, "redis_replica_ack_timeout_s": 0.1}
    )
    runtime = Runtime(waiting)
    app = create_app(waiting, store=runtime.store, publish=publisher)
    client = falcon.testing.TestClient(app, headers={"Authorization": TOKEN})
    refused = client.simulate_post(USERS, json=user_body("once@ex.com"))
    assert refused.status_code == 503, refused.text
    assert client.simulate_post(USERS, json=user_body("once@ex.com")).status_code == 409
    wait_until(
        lambda: (
            not store.is_dirty(
                Kind.USER, store.find_unique(Kind.USER, "userName", "once@ex.com") or ""
            )
        )
    )
    assert [c[0] for c in legacy.adapter.calls] == ["create_user"]


# deploy/'s start-up of Redis and Sentinel -------------------------------------------------------
TOPOLOGY = Path(__file__).resolve().parents[1] / "deploy" / "redis" / "sentinel-topology.sh"


def test_the_deploy_start_up_brings_a_killed_primary_back_as_a_replica_of_the_promoted_one(
    tmp_path,
):
    redis_ports = {"redis-a": free_port(), "redis-b": free_port()}
    # A copy: Sentinel has the servers rewrite their configuration file (CONFIG REWRITE).
    conf = tmp_path / "redis.conf"
    shutil.copy(TOPOLOGY.parent / "redis.conf", conf)
    sentinel_ports = [free_port() for _ in range(3)]
    env = {
        **os.environ,
        "PATH": f"{Path(redis_server_binary()).parent}:{os.environ['PATH']}",
        "SENTINELS": ",".join(f"127.0.0.1:{port}" for port in sentinel_ports),
        "MASTER_NAME": MASTER_NAME,
        "FIRST_PRIMARY": f"127.0.0.1:{redis_ports['redis-a']}",
        "ANNOUNCE_HOST": "127.0.0.1",
        "BIND_ADDRESS": "127.0.0.1",
        "REDIS_CONF": str(conf),
        "SENTINEL_PASSWORD": SENTINEL_PASSWORD,
        "DOWN_AFTER_MS": "1000",
        "FAILOVER_TIMEOUT_MS": "3000",
    }
    started: dict[str, subprocess.Popen[bytes]] = {}

    def start(name: str, role: str, **extra: str) -> None:
        directory = tmp_path / name
        directory.mkdir(exist_ok=True)
        argv = ["sh", str(TOPOLOGY), role]
        if role == "redis":
            argv += ["--repl-diskless-sync-delay", "0"]
        started[name] = subprocess.Popen(
            argv,
            env={**env, "DATA_DIR": str(directory), **extra},
            stdout=(tmp_path / f"{name}.log").open("ab"),
            stderr=subprocess.STDOUT,
        )

    def sentinels_agree() -> bool:
        for port in sentinel_ports:
            sentinel = redis.Redis(port=port, password=SENTINEL_PASSWORD)
            try:
                with sentinel:
                    state = sentinel.sentinel_master(MASTER_NAME)
            except redis.RedisError:
                return False
            if state["num-other-sentinels"] < 2 or state["num-slaves"] < 1 or state["is_sdown"]:
                return False
        return True

    def primary_named() -> set[int]:
        named = set()
        for port in sentinel_ports:
            sentinel = redis.Redis(port=port, password=SENTINEL_PASSWORD)
            with contextlib.suppress(redis.RedisError), sentinel:
                found = sentinel.sentinel_get_master_addr_by_name(MASTER_NAME)
                named.add(int(found[1]) if found else 0)
        return named

    try:
        for name, port in redis_ports.items():
            start(name, "redis", REDIS_PORT=str(port))
        for index, port in enumerate(sentinel_ports):
            start(f"sentinel-{index}", "sentinel", SENTINEL_PORT=str(port))
        a, b = redis_ports["redis-a"], redis_ports["redis-b"]
        wait_until(lambda: replica_of(b) == a, timeout=20)
        wait_until(lambda: primary_named() == {a}, timeout=20)
        wait_until(sentinels_agree, timeout=30, interval=0.1)

        started["redis-a"].kill()  # exec'd: the process is redis-server itself
        started["redis-a"].wait(10)
        wait_until(lambda: primary_named() == {b}, timeout=30, interval=0.1)
        start("redis-a", "redis", REDIS_PORT=str(a))
        # A replica from its first moment, never a second primary with older data.
        with redis.Redis(port=a) as back:
            wait_until(lambda: _pings(back), timeout=10)
            assert back.info("replication")["role"] == "slave"
        wait_until(lambda: replica_of(a) == b, timeout=20)
        log = (tmp_path / "redis-a.log").read_text()
        assert f"starts as a replica of 127.0.0.1 {b}" in log
    finally:
        for process in started.values():
            process.kill()
            process.wait(10)


def test_the_shipped_compose_and_kubernetes_settings_configure_sentinel(monkeypatch):
    deploy = TOPOLOGY.parents[1]
    compose = yaml.safe_load((deploy / "compose.yaml").read_text())
    shared = compose["services"]["api"]["environment"]
    k8s = yaml.safe_load((deploy / "kubernetes" / "configmap.yaml").read_text())["data"]
    secret = yaml.safe_load((deploy / "kubernetes" / "secret.example.yaml").read_text())
    for variables in (shared, {**k8s, **secret["stringData"]}):
        for name in [n for n in os.environ if n.startswith("SCIM_BRIDGE_")]:
            monkeypatch.delenv(name)  # each file on its own
        for name, value in variables.items():
            if name.startswith("SCIM_BRIDGE_") and name != "SCIM_BRIDGE_PORT":
                # compose's ${NAME:-default} / ${NAME:?message}: the default, or a stand-in
                found = re.fullmatch(r"\$\{\w+:(-|\?)(.*)\}", str(value))
                value = found.group(2) if found and found.group(1) == "-" else value
                monkeypatch.setenv(name, "set-in-env" if found and found.group(1) == "?" else value)
        settings = load_settings(password_key=PasswordVault.generate_key().decode())
        sentinels = settings.sentinels()
        assert sentinels is not None and len(sentinels.nodes) == 3
        assert sentinels.master == "scim-bridge" and sentinels.password
        assert settings.replica_acks == 1
    topology = compose["x-redis"]["environment"]
    assert topology["MASTER_NAME"] == shared["SCIM_BRIDGE_REDIS_SENTINEL_MASTER"]
    assert topology["SENTINELS"] == shared["SCIM_BRIDGE_REDIS_SENTINELS"]
