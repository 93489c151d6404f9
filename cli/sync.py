"""``scim-bridge sync`` and ``scim-bridge accounts``: imports run by an operator (docs/import.md).

``sync`` runs a full pass in this process, through the same adapter, global cap and circuit
breaker as the workers; ``--pending-removals`` lists removals the threshold held back and
``--confirm-removals`` applies them. ``accounts`` lists the read model's records by origin.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from typing import Any

ORIGINS = {
    "okta": "created by Okta through scim-bridge",
    "linked": "imported, since written by Okta",
    "imported": "imported, never touched by Okta (candidates for orphaned access)",
}


def import_rows(imports: dict[str, Any]) -> list[tuple[str, str]]:
    """The lines ``scim-bridge status`` shows about imports."""
    last = imports.get("last") or {}
    running = imports.get("running")
    rows = [
        (
            "drift (changes made in the application)",
            f"{imports['drift_imported']} imported, {imports['drift_enforced']} re-applied",
        ),
        (
            "last full import",
            f"{last.get('finished_at')}, {(last.get('tally') or {}).get('listed', 0)} listed"
            if last
            else "never",
        ),
        (
            "full import under way",
            f"at {running.get('phase')} after {running.get('listed', 0)} records"
            if running
            else "no",
        ),
        ("removals held back", str(imports["removals_held"])),
        ("records skipped (malformed)", str(imports["skipped_records"])),
    ]
    if imports.get("error"):
        rows.append(("import stopped by", str(imports["error"])))
    return rows


def add_sync_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``scim-bridge sync``."""
    parser.add_argument("--json", action="store_true", help="print a JSON summary")
    what = parser.add_mutually_exclusive_group()
    what.add_argument(
        "--pending-removals", action="store_true", help="list removals held by the threshold"
    )
    what.add_argument("--confirm-removals", action="store_true", help="apply the held removals")
    what.add_argument("--delta", action="store_true", help="run a delta pass instead of a full one")


def _progress_printer(stream: Any) -> Any:
    def show(progress: Any) -> None:
        rate = progress.rate_per_s
        left = ""
        if progress.expected > progress.records and rate > 0:
            left = f", about {(progress.expected - progress.records) / rate:.0f} s left"
        stream.write(f"\r{progress.phase}: {progress.records:,} records, {rate:,.0f}/s{left}\033[K")
        stream.flush()

    return show


def run_sync(args: argparse.Namespace, runtime: Any) -> int:
    """The ``sync`` command; its exit status is 1 when the pass failed or held removals."""
    from scim_bridge.store import Status
    from scim_bridge.workers.celery_app import create_celery
    from scim_bridge.workers.priority import lower_own_session
    from scim_bridge.workers.sync_tasks import build_importer
    from scim_bridge.workers.tasks import RECONCILE

    app = create_celery(runtime.settings)
    importer = build_importer(
        runtime, lambda kind, rid: app.send_task(RECONCILE, args=(kind.value, rid))
    )
    if args.pending_removals:
        held = importer.imports.held()
        if args.json:
            print(json.dumps(held, indent=2))
        elif not held:
            print("no removals are held")
        else:
            for member, entry in sorted(held.items()):
                print(f"{member}  {entry.get('name')}  (legacy key {entry.get('key')})")
        return 0
    if args.confirm_removals:
        removed = importer.confirm_removals()
        print(json.dumps({"removed": removed}) if args.json else f"{removed} records removed")
        return 0
    # An import is background work: the pass itself runs in a lowered thread (workers/priority.py,
    # SCIM_BRIDGE_SYNC_NICENESS); a command leading its own session lowers that session's CPU
    # share too, so reads stay fast while it runs (bench/RESULTS-import.md measures both).
    lower_own_session(runtime.settings.sync_niceness)
    interactive = sys.stderr.isatty() and not args.json
    progress = _progress_printer(sys.stderr) if interactive else None
    while True:
        result = importer.delta_pass() if args.delta else importer.full_pass(progress=progress)
        if result.status is not Status.BUSY:
            break
        if interactive:
            sys.stderr.write("\ranother pass holds the lock; waiting\033[K")
        time.sleep(1)
    if interactive:
        sys.stderr.write("\n")
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        tally = result.tally
        print(
            f"{result.status}: {tally.listed} listed, {tally.created} created, "
            f"{tally.updated} updated, {tally.unchanged} unchanged, {tally.pending} left to "
            f"pending Okta changes, {tally.skipped} skipped, {tally.enforced} re-applied, "
            f"{result.removed} removed in {result.elapsed_s:.1f} s"
        )
        for record, reason in sorted(result.skipped_records.items()):
            print(f"  skipped {record}: {reason}")
        if result.removals_held:
            print(
                f"  {result.removals_held} removals held back (more than "
                "SCIM_BRIDGE_SYNC_MAX_REMOVALS): review with `scim-bridge sync "
                "--pending-removals`, apply with `--confirm-removals`"
            )
        if result.error:
            print(f"  stopped: {result.error} (the next pass resumes here)", file=sys.stderr)
    return 1 if result.status is Status.FAILED or result.removals_held else 0


def run_accounts(args: argparse.Namespace, runtime: Any) -> int:
    """The ``accounts`` command: records by origin, with counts."""
    from scim_bridge.store import Kind
    from scim_bridge.store.imports import ImportStore

    imports = ImportStore(runtime.store)
    listing: dict[str, list[dict[str, Any]]] = {}
    counts: Counter[str] = Counter()
    for kind in (Kind.USER, Kind.GROUP):
        for rid, origin, name in imports.origins(kind):
            listing.setdefault(origin, []).append(
                {"kind": kind.resource_type, "id": rid, "name": name}
            )
            counts[origin] += 1
    if args.json:
        print(json.dumps({"counts": dict(counts), "accounts": listing}, indent=2))
        return 0
    for origin, meaning in ORIGINS.items():
        print(f"{origin} ({meaning}): {counts[origin]}")
        for entry in listing.get(origin, []):
            print(f"  {entry['kind']} {entry['id']}  {entry['name']}")
    return 0
