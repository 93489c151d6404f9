"""The LDAP mapping against the live directory: bind, bases, object classes and attributes.

Read from the directory's subschema (ldap3's schema information): every object class must
exist; every mapped attribute must exist and be allowed by the entry's object classes (their
MUST and MAY, with their superiors); every attribute the object classes require must be mapped
(``groupOfNames``' ``member`` is kept by the adapter itself, see ``docs/ldap.md``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ldap3 import SCHEMA

from scim_bridge.adapters.errors import TransientError
from scim_bridge.adapters.ldap.connection import BindRefused, Directory, Session, close
from scim_bridge.adapters.ldap.model import EntryMapping, LdapMapping
from scim_bridge.adapters.port import Deadline

# Attributes every entry has or the server keeps (never mapped, never required of a mapping).
_OPERATIONAL = {"objectclass", "entryuuid", "objectguid", "modifytimestamp", "createtimestamp"}
NUMBERS = {"uidnumber": "uidNumber", "gidnumber": "gidNumber"}
# What a domain controller fills in itself on every add (its schema marks them systemMustContain).
_AD_SERVER_SET = {"instancetype", "ntsecuritydescriptor", "objectcategory", "grouptype"}


@dataclass(frozen=True)
class Checked:
    """What the check learnt besides the problems."""

    problems: list[str]
    member_required: bool = False
    """Whether the group object classes require ``member_attribute`` (``groupOfNames``)."""
    numbered: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Per kind, the POSIX numbers (``uidNumber``, ``gidNumber``) its object classes require
    and the mapping does not map: the adapter gives each new entry the next free one."""


def check_directory(directory: Directory, mapping: LdapMapping, deadline: Deadline) -> Checked:
    """Every problem of ``mapping`` against the directory (empty: ready to run)."""
    try:
        connection = directory.open(deadline, "mapping check", get_info=SCHEMA)
    except BindRefused as exc:
        return Checked([f"ldap.bind_dn: {exc.message}"])
    except TransientError as exc:
        return Checked([f"ldap.url: {exc.message}"])
    try:
        schema = connection.server.schema
        session = Session(connection, deadline, "mapping check")
        problems: list[str] = []
        if schema is None:
            problems.append(
                "ldap.bind_dn: the directory's schema (subschema entry) cannot be read by the"
                " bind DN; allow it read access to cn=Subschema"
            )
            return Checked(problems)
        member_required = False
        numbered: dict[str, tuple[str, ...]] = {}
        for entries in (mapping.users, mapping.groups):
            if entries is None:
                continue
            required, numbers = _check_entries(
                session, schema, entries, problems, ad=mapping.users.ad
            )
            numbered[entries.kind] = numbers
            if entries.kind == "groups" and entries.member_attribute:
                member_required = entries.member_attribute.lower() in required
        return Checked(problems, member_required, numbered)
    finally:
        close(connection)


def _check_entries(
    session: Session, schema: Any, entries: EntryMapping, problems: list[str], *, ad: bool
) -> tuple[set[str], tuple[str, ...]]:
    kind = entries.kind
    if session.read(entries.base, ["objectClass"]) is None:
        problems.append(f"{kind}.base: {entries.base} does not exist in the directory")
    must: set[str] = set()
    may: set[str] = set()
    names = _names(schema)
    for name in entries.object_classes:
        if name not in schema.object_classes:
            problems.append(f"{kind}.object_classes: {name} is not in the directory's schema")
            continue
        _collect(schema, names, name, must, may, set())
    wanted: list[tuple[str, str]] = [(a.key, a.attribute) for a in entries.attributes]
    wanted.append((f"{kind}.rdn", entries.rdn))
    for key, attribute in (
        (f"{kind}.active.attribute", entries.active_attribute),
        (f"{kind}.password.attribute", entries.password_attribute),
        (f"{kind}.member_attribute", entries.member_attribute),
    ):
        if attribute:
            wanted.append((key, attribute))
    allowed = must | may
    for key, attribute in wanted:
        canonical = names.get(attribute.lower())
        if canonical is None:
            problems.append(f"{key}: attribute {attribute} is not in the directory's schema")
        elif allowed and canonical not in allowed and "extensibleobject" not in _lowered(entries):
            classes = ", ".join(entries.object_classes)
            problems.append(
                f"{key}: attribute {attribute} is not allowed by object classes {classes}"
                " (their MUST and MAY, with superiors)"
            )
    for key, attribute in (
        (f"{kind}.member_value", entries.member_value),
        (f"{kind}.changed", entries.changed),
    ):
        if attribute and names.get(attribute.lower()) is None:
            problems.append(f"{key}: attribute {attribute} is not in the directory's schema")
    covered = {names.get(a.lower(), a.lower()) for _, a in wanted}
    if entries.member_attribute:
        covered.add(names.get(entries.member_attribute.lower(), ""))
    missing = must - covered - _OPERATIONAL - (_AD_SERVER_SET if ad else set())
    numbers = tuple(NUMBERS[a] for a in sorted(missing) if a in NUMBERS)
    spelled = _spelled(schema)
    for attribute in sorted(missing - set(NUMBERS)):
        problems.append(
            f"{kind}.object_classes: {', '.join(entries.object_classes)} require"
            f" {spelled.get(attribute, attribute)}; map a SCIM attribute to it in"
            f" [{kind}.attributes]"
        )
    return must, numbers


def _spelled(schema: Any) -> dict[str, str]:
    """Canonical lower-case attribute names to the schema's spelling."""
    spelled: dict[str, str] = {}
    for info in schema.attribute_types.values():
        name = next(iter(info.name or []), info.oid)
        spelled[str(name).lower()] = str(name)
    return spelled


def _lowered(entries: EntryMapping) -> set[str]:
    return {c.lower() for c in entries.object_classes}


def _names(schema: Any) -> dict[str, str]:
    """Every name and OID of every attribute type, lower-cased, to its canonical lower name."""
    names: dict[str, str] = {}
    for info in schema.attribute_types.values():
        listed = list(info.name or [])
        canonical = (listed[0] if listed else info.oid).lower()
        for alias in [*listed, info.oid]:
            names[str(alias).lower()] = canonical
    return names


def _collect(
    schema: Any,
    canonical: dict[str, str],
    name: str,
    must: set[str],
    may: set[str],
    seen: set[str],
) -> None:
    if name.lower() in seen or name not in schema.object_classes:
        return
    seen.add(name.lower())
    info = schema.object_classes[name]
    must.update(canonical.get(a.lower(), a.lower()) for a in info.must_contain or [])
    may.update(canonical.get(a.lower(), a.lower()) for a in info.may_contain or [])
    for superior in info.superior or []:
        _collect(schema, canonical, superior, must, may, seen)
