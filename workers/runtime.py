"""The composition root: builds the Redis clients, store, adapter and reconciler.

Nothing here runs at import time; each process (gunicorn worker, Celery worker child) builds its
own :class:`Runtime` on first use, after any fork.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property

from scim_bridge.adapters.port import LegacyAdapter
from scim_bridge.adapters.registry import load_adapter
from scim_bridge.adapters.simulate import SimulatedLegacy
from scim_bridge.store import Kind, Store, redis_client
from scim_bridge.workers.guard import GuardedAdapter, LegacyGuard
from scim_bridge.workers.passwords import PasswordVault
from scim_bridge.workers.reconciler import Reconciler
from scim_bridge.workers.settings import Settings

AdapterFactory = Callable[[Settings], LegacyAdapter]


def build_adapter(
    settings: Settings, *, around: Callable[[LegacyAdapter], LegacyAdapter] | None = None
) -> LegacyAdapter:
    """The configured adapter, wrapped by the simulator when a simulation setting is on.

    ``around`` wraps the plugin itself, inside the simulator (tests record calls with it).
    """
    adapter = load_adapter(settings.adapter, settings.adapter_options_resolved())
    if around is not None:
        adapter = around(adapter)
    if (
        settings.simulate_latency_s
        or settings.simulate_error_rate
        or settings.simulate_max_concurrency
        or settings.simulate_jitter_s
        or settings.simulate_effect_lands_on_timeout
    ):
        adapter = SimulatedLegacy(
            adapter,
            latency_s=settings.simulate_latency_s,
            jitter_s=settings.simulate_jitter_s,
            error_rate=settings.simulate_error_rate,
            max_concurrency=settings.simulate_max_concurrency,
            effect_lands_on_timeout=settings.simulate_effect_lands_on_timeout,
        )
    return adapter


def password_vault(settings: Settings) -> PasswordVault | None:
    """The vault for pending passwords, or None when none is configured."""
    key = settings.password_key_bytes()
    return PasswordVault(key) if key else None


class Runtime:
    """Lazily built collaborators of one process."""

    def __init__(self, settings: Settings, adapter_factory: AdapterFactory | None = None) -> None:
        self.settings = settings
        self._adapter_factory = adapter_factory or build_adapter

    @cached_property
    def store(self) -> Store:
        """The store, with a second client for blocking waits; both follow Sentinel's primary
        when Sentinel is configured."""
        settings = self.settings
        url, timeout_s, sentinels = (
            settings.redis_url,
            settings.redis_timeout_s,
            settings.sentinels(),
        )
        acks, ack_s = settings.replica_acks, settings.redis_replica_ack_timeout_s
        wait = redis_client(
            url, timeout_s=timeout_s, blocking_s=settings.confirm_wait_s + 1, sentinels=sentinels
        )
        return Store(
            redis_client(
                url, timeout_s=timeout_s, blocking_s=ack_s if acks else 0.0, sentinels=sentinels
            ),
            settings.key_prefix,
            wait_client=wait,
            lookups={Kind.USER: settings.user_lookup_paths(), Kind.GROUP: ()},
            replica_acks=acks,
            replica_ack_timeout_s=ack_s,
        )

    @cached_property
    def adapter(self) -> LegacyAdapter:
        """The adapter, built on first use (after the worker process forked)."""
        return self._adapter_factory(self.settings)

    @cached_property
    def vault(self) -> PasswordVault | None:
        """Pending-password encryption."""
        return password_vault(self.settings)

    @cached_property
    def guard(self) -> LegacyGuard:
        """The global cap and circuit breaker in front of the legacy application."""
        return LegacyGuard(
            self.store,
            max_concurrency=self.settings.legacy_max_concurrency,
            failure_threshold=self.settings.breaker_failure_threshold,
            open_s=self.settings.breaker_open_s,
        )

    @cached_property
    def reconciler(self) -> Reconciler:
        """The reconciler of this process."""
        return Reconciler(
            self.store,
            GuardedAdapter(self.adapter, self.guard),
            vault=self.vault,
            deadline_s=self.settings.legacy_deadline_s,
            lock_ttl_s=self.settings.lock_ttl_s,
            max_starts=self.settings.max_starts,
            pass_budget_s=self.settings.task_soft_time_limit_s - 1,
        )
