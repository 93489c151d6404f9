"""What every command that runs a part of scim-bridge does first: load and check the settings."""

from __future__ import annotations

import sys

from scim_bridge.workers.settings import Settings, SettingsError, load_settings

# The exit status of a part that refuses to start because of its configuration: a supervisor
# (``scim-bridge dev``, systemd's RestartPreventExitStatus) must not start it again as it is.
CONFIGURATION_ERROR = 2


def settings_or_exit() -> Settings:
    """The settings from the environment; a clear message and exit status 2 when they are bad."""
    try:
        return load_settings()
    except SettingsError as exc:
        print(f"scim-bridge: {exc}", file=sys.stderr)
        raise SystemExit(CONFIGURATION_ERROR) from None


def require_password_key(settings: Settings) -> None:
    """Refuse to start a part that would have to store passwords without a key to seal them."""
    if settings.accept_passwords and settings.password_key_bytes() is None:
        print(
            "scim-bridge: passwords are accepted but no key encrypts them: set "
            "SCIM_BRIDGE_PASSWORD_KEY or SCIM_BRIDGE_PASSWORD_KEY_FILE "
            "(or SCIM_BRIDGE_ACCEPT_PASSWORDS=false)",
            file=sys.stderr,
        )
        raise SystemExit(CONFIGURATION_ERROR)


def require_adapter(settings: Settings, *, build: bool) -> None:
    """Refuse to start when the configured adapter is not installed (the message lists those that
    are) or, with ``build``, cannot be imported or built from its options.

    A process that started anyway would run for nothing: workers that cannot reconcile, an api
    answering 503 on discovery until a worker reports capabilities that never come. The api
    (``build=False``) only checks the name, as it never imports a plugin.
    """
    from scim_bridge.adapters.registry import (
        AdapterLoadError,
        AdapterNotFound,
        load_adapter,
        require_installed,
    )

    try:
        if build:
            load_adapter(settings.adapter, settings.adapter_options_resolved()).close()
        else:
            require_installed(settings.adapter)
    except (AdapterNotFound, AdapterLoadError) as exc:
        print(f"scim-bridge: {exc} (SCIM_BRIDGE_ADAPTER)", file=sys.stderr)
        raise SystemExit(CONFIGURATION_ERROR) from None
