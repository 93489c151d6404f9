"""What every area of the store shares: a client, the key names and the scripts."""

from __future__ import annotations

import redis

from scim_bridge.store.keys import Keys
from scim_bridge.store.scripts import Scripts


class Area:
    """One area of the store over a Redis client (the areas are combined in ``Store``)."""

    redis: redis.Redis
    keys: Keys
    scripts: Scripts
