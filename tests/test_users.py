"""SCIM 2.0 Users, in-process, with a real Redis and a real Celery worker."""

from __future__ import annotations

import json

from scim_bridge.cli.processes import wait_until

USERS = "/scim/v2/Users"


def user_body(user_name: str = "jane@example.com", **extra):
    body = {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": user_name,
        "name": {"givenName": "Jane", "familyName": "Doe"},
        "emails": [{"value": user_name, "type": "work", "primary": True}],
        "active": True,
    }
    body.update(extra)
    return body


def test_a_created_user_is_readable_at_once_and_reaches_the_legacy_application(client, legacy):
    created = client.simulate_post(USERS, json=user_body(password="s3cret!"))
    assert created.status_code == 201, created.text
    user = created.json
    assert user["id"] and "password" not in user
    assert created.headers["Location"].endswith(f"{USERS}/{user['id']}")
    assert user["meta"]["version"] == 'W/"1"'
    assert user["meta"]["location"] == created.headers["Location"]
    fetched = client.simulate_get(f"{USERS}/{user['id']}")
    assert fetched.status_code == 200
    assert fetched.json["userName"] == "jane@example.com"
    assert fetched.headers["ETag"] == 'W/"1"'
    assert fetched.headers["Content-Type"] == "application/scim+json"
    assert ("create_user", "u1") in legacy.adapter.calls
    assert legacy.adapter.passwords["u1"] == "s3cret!"


def test_delete_then_get_is_404(client, legacy):
    rid = client.simulate_post(USERS, json=user_body()).json["id"]
    assert client.simulate_delete(f"{USERS}/{rid}").status_code == 204
    gone = client.simulate_get(f"{USERS}/{rid}")
    assert gone.status_code == 404
    assert gone.json["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
    assert gone.json["status"] == "404"
    wait_until(lambda: ("delete_user", "u1") in legacy.adapter.calls)


def test_a_put_that_only_flips_active_reaches_the_adapter_as_a_deactivation(client, legacy):
    rid = client.simulate_post(USERS, json=user_body()).json["id"]
    response = client.simulate_put(f"{USERS}/{rid}", json=user_body(active=False))
    assert response.status_code == 200, response.text
    assert response.json["active"] is False
    wait_until(lambda: ("deactivate_user", "u1") in legacy.adapter.calls)
    assert [c for c in legacy.adapter.calls if c[1] == "u1"] == [
        ("create_user", "u1"),
        ("deactivate_user", "u1"),
    ]


def test_duplicate_user_name_is_409_uniqueness_case_insensitively(client, legacy):
    assert client.simulate_post(USERS, json=user_body("Bob@example.com")).status_code == 201
    again = client.simulate_post(USERS, json=user_body("bob@EXAMPLE.com"))
    assert again.status_code == 409
    assert again.json["scimType"] == "uniqueness"


def test_a_legacy_refusal_within_the_confirmation_time_is_a_400_with_the_legacy_message(
    client, legacy
):
    legacy.adapter.refuse["refused@example.com"] = "department 'Nowhere' does not exist"
    refused = client.simulate_post(USERS, json=user_body("refused@example.com"))
    assert refused.status_code == 400
    assert "department 'Nowhere' does not exist" in refused.json["detail"]
    # the refused create disappears from the read model
    listed = client.simulate_get(USERS, params={"filter": 'userName eq "refused@example.com"'})
    assert listed.json["totalResults"] == 0


def test_filter_paging_and_projection(client, legacy):
    ids = [
        client.simulate_post(USERS, json=user_body(f"user{i}@example.com")).json["id"]
        for i in range(7)
    ]
    page = client.simulate_get(USERS, params={"startIndex": "3", "count": "2"}).json
    assert page["totalResults"] == 7 and page["startIndex"] == 3 and page["itemsPerPage"] == 2
    assert [r["id"] for r in page["Resources"]] == ids[2:4]
    found = client.simulate_get(USERS, params={"filter": 'userName eq "USER3@example.com"'}).json
    assert [r["id"] for r in found["Resources"]] == [ids[3]]
    either = client.simulate_get(
        USERS,
        params={"filter": 'userName eq "user1@example.com" or emails.value eq "user5@example.com"'},
    ).json
    assert [r["id"] for r in either["Resources"]] == [ids[1], ids[5]]
    scanned = client.simulate_get(
        USERS, params={"filter": 'userName sw "user" and not (userName ew "2@example.com")'}
    ).json
    assert scanned["totalResults"] == 6
    projected = client.simulate_get(f"{USERS}/{ids[0]}", params={"attributes": "userName"}).json
    assert set(projected) == {"schemas", "id", "userName"}
    bad = client.simulate_get(USERS, params={"filter": "userName eq"})
    assert bad.status_code == 400 and bad.json["scimType"] == "invalidFilter"


def test_patch_okta_and_entra_shapes(client, legacy):
    rid = client.simulate_post(USERS, json=user_body()).json["id"]
    okta = {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "value": {"active": False}}],
    }
    response = client.simulate_patch(f"{USERS}/{rid}", json=okta)
    assert response.status_code == 200, response.text
    assert response.json["active"] is False
    entra = {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [
            {"op": "Replace", "value": {"active": "True"}},
            {"op": "replace", "path": 'emails[type eq "work"].value', "value": "new@example.com"},
        ],
    }
    response = client.simulate_patch(f"{USERS}/{rid}", json=entra)
    assert response.status_code == 200, response.text
    assert response.json["active"] is True
    assert response.json["emails"][0]["value"] == "new@example.com"
    bad = client.simulate_patch(
        f"{USERS}/{rid}",
        json={
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "path": "nosuch", "value": 1}],
        },
    )
    assert bad.status_code == 400 and bad.json["scimType"] in ("invalidPath", "noTarget")


def test_if_match_mismatch_is_412(client, legacy):
    rid = client.simulate_post(USERS, json=user_body()).json["id"]
    stale = client.simulate_put(f"{USERS}/{rid}", json=user_body(), headers={"If-Match": 'W/"7"'})
    assert stale.status_code == 412
    fresh = client.simulate_put(f"{USERS}/{rid}", json=user_body(), headers={"If-Match": 'W/"1"'})
    assert fresh.status_code == 200


def test_bad_input_gets_a_scim_error_and_writes_nothing(client, legacy, store):
    cases = [
        (b"{not json", "invalidSyntax"),
        (
            json.dumps(
                {
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                    "name": {"givenName": "x"},
                }
            ).encode(),
            None,
        ),
        (json.dumps(user_body(bogus=1)).encode(), None),
        (json.dumps(user_body(active="maybe")).encode(), None),
    ]
    for body, scim_type in cases:
        response = client.simulate_post(
            USERS, body=body, headers={"Content-Type": "application/scim+json"}
        )
        assert response.status_code == 400, (body, response.text)
        assert response.json["status"] == "400"
        assert response.json["detail"]
        if scim_type:
            assert response.json["scimType"] == scim_type
    huge = client.simulate_post(USERS, json=user_body(displayName="x" * 2_000_000))
    assert huge.status_code == 413
    assert store.count(store_kind_user()) == 0


def store_kind_user():
    from scim_bridge.store import Kind

    return Kind.USER


def test_unauthenticated_requests_get_401_with_a_scim_body(client):
    response = client.simulate_get(USERS, headers={"Authorization": "Bearer wrong"})
    assert response.status_code == 401
    assert response.json["status"] == "401"
    assert "WWW-Authenticate" in response.headers


def test_count_over_the_maximum_is_capped(client, legacy, settings):
    response = client.simulate_get(USERS, params={"count": str(settings.max_page_size * 10)})
    assert response.status_code == 200


def test_if_match_takes_a_list_any_version_or_the_strong_form_and_a_blank_one_matches_nothing(
    client, legacy
):
    rid = client.simulate_post(USERS, json=user_body()).json["id"]
    blank = client.simulate_put(f"{USERS}/{rid}", json=user_body(), headers={"If-Match": " "})
    assert blank.status_code == 412, blank.text
    listed = client.simulate_put(
        f"{USERS}/{rid}", json=user_body(), headers={"If-Match": 'W/"9", W/"1"'}
    )
    assert listed.status_code == 200, listed.text
    assert listed.headers["ETag"] == 'W/"2"' == listed.json["meta"]["version"]
    strong = client.simulate_put(f"{USERS}/{rid}", json=user_body(), headers={"If-Match": '"2"'})
    assert strong.status_code == 200 and strong.headers["ETag"] == 'W/"3"'
    anything = client.simulate_put(f"{USERS}/{rid}", json=user_body(), headers={"If-Match": "*"})
    assert anything.status_code == 200
    got = client.simulate_get(f"{USERS}/{rid}")
    assert got.headers["ETag"] == 'W/"4"' == got.json["meta"]["version"]
