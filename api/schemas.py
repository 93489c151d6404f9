"""The SCIM models scim-bridge serves, and how a validated model becomes a stored document.

SCIM 2.0 is the canonical model (RFC 7643, validated with scim2-models): Users with the
enterprise extension and Okta's custom user extension ``urn:okta:{appName}:1.0:user:{schemaName}``
(attributes and types from the settings), Groups with Okta's ``urn:okta:custom:group:1.0``
(``description``). Every stored document is its JSON with ``id`` after ``schemas`` and ``meta``
last, so the read path can add ``meta.location`` without parsing (see
:mod:`scim_bridge.api.render`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from falcon import ETag
from scim2_models import URN, Context, EnterpriseUser, Extension, Group, Resource, User

from scim_bridge.store import Kind
from scim_bridge.workers.settings import Settings

OKTA_GROUP_URN = "urn:okta:custom:group:1.0"
CUSTOM_TYPES: dict[str, type] = {"string": str, "boolean": bool, "integer": int, "double": float}


def extension(class_name: str, urn: str, attributes: dict[str, type]) -> type[Extension]:
    """A schema extension class with optional attributes of the given Python types."""
    namespace: dict[str, Any] = {
        "__schema__": URN(urn),
        "__module__": __name__,
        "__annotations__": {name: kind | None for name, kind in attributes.items()},
        "__doc__": f"The {urn} schema extension.",
    }
    namespace.update(dict.fromkeys(attributes))
    return type(class_name, (Extension,), namespace)


@dataclass(frozen=True)
class ScimSchemas:
    """The resource models of one deployment (they depend on the Okta settings)."""

    user: type[Resource[Any]]
    group: type[Resource[Any]]
    okta_user_urn: str

    def model(self, kind: Kind) -> type[Resource[Any]]:
        """The model of a resource kind."""
        return self.user if kind is Kind.USER else self.group

    def extensions(self, kind: Kind) -> dict[str, type[Extension]]:
        """URN -> extension model, for a resource kind."""
        return dict(self.model(kind).get_extension_models())


def build_schemas(settings: Settings) -> ScimSchemas:
    """The models for ``settings``."""
    okta_user = extension(
        "OktaCustomUser",
        settings.okta_user_urn,
        {name: CUSTOM_TYPES[kind] for name, kind in settings.okta_user_attributes.items()},
    )
    okta_group = extension("OktaCustomGroup", OKTA_GROUP_URN, {"description": str})
    user: type[Resource[Any]] = User[EnterpriseUser | okta_user]  # type: ignore[valid-type]
    group: type[Resource[Any]] = Group[okta_group]  # type: ignore[misc]
    return ScimSchemas(user=user, group=group, okta_user_urn=settings.okta_user_urn)


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
    schemas = dumped.pop("schemas", None) or [str(type(model).__schema__)]
    doc: dict[str, Any] = {"schemas": schemas, "id": rid, **dumped}
    doc["meta"] = {
        "resourceType": kind.resource_type,
        "created": created,
        "lastModified": last_modified,
        "version": etag(version),
    }
    return doc


def etag(version: int) -> str:
    """The weak ETag of a version, as the ``ETag`` header and ``meta.version`` carry it."""
    tag = ETag(str(version))
    tag.is_weak = True
    return tag.dumps()
