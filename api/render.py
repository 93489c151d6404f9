"""Turning stored documents into response bytes, without parsing them where possible.

Stored documents end with ``"meta":{...}}`` (see :func:`scim_bridge.api.schemas.canonical`), so the
resource's ``meta.location`` is spliced in as bytes; a ListResponse is assembled around the
stored bytes. Only ``attributes``/``excludedAttributes`` need a parse and a model.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from scim2_models import Context, ResponseParameters

from scim_bridge.api.dialects import Dialect
from scim_bridge.api.schemas import ScimSchemas
from scim_bridge.store import Kind, dumps


def compact(document: Any) -> bytes:
    """Compact JSON bytes (the store's one compact form, :func:`scim_bridge.store.dumps`)."""
    return dumps(document).encode()


def with_location(raw: bytes, location: str) -> bytes:
    """Add ``meta.location`` to a stored document."""
    return raw[:-2] + b',"location":' + json.dumps(location).encode() + b"}}"


def version_of(raw: bytes) -> str | None:
    """The ``meta.version`` (weak ETag) of a stored document."""
    start = raw.rfind(b'"version":"')
    if start < 0:
        return None
    end = raw.find(b'"}', start + 11)
    value = json.loads(b'"' + raw[start + 11 : end] + b'"') if end > 0 else None
    return value if isinstance(value, str) else None


def project(
    schemas: ScimSchemas,
    kind: Kind,
    raw: bytes,
    dialect: Dialect,
    attributes: Sequence[str],
    excluded: Sequence[str],
) -> bytes:
    """Apply ``attributes``/``excludedAttributes`` (RFC 7644 §3.9) to a rendered document."""
    canonical = dialect.request(kind, json.loads(raw))
    model = schemas.model(kind).model_validate(canonical)
    parameters: ResponseParameters[Any] = ResponseParameters.model_validate(
        {"attributes": list(attributes) or None, "excludedAttributes": list(excluded) or None}
    )
    dumped = model.model_dump(
        scim_ctx=Context.RESOURCE_QUERY_RESPONSE, response_parameters=parameters
    )
    return compact(dialect.render(kind, dumped))


def list_response(
    dialect: Dialect, total: int, start_index: int, resources: Sequence[bytes]
) -> bytes:
    """A ListResponse around already rendered resources."""
    head: dict[str, Any] = {
        "schemas": [dialect.list_schema],
        "totalResults": total,
        "startIndex": start_index,
        "itemsPerPage": len(resources),
    }
    return compact(head)[:-1] + b',"Resources":[' + b",".join(resources) + b"]}"
