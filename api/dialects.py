"""SCIM 1.1 and SCIM 2.0: one core (SCIM 2.0 documents), two renderings, translated at the edge.

The Okta agent speaks SCIM 1.1 by default and parses it strictly: every resource must list
``urn:scim:schemas:core:1.0`` and each extension it carries in ``schemas``, and no SCIM 2.0 URN may
appear (see docs/architecture.md, "The Okta agent").
A :class:`Dialect` turns a request body into the SCIM 2.0 form the
core validates, and a stored SCIM 2.0 document into what the client expects.
"""

from __future__ import annotations

from typing import Any

from scim_bridge.store import Kind

V2_CORE = {
    Kind.USER: "urn:ietf:params:scim:schemas:core:2.0:User",
    Kind.GROUP: "urn:ietf:params:scim:schemas:core:2.0:Group",
}
V2_ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
V2_LIST = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
V1_CORE = "urn:scim:schemas:core:1.0"
V1_ENTERPRISE = "urn:scim:schemas:extension:enterprise:1.0"

_TO_V2 = {V1_ENTERPRISE: V2_ENTERPRISE}
_TO_V1 = {V2_ENTERPRISE: V1_ENTERPRISE}


class Dialect:
    """SCIM 2.0: documents are served as stored."""

    name = "2.0"
    rendering = "doc"
    list_schema = V2_LIST
    strict_start_index = False
    supports_patch = True

    def request(self, kind: Kind, body: dict[str, Any]) -> dict[str, Any]:
        """The SCIM 2.0 form of a request body."""
        return body

    def render(self, kind: Kind, doc: dict[str, Any]) -> dict[str, Any]:
        """A stored SCIM 2.0 document as this dialect shows it."""
        return doc


class Scim11(Dialect):
    """SCIM 1.1, the Okta agent's default."""

    name = "1.1"
    rendering = "doc1"
    list_schema = V1_CORE
    strict_start_index = True  # the agent's SDK refuses startIndex below 1
    supports_patch = False  # the agent never sends PATCH in SCIM 1.1

    def request(self, kind: Kind, body: dict[str, Any]) -> dict[str, Any]:
        translated: dict[str, Any] = {}
        for key, value in body.items():
            if key == "schemas" and isinstance(value, list):
                translated[key] = [
                    V2_CORE[kind] if urn == V1_CORE else _TO_V2.get(urn, urn) for urn in value
                ]
            else:
                translated[_TO_V2.get(key, key)] = value
        translated.setdefault("schemas", [V2_CORE[kind]])
        return translated

    def render(self, kind: Kind, doc: dict[str, Any]) -> dict[str, Any]:
        rendered: dict[str, Any] = {}
        for key, value in doc.items():
            if key == "schemas":
                rendered[key] = [
                    V1_CORE if urn == V2_CORE[kind] else _TO_V1.get(urn, urn) for urn in value
                ]
            elif key == "meta":
                rendered[key] = {k: v for k, v in value.items() if k != "resourceType"}
            else:
                rendered[_TO_V1.get(key, key)] = value
        return rendered


SCIM_2 = Dialect()
SCIM_1 = Scim11()
