"""Answering a SCIM filter from the read model: indexes first, documents second.

The planner walks the filter's syntax tree (parsed by scim2-models) and finds, where it can,
a set of candidate ids from the indexes: ``eq`` on a unique attribute (userName, externalId,
displayName, id), ``eq`` on ``emails``/``emails.value``, and ``meta.lastModified`` ranges. ``and``
needs one indexed term, ``or`` needs every term indexed. Candidates are then checked against
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

from workers.readmodel import MULTI_VALUED_INDEXES, UNIQUE_ATTRIBUTES, Kind, ReadModel

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


def candidates(store: ReadModel, kind: Kind, node: FilterNode) -> list[str] | None:
    """Ids that may match ``node``, in creation order, or None when only a scan can tell."""
    found = _candidates(store, kind, node)
    return None if found is None else store.creation_order(kind, found)


def _candidates(store: ReadModel, kind: Kind, node: FilterNode) -> set[str] | None:
    if isinstance(node, Comparison) and _is_core(node.attr_path):
        return _comparison(store, kind, node)
    if isinstance(node, LogicalExpr):
        parts = [_candidates(store, kind, term) for term in node.terms]
        if node.op == LogicalOperator.and_:
            known = [p for p in parts if p is not None]
            if not known:
                return None
            return set.intersection(*known)
        if any(p is None for p in parts):
            return None
        return set().union(*(p for p in parts if p is not None))
    return None


def _comparison(store: ReadModel, kind: Kind, node: Comparison) -> set[str] | None:
    name = _attribute(node.attr_path)
    lowered = name.lower()
    if node.op == CompareOperator.eq and isinstance(node.value, str):
        if lowered == "id":
            return {node.value}
        for attribute in UNIQUE_ATTRIBUTES[kind]:
            if lowered == attribute.lower():
                owner = store.find_unique(kind, attribute, node.value)
                return {owner} if owner else set()
        for attribute in MULTI_VALUED_INDEXES[kind]:
            if lowered in (attribute.lower(), f"{attribute.lower()}.value"):
                return store.find_multi(kind, attribute, node.value)
    if lowered == "meta.lastmodified" and node.op in _RANGE:
        instant = parse_instant(node.value)
        if instant is None:
            return None
        low, high = _RANGE[node.op]
        return set(store.modified_ids(kind, low.format(repr(instant)), high.format(repr(instant))))
    return None
