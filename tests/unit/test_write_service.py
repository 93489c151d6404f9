"""The write service (api/writes.py) on the in-memory store: fast, no Redis, no Celery.

A published task is reconciled at once in the test's thread when a worker is announced, so a
write that waits for its outcome gets it; tests/test_users.py and tests/test_groups.py hold the
same behaviours against a real Redis, worker and HTTP front.
"""

from __future__ import annotations

from typing import Any

import pytest
from falcon import ETag
from scim2_models import NotFoundException, PreconditionFailedException, UniquenessException

from scim_bridge.adapters.memory import MemoryAdapter
from scim_bridge.api.capacity import BacklogEstimate
from scim_bridge.api.errors import ScimError
from scim_bridge.api.limits import RequestLimits
from scim_bridge.api.schemas import build_schemas
from scim_bridge.api.writes import WriteService
from scim_bridge.store import Kind, SyncState
from scim_bridge.workers.passwords import PasswordVault
from scim_bridge.workers.reconciler import Reconciler
from tests.support import make_settings
from tests.unit.fakes import MemoryStore

KEY = PasswordVault.generate_key()


class World:
    """A write service, its store, and a legacy application behind an inline reconciler."""

    def __init__(self, **options: Any) -> None:
        settings = make_settings("redis://127.0.0.1:1/0", KEY.decode())
        self.store = MemoryStore()
        self.adapter = MemoryAdapter()
        self.vault = PasswordVault(KEY)
        self.reconciler = Reconciler(
            self.store, self.adapter, vault=self.vault, deadline_s=5, lock_ttl_s=30
        )
        self.published: list[tuple[Kind, str]] = []
        self.writes = WriteService(
            self.store,
            self.publish,
            build_schemas(settings),
            vault=self.vault,
            confirm_wait_s=1.0,
            backlog=BacklogEstimate(self.store),
            limits=RequestLimits.of(settings),
            **options,
        )

    def publish(self, kind: Kind, rid: str) -> None:
        self.published.append((kind, rid))
        if self.store.live_workers():
            self.reconciler.reconcile(kind, rid)

    def worker(self) -> World:
        self.store.heartbeat("worker-1", 1)
        return self


def user(name: str = "jane@example.com", **extra: Any) -> dict[str, Any]:
    body = {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": name}
    return body | {"name": {"givenName": "Jane"}, "active": True} | extra


def group(*members: str) -> dict[str, Any]:
    body = {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Admins"}
    return body | {"members": [{"value": m} for m in members]}


def test_a_create_is_stored_as_version_one_pending_with_its_password_sealed() -> None:
    world = World()
    written = world.writes.create(Kind.USER, user(password="s3cret!"))
    assert (written.version, written.confirmed) == (1, False)  # no worker: no wait
    assert written.document["meta"]["version"] == 'W/"1"'
    assert "password" not in written.document
    snap = world.store.snapshot(Kind.USER, written.id)
    assert snap.state is SyncState.PENDING and world.store.is_dirty(Kind.USER, written.id)
    assert snap.password_token and "s3cret!" not in snap.password_token
    assert world.vault.open(snap.password_token) == "s3cret!"
    assert world.published == [(Kind.USER, written.id)]


def test_a_create_waits_for_the_legacy_application_when_a_worker_can_answer() -> None:
    world = World().worker()
    written = world.writes.create(Kind.USER, user(password="s3cret!"))
    assert written.confirmed
    assert world.adapter.passwords["u1"] == "s3cret!"
    snap = world.store.snapshot(Kind.USER, written.id)
    assert (snap.state, snap.legacy_key, snap.password_token) == (SyncState.APPLIED, "u1", None)
    assert snap.password_hash and "s3cret!" not in snap.password_hash


def test_a_create_the_legacy_application_refuses_is_an_error_and_disappears() -> None:
    world = World().worker()
    world.adapter.refuse["jane@example.com"] = "no such department"
    with pytest.raises(ScimError) as refused:
        world.writes.create(Kind.USER, user())
    assert refused.value.status == 400 and refused.value.headers == {"X_SCIM_Bridge_Sync": "failed"}
    assert world.store.find_unique(Kind.USER, "userName", "jane@example.com") is None
    assert len(world.store.dead_letters()) == 1


def test_a_taken_user_name_is_a_uniqueness_error_that_changes_nothing() -> None:
    world = World()
    first = world.writes.create(Kind.USER, user())
    with pytest.raises(UniquenessException):
        world.writes.create(Kind.USER, user("JANE@example.com"))
    assert world.store.count(Kind.USER) == 1
    assert world.published == [(Kind.USER, first.id)]


def test_a_duplicate_create_can_update_the_existing_user_instead() -> None:
    world = World(duplicate_create_updates=True)
    first = world.writes.create(Kind.USER, user())
    again = world.writes.create(Kind.USER, user(title="CTO"))
    assert (again.id, again.version, again.existing) == (first.id, 2, True)
    assert world.store.snapshot(Kind.USER, first.id).desired["title"] == "CTO"


def test_a_replace_needs_the_current_version_when_if_match_is_given() -> None:
    world = World()
    rid = world.writes.create(Kind.USER, user()).id
    with pytest.raises(PreconditionFailedException):
        world.writes.replace(Kind.USER, rid, user(title="x"), [ETag.loads('W/"7"')])
    assert world.store.snapshot(Kind.USER, rid).version == 1
    replaced = world.writes.replace(Kind.USER, rid, user(title="x"), [ETag.loads('W/"1"')])
    assert replaced.version == 2 and replaced.document["meta"]["version"] == 'W/"2"'
    assert (
        replaced.document["meta"]["created"]
        == world.store.snapshot(Kind.USER, rid).desired["meta"]["created"]
    )


def test_a_patch_that_changes_nothing_makes_no_version_and_no_task() -> None:
    world = World()
    rid = world.writes.create(Kind.USER, user()).id
    patch = {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "active", "value": True}],
    }
    assert world.writes.patch(Kind.USER, rid, patch, None).version == 1
    assert world.published == [(Kind.USER, rid)]
    patch["Operations"][0]["value"] = False
    assert world.writes.patch(Kind.USER, rid, patch, None).document["active"] is False


def test_a_deleted_user_leaves_its_groups_in_the_same_step() -> None:
    world = World()
    jane = world.writes.create(Kind.USER, user()).id
    admins = world.writes.create(Kind.GROUP, group(jane)).id
    world.writes.delete(Kind.USER, jane, None)
    assert world.store.get_raw(Kind.USER, jane) is None
    after = world.store.snapshot(Kind.GROUP, admins)
    assert (after.version, after.desired["members"]) == (2, [])
    assert world.published[-2:] == [(Kind.USER, jane), (Kind.GROUP, admins)]
    with pytest.raises(NotFoundException):
        world.writes.delete(Kind.USER, jane, None)


def test_a_group_member_must_be_a_known_user() -> None:
    world = World()
    with pytest.raises(ScimError) as unknown:
        world.writes.create(Kind.GROUP, group("00000000-0000-4000-8000-000000000009"))
    assert (unknown.value.status, unknown.value.scim_type) == (400, "invalidValue")
    assert world.store.count(Kind.GROUP) == 0


def test_past_the_backlog_limit_a_write_is_refused_with_retry_after() -> None:
    world = World(max_backlog=1)
    world.writes.create(Kind.USER, user())
    with pytest.raises(ScimError) as busy:
        world.writes.create(Kind.USER, user("bob@example.com"))
    assert busy.value.status == 503 and busy.value.headers["Retry_After"] == "30"
    assert world.store.count(Kind.USER) == 1


def test_respond_async_answers_without_waiting() -> None:
    world = World().worker()
    written = world.writes.create(Kind.USER, user(), respond_async=True)
    assert written.accepted_async and not written.confirmed
