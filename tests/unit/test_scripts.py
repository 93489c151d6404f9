"""The Lua scripts name hash fields and statuses through the prelude made from store/keys.py."""

from __future__ import annotations

import re
from importlib import resources

from scim_bridge.store.keys import Field
from scim_bridge.store.scripts import prelude, source

SCRIPTS = sorted(
    path.name.removesuffix(".lua")
    for path in resources.files("scim_bridge.store").iterdir()
    if path.name.endswith(".lua")
)
SHORT_NAMES = {value for name, value in vars(Field).items() if name.isupper()}


def test_every_name_a_script_uses_is_defined_by_the_prelude() -> None:
    defined = set(prelude().removeprefix("local ").split(" = ")[0].split(", "))
    for name in SCRIPTS:
        used = set(re.findall(r"\b(?:F|S)_[A-Z0-9_]+\b", source(name)))
        assert used <= defined, (name, used - defined)


def test_no_script_spells_a_resource_field_literally() -> None:
    for name in SCRIPTS:
        body = source(name).split("\n", 1)[1]
        quoted = set(re.findall(r"'([^']*)'", body))
        assert not quoted & (SHORT_NAMES - {"1", "0"}), (name, quoted & SHORT_NAMES)


def test_the_prelude_gives_each_field_its_wire_name() -> None:
    assert "F_SYNC_STATE" in prelude() and "'st'" in prelude()
    names, values = prelude().removeprefix("local ").strip().split(" = ")
    pairs = dict(zip(names.split(", "), values.split(", "), strict=True))
    assert pairs["F_SYNC_STATE"] == f"'{Field.SYNC_STATE}'"
    assert pairs["F_PASSWORD_HASH"] == f"'{Field.PASSWORD_HASH}'"
    assert pairs["S_PENDING"] == "'pending'"
