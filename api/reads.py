"""The read path: every GET answered from the Redis read model alone."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from scim2_models import InvalidFilterException, NotFoundException, ScimFilter

from api.schemas import MODELS
from workers.query import candidates
from workers.readmodel import Kind, ReadModel


@dataclass(frozen=True)
class Page:
    """One page of a listing: the total and the stored documents of the page."""

    total: int
    documents: list[bytes]


def parse_filter(kind: Kind, text: str) -> ScimFilter[Any]:
    """Parse and check a filter against the resource's schema (400 ``invalidFilter``)."""
    try:
        parsed: ScimFilter[Any] = ScimFilter[MODELS[kind]](text)  # type: ignore[valid-type]
        parsed._validate_semantics(strict=True)
    except InvalidFilterException as exc:
        raise InvalidFilterException(detail=f"invalid filter {text!r}: {exc.detail}") from None
    except (ValueError, ValidationError) as exc:
        raise InvalidFilterException(detail=f"invalid filter {text!r}: {exc}") from None
    return parsed


class ReadService:
    """Gets and listings of one read model."""

    def __init__(self, store: ReadModel) -> None:
        self.store = store

    def get(self, kind: Kind, rid: str) -> bytes:
        """The stored document, or 404."""
        raw = self.store.get_raw(kind, rid)
        if raw is None:
            raise NotFoundException(detail=f"{kind.resource_type} {rid} not found")
        return raw

    def page(
        self, kind: Kind, scim_filter: ScimFilter[Any] | None, start_index: int, count: int
    ) -> Page:
        """One page (``start_index`` is 1-based) of the resources matching the filter."""
        offset = start_index - 1
        if scim_filter is None:
            total = self.store.count(kind)
            return Page(total, self._documents(kind, self.store.page_ids(kind, offset, count)))
        found = candidates(self.store, kind, scim_filter.ast)
        matching = self._matching(kind, scim_filter, found)
        total, documents = 0, []
        for raw in matching:
            if offset <= total < offset + count:
                documents.append(raw)
            total += 1
        return Page(total, documents)

    def _documents(self, kind: Kind, ids: list[str]) -> list[bytes]:
        return [raw for raw in self.store.get_many_raw(kind, ids) if raw is not None]

    def _matching(
        self, kind: Kind, scim_filter: ScimFilter[Any], ids: list[str] | None
    ) -> Iterator[bytes]:
        batches = [ids] if ids is not None else self.store.iter_ids(kind)
        model = MODELS[kind]
        for batch in batches:
            for start in range(0, len(batch), 500):
                chunk = batch[start : start + 500]
                for raw in self._documents(kind, chunk):
                    if scim_filter.match(model.model_validate(json.loads(raw))):
                        yield raw
