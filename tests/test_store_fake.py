"""The same store tests against a real Redis and the in-memory fake (tests/unit/fakes.py).

The fast tests of the write service and the reconciler run on the fake; these keep it honest:
every behaviour they rely on (versions, unique indexes, the dirty and pending sets, doubt,
pending passwords, settling, rollbacks, deletes, outcomes) is checked on both.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from scim_bridge.store import (
    ChangeOutcome,
    Kind,
    OutcomeStatus,
    Status,
    Store,
    SyncState,
    UniquenessConflict,
    VersionConflict,
)
from scim_bridge.store.keys import mint_id
from scim_bridge.store.resources import DesiredWrite
from scim_bridge.workers.settings import Settings
from tests.unit.fakes import MemoryStore


@pytest.fixture(params=["redis", "memory"])
def store(request: pytest.FixtureRequest) -> Iterator[Any]:
    if request.param == "memory":
        yield MemoryStore()
        return
    settings: Settings = request.getfixturevalue("settings")
    real = Store(redis.Redis.from_url(settings.redis_url), prefix="fake-contract")
    real.clear_data()
    yield real
    real.clear_data()


def user(name: str = "Jane@example.com", **extra: Any) -> dict[str, Any]:
    return {"userName": name, "emails": [{"value": name}], **extra}


def write(
    store: Any, rid: str, doc: Any, previous: Any = None, expected: int = 0, **kw: Any
) -> int:
    return store.write_desired(
        Kind.USER,
        rid,
        doc,
        previous=previous,
        expected_version=expected,
        last_modified=time.time(),
        **kw,
    )


def test_a_write_is_version_one_pending_dirty_and_found_by_its_unique_name(store: Any) -> None:
    rid = mint_id()
    assert write(store, rid, user()) == 1
    snap = store.snapshot(Kind.USER, rid)
    assert (snap.exists, snap.version, snap.state, snap.applied) == (
        True,
        1,
        SyncState.PENDING,
        None,
    )
    assert (
        store.get_raw(Kind.USER, rid)
        == b'{"userName":"Jane@example.com","emails":[{"value":"Jane@example.com"}]}'
    )
    assert store.find_unique(Kind.USER, "userName", "jane@EXAMPLE.com") == rid
    assert store.find_multi(Kind.USER, "emails", "JANE@example.com") == {rid}
    assert store.is_dirty(Kind.USER, rid) and store.backlog() == 1
    assert store.oldest_pending()[0] == f"u:{rid}"


def test_a_stale_version_or_a_taken_name_writes_nothing(store: Any) -> None:
    jane, other = mint_id(), mint_id()
    write(store, jane, user())
    with pytest.raises(VersionConflict):
        write(store, jane, user(title="x"), previous=user(), expected=0)
    first = DesiredWrite(Kind.USER, mint_id(), user("new@example.com"), None, 0, time.time())
    taken = DesiredWrite(Kind.USER, other, user("JANE@example.com"), None, 0, time.time())
    with pytest.raises(UniquenessConflict) as conflict:
        store.write_many([first, taken])
    assert conflict.value.attribute == "userName"
    assert not store.snapshot(Kind.USER, first.id).exists
    assert store.find_unique(Kind.USER, "userName", "new@example.com") is None
    assert store.snapshot(Kind.USER, jane).version == 1


def test_claim_marks_doubt_and_settling_the_current_version_applies_it(store: Any) -> None:
    rid = mint_id()
    write(store, rid, user())
    acquired, starts, snap = store.claim(Kind.USER, rid, "t1", 30)
    assert (acquired, starts, snap.in_doubt) == (True, 1, False)
    assert store.claim(Kind.USER, rid, "t2", 30)[0] is False
    assert store.snapshot(Kind.USER, rid).in_doubt
    assert (
        store.settle(Kind.USER, rid, version=1, applied=user(), legacy_key="u1") is Status.SETTLED
    )
    assert store.release(Kind.USER, rid, "t1", 0.5) == 1
    settled = store.snapshot(Kind.USER, rid)
    assert (settled.state, settled.applied, settled.applied_version) == (
        SyncState.APPLIED,
        user(),
        1,
    )
    assert (settled.legacy_key, settled.in_doubt, store.is_dirty(Kind.USER, rid)) == (
        "u1",
        False,
        False,
    )
    assert store.claim(Kind.USER, rid, "t3", 30)[1] == 1  # starts were reset on release
    assert store.average_duration() == pytest.approx(0.5)


def test_settling_a_version_that_moved_keeps_the_change_dirty(store: Any) -> None:
    rid = mint_id()
    write(store, rid, user())
    write(store, rid, user(title="CTO"), previous=user(), expected=1)
    assert store.settle(Kind.USER, rid, version=1, applied=user(), legacy_key="u1") is Status.MOVED
    snap = store.snapshot(Kind.USER, rid)
    assert (snap.version, snap.applied, snap.applied_version) == (2, user(), 1)
    assert snap.state is SyncState.PENDING and store.is_dirty(Kind.USER, rid)


def test_a_pending_password_stays_until_its_version_is_settled(store: Any) -> None:
    rid = mint_id()
    write(store, rid, user(), password_token="sealed")
    write(store, rid, user(title="x"), previous=user(), expected=1)
    assert store.snapshot(Kind.USER, rid).password_token == "sealed"
    store.settle(
        Kind.USER, rid, version=2, applied=user(title="x"), legacy_key="u1", password_hash="h"
    )
    snap = store.snapshot(Kind.USER, rid)
    assert (snap.password_token, snap.password_hash) == (None, "h")


def test_a_rollback_makes_desired_the_applied_state_failed_and_clean(store: Any) -> None:
    rid = mint_id()
    write(store, rid, user())
    store.settle(Kind.USER, rid, version=1, applied=user(), legacy_key="u1")
    write(store, rid, user(title="x"), previous=user(), expected=1, password_token="p")
    store.mark_doubt(Kind.USER, rid)
    assert store.count_failure(Kind.USER, rid) == 1
    store.record_error(Kind.USER, rid, "refused")
    snap = store.snapshot(Kind.USER, rid)
    assert snap.applied == user() and snap.error == "refused"
    assert store.write_next(snap, snap.applied, rollback=True) == 3
    back = store.snapshot(Kind.USER, rid)
    assert (back.state, back.applied_version, back.password_token, back.in_doubt) == (
        SyncState.FAILED,
        3,
        None,
        False,
    )
    assert back.desired["meta"]["version"] == 'W/"3"' and back.applied == back.desired
    assert not store.is_dirty(Kind.USER, rid)


def test_a_settled_delete_purges_and_a_purged_create_frees_its_name(store: Any) -> None:
    rid, refused = mint_id(), mint_id()
    write(store, rid, user())
    write(store, rid, None, previous=user(), expected=1)
    assert store.get_raw(Kind.USER, rid) is None and store.snapshot(Kind.USER, rid).deleted
    assert store.find_unique(Kind.USER, "userName", "jane@example.com") is None
    assert store.settle(Kind.USER, rid, version=2, applied=None, legacy_key="u1") is Status.PURGED
    assert not store.snapshot(Kind.USER, rid).exists and store.backlog() == 0
    write(store, refused, user())
    assert store.purge(Kind.USER, refused, store.snapshot(Kind.USER, refused))
    assert store.find_unique(Kind.USER, "userName", "jane@example.com") is None
    assert store.find_multi(Kind.USER, "emails", "jane@example.com") == set()
    assert not store.snapshot(Kind.USER, refused).exists and store.backlog() == 0


def test_group_members_are_indexed_and_a_user_leaves_with_its_delete(store: Any) -> None:
    jane, group = mint_id(), mint_id()
    write(store, jane, user())
    members = {"displayName": "Admins", "members": [{"value": jane}]}
    store.write_desired(
        Kind.GROUP, group, members, previous=None, expected_version=0, last_modified=time.time()
    )
    assert store.groups_of(jane) == {group}
    left = DesiredWrite(Kind.GROUP, group, {"displayName": "Admins"}, members, 1, time.time())
    deleted = DesiredWrite(Kind.USER, jane, None, user(), 1, time.time())
    assert store.write_many([deleted, left]) == 2
    assert store.groups_of(jane) == set() and store.snapshot(Kind.GROUP, group).version == 2


def test_outcomes_reach_the_waiting_request_and_time_out_otherwise(store: Any) -> None:
    rid = mint_id()
    outcome = ChangeOutcome(OutcomeStatus.APPLIED, 2)
    store.publish_outcomes(Kind.USER, rid, range(1, 3), outcome)
    assert store.wait_outcome(Kind.USER, rid, 2, 1.0) == outcome
    assert store.wait_outcome(Kind.USER, rid, 1, 1.0) == outcome
    assert store.wait_outcome(Kind.USER, rid, 3, 0.1) is None
