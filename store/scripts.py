"""The store's Lua scripts, read from the package's ``.lua`` files on first use."""

from __future__ import annotations

from functools import cache
from importlib import resources

import redis
from redis.commands.core import Script


@cache
def source(name: str) -> str:
    """The text of ``store/{name}.lua``."""
    return resources.files("scim_bridge.store").joinpath(f"{name}.lua").read_text()


class Scripts:
    """Scripts registered on one client, each loaded the first time it runs."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._registered: dict[str, Script] = {}

    def __getitem__(self, name: str) -> Script:
        script = self._registered.get(name)
        if script is None:
            script = self._registered[name] = self._client.register_script(source(name))
        return script
