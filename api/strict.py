"""The value rules of RFC 7643 that a lenient parser would bend, checked before validation.

pydantic coerces (``"yes"`` becomes ``True``) and scim2-models drops ``null`` list items and
accepts a blank ``userName``; a SCIM client that sends such values has a bug, and storing a guess
would hide it. Each rule answers 400 ``invalidValue`` naming the attribute.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from scim_bridge.api.errors import ScimError
from scim_bridge.store import Kind

# Boolean attributes of the core schemas (RFC 7643 §4.1, §2.4 "primary"): true or false only.
_BOOLEANS = frozenset({"active", "primary"})
# Multi-valued complex attributes whose items must be objects.
_COMPLEX_LISTS = frozenset(
    {
        "emails",
        "phonenumbers",
        "ims",
        "photos",
        "addresses",
        "groups",
        "entitlements",
        "roles",
        "x509certificates",
        "members",
    }
)
_REQUIRED_TEXT = {Kind.USER: "userName", Kind.GROUP: "displayName"}


def _invalid(message: str) -> ScimError:
    return ScimError(400, message, "invalidValue")


# Microsoft Entra's provisioning sends PATCH booleans as the strings "True"/"False" (a documented
# deviation of its SCIM client); PATCH accepts exactly those two words, nothing looser.
_ENTRA_BOOLEANS = frozenset({"true", "false"})


def _check_values(body: Mapping[str, Any], where: str = "", *, patch: bool = False) -> None:
    for key, value in body.items():
        name = key.lower()
        path = f"{where}{key}"
        entra = patch and isinstance(value, str) and value.lower() in _ENTRA_BOOLEANS
        if name in _BOOLEANS and not isinstance(value, bool) and not entra:
            raise _invalid(f"{path} must be true or false, not {value!r}")
        if name in _COMPLEX_LISTS and value is not None:
            if not isinstance(value, list):
                raise _invalid(f"{path} must be a list")
            for index, item in enumerate(value):
                if not isinstance(item, dict):
                    raise _invalid(f"{path}[{index}] must be an object, not {item!r}")
                _check_values(item, f"{path}[{index}].", patch=patch)
        elif isinstance(value, dict):
            _check_values(value, f"{path}.", patch=patch)


def _check_schemas(schemas: object) -> None:
    if schemas is None:
        return  # validation names the missing attribute
    if not isinstance(schemas, list) or not schemas:
        raise _invalid("schemas must be a non-empty list of schema URNs")
    if not all(isinstance(urn, str) and urn.strip() for urn in schemas):
        raise _invalid("schemas must list schema URNs as strings")


def _check_required_text(kind: Kind, body: Mapping[str, Any]) -> None:
    attribute = _REQUIRED_TEXT[kind]
    for key, value in body.items():
        if key.lower() == attribute.lower() and isinstance(value, str) and not value.strip():
            raise _invalid(f"{attribute} must not be blank")


def check_resource(kind: Kind, body: Mapping[str, Any]) -> None:
    """Refuse a POST/PUT body whose values RFC 7643's types do not allow."""
    _check_schemas(body.get("schemas"))
    _check_required_text(kind, body)
    _check_values(body)


def check_patch(kind: Kind, body: Mapping[str, Any]) -> None:
    """Refuse PATCH operations whose values RFC 7643's types do not allow."""
    _check_schemas(body.get("schemas"))
    operations = body.get("Operations")
    if not isinstance(operations, list):
        return  # the PatchOp model names what is missing
    for index, operation in enumerate(_objects(operations, "Operations")):
        value = operation.get("value")
        path = operation.get("path")
        if path is not None and not isinstance(path, str):
            raise _invalid(f"Operations[{index}].path must be a string, not {path!r}")
        if isinstance(value, dict) and not path:
            _check_required_text(kind, value)
            _check_values(value, f"Operations[{index}].value.", patch=True)
        elif isinstance(path, str):
            leaf = path.split("[")[0].split(":")[-1].split(".")[-1]
            if isinstance(value, dict):
                _check_values(value, f"Operations[{index}].value.", patch=True)
            elif isinstance(value, list) or ("[" not in path and leaf.lower() in _BOOLEANS):
                _check_values({leaf: value}, f"Operations[{index}].", patch=True)
            if leaf.lower() == _REQUIRED_TEXT[kind].lower() and isinstance(value, str):
                _check_required_text(kind, {leaf: value})


def _objects(items: Iterable[Any], name: str) -> Iterable[dict[str, Any]]:
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise _invalid(f"{name}[{index}] must be an object, not {item!r}")
        yield item
