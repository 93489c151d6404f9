"""Find the active adapter plugin by name, through the entry-point group ``scim_bridge.adapters``.

A plugin package declares, in its ``pyproject.toml``::

    [project.entry-points."scim_bridge.adapters"]
    acme = "acme_scim:AcmeAdapter.from_options"

The entry point names a callable that takes the adapter's options (a mapping from the
configuration) and returns a :class:`~scim_bridge.adapters.port.LegacyAdapter`. Plugins are
imported only when
chosen, so a broken plugin that is installed but not configured costs nothing, and a broken plugin
that is configured is named in the error together with the package that ships it.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from scim_bridge.adapters.port import LegacyAdapter

ENTRY_POINT_GROUP = "scim_bridge.adapters"


class AdapterNotFound(Exception):
    """No installed package declares an adapter of the configured name."""


class AdapterLoadError(Exception):
    """The adapter's plugin exists but could not be imported or built from its options."""


def available_adapters() -> list[str]:
    """The names of every installed adapter, sorted."""
    return sorted({entry_point.name for entry_point in entry_points(group=ENTRY_POINT_GROUP)})


def require_installed(name: str) -> list[EntryPoint]:
    """The entry points declaring an adapter called ``name``, without importing any of them.

    Raises :class:`AdapterNotFound`, whose message lists the installed names, when there is none.
    """
    candidates = list(entry_points(group=ENTRY_POINT_GROUP).select(name=name))
    if not candidates:
        installed = ", ".join(available_adapters()) or "none"
        raise AdapterNotFound(
            f"no adapter named {name!r} is installed (entry-point group {ENTRY_POINT_GROUP!r});"
            f" available adapters: {installed}"
        )
    return candidates


def load_adapter(name: str, options: Mapping[str, Any]) -> LegacyAdapter:
    """Import the adapter plugin called ``name`` and build it from ``options``.

    Raises :class:`AdapterNotFound` (the message lists the installed names) or
    :class:`AdapterLoadError` (the message names the plugin, its package and the cause).
    """
    candidates = require_installed(name)
    if len(candidates) > 1:
        # Exactly one adapter is active: picking one of two silently would make the legacy
        # application depend on the order of sys.path.
        packages = ", ".join(_origin(candidate) for candidate in candidates)
        raise AdapterLoadError(
            f"adapter {name!r} is declared by more than one installed package ({packages});"
            " uninstall all but one"
        )
    (entry_point,) = candidates
    origin = _origin(entry_point)
    try:
        factory = entry_point.load()
    except Exception as exc:  # any import-time failure of third-party code, named below
        raise AdapterLoadError(
            f"adapter {name!r} from {origin} failed to import: {type(exc).__name__}: {exc}"
        ) from exc
    if not callable(factory):
        raise AdapterLoadError(
            f"adapter {name!r} from {origin}: entry point {entry_point.value!r} is a"
            f" {type(factory).__name__}, not a callable that builds an adapter"
        )
    try:
        adapter = factory(options)
    except Exception as exc:  # a plugin's own validation of its options, named below
        raise AdapterLoadError(
            f"adapter {name!r} from {origin} could not be built from its options:"
            f" {type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(adapter, LegacyAdapter):
        raise AdapterLoadError(
            f"adapter {name!r} from {origin}: {entry_point.value!r} returned a"
            f" {type(adapter).__name__}, not a LegacyAdapter"
        )
    return adapter


def _origin(entry_point: EntryPoint) -> str:
    """``package acme-scim 1.2``, or the entry point's target when no distribution is known."""
    distribution = entry_point.dist
    if distribution is None:
        return f"entry point {entry_point.value!r}"
    return f"package {distribution.name} {distribution.version}"
