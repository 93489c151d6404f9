"""Reading what a request carries: a bounded JSON body and the listing parameters."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import falcon

from scim_bridge.api.errors import ScimError

JSON_TYPES = ("application/scim+json", "application/json")


def read_json(req: falcon.Request, max_body_bytes: int) -> dict[str, Any]:
    """The request body as a JSON object; 413 past ``max_body_bytes``, 400 when malformed."""
    content_type = (req.content_type or "application/json").split(";")[0].strip().lower()
    if content_type not in JSON_TYPES:
        raise ScimError(
            415, f"send the body as application/scim+json or application/json, not {content_type}"
        )
    length = req.content_length
    if length is not None and length > max_body_bytes:
        raise ScimError(413, f"the body is {length} bytes; the limit is {max_body_bytes}")
    raw = req.bounded_stream.read(max_body_bytes + 1)
    if len(raw) > max_body_bytes:
        raise ScimError(413, f"the body exceeds the limit of {max_body_bytes} bytes")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ScimError(400, f"the body is not valid JSON: {exc}", "invalidSyntax") from None
    if not isinstance(body, dict):
        raise ScimError(400, "the body must be a JSON object", "invalidSyntax")
    return body


@dataclass(frozen=True)
class Listing:
    """``startIndex``, ``count``, ``filter``, ``attributes`` and ``excludedAttributes``."""

    start_index: int
    count: int
    filter: str | None
    attributes: Sequence[str]
    excluded_attributes: Sequence[str]
    sort_by: str | None = None
    descending: bool = False


def _integer(req: falcon.Request, name: str, default: int) -> int:
    value = req.get_param(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ScimError(400, f"{name} must be an integer, not {value!r}", "invalidValue") from None


def names(req: falcon.Request, name: str) -> list[str]:
    """A comma-separated list parameter (``attributes``, ``excludedAttributes``)."""
    value = req.get_param(name) or ""
    return [part.strip() for part in value.split(",") if part.strip()]


def listing(
    req: falcon.Request, *, default_count: int, max_count: int, strict_start: bool
) -> Listing:
    """Parse the listing parameters (RFC 7644 §3.4.2.4): a count above the maximum is capped.

    ``startIndex`` below 1 is read as 1 in SCIM 2.0 (the RFC says so) and refused when
    ``strict_start`` (what the Okta SDK does in SCIM 1.1).
    """
    start = _integer(req, "startIndex", 1)
    if start < 1:
        if strict_start:
            raise ScimError(400, f"startIndex must be 1 or more, not {start}", "invalidValue")
        start = 1
    count = max(0, min(_integer(req, "count", default_count), max_count))
    text = req.get_param("filter")
    return Listing(
        start,
        count,
        text if text else None,
        names(req, "attributes"),
        names(req, "excludedAttributes"),
        req.get_param("sortBy") or None,
        _descending(req.get_param("sortOrder")),
    )


def _descending(order: str | None) -> bool:
    if order is None or order == "" or order.lower() == "ascending":
        return False
    if order.lower() == "descending":
        return True
    raise ScimError(
        400, f"sortOrder must be ascending or descending, not {order!r}", "invalidValue"
    )


SEARCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"


def search_listing(body: dict[str, Any], *, default_count: int, max_count: int) -> Listing:
    """The parameters of a ``POST .search`` body (RFC 7644 §3.4.3)."""
    if SEARCH_SCHEMA not in (body.get("schemas") or []):
        raise ScimError(
            400, f"a search request must list {SEARCH_SCHEMA} in schemas", "invalidSyntax"
        )

    def integer(name: str, default: int) -> int:
        value = body.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ScimError(400, f"{name} must be an integer, not {value!r}", "invalidValue")
        return value

    def names(name: str) -> list[str]:
        value = body.get(name) or []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ScimError(400, f"{name} must be a list of attribute names", "invalidValue")
        return value

    text = body.get("filter")
    if text is not None and not isinstance(text, str):
        raise ScimError(400, "filter must be a string", "invalidFilter")
    sort_by = body.get("sortBy")
    return Listing(
        max(1, integer("startIndex", 1)),
        max(0, min(integer("count", default_count), max_count)),
        text or None,
        names("attributes"),
        names("excludedAttributes"),
        sort_by if isinstance(sort_by, str) and sort_by else None,
        _descending(body.get("sortOrder")),
    )
