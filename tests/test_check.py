"""``scim-bridge check`` replays the Okta agent's lifecycle against a live connector (gunicorn, a
real Celery worker, a real Redis), and its strict SCIM 1.x checker names what the agent rejects.
"""

from __future__ import annotations

import io

import httpx
import pytest

from scim_bridge.check import lifecycle, protocol, strict_v1
from scim_bridge.check import main as check
from scim_bridge.cli import main as cli
from scim_bridge.cli.processes import free_port, wait_until
from tests.support import TOKEN

V1_USER = {
    "schemas": ["urn:scim:schemas:core:1.0", "urn:okta:onprem_app:1.0:user:custom"],
    "id": "101",
    "userName": "jane@example.com",
    "name": {"givenName": "Jane", "familyName": "Doe"},
    "emails": [{"value": "jane@example.com", "type": "primary", "primary": True}],
    "active": True,
    "urn:okta:onprem_app:1.0:user:custom": {"isAdmin": False},
    "meta": {"created": "2024-01-01T00:00:00Z", "lastModified": "2024-01-01T00:00:00Z"},
}


def run_check(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = check.main(list(argv), out=out, err=err)
    return status, out.getvalue(), err.getvalue()


def test_the_whole_agent_lifecycle_passes_in_scim_2(gunicorn, legacy):
    status, out, err = run_check(
        f"{gunicorn.base_url}/scim/v2/", "--scim", "2.0", "--header", f"Authorization: {TOKEN}"
    )
    assert status == 0, out
    assert out.splitlines()[-1].endswith(" 0 failed, 0 skipped"), out
    assert "FAIL" not in out
    assert err == ""  # stderr is no terminal and --progress was not given
    # cleanup deactivated (never deleted) both users it created, in the legacy app too
    wait_until(lambda: len(legacy.adapter.users) == 2 and legacy.adapter.groups == {})
    wait_until(lambda: not any(u.get("active") for u in legacy.adapter.users.values()))


def test_the_whole_agent_lifecycle_passes_in_scim_1_1(gunicorn, legacy):
    status, out, _ = run_check(
        f"{gunicorn.base_url}/scim", "--scim", "1.1", "--header", f"Authorization: {TOKEN}"
    )
    assert status == 0, out
    assert "FAIL" not in out


def test_the_dialect_follows_the_base_url_as_the_agent_does(gunicorn, legacy):
    status, out, _ = run_check(
        f"{gunicorn.base_url}/scim/v2", "--header", f"Authorization: {TOKEN}"
    )
    assert status == 0, out
    assert out.splitlines()[0].endswith("/scim/v2/ (SCIM 2.0)")
    status, out, _ = run_check(
        f"{gunicorn.base_url}/scim/v1/", "--header", f"Authorization: {TOKEN}"
    )
    assert status == 0, out
    assert out.splitlines()[0].endswith("/scim/v1/ (SCIM 1.1)")


def test_wrong_credentials_fail_every_step_with_exit_status_1_and_say_401(gunicorn, legacy, capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(
            ["check", f"{gunicorn.base_url}/scim/v2/", "--header", "Authorization: Bearer wrong"]
        )
    assert exited.value.code == 1
    out = capsys.readouterr().out
    assert "FAIL  capabilities         GET ServiceProviderConfigs answered 401, expected 200" in out
    failures = [line for line in out.splitlines() if line.startswith("FAIL")]
    assert failures and all("answered 401" in line for line in failures), out


def test_an_unreachable_connector_fails_once_and_skips_the_rest():
    status, out, _ = run_check(f"http://127.0.0.1:{free_port()}/scim/v2/", "--timeout", "2")
    assert status == 1
    assert out.splitlines()[-1] == "1 passed, 1 failed, 13 skipped", out
    assert "connector unreachable" in out


# The strict SCIM 1.x checker --------------------------------------------------------------------
def test_a_scim_1_1_user_with_its_extension_declared_passes_the_strict_check():
    assert strict_v1.strict_v1_problems("User", V1_USER) == []


def test_a_scim_2_urn_anywhere_in_a_1_1_user_is_named():
    user = {
        **V1_USER,
        "schemas": [*V1_USER["schemas"], "urn:ietf:params:scim:schemas:core:2.0:User"],
    }
    user["meta"] = {**V1_USER["meta"], "resourceType": "User"}
    user["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"] = {"department": "x"}
    problems = strict_v1.strict_v1_problems("User", user)
    assert any("'schemas[2]'" in p for p in problems), problems
    assert any("extension:enterprise:2.0:User" in p and "key" in p for p in problems), problems


def test_an_undeclared_extension_and_an_unknown_key_are_named():
    user = {**V1_USER, "schemas": ["urn:scim:schemas:core:1.0"], "resourceType": "User"}
    problems = strict_v1.strict_v1_problems("User", user)
    assert problems == [
        "extension key 'urn:okta:onprem_app:1.0:user:custom' is not declared in 'schemas'",
        "key 'resourceType' is not a SCIM 1.1 User attribute",
    ]


def test_a_1_1_resource_must_declare_the_core_schema():
    assert strict_v1.strict_v1_problems("Group", {"id": "7", "displayName": "Sales"}) == [
        "'schemas' is not a list of URNs: None"
    ]
    problems = strict_v1.strict_v1_problems(
        "Group", {"schemas": [], "members": [], "userName": "x"}
    )
    assert problems == [
        "'schemas' lacks 'urn:scim:schemas:core:1.0': []",
        "key 'userName' is not a SCIM 1.1 Group attribute",
    ]


def test_a_1_1_list_response_needs_integers_and_acceptable_members():
    page = {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
        "totalResults": "1",
        "startIndex": 1,
        "itemsPerPage": 1,
        "Resources": [{**V1_USER, "schemas": ["urn:scim:schemas:core:1.0"]}],
    }
    problems = strict_v1.strict_v1_list_problems("User", page)
    assert "'totalResults' is not an integer: '1'" in problems
    assert any(p.startswith("'schemas[0]' carries the SCIM 2.0 URN") for p in problems), problems
    assert any(p.startswith("Resources[0]: extension key") for p in problems), problems
    good = {"schemas": ["urn:scim:schemas:core:1.0"], "totalResults": 1, "startIndex": 1}
    good |= {"itemsPerPage": 1, "Resources": [V1_USER]}
    assert strict_v1.strict_v1_list_problems("User", good) == []


# The checker itself, against a fake connector ----------------------------------------------------
def paged_users(total: int, *, repeat_on_page: int | None = None):
    """A fake /Users listing of ``total`` users; one page may repeat the previous page's ids."""
    ids = [f"u{i}" for i in range(total)]

    def answer(request: httpx.Request) -> httpx.Response:
        start = int(request.url.params["startIndex"])
        count = int(request.url.params["count"])
        page = (start - 1) // count + 1
        first = start - 1 - (count if page == repeat_on_page else 0)
        chosen = ids[first : first + count]
        resources = [{"schemas": [strict_v1.V2_USER], "id": rid, "userName": rid} for rid in chosen]
        body = {"schemas": [strict_v1.V2_LIST], "totalResults": total, "startIndex": start}
        body |= {"itemsPerPage": len(resources), "Resources": resources}
        return httpx.Response(200, json=body)

    return httpx.MockTransport(answer)


def fake_checker(transport: httpx.MockTransport, progress: io.StringIO | None = None):
    connector = protocol.Connector(
        "http://connector/scim/v2", {}, timeout_s=5, verify=True, transport=transport
    )
    return lifecycle.Checker(
        connector, protocol.ScimV2(), unique_field="userName", out=io.StringIO(), progress=progress
    )


def test_a_long_import_shows_its_progress_and_reads_every_page():
    progress = io.StringIO()
    found, pages = fake_checker(paged_users(250), progress).import_all("Users", "User")
    assert len(found) == 250 and pages == 3
    assert progress.getvalue() == ("\r  imported 100/250\r  imported 200/250\r  imported 250/250\n")


def test_a_page_that_repeats_an_id_fails_the_import_naming_the_page_and_the_id():
    checker = fake_checker(paged_users(250, repeat_on_page=2))
    with pytest.raises(protocol.StepFailed, match=r"page 2 repeats id u0$"):
        checker.import_all("Users", "User")


def test_bad_credentials_are_a_near_miss_of_the_given_ones():
    basic = protocol.basic_credentials("okta:s3cret")
    assert protocol.near_miss(basic) == protocol.basic_credentials("okta:s3crex")
    header = protocol.header_credentials("X-Api-Key:  abc ")
    assert header == {"X-Api-Key": "abc"}
    assert protocol.near_miss(header) == {"X-Api-Key": "abx"}
