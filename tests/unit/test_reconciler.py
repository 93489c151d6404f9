"""The reconciler (workers/reconciler.py) on the in-memory store: fast, no Redis, no Celery.

It executes what workers/decisions.py decides and records the outcome; these tests check the
execution and the bookkeeping around it (settling, doubt, dead letters, rollbacks, locks). The
real-Redis and end-to-end tests (tests/test_users.py, test_groups.py, test_lost_answers.py,
test_sweeper.py) keep covering the same paths with a worker.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from scim_bridge.adapters.errors import TransientError
from scim_bridge.adapters.memory import MemoryAdapter
from scim_bridge.adapters.port import Deadline
from scim_bridge.store import Kind, Status, SyncState
from scim_bridge.store.keys import mint_id
from scim_bridge.workers.passwords import PasswordVault
from scim_bridge.workers.reconciler import Reconciler, RetryLater
from tests.unit.fakes import MemoryStore

VAULT = PasswordVault(PasswordVault.generate_key())


class LosesAnswers(MemoryAdapter):
    """Applies a call, then reports a time-out for the operations named in ``lose``, once."""

    def __init__(self) -> None:
        super().__init__()
        self.lose: set[str] = set()

    def create_user(self, resource_id: str, user: Any, *, password: Any, deadline: Any) -> str:
        key = super().create_user(resource_id, user, password=password, deadline=deadline)
        if "create_user" in self.lose:
            self.lose.discard("create_user")
            raise TransientError("create_user: timed out (the change landed)")
        return key


class Setup:
    def __init__(self, adapter: MemoryAdapter | None = None, vault: Any = VAULT) -> None:
        self.store = MemoryStore()
        self.adapter = adapter or MemoryAdapter()
        self.reconciler = Reconciler(
            self.store, self.adapter, vault=vault, deadline_s=5, lock_ttl_s=30, max_starts=3
        )

    def write(self, kind: Kind, rid: str, doc: Any, password: str | None = None) -> int:
        snap = self.store.snapshot(kind, rid)
        return self.store.write_desired(
            kind,
            rid,
            doc,
            previous=snap.desired,
            expected_version=snap.version,
            last_modified=time.time(),
            password_token=VAULT.seal(password) if password else None,
        )

    def reconcile(self, kind: Kind, rid: str) -> tuple[Status, tuple[str, ...]]:
        result = self.reconciler.reconcile(kind, rid)
        return result.status, result.operations


def user(**extra: Any) -> dict[str, Any]:
    return {"userName": "jane@example.com", "active": True} | extra


def test_a_new_user_is_created_settled_and_a_repeated_task_changes_nothing() -> None:
    setup, rid = Setup(), mint_id()
    setup.write(Kind.USER, rid, user(), password="s3cret!")
    assert setup.reconcile(Kind.USER, rid) == (Status.APPLIED, ("create",))
    snap = setup.store.snapshot(Kind.USER, rid)
    assert (snap.state, snap.legacy_key, snap.in_doubt, snap.password_token) == (
        SyncState.APPLIED,
        "u1",
        False,
        None,
    )
    assert not setup.store.is_dirty(Kind.USER, rid)
    assert setup.reconcile(Kind.USER, rid) == (Status.NOOP, ())
    assert setup.adapter.calls == [("create_user", "u1")]


def test_the_password_last_pushed_is_not_pushed_again_but_a_new_one_is() -> None:
    setup, rid = Setup(), mint_id()
    setup.write(Kind.USER, rid, user(), password="s3cret!")
    setup.reconcile(Kind.USER, rid)
    setup.write(Kind.USER, rid, user(), password="s3cret!")
    assert setup.reconcile(Kind.USER, rid) == (Status.NOOP, ())
    setup.write(Kind.USER, rid, user(), password="n3w!")
    assert setup.reconcile(Kind.USER, rid) == (Status.APPLIED, ("password",))
    assert setup.adapter.passwords["u1"] == "n3w!"


def test_a_lost_create_answer_is_found_on_the_next_pass_and_not_created_twice() -> None:
    adapter = LosesAnswers()
    adapter.lose.add("create_user")
    setup, rid = Setup(adapter), mint_id()
    setup.write(Kind.USER, rid, user(title="x"))
    with pytest.raises(RetryLater):
        setup.reconciler.reconcile(Kind.USER, rid)
    assert setup.store.snapshot(Kind.USER, rid).in_doubt
    assert setup.reconcile(Kind.USER, rid) == (Status.APPLIED, ("update", "reactivate"))
    assert [c[0] for c in adapter.calls] == ["create_user", "update_user", "reactivate_user"]
    assert len(adapter.users) == 1


def test_a_refused_create_is_dead_lettered_and_purged() -> None:
    setup, rid = Setup(), mint_id()
    setup.adapter.refuse["jane@example.com"] = "no department"
    setup.write(Kind.USER, rid, user())
    assert setup.reconcile(Kind.USER, rid) == (Status.FAILED, ("failed:create",))
    assert not setup.store.snapshot(Kind.USER, rid).exists
    assert setup.store.dead_letters()[f"u:{rid}"]["error"] == "no department"


def test_a_refused_update_rolls_the_read_model_back_to_the_applied_state() -> None:
    setup, rid = Setup(), mint_id()
    setup.write(Kind.USER, rid, user())
    setup.reconcile(Kind.USER, rid)
    setup.adapter.refuse["jane@example.com"] = "title too long"
    setup.write(Kind.USER, rid, user(title="x" * 99))
    assert setup.reconcile(Kind.USER, rid) == (Status.FAILED, ("failed:update",))
    snap = setup.store.snapshot(Kind.USER, rid)
    assert (snap.state, snap.version, "title" in snap.desired) == (SyncState.FAILED, 3, False)
    assert snap.error == "title too long" and not setup.store.is_dirty(Kind.USER, rid)


def test_a_pending_password_without_a_password_key_is_refused() -> None:
    setup, rid = Setup(vault=None), mint_id()
    setup.write(Kind.USER, rid, user(), password="s3cret!")
    assert setup.reconcile(Kind.USER, rid)[0] is Status.FAILED
    assert "no password key" in setup.store.dead_letters()[f"u:{rid}"]["error"]
    assert setup.adapter.calls == []


def test_a_locked_resource_is_left_to_the_task_holding_the_lock() -> None:
    setup, rid = Setup(), mint_id()
    setup.write(Kind.USER, rid, user())
    assert setup.store.acquire_lock(Kind.USER, rid, "other", 30)
    assert setup.reconcile(Kind.USER, rid) == (Status.LOCKED, ())
    assert setup.adapter.calls == []


def test_a_change_started_too_often_is_poison() -> None:
    setup, rid = Setup(), mint_id()
    setup.write(Kind.USER, rid, user())
    for token in ("a", "b", "c"):  # three starts, each losing its worker
        setup.store.claim(Kind.USER, rid, token, 30)
        setup.store.release_lock(Kind.USER, rid, token)
    status, operations = setup.reconcile(Kind.USER, rid)
    assert status is Status.REQUEUE and operations == ("failed:create",)
    assert "poison change" in setup.store.dead_letters()[f"u:{rid}"]["error"]
    assert setup.adapter.calls == []


def test_a_group_waits_for_a_member_not_created_yet_without_any_call() -> None:
    setup, jane, admins = Setup(), mint_id(), mint_id()
    setup.write(Kind.USER, jane, user())
    setup.write(Kind.GROUP, admins, {"displayName": "Admins", "members": [{"value": jane}]})
    with pytest.raises(RetryLater, match="not created in the legacy application yet"):
        setup.reconciler.reconcile(Kind.GROUP, admins)
    assert setup.adapter.calls == []
    setup.reconcile(Kind.USER, jane)
    assert setup.reconcile(Kind.GROUP, admins) == (Status.APPLIED, ("create", "add_members"))
    key = setup.store.snapshot(Kind.GROUP, admins).legacy_key
    assert setup.adapter.groups[key]["members"] == ["u1"]


def test_a_group_in_doubt_reads_its_members_and_repairs_them() -> None:
    setup, jane, admins = Setup(), mint_id(), mint_id()
    setup.write(Kind.USER, jane, user())
    setup.reconcile(Kind.USER, jane)
    setup.write(Kind.GROUP, admins, {"displayName": "Admins", "members": [{"value": jane}]})
    setup.reconcile(Kind.GROUP, admins)
    key = setup.store.snapshot(Kind.GROUP, admins).legacy_key
    setup.adapter.remove_members(key, ["u1"], deadline=Deadline.after(10))  # changed outside
    setup.store.mark_doubt(Kind.GROUP, admins)
    assert setup.reconcile(Kind.GROUP, admins) == (Status.APPLIED, ("update", "add_members"))
    assert setup.adapter.groups[key]["members"] == ["u1"]


def test_a_deleted_user_is_deleted_and_its_hash_purged() -> None:
    setup, rid = Setup(), mint_id()
    setup.write(Kind.USER, rid, user())
    setup.reconcile(Kind.USER, rid)
    setup.write(Kind.USER, rid, None)
    assert setup.reconcile(Kind.USER, rid) == (Status.APPLIED, ("delete",))
    assert not setup.store.snapshot(Kind.USER, rid).exists
    assert setup.reconcile(Kind.USER, rid) == (Status.GONE, ())
