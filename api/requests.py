"""Reading what a request carries: a bounded JSON body and the listing parameters."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import falcon

from scim_bridge.api.errors import ScimError

JSON_TYPES = ("application/scim+json", "application/json")
# SCIM resources nest a few levels (a user's name, an extension's manager); 32 leaves room for
# any real body while refusing the deep nesting that would exhaust the parser's stack.
MAX_JSON_DEPTH = 32
# startIndex and count are 1-based positions in a list Redis holds: anything past the largest
# integer JSON carries exactly cannot name a real position.
MAX_INDEX = 2**53 - 1


def _check_parsed(value: Any, depth: int = 0) -> None:
    """Refuse nesting past :data:`MAX_JSON_DEPTH` and strings that are not Unicode text."""
    if depth > MAX_JSON_DEPTH:
        raise ScimError(400, f"the body nests deeper than {MAX_JSON_DEPTH} levels", "invalidSyntax")
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ScimError(
                400, "the body holds a lone surrogate (\\ud800-\\udfff): not text", "invalidSyntax"
            ) from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_parsed(key, depth + 1)
            _check_parsed(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_parsed(item, depth + 1)


def _read_body(req: falcon.Request, max_body_bytes: int) -> bytes:
    """At most ``max_body_bytes + 1`` bytes of the body, with or without a Content-Length."""
    if req.content_length is None and "chunked" in (req.get_header("Transfer-Encoding") or ""):
        # No length: the server decodes the chunks; read one byte past the limit to detect it.
        return bytes(req.stream.read(max_body_bytes + 1))
    return bytes(req.bounded_stream.read(max_body_bytes + 1))


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
    raw = _read_body(req, max_body_bytes)
    if len(raw) > max_body_bytes:
        raise ScimError(413, f"the body exceeds the limit of {max_body_bytes} bytes")
    try:
        body = json.loads(raw)
    except RecursionError:
        raise ScimError(
            400, f"the body nests deeper than {MAX_JSON_DEPTH} levels", "invalidSyntax"
        ) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ScimError(400, f"the body is not valid JSON: {exc}", "invalidSyntax") from None
    if not isinstance(body, dict):
        raise ScimError(400, "the body must be a JSON object", "invalidSyntax")
    _check_parsed(body)
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
        number = int(value)
    except ValueError:
        raise ScimError(400, f"{name} must be an integer, not {value!r}", "invalidValue") from None
    return _bounded(name, number)


def _bounded(name: str, number: int) -> int:
    if number > MAX_INDEX:
        raise ScimError(400, f"{name} must be at most {MAX_INDEX}, not {number}", "invalidValue")
    return number


# An attribute path (RFC 7644 §3.10): an optional schema URN, an attribute name, an optional
# sub-attribute. Anything else cannot name an attribute and is refused, not ignored.
_ATTRIBUTE_PATH = re.compile(
    r"^(?:urn:[A-Za-z0-9][A-Za-z0-9.:_-]*:)?[A-Za-z][A-Za-z0-9_$-]*(?:\.[A-Za-z][A-Za-z0-9_$-]*)?$"
)


def attribute_paths(name: str, values: Sequence[str], max_entries: int) -> list[str]:
    """``values`` checked as attribute paths, each once (names are case-insensitive).

    400 ``tooMany`` past ``max_entries``, ``invalidValue`` naming the first bad path. Projecting
    a document costs a comparison of every attribute with every entry, so repeats are dropped.
    """
    if len(values) > max_entries:
        raise ScimError(
            400,
            f"{name} lists {len(values)} attributes; the limit is {max_entries} "
            "(SCIM_BRIDGE_MAX_ATTRIBUTES)",
            "tooMany",
        )
    for value in values:
        if not _ATTRIBUTE_PATH.match(value):
            raise ScimError(
                400, f"{name} must list attribute paths; {value!r} is not one", "invalidValue"
            )
    return list({value.lower(): value for value in values}.values())


def names(req: falcon.Request, name: str, max_entries: int) -> list[str]:
    """A comma-separated list parameter (``attributes``, ``excludedAttributes``)."""
    value = req.get_param(name) or ""
    parts = [part.strip() for part in value.split(",") if part.strip()]
    return attribute_paths(name, parts, max_entries)


def _exclusive(attributes: Sequence[str], excluded: Sequence[str]) -> None:
    if attributes and excluded:
        raise ScimError(
            400, "attributes and excludedAttributes cannot be given together", "invalidValue"
        )


def projection(req: falcon.Request, max_attributes: int) -> Listing:
    """Only ``attributes``/``excludedAttributes``, for a response that is one resource."""
    attributes = names(req, "attributes", max_attributes)
    excluded = names(req, "excludedAttributes", max_attributes)
    _exclusive(attributes, excluded)
    return Listing(1, 0, None, attributes, excluded)


def listing(
    req: falcon.Request,
    *,
    default_count: int,
    max_count: int,
    strict_start: bool,
    max_attributes: int,
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
    attributes = names(req, "attributes", max_attributes)
    excluded = names(req, "excludedAttributes", max_attributes)
    _exclusive(attributes, excluded)
    return Listing(
        start,
        count,
        text if text else None,
        attributes,
        excluded,
        req.get_param("sortBy") or None,
        _descending(req.get_param("sortOrder")),
    )


def _descending(order: object) -> bool:
    if order is not None and not isinstance(order, str):
        raise ScimError(400, f"sortOrder must be a string, not {order!r}", "invalidValue")
    if order is None or order == "" or order.lower() == "ascending":
        return False
    if order.lower() == "descending":
        return True
    raise ScimError(
        400, f"sortOrder must be ascending or descending, not {order!r}", "invalidValue"
    )


SEARCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"


def search_listing(
    body: dict[str, Any], *, default_count: int, max_count: int, max_attributes: int
) -> Listing:
    """The parameters of a ``POST .search`` body (RFC 7644 §3.4.3)."""
    if SEARCH_SCHEMA not in (body.get("schemas") or []):
        raise ScimError(
            400, f"a search request must list {SEARCH_SCHEMA} in schemas", "invalidSyntax"
        )

    def integer(name: str, default: int) -> int:
        value = body.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ScimError(400, f"{name} must be an integer, not {value!r}", "invalidValue")
        return _bounded(name, value)

    def names(name: str) -> list[str]:
        value = body.get(name) or []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ScimError(400, f"{name} must be a list of attribute names", "invalidValue")
        return attribute_paths(name, value, max_attributes)

    text = body.get("filter")
    if text is not None and not isinstance(text, str):
        raise ScimError(400, "filter must be a string", "invalidFilter")
    sort_by = body.get("sortBy")
    attributes, excluded = names("attributes"), names("excludedAttributes")
    _exclusive(attributes, excluded)
    return Listing(
        max(1, integer("startIndex", 1)),
        max(0, min(integer("count", default_count), max_count)),
        text or None,
        attributes,
        excluded,
        sort_by if isinstance(sort_by, str) and sort_by else None,
        _descending(body.get("sortOrder")),
    )
