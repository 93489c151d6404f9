"""How the check talks to a connector: the two SCIM versions it speaks, the HTTP exchanges and
the credentials it sends."""

from __future__ import annotations

import abc
import argparse
import base64
import json
import ssl
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from scim_bridge.check.strict_v1 import (
    V1_CORE,
    V1_CUSTOM_USER,
    V2_ERROR,
    V2_GROUP,
    V2_LIST,
    V2_USER,
    listed_resources,
    paging_problems,
    strict_v1_list_problems,
    strict_v1_problems,
)


# The two SCIM versions ----------------------------------------------------------------------------
@dataclass
class PushedUser:
    """A user the check pushed, with the state Okta would send in its next whole-user PUT."""

    user_name: str
    given_name: str
    active: bool
    id: str = ""


class ScimVersion(abc.ABC):
    """A SCIM version the check speaks: paths, bodies, and what an answer must be.

    (Not the server's ``scim_bridge.api.dialects.Dialect``: this is the client's side.)
    """

    version = ""
    config_path = ""
    group_schema = ""

    @abc.abstractmethod
    def user_body(self, user: PushedUser, password: str | None) -> dict[str, Any]:
        """The whole user as the agent sends it in a POST or PUT."""

    @abc.abstractmethod
    def resource_problems(self, kind: str, document: Mapping[str, Any]) -> list[str]:
        """What the agent would reject in a User or Group answer."""

    @abc.abstractmethod
    def list_problems(self, kind: str, document: Mapping[str, Any]) -> list[str]:
        """What the agent would reject in a ListResponse answer."""

    @abc.abstractmethod
    def error_problems(self, document: Mapping[str, Any]) -> list[str]:
        """What is missing from an error body the agent shows the administrator."""

    def group_body(self, name: str, members: Sequence[PushedUser], rid: str) -> dict[str, Any]:
        """The whole group as the agent sends it in a POST (client-side id) or PUT."""
        return {
            "schemas": [self.group_schema],
            "id": rid,
            "displayName": name,
            "members": [{"value": m.id, "display": m.user_name} for m in members],
        }


class ScimV1(ScimVersion):
    """SCIM 1.1, the agent's default: Okta's example bodies and the strict 1.x parser."""

    version = "1.1"
    config_path = "ServiceProviderConfigs"
    group_schema = V1_CORE

    def user_body(self, user: PushedUser, password: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "schemas": [V1_CORE, V1_CUSTOM_USER],
            "userName": user.user_name,
            "emails": [
                {"primary": True, "value": user.user_name, "type": "primary"},
                {"primary": False, "value": f"personal.{user.user_name}", "type": "secondary"},
            ],
            "phoneNumbers": [{"value": "123-444-5555", "type": "mobile"}],
            "name": {"familyName": "Check", "givenName": user.given_name},
            "active": user.active,
            V1_CUSTOM_USER: {"isAdmin": False, "isOkta": False, "departmentName": "Testing User"},
        }
        return _with_identity(body, user, password)

    def resource_problems(self, kind: str, document: Mapping[str, Any]) -> list[str]:
        return strict_v1_problems(kind, document)

    def list_problems(self, kind: str, document: Mapping[str, Any]) -> list[str]:
        return strict_v1_list_problems(kind, document)

    def error_problems(self, document: Mapping[str, Any]) -> list[str]:
        errors = document.get("Errors", document.get("errors"))
        if not isinstance(errors, list) or not errors:
            return ["the error body has no 'Errors' (or 'errors') list"]
        return []


class ScimV2(ScimVersion):
    """SCIM 2.0 (RFC 7643/7644), as the agent speaks it under a ``/v2/`` base URL."""

    version = "2.0"
    config_path = "ServiceProviderConfigs"  # the singular is RFC-only
    group_schema = V2_GROUP

    def user_body(self, user: PushedUser, password: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "schemas": [V2_USER],
            "userName": user.user_name,
            "emails": [
                {"primary": True, "value": user.user_name, "type": "work"},
                {"primary": False, "value": f"personal.{user.user_name}", "type": "home"},
            ],
            "phoneNumbers": [{"value": "123-444-5555", "type": "mobile"}],
            "name": {"familyName": "Check", "givenName": user.given_name},
            "active": user.active,
        }
        return _with_identity(body, user, password)

    def resource_problems(self, kind: str, document: Mapping[str, Any]) -> list[str]:
        core = V2_USER if kind == "User" else V2_GROUP
        schemas = document.get("schemas")
        if not isinstance(schemas, list) or core not in schemas:
            return [f"'schemas' lacks {core!r}: {schemas!r}"]
        return []

    def list_problems(self, kind: str, document: Mapping[str, Any]) -> list[str]:
        problems = paging_problems(document)
        schemas = document.get("schemas")
        if not isinstance(schemas, list) or V2_LIST not in schemas:
            problems.append(f"'schemas' lacks {V2_LIST!r}: {schemas!r}")
        for index, resource in enumerate(listed_resources(document, problems)):
            if not isinstance(resource, Mapping):
                problems.append(f"Resources[{index}] is not a JSON object")
                continue
            problems += [f"Resources[{index}]: {p}" for p in self.resource_problems(kind, resource)]
        return problems

    def error_problems(self, document: Mapping[str, Any]) -> list[str]:
        problems = []
        if V2_ERROR not in (document.get("schemas") or []):
            problems.append(f"the error body lacks the schema {V2_ERROR!r}")
        if not document.get("detail"):
            problems.append("the error body has no 'detail'")
        return problems


def _with_identity(body: dict[str, Any], user: PushedUser, password: str | None) -> dict[str, Any]:
    # The agent's PUT carries the whole user, id included; a password only when it pushes one.
    if user.id:
        body = {"schemas": body["schemas"], "id": user.id, **body}
    if password is not None:
        body["password"] = password
    return body


VERSIONS: dict[str, ScimVersion] = {"1.1": ScimV1(), "2.0": ScimV2()}


# Talking to the connector ------------------------------------------------------------------------
class StepFailed(Exception):
    """The connector answered a step differently from what the agent expects."""


class StepSkipped(Exception):
    """A step that cannot run: a capability not advertised, or what it needs was not made."""


@dataclass(frozen=True)
class Answer:
    """One request and the connector's answer to it."""

    method: str
    target: str
    status: int
    elapsed_s: float
    headers: httpx.Headers
    text: str

    @property
    def request(self) -> str:
        """The request line, relative to the base URL."""
        return f"{self.method} {self.target}"

    @property
    def timing(self) -> str:
        """``201 in 0.04 s``."""
        return f"{self.status} in {self.elapsed_s:.2f} s"

    def excerpt(self, limit: int = 400) -> str:
        """The body, shortened for a report line."""
        text = " ".join(self.text.split())
        return text if len(text) <= limit else text[:limit] + "…"

    def document(self) -> dict[str, Any]:
        """The body as a JSON object."""
        try:
            parsed = json.loads(self.text)
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            raise StepFailed(f"{self.request} answered {self.status} without a JSON object")
        return parsed


class Connector:
    """The connector under test, reached as the agent reaches it."""

    def __init__(
        self,
        base_url: str,
        credentials: Mapping[str, str],
        *,
        timeout_s: float,
        verify: ssl.SSLContext | bool,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/") + "/"
        self.credentials = dict(credentials)
        self.http = httpx.Client(
            timeout=timeout_s, verify=verify, follow_redirects=False, transport=transport
        )
        self.last: Answer | None = None

    def close(self) -> None:
        """Close the connection pool."""
        self.http.close()

    def send(
        self,
        method: str,
        target: str,
        body: Mapping[str, Any] | None = None,
        *,
        credentials: Mapping[str, str] | None = None,
    ) -> Answer:
        """``method`` on ``target`` (a path under the base URL, with its query) with a JSON body."""
        headers = {"Accept": "application/json"}
        headers.update(self.credentials if credentials is None else credentials)
        content = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            content = json.dumps(body).encode()
        started = time.perf_counter()
        response = self.http.request(
            method, self.base_url + target.lstrip("/"), headers=headers, content=content
        )
        self.last = Answer(
            method,
            target,
            response.status_code,
            time.perf_counter() - started,
            response.headers,
            response.text,
        )
        return self.last


def basic_credentials(pair: str) -> dict[str, str]:
    """``USER:PASSWORD`` as an HTTP Basic ``Authorization`` header."""
    user, colon, _ = pair.partition(":")
    if not colon or not user:
        raise argparse.ArgumentTypeError("expected USER:PASSWORD")
    return {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode()}


def header_credentials(line: str) -> dict[str, str]:
    """``'Name: value'`` as one header."""
    name, colon, value = line.partition(":")
    if not colon or not name.strip() or not value.strip():
        raise argparse.ArgumentTypeError("expected 'Name: value'")
    return {name.strip(): value.strip()}


def near_miss(credentials: Mapping[str, str]) -> dict[str, str]:
    """The same credentials with their last character changed."""
    if "Authorization" in credentials and credentials["Authorization"].startswith("Basic "):
        user, _, password = (
            base64.b64decode(credentials["Authorization"][6:]).decode().partition(":")
        )
        return basic_credentials(f"{user}:{_changed(password)}")
    return {name: _changed(value) for name, value in credentials.items()}


def _changed(secret: str) -> str:
    return secret[:-1] + ("y" if secret.endswith("x") else "x")


# The check -------------------------------------------------------------------------------------
