"""The store's Lua scripts, read from the package's ``.lua`` files on first use.

Each script is loaded behind a one-line prelude of Lua locals, so the scripts name the resource
hash's fields and the statuses as the Python code does, from one place::

    F_<NAME>            a field of a resource hash (``F_SYNC_STATE`` is ``Field.SYNC_STATE``)
    APPLIED_IS_DESIRED  the applied field's marker
    S_<NAME>            a status (``S_PENDING`` is ``Status.PENDING``)
"""

from __future__ import annotations

from functools import cache
from importlib import resources

import redis
from redis.commands.core import Script

from scim_bridge.store.keys import APPLIED_IS_DESIRED, Field
from scim_bridge.store.model import Status


@cache
def prelude() -> str:
    """The Lua locals naming fields and statuses, on one line (error line numbers stay +1)."""
    names = {f"F_{name}": value for name, value in vars(Field).items() if name.isupper()}
    names["APPLIED_IS_DESIRED"] = APPLIED_IS_DESIRED
    names |= {f"S_{status.name}": status.value for status in Status}
    values = ", ".join(f"'{value}'" for value in names.values())
    return f"local {', '.join(names)} = {values}\n"


@cache
def source(name: str) -> str:
    """The text of ``store/{name}.lua``, behind the prelude."""
    text = resources.files("scim_bridge.store").joinpath(f"{name}.lua").read_text()
    return prelude() + text


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
