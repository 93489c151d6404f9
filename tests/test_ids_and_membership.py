"""Ids name resources only, and a deleted user leaves its groups (regressions through the api)."""

from __future__ import annotations

import pytest

from scim_bridge.cli.processes import wait_until
from tests.test_groups import GROUPS, PATCH, group_body
from tests.test_users import USERS, user_body

BOOKKEEPING = ["order", "mod", "ix:userName", "ix:displayName", "mv:emails:a@example.com", "seq"]


@pytest.mark.parametrize("endpoint", [USERS, GROUPS])
@pytest.mark.parametrize("rid", BOOKKEEPING)
def test_an_id_that_is_not_minted_is_a_404_and_changes_nothing(
    client, legacy, store, endpoint, rid
):
    created = client.simulate_post(USERS, json=user_body("a@example.com"))
    client.simulate_post(GROUPS, json=group_body("Staff", [created.json["id"]]))
    wait_until(lambda: store.backlog() == 0)

    def bookkeeping() -> list[bytes]:
        # Heartbeats and per-resource locks come and go with the worker's own rhythm.
        return sorted(
            key
            for key in store.redis.scan_iter(match="sb:*")
            if b":workers" not in key and b":lock:" not in key
        )

    before = bookkeeping()
    body, path = (
        (user_body("b@example.com"), "active")
        if endpoint == USERS
        else (group_body("X", []), "displayName")
    )
    responses = [
        client.simulate_get(f"{endpoint}/{rid}"),
        client.simulate_put(f"{endpoint}/{rid}", json=body),
        client.simulate_patch(
            f"{endpoint}/{rid}",
            json={
                "schemas": [PATCH],
                "Operations": [
                    {"op": "replace", "path": path, "value": False if path == "active" else "Y"}
                ],
            },
        ),
        client.simulate_delete(f"{endpoint}/{rid}"),
    ]
    for response in responses:
        assert response.status_code == 404, response.text
        assert response.json["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
    assert bookkeeping() == before


def test_a_deleted_user_leaves_its_groups_and_the_group_can_still_be_patched(client, legacy):
    a = client.simulate_post(USERS, json=user_body("a@example.com")).json["id"]
    b = client.simulate_post(USERS, json=user_body("b@example.com")).json["id"]
    gid = client.simulate_post(GROUPS, json=group_body("Staff", [a, b])).json["id"]
    assert client.simulate_delete(f"{USERS}/{a}").status_code == 204
    group = client.simulate_get(f"{GROUPS}/{gid}").json
    assert [m["value"] for m in group["members"]] == [b]
    assert group["meta"]["version"] == 'W/"2"'
    patch = {
        "schemas": [PATCH],
        "Operations": [{"op": "replace", "path": "displayName", "value": "All"}],
    }
    response = client.simulate_patch(f"{GROUPS}/{gid}", json=patch)
    assert response.status_code == 200, response.text
    assert response.json["displayName"] == "All"
    assert [m["value"] for m in response.json["members"]] == [b]
    adapter = legacy.adapter
    wait_until(lambda: [g["members"] for g in adapter.groups.values()] == [["u2"]])


def test_a_member_already_gone_does_not_block_the_group(client, legacy, store):
    """A group stored before deletes removed members (or changed meanwhile) still lists a user
    that no longer exists: a PATCH drops it instead of answering 400 forever."""
    from scim_bridge.store import Kind

    a = client.simulate_post(USERS, json=user_body("a@example.com")).json["id"]
    b = client.simulate_post(USERS, json=user_body("b@example.com")).json["id"]
    gid = client.simulate_post(GROUPS, json=group_body("Staff", [a, b])).json["id"]
    # The user vanishes from the store without its groups being told (as before the fix).
    store.redis.delete(store.keys.resource(Kind.USER, a))
    patch = {
        "schemas": [PATCH],
        "Operations": [{"op": "replace", "path": "displayName", "value": "All"}],
    }
    response = client.simulate_patch(f"{GROUPS}/{gid}", json=patch)
    assert response.status_code == 200, response.text
    assert [m["value"] for m in response.json["members"]] == [b]
    unknown = {
        "schemas": [PATCH],
        "Operations": [{"op": "add", "path": "members", "value": [{"value": a}]}],
    }
    refused = client.simulate_patch(f"{GROUPS}/{gid}", json=unknown)
    assert refused.status_code == 400 and refused.json["scimType"] == "invalidValue"
