"""The in-memory reference adapter passes the contract kit."""

from __future__ import annotations

import pytest

from adapters.contract import AdapterContract
from adapters.memory import MemoryAdapter
from adapters.port import LegacyAdapter


class TestMemoryAdapter(AdapterContract):
    @pytest.fixture
    def adapter(self) -> LegacyAdapter:
        return MemoryAdapter()
