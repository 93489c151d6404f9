"""Fixtures of the fault suite. Each case builds its own scim-bridge from real processes (see
stack.py) in its temporary directory, and prints its outcome (``pytest -s`` shows it)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture
def fault_dir(tmp_path: Path) -> Path:
    """Where a case keeps its Redis files, legacy database and process logs."""
    return tmp_path


@pytest.fixture
def show() -> Callable[[Any], str]:
    """Print a scenario's outcome and return it as text, for assertion messages."""

    def render(outcome: Any) -> str:
        text = json.dumps(outcome.summary(), indent=1, default=str)
        print(text)
        return text

    return render
