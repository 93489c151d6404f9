"""What the tests share besides fixtures: the token, test settings and a Redis server.

Imported by the fixtures (``conftest.py``), the tests and the fault suite; nothing imports
``conftest``. Process, port and wait helpers are in :mod:`scim_bridge.cli.processes`.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from scim_bridge.cli.processes import (
    free_port,
    redis_server_binary,
    redis_server_command,
    wait_until,
)
from scim_bridge.store import Sentinels
from scim_bridge.workers.settings import Settings, load_settings

TOKEN = "Bearer test-token"


class RedisServer:
    """A redis-server process of the test session; ``extra`` directives (``--replicaof``...)
    are given on every start."""

    def __init__(self, directory: Path, *extra: str) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.extra = extra
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            redis_server_command(self.port, self.directory, *self.extra),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port)
        wait_until(lambda: _pings(client), timeout=10)

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(10)
            self.process = None

    def kill(self) -> None:
        """SIGKILL: no final write of anything, like a lost machine."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None


MASTER_NAME = "scim-bridge"
# A replica's full sync starts at once (the default waits 5 s for more replicas to join).
_QUICK_SYNC = ("--repl-diskless-sync-delay", "0")
SENTINEL_PASSWORD = "sentinel-test-secret"


class SentinelGroup:
    """A primary, a replica (``--replicaof``) and three Sentinels on free loopback ports.

    The Sentinels call the primary down after ``down_after_ms`` without an answer and need
    two of three to agree (quorum 2); they require ``SENTINEL_PASSWORD`` of their clients.
    """

    def __init__(self, directory: Path, *, down_after_ms: int = 1000) -> None:
        self.directory = directory
        self.primary = RedisServer(directory / "primary", *_QUICK_SYNC)
        self.replica = RedisServer(
            directory / "replica", *_QUICK_SYNC, "--replicaof", "127.0.0.1", str(self.primary.port)
        )
        self.sentinel_ports = [free_port() for _ in range(3)]
        self._sentinels: list[subprocess.Popen[bytes]] = []
        for index, port in enumerate(self.sentinel_ports):
            config = directory / f"sentinel-{index}.conf"  # Sentinel rewrites it: its state
            config.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {directory}\n"
                f"requirepass {SENTINEL_PASSWORD}\nsentinel sentinel-pass {SENTINEL_PASSWORD}\n"
                f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.primary.port} 2\n"
                f"sentinel down-after-milliseconds {MASTER_NAME} {down_after_ms}\n"
                f"sentinel failover-timeout {MASTER_NAME} {down_after_ms * 3}\n"
                f"sentinel parallel-syncs {MASTER_NAME} 1\n"
            )
            log = (directory / f"sentinel-{index}.log").open("ab")
            self._sentinels.append(
                subprocess.Popen(
                    [redis_server_binary(), str(config), "--sentinel"],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        wait_until(self._sentinels_agree, timeout=30, interval=0.1)

    @property
    def nodes(self) -> str:
        """``SCIM_BRIDGE_REDIS_SENTINELS``."""
        return ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)

    def settings(self) -> dict[str, str]:
        """The ``SCIM_BRIDGE_*`` variables that point scim-bridge at this group."""
        return {
            # Sentinel names the host: this URL's host and port are never used.
            "SCIM_BRIDGE_REDIS_URL": "redis://sentinel-managed/0",
            "SCIM_BRIDGE_REDIS_SENTINELS": self.nodes,
            "SCIM_BRIDGE_REDIS_SENTINEL_MASTER": MASTER_NAME,
            "SCIM_BRIDGE_REDIS_SENTINEL_PASSWORD": SENTINEL_PASSWORD,
        }

    def spec(self) -> Sentinels:
        """The group as the store's clients take it."""
        nodes = tuple(("127.0.0.1", port) for port in self.sentinel_ports)
        return Sentinels(nodes, MASTER_NAME, SENTINEL_PASSWORD)

    def sentinel_client(self, index: int) -> redis.Redis:
        return redis.Redis(
            port=self.sentinel_ports[index], password=SENTINEL_PASSWORD, socket_timeout=2
        )

    def master_ports(self) -> set[int]:
        """The primary's port as each Sentinel that answers names it."""
        ports = set()
        for index in range(len(self.sentinel_ports)):
            with contextlib.suppress(redis.RedisError):
                with self.sentinel_client(index) as client:
                    found = client.sentinel_get_master_addr_by_name(MASTER_NAME)
                if found:
                    ports.add(int(found[1]))
        return ports

    def _sentinels_agree(self) -> bool:
        for index in range(len(self.sentinel_ports)):
            try:
                with self.sentinel_client(index) as client:
                    state = client.sentinel_master(MASTER_NAME)
            except redis.RedisError:
                return False
            if state["num-slaves"] < 1 or state["num-other-sentinels"] < 2:
                return False
        return self.master_ports() == {self.primary.port} and self.replica_synced(self.replica)

    @staticmethod
    def replica_synced(server: RedisServer) -> bool:
        """Whether ``server`` is a replica with a live link to its primary."""
        return replica_of(server.port) is not None

    def current_primary(self) -> RedisServer:
        """The server the Sentinels name as primary (after a failover, the old replica)."""
        (port,) = self.master_ports()
        return self.primary if port == self.primary.port else self.replica

    def rejoin(self, server: RedisServer) -> None:
        """Start a stopped server again as a replica of the current primary, the way
        deploy/'s Redis start-up asks the Sentinels whom to follow."""
        server.extra = (*_QUICK_SYNC, "--replicaof", "127.0.0.1", str(self.current_primary().port))
        server.start()

    def stop(self) -> None:
        for sentinel in self._sentinels:
            sentinel.kill()
            sentinel.wait(10)
        for server in (self.replica, self.primary):
            with contextlib.suppress(Exception):
                server.stop()


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


def serve_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment of a ``scim-bridge serve`` on ``settings``' Redis, whose writes the
    session's worker applies."""
    return {
        **os.environ,
        "SCIM_BRIDGE_REDIS_URL": settings.redis_url,
        "SCIM_BRIDGE_AUTH_MODE": "header",
        "SCIM_BRIDGE_AUTH_HEADER_VALUE": TOKEN,
        "SCIM_BRIDGE_PASSWORD_KEY": settings.password_key.get_secret_value()
        if settings.password_key
        else "",
        "SCIM_BRIDGE_CONFIRM_WAIT_S": str(settings.confirm_wait_s),
        "SCIM_BRIDGE_ADAPTER": "memory",
        **extra,
    }


def make_settings(redis_url: str, password_key: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "redis_url": redis_url,
        "auth_mode": "header",
        "auth_header_value": TOKEN,
        "adapter": "memory",
        "password_key": password_key,
        "confirm_wait_s": 3.0,
        "sweep_grace_s": 30.0,
        "retry_backoff_base_s": 0.05,
        "retry_backoff_max_s": 0.5,
        "max_transient_attempts": 5,
        "worker_concurrency": 1,
        # Falcon's test client names this host; gunicorn tests use 127.0.0.1 (a default).
        "allowed_hosts": ["falconframework.org", "127.0.0.1", "localhost"],
    }
    values.update(overrides)
    return load_settings(**values)


def replica_of(port: int) -> int | None:
    """The port of the primary the server on ``port`` replicates with a live link, or None."""
    try:
        with redis.Redis(port=port, socket_timeout=2) as client:
            info = client.info("replication")
    except redis.RedisError:
        return None
    if info.get("role") == "slave" and info.get("master_link_status") == "up":
        return int(info["master_port"])
    return None


class Pki:
    """A private CA (``ca.pem``) and a certificate it signed for 127.0.0.1 and localhost."""

    def __init__(self, directory: Path) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        now = datetime.datetime.now(datetime.UTC)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "scim-bridge test CA")])
        ca = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
            .sign(ca_key, hashes.SHA256())
        )
        key = ec.generate_private_key(ec.SECP256R1())
        server = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
            )
            .sign(ca_key, hashes.SHA256())
        )
        self.ca = directory / "ca.pem"
        self.cert = directory / "server.pem"
        self.key = directory / "server.key"
        self.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        self.cert.write_bytes(server.public_bytes(serialization.Encoding.PEM))
        self.key.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        self.key.chmod(0o600)


@dataclass
class Dev:
    """A running ``scim-bridge dev`` and the banner it printed once ready."""

    process: subprocess.Popen[str]
    banner: str

    @property
    def header(self) -> str:
        """The ``Authorization`` value the banner gives (``Bearer ...``)."""
        found = re.search(r"credentials\s+: Authorization: (Bearer \S+)", self.banner)
        assert found is not None, self.banner
        return found.group(1)


@contextlib.contextmanager
def running_dev(cwd: Path, port: int, env: dict[str, str], *, timeout: float) -> Iterator[Dev]:
    """``scim-bridge dev --port port`` in ``cwd``, once its banner ends (``Ctrl-C stops``, or it
    exited); stopped with Ctrl-C (SIGINT) on the way out."""
    # A worker metrics port of its own: the default 9464 may be taken by another process here.
    env = {"SCIM_BRIDGE_WORKER_METRICS_PORT": str(free_port()), **env}
    dev = subprocess.Popen(
        [sys.executable, "-m", "scim_bridge.cli", "dev", "--port", str(port)],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []
    try:

        def announced() -> bool:
            assert dev.stdout is not None
            line = dev.stdout.readline()
            output.append(line)
            return "Ctrl-C stops" in line or dev.poll() is not None

        wait_until(announced, timeout=timeout, interval=0)
        yield Dev(dev, "".join(output))
    finally:
        dev.send_signal(signal.SIGINT)
        dev.wait(60)
