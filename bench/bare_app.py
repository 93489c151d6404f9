"""The yardstick for bench_core.py: a bare Falcon app doing the minimum Redis work per request.

It reads the same keys scim-bridge's read model writes (see store/keys.py), with no
authentication, validation, filter parsing or rendering, and is served by gunicorn with the same
settings as ``scim-bridge serve`` (gthread, same workers, threads and keep-alive). The ratio
scim-bridge / bare measured in one run tells how much of a figure is the api's own work and how
much is the machine, gunicorn and Redis.

    gunicorn --pythonpath bench bare_app:app -k gthread -w 2 --threads 16

Routes (``{p}`` is ``BARE_KEY_PREFIX``, default ``sb``):

* ``GET /docs/{id}``                -> HGET {p}:u:{id} doc
* ``GET /by-name?userName=...``     -> HGET {p}:u:ix:userName <lower-cased>, then the document
* ``GET /page?startIndex=&count=``  -> ZRANGE {p}:u:order, then HGET of each (one pipeline)
"""

from __future__ import annotations

import os

import falcon
import redis

PREFIX = os.environ.get("BARE_KEY_PREFIX", "sb")
# gunicorn imports this module in each worker (no preload), so each process has its own pool.
CLIENT = redis.Redis.from_url(
    os.environ.get("BARE_REDIS_URL", "redis://127.0.0.1:6379/0"), max_connections=256
)
JSON = "application/scim+json"


class Doc:
    def on_get(self, req: falcon.Request, resp: falcon.Response, rid: str) -> None:
        raw = CLIENT.hget(f"{PREFIX}:u:r:{rid}", "doc")
        if not raw:
            raise falcon.HTTPNotFound()
        resp.content_type = JSON
        resp.data = raw


class ByName:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        name = req.get_param("userName", required=True)
        rid = CLIENT.hget(f"{PREFIX}:u:ix:userName", name.lower())
        raw = CLIENT.hget(f"{PREFIX}:u:r:{rid.decode()}", "doc") if rid else None
        resp.content_type = JSON
        resp.data = b'{"Resources":[' + (raw or b"") + b"]}"


class Page:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        start = req.get_param_as_int("startIndex", default=1)
        count = req.get_param_as_int("count", default=100)
        ids = CLIENT.zrange(f"{PREFIX}:u:order", start - 1, start + count - 2)
        pipe = CLIENT.pipeline(transaction=False)
        for rid in ids:
            pipe.hget(f"{PREFIX}:u:r:{rid.decode()}", "doc")
        docs = [raw for raw in pipe.execute() if raw]
        resp.content_type = JSON
        resp.data = b'{"Resources":[' + b",".join(docs) + b"]}"


app = falcon.App()
app.add_route("/docs/{rid}", Doc())
app.add_route("/by-name", ByName())
app.add_route("/page", Page())
