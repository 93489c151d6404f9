"""``scim-bridge status``: backlog, oldest pending change, dead letters, circuit, workers."""

from __future__ import annotations

import json
from typing import Any

from scim_bridge.cli.common import settings_or_exit


def operator_runtime() -> Any:
    """The workers' runtime, for the operator commands (they read and change the store)."""
    from scim_bridge.workers.runtime import Runtime

    return Runtime(settings_or_exit())


def show_status(as_json: bool) -> None:
    """Backlog, oldest pending change, dead letters, circuit, workers, queues."""
    from scim_bridge.cli.sync import import_rows

    current = operator_runtime().store.status()
    if as_json:
        print(json.dumps(current.to_dict(), indent=2))
        return
    circuit = current.circuit
    age = (
        f"{current.oldest_pending_age_s:.1f} s" if current.oldest_pending_age_s is not None else "-"
    )
    rows = [
        ("backlog (resources with unfinished changes)", str(current.backlog)),
        ("oldest pending change", f"{current.oldest_pending or '-'} ({age})"),
        ("dead letters", str(current.dead_letters)),
        (
            "circuit breaker",
            f"{circuit['state']} ({circuit['consecutive_failures']} consecutive failures, "
            f"opened {circuit['opens']} times)",
        ),
        ("legacy calls in flight", str(current.legacy_calls_in_flight)),
        ("workers seen", ", ".join(f"{h} ({c})" for h, c in current.workers.items()) or "none"),
        (
            "queue scim-bridge",
            f"{current.queue_length} waiting, {current.unacknowledged} unacknowledged",
        ),
        *import_rows(current.imports),
        ("Redis used memory", f"{current.redis_used_memory_bytes / 2**20:.1f} MiB"),
    ]
    if current.adapter_problem:
        rows.insert(0, ("adapter refused at worker start", current.adapter_problem))
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name.ljust(width)}  {value}")
