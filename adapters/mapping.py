"""The storage-neutral half of a declarative mapping: SCIM attribute paths, ``active``, passwords.

An adapter driven by a mapping file (the ``sql`` adapter's tables, a directory's entries) needs
the same three things whatever it stores into, and they live here so that every such adapter
reads the same syntax and gets the same errors:

* :class:`AttributePath`: one SCIM attribute named as operators write it in a mapping, read from
  and written into a SCIM document. Supported forms::

      userName                                     a top-level attribute
      name.givenName                               a sub-attribute of a complex attribute
      emails[type eq "work"].value                 a sub-attribute of the entry of a
                                                   multi-valued attribute chosen by a filter
      emails[primary eq true].value                (``eq`` only; a string, true or false)
      urn:okta:onprem_app:1.0:user:custom:dept     an attribute of an extension schema
      urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value

  Attribute names match case-insensitively, as SCIM says; writes keep the spelling the document
  already uses. ``[primary eq true]`` falls back to the first entry when none is marked primary,
  because many clients leave ``primary`` out when there is one address.
* :class:`ActiveMapping`: the two stored values meaning active and inactive (``'A'``/``'T'``,
  ``1``/``0``, ``'Y'``/``'N'``).
* :class:`PasswordScheme`: a named hash format the application verifies (bcrypt, argon2,
  pbkdf2_sha256, sha512_crypt, ...), through libpass, the maintained fork of passlib.

Problems are :class:`MappingError` naming the mapping key, so a file is fixed in one pass.

Over 400 lines on purpose: it is the one syntax every mapping-driven adapter reads (paths,
``active``, passwords, the TOML checks and the problem list), kept together so that the sql and
ldap mappings cannot drift apart; each adapter's own model is in its package.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Protocol, TypeVar

from scim_bridge.adapters.port import Capabilities, Capability

__all__ = [
    "PASSWORD_SCHEMES",
    "ActiveMapping",
    "AttributePath",
    "MappingError",
    "MappingProblems",
    "PasswordScheme",
    "capabilities_for",
    "check_outcome",
    "mapped_paths",
    "mapped_twice",
    "name_map",
    "parse_path",
    "read_toml",
    "required_table",
    "toml_name",
    "toml_pair",
    "toml_string",
    "toml_table",
    "unique_name",
    "unknown_keys",
]


class MappingError(ValueError):
    """A mapping entry that cannot be used; ``key`` is its dotted TOML key."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


class MappingProblems(ValueError):
    """Every problem of a mapping, one line each (``key: what is wrong and what to change``)."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}:\n" + "\n".join(f"  {p}" for p in problems))

    def outcome(self) -> tuple[list[str], str]:
        """The problems and the summary line of a mapping check that stopped here."""
        return self.problems, f"{self.source}: {len(self.problems)} problem(s); nothing was run"


def read_toml(path: str | Path) -> dict[str, Any]:
    """The mapping file at ``path`` as TOML; raises :class:`MappingProblems` when unreadable."""
    try:
        with open(path, "rb") as file:
            return tomllib.load(file)
    except OSError as exc:
        problem = f"cannot read the mapping file: {exc.strerror}"
        raise MappingProblems(str(path), [problem]) from None
    except tomllib.TOMLDecodeError as exc:
        raise MappingProblems(str(path), [f"not valid TOML: {exc}"]) from None


def toml_table(raw: Any, where: str, problems: list[str]) -> dict[str, Any]:
    """``raw`` as a table, or an empty one and a problem naming ``where``."""
    if isinstance(raw, Mapping):
        return dict(raw)
    problems.append(f"{where}: expected a table, found {type(raw).__name__}")
    return {}


def unknown_keys(
    table: Mapping[str, Any], where: str, allowed: set[str], problems: list[str]
) -> None:
    """A problem for every key of ``table`` not in ``allowed``."""
    for name in table:
        if name not in allowed:
            key = f"{where}.{name}" if where else name
            problems.append(f"{key}: unknown key; known here: {', '.join(sorted(allowed))}")


def toml_string(table: Mapping[str, Any], where: str, name: str, problems: list[str]) -> str | None:
    """The string at ``table[name]`` (``None`` when absent or empty)."""
    value = table.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        problems.append(f"{where}.{name}: expected a string, found {type(value).__name__}")
        return None
    return value


def toml_name(
    table: Mapping[str, Any],
    where: str,
    name: str,
    problems: list[str],
    required: bool = False,
    *,
    pattern: re.Pattern[str],
    what: str,
) -> str | None:
    """The string at ``table[name]`` when it matches ``pattern`` (a column name, an LDAP
    attribute name); otherwise ``None`` and a problem saying it is not ``what``."""
    value = toml_string(table, where, name, problems)
    if value is None:
        if required:
            problems.append(f"{where}.{name}: required")
        return None
    if not pattern.match(value):
        problems.append(f"{where}.{name}: {value!r} is not {what}")
        return None
    return value


def required_table(raw: Any, kind: str, problems: list[str]) -> dict[str, Any] | None:
    """The ``[users]`` or ``[groups]`` table, or ``None`` and a problem when it is missing."""
    if raw is None:
        problems.append(f"{kind}: the [{kind}] table is required")
        return None
    return toml_table(raw, kind, problems)


def mapped_paths(
    raw: Any, where: str, problems: list[str]
) -> Iterator[tuple[str, AttributePath, Any]]:
    """Each entry of a ``[*.columns]`` or ``[*.attributes]`` table: its TOML key (for messages,
    ``users.columns."name.givenName"``), its SCIM path and what it is stored in. An entry whose
    path does not parse is a problem and is left out."""
    for path_text, target in toml_table(raw if raw is not None else {}, where, problems).items():
        key = f'{where}."{path_text}"' if not path_text.isidentifier() else f"{where}.{path_text}"
        try:
            path = parse_path(path_text, key=key)
        except MappingError as exc:
            problems.append(str(exc))
            continue
        yield key, path, target


def mapped_twice(targets: Iterable[tuple[str, str]], what: str, problems: list[str]) -> None:
    """A problem for every ``(key, target)`` whose target (a column, an LDAP attribute; names
    compared without case) an earlier key maps already."""
    seen: set[str] = set()
    for key, target in targets:
        if target.lower() in seen:
            problems.append(f"{key}: {what} {target} is mapped twice")
        seen.add(target.lower())


def toml_pair(
    entry: Mapping[str, Any], where: str, problems: list[str], *, text: bool = False
) -> ActiveMapping | None:
    """The ``true``/``false`` stored values of ``entry`` (as strings when ``text``), or ``None``
    and a problem."""
    if "true" not in entry or "false" not in entry:
        problems.append(f"{where}: give both true and false (the stored values)")
        return None
    true, false = (
        (str(entry["true"]), str(entry["false"])) if text else (entry["true"], entry["false"])
    )
    try:
        return ActiveMapping(true, false)
    except MappingError as exc:
        problems.append(f"{where}: {exc.message}")
        return None


class _Mapped(Protocol):
    @property
    def path(self) -> AttributePath: ...


_M = TypeVar("_M", bound=_Mapped)


def unique_name(kind: str) -> str:
    """The SCIM attribute that names a resource uniquely: ``userName`` or ``displayName``."""
    return "userName" if kind == "users" else "displayName"


def name_map(kind: str, maps: Iterable[_M]) -> _M | None:
    """The entry of ``maps`` that stores :func:`unique_name` (``None`` when none does)."""
    wanted = unique_name(kind).lower()
    return next((m for m in maps if m.path.text.lower() == wanted), None)


def capabilities_for(
    *, deactivation: bool, deactivation_deletes: bool, password: bool, group_push: bool
) -> Capabilities:
    """The Okta provisioning functions of a mapping-driven adapter: pushing and importing users
    always; deactivation (and with it reactivation and pending users) when ``active`` is stored,
    or deactivation alone when it is carried out as a delete; password and group push when the
    mapping stores them."""
    functions = {
        Capability.PUSH_NEW_USERS,
        Capability.PUSH_PROFILE_UPDATES,
        Capability.IMPORT_NEW_USERS,
        Capability.IMPORT_PROFILE_UPDATES,
    }
    if deactivation:
        functions |= {
            Capability.PUSH_USER_DEACTIVATION,
            Capability.REACTIVATE_USERS,
            Capability.PUSH_PENDING_USERS,
        }
    elif deactivation_deletes:
        functions.add(Capability.PUSH_USER_DEACTIVATION)  # carried out as a delete
    if password:
        functions.add(Capability.PUSH_PASSWORD_UPDATES)
    if group_push:
        functions.add(Capability.GROUP_PUSH)
    return Capabilities(functions=frozenset(functions))


def check_outcome(
    source: str,
    problems: list[str],
    capabilities: Capabilities,
    users: str,
    groups: str | None,
) -> tuple[list[str], str]:
    """The problems of a mapping check and its summary line: the problems found, or where users
    (and groups) are stored and the capabilities."""
    if problems:
        return problems, f"{source}: {len(problems)} problem(s); fix them before starting"
    functions = ", ".join(sorted(capabilities.functions))
    where = f"users -> {users}"
    if groups is not None:
        where += f", groups -> {groups}"
    return [], f"{source}: ok ({where}); capabilities: {functions}"


_NAME = r"[A-Za-z][A-Za-z0-9_$-]*"
_FILTER = re.compile(
    rf"^(?P<attr>{_NAME})\[\s*(?P<sub>{_NAME})\s+eq\s+"
    r'(?P<value>"(?:[^"\\]|\\.)*"|true|false)\s*\]'
    rf"(?:\.(?P<leaf>{_NAME}))?$",
    re.IGNORECASE,
)
_PLAIN = re.compile(rf"^(?P<attr>{_NAME})(?:\.(?P<leaf>{_NAME}))?$")


@dataclass(frozen=True)
class AttributePath:
    """One SCIM attribute path; build it with :func:`parse_path`."""

    text: str
    """The path as written in the mapping."""
    schema: str | None
    """The extension schema URN, or ``None`` for the core schema."""
    attribute: str
    """The top-level attribute (within ``schema`` when set)."""
    sub_attribute: str | None = None
    """The sub-attribute (``givenName`` of ``name.givenName``; ``value`` of ``emails[...]``)."""
    filter_attribute: str | None = None
    """The attribute a ``[... eq ...]`` filter tests, for multi-valued attributes."""
    filter_value: str | bool | None = None

    @property
    def top(self) -> str:
        """The top-level name a client sees (``name``, ``emails``, or the extension's URN)."""
        return self.schema if self.schema is not None else self.attribute

    @property
    def parameter(self) -> str:
        """An identifier for this path (``name_givenName``), for named statement parameters."""
        parts = [self.attribute, self.sub_attribute] if self.schema is None else [self.attribute]
        if self.schema is not None and self.sub_attribute:
            parts.append(self.sub_attribute)
        return "_".join(p for p in parts if p)

    def get(self, document: Mapping[str, Any]) -> Any:
        """The value at this path in ``document``, or ``None`` where it is absent."""
        container: Any = document
        if self.schema is not None:
            container = _lookup(document, self.schema)
            if not isinstance(container, Mapping):
                return None
        value = _lookup(container, self.attribute)
        if self.filter_attribute is not None:
            entry = self._entry(value)
            if entry is None:
                return None
            return entry if self.sub_attribute is None else _lookup(entry, self.sub_attribute)
        if self.sub_attribute is None:
            return value
        return _lookup(value, self.sub_attribute) if isinstance(value, Mapping) else None

    def set(self, document: MutableMapping[str, Any], value: Any) -> None:
        """Write ``value`` at this path in ``document``; ``None`` removes what is there."""
        container: MutableMapping[str, Any] = document
        if self.schema is not None:
            container = _child(document, self.schema, value is not None)  # type: ignore[assignment]
            if container is None:
                return
        if self.filter_attribute is not None:
            self._set_entry(container, value)
            return
        if self.sub_attribute is None:
            _store(container, self.attribute, value)
            return
        complex_value = _child(container, self.attribute, value is not None)
        if complex_value is not None:
            _store(complex_value, self.sub_attribute, value)
            if not complex_value:
                _store(container, self.attribute, None)

    def _entry(self, entries: Any) -> Any:
        if not isinstance(entries, list):
            return None
        candidates = [e for e in entries if isinstance(e, Mapping)]
        assert self.filter_attribute is not None
        for entry in candidates:
            if _matches(_lookup(entry, self.filter_attribute), self.filter_value):
                return entry
        if self.filter_attribute.lower() == "primary" and self.filter_value is True:
            return candidates[0] if candidates else None
        return None

    def _set_entry(self, container: MutableMapping[str, Any], value: Any) -> None:
        name = _spelling(container, self.attribute)
        entries = container.get(name)
        entries = [dict(e) for e in entries if isinstance(e, Mapping)] if entries else []
        entry = self._entry(entries)
        assert self.filter_attribute is not None and self.sub_attribute is not None
        if entry is None:
            if value is None:
                return
            entry = {self.filter_attribute: self.filter_value}
            entries.append(entry)
        _store(entry, self.sub_attribute, value)
        if value is None and set(entry) <= {self.filter_attribute, "primary", "type", "display"}:
            entries.remove(entry)
        if entries:
            container[name] = entries
        else:
            container.pop(name, None)


def parse_path(text: str, *, key: str = "columns") -> AttributePath:
    """Parse a SCIM attribute path as written in a mapping; ``key`` names it in errors."""
    schema: str | None = None
    rest = text.strip()
    if rest.lower().startswith("urn:"):
        head, sep, tail = rest.rpartition(":")
        if not sep or not tail or head.count(":") < 2:
            raise MappingError(key, f"{text!r} is not an extension attribute (urn:...:name)")
        schema, rest = head, tail
    match = _FILTER.match(rest)
    if match is not None:
        raw = match["value"]
        filter_value: str | bool = (
            raw.lower() == "true" if raw.lower() in ("true", "false") else _unquote(raw)
        )
        return AttributePath(
            text,
            schema,
            match["attr"],
            match["leaf"] or "value",
            match["sub"],
            filter_value,
        )
    match = _PLAIN.match(rest)
    if match is None:
        raise MappingError(
            key,
            f"{text!r} is not a SCIM attribute path (use e.g. userName, name.givenName,"
            ' emails[type eq "work"].value or urn:...:department)',
        )
    return AttributePath(text, schema, match["attr"], match["leaf"])


@dataclass(frozen=True)
class ActiveMapping:
    """How ``active`` is stored: the value meaning true and the one meaning false.

    Reading, a stored value equal to neither reads as inactive, so an application's third state
    (a suspension, a leaver not yet deleted) never counts as allowed to sign in.
    """

    true: Any = True
    false: Any = False

    def __post_init__(self) -> None:
        if self.true == self.false:
            raise MappingError("active", f"true and false are the same value ({self.true!r})")

    def to_stored(self, active: bool) -> Any:
        return self.true if active else self.false

    def from_stored(self, stored: Any) -> bool:
        if stored == self.true:
            return True
        if isinstance(self.true, str) and isinstance(stored, str):
            # CHAR(n) columns pad with blanks on some databases.
            return stored.rstrip() == self.true
        if isinstance(self.true, bool) and isinstance(stored, int):
            return bool(stored) is self.true
        return False


# Scheme name in a mapping -> libpass handler name. libpass keeps passlib's formats, which is
# what applications written against crypt(3), passlib or their frameworks already verify.
PASSWORD_SCHEMES: dict[str, str] = {
    "bcrypt": "bcrypt",
    "argon2": "argon2",
    "pbkdf2_sha256": "pbkdf2_sha256",
    "pbkdf2_sha512": "pbkdf2_sha512",
    "sha512_crypt": "sha512_crypt",
    "sha256_crypt": "sha256_crypt",
    "scrypt": "scrypt",
}


@dataclass(frozen=True)
class PasswordScheme:
    """A password hash format the legacy application verifies.

    It is also scim-bridge's one password-hash helper: the workers record the last password
    pushed as ``PasswordScheme("scrypt", rounds=14)`` (workers/passwords.py). ``rounds`` is the
    scheme's cost setting (libpass' ``rounds``); None keeps libpass' default.
    """

    name: str
    rounds: int | None = None

    def __post_init__(self) -> None:
        if self.name not in PASSWORD_SCHEMES:
            known = ", ".join(sorted(PASSWORD_SCHEMES))
            raise MappingError(
                "password.scheme", f"unknown scheme {self.name!r}; use one of {known}"
            )

    def _handler(self) -> Any:
        return _handler(self.name, self.rounds)

    def hash(self, password: str) -> str:
        """A salted hash of ``password`` in this scheme's standard format."""
        return str(self._handler().hash(password))

    def verify(self, password: str, password_hash: str) -> bool:
        """Whether ``password`` matches ``password_hash`` (``False`` for a malformed hash)."""
        try:
            return bool(self._handler().verify(password, password_hash))
        except (ValueError, TypeError):
            return False


@cache
def _handler(name: str, rounds: int | None) -> Any:
    # Imported on first use: hashing libraries load native code.
    from passlib import hash as handlers

    handler = getattr(handlers, PASSWORD_SCHEMES[name])
    return handler if rounds is None else handler.using(rounds=rounds)


def _unquote(raw: str) -> str:
    return re.sub(r"\\(.)", r"\1", raw[1:-1])


def _matches(actual: Any, wanted: str | bool | None) -> bool:
    if isinstance(wanted, bool):
        return actual is wanted
    return isinstance(actual, str) and actual.lower() == str(wanted).lower()


def _spelling(container: Mapping[str, Any], name: str) -> str:
    """The key ``container`` uses for ``name`` (SCIM names ignore case), else ``name``."""
    if name in container:
        return name
    lowered = name.lower()
    return next((k for k in container if k.lower() == lowered), name)


def _lookup(container: Any, name: str) -> Any:
    if not isinstance(container, Mapping):
        return None
    return container.get(_spelling(container, name))


def _store(container: MutableMapping[str, Any], name: str, value: Any) -> None:
    spelled = _spelling(container, name)
    if value is None:
        container.pop(spelled, None)
    else:
        container[spelled] = value


def _child(
    container: MutableMapping[str, Any], name: str, create: bool
) -> MutableMapping[str, Any] | None:
    spelled = _spelling(container, name)
    child = container.get(spelled)
    if isinstance(child, Mapping):
        copied = dict(child)
        container[spelled] = copied
        return copied
    if not create:
        return None
    fresh: dict[str, Any] = {}
    container[spelled] = fresh
    return fresh
