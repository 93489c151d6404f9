"""Work per request is bounded: counts and lengths are settings, and a request past its own
deadline is abandoned before anything is stored."""

from __future__ import annotations

import time

import falcon.testing
import pytest

from scim_bridge.api.app import create_app
from scim_bridge.store import Kind, Store
from tests.support import TOKEN, make_settings
from tests.test_hostile_input import created_user, scim_error
from tests.test_users import user_body

V2 = "/scim/v2"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"


@pytest.fixture
def limited(settings, store, legacy, publisher):
    """A client of an app built with some settings changed."""

    def build(store_: Store = store, **overrides) -> falcon.testing.TestClient:
        changed = make_settings(
            settings.redis_url, settings.password_key.get_secret_value(), **overrides
        )
        app = create_app(changed, store=store_, publish=publisher)
        return falcon.testing.TestClient(app, headers={"Authorization": TOKEN})

    return build


def patch(operations) -> dict:
    return {"schemas": [PATCH_OP], "Operations": operations}


def add_email(i: int) -> dict:
    return {"op": "add", "path": "emails", "value": [{"value": f"e{i}@example.com"}]}


def test_two_thousand_patch_operations_are_too_many_and_change_nothing(client):
    rid = created_user(client)
    body = patch([add_email(i) for i in range(2000)])
    error = scim_error(client.simulate_patch(f"{V2}/Users/{rid}", json=body), 400, "tooMany")
    assert "SCIM_BRIDGE_MAX_PATCH_OPERATIONS" in error["detail"] and "1000" in error["detail"]
    assert client.simulate_get(f"{V2}/Users/{rid}").json["meta"]["version"] == 'W/"1"'


def test_patch_operations_up_to_the_limit_are_applied(limited):
    client = limited(max_patch_operations=3)
    rid = created_user(client)
    ok = client.simulate_patch(f"{V2}/Users/{rid}", json=patch([add_email(i) for i in range(3)]))
    assert ok.status_code == 200, ok.text
    refused = client.simulate_patch(
        f"{V2}/Users/{rid}", json=patch([add_email(i) for i in range(3, 7)])
    )
    assert "SCIM_BRIDGE_MAX_PATCH_OPERATIONS" in scim_error(refused, 400, "tooMany")["detail"]
    assert len(client.simulate_get(f"{V2}/Users/{rid}").json["emails"]) == 4


@pytest.mark.parametrize("base", [V2, "/scim/v1"])
def test_a_multi_valued_attribute_past_its_limit_is_too_many(limited, base):
    client = limited(max_multi_valued=3)
    emails = [{"value": f"e{i}@example.com"} for i in range(4)]
    refused = client.simulate_post(f"{base}/Users", json=user_body(emails=emails))
    assert refused.status_code == 400, refused.text
    assert "SCIM_BRIDGE_MAX_MULTI_VALUED" in refused.text
    assert client.simulate_get(f"{V2}/Users").json["totalResults"] == 0
    accepted = client.simulate_post(f"{base}/Users", json=user_body(emails=emails[:3]))
    assert accepted.status_code == 201, accepted.text


def test_a_patch_that_leaves_too_many_values_is_refused(limited):
    client = limited(max_multi_valued=3)
    rid = created_user(client)  # one email
    body = patch([add_email(1), add_email(2), add_email(3)])
    error = scim_error(client.simulate_patch(f"{V2}/Users/{rid}", json=body), 400, "tooMany")
    assert "SCIM_BRIDGE_MAX_MULTI_VALUED" in error["detail"]
    assert len(client.simulate_get(f"{V2}/Users/{rid}").json["emails"]) == 1


def test_group_members_have_their_own_limit_in_a_body_and_in_the_group_a_patch_leaves(limited):
    client = limited(max_group_members=2, max_multi_valued=1)
    users = [created_user_named(client, f"m{i}@example.com") for i in range(3)]
    members = [{"value": u} for u in users]
    refused = client.simulate_post(
        f"{V2}/Groups", json={"schemas": [GROUP], "displayName": "g", "members": members}
    )
    assert "SCIM_BRIDGE_MAX_GROUP_MEMBERS" in scim_error(refused, 400, "tooMany")["detail"]
    created = client.simulate_post(
        f"{V2}/Groups", json={"schemas": [GROUP], "displayName": "g", "members": members[:2]}
    )
    assert created.status_code == 201, created.text  # two members: above max_multi_valued
    gid = created.json["id"]
    grow = patch([{"op": "add", "path": "members", "value": members[2:]}])
    error = scim_error(client.simulate_patch(f"{V2}/Groups/{gid}", json=grow), 400, "tooMany")
    assert "SCIM_BRIDGE_MAX_GROUP_MEMBERS" in error["detail"]
    assert len(client.simulate_get(f"{V2}/Groups/{gid}").json["members"]) == 2


def created_user_named(client, user_name: str) -> str:
    created = client.simulate_post(f"{V2}/Users", json=user_body(user_name))
    assert created.status_code == 201, created.text
    return created.json["id"]


def test_a_string_past_its_limit_is_an_invalid_value(limited):
    client = limited(max_string_length=100)
    refused = client.simulate_post(f"{V2}/Users", json=user_body(title="x" * 101))
    error = scim_error(refused, 400, "invalidValue")
    assert "title" in error["detail"] and "SCIM_BRIDGE_MAX_STRING_LENGTH" in error["detail"]
    rid = created_user(client)
    long_value = patch([{"op": "replace", "path": "title", "value": "y" * 101}])
    error = scim_error(client.simulate_patch(f"{V2}/Users/{rid}", json=long_value), 400)
    assert "SCIM_BRIDGE_MAX_STRING_LENGTH" in error["detail"]
    assert client.simulate_get(f"{V2}/Users/{rid}").json["meta"]["version"] == 'W/"1"'


def test_an_attributes_list_past_its_limit_is_too_many(limited):
    client = limited(max_attributes=3)
    rid = created_user(client)
    for path in (f"{V2}/Users", f"{V2}/Users/{rid}"):
        many = "attributes=userName,title,nickName,locale"
        error = scim_error(client.simulate_get(path, query_string=many), 400, "tooMany")
        assert "SCIM_BRIDGE_MAX_ATTRIBUTES" in error["detail"]
    search = {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
        "excludedAttributes": ["a", "b", "c", "d"],
    }
    scim_error(client.simulate_post(f"{V2}/Users/.search", json=search), 400, "tooMany")


def test_projections_keep_their_meaning_with_repeated_and_unknown_entries(client):
    rid = created_user(client)
    base = client.simulate_get(f"{V2}/Users/{rid}", query_string="attributes=userName").json
    assert set(base) == {"schemas", "id", "userName"} | ({"meta"} & set(base))
    repeated = client.simulate_get(
        f"{V2}/Users/{rid}", query_string="attributes=userName,USERNAME,nosuch,name.givenName"
    ).json
    assert repeated["userName"] == "jane@example.com"
    assert repeated["name"] == {"givenName": "Jane"}
    assert "emails" not in repeated and "active" not in repeated
    nothing = client.simulate_get(f"{V2}/Users/{rid}", query_string="attributes=nosuch").json
    assert nothing["id"] == rid and "userName" not in nothing and "emails" not in nothing
    excluded = client.simulate_get(
        f"{V2}/Users", query_string="excludedAttributes=emails,nosuch"
    ).json["Resources"][0]
    assert "emails" not in excluded and excluded["userName"] == "jane@example.com"


class SlowStore(Store):
    """The read model behind a slow network: every snapshot read takes 0.3 s."""

    def snapshot(self, kind, rid):
        time.sleep(0.3)
        return super().snapshot(kind, rid)


def test_a_write_past_its_deadline_is_abandoned_before_anything_is_stored(limited, store):
    rid = created_user(limited())
    slow = SlowStore(store.redis, store.keys.prefix, lookups=store.lookups)
    client = limited(slow, request_deadline_s=0.1)
    late = client.simulate_patch(
        f"{V2}/Users/{rid}", json=patch([{"op": "replace", "value": {"active": False}}])
    )
    error = scim_error(late, 503)
    assert "SCIM_BRIDGE_REQUEST_DEADLINE_S" in error["detail"] and "nothing" in error["detail"]
    assert late.headers["Retry-After"]
    late_put = client.simulate_put(f"{V2}/Users/{rid}", json=user_body(active=False))
    scim_error(late_put, 503)
    snap = store.snapshot(Kind.USER, rid)
    assert snap.version == 1 and snap.desired["active"] is True


def test_the_request_deadline_must_leave_half_the_budget_free(settings):
    from scim_bridge.workers.settings import SettingsError

    with pytest.raises(SettingsError, match="SCIM_BRIDGE_REQUEST_DEADLINE_S"):
        make_settings(
            settings.redis_url, settings.password_key.get_secret_value(), request_deadline_s=20
        )
