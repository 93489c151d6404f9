"""What every command that runs a part of scim-bridge does first: load and check the settings."""

from __future__ import annotations

import sys

from scim_bridge.workers.settings import Settings, SettingsError, load_settings


def settings_or_exit() -> Settings:
    """The settings from the environment; a clear message and exit status 2 when they are bad."""
    try:
        return load_settings()
    except SettingsError as exc:
        print(f"scim-bridge: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def require_password_key(settings: Settings) -> None:
    """Refuse to start a part that would have to store passwords without a key to seal them."""
    if settings.accept_passwords and settings.password_key_bytes() is None:
        print(
            "scim-bridge: passwords are accepted but no key encrypts them: set "
            "SCIM_BRIDGE_PASSWORD_KEY or SCIM_BRIDGE_PASSWORD_KEY_FILE "
            "(or SCIM_BRIDGE_ACCEPT_PASSWORDS=false)",
            file=sys.stderr,
        )
        raise SystemExit(2)
