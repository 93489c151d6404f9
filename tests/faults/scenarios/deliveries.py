"""Scenarios of task deliveries: duplicated and reordered, and a group whose members are still being created."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import falcon.testing

from scim_bridge.api.app import create_app
from scim_bridge.cli.processes import wait_until
from scim_bridge.store import Kind
from scim_bridge.workers.celery_app import create_celery
from scim_bridge.workers.tasks import RECONCILE
from tests.faults.clients import (
    GROUPS,
    USERS,
    AcceptedWrite,
    Client,
    Ledger,
    Reader,
    group_body,
    user_body,
    version_of,
)
from tests.faults.invariants import Report, legacy_rows
from tests.faults.scenarios.outcome import (
    Outcome,
    _calls,
    _drain,
    _finish,
    _reads,
)
from tests.faults.stack import Stack
from tests.support import TOKEN, make_settings


# 5. Duplicated and reordered deliveries -----------------------------------------------------------
class Deliveries:
    """Writes through the api in-process, whose tasks are held back; delivered by hand."""

    def __init__(self, stack: Stack, ledger: Ledger) -> None:
        settings = make_settings(
            stack.redis.url,
            stack.env["SCIM_BRIDGE_PASSWORD_KEY"],
            adapter="sql",
            sql_url=stack.sql_url,
            confirm_wait_s=0.0,
            adapter_deadline_s=2,
            sweep_grace_s=18,
        )
        self.stack = stack
        self.ledger = ledger
        self.held: list[tuple[Kind, str]] = []
        app = create_app(settings, store=stack.store, publish=lambda k, r: self.held.append((k, r)))
        self.http = falcon.testing.TestClient(app, headers={"Authorization": TOKEN})
        self.celery = create_celery(settings)

    def write(self, method: str, path: str, body: Any = None) -> tuple[dict[str, Any], str]:
        """One accepted write; returns its answer and the id of the task it published."""
        answer = self.http.simulate_request(method, path, json=body)
        assert answer.status_code in (200, 201, 204), answer.text
        ((kind, rid),) = self.held
        self.held.clear()
        doc = answer.json if answer.status_code != 204 else {}
        op = {"POST": "create", "PUT": "replace", "DELETE": "delete"}[method]
        self.ledger.accept(
            AcceptedWrite(kind, rid, op, version_of(doc) if doc else 0, answer.status_code),
            body if method != "DELETE" else None,
        )
        return doc, rid

    def deliver(self, rid: str, times: int = 1) -> list[str]:
        """Publish the reconcile task of user ``rid`` ``times`` times at once; their results."""
        ids = [
            self.celery.send_task(RECONCILE, args=[Kind.USER.value, rid]).id for _ in range(times)
        ]
        return [self.result(task_id) for task_id in ids]

    def result(self, task_id: str, timeout: float = 30) -> str:
        """The worker's log line for the task says how it ended."""

        def ended() -> str | None:
            for line in self.stack.grep_logs(f"[{task_id}]"):
                found = re.search(r"succeeded in [0-9.e-]+s: '(\w+)'", line)
                if found:
                    return found.group(1)
                if "retry:" in line.lower():
                    return "retry"
            return None

        return str(wait_until(ended, timeout=timeout, interval=0.02))


def duplicate_and_reordered(directory: Path, *, users: int = 3) -> Outcome:
    """For each of ``users`` users, with the api's tasks held back and delivered by hand:

    1. a create delivered twice at once, then once more later: one legacy record, one call;
    2. v2 and v3 written, v3's task delivered first, then v2's: the legacy application ends
       with v3 and v2's late task makes no call;
    3. v4 applied, v5 written, and a stale copy of v4's task delivered before v5's: it applies
       v5 (the latest desired state), never brings v4 back, and v5's own task makes no call;
    4. one update delivered twice at once: one legacy call;
    5. a DELETE applied, then the old create task redelivered: nothing comes back.
    """
    started = time.monotonic()
    outcome = Outcome("duplicated and reordered deliveries", Report())
    ledger = Ledger()
    errors: list[str] = []
    record = directory / "dup" / "calls.jsonl"
    with Stack(directory / "dup") as stack:
        stack.start_worker(2, runner="faults", FAULT_RECORD_CALLS=str(record))
        stack.start_worker(2, runner="faults", FAULT_RECORD_CALLS=str(record))
        send = Deliveries(stack, ledger)
        results: dict[str, list[str]] = {}

        def calls(rid: str, op: str, key: str | None = None) -> int:
            return sum(
                1
                for c in _calls(record)
                if c["op"] == op
                and "error" not in c
                and (c.get("resource_id") == rid or (key is not None and c.get("key") == key))
            )

        def legacy_user(rid: str) -> dict[str, Any] | None:
            rows = [r for r in legacy_rows(stack.db_path)["users"] if r["scim_id"] == rid]
            return rows[0] if rows else None

        def expect(condition: bool, message: str) -> None:
            if not condition:
                errors.append(message)

        for n in range(users):
            name = f"dup-{n}@example.com"
            _, rid = send.write("POST", USERS, user_body(name, given="v1"))
            results.setdefault("create twice at once", []).extend(send.deliver(rid, 2))
            results.setdefault("create redelivered later", []).extend(send.deliver(rid))
            row = legacy_user(rid)
            expect(row is not None, f"{rid}: not created")
            key = str(row["id"]) if row else None
            expect(calls(rid, "create_user") == 1, f"{rid}: {calls(rid, 'create_user')} creates")

            send.write("PUT", f"{USERS}/{rid}", user_body(name, given="v2"))
            send.write("PUT", f"{USERS}/{rid}", user_body(name, given="v3"))
            results.setdefault("v3 before v2: v3's task", []).extend(send.deliver(rid))
            row = legacy_user(rid)
            expect(row is not None and row["given_name"] == "v3", f"{rid}: v3 not applied: {row}")
            updates = calls(rid, "update_user", key)
            results.setdefault("v3 before v2: v2's late task", []).extend(send.deliver(rid))
            row = legacy_user(rid)
            expect(row is not None and row["given_name"] == "v3", f"{rid}: v2 came back: {row}")
            expect(calls(rid, "update_user", key) == updates, f"{rid}: v2's late task called")

            send.write("PUT", f"{USERS}/{rid}", user_body(name, given="v4"))
            send.deliver(rid)
            send.write("PUT", f"{USERS}/{rid}", user_body(name, given="v5"))
            results.setdefault("stale v4 before v5: v4's copy", []).extend(send.deliver(rid))
            row = legacy_user(rid)
            expect(row is not None and row["given_name"] == "v5", f"{rid}: v4 came back: {row}")
            updates = calls(rid, "update_user", key)
            results.setdefault("stale v4 before v5: v5's task", []).extend(send.deliver(rid))
            expect(calls(rid, "update_user", key) == updates, f"{rid}: v5's own task called")

            send.write("PUT", f"{USERS}/{rid}", user_body(name, given="v6", active=False))
            before = calls(rid, "update_user", key) + calls(rid, "deactivate_user", key)
            results.setdefault("update twice at once", []).extend(send.deliver(rid, 2))
            after = calls(rid, "update_user", key) + calls(rid, "deactivate_user", key)
            expect(after - before == 2, f"{rid}: v6 made {after - before} calls, not 2")
            row = legacy_user(rid)
            expect(
                row is not None and row["given_name"] == "v6" and not row["active"],
                f"{rid}: v6 not applied: {row}",
            )

            send.write("DELETE", f"{USERS}/{rid}")
            results.setdefault("delete", []).extend(send.deliver(rid))
            results.setdefault("create redelivered after delete", []).extend(send.deliver(rid))
            expect(legacy_user(rid) is None, f"{rid}: came back after its delete")
            expect(calls(rid, "create_user") == 1, f"{rid}: created again after delete")
        outcome.facts["task_results"] = {k: sorted(set(v)) for k, v in results.items()}
        outcome.facts["legacy_calls"] = len(_calls(record))
        _finish(outcome, stack, ledger, 30, started, errors)
    return outcome


# 6. A group pushed with members still being created ------------------------------------------------
def group_with_pending_members(
    directory: Path,
    *,
    members: int = 6,
    late_members: int = 3,
    latency_s: float = 0.3,
    drain_s: float = 60,
) -> Outcome:
    """Users created (answered at once) and a group holding them pushed right after, with a
    slow legacy application; once the group landed, more users and at once a PUT of the group
    adding them. Every
    membership must land, and no add_members call may name a user before its create_user
    finished in the legacy application."""
    started = time.monotonic()
    outcome = Outcome("group pushed with members still being created", Report())
    ledger = Ledger()
    errors: list[str] = []
    record = directory / "group" / "calls.jsonl"
    with Stack(directory / "group") as stack:
        for _ in range(2):
            stack.start_worker(
                4,
                runner="faults",
                FAULT_RECORD_CALLS=str(record),
                SCIM_BRIDGE_SIMULATE_LATENCY_S=str(latency_s),
            )
        stack.start_beat()
        stack.start_api()
        client = Client(stack.api_url, ledger, prefer_async=True)
        try:
            with Reader(stack.api_url, ledger.ids) as reader:
                ids = [
                    client.create_user(user_body(f"member-{i}@example.com")) for i in range(members)
                ]
                answer = client.http.post(GROUPS, json=group_body("Pending members", ids))
                if answer.status_code not in (201, 202):
                    raise AssertionError(f"group refused: {answer.status_code} {answer.text}")
                group = answer.json()
                ledger.accept(
                    AcceptedWrite(
                        Kind.GROUP, group["id"], "create", version_of(group), answer.status_code
                    ),
                    group_body("Pending members", ids),
                )
                # The group lands once its first members did; then more members, still pending.
                wait_until(
                    lambda: stack.store.snapshot(Kind.GROUP, group["id"]).state == "applied",
                    timeout=drain_s,
                    interval=0.05,
                )
                first_wait = len(stack.grep_logs("is not created in the legacy application yet"))
                late = [
                    client.create_user(user_body(f"late-{i}@example.com"))
                    for i in range(late_members)
                ]
                answer = client.http.put(
                    f"{GROUPS}/{group['id']}", json=group_body("Pending members", ids + late)
                )
                if answer.status_code not in (200, 202):
                    raise AssertionError(f"group PUT refused: {answer.status_code} {answer.text}")
                ledger.accept(
                    AcceptedWrite(
                        Kind.GROUP,
                        group["id"],
                        "replace",
                        version_of(answer.json()),
                        answer.status_code,
                    ),
                    group_body("Pending members", ids + late),
                )
                outcome.facts["drain_s"] = _drain(stack, drain_s, errors)
            _reads(outcome, reader)
        finally:
            client.close()
        calls = _calls(record)
        created_at = {
            c["result"]: c["end"] for c in calls if c["op"] == "create_user" and "error" not in c
        }
        early = [
            (c["start"], key)
            for c in calls
            if c["op"] == "add_members"
            for key in c["member_keys"]
            if key not in created_at or created_at[key] > c["start"]
        ]
        if early:
            errors.append(f"add_members named users before their creation finished: {early}")
        failed_adds = [c for c in calls if c["op"] == "add_members" and "error" in c]
        if failed_adds:
            errors.append(f"add_members failed in the legacy application: {failed_adds}")
        waits = len(stack.grep_logs("is not created in the legacy application yet"))
        outcome.facts.update(
            group_waited_for_first_members=first_wait,
            group_waited_for_members=waits,
            add_members_calls=sum(1 for c in calls if c["op"] == "add_members"),
            members=members + late_members,
        )
        _finish(outcome, stack, ledger, drain_s, started, errors)
        legacy = legacy_rows(stack.db_path)
        outcome.facts["legacy_memberships"] = len(legacy["memberships"])
    return outcome
