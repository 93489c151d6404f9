"""``scim-bridge serve --certfile --keyfile`` serves HTTPS, and ``scim-bridge check --ca-file``
trusts a private CA: a CA and a server certificate are made here, as an operator's PKI would."""

from __future__ import annotations

import io
import signal
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from scim_bridge.check import main as check
from scim_bridge.cli.processes import free_port, serve_command, wait_until
from tests.support import TOKEN, Pki, serve_env

ROOT = Path(__file__).resolve().parent.parent


class Https:
    def __init__(self, port: int, process: subprocess.Popen[bytes], log: Path) -> None:
        self.base_url = f"https://127.0.0.1:{port}"
        self.port = port
        self.process = process
        self.log = log


def _serve_tls(settings, pki: Pki, directory: Path, **env: str) -> Https:
    port = free_port()
    argv = [
        *serve_command(port, workers=1, threads=8),
        "--certfile",
        str(pki.cert),
        "--keyfile",
        str(pki.key),
    ]
    log = directory / "serve.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            argv, env=serve_env(settings, **env), stdout=output, stderr=subprocess.STDOUT, cwd=ROOT
        )
    trusted = ssl.create_default_context(cafile=pki.ca)

    def up() -> bool:
        assert process.poll() is None, log.read_text()
        try:
            return httpx.get(f"https://127.0.0.1:{port}/healthz", verify=trusted).is_success
        except httpx.HTTPError:
            return False

    try:
        wait_until(up, timeout=30, interval=0.1)
    except AssertionError:
        process.kill()
        raise
    return Https(port, process, log)


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path)


@pytest.fixture
def https(settings, pki: Pki, tmp_path: Path) -> Iterator[Https]:
    server = _serve_tls(settings, pki, tmp_path)
    yield server
    server.process.send_signal(signal.SIGTERM)
    server.process.wait(30)


def _check(*argv: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    status = check.main(list(argv), out=out, err=err)
    return status, out.getvalue() + err.getvalue()


def test_check_trusts_the_private_ca_it_is_given_and_only_then(https, pki, legacy):
    url = f"{https.base_url}/scim/v2/"
    status, out = _check(url, "--header", f"Authorization: {TOKEN}", "--ca-file", str(pki.ca))
    assert status == 0, out
    assert "FAIL" not in out

    status, out = _check(url, "--header", f"Authorization: {TOKEN}")
    assert status == 1, out
    assert "certificate verify failed" in out and "--ca-file" in out, out
    # The first step stops at the handshake; every other step is skipped, nothing was sent.
    steps = [line.split()[:2] for line in out.splitlines() if line[:4] in ("PASS", "FAIL")]
    assert [status for status, _ in steps] == ["FAIL", "PASS"] and steps[1][1] == "cleanup", out


def test_the_api_speaks_only_tls_1_2_and_later_with_its_certificate(https, pki):
    context = ssl.create_default_context(cafile=pki.ca)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    with httpx.Client(verify=context) as client:
        assert client.get(f"{https.base_url}/healthz").status_code == 200
    # Plain HTTP on the TLS port gets no answer.
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{https.port}/healthz", timeout=5)
    with pytest.raises(httpx.ConnectError):  # a client that knows no CA refuses the server
        httpx.get(f"{https.base_url}/healthz")


def test_tls_min_version_1_3_refuses_a_tls_1_2_client(settings, pki, tmp_path):
    server = _serve_tls(settings, pki, tmp_path, SCIM_BRIDGE_TLS_MIN_VERSION="1.3")
    try:
        old = ssl.create_default_context(cafile=pki.ca)
        old.maximum_version = ssl.TLSVersion.TLSv1_2
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{server.base_url}/healthz", verify=old)
        current = ssl.create_default_context(cafile=pki.ca)
        current.minimum_version = ssl.TLSVersion.TLSv1_3
        assert httpx.get(f"{server.base_url}/healthz", verify=current).status_code == 200
    finally:
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(30)


def test_serve_refuses_a_key_that_is_not_the_certificates(settings, pki, tmp_path):
    (tmp_path / "other").mkdir()
    other = Pki(tmp_path / "other")
    argv = [
        *serve_command(free_port(), workers=1, threads=1),
        "--certfile",
        str(pki.cert),
        "--keyfile",
        str(other.key),
    ]
    done = subprocess.run(argv, env=serve_env(settings), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert (
        "cannot use the TLS certificate" in done.stderr and "SCIM_BRIDGE_TLS_KEYFILE" in done.stderr
    )
