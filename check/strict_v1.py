"""The strict SCIM 1.x rules: what the Okta agent's SCIM 1.1 parser rejects in an answer.

The agent's parser rejects a whole import page for one SCIM 2.0 URN or one unknown top-level key;
:func:`strict_v1_problems` and :func:`strict_v1_list_problems` say why an answer would be
rejected. The check tool applies them to every 1.1 answer, and the test suite reuses them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

V1_CORE = "urn:scim:schemas:core:1.0"
V1_PROVIDER_CONFIG = "urn:okta:schemas:scim:providerconfig:1.0"
V1_CUSTOM_USER = "urn:okta:onprem_app:1.0:user:custom"
V2_PREFIX = "urn:ietf:params:scim"
V2_USER = "urn:ietf:params:scim:schemas:core:2.0:User"
V2_GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
V2_LIST = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
V2_ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"

# The top-level attributes of SCIM 1.1 core Users and Groups (draft-scim-core-schema-01 §5, §7),
# compared case-insensitively as SCIM attribute names are.
V1_ATTRIBUTES = {
    "User": frozenset(
        """schemas id externalId meta userName name displayName nickName profileUrl title userType
        preferredLanguage locale timezone active password emails phoneNumbers ims photos addresses
        groups entitlements roles x509Certificates""".lower().split()
    ),
    "Group": frozenset("schemas id externalId meta displayName members".lower().split()),
}
V1_LIST_KEYS = frozenset("schemas totalResults startIndex itemsPerPage Resources".lower().split())
PAGING_KEYS = ("totalResults", "startIndex", "itemsPerPage")
PAGE_SIZE = 100


# ------------------------
def strict_v1_problems(kind: str, document: Mapping[str, Any]) -> list[str]:
    """What the agent's strict SCIM 1.x parser would reject in a User or Group (``kind``).

    ``schemas`` must list ``urn:scim:schemas:core:1.0`` and every extension the resource carries;
    no ``urn:ietf:params:scim`` string may appear anywhere; every other top-level key must be a
    SCIM 1.1 core attribute of ``kind``. An empty list means the resource is acceptable.
    """
    if kind not in V1_ATTRIBUTES:
        raise ValueError(f"kind must be 'User' or 'Group', not {kind!r}")
    if not isinstance(document, Mapping):
        return [f"the {kind} is not a JSON object"]
    problems = _v2_urns(document, "")
    schemas = document.get("schemas")
    declared: set[str] = set()
    if not isinstance(schemas, list) or not all(isinstance(s, str) for s in schemas):
        problems.append(f"'schemas' is not a list of URNs: {schemas!r}")
    else:
        declared = {s.lower() for s in schemas}
        if V1_CORE not in declared:
            problems.append(f"'schemas' lacks {V1_CORE!r}: {schemas!r}")
    for key in document:
        lowered = key.lower()
        if lowered.startswith("urn:"):
            if V2_PREFIX not in lowered and lowered not in declared:
                problems.append(f"extension key {key!r} is not declared in 'schemas'")
        elif lowered not in V1_ATTRIBUTES[kind]:
            problems.append(f"key {key!r} is not a SCIM 1.1 {kind} attribute")
    return problems


def strict_v1_list_problems(kind: str, document: Mapping[str, Any]) -> list[str]:
    """What the agent's strict SCIM 1.x parser would reject in a ListResponse of ``kind``.

    Integer ``totalResults``/``startIndex``/``itemsPerPage``, ``schemas`` (when present) listing
    ``urn:scim:schemas:core:1.0``, no other top-level key, no ``urn:ietf:params:scim`` string,
    and every member of ``Resources`` acceptable to :func:`strict_v1_problems`.
    """
    if not isinstance(document, Mapping):
        return ["the ListResponse is not a JSON object"]
    head = {k: v for k, v in document.items() if k != "Resources"}
    problems = _v2_urns(head, "") + paging_problems(document)
    schemas = document.get("schemas")
    if schemas is not None and (
        not isinstance(schemas, list) or V1_CORE not in [str(s).lower() for s in schemas]
    ):
        problems.append(f"'schemas' of the ListResponse lacks {V1_CORE!r}: {schemas!r}")
    problems += [
        f"key {key!r} is not a SCIM 1.1 ListResponse attribute"
        for key in document
        if key.lower() not in V1_LIST_KEYS
    ]
    for index, resource in enumerate(listed_resources(document, problems)):
        problems += [f"Resources[{index}]: {p}" for p in strict_v1_problems(kind, resource)]
    return problems


def _v2_urns(value: Any, path: str) -> list[str]:
    """Every key or string value under ``value`` that carries a SCIM 2.0 URN, by its path."""
    found: list[str] = []
    if isinstance(value, Mapping):
        for key, member in value.items():
            where = f"{path}.{key}" if path else str(key)
            if V2_PREFIX in str(key).lower():
                found.append(f"key {where!r} is a SCIM 2.0 URN")
            found += _v2_urns(member, where)
    elif isinstance(value, list):
        for index, member in enumerate(value):
            found += _v2_urns(member, f"{path}[{index}]")
    elif isinstance(value, str) and V2_PREFIX in value.lower():
        found.append(f"{path!r} carries the SCIM 2.0 URN {value!r}")
    return found


def paging_problems(document: Mapping[str, Any]) -> list[str]:
    problems = []
    for key in PAGING_KEYS:
        value = document.get(key)
        if not isinstance(value, int) or isinstance(value, bool):
            problems.append(f"{key!r} is not an integer: {value!r}")
    return problems


def listed_resources(document: Mapping[str, Any], problems: list[str]) -> list[Any]:
    resources = document.get("Resources", [])
    if not isinstance(resources, list):
        problems.append(f"'Resources' is not a list: {resources!r}")
        return []
    return resources
