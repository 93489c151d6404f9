"""Which Okta provisioning functions the workers advertise for the configured adapter.

Okta's imports (``IMPORT_NEW_USERS``, ``IMPORT_PROFILE_UPDATES``) read what scim-bridge's read
model holds of the application's accounts, which only an adapter that can list its records can
fill (docs/import.md). An adapter that cannot list raises ``NotImplementedError`` from
``list_users``; one probe with ``limit=1`` at worker start finds out.
"""

from __future__ import annotations

import logging

from scim_bridge.adapters.errors import AdapterError
from scim_bridge.adapters.port import Capability, Deadline, LegacyAdapter

log = logging.getLogger("scim_bridge.worker")

IMPORTS = frozenset({Capability.IMPORT_NEW_USERS, Capability.IMPORT_PROFILE_UPDATES})


def can_list(adapter: LegacyAdapter, *, deadline_s: float = 5.0) -> bool:
    """Whether the adapter lists its users (an unreachable application still counts)."""
    try:
        adapter.list_users(cursor=None, limit=1, deadline=Deadline.after(deadline_s))
    except NotImplementedError:
        return False
    except AdapterError as exc:
        log.info("listing probe failed (%s); assuming the adapter can list", exc.message)
    return True


def advertised_functions(adapter: LegacyAdapter) -> frozenset[Capability]:
    """The adapter's declared functions, without the imports if it cannot list."""
    declared = frozenset(adapter.capabilities.functions)
    if declared & IMPORTS and not can_list(adapter):
        return declared - IMPORTS
    return declared
