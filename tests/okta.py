"""The Okta agent's requests (docs/architecture.md, "The Okta agent"), and a client that holds every SCIM 1.1 answer to the
strict SCIM 1.x parser the agent uses.
"""

from __future__ import annotations

import copy
from typing import Any

import falcon.testing

from scim_bridge.check.strict_v1 import strict_v1_list_problems, strict_v1_problems
from tests.support import TOKEN

V1_CORE = "urn:scim:schemas:core:1.0"
CUSTOM = "urn:okta:onprem_app:1.0:user:custom"

# The create body of Okta's documentation, as the agent sends it.
OKTA_CREATE = {
    "schemas": [V1_CORE, CUSTOM],
    "userName": "myemail@example.com",
    "emails": [
        {"primary": True, "value": "myemail@example.com", "type": "primary"},
        {"primary": False, "value": "mypersonalemail@example.com", "type": "secondary"},
    ],
    "phoneNumbers": [{"value": "123-444-5555", "type": "mobile"}],
    "name": {"familyName": "LastName", "givenName": "FirstName"},
    "active": True,
    "password": "verySecure",
    CUSTOM: {"isAdmin": False, "isOkta": False, "departmentName": "Testing User"},
}


def okta_user(user_name: str = "myemail@example.com", **changes: Any) -> dict[str, Any]:
    """The agent's create body for ``user_name``, with ``changes`` applied."""
    body = copy.deepcopy(OKTA_CREATE)
    body["userName"] = user_name
    body["emails"][0]["value"] = user_name
    body.update(changes)
    return body


def v2_user(user_name: str, **changes: Any) -> dict[str, Any]:
    """The same user in SCIM 2.0."""
    body = okta_user(user_name, **changes)
    body["schemas"] = ["urn:ietf:params:scim:schemas:core:2.0:User", CUSTOM]
    return body


class StrictV1Client:
    """A Falcon test client for SCIM 1.1 paths that fails on any answer the agent would reject."""

    def __init__(self, app: Any, prefix: str = "/scim") -> None:
        self.client = falcon.testing.TestClient(app, headers={"Authorization": TOKEN})
        self.prefix = prefix
        self.checked = 0

    def _check(self, method: str, path: str, result: falcon.testing.Result) -> None:
        if result.status_code >= 400 or not result.text:
            if result.status_code >= 400:
                body = result.json
                assert isinstance(body.get("Errors"), list) and isinstance(
                    body.get("errors"), list
                ), body
                assert "urn:ietf:params:scim" not in result.text
            return
        segments = path.split("?")[0].rstrip("/").split("/")
        if "Users" in segments:
            kind = "User"
        elif "Groups" in segments:
            kind = "Group"
        else:
            assert "urn:ietf:params:scim" not in result.text, result.text
            return
        document = result.json
        if segments[-1] in ("Users", "Groups"):
            problems = (
                strict_v1_problems(kind, document)
                if method == "POST"
                else strict_v1_list_problems(kind, document)
            )
        else:
            problems = strict_v1_problems(kind, document)
        assert problems == [], (method, path, problems)
        self.checked += 1

    def request(self, method: str, path: str, **kwargs: Any) -> falcon.testing.Result:
        result = self.client.simulate_request(method, self.prefix + path, **kwargs)
        self._check(method, path, result)
        return result

    def get(self, path: str, **kwargs: Any) -> falcon.testing.Result:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> falcon.testing.Result:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> falcon.testing.Result:
        return self.request("PUT", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> falcon.testing.Result:
        return self.request("DELETE", path, **kwargs)
