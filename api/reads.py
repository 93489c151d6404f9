"""The read path: every GET answered from the Redis read model alone."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

from pydantic import ValidationError
from scim2_models import InvalidFilterException, NotFoundException, ScimFilter
from scim2_models.path import AttrPath, Comparison, FilterNode, LogicalExpr, Not, Present

from scim_bridge.api.dialects import Dialect
from scim_bridge.api.schemas import ScimSchemas
from scim_bridge.store import Kind, Store, dumps
from scim_bridge.workers.query import plan

_ALIASES = {"email": AttrPath("emails", "value")}


@dataclass(frozen=True)
class ListingPage:
    """One page of a listing: the total and the documents of the page, in the dialect."""

    total: int
    documents: list[bytes]


def _rewrite(node: FilterNode) -> FilterNode:
    """Okta's filter spellings in SCIM terms: ``email`` is ``emails.value``."""
    if isinstance(node, Comparison | Present):
        alias = _ALIASES.get(node.attr_path.attr.lower())
        if alias is not None and node.attr_path.uri is None and node.attr_path.sub_attr is None:
            return replace(node, attr_path=alias)
        return node
    if isinstance(node, LogicalExpr):
        return replace(node, terms=tuple(_rewrite(term) for term in node.terms))
    if isinstance(node, Not):
        return replace(node, expr=_rewrite(node.expr))
    return node  # value paths keep their own sub-attribute names


def parse_filter(schemas: ScimSchemas, kind: Kind, text: str) -> ScimFilter[Any]:
    """Parse and check a filter against the resource's schema (400 ``invalidFilter``)."""
    model = schemas.model(kind)
    try:
        unbound: ScimFilter[Any] = ScimFilter(text)
        parsed: ScimFilter[Any] = ScimFilter[model](_rewrite(unbound.ast))  # type: ignore[valid-type]
        parsed._validate_semantics(strict=True)
    except InvalidFilterException as exc:
        raise InvalidFilterException(detail=f"invalid filter {text!r}: {exc.detail}") from None
    except (ValueError, ValidationError) as exc:
        raise InvalidFilterException(detail=f"invalid filter {text!r}: {exc}") from None
    return parsed


def sort_value(doc: dict[str, Any], path: str) -> Any:
    """The value a document sorts by: strings case-insensitively; multi-valued by primary."""
    value: Any = doc
    parts = path.rsplit(":", 1) if path.startswith("urn:") else [path]
    if len(parts) == 2:
        value = doc.get(parts[0]) or {}
        parts = [parts[1]]
    for name in parts[0].split("."):
        if isinstance(value, list):
            primary = [v for v in value if isinstance(v, dict) and v.get("primary")]
            value = (primary or value or [None])[0]
        if not isinstance(value, dict):
            return None
        value = next((v for k, v in value.items() if k.lower() == name.lower()), None)
    if isinstance(value, list):
        primary = [v for v in value if isinstance(v, dict) and v.get("primary")]
        value = (primary or value or [None])[0]
        value = value.get("value") if isinstance(value, dict) else value
    if isinstance(value, str):
        return value.lower()
    if isinstance(value, bool | int | float):
        return value
    return None


class ReadService:
    """Gets and listings of one read model, in either dialect."""

    def __init__(self, store: Store, schemas: ScimSchemas) -> None:
        self.store = store
        self.schemas = schemas

    def get(self, kind: Kind, rid: str, dialect: Dialect) -> bytes:
        """The stored document in the dialect, or 404."""
        raw = self.store.get_raw(kind, rid, dialect.rendering)
        if raw is None and dialect.rendering != "doc":
            raw = self._translated(kind, self.store.get_raw(kind, rid), dialect)
        if raw is None:
            raise NotFoundException(detail=f"{kind.resource_type} {rid} not found")
        return raw

    def page(
        self,
        kind: Kind,
        scim_filter: ScimFilter[Any] | None,
        start_index: int,
        count: int,
        dialect: Dialect,
        *,
        sort_by: str | None = None,
        descending: bool = False,
    ) -> ListingPage:
        """One page (``start_index`` is 1-based) of the resources matching the filter.

        Without ``sort_by`` the order is creation order, stable across import pages.
        """
        offset = start_index - 1
        if sort_by:
            ordered = self._sorted(kind, scim_filter, sort_by, descending)
            return ListingPage(
                len(ordered), self._documents(kind, ordered[offset : offset + count], dialect)
            )
        if scim_filter is None:
            total = self.store.count(kind)
            return ListingPage(
                total, self._documents(kind, self.store.page_ids(kind, offset, count), dialect)
            )
        found, exact = plan(self.store, kind, scim_filter.ast)
        if found is not None and exact and len(found) <= 1:
            # One unique value (Okta's check-exists): the document read also says it exists.
            documents = self._documents(kind, found, dialect)
            return ListingPage(len(documents), documents[offset : offset + count])
        if found is not None and exact:
            # The index answers this filter exactly: no document needs checking.
            return ListingPage(
                len(found), self._documents(kind, found[offset : offset + count], dialect)
            )
        total, window = 0, []
        for rid in self._matching(kind, scim_filter, found):
            if offset <= total < offset + count:
                window.append(rid)
            total += 1
        return ListingPage(total, self._documents(kind, window, dialect))

    def _sorted(
        self, kind: Kind, scim_filter: ScimFilter[Any] | None, sort_by: str, descending: bool
    ) -> list[str]:
        """Every matching id sorted by an attribute (RFC 7644 §3.4.2.3): missing values last."""
        if scim_filter is None:
            ids = [rid for batch in self.store.iter_ids(kind) for rid in batch]
        else:
            found, exact = plan(self.store, kind, scim_filter.ast)
            ids = (
                found
                if found is not None and exact
                else list(self._matching(kind, scim_filter, found))
            )
        keyed: list[tuple[Any, str]] = []
        missing: list[str] = []
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            for rid, raw in zip(chunk, self.store.get_many_raw(kind, chunk), strict=True):
                value = sort_value(json.loads(raw), sort_by) if raw else None
                if value is None:
                    missing.append(rid)
                else:
                    keyed.append((value, rid))
        keyed.sort(key=lambda pair: (isinstance(pair[0], str), pair[0]), reverse=descending)
        return [rid for _, rid in keyed] + missing

    def _documents(self, kind: Kind, ids: list[str], dialect: Dialect) -> list[bytes]:
        raws = self.store.get_many_raw(kind, ids, dialect.rendering)
        missing = [i for i, raw in enumerate(raws) if raw is None]
        if missing and dialect.rendering != "doc":
            fallback = self.store.get_many_raw(kind, [ids[i] for i in missing])
            for i, raw in zip(missing, fallback, strict=True):
                raws[i] = self._translated(kind, raw, dialect)
        return [raw for raw in raws if raw is not None]

    @staticmethod
    def _translated(kind: Kind, raw: bytes | None, dialect: Dialect) -> bytes | None:
        if raw is None:
            return None
        rendered = dialect.render(kind, json.loads(raw))
        return dumps(rendered).encode()

    def _matching(
        self, kind: Kind, scim_filter: ScimFilter[Any], ids: list[str] | None
    ) -> Iterator[str]:
        batches = [ids] if ids is not None else self.store.iter_ids(kind)
        model = self.schemas.model(kind)
        for batch in batches:
            for start in range(0, len(batch), 500):
                chunk = batch[start : start + 500]
                for rid, raw in zip(chunk, self.store.get_many_raw(kind, chunk), strict=True):
                    if raw is not None and scim_filter.match(model.model_validate(json.loads(raw))):
                        yield rid
