"""The contract kit on SQLite, PostgreSQL and MariaDB, for the default mapping and a foreign
HR-style mapping (no id column, status letters, bcrypt, a link table, NOT NULL defaults)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from scim_bridge.adapters.contract import AdapterContract
from scim_bridge.adapters.sql import SqlAdapter
from tests.adapters.databases import HR_MAPPING, KINDS, fresh_database, hr_schema


@pytest.fixture(params=KINDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from fresh_database(request.param, tmp_path)


def hr_database(url: str, tmp_path: Path) -> Path:
    """Create the HR tables at ``url``; return the mapping file."""
    engine = create_engine(url)
    with engine.begin() as connection:
        for statement in hr_schema(engine.dialect.name):
            connection.execute(text(statement))
    engine.dispose()
    mapping = tmp_path / "hr.toml"
    mapping.write_text(HR_MAPPING)
    return mapping


class TestDefaultMapping(AdapterContract):
    @pytest.fixture
    def adapter(self, database_url: str) -> Iterator[SqlAdapter]:
        adapter = SqlAdapter.from_options({"url": database_url})
        yield adapter
        adapter.close()


class TestForeignHrMapping(AdapterContract):
    @pytest.fixture
    def adapter(self, database_url: str, tmp_path: Path) -> Iterator[SqlAdapter]:
        mapping = hr_database(database_url, tmp_path)
        adapter = SqlAdapter.from_options({"url": database_url, "mapping": str(mapping)})
        yield adapter
        adapter.close()
