"""Dead letters: changes the legacy application refused or that kept failing."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, cast

from scim_bridge.store.base import Area
from scim_bridge.store.keys import Kind, ref


class DeadLetterStore(Area):
    """The dead-letter store, by resource ref."""

    def dead_letter(self, kind: Kind, rid: str, entry: Mapping[str, Any]) -> None:
        """Store a change that cannot be applied, with its reason."""
        self.redis.hset(self.keys.dead_letters, ref(kind, rid), json.dumps(entry))

    def dead_letters(self) -> dict[str, dict[str, Any]]:
        """Every dead-letter entry, by ref."""
        raw = cast(dict[bytes, bytes], self.redis.hgetall(self.keys.dead_letters))
        return {k.decode(): json.loads(v) for k, v in raw.items()}

    def dead_letter_count(self) -> int:
        """How many changes are dead-lettered."""
        return int(self.redis.hlen(self.keys.dead_letters))

    def dead_letter_entry(self, entry_ref: str) -> dict[str, Any] | None:
        """One entry, or None."""
        raw = cast(bytes | None, self.redis.hget(self.keys.dead_letters, entry_ref))
        return cast(dict[str, Any], json.loads(raw)) if raw is not None else None

    def remove_dead_letter(self, entry_ref: str) -> None:
        """Forget an entry (its change was put back)."""
        self.redis.hdel(self.keys.dead_letters, entry_ref)

    def drop_dead_letter(self, entry_ref: str, record: Mapping[str, Any]) -> None:
        """Move an entry to the dropped list with the operator's ``record``, atomically."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.rpush(self.keys.dropped, json.dumps(record))
        pipe.hdel(self.keys.dead_letters, entry_ref)
        pipe.execute()

    def dropped(self) -> list[dict[str, Any]]:
        """Entries operators dropped, oldest first."""
        raw = cast(list[bytes], self.redis.lrange(self.keys.dropped, 0, -1))
        return [json.loads(r) for r in raw]
