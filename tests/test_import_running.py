"""How an import pass runs: its rate cap, its lower CPU priority, an interruption, a lost Redis.

The passes' results are in tests/test_import.py; these use its helpers.
"""

from __future__ import annotations

import pytest

from scim_bridge.adapters.memory import MemoryAdapter
from scim_bridge.store import Kind
from scim_bridge.store.imports import ImportStore
from tests.test_import import fill, importer


def test_a_pass_that_loses_redis_is_rebuilt_by_the_next_one(tmp_path, legacy):
    import redis as redis_client

    from scim_bridge.store import Store
    from tests.support import RedisServer

    server = RedisServer(tmp_path)
    try:
        model = Store(redis_client.Redis(port=server.port), "lost")

        class LosesRedis(MemoryAdapter):
            pages = 0

            def list_users(self, *, cursor, limit, deadline):
                self.pages += 1
                if self.pages == 2:
                    model.redis.flushall()  # everything in Redis is gone
                    server.stop()
                return super().list_users(cursor=cursor, limit=limit, deadline=deadline)

        adapter = LosesRedis()
        fill(adapter, 7)
        with pytest.raises(redis_client.ConnectionError):
            importer(model, adapter).full_pass()
        server.start()
        result = importer(model, adapter).full_pass()
        assert result.status == "done" and result.tally.created == 7
        assert model.count(Kind.USER) == 7
    finally:
        server.stop()


def test_a_pass_waits_between_pages_to_stay_under_its_rate_cap(legacy, store, monkeypatch):
    import scim_bridge.workers.sync as sync_module

    waits = []
    monkeypatch.setattr(sync_module.time, "sleep", waits.append)
    fill(legacy.adapter, 9)
    importer(store, legacy.adapter).full_pass()
    assert waits == []  # no cap
    importer(store, legacy.adapter, max_rate=30).full_pass()
    # Sleeping is faked, so each wait is what the pass is ahead of 30 records/s: 3, 6, 9 and
    # (after the empty page of groups) still 9 records.
    assert len(waits) == 4 and 0.25 < max(waits) <= 0.3


def test_a_full_pass_runs_at_a_lower_cpu_priority_and_leaves_the_callers_alone(legacy, store):
    """SCIM_BRIDGE_SYNC_NICENESS: the pages are listed and stored by a thread ``niceness`` steps
    lower than the caller, and the caller (a worker child that goes on reconciling) keeps its own
    priority."""
    import os
    import threading

    fill(legacy.adapter, 5)
    seen: list[int] = []
    listing = legacy.adapter.list_users

    def list_users(**kwargs):
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        return listing(**kwargs)

    legacy.adapter.list_users = list_users
    mine = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    try:
        result = importer(store, legacy.adapter, niceness=5).full_pass()
    finally:
        del legacy.adapter.list_users
    assert result.status == "done" and result.tally.created == 5
    assert seen and set(seen) == {min(19, mine + 5)}
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == mine


def test_an_interrupted_full_pass_stops_at_its_next_page_and_keeps_its_checkpoint(legacy, store):
    """A signal's exception in the waiting thread (Celery's soft time limit) stops the pass at its
    next page instead of leaving it running without its lock; the next pass continues."""
    import signal
    import threading

    fill(legacy.adapter, 9)
    listing = legacy.adapter.list_users
    calls = []

    def list_users(**kwargs):
        calls.append(1)
        if len(calls) == 1:
            main = threading.main_thread().ident
            threading.Timer(0.05, signal.pthread_kill, (main, signal.SIGINT)).start()
            threading.Event().wait(0.5)
        return listing(**kwargs)

    class SoftTimeLimit(Exception):
        """What a signal handler raises in the waiting thread, as Celery's soft limit does."""

    def on_signal(signum, frame):
        raise SoftTimeLimit

    legacy.adapter.list_users = list_users
    sync = importer(store, legacy.adapter, niceness=1)
    # This test's own handler: whatever another test left installed for SIGINT does not matter.
    previous = signal.signal(signal.SIGINT, on_signal)
    try:
        with pytest.raises(SoftTimeLimit):
            sync.full_pass()
        assert len(calls) == 1  # the pass did not go on after the interruption
        # ... and its thread has ended: none goes on writing after the caller was interrupted.
        assert "scim-bridge-import" not in [t.name for t in threading.enumerate()]
    finally:
        signal.signal(signal.SIGINT, previous)
        del legacy.adapter.list_users
    assert ImportStore(store).checkpoint()["phase"] == "u"
    assert sync.full_pass().status == "done"
    assert store.count(Kind.USER) == 9
