"""The in-memory reference adapter passes the contract kit."""

from __future__ import annotations

import pytest

from scim_bridge.adapters.contract import AdapterContract
from scim_bridge.adapters.memory import MemoryAdapter
from scim_bridge.adapters.port import LegacyAdapter


class TestMemoryAdapter(AdapterContract):
    @pytest.fixture
    def adapter(self) -> LegacyAdapter:
        return MemoryAdapter()
