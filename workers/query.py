"""Answering a SCIM filter from the read model: indexes first, documents second.

The planner walks the filter's syntax tree (parsed by scim2-models) and finds, where it can,
a set of candidate ids from the indexes: ``eq`` on a unique attribute (userName, externalId,
displayName, id), ``eq`` on ``emails``/``emails.value``, and ``meta.lastModified`` ranges. ``and``
needs one indexed term, ``or`` needs every term indexed. Okta's unique user field, when it is an
extension attribute, is indexed too. Candidates are then checked against
the whole filter, so the index only ever narrows the search; a filter no index answers is
evaluated on every stored document, in creation order.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from scim2_models.path import (
    AttrPath,
    CompareOperator,
    Comparison,
    FilterNode,
    LogicalExpr,
    LogicalOperator,
)

from scim_bridge.store import Kind, Store
from scim_bridge.store.model import UNIQUE_ATTRIBUTES

_RANGE = {
    CompareOperator.gt: ("({}", "+inf"),
    CompareOperator.ge: ("{}", "+inf"),
    CompareOperator.lt: ("-inf", "({}"),
    CompareOperator.le: ("-inf", "{}"),
}


def parse_instant(value: Any) -> float | None:
    """An RFC 3339 date-time (``2020-04-07T14:19:34Z``) as epoch seconds, or None."""
    if isinstance(value, datetime):
        return value.timestamp()
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    return parsed.timestamp()


def _attribute(path: AttrPath) -> str:
    # An attribute of the core schema may be URN-qualified; indexes are on core attributes.
    return path.attr if path.sub_attr is None else f"{path.attr}.{path.sub_attr}"


def _is_core(path: AttrPath) -> bool:
    return path.uri is None or path.uri.startswith("urn:ietf:params:scim:schemas:core:")


def plan(store: Store, kind: Kind, node: FilterNode) -> tuple[list[str] | None, bool]:
    """Candidate ids for ``node`` in creation order (None: only a scan can tell), and whether
    the candidates are exactly the matches (every term answered by an exact index).
    """
    found, exact = _candidates(store, kind, node)
    if found is None:
        return None, False
    if exact and len(found) <= 1:
        # Nothing to order (Okta's check-exists): the caller's document read tells existence.
        return list(found), exact
    return store.creation_order(kind, found), exact


def _candidates(store: Store, kind: Kind, node: FilterNode) -> tuple[set[str] | None, bool]:
    if isinstance(node, Comparison):
        if _is_core(node.attr_path):
            return _comparison(store, kind, node)
        return _extension_comparison(store, kind, node), False
    if isinstance(node, LogicalExpr):
        parts = [_candidates(store, kind, term) for term in node.terms]
        all_exact = all(exact for _, exact in parts)
        if node.op == LogicalOperator.and_:
            known = [found for found, _ in parts if found is not None]
            if not known:
                return None, False
            return set.intersection(*known), all_exact and len(known) == len(parts)
        if any(found is None for found, _ in parts):
            return None, False
        return set().union(*(found for found, _ in parts if found is not None)), all_exact
    return None, False


def _extension_comparison(store: Store, kind: Kind, node: Comparison) -> set[str] | None:
    path = f"{node.attr_path.uri}:{node.attr_path.attr}"
    if node.op != CompareOperator.eq or node.attr_path.sub_attr is not None:
        return None
    for lookup in store.lookups[kind]:
        if lookup.lower() == path.lower() and not isinstance(node.value, bool):
            return store.find_multi(kind, lookup, str(node.value))
    return None


def _comparison(store: Store, kind: Kind, node: Comparison) -> tuple[set[str] | None, bool]:
    name = _attribute(node.attr_path)
    lowered = name.lower()
    if node.op == CompareOperator.eq and isinstance(node.value, str):
        if lowered == "id":
            return {node.value}, True  # creation_order drops ids that do not exist
        for attribute in UNIQUE_ATTRIBUTES[kind]:
            if lowered == attribute.lower():
                owner = store.find_unique(kind, attribute, node.value)
                return ({owner} if owner else set()), True
        for path in store.lookups[kind]:
            if lowered in (path.lower(), f"{path.lower()}.value"):
                return store.find_multi(kind, path, node.value), False
    if lowered == "meta.lastmodified" and node.op in _RANGE:
        instant = parse_instant(node.value)
        if instant is None:
            return None, False
        low, high = _RANGE[node.op]
        ids = store.modified_ids(kind, low.format(repr(instant)), high.format(repr(instant)))
        return set(ids), False
    return None, False
