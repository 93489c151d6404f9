"""The ldap adapter passes the contract kit against a real slapd, for an inetOrgPerson and
groupOfNames directory and for one whose groups are posixGroups listing members by memberUid
(that one over StartTLS with a private CA, the directory hashing passwords itself)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from scim_bridge.adapters.contract import AdapterContract
from scim_bridge.adapters.ldap import LdapAdapter
from tests.adapters.directory import INET_ORG_PERSON, POSIX_GROUP, Slapd, write_mapping


class TestInetOrgPersonAndGroupOfNames(AdapterContract):
    keeps_resource_ids = False

    @pytest.fixture
    def adapter(self, slapd: Slapd, tmp_path: Path) -> Iterator[LdapAdapter]:
        adapter = LdapAdapter.from_options(
            {"mapping": str(write_mapping(slapd, tmp_path, INET_ORG_PERSON))}
        )
        yield adapter
        adapter.close()


class TestPosixGroupAndMemberUid(AdapterContract):
    keeps_resource_ids = False

    @pytest.fixture
    def adapter(self, slapd: Slapd, tmp_path: Path) -> Iterator[LdapAdapter]:
        adapter = LdapAdapter.from_options(
            {"mapping": str(write_mapping(slapd, tmp_path, POSIX_GROUP))}
        )
        yield adapter
        adapter.close()
