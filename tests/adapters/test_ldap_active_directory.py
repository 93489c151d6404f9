"""The Active Directory shape (``[users.active] ad = true``), without an Active Directory.

The adapter runs against ldap3's MOCK_SYNC strategy with ldap3's recorded Windows Server 2012 R2
schema (its offline ``OFFLINE_AD_2012_R2`` schema and server info), which holds the entries in
memory and answers the requests as a server would; the directory's own part, assigning each new
entry an ``objectGUID``, is played by the test. Every request the adapter sends is recorded
(operation and request dict), and the tests check the exchanges Active Directory expects:
``userAccountControl`` with NORMAL_ACCOUNT and the ACCOUNTDISABLE bit (other bits kept),
``unicodePwd`` as the quoted password in UTF-16LE, ``sAMAccountName`` from the userName, keys as
``objectGUID`` (searched as escaped octets), and groups without a placeholder member (AD's
``group`` may be empty).
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from ldap3 import MOCK_SYNC, OFFLINE_AD_2012_R2, Connection, Server

from scim_bridge.adapters.contract import AdapterContract, budget, group_document, user_document
from scim_bridge.adapters.ldap import LdapAdapter, load_mapping
from scim_bridge.adapters.ldap.connection import Directory
from scim_bridge.adapters.port import Capability, Deadline

BIND_DN = "CN=svc-scim,OU=Service Accounts,DC=corp,DC=example"
BIND_PASSWORD = "svc-secret"
PEOPLE = "OU=People,DC=corp,DC=example"
GROUPS = "OU=Groups,DC=corp,DC=example"

AD_MAPPING = f"""\
[ldap]
url = "ldaps://dc1.corp.example"
bind_dn = "{BIND_DN}"
bind_password = "{BIND_PASSWORD}"

[users]
base = "{PEOPLE}"
object_classes = ["top", "person", "organizationalPerson", "user"]
rdn = "cn"
filter = "(objectClass=user)"
[users.attributes]
userName = "userPrincipalName"
"name.givenName" = "givenName"
"name.familyName" = "sn"
displayName = "cn"
"emails[type eq \\"work\\"].value" = "mail"
[users.active]
ad = true
[users.password]
attribute = "unicodePwd"

[groups]
base = "{GROUPS}"
object_classes = ["top", "group"]
rdn = "cn"
member_attribute = "member"
[groups.attributes]
displayName = "cn"
description = "description"
"""


class MockActiveDirectory(Directory):
    """Connections to one in-memory directory with AD's schema; records every request."""

    def __init__(self, settings: Any) -> None:
        super().__init__(settings)
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.mock_server = Server("dc1.corp.example", get_info=OFFLINE_AD_2012_R2)
        seed = Connection(self.mock_server, client_strategy=MOCK_SYNC)
        seed.strategy.add_entry(BIND_DN, {"objectClass": ["user"], "userPassword": BIND_PASSWORD})
        for dn in (PEOPLE, GROUPS):
            seed.strategy.add_entry(dn, {"objectClass": ["organizationalUnit"]})

    def open(self, deadline: Deadline, what: str, *, get_info: str = "NO_INFO") -> Connection:
        deadline.check(what)
        connection = Connection(
            self.mock_server,
            user=self.settings.bind_dn,
            password=self.settings.password(),
            client_strategy=MOCK_SYNC,
            raise_exceptions=False,
        )
        strategy = connection.strategy
        # Connection.send is the strategy's send, bound when the connection was made.
        send, add_entry = connection.send, strategy.add_entry

        def recorded_send(message_type: str, request: Any, controls: Any = None) -> Any:
            sent = send(message_type, request, controls)
            self.requests.append((message_type, connection.request))  # the decoded request
            return sent

        def add_with_guid(dn: str, attributes: dict[str, Any], validate: bool = True) -> Any:
            # What Active Directory does on every add: a new objectGUID (16 octets).
            guid = uuid.uuid4().bytes_le
            return add_entry(dn, {**attributes, "objectGUID": [guid]}, validate)

        connection.send = recorded_send
        strategy.add_entry = add_with_guid
        connection.open()
        assert connection.bind(), connection.result
        return connection

    def sent(self, message_type: str) -> list[dict[str, Any]]:
        return [request for kind, request in self.requests if kind == message_type]


@pytest.fixture
def ad(tmp_path: Path) -> Any:
    path = tmp_path / "ad.toml"
    path.write_text(AD_MAPPING)
    adapter = LdapAdapter(load_mapping(path))
    adapter.directory = MockActiveDirectory(adapter.mapping.directory)
    yield adapter
    adapter.close()


def octets(value: Any) -> bytes:
    """A value of a decoded request as the octets on the wire (ldap3 shows UTF-8 as text)."""
    return value if isinstance(value, bytes) else str(value).encode("utf-8")


def attributes_of(request: dict[str, Any]) -> dict[str, list[bytes]]:
    """An addRequest's attributes (name -> values as sent)."""
    return {name: [octets(v) for v in values] for name, values in request["attributes"].items()}


def changes_of(request: dict[str, Any]) -> list[tuple[int, str, list[bytes]]]:
    """A modifyRequest's changes: (operation: 0 add, 1 delete, 2 replace; type; values)."""
    return [
        (
            int(change["operation"]),
            str(change["attribute"]["type"]),
            [octets(v) for v in change["attribute"]["value"]],
        )
        for change in request["changes"]
    ]


def test_a_new_user_is_an_add_with_uac_unicodepwd_and_samaccountname(ad):
    key = ad.create_user(
        "id-ada",
        user_document("ada.lovelace@corp.example", active=False),
        password="Pa55-word!",
        deadline=budget(),
    )
    assert uuid.UUID(key)  # objectGUID, as a UUID string
    (add,) = ad.directory.sent("addRequest")
    assert add["entry"] == f"cn=Ada Lovelace,{PEOPLE}"
    sent = attributes_of(add)
    assert sent["userAccountControl"] == [b"514"]  # NORMAL_ACCOUNT | ACCOUNTDISABLE
    assert sent["unicodePwd"] == ['"Pa55-word!"'.encode("utf-16-le")]
    assert sent["sAMAccountName"] == [b"ada.lovelace"]
    assert sent["userPrincipalName"] == [b"ada.lovelace@corp.example"]
    assert sent["objectClass"] == [b"top", b"person", b"organizationalPerson", b"user"]
    record = ad.get_user(key, deadline=budget())
    assert record.document["userName"] == "ada.lovelace@corp.example"
    assert record.document["active"] is False


def test_deactivate_and_reactivate_flip_only_the_accountdisable_bit(ad):
    key = ad.create_user(
        "id-g", user_document("grace@corp.example"), password=None, deadline=budget()
    )
    entry_dn = f"cn=Ada Lovelace,{PEOPLE}"
    # An administrator set DONT_EXPIRE_PASSWORD (0x10000) on the account meanwhile.
    ad.directory.mock_server.dit[entry_dn]["userAccountControl"] = [b"66048"]
    ad.directory.requests.clear()
    ad.deactivate_user(key, deadline=budget())
    (modify,) = ad.directory.sent("modifyRequest")
    assert changes_of(modify) == [(2, "userAccountControl", [b"66050"])]  # 2: replace
    assert ad.get_user(key, deadline=budget()).document["active"] is False
    ad.deactivate_user(key, deadline=budget())  # already disabled: nothing sent
    assert len(ad.directory.sent("modifyRequest")) == 1
    ad.reactivate_user(key, deadline=budget())
    assert changes_of(ad.directory.sent("modifyRequest")[-1]) == [
        (2, "userAccountControl", [b"66048"])
    ]
    assert ad.get_user(key, deadline=budget()).document["active"] is True


def test_a_password_is_a_replace_of_unicodepwd_in_quoted_utf16le(ad):
    key = ad.create_user(
        "id-a", user_document("ada@corp.example"), password=None, deadline=budget()
    )
    ad.directory.requests.clear()
    ad.set_password(key, "N3w-pässword", deadline=budget())
    (modify,) = ad.directory.sent("modifyRequest")
    assert changes_of(modify) == [(2, "unicodePwd", ['"N3w-pässword"'.encode("utf-16-le")])]


def test_keys_are_object_guids_searched_as_escaped_octets(ad):
    key = ad.create_user(
        "id-a", user_document("ada@corp.example"), password=None, deadline=budget()
    )
    ad.directory.requests.clear()
    assert ad.get_user(key, deadline=budget()) is not None
    (search,) = ad.directory.sent("searchRequest")
    escaped = "".join(f"\\{b:02x}" for b in uuid.UUID(key).bytes_le)
    assert f"(objectGUID={escaped})" in search["filter"]
    assert ad.get_user(str(uuid.uuid4()), deadline=budget()) is None
    assert ad.get_user("not-a-guid", deadline=budget()) is None


def test_groups_may_be_empty_in_active_directory_no_placeholder_member(ad):
    ada = ad.create_user(
        "id-a", user_document("ada@corp.example"), password=None, deadline=budget()
    )
    staff = ad.create_group("id-staff", group_document("staff"), deadline=budget())
    add = ad.directory.sent("addRequest")[-1]
    assert "member" not in attributes_of(add)
    ad.add_members(staff, [ada], deadline=budget())
    assert ad.get_group(staff, deadline=budget()).document["members"] == [ada]
    ad.remove_members(staff, [ada], deadline=budget())
    assert changes_of(ad.directory.sent("modifyRequest")[-1]) == [
        (1, "member", [f"cn=Ada Lovelace,{PEOPLE}".encode()])  # 1: delete, nothing added
    ]
    assert ad.get_group(staff, deadline=budget()).document["members"] == []


def test_the_ad_shape_needs_tls_for_passwords_and_advertises_its_capabilities(tmp_path):
    plain = tmp_path / "plain.toml"
    plain.write_text(AD_MAPPING.replace("ldaps://", "ldap://"))
    from scim_bridge.adapters.mapping import MappingProblems

    with pytest.raises(MappingProblems, match="ldaps:// url or start_tls"):
        load_mapping(plain)
    good = tmp_path / "ad.toml"
    good.write_text(AD_MAPPING)
    functions = LdapAdapter(load_mapping(good)).capabilities.functions
    assert {Capability.PUSH_USER_DEACTIVATION, Capability.PUSH_PASSWORD_UPDATES} <= functions


class TestActiveDirectoryShapeOnTheMock(AdapterContract):
    """The contract kit on the mock directory with AD's schema (the deadline rule included)."""

    keeps_resource_ids = False

    @pytest.fixture
    def adapter(self, tmp_path: Path) -> Any:
        # The kit's users share one displayName: here userName names the entry (cn).
        path = tmp_path / "ad-contract.toml"
        path.write_text(
            AD_MAPPING.replace('userName = "userPrincipalName"', 'userName = "cn"').replace(
                'displayName = "cn"\n"emails', 'displayName = "displayName"\n"emails'
            )
        )
        adapter = LdapAdapter(load_mapping(path))
        adapter.directory = MockActiveDirectory(adapter.mapping.directory)
        yield adapter
        adapter.close()
