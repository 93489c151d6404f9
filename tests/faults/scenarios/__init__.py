"""The fault scenarios, sized by their arguments: the suite runs them small, the benchmark large.

Each scenario starts its own :class:`~tests.faults.stack.Stack` in ``directory``, produces its
fault for real (signals to processes, a stopped Redis, a locked database, a slow simulator,
hand-delivered tasks), waits until the system drained, checks the invariant of
:mod:`tests.faults.invariants`, stops every process it started, and returns a
:class:`Outcome`: the invariant's report, the api's read latency during the fault, and what
the fault did (``facts``), for the test to assert on and the benchmark to record.
"""

from tests.faults.scenarios.deliveries import duplicate_and_reordered, group_with_pending_members
from tests.faults.scenarios.legacy import legacy_down, lost_answers, slow_legacy, speed
from tests.faults.scenarios.outcome import Outcome
from tests.faults.scenarios.processes import kill_workers, redis_restart, sentinel_failover

__all__ = [
    "Outcome",
    "duplicate_and_reordered",
    "group_with_pending_members",
    "kill_workers",
    "legacy_down",
    "lost_answers",
    "redis_restart",
    "sentinel_failover",
    "slow_legacy",
    "speed",
]
