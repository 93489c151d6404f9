"""Stable SCIM ids for records the legacy application holds (docs/import.md, "Stable ids").

Okta stores a resource's id forever, so an id must survive a wiped and rebuilt read model:

- a record scim-bridge created for Okta carries the id it was created with (the adapter returns
  it as :attr:`LegacyRecord.resource_id`), and keeps it;
- a record the application created itself gets ``uuid5(namespace, "<kind>:<legacy key>")``: the
  same key in the same deployment always gives the same id, two deployments (two namespaces)
  never collide.
"""

from __future__ import annotations

import uuid

from scim_bridge.adapters.port import LegacyRecord
from scim_bridge.store import Kind


def derived_id(namespace: uuid.UUID, kind: Kind, legacy_key: str) -> str:
    """The id of a record the application created, from its legacy key."""
    return str(uuid.uuid5(namespace, f"{kind.value}:{legacy_key}"))


def resource_id(namespace: uuid.UUID, kind: Kind, record: LegacyRecord) -> str:
    """The SCIM id of a listed record: the one it was created with, else the derived one."""
    return record.resource_id or derived_id(namespace, kind, record.key)
