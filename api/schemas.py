"""The SCIM models scim-bridge serves, and how a validated model becomes a stored document.

SCIM 2.0 is the canonical model (RFC 7643, validated with scim2-models); every stored document
is its JSON with ``id`` after ``schemas`` and ``meta`` last, so the read path can add
``meta.location`` without parsing (see :mod:`api.render`).
"""

from __future__ import annotations

from typing import Any

from scim2_models import Context, EnterpriseUser, Group, Resource, User

from workers.readmodel import Kind

UserModel = User[EnterpriseUser]
GroupModel = Group

MODELS: dict[Kind, type[Resource[Any]]] = {Kind.USER: UserModel, Kind.GROUP: GroupModel}


def canonical(
    kind: Kind,
    model: Resource[Any],
    rid: str,
    *,
    created: str,
    last_modified: str,
    version: int,
) -> dict[str, Any]:
    """The document stored for a validated resource: no password, ``meta`` last."""
    dumped = model.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE)
    dumped.pop("meta", None)
    dumped.pop("id", None)
    dumped.pop("groups", None)  # read-only: memberships change through /Groups
    schemas = dumped.pop("schemas", None) or [str(MODELS[kind].__schema__)]
    doc: dict[str, Any] = {"schemas": schemas, "id": rid, **dumped}
    doc["meta"] = {
        "resourceType": kind.resource_type,
        "created": created,
        "lastModified": last_modified,
        "version": etag(version),
    }
    return doc


def etag(version: int) -> str:
    """The weak ETag of a version."""
    return f'W/"{version}"'
