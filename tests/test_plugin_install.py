"""A plugin distribution with its own top-level ``adapters`` package installs beside scim-bridge,
and both work: scim-bridge's names are all under ``scim_bridge``, so nothing collides.

The plugin is built and pip-installed into this test environment, then loaded in a fresh
interpreter started outside the repository (so the checkout is not on ``sys.path``), and
uninstalled afterwards.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PYPROJECT = """\
[build-system]
requires = ["setuptools>=69"]
build-backend = "setuptools.build_meta"

[project]
name = "{dist}"
version = "1.0"

[tool.setuptools]
packages = ["adapters"]

[project.entry-points."scim_bridge.adapters"]
{name} = "adapters.acme:build"
"""

ACME = '''\
"""The plugin's adapter: a memory adapter that also uses the plugin's own ``adapters`` code."""

from scim_bridge.adapters.memory import MemoryAdapter

from adapters.naming import login_of


class AcmeAdapter(MemoryAdapter):
    def login(self, user_name):
        return login_of(user_name)


def build(options):
    return AcmeAdapter()
'''

NAMING = """\
def login_of(user_name):
    return "acme-" + user_name.split("@")[0]
"""

PROBE = """\
import json, sys
import adapters
import adapters.naming
import scim_bridge.adapters
from scim_bridge.adapters.port import LegacyAdapter
from scim_bridge.adapters.registry import available_adapters, load_adapter

adapter = load_adapter(sys.argv[1], {})
print(json.dumps({
    "installed": available_adapters(),
    "class": type(adapter).__module__ + "." + type(adapter).__qualname__,
    "is_port": isinstance(adapter, LegacyAdapter),
    "login": adapter.login("jane@example.com"),
    "plugin_adapters": adapters.__file__,
    "own_adapters": scim_bridge.adapters.__file__,
    "path": sys.path,
}))
"""


def _pip(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", *argv],
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_a_plugin_with_its_own_adapters_package_loads_through_the_registry(tmp_path):
    token = secrets.token_hex(4)
    dist, name = f"scim-bridge-test-plugin-{token}", f"acme_{token}"
    source = tmp_path / "plugin"
    (source / "adapters").mkdir(parents=True)
    (source / "pyproject.toml").write_text(PYPROJECT.format(dist=dist, name=name))
    (source / "adapters" / "__init__.py").write_text('"""The plugin\'s own adapters."""\n')
    (source / "adapters" / "acme.py").write_text(ACME)
    (source / "adapters" / "naming.py").write_text(NAMING)
    outside = tmp_path / "elsewhere"
    outside.mkdir()

    installed = _pip("install", "--no-deps", str(source))
    assert installed.returncode == 0, installed.stdout + installed.stderr
    try:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        probe = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(PROBE), name],
            cwd=outside,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert probe.returncode == 0, probe.stderr
        seen = json.loads(probe.stdout)
    finally:
        removed = _pip("uninstall", "--yes", dist)
    assert removed.returncode == 0, removed.stdout + removed.stderr

    assert str(ROOT) not in seen["path"]  # "" in the path is the working directory: elsewhere
    assert name in seen["installed"] and "memory" in seen["installed"]
    assert seen["class"] == "adapters.acme.AcmeAdapter" and seen["is_port"]
    assert seen["login"] == "acme-jane"  # the plugin's own adapters.naming at work
    plugin_adapters = Path(seen["plugin_adapters"]).resolve()
    assert "site-packages" in plugin_adapters.parts, plugin_adapters
    # scim-bridge's adapters package is another one, reached only as scim_bridge.adapters (this
    # checkout's adapters/, installed in editable mode, or a wheel's scim_bridge/adapters/).
    own_adapters = Path(seen["own_adapters"]).resolve()
    assert own_adapters != plugin_adapters
    assert own_adapters.parent in (
        ROOT / "adapters",
        plugin_adapters.parents[1] / "scim_bridge" / "adapters",
    )
    after = subprocess.run(
        [sys.executable, "-c", "import adapters"], cwd=outside, env=env, capture_output=True
    )
    assert after.returncode != 0  # uninstalled: no top-level adapters left behind
