"""Turning stored documents into response bytes, without parsing them where possible.

Stored documents end with ``"meta":{...}}`` (see :func:`scim_bridge.api.schemas.canonical`), so the
resource's ``meta.location`` is spliced in as bytes; a ListResponse is assembled around the
stored bytes. Only ``attributes``/``excludedAttributes`` need a parse and a model.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from scim2_models import Context, Resource, ResponseParameters

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
    dumped = model.model_dump(
        scim_ctx=Context.RESOURCE_QUERY_RESPONSE,
        response_parameters=_parameters(type(model), tuple(attributes), tuple(excluded)),
    )
    return compact(dialect.render(kind, dumped))


def _roots(model: type[Resource[Any]]) -> tuple[frozenset[str], tuple[str, ...]]:
    """The model's top-level attribute names and schema URNs, lower-cased."""
    names = frozenset(
        (field.serialization_alias or name).lower() for name, field in model.model_fields.items()
    )
    urns = (str(model.__schema__).lower(), *(urn.lower() for urn in model.get_extension_models()))
    return names, urns


def _naming_an_attribute(model: type[Resource[Any]], paths: tuple[str, ...]) -> list[str]:
    names, urns = _roots(model)
    return [
        path
        for path in paths
        if path.split(".", 1)[0].lower() in names
        or path.lower() in urns
        or path.lower().startswith(tuple(f"{urn}:" for urn in urns))
    ]


@lru_cache(maxsize=256)
def _parameters(
    model: type[Resource[Any]], attributes: tuple[str, ...], excluded: tuple[str, ...]
) -> ResponseParameters[Any]:
    """The parsed lists, once per distinct request rather than once per document of a page.

    scim2-models compares every attribute of a document with every entry, so entries that name
    no attribute of the model are left out first: they can match nothing. When none is left of
    ``attributes``, ``id`` (returned always) stands for "nothing more".
    """
    kept = _naming_an_attribute(model, attributes) or (["id"] if attributes else [])
    dropped = _naming_an_attribute(model, excluded)
    return ResponseParameters.model_validate(
        {"attributes": kept or None, "excludedAttributes": dropped or None}
    )


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
