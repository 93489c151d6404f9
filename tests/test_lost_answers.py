"""A legacy call that took effect but whose answer was lost (a time-out, a lost worker) must not
leave the legacy application out of step: the next reconciliation pushes the whole state.
"""

from __future__ import annotations

from scim_bridge.adapters.errors import TransientError
from scim_bridge.adapters.memory import MemoryAdapter
from scim_bridge.cli.processes import wait_until
from tests.test_users import user_body

USERS = "/scim/v2/Users"


class LosesAnswers(MemoryAdapter):
    """Applies each call, then reports a time-out for the operations named in ``lose``, once."""

    def __init__(self) -> None:
        super().__init__()
        self.lose: set[str] = set()

    def _maybe_lose(self, operation: str) -> None:
        if operation in self.lose:
            self.lose.discard(operation)
            raise TransientError(f"{operation}: timed out (the change landed)")

    def create_user(self, resource_id, user, *, password, deadline):
        key = super().create_user(resource_id, user, password=password, deadline=deadline)
        self._maybe_lose("create_user")
        return key

    def deactivate_user(self, key, *, deadline):
        super().deactivate_user(key, deadline=deadline)
        self._maybe_lose("deactivate_user")

    def reactivate_user(self, key, *, deadline):
        super().reactivate_user(key, deadline=deadline)
        self._maybe_lose("reactivate_user")


def settle(store):
    wait_until(lambda: store.backlog() == 0, timeout=20)


def test_a_lost_deactivation_then_a_reactivation_leaves_the_user_active(client, legacy, store):
    adapter = legacy.use(LosesAnswers())
    rid = client.simulate_post(USERS, json=user_body("a@example.com")).json["id"]
    settle(store)
    adapter.lose.add("deactivate_user")
    client.simulate_put(f"{USERS}/{rid}", json=user_body("a@example.com", active=False))
    client.simulate_put(f"{USERS}/{rid}", json=user_body("a@example.com", active=True))
    settle(store)
    assert adapter.users["u1"]["active"] is True


def test_a_lost_reactivation_then_a_deactivation_leaves_the_user_inactive(client, legacy, store):
    adapter = legacy.use(LosesAnswers())
    rid = client.simulate_post(USERS, json=user_body("b@example.com", active=False)).json["id"]
    settle(store)
    adapter.lose.add("reactivate_user")
    client.simulate_put(f"{USERS}/{rid}", json=user_body("b@example.com", active=True))
    client.simulate_put(f"{USERS}/{rid}", json=user_body("b@example.com", active=False))
    settle(store)
    assert adapter.users["u1"]["active"] is False


def test_a_lost_create_then_a_rename_reaches_the_legacy_application(client, legacy, store):
    adapter = legacy.use(LosesAnswers())
    adapter.lose.add("create_user")
    rid = client.simulate_post(USERS, json=user_body("c@example.com", displayName="Before")).json[
        "id"
    ]
    client.simulate_put(f"{USERS}/{rid}", json=user_body("c@example.com", displayName="After"))
    settle(store)
    assert list(adapter.users) == ["u1"]
    assert adapter.users["u1"]["displayName"] == "After"


def test_a_lost_create_then_a_delete_leaves_nothing_behind(client, legacy, store):
    adapter = legacy.use(LosesAnswers())
    adapter.lose.add("create_user")
    rid = client.simulate_post(USERS, json=user_body("d@example.com")).json["id"]
    assert client.simulate_delete(f"{USERS}/{rid}").status_code == 204
    settle(store)
    assert adapter.users == {}
