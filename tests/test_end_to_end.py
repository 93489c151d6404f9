"""Through gunicorn: the api in its production server, a real Celery worker, a real Redis."""

from __future__ import annotations

import concurrent.futures

import httpx

from scim_bridge.adapters.memory import MemoryAdapter
from scim_bridge.adapters.simulate import SimulatedLegacy
from scim_bridge.cli.processes import wait_until
from tests.support import TOKEN
from tests.test_users import user_body

HEADERS = {"Authorization": TOKEN, "Content-Type": "application/scim+json"}


def test_post_then_get_at_once_returns_the_user(gunicorn, legacy):
    with httpx.Client(base_url=gunicorn.base_url, headers=HEADERS, timeout=10) as http:
        created = http.post("/scim/v2/Users", json=user_body("e2e@example.com"))
        assert created.status_code == 201, created.text
        assert created.headers["content-type"] == "application/scim+json"
        rid = created.json()["id"]
        fetched = http.get(f"/scim/v2/Users/{rid}")
        assert fetched.status_code == 200
        assert fetched.json()["userName"] == "e2e@example.com"
        assert fetched.json()["meta"]["location"] == f"{gunicorn.base_url}/scim/v2/Users/{rid}"
        assert http.delete(f"/scim/v2/Users/{rid}").status_code == 204
        assert http.get(f"/scim/v2/Users/{rid}").status_code == 404


def test_two_concurrent_creates_of_one_user_name_give_one_201_and_one_409(gunicorn, legacy):
    def create(_: int) -> int:
        with httpx.Client(base_url=gunicorn.base_url, headers=HEADERS, timeout=10) as http:
            return http.post("/scim/v2/Users", json=user_body("race@example.com")).status_code

    for _ in range(5):
        legacy_users_before = len(legacy.adapter.users)
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            statuses = sorted(pool.map(create, range(2)))
        if statuses[0] == 201:
            assert statuses == [201, 409]
            wait_until(lambda: len(legacy.adapter.users) == legacy_users_before + 1)
            return
        assert statuses == [409, 409]  # created by an earlier round


def test_twenty_concurrent_puts_end_with_the_last_applied_and_few_legacy_calls(
    gunicorn, legacy, store
):
    inner = MemoryAdapter()
    legacy.use(SimulatedLegacy(inner, latency_s=0.2))
    with httpx.Client(base_url=gunicorn.base_url, headers=HEADERS, timeout=30) as http:
        rid = http.post("/scim/v2/Users", json=user_body("busy@example.com")).json()["id"]

        def put(i: int) -> int:
            body = user_body("busy@example.com", displayName=f"version {i}")
            return http.put(f"/scim/v2/Users/{rid}", json=body).status_code

        with concurrent.futures.ThreadPoolExecutor(20) as pool:
            assert set(pool.map(put, range(20))) == {200}
        final = http.get(f"/scim/v2/Users/{rid}").json()
    assert final["meta"]["version"] == 'W/"21"'
    wait_until(lambda: store.backlog() == 0, timeout=30)
    assert inner.users["u1"]["displayName"] == final["displayName"]
    updates = [c for c in inner.calls if c[0] == "update_user"]
    assert 1 <= len(updates) <= 6, inner.calls


def test_discovery_endpoints_and_405_for_writes(gunicorn, legacy):
    with httpx.Client(base_url=gunicorn.base_url, headers=HEADERS, timeout=10) as http:
        config = http.get("/scim/v2/ServiceProviderConfig")
        assert config.status_code == 200 and config.json()["patch"]["supported"] is True
        types = http.get("/scim/v2/ResourceTypes").json()
        assert {r["id"] for r in types["Resources"]} == {"User", "Group"}
        schemas = http.get("/scim/v2/Schemas").json()
        assert "urn:ietf:params:scim:schemas:core:2.0:User" in {
            r["id"] for r in schemas["Resources"]
        }
        refused = http.post("/scim/v2/ServiceProviderConfig", json={})
        assert refused.status_code == 405
        assert refused.json()["status"] == "405"
        unauthenticated = httpx.get(f"{gunicorn.base_url}/scim/v2/Users")
        assert unauthenticated.status_code == 401 and unauthenticated.json()["status"] == "401"
