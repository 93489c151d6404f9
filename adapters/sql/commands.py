"""``scim-bridge mapping check`` and ``scim-bridge mapping init``, and the worker's start check.

The CLI adds this command group with :func:`add_arguments` and runs it with :func:`run`; the
worker calls :func:`refuse_broken_mapping` before it consumes anything, so a broken mapping stops
it with the same lines ``mapping check`` prints.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from sqlalchemy.exc import DBAPIError

from scim_bridge.adapters.mapping import MappingProblems, check_outcome

HELP = (
    "check the sql or ldap adapter's mapping against the database or directory, or write a"
    " starting sql mapping"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``mapping`` command group's arguments."""
    actions = parser.add_subparsers(dest="mapping_action", required=True)
    check = actions.add_parser(
        "check", help="validate the mapping against the live database; one line per problem"
    )
    check.add_argument(
        "--mapping",
        type=Path,
        default=None,
        help="default: $SCIM_BRIDGE_SQL_MAPPING (ldap: $SCIM_BRIDGE_LDAP_MAPPING)",
    )
    check.add_argument("--url", default=None, help="default: $SCIM_BRIDGE_SQL_URL")
    check.add_argument(
        "--adapter",
        choices=("sql", "ldap"),
        default=None,
        help="whose mapping (default: $SCIM_BRIDGE_ADAPTER, else sql); ldap reads"
        " $SCIM_BRIDGE_LDAP_MAPPING",
    )
    init = actions.add_parser("init", help="write a starting mapping for a table (reflection)")
    init.add_argument("url", help="SQLAlchemy URL of the application's database")
    init.add_argument("--table", required=True, help="the users table, e.g. employees")
    init.add_argument("--output", type=Path, default=None, help="default: standard output")


def run(args: argparse.Namespace) -> int:
    """Run ``mapping check`` or ``mapping init``; the exit status."""
    if args.mapping_action == "init":
        return _init(args.url, args.table, args.output)
    adapter = args.adapter or os.environ.get("SCIM_BRIDGE_ADAPTER", "sql")
    if adapter == "ldap":
        from scim_bridge.adapters.ldap import commands as ldap

        mapping = args.mapping or os.environ.get("SCIM_BRIDGE_LDAP_MAPPING") or None
        problems, summary = ldap.check(mapping)
    else:
        url = args.url or os.environ.get("SCIM_BRIDGE_SQL_URL", "sqlite:///scim-bridge-legacy.db")
        mapping = args.mapping or os.environ.get("SCIM_BRIDGE_SQL_MAPPING") or None
        problems, summary = check(url, mapping)
    for line in problems:
        print(line)
    print(summary, file=sys.stderr if problems else sys.stdout)
    return 1 if problems else 0


def check(url: str, mapping: str | Path | None) -> tuple[list[str], str]:
    """The problems of ``mapping`` (``None``: the default one) at ``url``, and a summary line."""
    from scim_bridge.adapters.sql import SqlAdapter

    options: dict[str, Any] = {"url": url}
    if mapping:
        options["mapping"] = str(mapping)
    try:
        adapter = SqlAdapter.from_options(options)
    except MappingProblems as exc:
        return exc.outcome()
    try:
        problems = adapter.check()
    except DBAPIError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
        return [f"url: cannot reach the database: {reason}"], "the mapping was not checked"
    finally:
        adapter.close()
    groups = adapter.mapping.groups
    return check_outcome(
        adapter.mapping.source,
        problems,
        adapter.capabilities,
        adapter.mapping.users.table,
        None if groups is None else groups.table,
    )


def refuse_broken_mapping(settings: Any) -> None:
    """Stop the worker when the sql adapter's mapping has problems (an unreachable database is
    no reason: the adapter checks again on its first call)."""
    if settings.adapter != "sql":
        return
    options = settings.adapter_options_resolved()
    problems, summary = check(str(options["url"]), options.get("mapping"))
    if problems and not problems[0].startswith("url: cannot reach"):
        for line in problems:
            print(line, file=sys.stderr)
        print(summary, file=sys.stderr)
        raise SystemExit(2)


def _init(url: str, table: str, output: Path | None) -> int:
    from sqlalchemy import create_engine

    from scim_bridge.adapters.sql.inspect import init_mapping

    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            text = init_mapping(connection, table)
    except LookupError as exc:
        print(f"--table: {exc}", file=sys.stderr)
        return 1
    except DBAPIError as exc:
        print(f"url: cannot reach the database: {exc.orig}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text)
        print(f"wrote {output}; confirm every line marked 'guess', then: scim-bridge mapping check")
    return 0
