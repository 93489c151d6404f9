"""``scim-bridge mapping check`` for LDAP mappings, and the worker's start check.

``scim-bridge mapping check`` runs :func:`check` when the adapter is ``ldap``
(``SCIM_BRIDGE_ADAPTER=ldap`` or ``--adapter ldap``); the worker calls
:func:`refuse_broken_mapping` before it consumes anything. A broken mapping stops the worker; a
refused bind too, and it is recorded where ``scim-bridge status`` shows it, so an operator sees
"the bind DN's password is wrong" instead of a queue that never drains. Nothing pending is lost
meanwhile: changes wait in Redis until a worker starts.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from scim_bridge.adapters.mapping import MappingProblems, check_outcome
from scim_bridge.adapters.port import Deadline

CHECK_BUDGET_S = 15.0


def check(mapping: str | Path | None) -> tuple[list[str], str]:
    """The problems of the LDAP ``mapping`` against its directory, and a summary line."""
    from scim_bridge.adapters.ldap import LdapAdapter

    if not mapping:
        return (
            ["SCIM_BRIDGE_LDAP_MAPPING: name the LDAP mapping file (docs/ldap.md)"],
            "the mapping was not checked",
        )
    try:
        adapter = LdapAdapter.from_options({"mapping": str(mapping)})
    except MappingProblems as exc:
        return exc.outcome()
    try:
        problems = adapter.check(Deadline.after(CHECK_BUDGET_S))
    finally:
        adapter.close()
    groups = adapter.mapping.groups
    return check_outcome(
        adapter.mapping.source,
        problems,
        adapter.capabilities,
        adapter.mapping.users.base,
        None if groups is None else groups.base,
    )


def refuse_broken_mapping(settings: Any, report: Any = None) -> None:
    """Stop the worker when the LDAP mapping has problems or the directory refuses the bind;
    ``report(text)`` records why for ``scim-bridge status`` (an unreachable directory is no
    reason to stop: the adapter tries again on every call and the breaker opens)."""
    options = settings.adapter_options_resolved()
    problems, summary = check(options.get("mapping"))
    if report is not None:
        report("; ".join(problems) if problems and not _unreachable(problems) else None)
    if problems and not _unreachable(problems):
        for line in problems:
            print(line, file=sys.stderr)
        print(summary, file=sys.stderr)
        raise SystemExit(2)


def _unreachable(problems: list[str]) -> bool:
    return len(problems) == 1 and problems[0].startswith("ldap.url:")
