"""Slow clients cannot take the api down: each has SCIM_BRIDGE_CLIENT_TIMEOUT_S to send its
request, and no thread waits for a request that has not fully arrived."""

from __future__ import annotations

import select
import socket
import statistics
import threading
import time
from urllib.parse import urlsplit

import httpx
import pytest

from tests.support import TOKEN
from tests.test_users import user_body

CLIENT_TIMEOUT_S = 3.0
TRICKLE_S = 2.0  # one byte every two seconds


class SlowClients:
    """``count`` connections sending their request a byte every two seconds, without
    credentials: half trickle their headers, half a body after complete headers. A connection
    the server closes is opened again at once, so ``count`` stay open."""

    def __init__(self, base_url: str, count: int) -> None:
        url = urlsplit(base_url)
        self.address = (url.hostname, url.port)
        self.count = count
        self.sockets: dict[int, tuple[socket.socket, float, float]] = {}
        self.lifetimes: list[float] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _open(self, index: int) -> None:
        sock = socket.create_connection(self.address, timeout=5)
        if index % 2:
            sock.sendall(b"GET /scim/v2/Users HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        else:
            sock.sendall(
                b"POST /scim/v2/Users HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/scim+json\r\nContent-Length: 10000\r\n\r\n{"
            )
        now = time.monotonic()
        self.sockets[index] = (sock, now, now)

    def __enter__(self) -> SlowClients:
        for index in range(self.count):
            self._open(index)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join(10)
        for sock, _, _ in self.sockets.values():
            sock.close()

    def _run(self) -> None:
        while not self.stopping.wait(0.25):
            by_socket = {sock: index for index, (sock, _, _) in self.sockets.items()}
            readable, _, _ = select.select(list(by_socket), [], [], 0)
            for sock in readable:  # the server answered (408) or closed: it gave up on us
                index = by_socket[sock]
                self.lifetimes.append(time.monotonic() - self.sockets[index][1])
                sock.close()
                self._open(index)
            now = time.monotonic()
            for index, (sock, opened, sent) in list(self.sockets.items()):
                if now - sent >= TRICKLE_S:
                    try:
                        sock.send(b"a")
                    except OSError:
                        continue  # closed: seen as readable on the next turn
                    self.sockets[index] = (sock, opened, now)


def test_reads_answer_within_a_second_while_a_hundred_slow_clients_are_connected(serve, legacy):
    server = serve(workers=2, threads=4, SCIM_BRIDGE_CLIENT_TIMEOUT_S=str(CLIENT_TIMEOUT_S))
    headers = {"Authorization": TOKEN}
    created = httpx.post(f"{server.base_url}/scim/v2/Users", json=user_body(), headers=headers)
    assert created.status_code == 201, created.text
    with SlowClients(server.base_url, 100) as slow:
        time.sleep(TRICKLE_S + 0.5)  # every slow connection is in the middle of its request
        latencies = []
        for _ in range(12):
            started = time.monotonic()
            answer = httpx.get(f"{server.base_url}/scim/v2/Users", headers=headers, timeout=10)
            latencies.append(time.monotonic() - started)
            assert answer.status_code == 200 and answer.json()["totalResults"] == 1
            time.sleep(0.5)
        assert len(slow.sockets) == 100
        lifetimes = list(slow.lifetimes)
    # Served in tens of milliseconds here; the bound is the issue's, with room for a busy host.
    assert max(latencies) < 1.0, (statistics.median(latencies), latencies)
    # Slow connections were closed once their time was up (the check runs once a second).
    assert lifetimes, "no slow connection was ever closed"
    assert max(lifetimes) < CLIENT_TIMEOUT_S + TRICKLE_S + 1.5, lifetimes


def test_a_request_sent_in_pieces_within_the_client_timeout_is_served(serve, legacy):
    server = serve(workers=1, threads=2, SCIM_BRIDGE_CLIENT_TIMEOUT_S=str(CLIENT_TIMEOUT_S))
    url = urlsplit(server.base_url)
    body = httpx.Request("POST", "/", json=user_body("pieces@example.com")).content
    head = (
        "POST /scim/v2/Users HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: {TOKEN}\r\nContent-Type: application/scim+json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        for piece in (head[:10], head[10:], body[:7], body[7:]):
            sock.sendall(piece)
            time.sleep(0.3)
        answer = sock.recv(65536)
        while b"\r\n\r\n" not in answer:
            answer += sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 201"), answer[:200]


def test_pipelined_requests_are_each_answered(serve, legacy):
    server = serve(workers=1, threads=2, SCIM_BRIDGE_CLIENT_TIMEOUT_S=str(CLIENT_TIMEOUT_S))
    url = urlsplit(server.base_url)
    get = f"GET /scim/v2/Users HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {TOKEN}\r\n\r\n"
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        # The second request arrives partly with the first, the rest of it a moment later.
        sock.sendall((get + get[:20]).encode())
        time.sleep(0.3)
        sock.sendall(get[20:].encode())
        answers = b""
        while answers.count(b'"totalResults"') < 2:
            chunk = sock.recv(65536)
            assert chunk, answers
            answers += chunk
    assert answers.count(b"HTTP/1.1 200") == 2, answers


def test_a_request_is_complete_once_its_headers_and_body_have_arrived():
    from scim_bridge.api.gunicorn_worker import request_complete

    head = b"POST /scim/v2/Users HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n"
    assert not request_complete(head[:-2], 100)
    assert not request_complete(head + b"abcd", 100)
    assert request_complete(head + b"abcde", 100)
    too_long = b"POST / HTTP/1.1\r\nContent-Length: 101\r\n\r\n"
    assert request_complete(too_long, 100)  # answered 413 without waiting for the body
    assert request_complete(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", 100)
    chunked = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert not request_complete(chunked + b"3\r\nabc\r\n", 100)
    assert not request_complete(chunked + b"3\r\nabc\r\n0\r\n", 100)
    assert request_complete(chunked + b"3\r\nabc\r\n0\r\n\r\n", 100)
    assert request_complete(chunked + b"3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n", 100)
    assert request_complete(chunked + b"zz\r\n", 100)  # malformed: the parser refuses it
    assert request_complete(b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n", 100)


def test_the_client_timeout_and_the_request_deadline_stay_inside_the_budget(settings):
    from scim_bridge.workers.settings import SettingsError
    from tests.support import make_settings

    key = settings.password_key.get_secret_value()
    with pytest.raises(SettingsError, match="SCIM_BRIDGE_CLIENT_TIMEOUT_S"):
        make_settings(settings.redis_url, key, client_timeout_s=20, request_deadline_s=10)


def test_a_client_that_expects_100_continue_is_told_to_send_its_body(serve, legacy):
    server = serve(workers=1, threads=2, SCIM_BRIDGE_CLIENT_TIMEOUT_S=str(CLIENT_TIMEOUT_S))
    url = urlsplit(server.base_url)
    body = httpx.Request("POST", "/", json=user_body("expect@example.com")).content
    head = (
        "POST /scim/v2/Users HTTP/1.1\r\nHost: 127.0.0.1\r\nExpect: 100-continue\r\n"
        f"Authorization: {TOKEN}\r\nContent-Type: application/scim+json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall(head)
        assert sock.recv(65536).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(body)
        answer = b""
        while b"HTTP/1.1 201" not in answer:
            chunk = sock.recv(65536)
            assert chunk, answer
            answer += chunk
