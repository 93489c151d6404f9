"""Discovery endpoints (RFC 7644 §4): ServiceProviderConfig, ResourceTypes, Schemas.

Read-only: writes get 405 (Falcon answers that for missing responders, rendered as SCIM errors).
"""

from __future__ import annotations

import json
from typing import Any

import falcon
from scim2_models import (
    AuthenticationScheme,
    Bulk,
    ChangePassword,
    Context,
    ETag,
    Filter,
    NotFoundException,
    Patch,
    ResourceType,
    ServiceProviderConfig,
    Sort,
)

from api.render import LIST_SCHEMA
from api.schemas import MODELS
from workers.settings import Settings

SCIM_JSON = "application/scim+json"


def _dump(model: Any) -> dict[str, Any]:
    return dict(model.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE))


def authentication_schemes(settings: Settings) -> list[AuthenticationScheme]:
    """The configured scheme, as discovery advertises it."""
    if settings.auth_mode == "basic":
        return [
            AuthenticationScheme(
                type=AuthenticationScheme.Type.httpbasic,
                name="HTTP Basic",
                description="HTTP Basic authentication",
                primary=True,
            )
        ]
    if settings.auth_mode == "header":
        return [
            AuthenticationScheme(
                type=AuthenticationScheme.Type.oauthbearertoken,
                name=f"HTTP header {settings.auth_header_name}",
                description=f"A secret value in the {settings.auth_header_name} header",
                primary=True,
            )
        ]
    return []


def service_provider_config(settings: Settings) -> dict[str, Any]:
    """RFC 7643 §5 ServiceProviderConfig of this deployment."""
    config = ServiceProviderConfig(
        patch=Patch(supported=True),
        bulk=Bulk(supported=False, max_operations=0, max_payload_size=0),
        filter=Filter(supported=True, max_results=settings.max_page_size),
        change_password=ChangePassword(supported=True),
        sort=Sort(supported=False),
        etag=ETag(supported=True),
        authentication_schemes=authentication_schemes(settings),
    )
    return _dump(config)


class Document:
    """A fixed JSON document (computed once at start-up)."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.body = json.dumps(body).encode()

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = SCIM_JSON
        resp.data = self.body


class Listed:
    """``/ResourceTypes`` or ``/Schemas``: a ListResponse, and each member by id."""

    def __init__(self, members: dict[str, dict[str, Any]]) -> None:
        self.members = members

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = SCIM_JSON
        resources = list(self.members.values())
        resp.data = json.dumps(
            {
                "schemas": [LIST_SCHEMA],
                "totalResults": len(resources),
                "startIndex": 1,
                "itemsPerPage": len(resources),
                "Resources": resources,
            }
        ).encode()

    def on_get_member(self, req: falcon.Request, resp: falcon.Response, member: str) -> None:
        if member not in self.members:
            raise NotFoundException(detail=f"{member} not found")
        resp.content_type = SCIM_JSON
        resp.data = json.dumps(self.members[member]).encode()


def resource_types() -> dict[str, dict[str, Any]]:
    """ResourceType documents of Users and Groups."""
    found = {}
    for model in MODELS.values():
        document = _dump(ResourceType.from_resource(model))
        found[document["id"]] = document
    return found


def schemas() -> dict[str, dict[str, Any]]:
    """Schema documents of every served model and extension."""
    found: dict[str, dict[str, Any]] = {}
    for model in MODELS.values():
        for described in (model, *getattr(model, "get_extension_models", lambda: {})().values()):
            document = _dump(described.to_schema())
            found[document["id"]] = document
    return found
