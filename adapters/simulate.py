"""A wrapper that makes any adapter behave like a slow, fragile legacy application.

It adds latency with jitter, random transient failures and a limit on concurrent calls, and can
time out after the change landed (the case that makes idempotency matter). It is used by demos,
benchmarks and fault tests; it never outlives a call's deadline.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from adapters.errors import TransientError
from adapters.port import Deadline, LegacyAdapter, LegacyRecord, Page, ScimDocument

_T = TypeVar("_T")


class SimulatedLegacy(LegacyAdapter):
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
        self.inner = inner
        self.latency_s = latency_s
        self.jitter_s = jitter_s
        self.error_rate = error_rate
        self.max_concurrency = max_concurrency
        self.effect_lands_on_timeout = effect_lands_on_timeout
        self.capabilities = inner.capabilities
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

    # Users ------------------------------------------------------------------------------------
    def create_user(
        self, resource_id: str, user: ScimDocument, *, password: str | None, deadline: Deadline
    ) -> str:
        return self._call(
            "create_user",
            deadline,
            lambda: self.inner.create_user(resource_id, user, password=password, deadline=deadline),
        )

    def update_user(
        self, key: str, user: ScimDocument, *, previous: ScimDocument, deadline: Deadline
    ) -> None:
        self._call(
            "update_user",
            deadline,
            lambda: self.inner.update_user(key, user, previous=previous, deadline=deadline),
        )

    def deactivate_user(self, key: str, *, deadline: Deadline) -> None:
        self._call(
            "deactivate_user", deadline, lambda: self.inner.deactivate_user(key, deadline=deadline)
        )

    def reactivate_user(self, key: str, *, deadline: Deadline) -> None:
        self._call(
            "reactivate_user", deadline, lambda: self.inner.reactivate_user(key, deadline=deadline)
        )

    def set_password(self, key: str, password: str, *, deadline: Deadline) -> None:
        self._call(
            "set_password",
            deadline,
            lambda: self.inner.set_password(key, password, deadline=deadline),
        )

    def delete_user(self, key: str, *, deadline: Deadline) -> None:
        self._call("delete_user", deadline, lambda: self.inner.delete_user(key, deadline=deadline))

    def get_user(self, key: str, *, deadline: Deadline) -> LegacyRecord | None:
        return self._call("get_user", deadline, lambda: self.inner.get_user(key, deadline=deadline))

    def find_user(self, resource_id: str, *, deadline: Deadline) -> str | None:
        return self._call(
            "find_user", deadline, lambda: self.inner.find_user(resource_id, deadline=deadline)
        )

    def list_users(self, *, cursor: str | None, limit: int, deadline: Deadline) -> Page:
        return self._call(
            "list_users",
            deadline,
            lambda: self.inner.list_users(cursor=cursor, limit=limit, deadline=deadline),
        )

    # Groups -----------------------------------------------------------------------------------
    def create_group(self, resource_id: str, group: ScimDocument, *, deadline: Deadline) -> str:
        return self._call(
            "create_group",
            deadline,
            lambda: self.inner.create_group(resource_id, group, deadline=deadline),
        )

    def update_group(
        self, key: str, group: ScimDocument, *, previous: ScimDocument, deadline: Deadline
    ) -> None:
        self._call(
            "update_group",
            deadline,
            lambda: self.inner.update_group(key, group, previous=previous, deadline=deadline),
        )

    def add_members(self, key: str, member_keys: Sequence[str], *, deadline: Deadline) -> None:
        self._call(
            "add_members",
            deadline,
            lambda: self.inner.add_members(key, member_keys, deadline=deadline),
        )

    def remove_members(self, key: str, member_keys: Sequence[str], *, deadline: Deadline) -> None:
        self._call(
            "remove_members",
            deadline,
            lambda: self.inner.remove_members(key, member_keys, deadline=deadline),
        )

    def delete_group(self, key: str, *, deadline: Deadline) -> None:
        self._call(
            "delete_group", deadline, lambda: self.inner.delete_group(key, deadline=deadline)
        )

    def get_group(self, key: str, *, deadline: Deadline) -> LegacyRecord | None:
        return self._call(
            "get_group", deadline, lambda: self.inner.get_group(key, deadline=deadline)
        )

    def find_group(self, resource_id: str, *, deadline: Deadline) -> str | None:
        return self._call(
            "find_group", deadline, lambda: self.inner.find_group(resource_id, deadline=deadline)
        )

    def list_groups(self, *, cursor: str | None, limit: int, deadline: Deadline) -> Page:
        return self._call(
            "list_groups",
            deadline,
            lambda: self.inner.list_groups(cursor=cursor, limit=limit, deadline=deadline),
        )

    def close(self) -> None:
        self.inner.close()
