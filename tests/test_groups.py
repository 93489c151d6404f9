"""SCIM 2.0 Groups: membership reaches the legacy application, groups wait for pending members."""

from __future__ import annotations

from scim_bridge.adapters.memory import MemoryAdapter
from scim_bridge.adapters.simulate import SimulatedLegacy
from scim_bridge.cli.processes import wait_until
from tests.test_users import user_body

GROUPS = "/scim/v2/Groups"
USERS = "/scim/v2/Users"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


def group_body(name: str, members: list[str]) -> dict:
    return {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "displayName": name,
        "members": [{"value": m} for m in members],
    }


def test_group_with_members_and_okta_patch_of_members(client, legacy):
    a = client.simulate_post(USERS, json=user_body("a@example.com")).json["id"]
    b = client.simulate_post(USERS, json=user_body("b@example.com")).json["id"]
    created = client.simulate_post(GROUPS, json=group_body("Engineering", [a]))
    assert created.status_code == 201, created.text
    gid = created.json["id"]
    adapter = legacy.adapter
    wait_until(lambda: adapter.groups and adapter.groups["g3"]["members"] == ["u1"])
    patch = {
        "schemas": [PATCH],
        "Operations": [
            {"op": "remove", "path": f'members[value eq "{a}"]'},
            {"op": "add", "path": "members", "value": [{"value": b, "display": "b@example.com"}]},
        ],
    }
    response = client.simulate_patch(f"{GROUPS}/{gid}", json=patch)
    assert response.status_code == 200, response.text
    assert [m["value"] for m in response.json["members"]] == [b]
    wait_until(lambda: adapter.groups["g3"]["members"] == ["u2"])
    duplicate = client.simulate_post(GROUPS, json=group_body("engineering", []))
    assert duplicate.status_code == 409 and duplicate.json["scimType"] == "uniqueness"
    found = client.simulate_get(GROUPS, params={"filter": 'displayName eq "ENGINEERING"'}).json
    assert [g["id"] for g in found["Resources"]] == [gid]


def test_unknown_member_is_400_and_writes_nothing(client, legacy, store):
    response = client.simulate_post(GROUPS, json=group_body("Ghosts", ["no-such-user"]))
    assert response.status_code == 400 and response.json["scimType"] == "invalidValue"
    assert client.simulate_get(GROUPS).json["totalResults"] == 0


def test_a_group_waits_for_members_still_pending_creation(client, legacy, settings):
    slow = legacy.use(SimulatedLegacy(MemoryAdapter(), latency_s=0.5))
    user = client.simulate_post(USERS, json=user_body("slow@example.com"), headers={"Prefer": "x"})
    uid = user.json["id"]
    response = client.simulate_post(GROUPS, json=group_body("Waiting", [uid]))
    assert response.status_code == 201
    inner = slow._inner if hasattr(slow, "_inner") else slow.inner
    wait_until(lambda: any(g["members"] == ["u1"] for g in inner.groups.values()), timeout=20)
    # the member was never sent before the legacy application knew it
    assert inner.calls.index(("create_user", "u1")) < [c[0] for c in inner.calls].index(
        "add_members"
    )


def test_delete_group(client, legacy):
    gid = client.simulate_post(GROUPS, json=group_body("Temp", [])).json["id"]
    assert client.simulate_delete(f"{GROUPS}/{gid}").status_code == 204
    assert client.simulate_get(f"{GROUPS}/{gid}").status_code == 404
    assert client.simulate_delete(f"{GROUPS}/{gid}").status_code == 404
