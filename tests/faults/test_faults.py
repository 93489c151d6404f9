"""The fault suite: every case produces its fault for real, lets scim-bridge drain, and checks
the invariant (tests/faults/invariants.py): the legacy application holds exactly the desired
state, each user exists once there, and every accepted change is applied or in the
dead-letter store with its reason. Run alone with ``pytest tests/faults -q``.
"""

from __future__ import annotations

from tests.faults import scenarios


def assert_invariant(outcome, text: str, *, at_least: int) -> None:
    report = outcome.report
    assert report.accepted >= at_least, text
    assert report.lost == 0, text
    assert report.duplicated == 0, text
    assert report.applied + report.dead_lettered == report.accepted, text
    assert not report.problems, text


def test_kill_9_of_workers_in_the_middle_of_legacy_calls_during_a_burst(fault_dir, show):
    outcome = scenarios.kill_workers(fault_dir, changes=500, kills=4)
    text = show(outcome)
    assert_invariant(outcome, text, at_least=500)
    kills = outcome.facts["kills"]
    assert len(kills) == 4, text
    assert all(k["in_legacy_call"] for k in kills), text  # each landed mid legacy call
    assert {k["shape"] for k in kills} == {"child", "whole", "main"}, text


def test_redis_restarted_with_its_append_only_file_during_a_burst(fault_dir, show):
    # Workers supervised like the shipped systemd units (Restart=on-failure).
    outcome = scenarios.redis_restart(fault_dir, changes=500, restarts=1, down_s=2.0)
    text = show(outcome)
    facts = outcome.facts
    answered = outcome.report.accepted + facts["adopted_creates"] + facts["resolved_deletes"]
    assert answered == 500, text  # every change accepted, or found stored after a lost answer
    assert_invariant(outcome, text, at_least=450)
    assert facts["outages_s"] and facts["outages_s"][0] >= 2.0, text
    # The clients saw the outage (5xx or no answer) and retried.
    assert sum(facts["not_accepted_answers"].values()) > 0, text
    # Every process lives through a Redis restart (a worker that exits with status 0 is not
    # restarted by Restart=on-failure).
    assert facts["worker_exits"] == [], text
    assert facts["beat_alive"] and facts["api_alive"], text


def test_redis_primary_killed_and_sentinel_promotes_the_replica_during_a_burst(fault_dir, show):
    outcome = scenarios.sentinel_failover(fault_dir, changes=300)
    text = show(outcome)
    facts = outcome.facts
    answered = outcome.report.accepted + facts["adopted_creates"] + facts["resolved_deletes"]
    assert answered == 300, text  # every change accepted, or found stored after a 5xx
    assert_invariant(outcome, text, at_least=250)
    assert facts["primary_now"] == "the old replica", text
    assert 0 < facts["accepted_before_kill"] < 300, text  # the kill came mid-burst
    assert sum(facts["not_accepted_answers"].values()) > 0, text  # the clients saw it
    assert facts["worker_exits"] == [], text
    assert facts["beat_alive"] and facts["api_alive"], text


def test_legacy_application_down_for_a_while_then_back(fault_dir, show):
    outcome = scenarios.legacy_down(fault_dir, changes=200, down_s=6.0)
    text = show(outcome)
    assert_invariant(outcome, text, at_least=200)
    assert outcome.facts["locked_errors_logged"] > 0, text
    assert outcome.facts["backlog_at_end_of_outage"] > 0, text


def test_legacy_slower_than_the_deadline_with_effects_that_landed(fault_dir, show):
    outcome = scenarios.slow_legacy(fault_dir, changes=60, latency_s=2.5, slow_s=6.0)
    text = show(outcome)
    assert_invariant(outcome, text, at_least=60)
    assert outcome.facts["timeouts_logged"] > 0, text
    assert outcome.facts["landed_while_unconfirmed"] > 0, text


def test_the_same_change_delivered_twice_and_changes_delivered_out_of_order(fault_dir, show):
    outcome = scenarios.duplicate_and_reordered(fault_dir, users=3)
    text = show(outcome)
    assert_invariant(outcome, text, at_least=3 * 7)
    results = outcome.facts["task_results"]
    assert results["v3 before v2: v2's late task"] == ["noop"], text
    assert results["stale v4 before v5: v5's task"] == ["noop"], text
    assert results["create redelivered after delete"] == ["gone"], text


def test_a_group_pushed_with_members_still_being_created(fault_dir, show):
    # Fewer users than the 8 worker slots: the group's task starts while they are in flight.
    outcome = scenarios.group_with_pending_members(fault_dir, members=6, late_members=1)
    text = show(outcome)
    assert_invariant(outcome, text, at_least=6 + 1 + 2)
    assert outcome.facts["group_waited_for_first_members"] > 0, text
    waited = outcome.facts["group_waited_for_members"]
    assert waited > outcome.facts["group_waited_for_first_members"], text
    assert outcome.facts["add_members_calls"] == 2, text
    assert outcome.facts["legacy_memberships"] == 7, text


def test_changes_whose_answer_was_lost_then_undone_or_followed(fault_dir, show):
    outcome = scenarios.lost_answers(fault_dir)
    text = show(outcome)
    # The effects landed while the read model still waited for them.
    assert "applied" not in outcome.facts["read_model_when_the_effects_had_landed"][:2], text
    assert set(outcome.facts["verdicts"].values()) == {"ok"}, text
    assert_invariant(outcome, text, at_least=10)
