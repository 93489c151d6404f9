"""Speed of the mapping-driven sql adapter against the fixed-table adapter it replaced.

    .venv/bin/python bench/bench_sql_mapping.py [--calls 300] [--rounds 3] [--rows 20000]

Per database (SQLite in a temporary file; PostgreSQL at --postgres in a schema of its own,
dropped afterwards), it measures the per-call cost of create_user, update_user and
deactivate_user for three adapters taking turns every 10 calls, so machine load falls on all
alike (the median of --rounds such runs is reported):

* ``fixed``: the fixed-table adapter as it was before mappings (``adapters/sql.py`` at commit
  ``d7d2420``, read with ``git show``), the baseline the target is stated against;
* ``default``: today's adapter on its default mapping (the same tables);
* ``foreign``: today's adapter on the HR mapping of the tests (no id column, a link table,
  status letters, a NOT NULL column filled by a default).

Creates carry no password: the hash (bcrypt's ~0.2 s) would hide the mapping's cost.
Then it loads --rows users into the foreign mapping's tables on SQLite and pages through them
with list_users(limit=1000), reporting rows per second. Results: bench/RESULTS-sql-mapping.md
and bench/results-sql-mapping.json. Targets: foreign at most 10% above fixed per call (SQLite
and PostgreSQL); list_users at least 20,000 rows/s on SQLite.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scim_bridge.adapters.contract import budget, user_document  # noqa: E402
from scim_bridge.adapters.sql import SqlAdapter  # noqa: E402
from tests.adapters.databases import HR_MAPPING, hr_schema  # noqa: E402

BASELINE_COMMIT = "d7d2420"


def fixed_adapter_class() -> Any:
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{BASELINE_COMMIT}:adapters/sql.py"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    path = Path(tempfile.mkdtemp()) / "fixed_sql.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("fixed_sql", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.SqlAdapter


BATCH = 10  # calls per adapter before the next adapter's turn: load falls on all alike


def interleaved(adapters: dict[str, Any], prefix: str, calls: int) -> dict[str, dict[str, float]]:
    """Mean milliseconds per create, update and deactivate of ``calls`` users per adapter, the
    adapters taking turns every :data:`BATCH` calls."""
    keys: dict[str, list[str]] = {label: [] for label in adapters}
    spent: dict[str, dict[str, float]] = {label: {} for label in adapters}

    def create(label: str, adapter: Any, n: int) -> None:
        name = f"{prefix}{label}-{n}"
        keys[label].append(
            adapter.create_user(f"id-{name}", user_document(name), password=None, deadline=budget())
        )

    def change(label: str, adapter: Any, n: int) -> None:
        name = f"{prefix}{label}-{n}"
        adapter.update_user(
            keys[label][n],
            user_document(name, given_name="Augusta"),
            previous=user_document(name),
            deadline=budget(),
        )

    def deactivate(label: str, adapter: Any, n: int) -> None:
        adapter.deactivate_user(keys[label][n], deadline=budget())

    for operation, step in (("create", create), ("update", change), ("deactivate", deactivate)):
        for start in range(0, calls, BATCH):
            labels = list(adapters)
            if (start // BATCH) % 2:
                labels.reverse()
            for label in labels:
                began = time.perf_counter()
                for n in range(start, min(start + BATCH, calls)):
                    step(label, adapters[label], n)
                elapsed = time.perf_counter() - began
                spent[label][operation] = spent[label].get(operation, 0.0) + elapsed
    return {
        label: {op: seconds * 1000 / calls for op, seconds in operations.items()}
        for label, operations in spent.items()
    }


def hr_tables(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as connection:
        for statement in hr_schema(engine.dialect.name):
            connection.execute(text(statement))
    engine.dispose()


def adapters_for(url: str, mapping_file: Path, fixed: Any) -> dict[str, Callable[[], Any]]:
    from sqlalchemy import create_engine as engine_for

    return {
        "fixed": lambda: fixed(engine_for(url), table_prefix="fixed_"),
        "default": lambda: SqlAdapter.from_options({"url": url, "table_prefix": "dflt_"}),
        "foreign": lambda: SqlAdapter.from_options({"url": url, "mapping": str(mapping_file)}),
    }


def measure_database(name: str, url: str, calls: int, rounds: int, fixed: Any) -> dict[str, Any]:
    hr_tables(url)
    mapping_file = Path(tempfile.mkdtemp()) / "hr.toml"
    mapping_file.write_text(HR_MAPPING)
    builders = adapters_for(url, mapping_file, fixed)
    adapters = {label: build() for label, build in builders.items()}
    interleaved(adapters, "warm-", 20)  # tables, reflection, pools, statement caches
    results: dict[str, dict[str, list[float]]] = {label: {} for label in adapters}
    for round_number in range(rounds):
        for label, timings in interleaved(adapters, f"r{round_number}-", calls).items():
            for operation, value in timings.items():
                results[label].setdefault(operation, []).append(value)
    for adapter in adapters.values():
        adapter.close()
    summary: dict[str, Any] = {"calls": calls, "rounds": rounds, "ms_per_call": {}}
    for label, operations in results.items():
        summary["ms_per_call"][label] = {op: statistics.median(v) for op, v in operations.items()}
    summary["foreign_over_fixed"] = {
        op: summary["ms_per_call"]["foreign"][op] / summary["ms_per_call"]["fixed"][op] - 1
        for op in ("create", "update", "deactivate")
    }
    summary["raw"] = results
    print(name, json.dumps(summary["ms_per_call"]), json.dumps(summary["foreign_over_fixed"]))
    return summary


def measure_listing(rows: int, directory: Path) -> dict[str, Any]:
    url = f"sqlite:///{directory / 'list.db'}"
    hr_tables(url)
    mapping_file = directory / "hr.toml"
    mapping_file.write_text(HR_MAPPING)
    adapter = SqlAdapter.from_options({"url": url, "mapping": str(mapping_file)})
    adapter.find_user("none", deadline=budget())  # creates the link table
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO employees (login, fname, lname, mail, dept, status, created_by,"
                " modified) VALUES (:l, 'Ada', 'Lovelace', :m, 'Engines', 'A', 'okta',"
                " '2026-01-01 00:00:00')"
            ),
            [{"l": f"user{n}", "m": f"user{n}@example.com"} for n in range(rows)],
        )
        connection.execute(
            text(
                "INSERT INTO scim_bridge_links (kind, scim_id, legacy_key)"
                " SELECT 'u', 'id-' || emp_no, CAST(emp_no AS TEXT) FROM employees"
            )
        )
    engine.dispose()
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        cursor, seen = None, 0
        while True:
            page = adapter.list_users(cursor=cursor, limit=1000, deadline=budget())
            seen += len(page.records)
            if page.cursor is None:
                break
            cursor = page.cursor
        timings.append(time.perf_counter() - started)
        assert seen == rows
    adapter.close()
    best = statistics.median(timings)
    result = {"rows": rows, "page": 1000, "seconds": timings, "rows_per_s": rows / best}
    print("list_users", json.dumps(result))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    fixed = fixed_adapter_class()
    load_before = os.getloadavg()
    directory = Path(tempfile.mkdtemp())
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": " ".join(["bench/bench_sql_mapping.py", *sys.argv[1:]]),
        "load_before": load_before,
        "cpus": os.cpu_count(),
    }
    results["sqlite"] = measure_database(
        "sqlite", f"sqlite:///{directory / 'calls.db'}", args.calls, args.rounds, fixed
    )
    schema = f"sbb_{uuid.uuid4().hex[:10]}"
    admin = create_engine(args.postgres, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        url = f"{args.postgres}?options=-csearch_path%3D{schema}"
        results["postgresql"] = measure_database("postgresql", url, args.calls, args.rounds, fixed)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()
    results["list_users_sqlite"] = measure_listing(args.rows, directory)
    results["load_after"] = os.getloadavg()
    write_results(results)


def write_results(results: dict[str, Any]) -> None:
    (ROOT / "bench" / "results-sql-mapping.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        "# sql adapter: mapping-driven vs fixed tables",
        "",
        f"Run {results['date']} with `{results['command']}` on {results['cpus']} CPUs; load"
        f" average before {results['load_before'][0]:.2f}, after {results['load_after'][0]:.2f}"
        " (a shared machine: each figure is the median of rounds in which the adapters take"
        " turns every 10 calls).",
        "",
        "| database | operation | fixed ms | default ms | foreign ms | foreign vs fixed | target |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for database in ("sqlite", "postgresql"):
        summary = results[database]
        for op in ("create", "update", "deactivate"):
            ms = {label: summary["ms_per_call"][label][op] for label in summary["ms_per_call"]}
            ratio = summary["foreign_over_fixed"][op]
            verdict = "met" if ratio <= 0.10 else "NOT met"
            lines.append(
                f"| {database} | {op} | {ms['fixed']:.3f} | {ms['default']:.3f} |"
                f" {ms['foreign']:.3f} | {ratio:+.1%} | <= +10%: {verdict} |"
            )
    listing = results["list_users_sqlite"]
    verdict = "met" if listing["rows_per_s"] >= 20_000 else "NOT met"
    lines += [
        "",
        f"list_users on SQLite, foreign mapping, {listing['rows']} rows in pages of"
        f" {listing['page']}: **{listing['rows_per_s']:,.0f} rows/s**"
        f" (target >= 20,000: {verdict}).",
        "",
        "`fixed` is the adapter before mappings (commit d7d2420), `default` today's adapter on its",
        "built-in tables, `foreign` the HR mapping of tests/adapters/databases.py (link table, no",
        "id column). Raw figures: results-sql-mapping.json.",
        "",
    ]
    (ROOT / "bench" / "RESULTS-sql-mapping.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
