"""Delta tokens (:meth:`~scim_bridge.adapters.port.LegacyAdapter.changes_since`) of the adapters
that keep their positions as a JSON object."""

from __future__ import annotations

import json
from typing import Any

from scim_bridge.adapters.errors import PermanentError


def parse_token(token: str | None) -> dict[str, Any]:
    """The positions a token holds (none for ``None``); a token that is not a JSON object was
    not made by the adapter and is a :class:`PermanentError`."""
    if token is None:
        return {}
    try:
        parsed = json.loads(token)
    except ValueError:
        raise PermanentError(f"invalid delta token {token!r}") from None
    if not isinstance(parsed, dict):
        raise PermanentError(f"invalid delta token {token!r}")
    return parsed
