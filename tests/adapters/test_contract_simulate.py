"""The simulated legacy application: passes the contract kit when healthy, and misbehaves as
configured (errors, concurrency limit, timeouts, timeouts whose effect landed)."""

from __future__ import annotations

import threading
import time

import pytest

from scim_bridge.adapters.contract import AdapterContract, budget, user_document
from scim_bridge.adapters.errors import TransientError
from scim_bridge.adapters.memory import MemoryAdapter
from scim_bridge.adapters.port import (
    Capabilities,
    Capability,
    Deadline,
    LegacyAdapter,
    LegacyRecord,
)
from scim_bridge.adapters.simulate import SimulatedLegacy


class TestSimulatedLegacy(AdapterContract):
    @pytest.fixture
    def adapter(self) -> LegacyAdapter:
        return SimulatedLegacy(
            MemoryAdapter(), latency_s=0.001, jitter_s=0.001, max_concurrency=4, seed=1
        )


class CountingMemory(MemoryAdapter):
    """A memory adapter whose ``get_user`` counts the calls in progress and waits to be released."""

    def __init__(self) -> None:
        super().__init__()
        self._counter = threading.Condition()
        self.in_progress = 0
        self.most_at_once = 0
        self.release = threading.Event()

    def get_user(self, key: str, *, deadline: Deadline) -> LegacyRecord | None:
        with self._counter:
            self.in_progress += 1
            self.most_at_once = max(self.most_at_once, self.in_progress)
            self._counter.notify_all()
        self.release.wait(timeout=deadline.remaining())
        with self._counter:
            self.in_progress -= 1
        return super().get_user(key, deadline=deadline)

    def wait_for_in_progress(self, count: int) -> None:
        with self._counter:
            assert self._counter.wait_for(lambda: self.in_progress == count, timeout=5)


def test_an_error_rate_of_one_fails_every_call_and_changes_nothing() -> None:
    inner = MemoryAdapter()
    simulated = SimulatedLegacy(inner, error_rate=1.0)
    with pytest.raises(TransientError, match=r"simulated legacy failure \(error rate 1.0\)"):
        simulated.create_user("id-ada", user_document("ada"), password=None, deadline=budget())
    assert inner.users == {}
    assert inner.calls == []


def test_one_seed_fails_the_same_calls() -> None:
    def outcomes(seed: int) -> list[bool]:
        simulated = SimulatedLegacy(MemoryAdapter(), error_rate=0.5, jitter_s=0.001, seed=seed)
        results = []
        for n in range(20):
            try:
                simulated.get_user(str(n), deadline=budget())
                results.append(True)
            except TransientError:
                results.append(False)
        return results

    assert outcomes(7) == outcomes(7)
    assert True in outcomes(7) and False in outcomes(7)


def test_no_more_than_max_concurrency_calls_reach_the_application_at_once() -> None:
    inner = CountingMemory()
    simulated = SimulatedLegacy(inner, max_concurrency=2)
    threads = [
        threading.Thread(target=simulated.get_user, args=("u1",), kwargs={"deadline": budget()})
        for _ in range(6)
    ]
    for thread in threads:
        thread.start()
    inner.wait_for_in_progress(2)
    time.sleep(0.05)  # give a third call the chance to get in, were the limit broken
    assert inner.in_progress == 2
    inner.release.set()
    for thread in threads:
        thread.join()
    assert inner.most_at_once == 2
    assert inner.in_progress == 0


def test_a_call_that_finds_no_free_slot_before_its_deadline_is_busy() -> None:
    inner = CountingMemory()
    simulated = SimulatedLegacy(inner, max_concurrency=1)
    holder = threading.Thread(
        target=simulated.get_user, args=("u1",), kwargs={"deadline": budget()}
    )
    holder.start()
    inner.wait_for_in_progress(1)
    try:
        started = time.monotonic()
        with pytest.raises(TransientError, match="busy"):
            simulated.get_user("u1", deadline=Deadline.after(0.1))
        assert time.monotonic() - started < 0.5
    finally:
        inner.release.set()
        holder.join()


def test_latency_above_the_deadline_is_a_timeout_at_the_deadline() -> None:
    inner = MemoryAdapter()
    simulated = SimulatedLegacy(inner, latency_s=5.0)
    started = time.monotonic()
    with pytest.raises(TransientError, match="timed out"):
        simulated.create_user(
            "id-ada", user_document("ada"), password=None, deadline=Deadline.after(0.2)
        )
    elapsed = time.monotonic() - started
    assert 0.19 <= elapsed < 0.2 + 0.15
    assert inner.users == {}


def test_a_timeout_whose_effect_landed_applies_the_change() -> None:
    inner = MemoryAdapter()
    simulated = SimulatedLegacy(inner, latency_s=5.0, effect_lands_on_timeout=True)
    with pytest.raises(TransientError, match="timed out"):
        simulated.create_user(
            "id-ada", user_document("ada"), password=None, deadline=Deadline.after(0.2)
        )
    assert [user["userName"] for user in inner.users.values()] == ["ada"]


def test_the_inner_adapters_capabilities_are_advertised() -> None:
    inner = MemoryAdapter()
    inner.capabilities = Capabilities(functions=frozenset({Capability.PUSH_NEW_USERS}))
    assert SimulatedLegacy(inner).capabilities is inner.capabilities


@pytest.mark.parametrize(
    "settings",
    [{"latency_s": -1.0}, {"jitter_s": -0.1}, {"error_rate": 1.5}, {"max_concurrency": -1}],
)
def test_impossible_settings_are_refused(settings: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        SimulatedLegacy(MemoryAdapter(), **settings)  # type: ignore[arg-type]
