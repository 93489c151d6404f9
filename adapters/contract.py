"""The contract test kit: every adapter's tests subclass :class:`AdapterContract`.

Each test is one rule of :mod:`scim_bridge.adapters.port`, named as a sentence of the
specification. An
adapter passes the contract when its subclass, which only says how to build a fresh adapter,
passes::

    import pytest
    from scim_bridge.adapters.contract import AdapterContract

    class TestAcmeAdapter(AdapterContract):
        @pytest.fixture
        def adapter(self) -> Iterator[LegacyAdapter]:
            adapter = AcmeAdapter(url=..., ...)  # empty: no users, no groups
            yield adapter
            adapter.close()

The ``adapter`` fixture must give each test an adapter with no records in it (a fresh database,
tables with a unique prefix, an emptied test tenant), because the tests count what they list.
An application with no place for the SCIM id (a directory, a table without an id column or
link table) sets ``keeps_resource_ids = False`` on its subclass: its records then carry no
``resource_id`` and a create is found again with ``find_created_user``/``find_created_group``
(by its name), as the reconciler does after an unknown outcome.
The kit needs pytest (``pip install 'scim-bridge[test]'``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

try:
    import pytest
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "scim_bridge.adapters.contract is a pytest test kit and needs pytest:"
        " pip install 'scim-bridge[test]' (or pytest)"
    ) from exc

from scim_bridge.adapters.errors import ConflictError, PermanentError, TransientError
from scim_bridge.adapters.port import Capabilities, Deadline, LegacyAdapter, LegacyRecord

USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"

# Generous, so that a slow legacy test instance passes; the deadline tests use expired ones.
CALL_BUDGET_S = 30.0

PASSWORD = "Correct-Horse-9-Battery"  # noqa: S105 - a test value, looked for in documents


def user_document(
    user_name: str, *, given_name: str = "Ada", family_name: str = "Lovelace", active: bool = True
) -> dict[str, Any]:
    """A canonical SCIM 2.0 User as scim-bridge hands it to an adapter."""
    return {
        "schemas": [USER_SCHEMA],
        "userName": user_name,
        "name": {"givenName": given_name, "familyName": family_name},
        "displayName": f"{given_name} {family_name}",
        "emails": [{"value": f"{user_name}@example.com", "type": "work", "primary": True}],
        "active": active,
    }


def group_document(display_name: str, *, description: str = "") -> dict[str, Any]:
    """A canonical SCIM 2.0 Group without members, as scim-bridge hands it to an adapter."""
    group: dict[str, Any] = {"schemas": [GROUP_SCHEMA], "displayName": display_name}
    if description:
        group["description"] = description
    return group


def budget() -> Deadline:
    """A deadline no healthy legacy test instance reaches."""
    return Deadline.after(CALL_BUDGET_S)


def expired() -> Deadline:
    """A deadline that has already passed."""
    return Deadline(time.monotonic() - 1.0)


class AdapterContract:
    """The rules of the port as tests; subclass it and define an ``adapter`` fixture.

    Not collected itself (its name does not start with ``Test``); see the module docstring.
    """

    keeps_resource_ids = True
    """Whether the application stores the SCIM id (see the module docstring)."""

    @pytest.fixture
    def adapter(self) -> LegacyAdapter:
        """A fresh, empty adapter: every subclass overrides this fixture."""
        raise NotImplementedError(
            f"{type(self).__name__} must define a pytest fixture named 'adapter' that returns"
            " a fresh, empty adapter"
        )

    # Helpers ----------------------------------------------------------------------------------
    @staticmethod
    def create(adapter: LegacyAdapter, user_name: str, **attributes: Any) -> str:
        """Create a user whose resource id is derived from ``user_name``; return its key."""
        return adapter.create_user(
            f"id-{user_name}",
            user_document(user_name, **attributes),
            password=None,
            deadline=budget(),
        )

    def resource_id(self, resource_id: str) -> str | None:
        """The ``resource_id`` a record created for ``resource_id`` reads back with."""
        return resource_id if self.keeps_resource_ids else None

    def found_user(self, adapter: LegacyAdapter, resource_id: str, user_name: str) -> str | None:
        """What the reconciler learns after an unknown outcome of ``user_name``'s create."""
        if self.keeps_resource_ids:
            return adapter.find_user(resource_id, deadline=budget())
        document = user_document(user_name)
        return adapter.find_created_user(resource_id, document, deadline=budget())

    def found_group(self, adapter: LegacyAdapter, resource_id: str, name: str) -> str | None:
        """The same for a group's create."""
        if self.keeps_resource_ids:
            return adapter.find_group(resource_id, deadline=budget())
        document = group_document(name)
        return adapter.find_created_group(resource_id, document, deadline=budget())

    @staticmethod
    def user(adapter: LegacyAdapter, key: str) -> LegacyRecord:
        """The user ``key``, which must exist."""
        record = adapter.get_user(key, deadline=budget())
        assert record is not None, f"user {key} should exist"
        return record

    @staticmethod
    def members(adapter: LegacyAdapter, group_key: str) -> list[str]:
        """The legacy keys of the group's members, sorted."""
        record = adapter.get_group(group_key, deadline=budget())
        assert record is not None, f"group {group_key} should exist"
        return sorted(record.document["members"])

    @staticmethod
    def all_users(adapter: LegacyAdapter, limit: int) -> list[list[LegacyRecord]]:
        """Every page of ``list_users`` with ``limit``; asserts that paging ends."""
        pages: list[list[LegacyRecord]] = []
        cursor: str | None = None
        while True:
            page = adapter.list_users(cursor=cursor, limit=limit, deadline=budget())
            pages.append(list(page.records))
            assert len(pages) < 1000, "list_users never returned a last page"
            if page.cursor is None:
                return pages
            cursor = page.cursor

    # Users ------------------------------------------------------------------------------------
    def test_create_returns_a_key_and_get_user_returns_the_document(
        self, adapter: LegacyAdapter
    ) -> None:
        key = adapter.create_user(
            "id-ada",
            user_document("ada", given_name="Ada", active=True),
            password=None,
            deadline=budget(),
        )
        assert isinstance(key, str) and key
        record = self.user(adapter, key)
        assert record.key == key
        assert record.resource_id == self.resource_id("id-ada")
        assert record.document["userName"] == "ada"
        assert record.document["active"] is True
        assert record.document["name"]["givenName"] == "Ada"

    def test_find_user_tells_whether_a_create_took_effect(self, adapter: LegacyAdapter) -> None:
        assert self.found_user(adapter, "id-ada", "ada") is None
        key = self.create(adapter, "ada")
        assert self.found_user(adapter, "id-ada", "ada") == key
        adapter.delete_user(key, deadline=budget())
        assert self.found_user(adapter, "id-ada", "ada") is None

    def test_find_group_tells_whether_a_create_took_effect(self, adapter: LegacyAdapter) -> None:
        assert self.found_group(adapter, "id-staff", "staff") is None
        key = adapter.create_group("id-staff", group_document("staff"), deadline=budget())
        assert self.found_group(adapter, "id-staff", "staff") == key

    def test_a_user_created_inactive_reads_as_inactive(self, adapter: LegacyAdapter) -> None:
        key = self.create(adapter, "grace", active=False)
        assert self.user(adapter, key).document["active"] is False

    def test_a_create_whose_answer_was_lost_leaves_one_record_and_returns_the_same_key(
        self, adapter: LegacyAdapter
    ) -> None:
        first = self.create(adapter, "ada")
        again = self.create(adapter, "ada")
        assert again == first
        assert [r.key for page in self.all_users(adapter, 10) for r in page] == [first]

    def test_a_second_user_with_the_same_user_name_in_another_case_is_a_conflict(
        self, adapter: LegacyAdapter
    ) -> None:
        self.create(adapter, "ada.lovelace")
        with pytest.raises(ConflictError):
            adapter.create_user(
                "id-other",
                user_document("Ada.Lovelace"),
                password=None,
                deadline=budget(),
            )
        assert len(self.all_users(adapter, 10)[0]) == 1

    def test_update_changes_the_profile_and_keeps_active(self, adapter: LegacyAdapter) -> None:
        key = self.create(adapter, "ada")
        previous = self.user(adapter, key).document
        adapter.deactivate_user(key, deadline=budget())
        # ``active`` in the new document is not the update's business: only (de|re)activate is.
        changed = user_document("ada", given_name="Augusta", active=True)
        adapter.update_user(key, changed, previous=previous, deadline=budget())
        document = self.user(adapter, key).document
        assert document["name"]["givenName"] == "Augusta"
        assert document["active"] is False

    def test_a_deactivated_user_reads_as_inactive(self, adapter: LegacyAdapter) -> None:
        key = self.create(adapter, "ada")
        adapter.deactivate_user(key, deadline=budget())
        assert self.user(adapter, key).document["active"] is False

    def test_a_reactivated_user_reads_as_active(self, adapter: LegacyAdapter) -> None:
        key = self.create(adapter, "ada")
        adapter.deactivate_user(key, deadline=budget())
        adapter.reactivate_user(key, deadline=budget())
        assert self.user(adapter, key).document["active"] is True

    def test_deactivating_an_inactive_user_succeeds(self, adapter: LegacyAdapter) -> None:
        key = self.create(adapter, "ada")
        adapter.deactivate_user(key, deadline=budget())
        adapter.deactivate_user(key, deadline=budget())
        assert self.user(adapter, key).document["active"] is False

    def test_reactivating_an_active_user_succeeds(self, adapter: LegacyAdapter) -> None:
        key = self.create(adapter, "ada")
        adapter.reactivate_user(key, deadline=budget())
        assert self.user(adapter, key).document["active"] is True

    def test_no_part_of_the_stored_user_contains_the_password(self, adapter: LegacyAdapter) -> None:
        created = adapter.create_user(
            "id-ada", user_document("ada"), password=PASSWORD, deadline=budget()
        )
        assert PASSWORD not in json.dumps(self.user(adapter, created).document)
        key = self.create(adapter, "grace")
        adapter.set_password(key, PASSWORD + "-2", deadline=budget())
        assert PASSWORD not in json.dumps(self.user(adapter, key).document)

    def test_a_deleted_user_reads_as_none(self, adapter: LegacyAdapter) -> None:
        key = self.create(adapter, "ada")
        adapter.delete_user(key, deadline=budget())
        assert adapter.get_user(key, deadline=budget()) is None

    def test_deleting_a_user_already_gone_succeeds(self, adapter: LegacyAdapter) -> None:
        key = self.create(adapter, "ada")
        adapter.delete_user(key, deadline=budget())
        adapter.delete_user(key, deadline=budget())
        assert adapter.get_user(key, deadline=budget()) is None

    def test_list_users_pages_through_every_user_in_a_stable_order(
        self, adapter: LegacyAdapter
    ) -> None:
        created = {self.create(adapter, f"user{n:02d}") for n in range(25)}
        pages = self.all_users(adapter, 10)
        assert [len(page) for page in pages] == [10, 10, 5]
        keys = [record.key for page in pages for record in page]
        assert len(keys) == len(set(keys)) == 25
        assert set(keys) == created
        assert [r.key for page in self.all_users(adapter, 10) for r in page] == keys

    # Groups -----------------------------------------------------------------------------------
    def test_a_group_create_whose_answer_was_lost_returns_the_same_key(
        self, adapter: LegacyAdapter
    ) -> None:
        first = adapter.create_group("id-staff", group_document("staff"), deadline=budget())
        again = adapter.create_group("id-staff", group_document("staff"), deadline=budget())
        assert again == first
        page = adapter.list_groups(cursor=None, limit=10, deadline=budget())
        assert [record.key for record in page.records] == [first]

    def test_a_group_reads_back_with_its_members_as_legacy_keys(
        self, adapter: LegacyAdapter
    ) -> None:
        ada, grace = self.create(adapter, "ada"), self.create(adapter, "grace")
        group = adapter.create_group("id-staff", group_document("staff"), deadline=budget())
        adapter.add_members(group, [ada, grace], deadline=budget())
        record = adapter.get_group(group, deadline=budget())
        assert record is not None
        assert record.resource_id == self.resource_id("id-staff")
        assert record.document["displayName"] == "staff"
        assert sorted(record.document["members"]) == sorted([ada, grace])

    def test_update_group_changes_its_attributes_and_keeps_its_members(
        self, adapter: LegacyAdapter
    ) -> None:
        ada = self.create(adapter, "ada")
        group = adapter.create_group("id-staff", group_document("staff"), deadline=budget())
        adapter.add_members(group, [ada], deadline=budget())
        adapter.update_group(
            group,
            group_document("all staff", description="everyone"),
            previous=group_document("staff"),
            deadline=budget(),
        )
        record = adapter.get_group(group, deadline=budget())
        assert record is not None
        assert record.document["displayName"] == "all staff"
        assert record.document["members"] == [ada]

    def test_adding_a_member_twice_leaves_one_membership(self, adapter: LegacyAdapter) -> None:
        ada = self.create(adapter, "ada")
        group = adapter.create_group("id-staff", group_document("staff"), deadline=budget())
        adapter.add_members(group, [ada], deadline=budget())
        adapter.add_members(group, [ada], deadline=budget())
        assert self.members(adapter, group) == [ada]

    def test_adding_a_user_the_application_does_not_know_is_permanent(
        self, adapter: LegacyAdapter
    ) -> None:
        gone = self.create(adapter, "ada")
        adapter.delete_user(gone, deadline=budget())
        group = adapter.create_group("id-staff", group_document("staff"), deadline=budget())
        with pytest.raises(PermanentError):
            adapter.add_members(group, [gone], deadline=budget())
        assert self.members(adapter, group) == []

    def test_removing_an_absent_member_succeeds(self, adapter: LegacyAdapter) -> None:
        ada, grace = self.create(adapter, "ada"), self.create(adapter, "grace")
        group = adapter.create_group("id-staff", group_document("staff"), deadline=budget())
        adapter.add_members(group, [ada], deadline=budget())
        adapter.remove_members(group, [grace], deadline=budget())
        adapter.remove_members(group, [ada], deadline=budget())
        adapter.remove_members(group, [ada], deadline=budget())
        assert self.members(adapter, group) == []

    def test_a_deleted_user_leaves_every_group(self, adapter: LegacyAdapter) -> None:
        ada, grace = self.create(adapter, "ada"), self.create(adapter, "grace")
        staff = adapter.create_group("id-staff", group_document("staff"), deadline=budget())
        admins = adapter.create_group("id-admins", group_document("admins"), deadline=budget())
        adapter.add_members(staff, [ada, grace], deadline=budget())
        adapter.add_members(admins, [ada], deadline=budget())
        adapter.delete_user(ada, deadline=budget())
        assert self.members(adapter, staff) == [grace]
        assert self.members(adapter, admins) == []

    def test_a_deleted_group_reads_as_none(self, adapter: LegacyAdapter) -> None:
        group = adapter.create_group("id-staff", group_document("staff"), deadline=budget())
        adapter.delete_group(group, deadline=budget())
        assert adapter.get_group(group, deadline=budget()) is None

    def test_deleting_a_group_already_gone_succeeds(self, adapter: LegacyAdapter) -> None:
        group = adapter.create_group("id-staff", group_document("staff"), deadline=budget())
        adapter.delete_group(group, deadline=budget())
        adapter.delete_group(group, deadline=budget())
        assert adapter.get_group(group, deadline=budget()) is None

    # Deadlines and capabilities ---------------------------------------------------------------
    def test_an_expired_deadline_makes_every_change_a_transient_error_that_changes_nothing(
        self, adapter: LegacyAdapter
    ) -> None:
        ada, grace = self.create(adapter, "ada"), self.create(adapter, "grace")
        group = adapter.create_group("id-staff", group_document("staff"), deadline=budget())
        adapter.add_members(group, [ada], deadline=budget())
        users_before = self.all_users(adapter, 100)
        group_before = adapter.get_group(group, deadline=budget())
        changes: dict[str, Callable[[], object]] = {
            "create_user": lambda: adapter.create_user(
                "id-new", user_document("new"), password=PASSWORD, deadline=expired()
            ),
            "update_user": lambda: adapter.update_user(
                ada,
                user_document("ada", given_name="Augusta"),
                previous=user_document("ada"),
                deadline=expired(),
            ),
            "deactivate_user": lambda: adapter.deactivate_user(ada, deadline=expired()),
            "reactivate_user": lambda: adapter.reactivate_user(ada, deadline=expired()),
            "set_password": lambda: adapter.set_password(ada, PASSWORD, deadline=expired()),
            "delete_user": lambda: adapter.delete_user(grace, deadline=expired()),
            "create_group": lambda: adapter.create_group(
                "id-new", group_document("new"), deadline=expired()
            ),
            "update_group": lambda: adapter.update_group(
                group,
                group_document("renamed"),
                previous=group_document("staff"),
                deadline=expired(),
            ),
            "add_members": lambda: adapter.add_members(group, [grace], deadline=expired()),
            "remove_members": lambda: adapter.remove_members(group, [ada], deadline=expired()),
            "delete_group": lambda: adapter.delete_group(group, deadline=expired()),
        }
        for name, change in changes.items():
            with pytest.raises(TransientError):
                change()
                pytest.fail(f"{name} with an expired deadline did not raise TransientError")
        assert self.all_users(adapter, 100) == users_before
        assert adapter.get_group(group, deadline=budget()) == group_before
        page = adapter.list_groups(cursor=None, limit=10, deadline=budget())
        assert [record.key for record in page.records] == [group]

    def test_capabilities_are_declared(self, adapter: LegacyAdapter) -> None:
        assert isinstance(adapter.capabilities, Capabilities)
