"""Falcon resources for ``/Users`` and ``/Groups``: read params, make one call, set ``resp``.

One set of classes serves both dialects; the :class:`~scim_bridge.api.dialects.Dialect` of the route
translates request bodies to SCIM 2.0 and renders answers.
"""

from __future__ import annotations

import falcon
from scim2_models import InvalidFilterException

from scim_bridge.api.dialects import Dialect
from scim_bridge.api.errors import ScimError
from scim_bridge.api.limits import RequestLimits
from scim_bridge.api.origin import Origin
from scim_bridge.api.reads import ReadService, parse_filter
from scim_bridge.api.render import compact, list_response, project, version_of, with_location
from scim_bridge.api.requests import Listing, listing, projection, read_json, search_listing
from scim_bridge.api.schemas import ScimSchemas
from scim_bridge.api.strict import check_patch, check_resource
from scim_bridge.api.writes import Preconditions, WriteService, Written
from scim_bridge.store import Kind

SCIM_JSON = "application/scim+json"


class Endpoint:
    """What both resources of one kind and dialect share."""

    def __init__(
        self,
        kind: Kind,
        prefix: str,
        dialect: Dialect,
        schemas: ScimSchemas,
        reads: ReadService,
        writes: WriteService,
        *,
        max_body_bytes: int,
        default_count: int,
        max_count: int,
        origin: Origin,
        limits: RequestLimits,
    ) -> None:
        self.kind = kind
        self.prefix = prefix
        self.dialect = dialect
        self.schemas = schemas
        self.reads = reads
        self.writes = writes
        self.max_body_bytes = max_body_bytes
        self.default_count = default_count
        self.max_count = max_count
        self.origin = origin
        self.limits = limits

    def body(self, req: falcon.Request) -> dict[str, object]:
        """A POST or PUT body, translated to SCIM 2.0 and held to RFC 7643's types."""
        self.origin.of(req)  # a Host that cannot be answered refuses the write before it is stored
        raw = read_json(req, self.max_body_bytes)
        self.limits.check_values(raw)
        body = self.dialect.request(self.kind, raw)
        check_resource(self.kind, body)
        return body

    def location(self, req: falcon.Request, rid: str) -> str:
        """The absolute URL of a resource, under the prefix the request came through."""
        return f"{self.origin.of(req)}{self.prefix}/{self.kind.endpoint}/{rid}"

    def render(
        self,
        req: falcon.Request,
        raw: bytes,
        rid: str,
        listing: Listing | None = None,
    ) -> bytes:
        """A document in the dialect as the response body, projected if the request asks."""
        body = with_location(raw, self.location(req, rid))
        if listing is None:
            listing = projection(req, self.limits.max_attributes)
        if listing.attributes or listing.excluded_attributes:
            body = project(
                self.schemas,
                self.kind,
                body,
                self.dialect,
                listing.attributes,
                listing.excluded_attributes,
            )
        return body

    def page(self, req: falcon.Request, params: Listing) -> tuple[int, list[bytes]]:
        """The total and the rendered resources of one page."""
        scim_filter = (
            parse_filter(self.schemas, self.kind, params.filter) if params.filter else None
        )
        page = self.reads.page(
            self.kind,
            scim_filter,
            params.start_index,
            params.count,
            self.dialect,
            sort_by=params.sort_by,
            descending=params.descending,
        )
        return page.total, [self.render(req, raw, _id_of(raw), params) for raw in page.documents]

    def respond_written(
        self, req: falcon.Request, resp: falcon.Response, written: Written, status: str
    ) -> None:
        """The answer to a create, replace or patch: the stored resource and its ETag."""
        assert written.document is not None
        raw = compact(self.dialect.render(self.kind, written.document))
        resp.status = falcon.HTTP_200 if written.existing else status
        if written.accepted_async:
            resp.status = falcon.HTTP_202
            resp.set_header("Preference-Applied", "respond-async")
        resp.content_type = SCIM_JSON
        resp.data = self.render(req, raw, written.id)
        resp.etag = written.document["meta"]["version"]
        if written.accepted_async or (status == falcon.HTTP_201 and not written.existing):
            # For a 202, the resource itself is where the outcome shows (its sync header).
            resp.set_header("Location", self.location(req, written.id))
        if not written.confirmed:
            resp.set_header("X-SCIM-Bridge-Sync", "pending")


class RootSearch:
    """``POST /.search`` at the root: Users, then Groups, under one filter."""

    def __init__(self, users: Endpoint, groups: Endpoint) -> None:
        self.endpoints = (users, groups)

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        first = self.endpoints[0]
        params = search_listing(
            read_json(req, first.max_body_bytes),
            default_count=first.default_count,
            max_count=first.max_count,
            max_attributes=first.limits.max_attributes,
        )
        everything = Listing(
            1,
            first.max_count * 1000,
            params.filter,
            params.attributes,
            params.excluded_attributes,
            params.sort_by,
            params.descending,
        )
        totals, resources, refused = 0, [], []
        for ep in self.endpoints:
            try:
                total, rendered = ep.page(req, everything)
            except InvalidFilterException as exc:
                # An attribute only the other resource type has matches nothing here.
                refused.append(exc)
                continue
            totals += total
            resources.extend(rendered)
        if len(refused) == len(self.endpoints):
            raise refused[0]
        window = resources[params.start_index - 1 : params.start_index - 1 + params.count]
        resp.content_type = SCIM_JSON
        resp.data = list_response(first.dialect, totals, params.start_index, window)


class Collection:
    """``/Users`` or ``/Groups``: list and create."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        ep = self.endpoint
        params = listing(
            req,
            default_count=ep.default_count,
            max_count=ep.max_count,
            strict_start=ep.dialect.strict_start_index,
            max_attributes=ep.limits.max_attributes,
        )
        total, resources = ep.page(req, params)
        resp.content_type = SCIM_JSON
        resp.data = list_response(ep.dialect, total, params.start_index, resources)

    def on_post_search(self, req: falcon.Request, resp: falcon.Response) -> None:
        """``POST /Users/.search`` (RFC 7644 §3.4.3): a listing with its parameters in a body."""
        ep = self.endpoint
        params = search_listing(
            read_json(req, ep.max_body_bytes),
            default_count=ep.default_count,
            max_count=ep.max_count,
            max_attributes=ep.limits.max_attributes,
        )
        total, resources = ep.page(req, params)
        resp.content_type = SCIM_JSON
        resp.data = list_response(ep.dialect, total, params.start_index, resources)

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        ep = self.endpoint
        written = ep.writes.create(ep.kind, ep.body(req), respond_async=_respond_async(req))
        ep.respond_written(req, resp, written, falcon.HTTP_201)


class Item:
    """``/Users/{id}`` or ``/Groups/{id}``: get, replace, patch, delete."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint

    def on_get(self, req: falcon.Request, resp: falcon.Response, rid: str) -> None:
        ep = self.endpoint
        raw = ep.reads.get(ep.kind, rid, ep.dialect)
        resp.content_type = SCIM_JSON
        resp.data = ep.render(req, raw, rid)
        version = version_of(raw)
        if version:
            resp.etag = version

    def on_put(self, req: falcon.Request, resp: falcon.Response, rid: str) -> None:
        ep = self.endpoint
        written = ep.writes.replace(
            ep.kind,
            rid,
            ep.body(req),
            _if_match(req),
            respond_async=_respond_async(req),
        )
        ep.respond_written(req, resp, written, falcon.HTTP_200)

    def on_patch(self, req: falcon.Request, resp: falcon.Response, rid: str) -> None:
        ep = self.endpoint
        if not ep.dialect.supports_patch:
            raise ScimError(
                405, "PATCH is not part of SCIM 1.1 here: send the whole resource with PUT"
            )
        ep.origin.of(req)
        body = read_json(req, ep.max_body_bytes)
        ep.limits.check_patch(body)
        check_patch(ep.kind, body)
        written = ep.writes.patch(
            ep.kind,
            rid,
            body,
            _if_match(req),
            respond_async=_respond_async(req),
        )
        ep.respond_written(req, resp, written, falcon.HTTP_200)

    def on_delete(self, req: falcon.Request, resp: falcon.Response, rid: str) -> None:
        ep = self.endpoint
        written = ep.writes.delete(ep.kind, rid, _if_match(req), respond_async=_respond_async(req))
        resp.status = falcon.HTTP_204
        if written.accepted_async:
            resp.status = falcon.HTTP_202
            resp.set_header("Preference-Applied", "respond-async")
        if not written.confirmed:
            resp.set_header("X-SCIM-Bridge-Sync", "pending")


def _if_match(req: falcon.Request) -> Preconditions:
    """The If-Match entity-tags; a header that is present but blank matches no version."""
    tags = req.if_match
    if tags is None and req.get_header("If-Match") is not None:
        return []
    return tags


def _respond_async(req: falcon.Request) -> bool:
    prefer = (req.get_header("Prefer") or "").lower()
    return "respond-async" in prefer


def _id_of(raw: bytes) -> str:
    # Stored documents start with {"schemas":[...],"id":"..."; find it without parsing.
    start = raw.index(b'"id":"') + 6
    return raw[start : raw.index(b'"', start)].decode()
