"""The ldap adapter when the directory fails: stopped (transient, at once), hung (transient
within the deadline), restarted (the pool recovers without an error), and a wrong bind
password (transient, named as such). These tests stop and start the session's slapd."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from scim_bridge.adapters.contract import budget, user_document
from scim_bridge.adapters.errors import TransientError
from scim_bridge.adapters.ldap import LdapAdapter
from scim_bridge.adapters.ldap.connection import BindRefused
from scim_bridge.adapters.port import Deadline
from tests.adapters.directory import Slapd, write_mapping


@pytest.fixture
def adapter(slapd: Slapd, tmp_path: Path) -> Iterator[LdapAdapter]:
    adapter = LdapAdapter.from_options({"mapping": str(write_mapping(slapd, tmp_path))})
    yield adapter
    adapter.close()
    if slapd.process is None:
        slapd.start()


def test_a_stopped_directory_is_a_transient_error_and_a_restart_needs_no_new_adapter(
    adapter, slapd
):
    ada = adapter.create_user("id-ada", user_document("ada"), password=None, deadline=budget())
    slapd.stop()
    started = time.monotonic()
    with pytest.raises(TransientError, match="cannot reach the directory"):
        adapter.get_user(ada, deadline=budget())
    assert time.monotonic() - started < 5
    slapd.start()
    assert adapter.get_user(ada, deadline=budget()).document["userName"] == "ada"


def test_pooled_connections_survive_a_directory_restart_without_an_error(adapter, slapd):
    ada = adapter.create_user("id-ada", user_document("ada"), password=None, deadline=budget())
    assert adapter.directory._idle  # a bound connection waits in the pool
    slapd.stop()
    slapd.start()
    # The pooled connection is dead; the call replaces it and succeeds.
    assert adapter.get_user(ada, deadline=budget()).document["userName"] == "ada"
    page = adapter.list_users(cursor=None, limit=10, deadline=budget())
    assert [r.key for r in page.records] == [ada]


def test_a_hung_directory_costs_no_more_than_the_deadline(adapter, slapd):
    ada = adapter.create_user("id-ada", user_document("ada"), password=None, deadline=budget())
    assert slapd.process is not None
    os.kill(slapd.process.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        with pytest.raises(TransientError):
            adapter.get_user(ada, deadline=Deadline.after(1.0))
        elapsed = time.monotonic() - started
        with pytest.raises(TransientError):
            adapter.create_user(
                "id-b", user_document("b"), password=None, deadline=Deadline.after(1.0)
            )
    finally:
        os.kill(slapd.process.pid, signal.SIGCONT)
    assert elapsed < 2.5, elapsed
    assert adapter.get_user(ada, deadline=budget()) is not None


def test_a_wrong_bind_password_is_transient_and_says_so(slapd, tmp_path):
    mapping = write_mapping(slapd, tmp_path, password="not-the-password")
    adapter = LdapAdapter.from_options({"mapping": str(mapping)})
    try:
        with pytest.raises(TransientError, match="invalidCredentials"):
            adapter.get_user("0c4f6b0e-0000-4000-8000-000000000000", deadline=budget())
        with pytest.raises(BindRefused):
            adapter.directory.open(budget(), "probe")
    finally:
        adapter.close()


def test_a_rotated_bind_password_file_is_read_at_the_next_bind(slapd, tmp_path):
    mapping = write_mapping(slapd, tmp_path, password="not-the-password")
    adapter = LdapAdapter.from_options({"mapping": str(mapping)})
    try:
        with pytest.raises(TransientError):
            adapter.list_users(cursor=None, limit=1, deadline=budget())
        from tests.adapters.directory import ROOT_PASSWORD

        assert adapter.mapping.directory.bind_password_file is not None
        adapter.mapping.directory.bind_password_file.write_text(ROOT_PASSWORD)
        assert adapter.list_users(cursor=None, limit=1, deadline=budget()).records == []
    finally:
        adapter.close()


def test_a_directory_that_is_down_opens_the_breaker_and_a_probe_closes_it(adapter, slapd, store):
    """The ldap adapter's "cannot reach the directory" is transient, so behind the workers' guard
    a stopped directory opens the circuit breaker (later calls fail fast, the directory is not
    asked), and the first call after ``open_s`` that reaches the restarted directory closes it."""
    from scim_bridge.workers.guard import CircuitOpen, GuardedAdapter, LegacyGuard

    store.clear_data()
    guard = LegacyGuard(store, max_concurrency=2, failure_threshold=3, open_s=0.5)
    guarded = GuardedAdapter(adapter, guard)
    ada = guarded.create_user("id-ada", user_document("ada"), password=None, deadline=budget())
    slapd.stop()
    for _ in range(3):
        with pytest.raises(TransientError):
            guarded.get_user(ada, deadline=budget())
    assert guard.breaker().state == "open"
    started = time.monotonic()
    with pytest.raises(CircuitOpen):
        guarded.get_user(ada, deadline=budget())
    assert time.monotonic() - started < 0.2  # refused without trying the directory
    slapd.start()
    time.sleep(0.6)
    assert guarded.get_user(ada, deadline=budget()).document["userName"] == "ada"  # the probe
    assert guard.breaker().state == "closed"
