"""The ``ldap`` adapter: users and groups as entries of a directory, driven by a mapping.

Keys are the entries' ``entryUUID`` (Active Directory: ``objectGUID``), which survive renames;
the directory keeps no SCIM id, so a create whose answer was lost is found again by its name
(the ``userName``/``displayName`` attribute) and recognised by holding exactly what the create
writes. A changed RDN value is a modify-DN, and the groups naming the old DN are rewritten
(OpenLDAP without the refint overlay does not). ``groupOfNames`` must have a member: a group
with no users lists its own DN, never a fake user (``docs/ldap.md``).

Options (the ``ldap`` entry point of ``scim_bridge.adapters``): ``mapping`` (the TOML file,
``SCIM_BRIDGE_LDAP_MAPPING``, required), ``connect_timeout_s`` (5.0) and ``pool_size`` (8).

Over 400 lines on purpose: it is the one class that implements the port for a directory, and
its helpers (the create found again, the modify-DN that rewrites memberships, the paged search,
the delta's overlap) are each shared by the user and the group methods; the connection pool,
the escaping, the mapping and the schema check already live in their own modules.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Self

from ldap3 import MODIFY_ADD, MODIFY_DELETE, MODIFY_REPLACE, Connection
from ldap3.core.exceptions import LDAPException

from scim_bridge.adapters.delta import parse_token
from scim_bridge.adapters.errors import ConflictError, PermanentError, TransientError
from scim_bridge.adapters.ldap.check import check_directory
from scim_bridge.adapters.ldap.connection import (
    ATTRIBUTE_OR_VALUE_EXISTS,
    ENTRY_ALREADY_EXISTS,
    NO_SUCH_ATTRIBUTE,
    NO_SUCH_OBJECT,
    Directory,
    Entry,
    Session,
    close,
)
from scim_bridge.adapters.ldap.entries import Entries, normal_dn, unescape_value
from scim_bridge.adapters.ldap.model import LdapMapping, load_mapping
from scim_bridge.adapters.mapping import MappingProblems, capabilities_for
from scim_bridge.adapters.port import (
    Capabilities,
    Changes,
    Deadline,
    LegacyAdapter,
    LegacyRecord,
    Page,
    ScimDocument,
)

_CHUNK = 100  # values per (|(...)...) filter
_SERVER_PAGE = 500  # entries per Simple Paged Results page
_HELD_LISTINGS = 8  # paged searches kept open between list calls, per adapter
_EPOCH = "19700101000000Z"
FIRST_NUMBER = 10000  # the first uidNumber/gidNumber the adapter gives (above system ids)


def capabilities_of(mapping: LdapMapping) -> Capabilities:
    """The Okta provisioning functions a mapping supports (``/ServiceProviderConfigs``)."""
    users = mapping.users
    return capabilities_for(
        deactivation=users.active_attribute is not None,
        deactivation_deletes=False,
        password=users.password_attribute is not None,
        group_push=mapping.groups is not None and mapping.groups.member_attribute is not None,
    )


@dataclass
class _Listing:
    """A paged search held open between two ``list_*`` calls (its cookie is the connection's)."""

    connection: Connection
    consumed: int = 0
    cookie: bytes | None = None
    done: bool = False
    buffer: deque[Entry] = field(default_factory=deque)


class LdapAdapter(LegacyAdapter):
    """Users, groups and memberships in the directory an :class:`LdapMapping` describes."""

    def __init__(
        self, mapping: LdapMapping, *, connect_timeout_s: float = 5.0, pool_size: int = 8
    ) -> None:
        self.mapping = mapping
        self.directory = Directory(
            mapping.directory, connect_timeout_s=connect_timeout_s, pool_size=pool_size
        )
        self.users = Entries(mapping.users)
        self._groups = Entries(mapping.groups) if mapping.groups is not None else None
        self.capabilities = capabilities_of(mapping)
        self._member_required = False
        self._numbered: dict[str, tuple[str, ...]] = {}
        self._ready = False
        self._lock = threading.Lock()
        self._listings: OrderedDict[tuple[str, str], _Listing] = OrderedDict()

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> Self:
        """Entry-point factory: reads the mapping file (no connection is opened here)."""
        path = options.get("mapping")
        if not path:
            raise MappingProblems(
                "SCIM_BRIDGE_LDAP_MAPPING", ["name the LDAP mapping file (docs/ldap.md)"]
            )
        return cls(
            load_mapping(str(path)),
            connect_timeout_s=float(options.get("connect_timeout_s", 5.0)),
            pool_size=int(options.get("pool_size", 8)),
        )

    def close(self) -> None:
        with self._lock:
            held, self._listings = list(self._listings.values()), OrderedDict()
        for listing in held:
            close(listing.connection)
        self.directory.close()

    # Set-up -----------------------------------------------------------------------------------
    def check(self, deadline: Deadline) -> list[str]:
        """Every problem of the mapping against the live directory (empty: ready to run)."""
        checked = check_directory(self.directory, self.mapping, deadline)
        if not checked.problems:
            self._member_required = checked.member_required
            self._numbered = checked.numbered
        return checked.problems

    def _prepare(self, deadline: Deadline, what: str) -> None:
        """Check the mapping against the directory once, before the first call."""
        deadline.check(what)
        if self._ready:
            return
        with self._lock:
            if self._ready:
                return
            problems = self.check(deadline)
            if problems:
                if all(p.startswith(("ldap.url:", "ldap.bind_dn:")) for p in problems):
                    raise TransientError("; ".join(problems))
                raise PermanentError(str(MappingProblems(self.mapping.source, problems)))
            self._ready = True

    def _run(self, deadline: Deadline, what: str, call: Any) -> Any:
        self._prepare(deadline, what)
        return self.directory.run(deadline, what, call)

    @property
    def groups(self) -> Entries:
        if self._groups is None:
            raise PermanentError("the LDAP mapping has no [groups]: group push is not supported")
        return self._groups

    # Users ------------------------------------------------------------------------------------
    def create_user(
        self, resource_id: str, user: ScimDocument, *, password: str | None, deadline: Deadline
    ) -> str:
        entries = self.users
        values = entries.values(user)
        attributes: dict[str, Any] = {k: v for k, v in values.items() if v}
        if entries.mapping.active_attribute is not None:
            active = bool(user.get("active", True))
            attributes[entries.mapping.active_attribute] = entries.active_values(active)
        if password is not None and entries.mapping.password_attribute is not None:
            attributes[entries.mapping.password_attribute] = [self._password_value(password)]
        return str(
            self._run(
                deadline,
                "create_user",
                lambda s: self._create(s, entries, user, values, attributes),
            )
        )

    def update_user(
        self, key: str, user: ScimDocument, *, previous: ScimDocument, deadline: Deadline
    ) -> None:
        self._run(deadline, "update_user", lambda s: self._update(s, self.users, key, user))

    def deactivate_user(self, key: str, *, deadline: Deadline) -> None:
        self._set_active(key, False, deadline, "deactivate_user")

    def reactivate_user(self, key: str, *, deadline: Deadline) -> None:
        self._set_active(key, True, deadline, "reactivate_user")

    def set_password(self, key: str, password: str, *, deadline: Deadline) -> None:
        attribute = self.users.mapping.password_attribute
        if attribute is None:
            raise PermanentError(
                "the LDAP mapping has no [users.password]: the directory keeps no passwords"
            )
        value = self._password_value(password)  # hashed before any request: never logged

        def call(session: Session) -> None:
            entry = self._existing(session, self.users, key, [])
            self._modify(session, entry.dn, {attribute: [(MODIFY_REPLACE, [value])]}, key)

        self._run(deadline, "set_password", call)

    def delete_user(self, key: str, *, deadline: Deadline) -> None:
        def call(session: Session) -> None:
            entry = self._find(session, self.users, key)
            if entry is None:
                return
            # Memberships first: a retry after a failure here still knows the entry's DN.
            self._leave_groups(session, entry)
            session.delete(entry.dn)

        self._run(deadline, "delete_user", call)

    def get_user(self, key: str, *, deadline: Deadline) -> LegacyRecord | None:
        return self._get(self.users, key, deadline, "get_user")

    def find_user(self, resource_id: str, *, deadline: Deadline) -> str | None:
        deadline.check("find_user")
        return None  # the directory keeps no SCIM id; find_created_user looks by name

    def find_created_user(
        self, resource_id: str, user: ScimDocument, *, deadline: Deadline
    ) -> str | None:
        return self._find_created(self.users, user, deadline, "find_user")

    def list_users(self, *, cursor: str | None, limit: int, deadline: Deadline) -> Page:
        return self._list(self.users, cursor, limit, deadline, "list_users")

    # Groups -----------------------------------------------------------------------------------
    def create_group(self, resource_id: str, group: ScimDocument, *, deadline: Deadline) -> str:
        entries = self.groups
        values = entries.values(group)
        attributes: dict[str, Any] = {k: v for k, v in values.items() if v}

        def call(session: Session) -> str:
            if self._member_required:
                assert entries.mapping.member_attribute is not None
                # groupOfNames must have a member: a new group lists its own DN.
                attributes[entries.mapping.member_attribute] = [entries.dn_for(group)]
            return self._create(session, entries, group, values, attributes)

        return str(self._run(deadline, "create_group", call))

    def update_group(
        self, key: str, group: ScimDocument, *, previous: ScimDocument, deadline: Deadline
    ) -> None:
        self._run(deadline, "update_group", lambda s: self._update(s, self.groups, key, group))

    def add_members(self, key: str, member_keys: Sequence[str], *, deadline: Deadline) -> None:
        entries = self.groups
        attribute = self._member_attribute()

        def call(session: Session) -> None:
            group = self._existing(session, entries, key, [attribute])
            found = self._users_by_keys(session, list(dict.fromkeys(member_keys)))
            missing = [k for k in member_keys if k not in found]
            if missing:
                raise PermanentError(
                    f"users {', '.join(missing)} do not exist in the directory"
                    f" (under {self.users.mapping.base})"
                )
            have = group.values(attribute)
            held = {self._member_form(v) for v in have}
            wanted = [self._member_value_of(found[k]) for k in dict.fromkeys(member_keys)]
            new = [v for v in dict.fromkeys(wanted) if self._member_form(v) not in held]
            if not new:
                return
            changes: list[tuple[str, list[Any]]] = [(MODIFY_ADD, new)]
            placeholders = [v for v in have if self._is_placeholder(group, v)]
            if placeholders:
                changes.append((MODIFY_DELETE, placeholders))
            self._modify(session, group.dn, {attribute: changes}, key)

        self._run(deadline, "add_members", call)

    def remove_members(self, key: str, member_keys: Sequence[str], *, deadline: Deadline) -> None:
        entries = self.groups
        attribute = self._member_attribute()

        def call(session: Session) -> None:
            group = self._find(session, entries, key, [attribute])
            if group is None:
                return
            found = self._users_by_keys(session, list(dict.fromkeys(member_keys)))
            gone = {self._member_form(self._member_value_of(e)) for e in found.values()}
            self._drop_members(session, group, attribute, gone)

        self._run(deadline, "remove_members", call)

    def delete_group(self, key: str, *, deadline: Deadline) -> None:
        def call(session: Session) -> None:
            entry = self._find(session, self.groups, key, [])
            if entry is not None:
                session.delete(entry.dn)

        self._run(deadline, "delete_group", call)

    def get_group(self, key: str, *, deadline: Deadline) -> LegacyRecord | None:
        return self._get(self.groups, key, deadline, "get_group")

    def find_group(self, resource_id: str, *, deadline: Deadline) -> str | None:
        deadline.check("find_group")
        return None  # the directory keeps no SCIM id; find_created_group looks by name

    def find_created_group(
        self, resource_id: str, group: ScimDocument, *, deadline: Deadline
    ) -> str | None:
        return self._find_created(self.groups, group, deadline, "find_group")

    def list_groups(self, *, cursor: str | None, limit: int, deadline: Deadline) -> Page:
        return self._list(self.groups, cursor, limit, deadline, "list_groups")

    # Delta import -----------------------------------------------------------------------------
    def changes_since(self, token: str | None, *, limit: int, deadline: Deadline) -> Changes:
        """Entries whose ``changed`` attribute (``modifyTimestamp``) is at or after the token.

        Generalized time has whole seconds: the search asks ``>=`` the token's second (entries
        changed later in that second are not missed), sorts by (time, key), and drops the
        entries already returned at that second whose document has not changed since (the
        token keeps a digest of each), so the overlap returns nothing twice.
        """
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        changed = self.users.mapping.changed
        if changed is None:
            raise PermanentError("users.changed: the LDAP mapping names no change attribute")
        kinds = [("u", self.users)] + ([("g", self._groups)] if self._groups else [])
        positions = parse_token(token)

        def call(session: Session) -> Changes:
            found: dict[str, list[LegacyRecord]] = {"u": [], "g": []}
            new: dict[str, Any] = {}
            more = False
            for kind, entries in kinds:
                assert entries is not None
                if token is None:
                    stamps = [
                        _second(e.first(changed))
                        for e in self._scan(session, entries, entries.everything(), [changed])
                    ]
                    new[kind] = [max(stamps, default=_EPOCH), {}]
                    continue
                at, seen = positions.get(kind, [_EPOCH, {}])
                search = f"(&{entries.everything()}({changed}>={at}))"
                rows: list[tuple[str, LegacyRecord]] = []
                matched = self._scan(session, entries, search, entries.read_attributes)
                records = self._records(session, entries, matched)
                for entry, record in zip(matched, records, strict=True):
                    stamp = _second(entry.first(changed))
                    if stamp == at and seen.get(record.key) == _digest(record):
                        continue
                    rows.append((stamp, record))
                rows.sort(key=lambda row: (row[0], row[1].key))
                page = rows[:limit]
                more = more or len(rows) > limit
                found[kind] = [record for _, record in page]
                if page:
                    last = page[-1][0]
                    kept = dict(seen) if last == at else {}
                    kept.update({r.key: _digest(r) for s, r in page if s == last})
                    new[kind] = [last, kept]
                else:
                    new[kind] = [at, seen]
            return Changes(found["u"], found["g"], json.dumps(new, sort_keys=True), more)

        result: Changes = self._run(deadline, "changes_since", call)
        return result

    # Shared steps -----------------------------------------------------------------------------
    def _create(
        self,
        session: Session,
        entries: Entries,
        document: ScimDocument,
        values: dict[str, list[str]],
        attributes: dict[str, Any],
    ) -> str:
        """Add the entry unless an earlier delivery of this create did; its key."""
        name = entries.name_of(document)
        dn = entries.dn_for(document)
        holders, _ = session.search(
            entries.mapping.base, entries.by_name(name), entries.read_attributes
        )
        for holder in holders:
            if entries.holds(holder, values):
                return entries.key_of(holder)
        if holders:
            raise self._conflict(entries, name, holders[0].dn)
        self._scrub_stale_memberships(session, entries, dn, values)
        numbers = self._numbered.get(entries.kind, ())
        for attribute in numbers:
            attributes[attribute] = [self._next_number(session, entries, attribute)]
        if session.add(dn, entries.mapping.object_classes, attributes) == ENTRY_ALREADY_EXISTS:
            existing = session.read(dn, entries.read_attributes)
            if existing is not None and entries.holds(existing, values):
                return entries.key_of(existing)
            if entries.rdn_map is entries.name_map:
                raise self._conflict(entries, name, dn)
            raise ConflictError(
                f"entry {dn} already exists in the directory: another {entries.noun} has the"
                f" same {entries.rdn_map.path.text}, which names entries ({entries.mapping.rdn});"
                f" change it or remove that {entries.noun} first"
            )
        created = session.read(dn, [entries.key_attribute])
        if created is None:
            raise PermanentError(f"entry {dn} cannot be read after it was added")
        key = entries.key_of(created)
        for attribute in numbers:
            self._settle_number(session, entries, key, dn, attribute, attributes[attribute][0])
        return key

    def _scrub_stale_memberships(
        self, session: Session, entries: Entries, dn: str, values: dict[str, list[str]]
    ) -> None:
        """A new user starts in no group: member values naming it before it exists were left
        by a deletion or rename outside scim-bridge, and must not make it a member."""
        groups = self._groups
        if entries.kind != "users" or groups is None or not groups.mapping.member_attribute:
            return
        source = groups.mapping.member_value
        if source is None:
            value = dn
        else:
            held = next((v for k, v in values.items() if k.lower() == source.lower()), [])
            if not held:
                return
            value = held[0]
        attribute = self._member_attribute()
        for group in self._groups_naming(session, value):
            self._drop_members(session, group, attribute, {self._member_form(value)})

    def _next_number(self, session: Session, entries: Entries, attribute: str) -> str:
        """One more than the highest ``attribute`` (uidNumber, gidNumber) under the base."""
        held = self._scan(session, entries, f"({attribute}=*)", [attribute])
        numbers = [int(v) for e in held for v in e.values(attribute) if str(v).isdigit()]
        return str(max(numbers, default=FIRST_NUMBER - 1) + 1)

    def _settle_number(
        self, session: Session, entries: Entries, key: str, dn: str, attribute: str, value: str
    ) -> None:
        """Two creates at once may take one number: the entry with the lower key keeps it,
        the other takes the next free one (each creator checks its own entry)."""
        for _ in range(10):
            search = f"({attribute}={_filter(value)})"
            holders = sorted(entries.key_of(e) for e in self._scan(session, entries, search, []))
            if len(holders) < 2 or holders[0] == key:
                return
            value = self._next_number(session, entries, attribute)
            self._modify(session, dn, {attribute: [(MODIFY_REPLACE, [value])]}, key)
        raise TransientError(f"{session.what}: no free {attribute} under {entries.mapping.base}")

    def _update(self, session: Session, entries: Entries, key: str, document: ScimDocument) -> None:
        values = entries.values(document)
        name = entries.name_of(document)
        current = self._existing(session, entries, key, entries.read_attributes)
        holders, _ = session.search(
            entries.mapping.base, entries.by_name(name), [entries.key_attribute]
        )
        others = [h for h in holders if entries.key_of(h) != key]
        if others:
            raise self._conflict(entries, name, others[0].dn)
        dn = current.dn
        rdn = entries.mapping.rdn.lower()
        new_value = entries.rdn_value(document)
        renamed = new_value not in current.values(entries.mapping.rdn)
        new_dn = f"{entries.rdn_of(new_value)},{_parent(dn)}" if renamed else dn
        # Groups naming the user by DN (or by memberUid's value) name the new one before the
        # rename and lose the old one after it: a failure in between leaves the user a member.
        moves = self._member_moves(entries, current, values, new_dn)
        named = {old: self._groups_naming(session, old) for old, _ in moves}
        for old, new in moves:
            for group in named[old]:
                self._add_value(session, group, new)
        if renamed:
            dn = self._rename(session, entries, current, new_value, name)
        changes: dict[str, list[tuple[str, list[Any]]]] = {}
        for attribute, wanted in values.items():
            if attribute.lower() == rdn:
                continue  # the modify-DN set it
            if sorted(str(v) for v in current.values(attribute)) != sorted(wanted):
                changes[attribute] = [(MODIFY_REPLACE, wanted)]
        if changes:
            self._modify(session, dn, changes, key)
        for old, _ in moves:
            for group in named[old]:
                self._drop_value(session, group, old)

    def _member_moves(
        self, entries: Entries, current: Entry, values: dict[str, list[str]], new_dn: str
    ) -> list[tuple[str, str]]:
        """(old, new) member values of a user whose DN or ``member_value`` changes."""
        groups = self._groups
        if entries.kind != "users" or groups is None or not groups.mapping.member_attribute:
            return []
        source = groups.mapping.member_value
        if source is None:
            return [(current.dn, new_dn)] if normal_dn(new_dn) != normal_dn(current.dn) else []
        old = current.first(source)
        new = next((v for k, v in values.items() if k.lower() == source.lower()), None)
        if old is None or not new or new[0] == str(old):
            return []
        return [(str(old), new[0])]

    def _groups_naming(self, session: Session, value: str) -> list[Entry]:
        """The groups whose member attribute holds ``value``."""
        groups = self.groups
        attribute = self._member_attribute()
        search = f"(&{groups.everything()}({attribute}={_filter(value)}))"
        return self._scan(session, groups, search, [attribute])

    def _add_value(self, session: Session, group: Entry, value: str) -> None:
        attribute = self._member_attribute()
        code = session.modify(group.dn, {attribute: [(MODIFY_ADD, [value])]})
        if code not in (0, NO_SUCH_OBJECT, ATTRIBUTE_OR_VALUE_EXISTS):
            raise TransientError(f"{session.what}: {group.dn} changed meanwhile")

    def _drop_value(self, session: Session, group: Entry, value: str) -> None:
        attribute = self._member_attribute()
        stored = [
            v for v in group.values(attribute) if self._member_form(v) == self._member_form(value)
        ]
        if stored:
            code = session.modify(group.dn, {attribute: [(MODIFY_DELETE, stored)]})
            if code not in (0, NO_SUCH_OBJECT, NO_SUCH_ATTRIBUTE):
                raise TransientError(f"{session.what}: {group.dn} changed meanwhile")

    def _rename(
        self, session: Session, entries: Entries, current: Entry, new_value: str, name: str
    ) -> str:
        """Modify-DN to the new RDN value; a group's own DN (its placeholder) follows."""
        new_rdn = entries.rdn_of(new_value)
        if session.rename(current.dn, new_rdn) == ENTRY_ALREADY_EXISTS:
            raise self._conflict(entries, name, f"{new_rdn},{_parent(current.dn)}")
        new_dn = f"{new_rdn},{_parent(current.dn)}"
        if entries.kind == "groups" and entries.mapping.member_attribute:
            attribute = entries.mapping.member_attribute
            if any(normal_dn(v) == normal_dn(current.dn) for v in current.values(attribute)):
                renamed = Entry(new_dn, current.attributes)
                self._replace_member(session, renamed, attribute, current.dn, new_dn)
        return new_dn

    def _replace_member(
        self, session: Session, group: Entry, attribute: str, old: str, new: str
    ) -> None:
        stored = [v for v in group.values(attribute) if normal_dn(v) == normal_dn(old)]
        changes: list[tuple[str, list[Any]]] = [(MODIFY_ADD, [new])]
        if stored:
            changes.append((MODIFY_DELETE, stored))
        code = session.modify(group.dn, {attribute: changes})
        if code not in (0, NO_SUCH_OBJECT, ATTRIBUTE_OR_VALUE_EXISTS):
            raise PermanentError(f"{session.what}: cannot rewrite the members of {group.dn}")

    def _set_active(self, key: str, active: bool, deadline: Deadline, what: str) -> None:
        entries = self.users
        attribute = entries.mapping.active_attribute
        if attribute is None:
            raise PermanentError(
                "the LDAP mapping has no [users.active]: the directory cannot"
                f" {'reactivate' if active else 'deactivate'} users"
            )

        def call(session: Session) -> None:
            entry = self._existing(session, entries, key, [attribute])
            wanted = entries.active_values(active, entry)
            if [str(v) for v in entry.values(attribute)] != wanted:
                self._modify(session, entry.dn, {attribute: [(MODIFY_REPLACE, wanted)]}, key)

        self._run(deadline, what, call)

    def _password_value(self, password: str) -> Any:
        users = self.users.mapping
        if users.ad:
            # unicodePwd: the password in double quotes, UTF-16LE (over TLS; the mapping checks).
            return f'"{password}"'.encode("utf-16-le")
        if users.password_scheme == "server":  # noqa: S105 - a scheme name
            return password  # the directory hashes it (over TLS; the mapping checks)
        from passlib.hash import ldap_salted_sha1

        return str(ldap_salted_sha1.hash(password))

    def _leave_groups(self, session: Session, user: Entry) -> None:
        groups = self._groups
        if groups is None or groups.mapping.member_attribute is None:
            return
        attribute = groups.mapping.member_attribute
        value = self._member_value_of(user)
        search = f"(&{groups.everything()}({attribute}={_filter(value)}))"
        for group in self._scan(session, groups, search, [attribute]):
            self._drop_members(session, group, attribute, {self._member_form(value)})

    def _drop_members(self, session: Session, group: Entry, attribute: str, gone: set[str]) -> None:
        have = group.values(attribute)
        removed = [v for v in have if self._member_form(v) in gone]
        if not removed:
            return
        changes: list[tuple[str, list[Any]]] = [(MODIFY_DELETE, removed)]
        left = [v for v in have if v not in removed and not self._is_placeholder(group, v)]
        placeholder = any(self._is_placeholder(group, v) for v in have)
        if self._member_required and not left and not placeholder:
            # The last user left a groupOfNames: its own DN keeps it valid (docs/ldap.md).
            changes.insert(0, (MODIFY_ADD, [group.dn]))
        self._modify(session, group.dn, {attribute: changes}, group.dn)

    def _modify(
        self, session: Session, dn: str, changes: dict[str, list[tuple[str, list[Any]]]], key: str
    ) -> None:
        code = session.modify(dn, changes)
        if code == NO_SUCH_OBJECT:
            raise PermanentError(f"entry {key} ({dn}) does not exist in the directory")
        if code != 0:
            # attributeOrValueExists / noSuchAttribute: another change raced this one between
            # the read and the modify; the reconciler retries from a fresh read.
            raise TransientError(f"{session.what}: {dn} changed meanwhile")

    # Reading ------------------------------------------------------------------------------------
    def _find(
        self, session: Session, entries: Entries, key: str, attributes: list[str] | None = None
    ) -> Entry | None:
        search = entries.by_key(key)
        if search is None:
            return None
        wanted = entries.read_attributes if attributes is None else attributes
        found, _ = session.search(
            entries.mapping.base,
            f"(&{entries.everything()}{search})",
            [entries.key_attribute, entries.mapping.rdn, *wanted],
            missing_ok=True,
        )
        return found[0] if found else None

    def _existing(
        self, session: Session, entries: Entries, key: str, attributes: list[str]
    ) -> Entry:
        entry = self._find(session, entries, key, attributes)
        if entry is None:
            raise PermanentError(f"{entries.noun} {key} does not exist in the directory")
        return entry

    def _find_created(
        self, entries: Entries, document: ScimDocument, deadline: Deadline, what: str
    ) -> str | None:
        name = entries.name_map.path.get(document)
        if not isinstance(name, str) or not name:
            deadline.check(what)
            return None

        def call(session: Session) -> str | None:
            found, _ = session.search(
                entries.mapping.base, entries.by_name(name), [entries.key_attribute]
            )
            return entries.key_of(found[0]) if len(found) == 1 else None

        result: str | None = self._run(deadline, what, call)
        return result

    def _scan(
        self, session: Session, entries: Entries, search: str, attributes: list[str]
    ) -> list[Entry]:
        """Every entry under the base matching ``search``, page by page (Simple Paged Results:
        directories cap unpaged searches)."""
        found: list[Entry] = []
        cookie: bytes | None = None
        while True:
            page, cookie = session.search(
                entries.mapping.base,
                search,
                list(dict.fromkeys([entries.key_attribute, *attributes])),
                page_size=_SERVER_PAGE,
                cookie=cookie,
                missing_ok=True,
            )
            found.extend(page)
            if not cookie:
                return found

    def _users_by_keys(self, session: Session, keys: list[str]) -> dict[str, Entry]:
        users = self.users
        attributes = [users.key_attribute]
        if self._groups is not None and self._groups.mapping.member_value:
            attributes.append(self._groups.mapping.member_value)
        found: dict[str, Entry] = {}
        valid = [k for k in keys if users.by_key(k) is not None]
        for start in range(0, len(valid), _CHUNK):
            for entry in self._scan(
                session, users, users.by_keys(valid[start : start + _CHUNK]), attributes
            ):
                found[users.key_of(entry)] = entry
        return found

    def _get(
        self, entries: Entries, key: str, deadline: Deadline, what: str
    ) -> LegacyRecord | None:
        def call(session: Session) -> LegacyRecord | None:
            entry = self._find(session, entries, key)
            return None if entry is None else self._records(session, entries, [entry])[0]

        result: LegacyRecord | None = self._run(deadline, what, call)
        return result

    def _records(
        self, session: Session, entries: Entries, found: list[Entry]
    ) -> list[LegacyRecord]:
        if entries.kind == "groups":
            return self._group_records(session, found)
        return [entries.record(entry) for entry in found]

    def _group_records(self, session: Session, groups: list[Entry]) -> list[LegacyRecord]:
        """Group records with ``members`` as the users' keys (values that name no user under
        the users' base, like the own-DN placeholder, are left out)."""
        entries = self.groups
        attribute = entries.mapping.member_attribute
        records = [entries.record(group) for group in groups]
        if attribute is None:
            for record in records:
                record.document["members"] = []
            return records
        users = self.users
        by_value = entries.mapping.member_value
        values = {self._member_form(v) for g in groups for v in g.values(attribute)}
        keys: dict[str, str] = {}
        if by_value is not None:
            lookup = sorted(values)
            source = by_value
        else:
            # Member DNs under the users' base, found by their RDN value in a few searches.
            lookup = sorted({_first_value(v) for v in values if users.under_base(v)} - {""})
            source = users.mapping.rdn
        for start in range(0, len(lookup), _CHUNK):
            chunk = lookup[start : start + _CHUNK]
            search = users.by_values(source, chunk)
            for entry in self._scan(session, users, search, [source]):
                form = self._member_form(self._member_value_of(entry))
                keys[form] = users.key_of(entry)
        for group, record in zip(groups, records, strict=True):
            members = [keys.get(self._member_form(v)) for v in group.values(attribute)]
            record.document["members"] = sorted({m for m in members if m is not None})
        return records

    def _member_attribute(self) -> str:
        attribute = self.groups.mapping.member_attribute
        if attribute is None:
            raise PermanentError("groups.member_attribute: the LDAP mapping keeps no memberships")
        return attribute

    def _member_value_of(self, user: Entry) -> str:
        """What a group's member attribute holds for ``user``: its DN, or its ``member_value``."""
        source = self.groups.mapping.member_value
        if source is None:
            return user.dn
        value = user.first(source)
        if value is None:
            raise PermanentError(f"user {user.dn} has no {source}, which groups list members by")
        return str(value)

    def _member_form(self, value: Any) -> str:
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
        return text if self.groups.mapping.member_value else normal_dn(text)

    def _is_placeholder(self, group: Entry, value: Any) -> bool:
        return self.groups.mapping.member_value is None and normal_dn(str(value)) == normal_dn(
            group.dn
        )

    def _conflict(self, entries: Entries, name: str, holder_dn: str) -> ConflictError:
        noun = "userName" if entries.kind == "users" else "displayName"
        return ConflictError(
            f"{noun} {name!r} is already used by entry {holder_dn} of the directory;"
            f" rename or remove that {entries.noun} first"
        )

    # Listing ------------------------------------------------------------------------------------
    def _list(
        self, entries: Entries, cursor: str | None, limit: int, deadline: Deadline, what: str
    ) -> Page:
        """One page, from a paged search held open since the previous page when this process
        has it, else from a new one that skips what the cursor says was consumed."""
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        self._prepare(deadline, what)
        skip = _cursor_count(cursor)
        with self._lock:
            listing = self._listings.pop((entries.kind, cursor), None) if cursor else None
        session_deadline = deadline
        try:
            if listing is None:
                listing = _Listing(self.directory.open(deadline, what))
            try:
                found = self._fill(
                    Session(listing.connection, session_deadline, what),
                    entries,
                    listing,
                    limit,
                    skip,
                )
            except LDAPException:
                # The held connection died (the directory restarted): page again from the start.
                close(listing.connection)
                listing = _Listing(self.directory.open(deadline, what))
                found = self._fill(
                    Session(listing.connection, deadline, what), entries, listing, limit, skip
                )
            if entries.kind == "groups":
                records = self.directory.run(
                    deadline, what, lambda s: self._group_records(s, found)
                )
            else:
                records = [entries.record(entry) for entry in found]
        except LDAPException as exc:
            if listing is not None:
                close(listing.connection)
            raise TransientError(f"{what}: the connection to the directory failed: {exc}") from None
        except BaseException:
            if listing is not None:
                close(listing.connection)
            raise
        if not listing.buffer:
            self.directory.give_back(listing.connection)
            return Page(records, None)
        next_cursor = f"{listing.consumed}:{records[-1].key}"
        with self._lock:
            self._listings[(entries.kind, next_cursor)] = listing
            evicted = []
            while len(self._listings) > _HELD_LISTINGS:
                evicted.append(self._listings.popitem(last=False)[1])
        for old in evicted:
            close(old.connection)
        return Page(records, next_cursor)

    def _fill(
        self, session: Session, entries: Entries, listing: _Listing, limit: int, skip: int
    ) -> list[Entry]:
        found: list[Entry] = []
        while True:
            while listing.buffer and len(found) < limit:
                entry = listing.buffer.popleft()
                listing.consumed += 1
                if listing.consumed > skip:
                    found.append(entry)
            if (len(found) >= limit and listing.buffer) or listing.done:
                return found
            page, listing.cookie = session.search(
                entries.mapping.base,
                entries.everything(),
                entries.read_attributes,
                page_size=max(_SERVER_PAGE, min(limit, 5000)),
                cookie=listing.cookie,
                missing_ok=True,
            )
            listing.buffer.extend(page)
            listing.done = not listing.cookie


def _cursor_count(cursor: str | None) -> int:
    if cursor is None:
        return 0
    count, sep, _ = cursor.partition(":")
    if not sep or not count.isdigit():
        raise PermanentError(f"invalid page cursor {cursor!r}")
    return int(count)


def _parent(dn: str) -> str:
    """The DN above ``dn`` (the first RDN removed, escapes respected)."""
    from ldap3.utils.dn import parse_dn

    parts = parse_dn(dn)
    return "".join(f"{t}={v}{s}" for t, v, s in parts[1:])


def _first_value(dn: str) -> str:
    """The (unescaped) value of the first RDN of ``dn``."""
    from ldap3.utils.dn import parse_dn

    try:
        return unescape_value(parse_dn(dn)[0][1])
    except Exception:
        return ""


def _filter(value: str) -> str:
    from scim_bridge.adapters.ldap.entries import filter_value

    return filter_value(value)


def _second(stamp: Any) -> str:
    """A generalized time (``20240501093000Z``, ``...00.0Z``) to its whole second, as text."""
    text = stamp.decode() if isinstance(stamp, bytes) else str(stamp or "")
    digits = "".join(c for c in text[:14] if c.isdigit())
    return f"{digits}Z" if len(digits) == 14 else _EPOCH


def _digest(record: LegacyRecord) -> str:
    encoded = json.dumps(record.document, sort_keys=True, default=str).encode()
    return hashlib.sha256(encoded).hexdigest()[:16]
