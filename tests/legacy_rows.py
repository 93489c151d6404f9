"""Rows a legacy application wrote itself into the ``sql`` adapter's tables (no SCIM id).

Written with plain SQL, as the application would, so imports see records scim-bridge never
created. Shared by the import tests and bench/bench_import.py.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from scim_bridge.adapters.port import Deadline
from scim_bridge.adapters.sql import SqlAdapter


def prefill(path: Path, users: int, *, start: int = 0, batch: int = 10_000) -> None:
    """Create the tables (through the adapter) and insert ``users`` rows of the application's."""
    adapter = SqlAdapter.from_options({"url": f"sqlite:///{path}"})
    adapter.list_users(cursor=None, limit=1, deadline=Deadline.after(30))  # creates the schema
    adapter.close()
    stamp = "2025-06-01 08:00:00.000000"
    with sqlite3.connect(path) as db:
        for low in range(start, start + users, batch):
            db.executemany(
                "INSERT INTO legacy_users (user_name, given_name, family_name, display_name,"
                " email, active, created_at, updated_at) VALUES (?, ?, ?, ?, ?, 1, ?, ?)",
                [
                    (
                        f"person{i}@legacy.example.com",
                        f"Given{i}",
                        f"Family{i}",
                        f"Given{i} Family{i}",
                        f"person{i}@legacy.example.com",
                        stamp,
                        stamp,
                    )
                    for i in range(low, min(low + batch, start + users))
                ],
            )


def touch(path: Path, user_ids: list[int], display_name: str) -> None:
    """The application edits some rows itself (a new display name, ``updated_at`` now)."""
    with sqlite3.connect(path) as db:
        db.executemany(
            "UPDATE legacy_users SET display_name = ?, updated_at = strftime('%Y-%m-%d %H:%M:%f',"
            " 'now') WHERE id = ?",
            [(display_name, i) for i in user_ids],
        )
