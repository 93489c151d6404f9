"""What an import makes of one listed record: its document, and whether to write it (pure).

No I/O here: :mod:`scim_bridge.workers.sync` reads the stored state, asks :func:`decide`, and
writes. Kept pure so every rule of docs/import.md (never overwrite a pending change, compare
before writing, the drift policy) is tested without Redis.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from scim_bridge.adapters.port import LegacyRecord
from scim_bridge.store import Kind
from scim_bridge.store.imports import Stored

CORE_SCHEMA = {
    Kind.USER: "urn:ietf:params:scim:schemas:core:2.0:User",
    Kind.GROUP: "urn:ietf:params:scim:schemas:core:2.0:Group",
}
# Bookkeeping of scim-bridge or of SCIM, not what the application holds.
_NOT_HELD = frozenset({"id", "schemas", "meta", "password", "groups"})


@dataclass(frozen=True)
class Decision:
    """``write`` is ``import``, ``enforce``, ``same`` or None (leave it); ``why`` is counted."""

    write: str | None
    why: str


def malformed(kind: Kind, record: LegacyRecord) -> str | None:
    """Why a listed record cannot be imported, or None."""
    name = "userName" if kind is Kind.USER else "displayName"
    value = record.document.get(name)
    if not isinstance(value, str) or not value.strip():
        return f"no {name}"
    return None


def held(
    kind: Kind, doc: Mapping[str, Any] | None, attributes: frozenset[str] | None = None
) -> dict[str, Any]:
    """The part of a document the application holds, in a form that compares equal.

    ``attributes`` are the paths the adapter declares it stores (``name.givenName``, ``emails``;
    None: all): what it cannot store is never taken for drift.
    """
    body = {k: v for k, v in (doc or {}).items() if k not in _NOT_HELD and not k.startswith("_")}
    if attributes is not None:
        body = _project(kind, body, attributes)
    if kind is Kind.USER:
        body["active"] = bool(body.get("active", True))
    else:
        members = body.pop("members", None) or []
        body["members"] = sorted(
            {str(m.get("value")) for m in members if isinstance(m, Mapping) and m.get("value")}
        )
    return body


def _project(kind: Kind, body: dict[str, Any], attributes: frozenset[str]) -> dict[str, Any]:
    always = {"userName", "active"} if kind is Kind.USER else {"displayName", "members"}
    kept: dict[str, Any] = {k: v for k, v in body.items() if k in always or k in attributes}
    for path in attributes:
        parent, dot, child = path.partition(".")
        complex_value = body.get(parent)
        if dot and isinstance(complex_value, Mapping) and child in complex_value:
            kept.setdefault(parent, {})[child] = complex_value[child]
    return kept


def document(
    kind: Kind,
    rid: str,
    record: LegacyRecord,
    *,
    member_ids: Sequence[str] = (),
    created: str,
    last_modified: str,
    version: int,
) -> dict[str, Any]:
    """The SCIM 2.0 document an import stores for a record (``meta`` last, like the api's)."""
    body = {
        k: v
        for k, v in record.document.items()
        if k not in _NOT_HELD and k != "members" and not k.startswith("_")
    }
    extensions = sorted(k for k in body if k.startswith("urn:"))
    doc: dict[str, Any] = {"schemas": [CORE_SCHEMA[kind], *extensions], "id": rid, **body}
    if kind is Kind.USER:
        doc["active"] = bool(doc.get("active", True))
    else:
        doc["members"] = [{"value": m} for m in member_ids]
    doc["meta"] = {
        "resourceType": kind.resource_type,
        "created": created,
        "lastModified": last_modified,
        "version": f'W/"{version}"',
    }
    return doc


def decide(
    kind: Kind,
    stored: Stored,
    observed: Mapping[str, Any],
    *,
    drift: str,
    attributes: frozenset[str] | None = None,
) -> Decision:
    """Whether an observation is written, and how.

    - nothing stored: import it;
    - an Okta change pending: leave it (the reconciler will apply Okta's change);
    - the application holds what was last applied: leave it (no lastModified bump), only
      learning the legacy key if it was unknown;
    - otherwise it drifted: ``import`` takes the application's state, ``enforce`` pushes the
      desired state back.
    """
    if stored.version == 0:
        return Decision("import", "created")
    if stored.pending:
        return Decision(None, "pending")
    if held(kind, observed, attributes) == held(kind, stored.applied, attributes):
        return Decision("same" if stored.legacy_key is None else None, "unchanged")
    if drift == "enforce" and stored.desired is not None:
        return Decision("enforce", "enforced")
    return Decision("import", "updated")
