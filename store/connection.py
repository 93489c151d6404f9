"""Redis clients: the one place that decides how scim-bridge reaches Redis.

Either ``redis_url`` names the server, or Sentinel finds the primary (redis-py's
``Sentinel(...).master_for(...)``) and the URL gives only the database number and credentials.
A Sentinel-managed client asks the Sentinels for the primary whenever it opens a connection,
so after a failover the next request reaches the promoted replica without a restart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.connection import parse_url
from redis.retry import Retry
from redis.sentinel import Sentinel


@dataclass(frozen=True)
class Sentinels:
    """Where the primary is found: the Sentinel nodes, the monitored name, their password."""

    nodes: tuple[tuple[str, int], ...]
    master: str
    password: str | None = field(default=None, repr=False)


def redis_client(
    url: str,
    *,
    timeout_s: float,
    blocking_s: float = 0.0,
    sentinels: Sentinels | None = None,
) -> redis.Redis:
    """A client with short timeouts, so a Redis outage fails requests fast instead of hanging.

    ``blocking_s`` lengthens the socket timeout for clients that issue blocking commands
    (``BLPOP``, ``WAIT``). With ``sentinels``, the client follows the primary they name.
    """
    options: dict[str, Any] = {
        "socket_connect_timeout": timeout_s,
        "socket_timeout": timeout_s + blocking_s,
        "health_check_interval": 30,
        "max_connections": 256,
        # No silent retries: a request must fail within the timeout, not a multiple of it.
        "retry": Retry(NoBackoff(), 0),
    }
    if sentinels is None:
        return redis.Redis.from_url(url, **options)
    target = parse_url(url)  # type: ignore[no-untyped-call]
    credentials = {k: target[k] for k in ("username", "password") if target.get(k)}
    sentinel_options: dict[str, Any] = {
        "socket_connect_timeout": timeout_s,
        "socket_timeout": timeout_s,
        "retry": Retry(NoBackoff(), 0),
    }
    if sentinels.password:
        sentinel_options["password"] = sentinels.password
    nodes = list(sentinels.nodes)
    manager = Sentinel(nodes, sentinel_kwargs=sentinel_options)  # type: ignore[no-untyped-call]
    client: redis.Redis = manager.master_for(  # type: ignore[no-untyped-call]
        sentinels.master, redis.Redis, db=int(target.get("db", 0)), **credentials, **options
    )
    return client
