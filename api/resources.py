"""Falcon resources for ``/Users`` and ``/Groups``: read params, make one call, set ``resp``."""

from __future__ import annotations

import falcon

from api.reads import ReadService, parse_filter
from api.render import list_response, project, version_of, with_location
from api.requests import listing, read_json
from api.writes import WriteService, Written
from workers.readmodel import Kind, dumps

SCIM_JSON = "application/scim+json"


class Endpoint:
    """What both resources of one kind share: the services, the limits, the rendering."""

    def __init__(
        self,
        kind: Kind,
        reads: ReadService,
        writes: WriteService,
        *,
        max_body_bytes: int,
        default_count: int,
        max_count: int,
    ) -> None:
        self.kind = kind
        self.reads = reads
        self.writes = writes
        self.max_body_bytes = max_body_bytes
        self.default_count = default_count
        self.max_count = max_count

    def location(self, req: falcon.Request, rid: str) -> str:
        """The absolute URL of a resource, under the prefix the request came through."""
        base = req.prefix + req.path[: req.path.index("/" + self.kind.endpoint)]
        return f"{base}/{self.kind.endpoint}/{rid}"

    def render(self, req: falcon.Request, raw: bytes, rid: str) -> bytes:
        """A stored document as the response body, projected if the request asks."""
        body = with_location(raw, self.location(req, rid))
        attributes = [a for a in (req.get_param("attributes") or "").split(",") if a.strip()]
        excluded = [a for a in (req.get_param("excludedAttributes") or "").split(",") if a.strip()]
        if attributes or excluded:
            body = project(self.kind, body, attributes, excluded)
        return body

    def respond_written(
        self, req: falcon.Request, resp: falcon.Response, written: Written, status: str
    ) -> None:
        """The answer to a create, replace or patch: the stored resource and its ETag."""
        assert written.document is not None
        raw = dumps(written.document).encode()
        resp.status = status
        resp.content_type = SCIM_JSON
        resp.data = self.render(req, raw, written.id)
        resp.set_header("ETag", written.document["meta"]["version"])
        if status == falcon.HTTP_201:
            resp.set_header("Location", self.location(req, written.id))


class Collection:
    """``/Users`` or ``/Groups``: list and create."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        ep = self.endpoint
        params = listing(
            req, default_count=ep.default_count, max_count=ep.max_count, strict_start=False
        )
        scim_filter = parse_filter(ep.kind, params.filter) if params.filter else None
        page = ep.reads.page(ep.kind, scim_filter, params.start_index, params.count)
        resources = [ep.render(req, raw, _id_of(raw)) for raw in page.documents]
        resp.content_type = SCIM_JSON
        resp.data = list_response(page.total, params.start_index, resources)

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        ep = self.endpoint
        written = ep.writes.create(ep.kind, read_json(req, ep.max_body_bytes))
        ep.respond_written(req, resp, written, falcon.HTTP_201)


class Item:
    """``/Users/{id}`` or ``/Groups/{id}``: get, replace, patch, delete."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint

    def on_get(self, req: falcon.Request, resp: falcon.Response, rid: str) -> None:
        ep = self.endpoint
        raw = ep.reads.get(ep.kind, rid)
        resp.content_type = SCIM_JSON
        resp.data = ep.render(req, raw, rid)
        version = version_of(raw)
        if version:
            resp.set_header("ETag", version)

    def on_put(self, req: falcon.Request, resp: falcon.Response, rid: str) -> None:
        ep = self.endpoint
        written = ep.writes.replace(
            ep.kind, rid, read_json(req, ep.max_body_bytes), req.get_header("If-Match")
        )
        ep.respond_written(req, resp, written, falcon.HTTP_200)

    def on_patch(self, req: falcon.Request, resp: falcon.Response, rid: str) -> None:
        ep = self.endpoint
        written = ep.writes.patch(
            ep.kind, rid, read_json(req, ep.max_body_bytes), req.get_header("If-Match")
        )
        ep.respond_written(req, resp, written, falcon.HTTP_200)

    def on_delete(self, req: falcon.Request, resp: falcon.Response, rid: str) -> None:
        ep = self.endpoint
        ep.writes.delete(ep.kind, rid, req.get_header("If-Match"))
        resp.status = falcon.HTTP_204


def _id_of(raw: bytes) -> str:
    # Stored documents start with {"schemas":[...],"id":"..."; find it without parsing.
    start = raw.index(b'"id":"') + 6
    return raw[start : raw.index(b'"', start)].decode()
