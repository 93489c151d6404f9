"""The reconciler's decision table (workers/decisions.py), row by row, without Redis."""

from __future__ import annotations

from typing import Any

from scim_bridge.store import Kind, Snapshot
from scim_bridge.workers.decisions import Action, Operation, Situation, decide, profile

UID, GID = "00000000-0000-4000-8000-000000000001", "00000000-0000-4000-8000-000000000002"
ALICE, BOB, CAROL = (f"00000000-0000-4000-8000-00000000010{n}" for n in (1, 2, 3))


def user(**fields: Any) -> dict[str, Any]:
    return {"userName": "jane@example.com", "active": True, "meta": {"version": 'W/"1"'}} | fields


def group(*members: str, **fields: Any) -> dict[str, Any]:
    return {"displayName": "Admins", "members": [{"value": m} for m in members]} | fields


def user_situation(**known: Any) -> Situation:
    return Situation(Kind.USER, UID, **({"desired": user(), "applied": user()} | known))


def group_situation(**known: Any) -> Situation:
    return Situation(Kind.GROUP, GID, **({"desired": group(), "applied": group()} | known))


def actions(situation: Situation) -> list[Action]:
    return [operation.action for operation in decide(situation)]


# Users -------------------------------------------------------------------------------------------
def test_an_absent_user_is_created_with_its_profile_and_active_flag() -> None:
    desired = user(name={"givenName": "Jane"}, active=False)
    assert decide(user_situation(desired=desired, applied=None)) == [
        Operation(
            Action.CREATE,
            document={
                "userName": "jane@example.com",
                "name": {"givenName": "Jane"},
                "active": False,
            },
        )
    ]


def test_a_create_in_doubt_first_asks_whether_it_landed() -> None:
    situation = user_situation(applied=None, in_doubt=True)
    assert decide(situation) == [Operation(Action.FIND_CREATED, document=profile(user()))]


def test_a_create_in_doubt_that_did_not_land_is_created_after_the_search() -> None:
    assert actions(user_situation(applied=None, in_doubt=True, searched=True)) == [Action.CREATE]


def test_a_create_in_doubt_that_landed_pushes_the_whole_state() -> None:
    situation = user_situation(applied=None, in_doubt=True, searched=True, legacy_key="u1")
    assert actions(situation) == [Action.UPDATE, Action.REACTIVATE]


def test_a_created_user_with_a_pending_password_is_created_then_nothing_else() -> None:
    assert actions(user_situation(applied=None, password_pending=True)) == [Action.CREATE]


def test_equal_desired_and_applied_state_makes_no_call() -> None:
    assert decide(user_situation(legacy_key="u1")) == []


def test_meta_alone_changing_makes_no_call() -> None:
    desired = user(meta={"version": 'W/"2"'})
    assert decide(user_situation(desired=desired, legacy_key="u1")) == []


def test_a_changed_profile_is_one_update_with_the_previous_profile() -> None:
    desired = user(title="CTO")
    assert decide(user_situation(desired=desired, legacy_key="u1")) == [
        Operation(
            Action.UPDATE,
            document={"userName": "jane@example.com", "title": "CTO", "active": True},
            previous={"userName": "jane@example.com", "active": True},
        )
    ]


def test_a_flip_to_inactive_is_a_deactivation_alone() -> None:
    situation = user_situation(desired=user(active=False), legacy_key="u1")
    assert actions(situation) == [Action.DEACTIVATE]


def test_a_flip_to_active_is_a_reactivation_alone() -> None:
    situation = user_situation(applied=user(active=False), legacy_key="u1")
    assert actions(situation) == [Action.REACTIVATE]


def test_deactivation_goes_before_the_update_and_reactivation_after_it() -> None:
    off = user_situation(desired=user(active=False, title="x"), legacy_key="u1")
    on = user_situation(desired=user(title="x"), applied=user(active=False), legacy_key="u1")
    assert actions(off) == [Action.DEACTIVATE, Action.UPDATE]
    assert actions(on) == [Action.UPDATE, Action.REACTIVATE]


def test_a_new_pending_password_is_pushed() -> None:
    situation = user_situation(legacy_key="u1", password_pending=True)
    assert actions(situation) == [Action.PASSWORD]


def test_the_password_last_pushed_is_not_pushed_again() -> None:
    situation = user_situation(legacy_key="u1", password_pending=True, password_unchanged=True)
    assert decide(situation) == []


def test_in_doubt_everything_is_pushed_even_an_unchanged_password() -> None:
    situation = user_situation(
        legacy_key="u1", in_doubt=True, password_pending=True, password_unchanged=True
    )
    assert actions(situation) == [Action.UPDATE, Action.REACTIVATE, Action.PASSWORD]
    inactive = user_situation(desired=user(active=False), legacy_key="u1", in_doubt=True)
    assert actions(inactive) == [Action.DEACTIVATE, Action.UPDATE]


def test_a_deleted_user_with_a_legacy_key_is_deleted() -> None:
    situation = user_situation(desired=None, deleted=True, legacy_key="u1", password_pending=True)
    assert decide(situation) == [Operation(Action.DELETE)]


def test_a_deleted_user_never_created_makes_no_call() -> None:
    assert decide(user_situation(desired=None, deleted=True)) == []


def test_a_deleted_user_whose_create_is_in_doubt_is_searched_for_then_deleted() -> None:
    situation = user_situation(desired=None, deleted=True, in_doubt=True)
    assert decide(situation) == [Operation(Action.FIND_CREATED, document=profile(user()))]
    found = user_situation(desired=None, deleted=True, in_doubt=True, searched=True, legacy_key="u")
    assert actions(found) == [Action.DELETE]


# Groups ------------------------------------------------------------------------------------------
KEYS = {ALICE: "ua", BOB: "ub", CAROL: "uc"}


def test_an_absent_group_is_created_then_its_members_added() -> None:
    situation = group_situation(desired=group(ALICE, BOB), applied=None, member_keys=KEYS)
    assert decide(situation) == [
        Operation(Action.CREATE, document={"displayName": "Admins"}),
        Operation(Action.ADD_MEMBERS, members=("ua", "ub")),
    ]


def test_a_group_waits_for_members_still_pending_creation() -> None:
    situation = group_situation(
        desired=group(ALICE, BOB),
        applied=None,
        member_keys={ALICE: "ua"},
        members_not_created=frozenset({BOB}),
    )
    assert decide(situation) == [Operation(Action.WAIT, members=(BOB,))]


def test_membership_changes_are_the_difference_from_the_applied_members() -> None:
    situation = group_situation(
        desired=group(ALICE, CAROL), applied=group(ALICE, BOB), legacy_key="g1", member_keys=KEYS
    )
    assert decide(situation) == [
        Operation(Action.ADD_MEMBERS, members=("uc",)),
        Operation(Action.REMOVE_MEMBERS, members=("ub",)),
    ]


def test_a_removed_member_without_a_legacy_key_is_skipped() -> None:
    situation = group_situation(
        desired=group(ALICE), applied=group(ALICE, BOB), legacy_key="g1", member_keys={ALICE: "ua"}
    )
    assert decide(situation) == []


def test_a_member_already_applied_does_not_make_the_group_wait() -> None:
    situation = group_situation(
        desired=group(ALICE, title="x"),
        applied=group(ALICE),
        legacy_key="g1",
        members_not_created=frozenset({ALICE}),
    )
    assert actions(situation) == [Action.UPDATE]


def test_a_renamed_group_is_updated_without_members_in_its_profile() -> None:
    situation = group_situation(
        desired=group(ALICE, displayName="Ops"),
        applied=group(ALICE),
        legacy_key="g1",
        member_keys=KEYS,
    )
    assert decide(situation) == [
        Operation(
            Action.UPDATE, document={"displayName": "Ops"}, previous={"displayName": "Admins"}
        )
    ]


def test_a_group_in_doubt_pushes_its_profile_then_reads_its_members() -> None:
    situation = group_situation(
        desired=group(ALICE, BOB), legacy_key="g1", in_doubt=True, member_keys=KEYS
    )
    assert actions(situation) == [Action.UPDATE, Action.READ_MEMBERS]


def test_a_group_in_doubt_adds_and_removes_what_the_legacy_application_holds_wrong() -> None:
    situation = group_situation(
        desired=group(ALICE, BOB),
        legacy_key="g1",
        in_doubt=True,
        member_keys=KEYS,
        legacy_members=("ub", "uc", "zz"),
    )
    assert decide(situation) == [
        Operation(Action.ADD_MEMBERS, members=("ua",)),
        Operation(Action.REMOVE_MEMBERS, members=("uc", "zz")),
    ]


def test_a_group_in_doubt_waits_for_every_member_not_created() -> None:
    situation = group_situation(
        desired=group(ALICE),
        applied=group(ALICE),
        legacy_key="g1",
        in_doubt=True,
        members_not_created=frozenset({ALICE}),
    )
    assert decide(situation) == [Operation(Action.WAIT, members=(ALICE,))]


def test_a_group_create_in_doubt_is_searched_for_first() -> None:
    situation = group_situation(desired=group(ALICE), applied=None, in_doubt=True)
    assert decide(situation) == [Operation(Action.FIND_CREATED, document={"displayName": "Admins"})]


def test_a_deleted_group_is_deleted_without_member_calls() -> None:
    situation = group_situation(
        desired=None, applied=group(ALICE), deleted=True, legacy_key="g1", member_keys=KEYS
    )
    assert decide(situation) == [Operation(Action.DELETE)]


# The situation of a stored resource -----------------------------------------------------------
def test_the_situation_of_a_snapshot_carries_doubt_key_and_a_pending_password() -> None:
    snap = Snapshot(
        Kind.USER,
        UID,
        exists=True,
        desired=user(),
        applied=user(),
        legacy_key="u1",
        password_token="sealed",
        in_doubt=True,
    )
    situation = Situation.of(snap, password_unchanged=True)
    assert (situation.legacy_key, situation.in_doubt, situation.password_pending) == (
        "u1",
        True,
        True,
    )
    assert situation.password_unchanged and not situation.searched
