"""Records gone from the application: removed after a full pass, behind a threshold.

A full pass that would remove more than ``SCIM_BRIDGE_SYNC_MAX_REMOVALS`` records (an unmounted
table, a wrong database) removes none: they are held until an operator confirms them
(``scim-bridge sync --confirm-removals``), and each is asked of the application once more then.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from scim_bridge.adapters.port import Deadline, LegacyAdapter
from scim_bridge.store import Kind, Store, SyncState, parse_ref, ref
from scim_bridge.store.imports import ImportStore

if TYPE_CHECKING:
    from scim_bridge.workers.sync import PassResult

log = logging.getLogger("scim_bridge.sync")


class Removals:
    """Finds, holds and applies the removals of one importer."""

    def __init__(
        self,
        store: Store,
        imports: ImportStore,
        adapter: LegacyAdapter,
        *,
        max_removals: int,
        deadline_s: float,
    ) -> None:
        self.store = store
        self.imports = imports
        self.adapter = adapter
        self.max_removals = max_removals
        self.deadline_s = deadline_s

    def after_pass(self, result: PassResult) -> None:
        """Remove what the pass did not list, unless that is more than the threshold."""
        doomed: dict[str, dict[str, Any]] = {}
        for kind in (Kind.USER, Kind.GROUP):
            unseen = self.imports.unseen(kind)
            for stored in self.imports.stored(kind, unseen):
                # Only records the application held: an Okta create not applied yet stays.
                if stored.legacy_key is None or stored.pending or stored.version == 0:
                    continue
                label_attr = "userName" if kind is Kind.USER else "displayName"
                doomed[ref(kind, stored.id)] = {
                    "kind": kind.resource_type,
                    "id": stored.id,
                    "key": stored.legacy_key,
                    "name": (stored.desired or {}).get(label_attr),
                }
        if len(doomed) > self.max_removals:
            self.imports.hold(doomed)
            self.imports.count("removals_held_passes")
            result.removals_held = len(doomed)
            log.error(
                "%d records disappeared from the application, more than "
                "SCIM_BRIDGE_SYNC_MAX_REMOVALS (%d): none removed; review them with "
                "`scim-bridge sync --pending-removals`",
                len(doomed),
                self.max_removals,
            )
            return
        self.imports.hold({})
        for member in doomed:
            if self._remove(member):
                result.removed += 1

    def _remove(self, member: str) -> bool:
        kind, rid = parse_ref(member)
        snap = self.store.snapshot(kind, rid)
        if not snap.exists or snap.state is SyncState.PENDING or snap.deleted:
            return False
        if self.store.purge(kind, rid, snap):
            self.imports.forget_key(kind, snap.legacy_key)
            self.imports.count("removed")
            return True
        return False

    def confirm(self) -> int:
        """Apply the held removals whose records are still gone from the application."""
        removed = 0
        for member, entry in self.imports.held().items():
            kind, _ = parse_ref(member)
            deadline = Deadline.after(self.deadline_s)
            get = self.adapter.get_user if kind is Kind.USER else self.adapter.get_group
            if get(str(entry["key"]), deadline=deadline) is None and self._remove(member):
                removed += 1
            self.imports.release_held(member)
        return removed
