"""The ldap adapter against a real slapd, beyond the contract: escaping (no injection), the
directory's refusals as the port's errors, renames that memberships follow, groupOfNames' own-DN
rule, paged listing past the server's cap, the modifyTimestamp delta, and the mapping check."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from ldap3 import MODIFY_REPLACE

from scim_bridge.adapters.contract import budget, group_document, user_document
from scim_bridge.adapters.errors import ConflictError, PermanentError
from scim_bridge.adapters.ldap import LdapAdapter, load_mapping
from scim_bridge.adapters.ldap.commands import check
from scim_bridge.adapters.mapping import MappingProblems
from scim_bridge.adapters.port import Capability
from tests.adapters.directory import (
    POSIX_GROUP,
    READER_DN,
    READER_PASSWORD,
    Slapd,
    write_mapping,
)

HOSTILE = [
    "smith, john",
    "a+b",
    'say "hi"',
    "back\\slash",
    "#hash",
    " leading space",
    "trailing space ",
    "x=y",
    "semi;colon<>",
    "*",
    "ada)(uid=*",
    "nul\x00byte",
]


@pytest.fixture
def tree(slapd: Slapd) -> str:
    return slapd.new_tree()


@pytest.fixture
def adapter(slapd: Slapd, tree: str, tmp_path: Path) -> Iterator[LdapAdapter]:
    adapter = LdapAdapter.from_options({"mapping": str(write_mapping(slapd, tmp_path, base=tree))})
    yield adapter
    adapter.close()


def entry(slapd: Slapd, dn: str, *attributes: str) -> dict | None:
    """The entry at ``dn`` as an operator reads it (``None`` if absent)."""
    with slapd.connection() as connection:
        connection.search(dn, "(objectClass=*)", search_scope="BASE", attributes=list(attributes))
        if not connection.entries:
            return None
        return {a: connection.entries[0][a].values for a in attributes}


def members_in_directory(slapd: Slapd, tree: str, name: str) -> list[str]:
    found = entry(slapd, f"cn={name},ou=groups,{tree}", "member")
    assert found is not None
    return sorted(found["member"])


@pytest.mark.parametrize("user_name", HOSTILE)
def test_ldap_special_characters_are_escaped_in_dns_and_filters(adapter, user_name):
    ada = adapter.create_user("id-ada", user_document("ada"), password=None, deadline=budget())
    key = adapter.create_user("id-x", user_document(user_name), password=None, deadline=budget())
    assert key != ada
    record = adapter.get_user(key, deadline=budget())
    assert record is not None and record.document["userName"] == user_name
    # A second delivery finds exactly this entry by its name, never another one.
    assert (
        adapter.create_user("id-x", user_document(user_name), password=None, deadline=budget())
        == key
    )
    found = adapter.find_created_user("id-x", user_document(user_name), deadline=budget())
    assert found == key
    users = [r.key for r in adapter.list_users(cursor=None, limit=10, deadline=budget()).records]
    assert sorted(users) == sorted([ada, key])


def test_a_filter_metacharacter_in_a_user_name_matches_nobody_else(adapter):
    adapter.create_user("id-ada", user_document("ada"), password=None, deadline=budget())
    assert adapter.find_created_user("id-star", user_document("*"), deadline=budget()) is None
    assert adapter.find_created_user("id-i", user_document("x)(uid=ada"), deadline=budget()) is None


def test_an_entry_already_there_with_other_attributes_is_a_conflict(adapter, slapd, tree):
    with slapd.connection() as connection:
        connection.add(
            f"uid=jane,ou=people,{tree}",
            ["inetOrgPerson"],
            {"uid": "jane", "cn": "Jane Before", "sn": "Before"},
        )
    with pytest.raises(ConflictError, match="uid=jane,ou=people"):
        adapter.create_user("id-jane", user_document("jane"), password=None, deadline=budget())
    assert entry(slapd, f"uid=jane,ou=people,{tree}", "cn")["cn"] == ["Jane Before"]


def test_a_value_the_schema_refuses_is_permanent_with_the_directory_message(adapter):
    document = user_document("ada")
    document["emails"][0]["value"] = "adä@example.com"  # mail is IA5String: ASCII only
    with pytest.raises(PermanentError, match="invalidAttributeSyntax") as refused:
        adapter.create_user("id-ada", document, password=None, deadline=budget())
    assert "mail" in refused.value.message


def test_an_account_without_write_rights_gets_a_permanent_refusal(slapd, tree, tmp_path):
    mapping = write_mapping(slapd, tmp_path, base=tree, bind_dn=READER_DN, password=READER_PASSWORD)
    reader = LdapAdapter.from_options({"mapping": str(mapping)})
    try:
        with pytest.raises(PermanentError, match="insufficientAccessRights"):
            reader.create_user("id-ada", user_document("ada"), password=None, deadline=budget())
    finally:
        reader.close()


def test_listing_pages_past_the_directory_cap_on_unpaged_searches(adapter, slapd, tree, tmp_path):
    created = {
        adapter.create_user(
            f"id-{n}", user_document(f"user{n:02d}"), password=None, deadline=budget()
        )
        for n in range(25)
    }
    mapping = write_mapping(slapd, tmp_path, base=tree, bind_dn=READER_DN, password=READER_PASSWORD)
    with slapd.connection() as connection:
        # The reader's unpaged searches stop at 10 entries (sizeLimitExceeded)...
        from ldap3 import Connection, Server

        capped = Connection(Server(slapd.url), READER_DN, READER_PASSWORD, auto_bind=True)
        capped.search(f"ou=people,{tree}", "(objectClass=inetOrgPerson)")
        assert capped.result["description"] == "sizeLimitExceeded"
        capped.unbind()
        del connection
    reader = LdapAdapter.from_options({"mapping": str(mapping)})
    try:
        keys: list[str] = []
        cursor = None
        while True:
            page = reader.list_users(cursor=cursor, limit=100, deadline=budget())
            keys += [r.key for r in page.records]
            if page.cursor is None:
                break
            cursor = page.cursor
        assert sorted(keys) == sorted(created)  # ...the paged listing sees all 25
    finally:
        reader.close()


def test_a_listing_resumed_by_another_adapter_continues_after_the_cursor(
    adapter, slapd, tree, tmp_path
):
    for n in range(12):
        adapter.create_user(f"id-{n}", user_document(f"u{n:02d}"), password=None, deadline=budget())
    first = adapter.list_users(cursor=None, limit=5, deadline=budget())
    other = LdapAdapter.from_options({"mapping": str(write_mapping(slapd, tmp_path, base=tree))})
    try:
        keys = [r.key for r in first.records]
        cursor = first.cursor
        while cursor is not None:
            page = other.list_users(cursor=cursor, limit=5, deadline=budget())
            keys += [r.key for r in page.records]
            cursor = page.cursor
    finally:
        other.close()
    assert len(keys) == len(set(keys)) == 12


def test_a_changed_rdn_value_is_a_modify_dn_that_group_members_follow(adapter, slapd, tree):
    ada = adapter.create_user("id-ada", user_document("ada"), password=None, deadline=budget())
    staff = adapter.create_group("id-staff", group_document("staff"), deadline=budget())
    adapter.add_members(staff, [ada], deadline=budget())
    previous = adapter.get_user(ada, deadline=budget()).document
    adapter.update_user(ada, user_document("augusta"), previous=previous, deadline=budget())
    assert entry(slapd, f"uid=ada,ou=people,{tree}", "uid") is None
    assert entry(slapd, f"uid=augusta,ou=people,{tree}", "uid")["uid"] == ["augusta"]
    assert adapter.get_user(ada, deadline=budget()).document["userName"] == "augusta"
    assert members_in_directory(slapd, tree, "staff") == [f"uid=augusta,ou=people,{tree}"]
    assert adapter.get_group(staff, deadline=budget()).document["members"] == [ada]


def test_a_rename_onto_a_taken_name_is_a_conflict_and_changes_nothing(adapter, slapd, tree):
    ada = adapter.create_user("id-ada", user_document("ada"), password=None, deadline=budget())
    adapter.create_user("id-grace", user_document("grace"), password=None, deadline=budget())
    with pytest.raises(ConflictError):
        adapter.update_user(ada, user_document("grace"), previous={}, deadline=budget())
    assert adapter.get_user(ada, deadline=budget()).document["userName"] == "ada"


def test_memberuid_groups_follow_a_changed_uid(slapd, tmp_path):
    posix = LdapAdapter.from_options({"mapping": str(write_mapping(slapd, tmp_path, POSIX_GROUP))})
    try:
        ada = posix.create_user("id-ada", user_document("ada"), password=None, deadline=budget())
        staff = posix.create_group("id-staff", group_document("staff"), deadline=budget())
        posix.add_members(staff, [ada], deadline=budget())
        posix.update_user(ada, user_document("augusta"), previous={}, deadline=budget())
        group = posix.get_group(staff, deadline=budget())
        assert group.document["members"] == [ada]
        base = posix.mapping.groups.base
        assert entry(slapd, f"cn=staff,{base}", "memberUid")["memberUid"] == ["augusta"]
        assert int(entry(slapd, f"cn=staff,{base}", "gidNumber")["gidNumber"][0]) >= 10000
    finally:
        posix.close()


def test_group_of_names_lists_its_own_dn_while_it_has_no_users(adapter, slapd, tree):
    own = f"cn=staff,ou=groups,{tree}"
    staff = adapter.create_group("id-staff", group_document("staff"), deadline=budget())
    assert members_in_directory(slapd, tree, "staff") == [own]
    assert adapter.get_group(staff, deadline=budget()).document["members"] == []
    ada = adapter.create_user("id-ada", user_document("ada"), password=None, deadline=budget())
    adapter.add_members(staff, [ada], deadline=budget())
    assert members_in_directory(slapd, tree, "staff") == [f"uid=ada,ou=people,{tree}"]
    adapter.remove_members(staff, [ada], deadline=budget())
    assert members_in_directory(slapd, tree, "staff") == [own]
    adapter.add_members(staff, [ada], deadline=budget())
    adapter.delete_user(ada, deadline=budget())
    assert members_in_directory(slapd, tree, "staff") == [own]
    # Renamed, the group's own DN follows it.
    adapter.update_group(staff, group_document("all staff"), previous={}, deadline=budget())
    assert members_in_directory(slapd, tree, "all staff") == [f"cn=all staff,ou=groups,{tree}"]


def test_ssha_passwords_are_hashed_before_they_reach_the_directory(adapter, slapd, tree):
    ada = adapter.create_user("id-ada", user_document("ada"), password="s3cret!", deadline=budget())
    stored = entry(slapd, f"uid=ada,ou=people,{tree}", "userPassword")["userPassword"][0]
    assert stored.startswith(b"{SSHA}") and b"s3cret" not in stored
    adapter.set_password(ada, "n3w-secret", deadline=budget())
    from ldap3 import Connection, Server

    bound = Connection(Server(slapd.url), f"uid=ada,ou=people,{tree}", "n3w-secret")
    assert bound.bind()  # slapd verifies the hash the adapter made
    bound.unbind()


def test_a_server_password_scheme_without_tls_is_refused_at_start(slapd, tmp_path):
    text = write_mapping(slapd, tmp_path, POSIX_GROUP).read_text()
    plain = tmp_path / "plain.toml"
    plain.write_text(text.replace("start_tls = true\n", ""))
    with pytest.raises(MappingProblems, match="ldaps:// url or start_tls"):
        load_mapping(plain)


def test_changes_since_returns_each_change_once_across_equal_second_boundaries(
    adapter, slapd, tree
):
    ada = adapter.create_user("id-ada", user_document("ada"), password=None, deadline=budget())
    start = adapter.changes_since(None, limit=100, deadline=budget())
    assert start.users == [] and start.groups == []
    with slapd.connection() as connection:
        connection.modify(f"uid=ada,ou=people,{tree}", {"cn": [(MODIFY_REPLACE, ["Helpdesk"])]})
    first = adapter.changes_since(start.token, limit=100, deadline=budget())
    # Ada's create may share the second of the start token: she is seen with the change.
    assert [r.key for r in first.users] == [ada]
    assert first.users[0].document["displayName"] == "Helpdesk"
    again = adapter.changes_since(first.token, limit=100, deadline=budget())
    assert again.users == []  # same second, same document: not returned twice
    with slapd.connection() as connection:
        connection.modify(f"uid=ada,ou=people,{tree}", {"cn": [(MODIFY_REPLACE, ["Twice"])]})
    second = adapter.changes_since(again.token, limit=100, deadline=budget())
    assert [r.document["displayName"] for r in second.users] == ["Twice"]


def test_changes_since_pages_with_limit_and_misses_nothing(adapter):
    start = adapter.changes_since(None, limit=10, deadline=budget())
    time.sleep(1.1)  # past the start token's second, so only the creates below are changes
    keys = {
        adapter.create_user(f"id-{n}", user_document(f"d{n}"), password=None, deadline=budget())
        for n in range(7)
    }
    seen: list[str] = []
    token, more = start.token, True
    while more:
        changes = adapter.changes_since(token, limit=3, deadline=budget())
        seen += [r.key for r in changes.users]
        token, more = changes.token, changes.more
    assert sorted(seen) == sorted(keys)


def test_capabilities_follow_the_mapping(adapter, slapd, tmp_path):
    assert Capability.GROUP_PUSH in adapter.capabilities.functions
    assert Capability.PUSH_PASSWORD_UPDATES in adapter.capabilities.functions
    text = write_mapping(slapd, tmp_path).read_text()
    bare = tmp_path / "bare.toml"
    start = text.index("[users.active]")
    bare.write_text(
        text[:start] + text[text.index("[groups]") :].replace('member_attribute = "member"\n', "")
    )
    functions = load_and_capabilities(bare)
    assert Capability.PUSH_USER_DEACTIVATION not in functions
    assert Capability.PUSH_PASSWORD_UPDATES not in functions
    assert Capability.GROUP_PUSH not in functions


def load_and_capabilities(path: Path) -> frozenset[Capability]:
    from scim_bridge.adapters.ldap import capabilities_of

    return capabilities_of(load_mapping(path)).functions


def test_mapping_check_reports_bases_classes_and_attributes_the_directory_lacks(slapd, tmp_path):
    good = write_mapping(slapd, tmp_path)
    problems, summary = check(good)
    assert problems == [] and "ok" in summary
    text = good.read_text()
    broken = tmp_path / "broken.toml"
    broken.write_text(
        text.replace("ou=people,", "ou=nobody,", 1)
        .replace('"groupOfNames"', '"groupOfNoNames"')
        .replace('"name.familyName" = "sn"', '"name.familyName" = "surnameX"')
        .replace('displayName = "cn"\n"emails', 'displayName = "cn"\ntitle = "uidNumber"\n"emails')
    )
    problems, _ = check(broken)
    text_of = "\n".join(problems)
    assert "users.base: ou=nobody," in text_of
    assert "groups.object_classes: groupOfNoNames is not in the directory's schema" in text_of
    assert "attribute surnameX is not in the directory's schema" in text_of
    assert "attribute uidNumber is not allowed by object classes inetOrgPerson" in text_of
    assert "inetOrgPerson require sn" in text_of


def test_mapping_check_names_a_wrong_bind_password(slapd, tmp_path):
    mapping = write_mapping(slapd, tmp_path, password="wrong")
    problems, _ = check(mapping)
    assert len(problems) == 1
    assert problems[0].startswith("ldap.bind_dn:") and "invalidCredentials" in problems[0]


def test_scim_bridge_mapping_check_checks_ldap_mappings(slapd, tmp_path):
    import os
    import subprocess
    import sys

    good = write_mapping(slapd, tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCIM_BRIDGE_")}
    command = [sys.executable, "-m", "scim_bridge.cli", "mapping", "check"]
    by_option = subprocess.run(
        [*command, "--adapter", "ldap", "--mapping", str(good)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert by_option.returncode == 0, by_option.stderr
    assert "ok (users -> ou=people," in by_option.stdout and "GROUP_PUSH" in by_option.stdout
    wrong = write_mapping(slapd, tmp_path, password="wrong")
    by_environment = subprocess.run(
        command,
        env={**env, "SCIM_BRIDGE_ADAPTER": "ldap", "SCIM_BRIDGE_LDAP_MAPPING": str(wrong)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert by_environment.returncode == 1
    assert (
        "ldap.bind_dn:" in by_environment.stdout and "invalidCredentials" in by_environment.stdout
    )


def test_a_new_user_does_not_inherit_memberships_left_under_its_dn(adapter, slapd, tree):
    ada = adapter.create_user("id-ada", user_document("ada"), password=None, deadline=budget())
    staff = adapter.create_group("id-staff", group_document("staff"), deadline=budget())
    adapter.add_members(staff, [ada], deadline=budget())
    ghost = f"uid=ghost,ou=people,{tree}"
    with slapd.connection() as connection:  # a deletion outside scim-bridge left its DN behind
        connection.modify(f"cn=staff,ou=groups,{tree}", {"member": [("MODIFY_ADD", [ghost])]})
    assert ghost in members_in_directory(slapd, tree, "staff")
    newcomer = adapter.create_user(
        "id-ghost", user_document("ghost"), password=None, deadline=budget()
    )
    assert members_in_directory(slapd, tree, "staff") == [f"uid=ada,ou=people,{tree}"]
    assert adapter.get_group(staff, deadline=budget()).document["members"] == [ada]
    assert newcomer != ada
