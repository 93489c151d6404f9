"""Request rate, errors and duration of the api (the RED method), and what became of each write.

A Falcon middleware, first in the chain so its clock includes authentication. Labels come from
the matched route's template (``/scim/v2/Users/{rid}``), never from the path, so ids and userNames
never become series; a request that was never routed (refused credentials, unknown path) is
``route="unrouted"``.

A write's result is read off its answer: ``pending`` when the answer says the change finishes in
the background (``X-SCIM-Bridge-Sync: pending`` or 202), ``refused`` when the legacy application
refused it within the request (``X-SCIM-Bridge-Sync: failed``), ``rejected`` for any other error
(invalid body, uniqueness in the read model, backpressure), else ``confirmed``.
"""

from __future__ import annotations

import time

import falcon
from prometheus_client import Counter, Histogram

from scim_bridge.api.resources import Collection, Item
from scim_bridge.store import Kind
from scim_bridge.workers.metrics import metrics, show_write_series

UNROUTED = "unrouted"
_WRITE_OPS = {"POST": "create", "PUT": "replace", "PATCH": "patch", "DELETE": "delete"}
SYNC_HEADER = "X-SCIM-Bridge-Sync"


def dialect_label(route: str) -> str:
    """The SCIM dialect of a route template: ``2.0``, ``1.1``, or ``none`` (health, metrics)."""
    if route.startswith("/scim/v2"):
        return "2.0"
    if route.startswith("/scim"):
        return "1.1"
    return "none"


def write_result(status: int, sync: str | None) -> str:
    """``confirmed``, ``pending``, ``refused`` or ``rejected``, from a write's answer."""
    if status >= 400:
        return "refused" if sync == "failed" else "rejected"
    if status == 202 or sync == "pending":
        return "pending"
    return "confirmed"


class RequestMetrics:
    """Falcon middleware counting and timing every request, and classifying every write."""

    def __init__(self) -> None:
        self._metrics = metrics()
        # Label lookups take a lock and build a key; the label sets are few, so keep the children.
        self._http: dict[tuple[str, str, str], tuple[Counter, Histogram]] = {}
        self._writes: dict[tuple[str, str, str], Counter] = {}
        show_write_series(kind.resource_type for kind in Kind)

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.started_at = time.perf_counter()

    def process_response(
        self,
        req: falcon.Request,
        resp: falcon.Response,
        resource: object,
        req_succeeded: bool,
    ) -> None:
        started = req.context.get("started_at")
        if started is None:
            return
        elapsed = time.perf_counter() - started
        route = req.uri_template or UNROUTED
        status = resp.status_code
        key = (req.method, route, str(status))
        children = self._http.get(key)
        if children is None:
            labels = (*key, dialect_label(route))
            children = (
                self._metrics.http_requests.labels(*labels),
                self._metrics.http_request_duration.labels(*labels),
            )
            self._http[key] = children
        children[0].inc()
        children[1].observe(elapsed)
        op = _WRITE_OPS.get(req.method)
        if op is None or route.endswith("/.search"):
            return
        # POST creates on a collection; PUT, PATCH and DELETE change an item.
        if not isinstance(resource, Collection if op == "create" else Item):
            return
        kind = resource.endpoint.kind
        result = write_result(status, resp.get_header(SYNC_HEADER))
        write_key = (kind.resource_type, op, result)
        counter = self._writes.get(write_key)
        if counter is None:
            counter = self._metrics.writes.labels(*write_key)
            self._writes[write_key] = counter
        counter.inc()
