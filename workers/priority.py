"""Bulk work at a lower CPU priority, in a thread of its own (an import's full pass)."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Any, TypeVar, cast

T = TypeVar("T")

log = logging.getLogger("scim_bridge.sync")


def at_lower_priority(
    niceness: int, work: Callable[[], T], interrupted: threading.Event | None = None
) -> T:
    """Run ``work`` in a thread of its own whose CPU priority is ``niceness`` steps lower.

    A full pass is bulk work: on a machine it shares with the api it must take the CPU the api
    leaves, not half of it. Linux keeps a nice value per thread, so the thread that runs the pass
    is lowered and then ends; the process (a Celery worker child that goes on reconciling Okta's
    changes, or the CLI) keeps its priority, which an unprivileged process could not raise back.
    Where threads cannot be lowered (not Linux), the work runs as it is. If the waiting thread
    is interrupted (a signal's exception: Celery's soft time limit, Ctrl-C), ``interrupted`` is
    set, the work is waited for (it stops at its next checkpoint) and the exception goes on.
    """
    if niceness <= 0 or not hasattr(os, "setpriority"):
        return work()
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            tid = threading.get_native_id()
            current = os.getpriority(os.PRIO_PROCESS, tid)
            os.setpriority(os.PRIO_PROCESS, tid, min(19, current + niceness))
            # SCHED_IDLE besides: any other task that wakes up (an api thread answered by Redis)
            # takes the CPU from this thread at once, instead of waiting for its slice to end;
            # a lower nice value alone leaves each of Okta's reads that wait.
            if hasattr(os, "SCHED_IDLE"):
                os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        except OSError as exc:
            log.debug("import pass runs at normal priority: %s", exc)
        try:
            outcome["value"] = work()
        except BaseException as exc:  # re-raised in the caller's thread
            outcome["error"] = exc
        finally:
            finished.set()

    # The caller waits on an event, not on Thread.join(): a join that a signal's exception
    # interrupts marks the thread as ended while it still runs (CPython before 3.13), and the
    # second join would return at once, leaving the work running after the caller went on.
    finished = threading.Event()
    thread = threading.Thread(target=run, name="scim-bridge-import", daemon=True)
    thread.start()
    try:
        finished.wait()
    except BaseException:
        if interrupted is not None:
            interrupted.set()
        finished.wait()
        thread.join()
        raise
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return cast(T, outcome["value"])


def lower_own_session(niceness: int) -> bool:
    """Lower the CPU share of this process's scheduling group, when the process leads its own
    session (started by a supervisor, a container runtime or ``setsid``).

    Linux with autogroup (``/proc/sys/kernel/sched_autogroup_enabled``) shares the CPU fairly
    between sessions first and looks at nice values only inside one: a ``nice`` import started
    apart from the api would still take half of a two-core host from it. ``/proc/self/autogroup``
    gives the session itself a nice value. A process in someone else's session (an operator's
    shell) leaves that session as it is. Returns whether the group was lowered.
    """
    group = "/proc/self/autogroup"
    if niceness <= 0 or not os.path.exists(group) or os.getsid(0) != os.getpid():
        return False
    try:
        with open(group) as current:
            now = int(current.read().split("nice")[-1])
        with open(group, "w") as lowered:
            lowered.write(str(min(19, now + niceness)))
    except (OSError, ValueError) as exc:
        log.debug("the import's session keeps its CPU share: %s", exc)
        return False
    return True
