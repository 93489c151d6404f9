"""The invariant every fault case ends with, and the counts the fault benchmark records.

After the system drained (no dirty resource left), for every resource that a client got a 2xx
answer for, that the read model holds, or that the legacy application holds:

- live in the read model: exactly one legacy record carries its id, with the desired userName,
  active, name (given, family) and displayName (a group: displayName and exactly the desired
  members), and the read model holds at least the last version a client was answered; or the
  resource is in the dead-letter store with a reason;
- deleted (the client's last accepted change was a DELETE, or the read model no longer has it):
  no legacy record carries its id, unless the dead-letter store says why;
- the legacy application holds no userName twice (case-insensitively), no id twice, and no
  record whose id the read model does not know: each of those is a *duplicate*.

Counts, per accepted change (one 2xx answer): *applied* (the legacy application holds the
resource's final desired state, or the change was superseded by a later one it holds),
*dead-lettered* (the dead-letter store holds the resource with a reason, at this version or a
later one), *lost* (neither). *duplicated* counts the duplicate legacy records.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from scim_bridge.store import Kind, Store
from tests.faults.clients import Ledger


@dataclass
class Report:
    """The outcome of one check."""

    accepted: int = 0
    applied: int = 0
    dead_lettered: int = 0
    lost: int = 0
    duplicated: int = 0
    resources: int = 0
    legacy_users: int = 0
    legacy_groups: int = 0
    problems: list[str] = field(default_factory=list)
    suspects: list[str] = field(default_factory=list)
    """Ids of the lost or duplicated resources, to look up in logs."""

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.duplicated == 0 and not self.problems

    def counts(self) -> dict[str, int]:
        data = asdict(self)
        data.pop("problems")
        data.pop("suspects")
        return data

    def explain(self, limit: int = 25) -> str:
        head = json.dumps(self.counts())
        more = len(self.problems) - limit
        lines = self.problems[:limit] + ([f"... and {more} more"] if more > 0 else [])
        return head + "\n" + "\n".join(lines)


def _user_fields(doc: dict[str, Any] | None) -> dict[str, Any]:
    doc = doc or {}
    name = doc.get("name") or {}
    return {
        "userName": doc.get("userName"),
        "active": bool(doc.get("active", True)),
        "givenName": name.get("givenName"),
        "familyName": name.get("familyName"),
        "displayName": doc.get("displayName"),
    }


def _legacy_user_fields(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "userName": row["user_name"],
        "active": bool(row["active"]),
        "givenName": row["given_name"],
        "familyName": row["family_name"],
        "displayName": row["display_name"],
    }


def _live_ids(store: Store, kind: Kind) -> set[str]:
    return {rid for batch in store.iter_ids(kind) for rid in batch}


def check(store: Store, db_path: Path, ledger: Ledger | None = None) -> Report:
    """Compare the legacy database with the read model and the clients' ledger."""
    ledger = ledger or Ledger()
    report = Report()
    legacy = legacy_rows(db_path)
    report.legacy_users, report.legacy_groups = len(legacy["users"]), len(legacy["groups"])
    dead = store.dead_letters()
    dirty = {m.decode() for m in store.redis.zrange(store.keys.dirty, 0, -1)}
    if dirty:
        report.problems.append(f"{len(dirty)} resources still dirty: {sorted(dirty)[:5]}")

    users_by_scim: dict[str | None, list[dict[str, Any]]] = {}
    for row in legacy["users"]:
        users_by_scim.setdefault(row["scim_id"], []).append(row)
    groups_by_scim: dict[str | None, list[dict[str, Any]]] = {}
    for row in legacy["groups"]:
        groups_by_scim.setdefault(row["scim_id"], []).append(row)
    scim_of_user_row = {row["id"]: row["scim_id"] for row in legacy["users"]}
    members_of: dict[int, set[str | None]] = {}
    for row in legacy["memberships"]:
        members_of.setdefault(row["group_id"], set()).add(scim_of_user_row.get(row["user_id"]))

    # Duplicates in the legacy application ----------------------------------------------------
    live = {Kind.USER: _live_ids(store, Kind.USER), Kind.GROUP: _live_ids(store, Kind.GROUP)}
    for kind, by_scim, name_column in (
        (Kind.USER, users_by_scim, "user_name"),
        (Kind.GROUP, groups_by_scim, "display_name"),
    ):
        for scim_id, rows in by_scim.items():
            if scim_id is None or scim_id not in live[kind]:
                report.duplicated += len(rows)
                report.suspects.append(str(scim_id))
                report.problems.append(
                    f"legacy {kind.resource_type} record(s) {[r['id'] for r in rows]} carry id "
                    f"{scim_id} unknown to the read model"
                    + (
                        f" (dead letter: {dead[f'{kind}:{scim_id}']['error']})"
                        if f"{kind}:{scim_id}" in dead
                        else ""
                    )
                )
            elif len(rows) > 1:
                report.duplicated += len(rows) - 1
                report.problems.append(f"id {scim_id} held by legacy records {rows}")
        names = Counter(str(row[name_column]).lower() for rows in by_scim.values() for row in rows)
        for name, count in names.items():
            if count > 1:
                report.duplicated += count - 1
                report.problems.append(f"legacy {kind.resource_type} name {name!r} held {count}x")

    # Each resource ------------------------------------------------------------------------------
    last_version: dict[tuple[Kind, str], int] = {}
    for change in ledger.changes:
        key = (change.kind, change.rid)
        last_version[key] = max(last_version.get(key, 0), change.version)
    candidates: set[tuple[Kind, str]] = set(ledger.final)
    candidates |= {(k, rid) for k in Kind for rid in live[k]}
    candidates |= {(Kind.USER, s) for s in users_by_scim if s is not None}
    candidates |= {(Kind.GROUP, s) for s in groups_by_scim if s is not None}
    report.resources = len(candidates)
    verdict: dict[tuple[Kind, str], str] = {}
    missing = object()
    for kind, rid in sorted(candidates):
        member = f"{kind}:{rid}"
        entry = dead.get(member)
        in_dlq = entry is not None and bool(entry.get("error"))
        snap = store.snapshot(kind, rid)
        is_live = snap.exists and not snap.deleted and snap.desired is not None
        rows = (users_by_scim if kind is Kind.USER else groups_by_scim).get(rid, [])
        intent = ledger.final.get((kind, rid), missing)
        trouble: list[str] = []
        if is_live:
            if snap.state != "applied" or member in dirty:
                trouble.append(f"still {snap.state} (av {snap.applied_version}/v {snap.version})")
            if len(rows) != 1:
                trouble.append(f"{len(rows)} legacy records")
            elif kind is Kind.USER:
                want, have = _user_fields(snap.desired), _legacy_user_fields(rows[0])
                if want != have:
                    trouble.append(f"legacy holds {have}, desired is {want}")
            else:
                want_name = (snap.desired or {}).get("displayName")
                if rows[0]["display_name"] != want_name:
                    trouble.append(f"legacy name {rows[0]['display_name']!r} != {want_name!r}")
                wanted = {m["value"] for m in (snap.desired or {}).get("members") or ()}
                wanted &= live[Kind.USER]
                held = members_of.get(rows[0]["id"], set())
                if held != wanted:
                    trouble.append(
                        f"legacy members {sorted(map(str, held))} != desired {sorted(wanted)}"
                    )
            if intent is None:
                trouble.append("the client's accepted DELETE is not in the read model")
            elif intent is not missing and kind is Kind.USER:
                assert isinstance(intent, dict)
                if _user_fields(intent) != _user_fields(snap.desired):
                    trouble.append(
                        f"read model holds {_user_fields(snap.desired)}, the client's last "
                        f"accepted write was {_user_fields(intent)}"
                    )
            if snap.version < last_version.get((kind, rid), 0):
                trouble.append(
                    f"read model at version {snap.version}, a client was answered version "
                    f"{last_version[(kind, rid)]}"
                )
        else:
            if rows:
                trouble.append(f"deleted, but legacy records {[r['id'] for r in rows]} remain")
            if isinstance(intent, dict):
                trouble.append("accepted, but the read model no longer has it")
        if not trouble:
            verdict[(kind, rid)] = "applied"
        elif in_dlq:
            verdict[(kind, rid)] = "dead-lettered"
        else:
            verdict[(kind, rid)] = "lost"
            report.suspects.append(rid)
            report.problems.append(f"{kind.resource_type} {rid}: " + "; ".join(trouble))

    # Each accepted change -----------------------------------------------------------------------
    report.accepted = ledger.accepted
    for change in ledger.changes:
        result = verdict.get((change.kind, change.rid), "lost")
        entry = dead.get(f"{change.kind}:{change.rid}")
        if result == "applied" and entry and int(entry.get("version", 0)) >= change.version:
            result = "dead-lettered"
        if result == "applied":
            report.applied += 1
        elif result == "dead-lettered":
            report.dead_lettered += 1
        else:
            report.lost += 1
    return report


def legacy_rows(db_path: Path) -> dict[str, Any]:
    """The legacy tables as they are (read-only connection)."""
    if not db_path.exists():
        return {"users": [], "groups": [], "memberships": []}
    connection = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)
    connection.row_factory = sqlite3.Row
    try:
        tables = {
            r[0] for r in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
        users = (
            [dict(r) for r in connection.execute("SELECT * FROM legacy_users ORDER BY id")]
            if "legacy_users" in tables
            else []
        )
        groups = (
            [dict(r) for r in connection.execute("SELECT * FROM legacy_groups ORDER BY id")]
            if "legacy_groups" in tables
            else []
        )
        memberships = (
            [dict(r) for r in connection.execute("SELECT * FROM legacy_memberships")]
            if "legacy_memberships" in tables
            else []
        )
    finally:
        connection.close()
    for row in users + groups:
        if isinstance(row.get("profile"), str):
            row["profile"] = json.loads(row["profile"])
    return {"users": users, "groups": groups, "memberships": memberships}
