"""Discovery endpoints: ServiceProviderConfig(s), ResourceTypes, Schemas.

The provisioning functions advertised to Okta (``urn:okta:schemas:scim:providerconfig:1.0``
``userManagementCapabilities``) are exactly what the configured adapter declares: the workers
record them in Redis (the api never imports adapter plugins). Writes get 405 (Falcon answers
that for missing responders, rendered as SCIM errors).
"""

from __future__ import annotations

import json
import time
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

from scim_bridge.api.dialects import V1_CORE, Dialect
from scim_bridge.api.errors import ScimError
from scim_bridge.api.schemas import ScimSchemas
from scim_bridge.store import Kind, Store
from scim_bridge.workers.settings import Settings

SCIM_JSON = "application/scim+json"
OKTA_PROVIDER_CONFIG = "urn:okta:schemas:scim:providerconfig:1.0"


def _dump(model: Any) -> dict[str, Any]:
    return dict(model.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE))


def authentication_schemes(settings: Settings) -> list[dict[str, Any]]:
    """The configured scheme, as discovery advertises it."""
    if settings.auth_mode == "basic":
        scheme = AuthenticationScheme(
            type=AuthenticationScheme.Type.httpbasic,
            name="HTTP Basic",
            description="HTTP Basic authentication with the connector's user name and password",
            primary=True,
        )
    elif settings.auth_mode == "header":
        scheme = AuthenticationScheme(
            type=AuthenticationScheme.Type.oauthbearertoken,
            name=f"HTTP header {settings.auth_header_name}",
            description=f"A shared secret sent in the {settings.auth_header_name} header",
            primary=True,
        )
    else:
        return []
    return [_dump(scheme)]


def provider_config(
    settings: Settings, dialect: Dialect, functions: list[str], *, okta_capabilities: bool = True
) -> dict[str, Any]:
    """The ServiceProviderConfig of this deployment in a dialect.

    With ``okta_capabilities`` it carries Okta's ``userManagementCapabilities`` extension;
    without, in SCIM 2.0, it is exactly RFC 7643's document (a strict client's model forbids any
    other key), which is what the singular ``/ServiceProviderConfig`` serves.
    """
    if dialect.name == "1.1":
        # The shape the Okta agent's SCIM 1.1 SDK reads (docs/architecture.md, "The Okta agent").
        config: dict[str, Any] = {
            "schemas": [V1_CORE, OKTA_PROVIDER_CONFIG],
            "documentationUrl": "https://github.com/scim-bridge/scim-bridge#readme",
            "patch": {"supported": False},
            "bulk": {"supported": False, "maxOperations": 0, "maxPayloadSize": 0},
            "filter": {"supported": True, "maxResults": settings.max_page_size},
            "changePassword": {"supported": "PUSH_PASSWORD_UPDATES" in functions},
            "sort": {"supported": False},
            "etag": {"supported": False},
            "authenticationSchemes": authentication_schemes(settings),
        }
    else:
        config = _dump(
            ServiceProviderConfig(
                patch=Patch(supported=True),
                bulk=Bulk(supported=False, max_operations=0, max_payload_size=0),
                filter=Filter(supported=True, max_results=settings.max_page_size),
                change_password=ChangePassword(supported="PUSH_PASSWORD_UPDATES" in functions),
                sort=Sort(supported=True),
                etag=ETag(supported=True),
            )
        )
        config["authenticationSchemes"] = authentication_schemes(settings)
        if not okta_capabilities:
            return config
        config["schemas"] = [*config["schemas"], OKTA_PROVIDER_CONFIG]
    config[OKTA_PROVIDER_CONFIG] = {"userManagementCapabilities": sorted(functions)}
    return config


class ProviderConfig:
    """``/ServiceProviderConfig(s)``: computed from the capabilities the workers recorded."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        dialect: Dialect,
        *,
        okta_capabilities: bool = True,
    ) -> None:
        self.settings = settings
        self.store = store
        self.dialect = dialect
        self.okta_capabilities = okta_capabilities
        self._cached: tuple[float, bytes] | None = None

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        now = time.monotonic()
        if self._cached is None or now - self._cached[0] > 10:
            functions = self.store.capabilities()
            if functions is None:
                raise ScimError(
                    503,
                    "no worker has reported what the legacy application supports yet: "
                    "start `scim-bridge worker` and retry",
                    Retry_After="5",
                )
            body = provider_config(
                self.settings, self.dialect, functions, okta_capabilities=self.okta_capabilities
            )
            self._cached = (now, json.dumps(body).encode())
        resp.content_type = SCIM_JSON
        resp.data = self._cached[1]


class Listed:
    """``/ResourceTypes`` or ``/Schemas``: a ListResponse, and each member by id."""

    def __init__(self, members: dict[str, dict[str, Any]], dialect: Dialect) -> None:
        self.members = members
        self.dialect = dialect

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = SCIM_JSON
        resources = list(self.members.values())
        resp.data = json.dumps(
            {
                "schemas": [self.dialect.list_schema],
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


def resource_types(schemas: ScimSchemas) -> dict[str, dict[str, Any]]:
    """ResourceType documents of Users and Groups."""
    found = {}
    for kind in Kind:
        document = _dump(ResourceType.from_resource(schemas.model(kind)))
        found[document["id"]] = document
    return found


def schema_documents(schemas: ScimSchemas) -> dict[str, dict[str, Any]]:
    """Schema documents of every served model and extension, Okta's custom ones included."""
    found: dict[str, dict[str, Any]] = {}
    for kind in Kind:
        model = schemas.model(kind)
        described: list[Any] = [model, *schemas.extensions(kind).values()]
        for each in described:
            document = _dump(each.to_schema())
            found[document["id"]] = document
    return found
