"""gunicorn's gthread worker, with every request read in its event loop before a thread serves it.

gthread hands a connection to a thread as soon as it is readable, and the thread then reads the
request with blocking calls: a client that sends a byte every two seconds holds that thread for
as long as it likes, and a few dozen such clients hold them all, so nobody else is answered. This
worker reads each request (headers and body, up to ``max_body_bytes``) without blocking, in the
same loop that accepts connections, and gives it to a thread only once it has fully arrived, the
way a buffering reverse proxy does. A client that has not sent its whole request within
``client_timeout_s`` (SCIM_BRIDGE_CLIENT_TIMEOUT_S) of connecting, or of its previous answer on a
kept-alive connection, gets 408 and is closed. At most ``max_connections``
(SCIM_BRIDGE_MAX_CONNECTIONS) connections are open per process; past that, new ones wait in the
listen backlog. TLS connections do their handshake in the loop as well.

Used by api/gunicorn_conf.py (``worker_class``); it relies on gunicorn 27's gthread worker.
"""

from __future__ import annotations

import contextlib
import errno
import selectors
import ssl
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from gunicorn import http
from gunicorn import sock as gunicorn_sock
from gunicorn.workers.gthread import TConn, ThreadWorker

from scim_bridge.workers.settings import load_settings

# A request head longer than this is handed to gunicorn's parser as it is, which refuses it.
_HEAD_LIMIT = 64 * 1024
_TIMED_OUT = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"


@dataclass
class _Arriving:
    """A request still arriving on a connection."""

    deadline: float
    handshaken: bool
    data: bytearray = field(default_factory=bytearray)
    continued: bool = False
    """``100 Continue`` was sent (the client waits for it before sending its body)."""


def request_complete(data: bytes | bytearray, max_body_bytes: int) -> bool:
    """Whether ``data`` holds a whole HTTP/1.x request, or as much of one as will be read.

    Conservative: anything this does not understand is "complete", so gunicorn's parser (which
    answers malformed requests) gets it at once.
    """
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return len(data) > _HEAD_LIMIT
    values = _fields(data, end)
    body = memoryview(data)[end + 4 :]
    if b"chunked" in values.get(b"transfer-encoding", b""):
        return _chunks_complete(bytes(body), max_body_bytes)
    length = values.get(b"content-length")
    if length is None:
        return True
    try:
        expected = int(length)
    except ValueError:
        return True
    return len(body) >= expected or expected > max_body_bytes


def _fields(data: bytes | bytearray, end: int) -> dict[bytes, bytes]:
    """The header fields of a request head ending at ``end``, names and values lower-cased."""
    lines = bytes(data[:end]).lower().split(b"\r\n")[1:]
    return {name.strip(): value.strip() for name, _, value in (x.partition(b":") for x in lines)}


def expects_continue(data: bytes | bytearray) -> bool:
    """Whether a complete HTTP/1.1 request head asks for ``100 Continue`` before its body."""
    end = data.find(b"\r\n\r\n")
    if end < 0 or not data[: data.find(b"\r\n")].endswith(b"HTTP/1.1"):
        return False
    return _fields(data, end).get(b"expect") == b"100-continue"


def _chunks_complete(body: bytes, max_body_bytes: int) -> bool:
    position = 0
    while True:
        if position > max_body_bytes:
            return True
        line_end = body.find(b"\r\n", position)
        if line_end < 0:
            return False
        try:
            size = int(body[position:line_end].split(b";")[0], 16)
        except ValueError:
            return True
        if size == 0:
            # The last chunk, then trailer fields and an empty line.
            return body.find(b"\r\n\r\n", line_end) >= 0
        position = line_end + 2 + size + 2
        if position > len(body):
            return False


class BufferedRequestWorker(ThreadWorker):  # type: ignore[misc]
    """gthread with requests read in the event loop, under a deadline (see the module)."""

    def init_process(self) -> None:
        settings = load_settings()
        self.client_timeout_s = settings.client_timeout_s
        self.max_body_bytes = settings.max_body_bytes
        self.worker_connections = settings.max_connections
        self.max_keepalived = settings.max_connections - self.cfg.threads
        self.arriving: dict[Any, _Arriving] = {}  # TConn -> its request; the loop's thread only
        super().init_process()

    # Connections whose request is arriving ---------------------------------------------------
    def accept(self, listener: Any) -> None:
        try:
            client, address = listener.accept()
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        conn = TConn(self.cfg, client, address, listener.getsockname())  # non-blocking
        if self.cfg.is_ssl:
            conn.sock = gunicorn_sock.ssl_context(self.cfg).wrap_socket(
                conn.sock,
                server_side=True,
                suppress_ragged_eofs=self.cfg.suppress_ragged_eofs,
                do_handshake_on_connect=False,
            )
        self._await_request(conn, handshaken=not self.cfg.is_ssl)

    def on_client_socket_readable(self, conn: Any, client: Any) -> None:
        # A kept-alive connection's next request: read it in the loop too.
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        self._await_request(conn, handshaken=True)

    def enqueue_req(self, conn: Any) -> None:
        if "arrived" in conn.__dict__ or not conn.initialized or conn.is_http2:
            super().enqueue_req(conn)
            return
        # A kept-alive connection whose next request was partly read with the previous one
        # (pipelining): the rest of it arrives in the loop like any other.
        self._await_request(conn, handshaken=True, data=conn.parser.unreader.take_buffered())

    def _await_request(self, conn: Any, *, handshaken: bool, data: bytes = b"") -> None:
        conn.sock.setblocking(False)  # the loop must never wait on one client
        deadline = time.monotonic() + self.client_timeout_s
        self.arriving[conn] = _Arriving(deadline, handshaken, bytearray(data))
        if data and request_complete(data, self.max_body_bytes):
            self._arrived(conn)
            return
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._receive, conn))

    def _arrived(self, conn: Any) -> None:
        conn.arrived = bytes(self.arriving.pop(conn).data)
        super().enqueue_req(conn)

    def _receive(self, conn: Any, client: Any) -> None:
        arriving = self.arriving[conn]
        try:
            if not arriving.handshaken:
                conn.sock.do_handshake()
                arriving.handshaken = True
            while len(arriving.data) <= self.max_body_bytes + _HEAD_LIMIT:
                chunk = conn.sock.recv(65536)
                if not chunk:
                    self._close(conn)  # the client went away
                    return
                arriving.data += chunk
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            pass  # everything sent so far is read
        except OSError:
            self._close(conn)
            return
        limit_reached = len(arriving.data) > self.max_body_bytes + _HEAD_LIMIT
        if limit_reached or request_complete(arriving.data, self.max_body_bytes):
            self.poller.unregister(conn.sock)
            self._arrived(conn)
        elif not arriving.continued and expects_continue(arriving.data):
            # The client sends its body only once told to (gunicorn's own "100 Continue",
            # sent when the request is served, is one more interim answer, which clients skip).
            arriving.continued = True
            try:
                conn.sock.send(b"HTTP/1.1 100 Continue\r\n\r\n")
            except OSError:
                self._close(conn)

    def _close(self, conn: Any, answer: bytes = b"") -> None:
        arriving = self.arriving.pop(conn)
        with contextlib.suppress(KeyError, ValueError, OSError):
            self.poller.unregister(conn.sock)
        if answer and arriving.handshaken:
            with contextlib.suppress(OSError):
                conn.sock.send(answer)
        self.nr_conns -= 1
        conn.close()

    def murder_pending(self) -> None:
        """Also close the connections whose request did not arrive in time (each loop turn)."""
        super().murder_pending()
        now = time.monotonic()
        for conn in [c for c, arriving in self.arriving.items() if arriving.deadline <= now]:
            self.log.debug("%s: no whole request within the client timeout; closed", conn.client)
            self._close(conn, _TIMED_OUT)

    # Serving an arrived request ----------------------------------------------------------------
    def handle(self, conn: Any) -> Any:
        arrived = conn.__dict__.pop("arrived", None)
        if arrived is not None:
            conn.sock.setblocking(True)
            if not conn.initialized:
                # The socket is ready (and its TLS handshake done): gunicorn's parser reads the
                # request from what arrived, then from the socket should anything remain.
                conn.initialized = True
                conn.parser = http.get_parser(self.cfg, conn.sock, conn.client)
            conn.parser.unreader.unread(arrived)
            conn.data_ready = True
        return super().handle(conn)
