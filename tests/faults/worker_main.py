"""``scim-bridge worker`` with the extra the fault suite needs and no setting reaches.

    python -m tests.faults.worker_main <concurrency>

It reads the same ``SCIM_BRIDGE_*`` settings and starts the same Celery worker as
``python -m scim_bridge.cli worker`` (same queue, options and adapter; the simulated legacy
application comes from the ``simulate_*`` settings as usual, including
``SCIM_BRIDGE_SIMULATE_EFFECT_LANDS_ON_TIMEOUT``), and:

- ``FAULT_RECORD_CALLS=<file>``: every call that reaches the legacy database is appended to
  ``<file>`` as one JSON line (operation, arguments that identify records, result or error,
  start and end time, process id), so a case can prove what was sent and in which order.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from scim_bridge.adapters.port import LegacyAdapter
from scim_bridge.cli.worker import worker_argv
from scim_bridge.workers.runtime import build_adapter
from scim_bridge.workers.settings import Settings, load_settings


class RecordedLegacy:
    """Delegates to ``inner`` and appends one line per call to ``path`` (O_APPEND, whole line)."""

    def __init__(self, inner: LegacyAdapter, path: str) -> None:
        self.inner = inner
        self.capabilities = inner.capabilities
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)
        if not callable(method) or name.startswith("_") or name == "close":
            return method

        def recorded(*args: Any, **kwargs: Any) -> Any:
            entry: dict[str, Any] = {"op": name, "pid": os.getpid(), "start": time.time()}
            if name in ("create_user", "create_group"):
                entry["resource_id"] = args[0]
            elif args:
                entry["key"] = args[0]
            if name in ("add_members", "remove_members"):
                entry["member_keys"] = list(args[1])
            try:
                result = method(*args, **kwargs)
            except BaseException as exc:  # SystemExit too: the task was cancelled mid-call
                entry.update(end=time.time(), error=f"{type(exc).__name__}: {exc}")
                self._write(entry)
                raise
            entry.update(end=time.time(), result=result if isinstance(result, str) else None)
            self._write(entry)
            return result

        return recorded

    def _write(self, entry: dict[str, Any]) -> None:
        os.write(self._fd, (json.dumps(entry) + "\n").encode())


def adapter_factory() -> Callable[[Settings], LegacyAdapter]:
    record = os.environ.get("FAULT_RECORD_CALLS")

    def build(settings: Settings) -> LegacyAdapter:
        return build_adapter(
            settings, around=(lambda adapter: RecordedLegacy(adapter, record)) if record else None
        )

    return build


def main() -> None:
    from scim_bridge.workers.celery_app import create_celery

    concurrency = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    settings = load_settings()
    app = create_celery(settings, adapter_factory=adapter_factory())
    raise SystemExit(app.start(worker_argv(concurrency)) or 0)


if __name__ == "__main__":
    main()
