"""The LDAP mapping file (TOML, named by ``SCIM_BRIDGE_LDAP_MAPPING``): its model and its parser.

Parsing checks everything that needs no directory: unknown keys, missing required keys, SCIM
attribute paths (:mod:`scim_bridge.adapters.mapping`, shared with the ``sql`` adapter), attribute
names, the active pair, the password scheme and that a clear-text password only travels over
TLS. What needs the directory (bind, bases, object classes and attributes in its schema) is
:mod:`.check`'s. Every key is documented in ``docs/ldap.md``; keep the two in step.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from scim_bridge.adapters.mapping import (
    ActiveMapping,
    AttributePath,
    MappingProblems,
    mapped_paths,
    mapped_twice,
    name_map,
    read_toml,
    required_table,
    toml_name,
    toml_pair,
    toml_string,
    toml_table,
    unique_name,
    unknown_keys,
)

# An attribute description: a name (or OID) with options (``userCertificate;binary``).
_ATTRIBUTE = re.compile(r"^(?:[A-Za-z][A-Za-z0-9-]*|[0-9]+(?:\.[0-9]+)+)(?:;[A-Za-z0-9-]+)*$")
PASSWORD_SCHEMES = ("ssha", "server")
AD_DISABLED = 0x2
"""userAccountControl's ACCOUNTDISABLE bit."""
AD_NORMAL_ACCOUNT = 0x200
"""userAccountControl's NORMAL_ACCOUNT bit, which a new user entry carries."""


@dataclass(frozen=True)
class AttributeMap:
    """One ``[*.attributes]`` entry: a SCIM attribute path stored in an LDAP attribute."""

    key: str
    path: AttributePath
    attribute: str


@dataclass(frozen=True)
class DirectoryMapping:
    """``[ldap]``: where the directory is and how scim-bridge binds to it."""

    url: str
    bind_dn: str
    bind_password_file: Path | None = None
    bind_password: str | None = field(default=None, repr=False)
    start_tls: bool = False
    ca_file: Path | None = None

    @property
    def tls(self) -> bool:
        """Whether every byte to the directory travels encrypted."""
        return self.start_tls or urlsplit(self.url).scheme.lower() == "ldaps"

    def password(self) -> str:
        """The bind password, from the file when one is named (read on every bind, so a rotated
        secret is picked up without a restart)."""
        if self.bind_password_file is not None:
            return self.bind_password_file.read_text().rstrip("\r\n")
        return self.bind_password or ""


@dataclass(frozen=True)
class EntryMapping:
    """``[users]`` or ``[groups]``."""

    kind: str  # "users" or "groups"
    base: str
    object_classes: tuple[str, ...]
    rdn: str
    filter: str
    attributes: tuple[AttributeMap, ...]
    changed: str | None = None
    active_attribute: str | None = None
    active: ActiveMapping | None = None
    ad: bool = False
    """Active Directory (``[users.active] ad = true``; set on the groups of such a mapping too)."""
    password_attribute: str | None = None
    password_scheme: str | None = None
    member_attribute: str | None = None
    member_value: str | None = None

    @property
    def name_map(self) -> AttributeMap:
        """The unique name: ``userName`` for users, ``displayName`` for groups."""
        found = name_map(self.kind, self.attributes)
        assert found is not None  # parse_mapping requires it
        return found

    @property
    def rdn_map(self) -> AttributeMap:
        """The attribute map whose LDAP attribute names new entries (``rdn``)."""
        return next(a for a in self.attributes if a.attribute.lower() == self.rdn.lower())

    @property
    def key_attribute(self) -> str:
        """The attribute whose value is the legacy key: stable across renames (RFC 4530's
        ``entryUUID``; Active Directory's ``objectGUID``)."""
        return "objectGUID" if self.ad else "entryUUID"


@dataclass(frozen=True)
class LdapMapping:
    directory: DirectoryMapping
    users: EntryMapping
    groups: EntryMapping | None
    source: str = "mapping"


def load_mapping(path: str | Path) -> LdapMapping:
    """Read and parse the mapping file at ``path``; raises :class:`MappingProblems`."""
    return parse_mapping(read_toml(path), source=str(path))


def parse_mapping(document: Mapping[str, Any], *, source: str = "mapping") -> LdapMapping:
    """Parse a mapping already read from TOML; raises :class:`MappingProblems`."""
    problems: list[str] = []
    unknown_keys(document, "", {"ldap", "users", "groups"}, problems)
    directory = _directory(document.get("ldap"), problems)
    users = _entries(document.get("users"), "users", problems)
    groups = _entries(document["groups"], "groups", problems) if "groups" in document else None
    if users is not None and directory is not None:
        scheme = users.password_scheme
        if (scheme == "server" or (users.ad and users.password_attribute)) and not directory.tls:
            problems.append(
                "users.password.scheme: the directory receives the password as it is; use an"
                ' ldaps:// url or start_tls = true (or scheme = "ssha")'
            )
    if problems or users is None or directory is None:
        raise MappingProblems(source, problems or ["users: the [users] table is required"])
    if groups is not None and users.ad:
        from dataclasses import replace

        groups = replace(groups, ad=True)  # one directory: its groups are AD's too (objectGUID)
    return LdapMapping(directory, users, groups, source)


def _directory(raw: Any, problems: list[str]) -> DirectoryMapping | None:
    where = "ldap"
    if raw is None:
        problems.append("ldap: the [ldap] table is required (url, bind_dn, bind_password_file)")
        return None
    table = toml_table(raw, where, problems)
    allowed = {"url", "bind_dn", "bind_password_file", "bind_password", "start_tls", "ca_file"}
    unknown_keys(table, where, allowed, problems)
    url = toml_string(table, where, "url", problems)
    if url is None:
        problems.append("ldap.url: required (ldap://host:389 or ldaps://host:636)")
    elif urlsplit(url).scheme.lower() not in ("ldap", "ldaps") or not urlsplit(url).hostname:
        problems.append(f"ldap.url: {url!r} is not an ldap:// or ldaps:// URL with a host")
    bind_dn = toml_string(table, where, "bind_dn", problems)
    if bind_dn is None:
        problems.append("ldap.bind_dn: required (the account scim-bridge binds as)")
    password_file = toml_string(table, where, "bind_password_file", problems)
    password = toml_string(table, where, "bind_password", problems)
    if password_file is not None and password is not None:
        problems.append("ldap: give bind_password_file or bind_password, not both")
    elif password_file is None and password is None:
        problems.append("ldap.bind_password_file: required (or bind_password)")
    start_tls = table.get("start_tls", False)
    if not isinstance(start_tls, bool):
        problems.append(f"ldap.start_tls: expected true or false, found {start_tls!r}")
        start_tls = False
    if start_tls and url is not None and urlsplit(url).scheme.lower() == "ldaps":
        problems.append("ldap.start_tls: an ldaps:// url is encrypted already; drop start_tls")
    ca_file = toml_string(table, where, "ca_file", problems)
    if ca_file is not None and not Path(ca_file).is_file():
        problems.append(f"ldap.ca_file: {ca_file} is not a readable file")
    if url is None or bind_dn is None:
        return None
    return DirectoryMapping(
        url=url,
        bind_dn=bind_dn,
        bind_password_file=Path(password_file) if password_file else None,
        bind_password=password,
        start_tls=start_tls,
        ca_file=Path(ca_file) if ca_file else None,
    )


def _entries(raw: Any, kind: str, problems: list[str]) -> EntryMapping | None:
    table = required_table(raw, kind, problems)
    if table is None:
        return None
    allowed = {"base", "object_classes", "rdn", "attributes"}
    if kind == "users":
        allowed |= {"filter", "changed", "active", "password"}
    else:
        allowed |= {"member_attribute", "member_value"}
    unknown_keys(table, kind, allowed, problems)
    base = toml_string(table, kind, "base", problems)
    if base is None:
        problems.append(f"{kind}.base: required (the DN new entries are created under)")
    classes = table.get("object_classes")
    if (
        not isinstance(classes, list)
        or not classes
        or not all(isinstance(c, str) and _ATTRIBUTE.match(c) for c in classes)
    ):
        problems.append(f'{kind}.object_classes: give a list of object class names (["..."])')
        classes = []
    rdn = _attribute(table, kind, "rdn", problems, required=True)
    attributes = _attributes(table.get("attributes"), f"{kind}.attributes", problems)
    if name_map(kind, attributes) is None:
        problems.append(
            f"{kind}.attributes: map {unique_name(kind)} to the attribute that holds it"
        )
    if rdn is not None and not any(a.attribute.lower() == rdn.lower() for a in attributes):
        problems.append(
            f"{kind}.rdn: {rdn} is not mapped in [{kind}.attributes]; new entries are named by"
            " the value mapped to it"
        )
    default_filter = "(&" + "".join(f"(objectClass={c})" for c in classes) + ")"
    search_filter = toml_string(table, kind, "filter", problems) or default_filter
    if not (search_filter.startswith("(") and search_filter.endswith(")")):
        problems.append(f"{kind}.filter: {search_filter!r} is not an LDAP filter ((...))")
    mapping = EntryMapping(
        kind=kind,
        base=base or "",
        object_classes=tuple(classes),
        rdn=rdn or "",
        filter=search_filter,
        attributes=attributes,
        changed=_attribute(table, kind, "changed", problems),
    )
    if kind == "users":
        return _user_parts(mapping, table, problems)
    from dataclasses import replace

    member_attribute = _attribute(table, kind, "member_attribute", problems)
    member_value = _attribute(table, kind, "member_value", problems)
    if member_value is not None and member_attribute is None:
        problems.append("groups.member_value: give member_attribute too (memberUid)")
    return replace(mapping, member_attribute=member_attribute, member_value=member_value)


def _user_parts(
    mapping: EntryMapping, table: Mapping[str, Any], problems: list[str]
) -> EntryMapping:
    from dataclasses import replace

    changes: dict[str, Any] = {}
    if "active" in table:
        where = "users.active"
        active = toml_table(table["active"], where, problems)
        unknown_keys(active, where, {"attribute", "true", "false", "ad"}, problems)
        ad = active.get("ad", False)
        if not isinstance(ad, bool):
            problems.append(f"{where}.ad: expected true or false, found {ad!r}")
            ad = False
        changes["ad"] = ad
        if ad:
            if {"true", "false"} & set(active):
                problems.append(f"{where}: with ad = true, userAccountControl's bit says it")
            attribute = _attribute(active, where, "attribute", problems) or "userAccountControl"
            changes["active_attribute"] = attribute
        else:
            changes["active_attribute"] = _attribute(active, where, "attribute", problems, True)
            changes["active"] = toml_pair(active, where, problems, text=True)
    if "password" in table:
        where = "users.password"
        password = toml_table(table["password"], where, problems)
        unknown_keys(password, where, {"attribute", "scheme"}, problems)
        ad = bool(changes.get("ad"))
        default = "unicodePwd" if ad else "userPassword"
        changes["password_attribute"] = (
            _attribute(password, where, "attribute", problems) or default
        )
        scheme = password.get("scheme", "server" if ad else "ssha")
        if scheme not in PASSWORD_SCHEMES:
            problems.append(f'{where}.scheme: {scheme!r} is neither "ssha" nor "server"')
        elif ad and scheme != "server":
            problems.append(f'{where}.scheme: Active Directory hashes unicodePwd itself: "server"')
        changes["password_scheme"] = scheme
    return replace(mapping, **changes)


def _attributes(raw: Any, where: str, problems: list[str]) -> tuple[AttributeMap, ...]:
    attributes: list[AttributeMap] = []
    for key, path, target in mapped_paths(raw, where, problems):
        if not isinstance(target, str) or not _ATTRIBUTE.match(target):
            problems.append(f"{key}: {target!r} is not an LDAP attribute name")
            continue
        attributes.append(AttributeMap(key, path, target))
    mapped_twice(((a.key, a.attribute) for a in attributes), "attribute", problems)
    return tuple(attributes)


_attribute = partial(toml_name, pattern=_ATTRIBUTE, what="an LDAP attribute name")
