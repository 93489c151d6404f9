"""``scim-bridge serve``: the HTTP front under gunicorn."""

from __future__ import annotations

import os
import runpy
from pathlib import Path
from typing import Any

from scim_bridge.cli.common import require_password_key, settings_or_exit


def serve(
    port: int | None, host: str, workers: int | None, threads: int, config: Path | None = None
) -> None:
    """The api under gunicorn with gthread workers.

    ``config`` is a gunicorn configuration file (such as ``deploy/gunicorn.conf.py``); its
    values come first, and only ``--port``/``--host``/``--workers`` given here override them.
    """
    from gunicorn.app.base import BaseApplication

    settings = settings_or_exit()
    require_password_key(settings)
    bind = f"{host}:{port or int(os.environ.get('SCIM_BRIDGE_PORT', '8080'))}"

    class Server(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            if config is not None:
                for name, value in runpy.run_path(str(config)).items():
                    if name in self.cfg.settings:
                        self.cfg.set(name.lower(), value)
                if port is not None:
                    self.cfg.set("bind", bind)
                if workers:
                    self.cfg.set("workers", workers)
                return
            self.cfg.set("bind", bind)
            self.cfg.set("worker_class", "gthread")
            self.cfg.set("workers", workers or max(2, os.cpu_count() or 1))
            self.cfg.set("threads", threads)
            # A worker must never be killed while a request is inside the budget.
            self.cfg.set("timeout", int(settings.timeout_budget_s) + 10)
            # Let in-flight writes finish their confirmation wait on a restart.
            self.cfg.set("graceful_timeout", int(settings.timeout_budget_s) + 5)
            self.cfg.set("keepalive", 75)
            self.cfg.set("max_requests", 100_000)
            self.cfg.set("max_requests_jitter", 10_000)
            self.cfg.set("loglevel", settings.log_level.lower())
            # Several api processes may share a host: no shared control socket to fight over.
            self.cfg.set("control_socket_disable", True)

        def load(self) -> Any:
            from scim_bridge.api.app import get_app

            return get_app()

    Server().run()
