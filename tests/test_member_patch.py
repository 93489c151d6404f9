"""Okta's membership PATCHes are applied to the member list directly, with the result
scim2-models gives, at any group size."""

from __future__ import annotations

import random
import uuid

from scim2_models import Context, PatchOp

from scim_bridge.api.members import apply_member_operations
from scim_bridge.api.schemas import build_schemas
from scim_bridge.workers.settings import load_settings

PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"


def member(value: str) -> dict:
    return {"value": value, "display": f"{value[:8]}@example.com"}


def random_operations(rng: random.Random, pool: list[str]) -> list[dict]:
    operations = []
    for _ in range(rng.randint(1, 6)):
        shape = rng.choice(["remove", "remove", "add", "add", "replace"])
        if shape == "remove":
            value = rng.choice(pool)
            spacing = rng.choice(['value eq "{}"', 'value  eq  "{}"', ' value eq "{}" '])
            path = rng.choice(["members", "Members"]) + "[" + spacing.format(value) + "]"
            operations.append({"op": rng.choice(["remove", "Remove"]), "path": path})
        else:
            values = rng.sample(pool, rng.randint(0 if shape == "replace" else 1, 4))
            items = [member(v) for v in values]
            value = items[0] if len(items) == 1 and rng.random() < 0.3 else items
            operations.append({"op": shape, "path": "members", "value": value})
    return operations


def test_membership_operations_give_what_scim2_models_gives():
    group_model = build_schemas(load_settings(auth_mode="none")).group
    rng = random.Random(7)
    pool = [str(uuid.uuid4()) for _ in range(12)]
    for _ in range(300):
        start = [member(v) for v in rng.sample(pool, rng.randint(0, 8))]
        desired = {"schemas": [GROUP], "displayName": "g", "members": start}
        operations = random_operations(rng, pool)
        general = group_model.model_validate(desired)
        PatchOp[group_model].model_validate(
            {"schemas": [PATCH_OP], "Operations": operations},
            scim_ctx=Context.RESOURCE_PATCH_REQUEST,
        ).patch(general)
        members = apply_member_operations(start, operations)
        assert members is not None, operations
        direct = group_model.model_validate(desired | {"members": members})
        dump = {"scim_ctx": Context.RESOURCE_QUERY_RESPONSE}
        assert direct.model_dump(**dump) == general.model_dump(**dump), operations


def test_other_operations_are_left_to_the_general_patch():
    start = [member("a")]
    for operations in (
        [{"op": "remove", "path": 'members[display eq "x"]'}],
        [{"op": "remove", "path": "members"}],
        [{"op": "remove", "path": "members", "value": [{"value": "a"}]}],
        [{"op": "replace", "path": "displayName", "value": "h"}],
        [{"op": "add", "value": {"members": [{"value": "b"}]}}],
        [{"op": "add", "path": "members", "value": [{"value": 5}]}],
        [{"op": "add", "path": "members", "value": [{"value": "b", "extra": "x"}]}],
        [{"op": "remove", "path": 'members[value eq "a"]'}, {"op": "replace", "path": "x"}],
        "not a list",
    ):
        assert apply_member_operations(start, operations) is None, operations


def test_a_batch_of_removals_and_an_add_on_a_large_group(settings, store, legacy):
    import json

    import falcon.testing

    from scim_bridge.api.app import create_app
    from scim_bridge.store import Kind
    from tests.support import TOKEN, make_settings

    # Only the read model matters here: nothing is published to the legacy application.
    quick = make_settings(
        settings.redis_url, settings.password_key.get_secret_value(), confirm_wait_s=0.0
    )
    app = create_app(quick, store=store, publish=lambda kind, rid: None)
    client = falcon.testing.TestClient(app, headers={"Authorization": TOKEN})
    users = [created_user_named(client, f"u{i}@example.com") for i in range(3)]
    # Members the connector knows, written straight to the read model for speed.
    known = [str(uuid.uuid4()) for _ in range(400)]
    pipe = store.redis.pipeline()
    for rid in known:
        doc = {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "id": rid}
        pipe.hset(store.keys.resource(Kind.USER, rid), mapping={"doc": json.dumps(doc), "v": 1})
    pipe.execute()
    body = {"schemas": [GROUP], "displayName": "Everyone", "members": [member(v) for v in known]}
    created = client.simulate_post("/scim/v2/Groups", json=body)
    assert created.status_code == 201, created.text
    gid = created.json["id"]
    leaving = known[:150]
    operations = [{"op": "remove", "path": f'members[value eq "{v}"]'} for v in leaving]
    operations.append({"op": "add", "path": "members", "value": [member(u) for u in users]})
    patched = client.simulate_patch(
        f"/scim/v2/Groups/{gid}", json={"schemas": [PATCH_OP], "Operations": operations}
    )
    assert patched.status_code == 200, patched.text
    values = [m["value"] for m in client.simulate_get(f"/scim/v2/Groups/{gid}").json["members"]]
    assert values == known[150:] + users


def created_user_named(client, user_name: str) -> str:
    from tests.test_users import user_body

    created = client.simulate_post("/scim/v2/Users", json=user_body(user_name))
    assert created.status_code == 201, created.text
    return created.json["id"]
