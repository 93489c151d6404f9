"""A wrapper that makes any adapter behave like a slow, fragile legacy application.

It adds latency with jitter, random transient failures and a limit on concurrent calls, and can
time out after the change landed (the case that makes idempotency matter). It is used by demos,
benchmarks and fault tests; it never outlives a call's deadline.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from scim_bridge.adapters.errors import TransientError
from scim_bridge.adapters.port import Deadline, LegacyAdapter
from scim_bridge.adapters.wrapper import AdapterWrapper

_T = TypeVar("_T")


class SimulatedLegacy(AdapterWrapper):
    """``inner`` behind latency, jitter, an error rate and a concurrency limit.

    Each call, in order: waits for one of ``max_concurrency`` slots (0: unlimited), sleeps
    ``latency_s`` ± uniform ``jitter_s``, fails with probability ``error_rate``, and only then
    calls ``inner``. When the sleep would pass the deadline it sleeps until the deadline and raises
    :class:`TransientError`; with ``effect_lands_on_timeout`` the inner call is made first, so the
    change is applied although the caller sees a timeout. ``seed`` makes the draws repeatable.
    """

    def __init__(
        self,
        inner: LegacyAdapter,
        *,
        latency_s: float = 0.0,
        jitter_s: float = 0.0,
        error_rate: float = 0.0,
        max_concurrency: int = 0,
        seed: int | None = None,
        effect_lands_on_timeout: bool = False,
    ) -> None:
        if latency_s < 0 or jitter_s < 0:
            raise ValueError("latency_s and jitter_s must not be negative")
        if not 0.0 <= error_rate <= 1.0:
            raise ValueError(f"error_rate must be between 0 and 1, not {error_rate}")
        if max_concurrency < 0:
            raise ValueError(
                f"max_concurrency must be 0 (unlimited) or more, not {max_concurrency}"
            )
        super().__init__(inner)
        self.latency_s = latency_s
        self.jitter_s = jitter_s
        self.error_rate = error_rate
        self.max_concurrency = max_concurrency
        self.effect_lands_on_timeout = effect_lands_on_timeout
        self._random = random.Random(seed)
        # Random's methods are not atomic across threads; one lock keeps seeded runs repeatable
        # in the order calls arrive.
        self._random_lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(max_concurrency) if max_concurrency else None

    def _call(self, what: str, deadline: Deadline, call: Callable[[], _T]) -> _T:
        deadline.check(what)
        if self._slots is not None and not self._slots.acquire(timeout=deadline.remaining()):
            raise TransientError(
                f"legacy application busy: all {self.max_concurrency} connections in use"
                f" until the deadline of {what}"
            )
        try:
            with self._random_lock:
                jitter = (
                    self._random.uniform(-self.jitter_s, self.jitter_s) if self.jitter_s else 0.0
                )
                fails = self._random.random() < self.error_rate
            delay = max(0.0, self.latency_s + jitter)
            if delay >= deadline.remaining():
                if self.effect_lands_on_timeout:
                    call()
                time.sleep(deadline.remaining())
                raise TransientError(
                    f"timed out: the legacy application took longer than the deadline of {what}"
                )
            time.sleep(delay)
            if fails:
                raise TransientError(f"simulated legacy failure (error rate {self.error_rate})")
            return call()
        finally:
            if self._slots is not None:
                self._slots.release()
