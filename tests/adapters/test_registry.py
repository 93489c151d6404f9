"""Adapters are found by name through the installed entry points, and a plugin that cannot be
loaded is named, with its package, in the error."""

from __future__ import annotations

import textwrap
import uuid
from pathlib import Path

import pytest

from scim_bridge.adapters.memory import MemoryAdapter
from scim_bridge.adapters.registry import (
    AdapterLoadError,
    AdapterNotFound,
    available_adapters,
    load_adapter,
)
from scim_bridge.adapters.sql import SqlAdapter


def install_plugin(
    directory: Path,
    monkeypatch: pytest.MonkeyPatch,
    source: str,
    *,
    adapter_name: str = "acme",
    package: str = "acme-scim",
    version: str = "1.2",
    target: str = "make",
) -> None:
    """Put a distribution on sys.path that declares ``adapter_name`` as ``<module>:<target>``."""
    directory.mkdir(parents=True, exist_ok=True)
    module = f"acme_scim_{uuid.uuid4().hex[:8]}"  # unique, so no test sees another's import
    (directory / f"{module}.py").write_text(textwrap.dedent(source))
    dist_info = directory / f"{package.replace('-', '_')}-{version}.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {package}\nVersion: {version}\n"
    )
    (dist_info / "entry_points.txt").write_text(
        f"[scim_bridge.adapters]\n{adapter_name} = {module}:{target}\n"
    )
    monkeypatch.syspath_prepend(str(directory))


def test_the_built_in_adapters_are_available() -> None:
    assert {"memory", "sql", "ldap"} <= set(available_adapters())


def test_the_memory_adapter_loads_by_name() -> None:
    assert isinstance(load_adapter("memory", {}), MemoryAdapter)


def test_the_sql_adapter_loads_by_name_with_its_options(tmp_path: Path) -> None:
    adapter = load_adapter("sql", {"url": f"sqlite:///{tmp_path / 'legacy.db'}"})
    assert isinstance(adapter, SqlAdapter)
    adapter.close()


def test_the_ldap_adapter_loads_by_name_with_its_mapping(slapd, tmp_path: Path) -> None:
    from scim_bridge.adapters.ldap import LdapAdapter
    from tests.adapters.directory import write_mapping

    adapter = load_adapter("ldap", {"mapping": str(write_mapping(slapd, tmp_path))})
    assert isinstance(adapter, LdapAdapter)
    adapter.close()


def test_the_ldap_adapter_without_a_mapping_says_which_setting_names_it() -> None:
    with pytest.raises(AdapterLoadError, match="SCIM_BRIDGE_LDAP_MAPPING"):
        load_adapter("ldap", {})


def test_an_unknown_name_lists_the_available_adapters() -> None:
    with pytest.raises(AdapterNotFound) as raised:
        load_adapter("acme", {})
    message = str(raised.value)
    assert "'acme'" in message
    assert "memory" in message and "sql" in message


def test_a_plugin_that_fails_to_import_is_named_with_its_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_plugin(tmp_path, monkeypatch, "import acme_legacy_client_that_is_not_installed\n")
    assert "acme" in available_adapters()
    with pytest.raises(AdapterLoadError) as raised:
        load_adapter("acme", {})
    assert str(raised.value) == (
        "adapter 'acme' from package acme-scim 1.2 failed to import: ModuleNotFoundError:"
        " No module named 'acme_legacy_client_that_is_not_installed'"
    )
    assert isinstance(raised.value.__cause__, ModuleNotFoundError)


def test_a_plugin_that_does_not_build_an_adapter_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_plugin(
        tmp_path,
        monkeypatch,
        """
        def make(options):
            return {"not": "an adapter"}
        """,
    )
    with pytest.raises(
        AdapterLoadError, match=r"acme-scim 1\.2.*returned a dict, not a LegacyAdapter"
    ):
        load_adapter("acme", {})


def test_a_plugin_that_refuses_its_options_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_plugin(
        tmp_path,
        monkeypatch,
        """
        def make(options):
            raise KeyError("base_url")
        """,
    )
    with pytest.raises(AdapterLoadError) as raised:
        load_adapter("acme", {})
    assert str(raised.value) == (
        "adapter 'acme' from package acme-scim 1.2 could not be built from its options:"
        " KeyError: 'base_url'"
    )


def test_an_entry_point_that_is_not_callable_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_plugin(tmp_path, monkeypatch, "make = 42\n")
    with pytest.raises(AdapterLoadError, match="is a int, not a callable"):
        load_adapter("acme", {})


def test_one_name_declared_by_two_packages_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = """
    from scim_bridge.adapters.memory import MemoryAdapter

    def make(options):
        return MemoryAdapter()
    """
    install_plugin(tmp_path / "one", monkeypatch, source, package="acme-scim")
    install_plugin(tmp_path / "two", monkeypatch, source, package="acme-scim-fork", version="2.0")
    with pytest.raises(AdapterLoadError) as raised:
        load_adapter("acme", {})
    assert "acme-scim 1.2" in str(raised.value)
    assert "acme-scim-fork 2.0" in str(raised.value)
