"""``scim-bridge serve``: the HTTP front under gunicorn, configured by ``api/gunicorn_conf.py``."""

from __future__ import annotations

import importlib.util
import os
import runpy
import ssl
import sys
from pathlib import Path
from typing import Any

from scim_bridge.cli.common import (
    CONFIGURATION_ERROR,
    require_adapter,
    require_password_key,
    settings_or_exit,
)
from scim_bridge.workers.settings import Settings

GUNICORN_CONF = "scim_bridge.api.gunicorn_conf"


def require_tls_files(settings: Settings) -> None:
    """Refuse to start when the certificate or its key cannot be loaded (missing, unreadable,
    not PEM, or a key that does not belong to the certificate), saying which and why."""
    if settings.tls_certfile is None or settings.tls_keyfile is None:
        return
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
            settings.tls_certfile, settings.tls_keyfile
        )
    except (OSError, ssl.SSLError) as exc:
        print(
            f"scim-bridge: cannot use the TLS certificate {settings.tls_certfile} with the key "
            f"{settings.tls_keyfile} (SCIM_BRIDGE_TLS_CERTFILE, SCIM_BRIDGE_TLS_KEYFILE): {exc}",
            file=sys.stderr,
        )
        raise SystemExit(CONFIGURATION_ERROR) from None


def shipped_config() -> Path:
    """The gunicorn configuration shipped in the package (``api/gunicorn_conf.py``)."""
    spec = importlib.util.find_spec(GUNICORN_CONF)
    assert spec is not None and spec.origin is not None, GUNICORN_CONF
    return Path(spec.origin)


def serve(
    port: int | None,
    host: str | None,
    workers: int | None,
    threads: int | None,
    config: Path | None = None,
    certfile: Path | None = None,
    keyfile: Path | None = None,
) -> None:
    """The api under gunicorn, configured by ``config`` (default: the shipped configuration).

    ``--host``, ``--port``, ``--workers`` and ``--threads``, when given, override its values;
    ``--certfile`` and ``--keyfile`` those of ``SCIM_BRIDGE_TLS_CERTFILE`` and ``_KEYFILE``.
    """
    from gunicorn.app.base import BaseApplication

    from scim_bridge.workers.metrics import command_directory, process_exited

    # Through the environment: the settings check them, the configuration file reads them.
    for name, given in (
        ("SCIM_BRIDGE_TLS_CERTFILE", certfile),
        ("SCIM_BRIDGE_TLS_KEYFILE", keyfile),
    ):
        if given is not None:
            os.environ[name] = str(given.resolve())
    settings = settings_or_exit()
    require_password_key(settings)
    require_adapter(settings, build=False)
    require_tls_files(settings)
    # Before anything imports prometheus-client: the gunicorn workers inherit the directory.
    command_directory("api")
    path = config or shipped_config()

    class Server(BaseApplication):  # type: ignore[misc]
        # Called again on SIGHUP: a reload re-reads the file and the environment.
        def load_config(self) -> None:
            for name, value in runpy.run_path(str(path)).items():
                if name in self.cfg.settings:
                    self.cfg.set(name.lower(), value)
            if host is not None or port is not None:
                bound_host, _, bound_port = str(self.cfg.bind[0]).rpartition(":")
                self.cfg.set("bind", f"{host or bound_host}:{port or bound_port}")
            if workers:
                self.cfg.set("workers", workers)
            if threads:
                self.cfg.set("threads", threads)
            if settings.tls_certfile is not None and not self.cfg.certfile:
                # Another configuration file that does not read the TLS settings itself.
                self.cfg.set("certfile", str(settings.tls_certfile))
                self.cfg.set("keyfile", str(settings.tls_keyfile))
            # A recycled worker's live gauges leave the sum; its counters stay in it.
            self.cfg.set("child_exit", lambda _arbiter, child: process_exited(child.pid))

        def load(self) -> Any:
            from scim_bridge.api.app import get_app

            return get_app()

    Server().run()
