"""The Okta Provisioning Agent's SCIM 1.1 requests, replayed with their bodies.
Every answer passes the strict SCIM 1.x check the agent's parser applies.
"""

from __future__ import annotations

import time

import pytest

from scim_bridge.adapters.memory import MemoryAdapter
from scim_bridge.api.app import create_app
from scim_bridge.cli.processes import wait_until
from scim_bridge.store import Kind
from tests.okta import CUSTOM, V1_CORE, StrictV1Client, okta_user


@pytest.fixture(params=["/scim", "/scim/v1"])
def agent(request, settings, store, legacy, publisher) -> StrictV1Client:
    return StrictV1Client(create_app(settings, store=store, publish=publisher), request.param)


def exists_query(user_name: str) -> str:
    encoded = user_name.replace("@", "%40")
    return f"filter=userName%20eq%20%22{encoded}%22&startIndex=1&count=100"


def test_check_exists_create_and_read_back(agent, legacy):
    empty = agent.get("/Users", query_string=exists_query("myemail@example.com"))
    assert empty.status_code == 200
    assert empty.json["totalResults"] == 0 and empty.json["Resources"] == []
    created = agent.post("/Users", json=okta_user())
    assert created.status_code == 201, created.text
    user = created.json
    assert user["id"] and "password" not in user
    assert user["schemas"] == [V1_CORE, CUSTOM]
    assert user[CUSTOM] == {"isAdmin": False, "isOkta": False, "departmentName": "Testing User"}
    assert [e["type"] for e in user["emails"]] == ["primary", "secondary"]
    found = agent.get("/Users", query_string=exists_query("MYEMAIL@example.com"))
    assert [r["id"] for r in found.json["Resources"]] == [user["id"]]
    one = agent.get(f"/Users/{user['id']}")
    assert one.status_code == 200 and one.json["userName"] == "myemail@example.com"
    assert agent.get("/Users/no-such-id").status_code == 404
    adapter = legacy.adapter
    assert adapter.users["u1"][CUSTOM]["departmentName"] == "Testing User"
    assert adapter.passwords["u1"] == "verySecure"


def test_create_pending_user(agent, legacy):
    created = agent.post("/Users", json=okta_user("pending@example.com", active=False))
    assert created.status_code == 201 and created.json["active"] is False
    assert legacy.adapter.users["u1"]["active"] is False


def test_full_import_pages_in_a_stable_order_with_any_count(agent, legacy):
    ids = [agent.post("/Users", json=okta_user(f"u{i}@example.com")).json["id"] for i in range(23)]
    for count in (100, 10, 7):
        seen, start = [], 1
        while True:
            page = agent.get("/Users", query_string=f"startIndex={start}&count={count}").json
            assert page["totalResults"] == 23 and page["startIndex"] == start
            assert page["itemsPerPage"] == len(page["Resources"]) <= count
            seen += [r["id"] for r in page["Resources"]]
            start += count
            if start > page["totalResults"]:
                break
        assert seen == ids


def test_incremental_import(agent, legacy):
    agent.post("/Users", json=okta_user("old@example.com"))
    time.sleep(1.1)
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    time.sleep(1.1)
    new = agent.post("/Users", json=okta_user("new@example.com")).json["id"]
    query = (
        f"filter=meta.lastModified%20gt%20%22{since.replace(':', '%3A')}%22&startIndex=1&count=100"
    )
    changed = agent.get("/Users", query_string=query).json
    assert [r["id"] for r in changed["Resources"]] == [new]


def test_the_five_puts_reach_the_adapter_as_themselves(agent, legacy):
    rid = agent.post("/Users", json=okta_user()).json["id"]
    adapter = legacy.adapter

    def put(**changes):
        response = agent.put(f"/Users/{rid}", json=okta_user(**changes))
        assert response.status_code == 200, response.text
        assert "password" not in response.json
        wait_until(lambda: legacy.runtime.store.backlog() == 0)
        return response

    def calls():
        return [c[0] for c in adapter.calls]

    put()  # the same password and profile again: nothing to do
    assert calls() == ["create_user"]
    put(name={"givenName": "Changed", "familyName": "LastName"})
    assert calls()[-1] == "update_user"
    put(name={"givenName": "Changed", "familyName": "LastName"}, password="newSecret1")
    assert calls()[-1] == "set_password" and adapter.passwords["u1"] == "newSecret1"
    put(
        name={"givenName": "Changed", "familyName": "LastName"}, password="newSecret1", active=False
    )
    assert calls()[-1] == "deactivate_user"
    reactivated = put(
        name={"givenName": "Changed", "familyName": "LastName"}, password="newSecret1", active=True
    )
    assert reactivated.json["active"] is True
    assert calls() == [
        "create_user",
        "update_user",
        "set_password",
        "deactivate_user",
        "reactivate_user",
    ]


def test_groups_import_create_replace_delete(agent, legacy):
    a = agent.post("/Users", json=okta_user("a@example.com")).json["id"]
    b = agent.post("/Users", json=okta_user("b@example.com")).json["id"]
    body = {
        "schemas": [V1_CORE],
        "id": "client-side-id",
        "displayName": "Sales",
        "members": [{"value": a, "display": "a@example.com"}],
    }
    created = agent.post("/Groups", json=body)
    assert created.status_code == 201, created.text
    gid = created.json["id"]
    assert gid != "client-side-id" and created.json["schemas"] == [V1_CORE]
    assert agent.post("/Groups", json=body).status_code == 409
    listed = agent.get("/Groups", query_string="startIndex=1&count=100").json
    assert [m["value"] for m in listed["Resources"][0]["members"]] == [a]
    replaced = agent.put(
        f"/Groups/{gid}",
        json={"schemas": [V1_CORE], "displayName": "Sales EMEA", "members": [{"value": b}]},
    )
    assert replaced.status_code == 200 and replaced.json["displayName"] == "Sales EMEA"
    wait_until(
        lambda: any(
            g.get("displayName") == "Sales EMEA" and g["members"] == ["u2"]
            for g in legacy.adapter.groups.values()
        )
    )
    assert agent.get(f"/Groups/{gid}").json["members"] == [{"value": b}]
    assert agent.delete(f"/Groups/{gid}").status_code == 204
    assert agent.get(f"/Groups/{gid}").status_code == 404
    assert agent.delete("/Groups/unknown").status_code == 404


def test_okta_group_description_extension(agent, legacy):
    ext = "urn:okta:custom:group:1.0"
    created = agent.post(
        "/Groups",
        json={
            "schemas": [V1_CORE, ext],
            "displayName": "Described",
            ext: {"description": "People who describe"},
        },
    )
    assert created.status_code == 201, created.text
    assert created.json[ext] == {"description": "People who describe"}
    assert set(created.json["schemas"]) == {V1_CORE, ext}


@pytest.mark.parametrize(
    "query",
    [
        'filter=userName+eq+"f1@example.com"',
        'filter=userName%20eq%20"f1@example.com"%20OR%20userName%20eq%20"f2@example.com"',
        "filter=email%20eq%20%22f1%40example.com%22%20OR%20email%20eq%20%22f2%40example.com%22",
        "filter=emails.value%20eq%20%22f2%40example.com%22",
        f"filter={CUSTOM}:departmentName%20eq%20%22Sales%22",
        "filter=name.givenName%20eq%20%22FIRSTNAME%22",
    ],
)
def test_okta_filter_forms(agent, legacy, query):
    f1 = agent.post("/Users", json=okta_user("f1@example.com")).json["id"]
    f2 = agent.post(
        "/Users", json=okta_user("f2@example.com", **{CUSTOM: {"departmentName": "Sales"}})
    ).json["id"]
    found = agent.get("/Users", query_string=query)
    assert found.status_code == 200, found.text
    ids = [r["id"] for r in found.json["Resources"]]
    expected = {
        "userName+eq": [f1],
        "OR": [f1, f2],
        "emails.value": [f2],
        "departmentName": [f2],
        "givenName": [f1, f2],
    }
    key = next(k for k in expected if k in query)
    assert ids == expected[key]
    by_id = agent.get("/Users", query_string=f"filter=id%20eq%20%22{f2}%22").json
    assert [r["id"] for r in by_id["Resources"]] == [f2]


def test_bad_listing_requests(agent, legacy, settings):
    bare = agent.get("/Users", query_string="filter=JANE%40X.COM")
    assert bare.status_code == 400
    assert "filter" in bare.json["Errors"][0]["description"]
    negative = agent.get("/Users", query_string="startIndex=-1&count=100")
    assert negative.status_code == 400
    capped = agent.get("/Users", query_string=f"startIndex=1&count={settings.max_page_size * 5}")
    assert capped.status_code == 200


def test_errors_carry_both_sdk_shapes_and_name_the_resource(agent, legacy):
    missing = agent.get("/Users/nobody")
    assert missing.status_code == 404
    assert missing.json["Errors"][0] == {"code": 404, "description": "User nobody not found"}
    assert missing.json["errors"][0]["statusCode"] == 404
    assert missing.json["errors"][0]["internalCode"]
    legacy.adapter.refuse["refused@example.com"] = "department 'Testing User' is closed"
    refused = agent.post("/Users", json=okta_user("refused@example.com"))
    assert refused.status_code == 400
    description = refused.json["Errors"][0]["description"]
    assert "User" in description and "department 'Testing User' is closed" in description


def test_service_provider_configs_advertise_the_adapters_capabilities(agent, legacy, store):
    config = agent.get("/ServiceProviderConfigs")
    assert config.status_code == 200
    body = config.json
    assert body["schemas"] == [V1_CORE, "urn:okta:schemas:scim:providerconfig:1.0"]
    capabilities = body["urn:okta:schemas:scim:providerconfig:1.0"]["userManagementCapabilities"]
    assert set(capabilities) == {c.value for c in MemoryAdapter().capabilities.functions}
    scheme = body["authenticationSchemes"][0]
    assert scheme["type"] and scheme["description"]
    assert agent.get("/ServiceProviderConfig").status_code == 200
    for method in ("POST", "PUT", "DELETE"):
        assert agent.request(method, "/ServiceProviderConfigs", json={}).status_code == 405


def test_a_restricted_adapter_is_advertised_as_restricted(settings, store, legacy, publisher):
    store.publish_capabilities(["IMPORT_NEW_USERS", "PUSH_NEW_USERS"])
    try:
        agent = StrictV1Client(create_app(settings, store=store, publish=publisher))
        body = agent.get("/ServiceProviderConfigs").json
        assert body["urn:okta:schemas:scim:providerconfig:1.0"]["userManagementCapabilities"] == [
            "IMPORT_NEW_USERS",
            "PUSH_NEW_USERS",
        ]
        assert body["changePassword"]["supported"] is False
    finally:
        store.publish_capabilities(c.value for c in MemoryAdapter().capabilities.functions)


def test_duplicate_create_is_409_by_default(agent, legacy):
    assert agent.post("/Users", json=okta_user()).status_code == 201
    again = agent.post("/Users", json=okta_user())
    assert again.status_code == 409
    assert "userName" in again.json["Errors"][0]["description"]


def test_duplicate_create_updates_the_existing_user_when_enabled(
    settings, store, legacy, publisher
):
    from tests.support import make_settings

    opted_in = make_settings(
        settings.redis_url, settings.password_key.get_secret_value(), duplicate_create="update"
    )
    agent = StrictV1Client(create_app(opted_in, store=store, publish=publisher))
    first = agent.post("/Users", json=okta_user()).json
    again = agent.post(
        "/Users", json=okta_user(name={"givenName": "Again", "familyName": "LastName"})
    )
    assert again.status_code == 200
    assert again.json["id"] == first["id"] and again.json["name"]["givenName"] == "Again"
    assert agent.get("/Users").json["totalResults"] == 1


def test_patch_is_not_offered_in_scim_1_1(agent, legacy):
    rid = agent.post("/Users", json=okta_user()).json["id"]
    response = agent.request("PATCH", f"/Users/{rid}", json={"Operations": []})
    assert response.status_code == 405


def test_the_unique_user_field_can_be_an_extension_attribute_and_is_indexed(
    settings, legacy, publisher
):
    from scim_bridge.workers.runtime import Runtime
    from tests.support import make_settings

    field = f"{CUSTOM}:departmentName"
    custom = make_settings(
        settings.redis_url, settings.password_key.get_secret_value(), unique_user_field=field
    )
    store = Runtime(custom).store
    agent = StrictV1Client(create_app(custom, store=store, publish=publisher))
    rid = agent.post(
        "/Users", json=okta_user("dept@example.com", **{CUSTOM: {"departmentName": "Finance"}})
    ).json["id"]
    assert store.redis.smembers(store.keys.lookup(Kind.USER, field, "finance")) == {rid.encode()}
    query = f"filter={CUSTOM}:departmentName%20eq%20%22FINANCE%22&startIndex=1&count=100"
    assert [r["id"] for r in agent.get("/Users", query_string=query).json["Resources"]] == [rid]


def test_service_provider_configs_follow_the_sql_mapping(agent, store, tmp_path):
    # A mapping with neither password, active nor groups: no password push, no deactivation,
    # no group push; the worker publishes what the adapter declares, the api shows it.
    from scim_bridge.adapters.sql import SqlAdapter

    mapping = tmp_path / "bare.toml"
    mapping.write_text('[users]\ntable = "t"\nkey = "id"\n[users.columns]\nuserName = "login"\n')
    adapter = SqlAdapter.from_options({"url": "sqlite://", "mapping": str(mapping)})
    store.publish_capabilities(str(f) for f in adapter.capabilities.functions)
    try:
        config = agent.get("/ServiceProviderConfigs").json
        capabilities = config["urn:okta:schemas:scim:providerconfig:1.0"][
            "userManagementCapabilities"
        ]
        assert "PUSH_NEW_USERS" in capabilities
        for absent in ("PUSH_PASSWORD_UPDATES", "PUSH_USER_DEACTIVATION", "GROUP_PUSH"):
            assert absent not in capabilities
    finally:
        store.publish_capabilities(str(f) for f in MemoryAdapter().capabilities.functions)
