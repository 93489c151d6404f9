"""Broken and hostile input gets a 400 SCIM error and changes nothing (never a 500 or a 503)."""

from __future__ import annotations

import json

import pytest

from tests.test_users import user_body

V2 = "/scim/v2"
V1 = "/scim/v1"
ERROR_V2 = "urn:ietf:params:scim:api:messages:2.0:Error"
JSON = {"Content-Type": "application/scim+json"}


def scim_error(response, status: int, scim_type: str | None = None) -> dict:
    assert response.status_code == status, response.text
    body = response.json
    if "Errors" in body:  # SCIM 1.1
        assert body["Errors"][0]["code"] == status, body
        return body
    assert str(body.get("status")) == str(status), body
    if scim_type is not None:
        assert body.get("scimType") == scim_type, body
    return body


def deep(levels: int) -> str:
    return '{"a":' * levels + "1" + "}" * levels


def created_user(client) -> str:
    created = client.simulate_post(f"{V2}/Users", json=user_body())
    assert created.status_code == 201, created.text
    return created.json["id"]


@pytest.mark.parametrize("base", [V2, V1])
def test_a_body_nested_a_hundred_thousand_levels_is_invalid_syntax_on_every_write(client, base):
    rid = created_user(client)
    gid_body = {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "g"}
    gid = client.simulate_post(f"{V2}/Groups", json=gid_body).json["id"]
    body = deep(100_000)
    for method, path in [
        ("POST", f"{base}/Users"),
        ("PUT", f"{base}/Users/{rid}"),
        ("PATCH", f"{V2}/Users/{rid}"),
        ("POST", f"{base}/Groups"),
        ("PUT", f"{base}/Groups/{gid}"),
        ("PATCH", f"{V2}/Groups/{gid}"),
        ("POST", f"{V2}/.search"),
        ("POST", f"{V2}/Users/.search"),
    ]:
        response = client.simulate_request(method, path, body=body, headers=JSON)
        assert response.status_code == 400, (method, path, response.status_code, response.text)
        assert "nests deeper" in response.text, response.text
    assert client.simulate_get(f"{V2}/Users/{rid}").json["userName"] == "jane@example.com"


def test_a_lone_surrogate_in_a_string_is_invalid_syntax(client):
    body = json.dumps(user_body()).replace('"Jane"', '"\\ud800"')
    scim_error(client.simulate_post(f"{V2}/Users", body=body, headers=JSON), 400, "invalidSyntax")
    listed = client.simulate_get(f"{V2}/Users")
    assert listed.json["totalResults"] == 0


@pytest.mark.parametrize(
    "query",
    [
        "attributes=userName&excludedAttributes=emails",
        "attributes=name..givenName",
        "attributes=%5B%5D",
        "excludedAttributes=name.",
        "attributes=urn:",
    ],
)
def test_malformed_attribute_lists_are_invalid_value(client, query):
    rid = created_user(client)
    for path in (f"{V2}/Users", f"{V2}/Users/{rid}"):
        scim_error(client.simulate_get(path, query_string=query), 400, "invalidValue")


def test_a_search_with_a_sort_order_that_is_not_a_string_is_invalid_value(client):
    body = {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
        "sortBy": "userName",
        "sortOrder": 1,
    }
    scim_error(client.simulate_post(f"{V2}/Users/.search", json=body), 400, "invalidValue")


@pytest.mark.parametrize("base", [V2, V1])
def test_a_start_index_past_two_to_the_sixty_three_is_a_client_error(client, base):
    created_user(client)
    scim_error(
        client.simulate_get(f"{base}/Users", query_string=f"startIndex={2**63 + 5}&count=10"),
        400,
        "invalidValue",
    )


def test_a_chunked_body_is_read_within_the_size_limit(gunicorn):
    import http.client
    from urllib.parse import urlsplit

    from tests.support import TOKEN

    url = urlsplit(gunicorn.base_url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    payload = json.dumps(user_body("chunked@example.com")).encode()
    chunks = [payload[:20], payload[20:]]
    connection.request(
        "POST",
        "/scim/v2/Users",
        body=iter(chunks),
        headers={
            "Content-Type": "application/scim+json",
            "Authorization": TOKEN,
            "Transfer-Encoding": "chunked",
        },
        encode_chunked=True,
    )
    answer = connection.getresponse()
    text = answer.read().decode()
    assert answer.status == 201, text
    assert json.loads(text)["userName"] == "chunked@example.com"


@pytest.mark.parametrize(
    ("change", "scim_type"),
    [
        ({"userName": "   "}, "invalidValue"),
        ({"active": "yes"}, "invalidValue"),
        ({"schemas": []}, "invalidValue"),
    ],
)
def test_lenient_user_values_are_refused(client, change, scim_type):
    body = user_body()
    body.update(change)
    error = scim_error(client.simulate_post(f"{V2}/Users", json=body), 400)
    assert error.get("scimType") in (scim_type, "invalidSyntax"), error
    assert client.simulate_get(f"{V2}/Users").json["totalResults"] == 0


def test_a_null_member_is_refused_not_dropped(client):
    rid = created_user(client)
    body = {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "displayName": "Engineering",
        "members": [{"value": rid}, None],
    }
    scim_error(client.simulate_post(f"{V2}/Groups", json=body), 400)
    assert client.simulate_get(f"{V2}/Groups").json["totalResults"] == 0


@pytest.mark.parametrize(
    "operation",
    [
        {"op": "replace", "value": {"active": "yes"}},
        {"op": "replace", "path": "active", "value": "no"},
        {"op": "replace", "path": "userName", "value": "  "},
        {"op": "add", "path": "emails", "value": [None]},
    ],
)
def test_lenient_patch_values_are_refused_and_change_nothing(client, operation):
    rid = created_user(client)
    body = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [operation]}
    scim_error(client.simulate_patch(f"{V2}/Users/{rid}", json=body), 400, "invalidValue")
    user = client.simulate_get(f"{V2}/Users/{rid}").json
    assert user["active"] is True and user["userName"] == "jane@example.com"
    assert user["meta"]["version"] == 'W/"1"'


def test_a_strict_scim2_client_accepts_the_service_provider_config_and_okta_keeps_its_own(
    client, legacy
):
    from scim2_models import Context, ServiceProviderConfig

    from scim_bridge.adapters.port import Capability

    legacy.adapter  # the worker published its capabilities
    strict = client.simulate_get(f"{V2}/ServiceProviderConfig")
    assert strict.status_code == 200, strict.text
    model = ServiceProviderConfig.model_validate(
        strict.json, scim_ctx=Context.RESOURCE_QUERY_RESPONSE
    )
    assert model.patch.supported is True
    okta = client.simulate_get(f"{V2}/ServiceProviderConfigs").json
    capabilities = okta["urn:okta:schemas:scim:providerconfig:1.0"]["userManagementCapabilities"]
    assert "urn:okta:schemas:scim:providerconfig:1.0" in okta["schemas"]
    assert set(capabilities) <= {c.value for c in Capability} and capabilities


def test_a_forged_host_is_never_reflected_into_locations(settings, store, legacy, publisher):
    import falcon.testing

    from scim_bridge.api.app import create_app
    from tests.support import TOKEN

    app = create_app(settings, store=store, publish=publisher)
    client = falcon.testing.TestClient(app, headers={"Authorization": TOKEN})
    forged = client.simulate_post(f"{V2}/Users", json=user_body(), headers={"Host": "evil.example"})
    scim_error(forged, 400, "invalidValue")
    assert "SCIM_BRIDGE_PUBLIC_BASE_URL" in forged.json["detail"]
    assert "evil.example" not in forged.headers.get("Location", "")
    assert client.simulate_get(f"{V2}/Users").json["totalResults"] == 0


def test_the_public_base_url_is_used_whatever_host_a_request_names(
    settings, store, legacy, publisher
):
    import falcon.testing

    from scim_bridge.api.app import create_app
    from tests.support import TOKEN

    public = settings.model_copy(update={"public_base_url": "https://scim.corp.example"})
    app = create_app(public, store=store, publish=publisher)
    client = falcon.testing.TestClient(app, headers={"Authorization": TOKEN})
    created = client.simulate_post(
        f"{V2}/Users", json=user_body(), headers={"Host": "evil.example"}
    )
    assert created.status_code in (201, 202), created.text
    location = created.headers["Location"]
    assert location.startswith("https://scim.corp.example/scim/v2/Users/"), location
    assert created.json["meta"]["location"] == location


PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
PYDANTIC_MARKS = ("pydantic", "validation error for", "input_value", "type=", "Value error")


@pytest.mark.parametrize(
    "operations",
    [
        [{"op": "frobnicate", "path": "active", "value": False}],
        [{"op": 5, "path": "active", "value": False}],
        [{"op": "replace", "path": "emails[type eq", "value": "x"}],
        [{"op": "replace", "path": "name..givenName", "value": "x"}],
        [{"op": "replace", "path": 5, "value": "x"}],
        [{"op": "replace", "path": "name", "value": 5}],
        [{"op": "replace", "path": "emails", "value": "not a list"}],
        [{"op": "replace", "path": "name.givenName", "value": {"a": 1}}],
        [{"op": "replace", "path": "name.givenName", "value": ["a"]}],
        [{"op": "replace", "value": {"userName": 5}}],
        [{"op": "replace", "value": {"name": "x"}}],
        [{"op": "replace", "path": 'emails[type eq "work"].primary', "value": "x"}],
        [{"op": "replace", "path": "phoneNumbers", "value": [{"value": 5}]}],
        [
            {
                "op": "replace",
                "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager",
                "value": 5,
            }
        ],
        "not a list",
    ],
)
def test_malformed_patch_operations_get_a_clean_scim_error_and_change_nothing(client, operations):
    rid = created_user(client)
    body = {"schemas": [PATCH_OP], "Operations": operations}
    error = scim_error(client.simulate_patch(f"{V2}/Users/{rid}", json=body), 400)
    assert error.get("scimType") in ("invalidValue", "invalidPath", "invalidSyntax"), error
    for mark in PYDANTIC_MARKS:
        assert mark not in error["detail"], error["detail"]
    assert "\n" not in error["detail"], error["detail"]
    assert client.simulate_get(f"{V2}/Users/{rid}").json["meta"]["version"] == 'W/"1"'


def test_a_group_member_that_is_not_a_string_gets_a_clean_scim_error(client):
    rid = created_user(client)
    group = {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "g"}
    gid = client.simulate_post(f"{V2}/Groups", json=group).json["id"]
    body = {
        "schemas": [PATCH_OP],
        "Operations": [{"op": "add", "path": "members", "value": [{"value": 5}, {"value": rid}]}],
    }
    error = scim_error(client.simulate_patch(f"{V2}/Groups/{gid}", json=body), 400, "invalidValue")
    assert error["detail"] == "invalid PATCH value: value must be a string", error
    assert client.simulate_get(f"{V2}/Groups/{gid}").json.get("members", []) == []


def test_a_stray_password_in_a_group_put_never_reaches_the_debug_log(client, caplog):
    import logging

    caplog.set_level(logging.DEBUG, logger="scim_bridge.api.writes")
    group = {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "g"}
    gid = client.simulate_post(f"{V2}/Groups", json=group).json["id"]
    secret = "hunter2-correct-horse"
    body = group | {
        "displayName": "Engineering",
        "password": secret,
        "urn:okta:custom:group:1.0": {"description": "d", "userPassword": secret},
    }
    client.simulate_put(f"{V2}/Groups/{gid}", json=body)
    logged = [r.getMessage() for r in caplog.records if r.name == "scim_bridge.api.writes"]
    assert any("Engineering" in line for line in logged), logged  # the body is still logged
    assert all(secret not in line for line in logged), logged


def test_bodies_are_redacted_by_schema_and_by_secret_looking_names():
    from scim_bridge.api.redact import REDACTED, Redactor
    from scim_bridge.api.schemas import build_schemas
    from scim_bridge.workers.settings import load_settings

    schemas = build_schemas(load_settings(auth_mode="none"))
    redactor = Redactor((schemas.user, schemas.group))
    assert "password" in redactor.hidden  # User.password is writeOnly, returned never
    body = user_body() | {
        "PassWord": "a",
        "urn:okta:onprem_app:1.0:user:custom": {"departmentName": "Sales", "apiToken": "b"},
    }
    patch = {
        "schemas": [PATCH_OP],
        "Operations": [
            {"op": "replace", "path": "password", "value": "c"},
            {"op": "replace", "value": {"password": "d", "active": False}},
            {"op": "replace", "path": "name.givenName", "value": "Janet"},
        ],
    }
    clean = redactor.body(body)
    assert clean["PassWord"] == REDACTED and clean["userName"] == "jane@example.com"
    custom = clean["urn:okta:onprem_app:1.0:user:custom"]
    assert custom == {"departmentName": "Sales", "apiToken": REDACTED}
    operations = redactor.body(patch)["Operations"]
    assert operations[0]["value"] == REDACTED
    assert operations[1]["value"] == {"password": REDACTED, "active": False}
    assert operations[2]["value"] == "Janet"
