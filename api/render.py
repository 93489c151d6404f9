"""Turning stored documents into response bytes, without parsing them where possible.

Stored documents end with ``"meta":{...}}`` (see :func:`api.schemas.canonical`), so the
resource's ``meta.location`` is spliced in as bytes; a ListResponse is assembled around the
stored bytes. Only ``attributes``/``excludedAttributes`` need a parse and a model.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from scim2_models import Context, ResponseParameters

from api.schemas import MODELS
from workers.readmodel import Kind

LIST_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:ListResponse"


def with_location(raw: bytes, location: str) -> bytes:
    """Add ``meta.location`` to a stored document."""
    return raw[:-2] + b',"location":' + json.dumps(location).encode() + b"}}"


def version_of(raw: bytes) -> str | None:
    """The ``meta.version`` (weak ETag) of a stored document."""
    start = raw.rfind(b'"version":"')
    if start < 0:
        return None
    end = raw.find(b'"}', start + 11)
    return json.loads(b'"' + raw[start + 11 : end] + b'"') if end > 0 else None


def project(kind: Kind, raw: bytes, attributes: Sequence[str], excluded: Sequence[str]) -> bytes:
    """Apply ``attributes``/``excludedAttributes`` (RFC 7644 §3.9) to a rendered document."""
    model = MODELS[kind].model_validate(json.loads(raw))
    parameters: ResponseParameters[Any] = ResponseParameters.model_validate(
        {"attributes": list(attributes) or None, "excludedAttributes": list(excluded) or None}
    )
    dumped = model.model_dump(
        scim_ctx=Context.RESOURCE_QUERY_RESPONSE, response_parameters=parameters
    )
    return json.dumps(dumped, separators=(",", ":"), ensure_ascii=False).encode()


def list_response(total: int, start_index: int, resources: Sequence[bytes]) -> bytes:
    """A SCIM 2.0 ListResponse around already rendered resources."""
    head: dict[str, Any] = {
        "schemas": [LIST_SCHEMA],
        "totalResults": total,
        "startIndex": start_index,
        "itemsPerPage": len(resources),
    }
    return (
        json.dumps(head, separators=(",", ":"))[:-1].encode()
        + b',"Resources":['
        + b",".join(resources)
        + b"]}"
    )
