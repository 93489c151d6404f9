"""Membership PATCHes applied to a group's member list directly.

Okta changes memberships with PATCH: one ``remove`` per member leaving
(``members[value eq "<id>"]``) and an ``add`` of the members joining. scim2-models applies each
operation to a copy of the whole resource and evaluates its filter on every member: on a group
of 5,000 members one such operation costs close to a second, so a routine batch of removals ran
past any deadline. :func:`apply_member_operations` applies exactly these shapes to the list of
member objects; anything else is left to scim2-models, and the result is validated as a whole
all the same.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

_REMOVE_ONE = re.compile(r'^members\[\s*value\s+eq\s+"((?:[^"\\]|\\.)*)"\s*\]$', re.IGNORECASE)
_MEMBER_KEYS = frozenset({"value", "display", "type", "$ref"})


def _member(item: object) -> bool:
    return (
        isinstance(item, dict)
        and isinstance(item.get("value"), str)
        and set(item) <= _MEMBER_KEYS
        and all(isinstance(value, str) for value in item.values())
    )


def apply_member_operations(
    members: Sequence[Mapping[str, Any]], operations: object
) -> list[dict[str, Any]] | None:
    """The member list after ``operations``; None when one of them is not a plain membership
    change (the caller then applies the PATCH the general way).

    ``remove`` of ``members[value eq "..."]`` drops that member (member values are case-exact);
    ``add`` to ``members`` appends each member not already listed; ``replace`` of ``members``
    sets the list. A member is an object with ``value`` and optionally ``display``, ``type``
    and ``$ref``, all strings.
    """
    if not isinstance(operations, list):
        return None
    current = [dict(member) for member in members]
    for operation in operations:
        if not isinstance(operation, dict) or not isinstance(operation.get("path"), str):
            return None
        op, path = str(operation.get("op", "")).lower(), operation["path"].strip()
        if op == "remove":
            found = _REMOVE_ONE.match(path)
            if found is None or "value" in operation:
                return None
            gone = json.loads(f'"{found.group(1)}"')
            current = [member for member in current if member.get("value") != gone]
        elif op in ("add", "replace") and path.lower() == "members":
            value = operation.get("value")
            items: list[Any] = value if isinstance(value, list) else [value]
            if not all(_member(item) for item in items):
                return None
            if op == "replace":
                current = []
            listed = {member.get("value") for member in current}
            for item in items:
                if item["value"] not in listed:
                    current.append(dict(item))
                    listed.add(item["value"])
        else:
            return None
    return current
