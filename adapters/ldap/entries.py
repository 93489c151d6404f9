"""SCIM documents to LDAP entries and back, DNs and filters, for one ``[users]``/``[groups]``.

Every value that reaches a DN is escaped with RFC 4514's rules (``escape_rdn``) and every value
that reaches a filter with RFC 4515's (``escape_filter_chars``); nothing an Okta administrator
types is ever spliced into either as it is.
"""

from __future__ import annotations

import string
import uuid
from collections.abc import Mapping
from typing import Any

from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import escape_rdn, parse_dn

from scim_bridge.adapters.errors import PermanentError
from scim_bridge.adapters.ldap.connection import Entry
from scim_bridge.adapters.ldap.model import AD_DISABLED, AD_NORMAL_ACCOUNT, EntryMapping
from scim_bridge.adapters.port import LegacyRecord, ScimDocument

SCHEMAS = {
    "users": "urn:ietf:params:scim:schemas:core:2.0:User",
    "groups": "urn:ietf:params:scim:schemas:core:2.0:Group",
}
AD_LOGIN = "sAMAccountName"
AD_LOGIN_MAX = 20  # sAMAccountName's limit for user objects


def filter_value(value: str) -> str:
    """``value`` escaped for an LDAP filter (RFC 4515)."""
    return str(escape_filter_chars(value))


def unescape_value(value: str) -> str:
    """An RFC 4514 attribute value with its escapes undone (``\\,`` and ``\\2C`` are ``,``)."""
    decoded = bytearray()
    index = 0
    while index < len(value):
        char = value[index]
        if char == "\\" and index + 1 < len(value):
            pair = value[index + 1 : index + 3]
            if len(pair) == 2 and all(c in string.hexdigits for c in pair):
                decoded += bytes.fromhex(pair)
                index += 3
                continue
            decoded += value[index + 1].encode()
            index += 2
            continue
        decoded += char.encode()
        index += 1
    return decoded.decode("utf-8", "replace")


def normal_dn(dn: str) -> str:
    """A DN in a form two spellings of one DN share (types and values folded to lower case,
    no blanks around separators), for comparing member values."""
    try:
        parts = parse_dn(dn, escape=False, strip=True)
    except Exception:  # a member value that is not a DN compares as written
        return dn.strip().lower()
    return "".join(f"{t.lower()}={unescape_value(v).lower()}{s}" for t, v, s in parts)


class Entries:
    """One mapped kind of entry: its attributes, names, keys and documents."""

    def __init__(self, mapping: EntryMapping) -> None:
        self.mapping = mapping
        self.kind = mapping.kind
        self.noun = "user" if mapping.kind == "users" else "group"
        self.key_attribute = mapping.key_attribute
        self.name_map = mapping.name_map
        self.rdn_map = mapping.rdn_map
        self.base_normal = normal_dn(mapping.base)
        attributes = [self.key_attribute, *(a.attribute for a in mapping.attributes)]
        for extra in (mapping.active_attribute, mapping.member_attribute, mapping.changed):
            if extra:
                attributes.append(extra)
        if mapping.ad and mapping.kind == "users":
            attributes.append(AD_LOGIN)
        self.read_attributes = list(dict.fromkeys(attributes))

    # Names and filters ----------------------------------------------------------------------
    def name_of(self, document: ScimDocument) -> str:
        name = self.name_map.path.get(document)
        if not isinstance(name, str) or not name.strip():
            raise PermanentError(f"the {self.noun} has no {self.name_map.path.text}")
        return name

    def rdn_value(self, document: ScimDocument) -> str:
        value = self.rdn_map.path.get(document)
        if not isinstance(value, str) or not value.strip():
            raise PermanentError(
                f"the {self.noun} has no {self.rdn_map.path.text}, which names its entry"
                f" ({self.mapping.rdn}=...)"
            )
        return value

    def rdn_of(self, value: str) -> str:
        """``rdn=value`` with the value escaped (RFC 4514: ``, + " \\ < > ; =``, a leading
        ``#`` or blank, a trailing blank)."""
        # escape_rdn writes NUL as a backslash and the NUL itself; RFC 4514 wants ``\\00``.
        escaped = str(escape_rdn(value)).replace("\\\x00", "\\00")
        return f"{self.mapping.rdn}={escaped}"

    def dn_for(self, document: ScimDocument) -> str:
        return f"{self.rdn_of(self.rdn_value(document))},{self.mapping.base}"

    def everything(self) -> str:
        return self.mapping.filter

    def by_name(self, name: str) -> str:
        attribute = self.name_map.attribute
        return f"(&{self.mapping.filter}({attribute}={filter_value(name)}))"

    def by_values(self, attribute: str, values: list[str]) -> str:
        alternatives = "".join(f"({attribute}={filter_value(v)})" for v in values)
        return f"(&{self.mapping.filter}(|{alternatives}))"

    def by_key(self, key: str) -> str | None:
        """A filter for the entry of ``key``, or ``None`` when ``key`` cannot be one."""
        try:
            parsed = uuid.UUID(key)
        except ValueError:
            return None
        if self.mapping.ad:
            octets = "".join(f"\\{b:02x}" for b in parsed.bytes_le)
            return f"(objectGUID={octets})"
        return f"(entryUUID={parsed})"

    def by_keys(self, keys: list[str]) -> str:
        filters = [f for f in (self.by_key(k) for k in keys) if f is not None]
        return f"(&{self.mapping.filter}(|{''.join(filters)}))"

    def key_of(self, entry: Entry) -> str:
        value = entry.first(self.key_attribute)
        if isinstance(value, bytes):
            return str(uuid.UUID(bytes_le=value))
        if isinstance(value, str) and value.startswith("{"):
            return str(uuid.UUID(value))  # objectGUID as ldap3 formats it with AD's schema
        if value is None:
            raise PermanentError(
                f"entry {entry.dn} has no {self.key_attribute}; the bind DN must be able to read"
                " it (operational attribute)"
            )
        return str(value).lower()

    def under_base(self, dn: str) -> bool:
        normal = normal_dn(dn)
        return normal.endswith("," + self.base_normal)

    # Documents to attributes ----------------------------------------------------------------
    def values(self, document: ScimDocument) -> dict[str, list[str]]:
        """Each mapped attribute's values for ``document`` (``[]``: none)."""
        values: dict[str, list[str]] = {}
        for attribute_map in self.mapping.attributes:
            value = attribute_map.path.get(document)
            values[attribute_map.attribute] = _ldap_values(attribute_map.path.text, value)
        if self.mapping.ad and self.kind == "users" and AD_LOGIN.lower() not in _lower(values):
            login = self.name_of(document).split("@", 1)[0][:AD_LOGIN_MAX]
            values[AD_LOGIN] = [login]
        return values

    def active_values(self, active: bool, current: Entry | None = None) -> list[str]:
        """What the active attribute holds for ``active`` (AD: userAccountControl's bit)."""
        if self.mapping.ad:
            flags = AD_NORMAL_ACCOUNT
            if current is not None and current.first(self.mapping.active_attribute or ""):
                flags = int(current.first(self.mapping.active_attribute or ""))
            flags = flags & ~AD_DISABLED if active else flags | AD_DISABLED
            return [str(flags)]
        assert self.mapping.active is not None
        return [str(self.mapping.active.to_stored(active))]

    # Entries to documents -------------------------------------------------------------------
    def document(self, entry: Entry) -> dict[str, Any]:
        document: dict[str, Any] = {"schemas": [SCHEMAS[self.kind]]}
        for attribute_map in self.mapping.attributes:
            value = entry.first(attribute_map.attribute)
            if isinstance(value, bytes):
                value = value.decode("utf-8", "replace")
            if value is not None and value != "":
                attribute_map.path.set(document, value)
        if self.kind == "users":
            document["active"] = self.is_active(entry)
        return document

    def is_active(self, entry: Entry) -> bool:
        attribute = self.mapping.active_attribute
        if attribute is None:
            return True
        stored = entry.first(attribute)
        if self.mapping.ad:
            try:
                return not int(stored) & AD_DISABLED
            except (TypeError, ValueError):
                return False
        assert self.mapping.active is not None
        return self.mapping.active.from_stored(stored)

    def record(self, entry: Entry) -> LegacyRecord:
        # The directory keeps no SCIM id: records are matched by key (the applied state) or,
        # after an unknown outcome, by their name (find_created_user).
        return LegacyRecord(self.key_of(entry), None, self.document(entry))

    def holds(self, entry: Entry, values: Mapping[str, list[str]]) -> bool:
        """Whether ``entry`` holds exactly ``values`` (the name compared with its case): what
        an earlier delivery of the same create left."""
        for attribute, wanted in values.items():
            if sorted(str(v) for v in entry.values(attribute)) != sorted(wanted):
                return False
        return True


def _lower(values: Mapping[str, Any]) -> set[str]:
    return {name.lower() for name in values}


def _ldap_values(path: str, value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, bool):
        return ["TRUE" if value else "FALSE"]
    if isinstance(value, int | float | str):
        return [str(value)]
    raise PermanentError(
        f"{path} is a complex or multi-valued attribute; map one of its sub-attributes"
        f' (e.g. {path}.value or {path}[type eq "work"].value) to an LDAP attribute'
    )
