"""SCIM 2.0 as Okta's spec tests and Okta-built integrations use it, plus the SCIM 2.0 extras."""

from __future__ import annotations

import io
import json
import logging
import time

import httpx

from scim_bridge.cli.processes import wait_until
from scim_bridge.workers import logs
from tests.okta import CUSTOM, v2_user
from tests.support import TOKEN

USERS = "/scim/v2/Users"
HEADERS = {"Authorization": TOKEN, "Content-Type": "application/json"}


def test_okta_scim2_spec_test_sequence(gunicorn, legacy):
    """Okta's SCIM 2.0 spec tests, in their order."""
    with httpx.Client(base_url=gunicorn.base_url, headers=HEADERS, timeout=10) as http:
        body = v2_user("spec.test@example.com")
        body.pop(CUSTOM)
        created = http.post(USERS, json=body)  # application/json, not scim+json
        assert created.status_code == 201, created.text
        assert created.json()["name"] == {"familyName": "LastName", "givenName": "FirstName"}
        assert created.json()["active"] is True
        first = http.get(USERS, params={"count": 1, "startIndex": 1}).json()
        assert isinstance(first["totalResults"], int) and isinstance(first["itemsPerPage"], int)
        assert first["Resources"][0]["userName"]
        rid = created.json()["id"]
        assert http.get(f"{USERS}/{rid}").json()["id"] == rid
        none = http.get(USERS, params={"filter": 'userName eq "nobody-here@example.com"'}).json()
        assert none["totalResults"] == 0
        missing = http.get(f"{USERS}/010101001010101")
        assert missing.status_code == 404 and missing.json()["detail"]
        assert http.post(USERS, json=body).status_code == 409
        upper = http.get(USERS, params={"filter": 'userName eq "SPEC.TEST@EXAMPLE.COM"'})
        assert upper.status_code == 200 and upper.json()["totalResults"] == 1
        started = time.monotonic()
        assert http.get("/scim/v2/Groups").status_code == 200
        assert time.monotonic() - started < 0.6
        bad = httpx.get(f"{gunicorn.base_url}{USERS}", headers={"Authorization": "Bearer nope"})
        assert bad.status_code == 401 and bad.json()["schemas"] == [
            "urn:ietf:params:scim:api:messages:2.0:Error"
        ]


def test_the_okta_create_body_in_scim2_with_the_custom_extension(gunicorn, legacy):
    with httpx.Client(base_url=gunicorn.base_url, headers=HEADERS, timeout=10) as http:
        created = http.post(USERS, json=v2_user("custom@example.com")).json()
        assert created[CUSTOM]["departmentName"] == "Testing User"
        schemas = http.get(f"/scim/v2/Schemas/{CUSTOM}")
        assert schemas.status_code == 200
        assert {a["name"] for a in schemas.json()["attributes"]} == {
            "isAdmin",
            "isOkta",
            "departmentName",
        }


def test_passwords_never_reach_a_response_a_log_line_or_redis(client, legacy, store, caplog):
    secret = "Pa55-never-shown-ZQX"
    caplog.set_level(logging.DEBUG)
    # The api's and the (in-process) worker's lines as they are written in production too.
    written = io.StringIO()
    as_json = logging.StreamHandler(written)
    as_json.setFormatter(logs.JsonFormatter())
    as_json.addFilter(logs.ContextFilter())
    logging.getLogger().addHandler(as_json)
    try:
        _write_passwords(client, legacy, store, secret)
    finally:
        logging.getLogger().removeHandler(as_json)
    assert secret not in caplog.text
    lines = [json.loads(line) for line in written.getvalue().splitlines()]
    assert lines and secret not in written.getvalue()


def _write_passwords(client, legacy, store, secret):
    created = client.simulate_post(USERS, json=v2_user("secret@example.com", password=secret))
    rid = created.json["id"]
    changed = client.simulate_put(
        f"{USERS}/{rid}", json=v2_user("secret@example.com", password=secret + "2")
    )
    patched = client.simulate_patch(
        f"{USERS}/{rid}",
        json={
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "path": "password", "value": secret + "3"}],
        },
    )
    assert patched.status_code == 200, patched.text
    wait_until(lambda: store.backlog() == 0)
    assert legacy.adapter.passwords["u1"] == secret + "3"
    for response in (
        created,
        changed,
        patched,
        client.simulate_get(f"{USERS}/{rid}"),
        client.simulate_get(USERS),
    ):
        assert secret not in response.text and "password" not in response.json
    for key in store.redis.scan_iter(match="*", count=1000):
        kind = store.redis.type(key).decode()
        if kind == "string":
            values = [store.redis.get(key)]
        elif kind == "hash":
            values = list(store.redis.hgetall(key).values())
        elif kind == "list":
            values = store.redis.lrange(key, 0, -1)
        elif kind in ("set", "zset"):
            values = (
                list(store.redis.smembers(key)) if kind == "set" else store.redis.zrange(key, 0, -1)
            )
        else:
            values = []
        for value in values:
            assert secret.encode() not in (value or b""), key


def test_search_sort_and_respond_async(client, legacy):
    for name in ("carol", "alice", "bob"):
        client.simulate_post(USERS, json=v2_user(f"{name}@example.com", displayName=name.title()))
    sorted_page = client.simulate_get(
        USERS, params={"sortBy": "userName", "sortOrder": "descending"}
    ).json
    assert [r["userName"] for r in sorted_page["Resources"]] == [
        "carol@example.com",
        "bob@example.com",
        "alice@example.com",
    ]
    search = {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
        "filter": 'userName sw "a" or userName sw "b"',
        "sortBy": "displayName",
        "attributes": ["userName"],
        "startIndex": 1,
        "count": 10,
    }
    found = client.simulate_post(f"{USERS}/.search", json=search)
    assert found.status_code == 200, found.text
    assert [r["userName"] for r in found.json["Resources"]] == [
        "alice@example.com",
        "bob@example.com",
    ]
    assert set(found.json["Resources"][0]) == {"schemas", "id", "userName"}
    root = client.simulate_post(
        "/scim/v2/.search",
        json={
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
            "filter": 'userName eq "bob@example.com"',
        },
    )
    assert root.status_code == 200 and root.json["totalResults"] == 1
    accepted = client.simulate_post(
        USERS, json=v2_user("async@example.com"), headers={"Prefer": "respond-async"}
    )
    assert accepted.status_code == 202
    assert accepted.headers["Preference-Applied"] == "respond-async"
    assert accepted.headers["Location"].endswith(accepted.json["id"])
    wait_until(lambda: len(legacy.adapter.users) == 4)


def test_scim2_answers_are_valid_json_in_scim_json(client, legacy):
    response = client.simulate_get("/scim/v2/ResourceTypes")
    assert response.headers["Content-Type"] == "application/scim+json"
    json.loads(response.text)
