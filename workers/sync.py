"""Imports: make the read model hold what the legacy application holds (docs/import.md).

A **full pass** pages through every user, then every group, and then removes what was not
listed (behind the removal threshold). It keeps a checkpoint after every page, so a pass that
crashed or ran out of its time slice continues where it stopped. A **delta pass** asks the
adapter what changed since a token (:meth:`LegacyAdapter.changes_since`). Both write through
:meth:`ImportStore.observe`, which never overwrites a resource with a pending Okta change and
writes nothing when the record did not change (so ``meta.lastModified`` moves only on drift).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from scim_bridge.adapters.errors import AdapterError
from scim_bridge.adapters.port import Deadline, LegacyAdapter, LegacyRecord
from scim_bridge.store import Kind, Status, Store, now_iso
from scim_bridge.store.imports import ImportStore, Observation
from scim_bridge.workers.identity import resource_id
from scim_bridge.workers.observe import decide, document, malformed
from scim_bridge.workers.priority import at_lower_priority
from scim_bridge.workers.removals import Removals

log = logging.getLogger("scim_bridge.sync")

Publish = Callable[[Kind, str], None]
_COUNTS = ("listed", "created", "updated", "unchanged", "pending", "skipped", "enforced")


@dataclass
class Tally:
    """What a pass did so far."""

    listed: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    pending: int = 0
    skipped: int = 0
    enforced: int = 0

    def add(self, name: str, by: int = 1) -> None:
        setattr(self, name, getattr(self, name) + by)


@dataclass
class PassResult:
    """The outcome of a (slice of a) pass: done, more (continue), busy or failed."""

    status: Status
    tally: Tally = field(default_factory=Tally)
    removed: int = 0
    removals_held: int = 0
    error: str | None = None
    elapsed_s: float = 0.0
    skipped_records: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``scim-bridge sync --json``)."""
        return asdict(self)


@dataclass(frozen=True)
class Progress:
    """Reported after every page: ``phase`` is ``users``, ``groups`` or ``removals``."""

    phase: str
    records: int
    rate_per_s: float
    expected: int


class Importer:
    """Runs full and delta passes for one adapter. Plain code: tasks and the CLI call it."""

    def __init__(
        self,
        store: Store,
        adapter: LegacyAdapter,
        *,
        namespace: uuid.UUID,
        drift: str = "import",
        max_removals: int = 100,
        page_size: int = 500,
        deadline_s: float = 10.0,
        lock_ttl_s: float = 30.0,
        publish: Publish | None = None,
        max_rate: float = 0.0,
        niceness: int = 0,
    ) -> None:
        self.model = store
        self.imports = ImportStore(store)
        self.adapter = adapter
        self.namespace = namespace
        self.drift = drift
        self.max_removals = max_removals
        self.page_size = page_size
        self.deadline_s = deadline_s
        self.lock_ttl_s = lock_ttl_s
        self.publish = publish
        self.max_rate = max_rate
        self.niceness = niceness
        self._interrupted = threading.Event()
        self.removals = Removals(
            store, self.imports, adapter, max_removals=max_removals, deadline_s=deadline_s
        )

    def confirm_removals(self) -> int:
        """Apply the held removals whose records are still gone from the application."""
        return self.removals.confirm()

    # Full pass --------------------------------------------------------------------------------
    def full_pass(
        self, *, budget_s: float | None = None, progress: Callable[[Progress], None] | None = None
    ) -> PassResult:
        """Run (or continue) the full pass, for at most ``budget_s`` (None: to the end)."""
        started = time.monotonic()
        owner = self.imports.lock_owner()
        if not self.imports.acquire(owner, self.lock_ttl_s):
            return PassResult(Status.BUSY)
        try:
            self._interrupted.clear()
            return at_lower_priority(
                self.niceness,
                lambda: self._full_pass(owner, started, budget_s, progress),
                self._interrupted,
            )
        finally:
            self.imports.release(owner)

    def _full_pass(
        self,
        owner: str,
        started: float,
        budget_s: float | None,
        progress: Callable[[Progress], None] | None,
    ) -> PassResult:
        point = self.imports.checkpoint()
        tally = Tally(**{name: int(point.get(name, 0)) for name in _COUNTS})
        result = PassResult(Status.MORE, tally)
        try:
            if not point:
                point = {"phase": "u", "cursor": "", "started_at": now_iso()}
                self._start_delta()
                self.imports.save_checkpoint(point)
            phase = point["phase"]
            cursor: str | None = point.get("cursor") or None
            slice_start, slice_records = time.monotonic(), 0
            while phase in ("u", "g"):
                kind = Kind(phase)
                deadline = Deadline.after(self.deadline_s)
                page = (
                    self.adapter.list_users(cursor=cursor, limit=self.page_size, deadline=deadline)
                    if kind is Kind.USER
                    else self.adapter.list_groups(
                        cursor=cursor, limit=self.page_size, deadline=deadline
                    )
                )
                self._apply(kind, page.records, tally, result, full=True)
                cursor = page.cursor
                if cursor is None:
                    phase = "g" if kind is Kind.USER else "r"
                self.imports.save_checkpoint(
                    {"phase": phase, "cursor": cursor or "", **asdict(tally)}
                )
                self.imports.acquire(owner, self.lock_ttl_s)  # refresh
                slice_records += len(page.records)
                self._pace(slice_start, slice_records)
                if progress is not None:
                    elapsed = max(time.monotonic() - slice_start, 1e-6)
                    progress(
                        Progress(
                            "users" if kind is Kind.USER else "groups",
                            tally.listed,
                            slice_records / elapsed,
                            self.model.count(kind),
                        )
                    )
                out_of_time = budget_s is not None and time.monotonic() - started > budget_s
                if out_of_time or self._interrupted.is_set():
                    result.elapsed_s = time.monotonic() - started
                    return result
            self.removals.after_pass(result)
            summary = {**result.to_dict(), "status": Status.DONE.value, "finished_at": now_iso()}
            summary["started_at"] = point.get("started_at")
            self.imports.finish(summary)
            result.status = Status.DONE
        except AdapterError as exc:
            result.status, result.error = Status.FAILED, f"{type(exc).__name__}: {exc.message}"
        except Exception as exc:  # an adapter bug: the pass stops, the next one resumes
            if _is_redis_error(exc):
                raise
            log.exception("import pass stopped by an unexpected error")
            result.status, result.error = Status.FAILED, f"{type(exc).__name__}: {exc}"
        if result.error is not None:
            self.imports.record_error(result.error)
            log.warning("import pass stopped (it resumes next time): %s", result.error)
        result.elapsed_s = time.monotonic() - started
        return result

    def _pace(self, since: float, records: int) -> None:
        """Stay under ``max_rate`` records/s: the api's reads and the application come first."""
        if self.max_rate > 0:
            ahead = records / self.max_rate - (time.monotonic() - since)
            if ahead > 0:
                time.sleep(ahead)

    def _start_delta(self) -> None:
        # The delta token is taken before the first page, so nothing changed during the full
        # pass is missed by the delta passes after it.
        if self.adapter.supports_delta:
            now = self.adapter.changes_since(
                None, limit=1, deadline=Deadline.after(self.deadline_s)
            )
            self.imports.set_delta_token_if_absent(now.token)

    # Delta pass -------------------------------------------------------------------------------
    def delta_pass(self, *, budget_s: float | None = None) -> PassResult:
        """Import what changed since the last delta pass (nothing if the adapter cannot tell)."""
        started = time.monotonic()
        if not self.adapter.supports_delta:
            return PassResult(Status.DONE)
        owner = self.imports.lock_owner()
        if not self.imports.acquire(owner, self.lock_ttl_s, name="sync:delta-lock"):
            return PassResult(Status.BUSY)
        result = PassResult(Status.DONE)
        try:
            token = self.imports.delta_token()
            while True:
                changes = self.adapter.changes_since(
                    token, limit=self.page_size, deadline=Deadline.after(self.deadline_s)
                )
                if token is not None:
                    self._apply(Kind.USER, changes.users, result.tally, result, full=False)
                    self._apply(Kind.GROUP, changes.groups, result.tally, result, full=False)
                token = changes.token
                self.imports.set_delta_token(token)
                if not changes.more:
                    break
                if budget_s is not None and time.monotonic() - started > budget_s:
                    result.status = Status.MORE
                    break
        except AdapterError as exc:
            result.status, result.error = Status.FAILED, f"{type(exc).__name__}: {exc.message}"
            log.warning("delta import stopped (it resumes next time): %s", result.error)
        finally:
            self.imports.release(owner, name="sync:delta-lock")
        result.elapsed_s = time.monotonic() - started
        return result

    # Applying a page --------------------------------------------------------------------------
    def _apply(
        self,
        kind: Kind,
        records: Sequence[LegacyRecord],
        tally: Tally,
        result: PassResult,
        *,
        full: bool,
    ) -> None:
        tally.add("listed", len(records))
        # Records that carry no SCIM id: the id the reconciler settled their key under, if any.
        settled = self.imports.ids_of_keys(kind, [r.key for r in records if not r.resource_id])
        ids = [settled.get(r.key) or resource_id(self.namespace, kind, r) for r in records]
        if full:
            # Listed, even when skipped below: a record that exists is never removed.
            self.imports.mark_seen(kind, ids)
        good: list[tuple[str, LegacyRecord]] = []
        names: set[str] = set()
        for rid, record in zip(ids, records, strict=True):
            reason = malformed(kind, record)
            name = str(record.document.get("userName" if kind is Kind.USER else "displayName"))
            if reason is None and name.lower() in names:
                reason = f"duplicate {'userName' if kind is Kind.USER else 'displayName'} {name!r}"
            if reason is not None:
                self._skip(kind, record.key, reason, tally, result)
                continue
            names.add(name.lower())
            good.append((rid, record))
        members = self._member_ids(good) if kind is Kind.GROUP else {}
        stored = {s.id: s for s in self.imports.stored(kind, [rid for rid, _ in good])}
        now = now_iso()
        capabilities = self.adapter.capabilities
        stored_attributes = (
            capabilities.user_attributes if kind is Kind.USER else capabilities.group_attributes
        )
        observations: list[Observation] = []
        for rid, record in good:
            current = stored[rid]
            created = ((current.desired or {}).get("meta") or {}).get("created") or now
            doc = document(
                kind,
                rid,
                record,
                member_ids=members.get(record.key, ()),
                created=created,
                last_modified=now,
                version=current.version + 1,
            )
            decision = decide(kind, current, doc, drift=self.drift, attributes=stored_attributes)
            if decision.write is None:
                tally.add(decision.why)
                continue
            observations.append(
                Observation(
                    kind,
                    rid,
                    current.version,
                    decision.write,
                    record.key,
                    doc=doc if decision.write == "import" else None,
                    previous=current.desired,
                    observed=doc if decision.write == "enforce" else None,
                    origin="okta" if record.resource_id else "imported",
                )
            )
        outcomes = self.imports.observe(observations)
        imported: list[str] = []
        for obs, (outcome, detail) in zip(observations, outcomes, strict=True):
            if outcome in (Status.CREATED, Status.UPDATED, Status.ENFORCED):
                tally.add(outcome)
                imported.append(obs.legacy_key)
            elif outcome is Status.SAME:
                tally.add("unchanged")
            elif outcome in (Status.PENDING, Status.MOVED):
                tally.add("pending")  # Okta wrote meanwhile: its change wins
            elif outcome is Status.CONFLICT:
                attribute = detail.rsplit(":", 1)[-1]
                self._skip(
                    kind, obs.legacy_key, f"{attribute} held by another resource", tally, result
                )
            if outcome is Status.ENFORCED and self.publish is not None:
                self.publish(kind, obs.id)
        self.imports.forget_skipped(kind, imported)

    def _skip(self, kind: Kind, key: str, reason: str, tally: Tally, result: PassResult) -> None:
        tally.add("skipped")
        result.skipped_records[f"{kind.resource_type} {key}"] = reason
        self.imports.skipped(kind, key, reason)
        log.warning("skipped %s %s from the application: %s", kind.resource_type, key, reason)

    def _member_ids(self, groups: Sequence[tuple[str, LegacyRecord]]) -> dict[str, list[str]]:
        """Group key -> member ids, from the members' legacy keys."""
        wanted = sorted({str(k) for _, g in groups for k in g.document.get("members") or ()})
        known = self.imports.ids_of_keys(Kind.USER, wanted)
        for key in wanted:
            if key not in known:
                # Not imported yet (a delta that saw the group first): ask for its id.
                record = self.adapter.get_user(key, deadline=Deadline.after(self.deadline_s))
                if record is not None:
                    known[key] = resource_id(self.namespace, Kind.USER, record)
        return {
            g.key: [known[str(k)] for k in g.document.get("members") or () if str(k) in known]
            for _, g in groups
        }


def _is_redis_error(exc: Exception) -> bool:
    import redis

    return isinstance(exc, redis.RedisError)
