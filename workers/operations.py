"""What operators do with the dead-letter store: put a change back, or drop it.

Plain functions over the store, used by ``scim-bridge dlq`` (``scim-bridge status`` reads
:meth:`Store.status`).
"""

from __future__ import annotations

import time
from typing import Any

from scim_bridge.store import Kind, Store, UniquenessConflict, VersionConflict, parse_ref


class DeadLetterError(Exception):
    """An operator's request about the dead-letter store that cannot be done."""


def _entry(store: Store, entry_ref: str) -> dict[str, Any]:
    entry = store.dead_letter_entry(entry_ref)
    if entry is None:
        raise DeadLetterError(f"{entry_ref} is not in the dead-letter store")
    return entry


def retry(store: Store, entry_ref: str) -> tuple[Kind, str]:
    """Put a dead-lettered change back as desired state (after the cause was fixed).

    Returns the resource to publish a reconcile task for. A refused create is created anew in
    the read model; a pending password was discarded when the change failed and is not replayed.
    """
    entry = _entry(store, entry_ref)
    kind, rid = parse_ref(entry_ref)
    desired = entry.get("desired")
    for _ in range(5):
        snap = store.snapshot(kind, rid)
        doc = desired if entry.get("operation") != "delete" else None
        try:
            store.write_next(snap, doc)
        except VersionConflict:
            continue
        except UniquenessConflict as conflict:
            raise DeadLetterError(
                f"cannot retry {entry_ref}: its {conflict.attribute} "
                "now belongs to another resource"
            ) from None
        store.remove_dead_letter(entry_ref)
        return kind, rid
    raise DeadLetterError(f"{entry_ref} keeps changing; retry later")


def drop(store: Store, entry_ref: str, reason: str) -> None:
    """Give up on a change: the read model keeps the applied state; the reason is recorded."""
    entry = _entry(store, entry_ref)
    kind, rid = parse_ref(entry_ref)
    snap = store.snapshot(kind, rid)
    if snap.exists and snap.applied is not None and snap.desired != snap.applied:
        try:
            store.write_next(snap, snap.applied, rollback=True)
        except (VersionConflict, UniquenessConflict) as exc:
            raise DeadLetterError(
                f"cannot restore {entry_ref} to its applied state: {exc}"
            ) from None
    record = {"entry": entry, "reason": reason, "dropped_at": time.time()}
    store.drop_dead_letter(entry_ref, record)
