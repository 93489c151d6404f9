"""The gunicorn configuration of the scim-bridge api: ``scim-bridge serve`` always loads it.

    scim-bridge serve                                  # this file, values from the environment
    scim-bridge serve --config /etc/scim-bridge/gunicorn.conf.py   # another file instead
    gunicorn --config python:scim_bridge.api.gunicorn_conf 'scim_bridge.api.app:get_app()'

It ships in the package so that every way of running the api (``scim-bridge dev``, compose,
the container image, systemd, Kubernetes) uses this one file. Every value can be changed from the
environment; ``serve``'s ``--host``, ``--port``, ``--workers`` and ``--threads`` override it.
Only process-level knobs live here; everything the application itself reads is a
``SCIM_BRIDGE_*`` setting in workers/settings.py, validated at start-up.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable
from typing import cast

from scim_bridge.workers.logs import LogFormat, log_format, logging_config


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name, "").strip()
    return float(value) if value else default


def _cores() -> int:
    # The CPUs this process may run on, not the machine's. In a container with a CPU limit both
    # numbers are the node's: set SCIM_BRIDGE_API_WORKERS to match the limit instead.
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


# Okta's "Timeout for API calls": no request may take longer. Read the same
# variable as the application so the two cannot disagree.
_budget_s = _env_float("SCIM_BRIDGE_TIMEOUT_BUDGET_S", 30.0)

# Binding ------------------------------------------------------------------------------------
# Plain HTTP unless TLS is configured below; behind a reverse proxy that terminates TLS (see
# deploy/README.md) on the same host, set SCIM_BRIDGE_HOST=127.0.0.1 so only it can connect.
bind = f"{os.environ.get('SCIM_BRIDGE_HOST', '0.0.0.0')}:{_env_int('SCIM_BRIDGE_PORT', 8080)}"  # noqa: S104

# TLS ----------------------------------------------------------------------------------------
# On when SCIM_BRIDGE_TLS_CERTFILE and SCIM_BRIDGE_TLS_KEYFILE name the certificate (chain) and
# its key (``serve --certfile --keyfile`` set them). Python's server defaults (no SSLv3, no
# compression, its vetted cipher list) plus the oldest version SCIM_BRIDGE_TLS_MIN_VERSION allows,
# TLS 1.2 unless it says 1.3: stated here, not left to the Python and OpenSSL of the host.
certfile = os.environ.get("SCIM_BRIDGE_TLS_CERTFILE") or None
keyfile = os.environ.get("SCIM_BRIDGE_TLS_KEYFILE") or None
_TLS_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


def ssl_context(
    config: object, default_ssl_context_factory: Callable[[], ssl.SSLContext]
) -> ssl.SSLContext:
    context = default_ssl_context_factory()
    context.minimum_version = _TLS_VERSIONS[os.environ.get("SCIM_BRIDGE_TLS_MIN_VERSION") or "1.2"]
    return context


# Workers ------------------------------------------------------------------------------------
# gthread: a write may wait up to SCIM_BRIDGE_CONFIRM_WAIT_S for the legacy application's
# confirmation. With threads, that wait holds one thread, not the whole process, so reads (the
# bulk of the Okta agent's traffic, imports especially) keep being served meanwhile.
# The worker is gthread whose event loop reads each request whole (within
# SCIM_BRIDGE_CLIENT_TIMEOUT_S) before a thread serves it, so slow clients hold no thread.
worker_class = "scim_bridge.api.gunicorn_worker.BufferedRequestWorker"
# The api is CPU-bound (JSON, schema validation, filters) and stateless: processes give CPU
# parallelism that threads cannot under the GIL.
workers = _env_int("SCIM_BRIDGE_API_WORKERS", 2 * _cores())
# Threads are cheap and mostly wait (on Redis, or on a confirmation): enough of them that a burst
# of waiting writes never starves the reads.
threads = _env_int("SCIM_BRIDGE_API_THREADS", 16)

# No connections before fork: each worker process builds its own Redis pool and Celery producer in
# get_app(). A pool created in the master and inherited by the children would share sockets
# between processes and interleave their replies.
preload_app = False

# Several api processes may share a host (and a runtime directory): no shared control socket for
# them to fight over. Older gunicorn releases do not know the setting and ignore it.
control_socket_disable = True

# The heartbeat file lives in memory: on a container's overlay or a read-only root filesystem a
# disk-backed /tmp can block the heartbeat and get healthy workers killed.
# gunicorn creates its own file there with mkstemp, so a shared directory is safe.
_shm = "/dev/shm"  # noqa: S108
if os.path.isdir(_shm):
    worker_tmp_dir = _shm

# Timeouts -----------------------------------------------------------------------------------
# A worker silent for longer than this is killed and restarted. Every request ends within the
# budget, so anything past it plus a margin is a stuck process, never a slow request.
timeout = int(_budget_s) + 10
# On SIGTERM (deploy, scale-in), requests in flight get the whole budget to finish: a write
# already accepted answers its client instead of being cut off mid-response.
graceful_timeout = int(_budget_s) + 5
# Idle keep-alive connections stay open longer than the reverse proxy's upstream idle timeout
# (nginx's keepalive_timeout is 60 s), so the proxy closes them first and no request is sent on a
# connection gunicorn is closing. gthread parks idle connections in its poller, not in a thread.
keepalive = _env_int("SCIM_BRIDGE_API_KEEPALIVE_S", 75)

# Restarts -----------------------------------------------------------------------------------
# Recycle each worker after a number of requests to bound slow memory growth; the jitter staggers
# the restarts so the workers never all restart together.
max_requests = _env_int("SCIM_BRIDGE_API_MAX_REQUESTS", 10000)
max_requests_jitter = max(1, max_requests // 10) if max_requests else 0

# Logging ------------------------------------------------------------------------------------
# gunicorn's error and access lines and the application's go through one handler to stderr
# (journald, the container runtime or Kubernetes collect it), in SCIM_BRIDGE_LOG_FORMAT: one JSON
# object per line unless it says text (workers/logs.py). The access line's fields (method, path,
# status, bytes, duration_ms, request_id) are written out separately in JSON.
loglevel = os.environ.get("SCIM_BRIDGE_LOG_LEVEL", "INFO").lower()
logconfig_dict = logging_config(
    log_format(
        cast("LogFormat | None", os.environ.get("SCIM_BRIDGE_LOG_FORMAT") or None), command="serve"
    ),
    loglevel,
)
accesslog = "-"
# Request time in milliseconds (%(M)s) next to status and size: the number to watch against the
# budget. The X-Request-ID the api answered with (the client's, or one it minted) ties the line to
# the application's lines for the same request and to the worker's for the change.
access_log_format = '%(h)s "%(r)s" %(s)s %(B)s %(M)sms request_id=%({x-request-id}o)s agent="%(a)s"'

# Behind a proxy ------------------------------------------------------------------------------
# X-Forwarded-For/-Proto are trusted only from the addresses in FORWARDED_ALLOW_IPS (gunicorn's
# own variable, default 127.0.0.1,::1: a proxy on the same host). Set it to the proxy's address
# when the proxy runs elsewhere.

# Metrics ------------------------------------------------------------------------------------
# Counters from every worker process are summed through files in one directory
# (scim_bridge.workers.metrics): set it up, emptied, before the first worker starts, and tell it
# when a worker exits (gunicorn recycles them after max_requests; their counts stay in the sums).


def on_starting(server: object) -> None:
    from scim_bridge.workers.metrics import command_directory

    command_directory("api")


def child_exit(server: object, worker: object) -> None:
    from scim_bridge.workers.metrics import process_exited

    process_exited(int(getattr(worker, "pid", 0)))
