"""``scim-bridge dlq list|show|retry|drop``: the dead-letter store."""

from __future__ import annotations

import json
import sys
import time

from scim_bridge.cli.status import operator_runtime


def dead_letters(action: str, member: str | None, reason: str | None, as_json: bool) -> None:
    """``dlq list|show|retry|drop``."""
    from scim_bridge.workers.operations import DeadLetterError, drop, retry

    runtime = operator_runtime()
    store = runtime.store
    try:
        if action == "list":
            entries = store.dead_letters()
            if as_json:
                print(json.dumps(entries, indent=2))
                return
            if not entries:
                print("the dead-letter store is empty")
            for name, entry in sorted(entries.items(), key=lambda item: item[1].get("at", 0)):
                when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(entry.get("at", 0)))
                print(f"{name}  {when}Z  {entry.get('operation')}  {entry.get('error')}")
        elif action == "show":
            assert member is not None
            entry = store.dead_letters().get(member)
            if entry is None:
                raise DeadLetterError(f"{member} is not in the dead-letter store")
            print(json.dumps(entry, indent=2))
        elif action == "retry":
            assert member is not None
            from scim_bridge.workers.celery_app import create_celery
            from scim_bridge.workers.tasks import RECONCILE

            kind, rid = retry(store, member)
            create_celery(runtime.settings).send_task(RECONCILE, args=[kind.value, rid])
            print(f"{member} re-queued")
        elif action == "drop":
            assert member is not None and reason
            drop(store, member, reason)
            print(f"{member} dropped: {reason}")
    except DeadLetterError as exc:
        print(f"scim-bridge: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
