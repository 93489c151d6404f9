"""Request bodies made fit for a log: secrets replaced before the body is written anywhere.

A body is logged as the client sent it, before validation, so it may carry anything. What the
schemas declare secret (``mutability: writeOnly`` or ``returned: never``, a user's ``password``)
is redacted at any depth, and so is any key whose name says it is a secret (a stray
``password`` in a group body, ``userPassword`` in an extension), whatever the schema knows.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel
from scim2_models import Mutability, Resource, Returned

REDACTED = "[redacted]"
_SECRET_NAME = re.compile(
    r"password|passphrase|passwd|^pass$|pwd|secret|credential|token", re.IGNORECASE
)


def _hidden_names(model: type[BaseModel], seen: set[type[BaseModel]]) -> Iterable[str]:
    if model in seen:
        return
    seen.add(model)
    for name, field in model.model_fields.items():
        attribute = (field.serialization_alias or name).lower()
        annotation = getattr(model, "get_field_annotation", None)
        if annotation is not None and (
            annotation(name, Mutability) == Mutability.write_only
            or annotation(name, Returned) == Returned.never
        ):
            yield attribute
        root = getattr(model, "get_field_root_type", lambda _: None)(name)
        if isinstance(root, type) and issubclass(root, BaseModel):
            yield from _hidden_names(root, seen)


class Redactor:
    """Redacts what the given resource models (and secret-looking names) say is secret."""

    def __init__(self, models: Iterable[type[Resource[Any]]]) -> None:
        seen: set[type[BaseModel]] = set()
        self.hidden = frozenset(name for model in models for name in _hidden_names(model, seen))

    def is_secret(self, attribute: str) -> bool:
        """Whether an attribute name (or the last part of a path) names a secret."""
        leaf = attribute.split("[")[0].rsplit(":", 1)[-1].rsplit(".", 1)[-1].lower()
        return leaf in self.hidden or bool(_SECRET_NAME.search(leaf))

    def body(self, value: Any) -> Any:
        """``value`` with every secret replaced by :data:`REDACTED` (PATCH operations too)."""
        if isinstance(value, list):
            return [self.body(item) for item in value]
        if not isinstance(value, dict):
            return value
        path = value.get("path")
        secret_target = "op" in value and isinstance(path, str) and self.is_secret(path)
        return {
            key: REDACTED
            if self.is_secret(str(key)) or (secret_target and key == "value")
            else self.body(item)
            for key, item in value.items()
        }
