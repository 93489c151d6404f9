"""How much work one request may ask for: counts and lengths, each a setting.

A body within ``max_body_bytes`` can still ask for minutes of work (2,000 PATCH operations, each
re-validating a growing list) or fill the read model with values no directory holds. These
limits refuse such a request before any work is done, with 400 ``tooMany`` for a count and
``invalidValue`` for a length, naming the setting an operator would raise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from scim_bridge.api.errors import ScimError
from scim_bridge.workers.settings import Settings


def _too_many(what: str, count: int, limit: int, setting: str) -> ScimError:
    return ScimError(
        400, f"{what} holds {count} values; the limit is {limit} (SCIM_BRIDGE_{setting})", "tooMany"
    )


@dataclass(frozen=True)
class RequestLimits:
    """The limits of one deployment (from :class:`Settings`)."""

    max_patch_operations: int
    max_multi_valued: int
    max_group_members: int
    max_string_length: int
    max_attributes: int

    @classmethod
    def of(cls, settings: Settings) -> RequestLimits:
        """The limits ``settings`` configure."""
        return cls(
            settings.max_patch_operations,
            settings.max_multi_valued,
            settings.max_group_members,
            settings.max_string_length,
            settings.max_attributes,
        )

    def check_values(self, value: Any, where: str = "", attribute: str = "") -> None:
        """Every list within its count, every string within its length, at any depth.

        ``where`` is the value's path in the body (for the message), ``attribute`` its name.
        """
        if isinstance(value, str):
            if len(value) > self.max_string_length:
                raise ScimError(
                    400,
                    f"{where or 'a value'} is {len(value)} characters long; the limit is "
                    f"{self.max_string_length} (SCIM_BRIDGE_MAX_STRING_LENGTH)",
                    "invalidValue",
                )
        elif isinstance(value, Mapping):
            for key, item in value.items():
                inner = f"{where}.{key}" if where else str(key)
                self.check_values(key, f"the name {inner}")
                self.check_values(item, inner, str(key))
        elif isinstance(value, list):
            self.check_count(attribute, value, where)
            for index, item in enumerate(value):
                self.check_values(item, f"{where}[{index}]")

    def check_count(self, attribute: str, values: Sequence[Any], where: str = "") -> None:
        """A multi-valued attribute's values within their limit (members have their own)."""
        if attribute.lower() == "members":
            limit, setting = self.max_group_members, "MAX_GROUP_MEMBERS"
        else:
            limit, setting = self.max_multi_valued, "MAX_MULTI_VALUED"
        if len(values) > limit:
            raise _too_many(where or attribute, len(values), limit, setting)

    def check_patch(self, body: Mapping[str, Any]) -> None:
        """The number of operations first (before any of them is looked at), then the values."""
        operations = body.get("Operations")
        if isinstance(operations, list) and len(operations) > self.max_patch_operations:
            raise _too_many(
                "Operations", len(operations), self.max_patch_operations, "MAX_PATCH_OPERATIONS"
            )
        for index, operation in enumerate(operations if isinstance(operations, list) else ()):
            if not isinstance(operation, Mapping):
                continue  # the strict checks name it
            path = operation.get("path")
            # A list value belongs to the attribute the path ends with ("add members").
            leaf = str(path or "").split("[")[0].rsplit(":", 1)[-1].rsplit(".", 1)[-1]
            self.check_values(operation.get("value"), f"Operations[{index}].value", leaf)
        self.check_values({k: v for k, v in body.items() if k != "Operations"})

    def check_document(self, document: Mapping[str, Any]) -> None:
        """The resource a PATCH leaves: its multi-valued attributes within their limits."""
        for key, value in document.items():
            if isinstance(value, list):
                self.check_count(key, value)
            elif isinstance(value, Mapping):
                self.check_document(value)

    def check_attributes(self, name: str, values: Sequence[str]) -> None:
        """An ``attributes``/``excludedAttributes`` list within its length."""
        if len(values) > self.max_attributes:
            raise _too_many(name, len(values), self.max_attributes, "MAX_ATTRIBUTES")
