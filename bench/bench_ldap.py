"""Speed of the ldap adapter against a local OpenLDAP slapd.

    .venv/bin/python bench/bench_ldap.py [--workers 4] [--creates 2000] [--entries 10000]

It starts its own slapd (tests/adapters/directory.py: a temporary cn=config and mdb database on
a free port), then:

* **creates**: ``--workers`` processes, each with its own ``LdapAdapter`` (as Celery's prefork
  workers have), create ``--creates`` users in all through ``create_user`` (the inetOrgPerson
  mapping of the tests: an idempotency search, a search for groups still naming the new DN,
  the add, the read of the new entryUUID; an SSHA-hashed password on every fifth user);
  creates per second over the wall time from the first to the last;
* **listing**: fills the users' base up to ``--entries`` entries, then pages through all of them
  with ``list_users(limit=500)`` (the import's page size; Simple Paged Results underneath) in a
  fresh adapter, and reports the seconds the full listing took.

Results: bench/RESULTS-ldap.md and bench/results-ldap.json, with ``uptime`` before and after.
Targets: at least 100 creates/s with 4 workers; the 10,000-entry listing in at most 5 s.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scim_bridge.adapters.contract import budget, user_document  # noqa: E402
from scim_bridge.adapters.ldap import LdapAdapter  # noqa: E402
from tests.adapters.directory import Slapd, write_mapping  # noqa: E402


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def create_batch(mapping: str, worker: int, count: int, start_at: float) -> tuple[float, float]:
    """One worker: ``count`` creates; (first start, last end) in wall-clock seconds."""
    adapter = LdapAdapter.from_options({"mapping": mapping})
    adapter.list_users(cursor=None, limit=1, deadline=budget())  # connect and check first
    while time.time() < start_at:
        time.sleep(0.001)
    began = time.time()
    for n in range(count):
        name = f"w{worker}-u{n:06d}"
        password = f"pw-{name}" if n % 5 == 0 else None
        adapter.create_user(f"id-{name}", user_document(name), password=password, deadline=budget())
    ended = time.time()
    adapter.close()
    return began, ended


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--creates", type=int, default=2000)
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--page", type=int, default=500)
    args = parser.parse_args()

    before = uptime()
    root = Path(tempfile.mkdtemp(prefix="bench-ldap-"))
    slapd = Slapd(root)
    try:
        mapping = str(write_mapping(slapd, root))
        per_worker = args.creates // args.workers
        start_at = time.time() + 2.0
        with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
            spans = pool.starmap(
                create_batch,
                [(mapping, w, per_worker, start_at) for w in range(args.workers)],
            )
        created = per_worker * args.workers
        wall = max(end for _, end in spans) - min(begin for begin, _ in spans)
        creates_per_s = created / wall

        # Fill up to --entries (not timed), then the timed full listing in a fresh adapter.
        remaining = args.entries - created
        if remaining > 0:
            fill = max(1, remaining // args.workers)
            with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
                pool.starmap(
                    create_batch,
                    [(mapping, 100 + w, fill, time.time()) for w in range(args.workers)],
                )
        lister = LdapAdapter.from_options({"mapping": mapping})
        lister.list_users(cursor=None, limit=1, deadline=budget())  # the mapping check, once
        listed = 0
        cursor = None
        started = time.monotonic()
        while True:
            page = lister.list_users(cursor=cursor, limit=args.page, deadline=budget())
            listed += len(page.records)
            if page.cursor is None:
                break
            cursor = page.cursor
        listing_s = time.monotonic() - started
        lister.close()
    finally:
        slapd.stop()
    after = uptime()

    results: dict[str, Any] = {
        "run_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join(["bench/bench_ldap.py", *sys.argv[1:]]),
        "uptime_before": before,
        "uptime_after": after,
        "workers": args.workers,
        "creates": created,
        "creates_wall_s": round(wall, 3),
        "creates_per_s": round(creates_per_s, 1),
        "listed": listed,
        "listing_page": args.page,
        "listing_s": round(listing_s, 3),
        "listing_entries_per_s": round(listed / listing_s, 0),
    }
    (ROOT / "bench" / "results-ldap.json").write_text(json.dumps(results, indent=2) + "\n")
    met_creates = "met" if creates_per_s >= 100 else "NOT met"
    met_listing = "met" if listing_s <= 5 and listed >= 10_000 else "NOT met"
    creates_row = (
        f"| creates through `create_user`, {args.workers} worker processes each with its own"
        f" adapter | **{creates_per_s:.0f} creates/s** ({created} in {wall:.2f} s)"
        f" | >= 100/s: {met_creates} |"
    )
    listing_row = (
        f"| full listing with `list_users(limit={args.page})` (Simple Paged Results)"
        f" | **{listing_s:.2f} s** for {listed} entries ({listed / listing_s:.0f}/s)"
        f" | 10,000 in <= 5 s: {met_listing} |"
    )
    (ROOT / "bench" / "RESULTS-ldap.md").write_text(
        f"""# ldap adapter against a local slapd

Run {results["run_at"]} with `{results["command"]}` on 2 CPUs, slapd (OpenLDAP 2.5, mdb) on the
same machine; the machine is shared:

    before: {before}
    after:  {after}

| measure | figure | target |
| --- | --- | --- |
{creates_row}
{listing_row}

A create is four requests: the search for an earlier delivery by userName, the search for
groups still naming its DN, the add, the read of the new entry's entryUUID; every fifth user
carries a password, hashed (SSHA) in the adapter. The listing holds one paged search open
between pages on its own connection.
Raw figures: results-ldap.json.
"""
    )
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
