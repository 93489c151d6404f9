"""``scim-bridge check``: replay the Okta Provisioning Agent's requests against a running connector.

Like Okta's SDK tester, but for the whole lifecycle: capabilities, check-exists, push of a new and
of a pending user, full and incremental import, get by id, profile and password pushes,
deactivation, reactivation, a duplicate create, group push, bad credentials, and a cleanup that
deactivates every user the check created (Okta never deletes users). Each step prints PASS, FAIL
or SKIP with its reason; the exit status is 0 only when no step failed.

In SCIM 1.1 mode every User, Group and ListResponse answer also goes through a strict SCIM 1.x
check (:func:`strict_v1_problems`, :func:`strict_v1_list_problems`): the agent's parser rejects
a whole import page for one SCIM 2.0 URN or one unknown top-level key.
"""

from __future__ import annotations

import abc
import argparse
import base64
import json
import secrets
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, TextIO
from urllib.parse import quote

import httpx

HELP = "replay the Okta Provisioning Agent's requests against a running connector"

CAPABILITIES = frozenset(
    {
        "GROUP_PUSH",
        "IMPORT_NEW_USERS",
        "IMPORT_PROFILE_UPDATES",
        "PUSH_NEW_USERS",
        "PUSH_PASSWORD_UPDATES",
        "PUSH_PENDING_USERS",
        "PUSH_PROFILE_UPDATES",
        "PUSH_USER_DEACTIVATION",
        "REACTIVATE_USERS",
    }
)

V1_CORE = "urn:scim:schemas:core:1.0"
V1_PROVIDER_CONFIG = "urn:okta:schemas:scim:providerconfig:1.0"
V1_CUSTOM_USER = "urn:okta:onprem_app:1.0:user:custom"
V2_PREFIX = "urn:ietf:params:scim"
V2_USER = "urn:ietf:params:scim:schemas:core:2.0:User"
V2_GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
V2_LIST = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
V2_ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"

# The top-level attributes of SCIM 1.1 core Users and Groups (draft-scim-core-schema-01 §5, §7),
# compared case-insensitively as SCIM attribute names are.
V1_ATTRIBUTES = {
    "User": frozenset(
        """schemas id externalId meta userName name displayName nickName profileUrl title userType
        preferredLanguage locale timezone active password emails phoneNumbers ims photos addresses
        groups entitlements roles x509Certificates""".lower().split()
    ),
    "Group": frozenset("schemas id externalId meta displayName members".lower().split()),
}
V1_LIST_KEYS = frozenset("schemas totalResults startIndex itemsPerPage Resources".lower().split())
PAGING_KEYS = ("totalResults", "startIndex", "itemsPerPage")
PAGE_SIZE = 100


# The strict SCIM 1.x checks (reused by the test suite on every 1.1 answer) ------------------------
def strict_v1_problems(kind: str, document: Mapping[str, Any]) -> list[str]:
    """What the agent's strict SCIM 1.x parser would reject in a User or Group (``kind``).

    ``schemas`` must list ``urn:scim:schemas:core:1.0`` and every extension the resource carries;
    no ``urn:ietf:params:scim`` string may appear anywhere; every other top-level key must be a
    SCIM 1.1 core attribute of ``kind``. An empty list means the resource is acceptable.
    """
    if kind not in V1_ATTRIBUTES:
        raise ValueError(f"kind must be 'User' or 'Group', not {kind!r}")
    if not isinstance(document, Mapping):
        return [f"the {kind} is not a JSON object"]
    problems = _v2_urns(document, "")
    schemas = document.get("schemas")
    declared: set[str] = set()
    if not isinstance(schemas, list) or not all(isinstance(s, str) for s in schemas):
        problems.append(f"'schemas' is not a list of URNs: {schemas!r}")
    else:
        declared = {s.lower() for s in schemas}
        if V1_CORE not in declared:
            problems.append(f"'schemas' lacks {V1_CORE!r}: {schemas!r}")
    for key in document:
        lowered = key.lower()
        if lowered.startswith("urn:"):
            if V2_PREFIX not in lowered and lowered not in declared:
                problems.append(f"extension key {key!r} is not declared in 'schemas'")
        elif lowered not in V1_ATTRIBUTES[kind]:
            problems.append(f"key {key!r} is not a SCIM 1.1 {kind} attribute")
    return problems


def strict_v1_list_problems(kind: str, document: Mapping[str, Any]) -> list[str]:
    """What the agent's strict SCIM 1.x parser would reject in a ListResponse of ``kind``.

    Integer ``totalResults``/``startIndex``/``itemsPerPage``, ``schemas`` (when present) listing
    ``urn:scim:schemas:core:1.0``, no other top-level key, no ``urn:ietf:params:scim`` string,
    and every member of ``Resources`` acceptable to :func:`strict_v1_problems`.
    """
    if not isinstance(document, Mapping):
        return ["the ListResponse is not a JSON object"]
    head = {k: v for k, v in document.items() if k != "Resources"}
    problems = _v2_urns(head, "") + _paging_problems(document)
    schemas = document.get("schemas")
    if schemas is not None and (
        not isinstance(schemas, list) or V1_CORE not in [str(s).lower() for s in schemas]
    ):
        problems.append(f"'schemas' of the ListResponse lacks {V1_CORE!r}: {schemas!r}")
    problems += [
        f"key {key!r} is not a SCIM 1.1 ListResponse attribute"
        for key in document
        if key.lower() not in V1_LIST_KEYS
    ]
    for index, resource in enumerate(_resources(document, problems)):
        problems += [f"Resources[{index}]: {p}" for p in strict_v1_problems(kind, resource)]
    return problems


def _v2_urns(value: Any, path: str) -> list[str]:
    """Every key or string value under ``value`` that carries a SCIM 2.0 URN, by its path."""
    found: list[str] = []
    if isinstance(value, Mapping):
        for key, member in value.items():
            where = f"{path}.{key}" if path else str(key)
            if V2_PREFIX in str(key).lower():
                found.append(f"key {where!r} is a SCIM 2.0 URN")
            found += _v2_urns(member, where)
    elif isinstance(value, list):
        for index, member in enumerate(value):
            found += _v2_urns(member, f"{path}[{index}]")
    elif isinstance(value, str) and V2_PREFIX in value.lower():
        found.append(f"{path!r} carries the SCIM 2.0 URN {value!r}")
    return found


def _paging_problems(document: Mapping[str, Any]) -> list[str]:
    problems = []
    for key in PAGING_KEYS:
        value = document.get(key)
        if not isinstance(value, int) or isinstance(value, bool):
            problems.append(f"{key!r} is not an integer: {value!r}")
    return problems


def _resources(document: Mapping[str, Any], problems: list[str]) -> list[Any]:
    resources = document.get("Resources", [])
    if not isinstance(resources, list):
        problems.append(f"'Resources' is not a list: {resources!r}")
        return []
    return resources


# The two dialects -------------------------------------------------------------------------------
@dataclass
class PushedUser:
    """A user the check pushed, with the state Okta would send in its next whole-user PUT."""

    user_name: str
    given_name: str
    active: bool
    id: str = ""


class Dialect(abc.ABC):
    """What differs between SCIM 1.1 and SCIM 2.0: paths, bodies, and what an answer must be."""

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


class ScimV1(Dialect):
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


class ScimV2(Dialect):
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
        problems = _paging_problems(document)
        schemas = document.get("schemas")
        if not isinstance(schemas, list) or V2_LIST not in schemas:
            problems.append(f"'schemas' lacks {V2_LIST!r}: {schemas!r}")
        for index, resource in enumerate(_resources(document, problems)):
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


DIALECTS: dict[str, Dialect] = {"1.1": ScimV1(), "2.0": ScimV2()}


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
        verify: bool,
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
def _short(rid: str) -> str:
    return rid if len(rid) <= 8 else rid[:8] + "…"


def _has_password(document: Mapping[str, Any]) -> bool:
    return any(key.lower() == "password" for key in document)


class Checker:
    """The agent's requests, step by step, each reported as PASS, FAIL or SKIP."""

    def __init__(
        self,
        connector: Connector,
        dialect: Dialect,
        *,
        unique_field: str,
        out: TextIO,
        progress: TextIO | None,
    ) -> None:
        self.connector = connector
        self.dialect = dialect
        self.unique_field = unique_field
        self.out = out
        self.progress = progress
        self.capabilities: frozenset[str] = CAPABILITIES
        self.unreachable = ""
        self.since = ""
        run = secrets.token_hex(4)
        self.first = PushedUser(f"scim-bridge-check-{run}-a@example.com", "First", True)
        self.pending = PushedUser(f"scim-bridge-check-{run}-p@example.com", "Pending", False)
        self.group_name = f"scim-bridge check {run}"
        self.pushed: list[PushedUser] = []
        self.groups: list[str] = []
        self.counts = {"PASS": 0, "FAIL": 0, "SKIP": 0}

    # Running -------------------------------------------------------------------------------------
    def run(self) -> int:
        """Every step, then the cleanup (also after a failure or Ctrl-C); 0 when none failed."""
        steps: list[tuple[str, Callable[[], str]]] = [
            ("capabilities", self.check_capabilities),
            ("check exists", self.check_exists),
            ("create user", self.create_user),
            ("create pending user", self.create_pending_user),
            ("full import", self.full_import),
            ("incremental import", self.incremental_import),
            ("get by id", self.get_by_id),
            ("profile push", self.profile_push),
            ("password push", self.password_push),
            ("deactivate", self.deactivate),
            ("reactivate", self.reactivate),
            ("duplicate create", self.duplicate_create),
            ("groups", self.group_lifecycle),
            ("bad credentials", self.bad_credentials),
        ]
        print(
            f"scim-bridge check of {self.connector.base_url} (SCIM {self.dialect.version})",
            file=self.out,
        )
        try:
            for name, step in steps:
                self.step(name, step)
        finally:
            self.step("cleanup", self.cleanup)
            self.connector.close()
        print(
            f"{self.counts['PASS']} passed, {self.counts['FAIL']} failed, "
            f"{self.counts['SKIP']} skipped",
            file=self.out,
        )
        return 1 if self.counts["FAIL"] else 0

    def step(self, name: str, action: Callable[[], str]) -> None:
        """Run one step and print its line (and, on failure, the exchange that failed it)."""
        self.connector.last = None
        try:
            if self.unreachable and name != "cleanup":
                raise StepSkipped(f"connector unreachable ({self.unreachable})")
            self.report("PASS", name, action())
        except StepSkipped as skipped:
            self.report("SKIP", name, str(skipped))
        except StepFailed as failed:
            self.report("FAIL", name, str(failed))
        except httpx.TransportError as exc:
            reason = f"{type(exc).__name__}: {exc}"
            if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
                self.unreachable = reason
            self.report("FAIL", name, reason)

    def report(self, status: str, name: str, reason: str) -> None:
        """One line per step; a failure also shows the last request and its answer."""
        self.counts[status] += 1
        print(f"{status:<5} {name:<20} {reason}", file=self.out, flush=True)
        last = self.connector.last
        if status == "FAIL" and last is not None:
            print(f"{'':26}{last.request} -> {last.status} {last.excerpt()}", file=self.out)

    # Checks shared by the steps ------------------------------------------------------------------
    def need(self, capability: str) -> None:
        """Skip the step when the connector does not advertise ``capability``."""
        if capability not in self.capabilities:
            raise StepSkipped(f"{capability} not advertised")

    @staticmethod
    def need_user(user: PushedUser) -> None:
        """Skip the step when ``user`` was never created."""
        if not user.id:
            raise StepSkipped(f"needs {user.user_name}, which was not created")

    @staticmethod
    def expect(answer: Answer, *statuses: int) -> None:
        """Fail unless the status is one of ``statuses`` (none given: any 2xx)."""
        if statuses and answer.status in statuses:
            return
        if not statuses and 200 <= answer.status < 300:
            return
        wanted = " or ".join(map(str, statuses)) if statuses else "2xx"
        raise StepFailed(f"{answer.request} answered {answer.status}, expected {wanted}")

    def resource(self, answer: Answer, kind: str) -> dict[str, Any]:
        """The answer as a User or Group the agent accepts."""
        document = answer.document()
        problems = self.dialect.resource_problems(kind, document)
        if problems:
            raise StepFailed(f"{answer.request}: {kind} rejected: " + "; ".join(problems))
        return document

    def listing(self, answer: Answer, kind: str, start_index: int) -> dict[str, Any]:
        """The answer as a ListResponse page the agent accepts."""
        document = answer.document()
        problems = self.dialect.list_problems(kind, document)
        if problems:
            raise StepFailed(f"{answer.request}: ListResponse rejected: " + "; ".join(problems))
        if document["startIndex"] != start_index:
            raise StepFailed(
                f"{answer.request} answered startIndex {document['startIndex']}, not {start_index}"
            )
        return document

    def error(self, answer: Answer, status: int) -> None:
        """Fail unless the answer is ``status`` with an error body the administrator can read."""
        self.expect(answer, status)
        problems = self.dialect.error_problems(answer.document())
        if problems:
            raise StepFailed(f"{answer.request} answered {status} but " + "; ".join(problems))

    def find(self, value: str) -> tuple[Answer, dict[str, Any]]:
        """The agent's check-exists request for ``value`` of the unique field."""
        condition = quote(f'{self.unique_field} eq "{value}"', safe="")
        answer = self.connector.send("GET", f"Users?filter={condition}&startIndex=1&count=100")
        self.expect(answer, 200)
        return answer, self.listing(answer, "User", 1)

    def import_all(
        self, endpoint: str, kind: str, query: str = ""
    ) -> tuple[dict[str, dict[str, Any]], int]:
        """Every page of a listing, as the agent pages it: the resources by id, and the pages."""
        found: dict[str, dict[str, Any]] = {}
        start, page, total = 1, 0, -1
        try:
            while total < 0 or start <= total:
                page += 1
                answer = self.connector.send(
                    "GET", f"{endpoint}?{query}startIndex={start}&count={PAGE_SIZE}"
                )
                self.expect(answer, 200)
                document = self.listing(answer, kind, start)
                total = document["totalResults"]
                resources = document.get("Resources") or []
                if document["itemsPerPage"] != len(resources):
                    raise StepFailed(
                        f"page {page} says itemsPerPage {document['itemsPerPage']} "
                        f"but carries {len(resources)} resources"
                    )
                if len(resources) > PAGE_SIZE:
                    raise StepFailed(f"page {page} carries {len(resources)} resources, count=100")
                if not resources and start <= total:
                    raise StepFailed(f"page {page} is empty though totalResults is {total}")
                for resource in resources:
                    rid = resource.get("id")
                    if not isinstance(rid, str) or not rid:
                        raise StepFailed(f"page {page} has a {kind} without an id")
                    if rid in found:
                        raise StepFailed(f"page {page} repeats id {rid}")
                    found[rid] = resource
                if self.progress is not None and total > PAGE_SIZE:  # only long imports
                    self.progress.write(f"\r  imported {len(found)}/{total}")
                    self.progress.flush()
                start += PAGE_SIZE
        finally:
            if self.progress is not None and page > 1:
                self.progress.write("\n")
        return found, page

    def put_user(
        self, user: PushedUser, password: str | None = None
    ) -> tuple[Answer, dict[str, Any]]:
        """The agent's whole-user PUT; the answer must be a 2xx User without a password."""
        answer = self.connector.send(
            "PUT", f"Users/{user.id}", self.dialect.user_body(user, password)
        )
        self.expect(answer)
        document = self.resource(answer, "User")
        if _has_password(document):
            raise StepFailed(f"{answer.request} answered with the password")
        return answer, document

    def get_user(self, user: PushedUser) -> tuple[Answer, dict[str, Any]]:
        """``GET /Users/{id}``: 200 and the user."""
        answer = self.connector.send("GET", f"Users/{user.id}")
        self.expect(answer, 200)
        document = self.resource(answer, "User")
        if document.get("id") != user.id:
            raise StepFailed(f"{answer.request} answered id {document.get('id')!r}")
        return answer, document

    def create(self, user: PushedUser) -> tuple[Answer, dict[str, Any]]:
        """The agent's push of a new user, with a password."""
        body = self.dialect.user_body(user, secrets.token_urlsafe(12))
        answer = self.connector.send("POST", "Users", body)
        self.expect(answer)
        rid = _id_in(answer)
        if rid:  # cleaned up at the end even when the answer is otherwise wrong
            user.id = rid
            self.pushed.append(user)
        document = self.resource(answer, "User")
        if not rid:
            raise StepFailed(f"{answer.request} answered a user without an id")
        if _has_password(document):
            raise StepFailed(f"{answer.request} answered with the password")
        if str(document.get("userName", "")).lower() != user.user_name.lower():
            raise StepFailed(f"{answer.request} answered userName {document.get('userName')!r}")
        return answer, document

    # The steps -----------------------------------------------------------------------------------
    def check_capabilities(self) -> str:
        """``GET /ServiceProviderConfigs``, where Okta's capabilities are, in both dialects."""
        answer = self.connector.send("GET", self.dialect.config_path)
        self.expect(answer, 200)
        media = answer.headers.get("content-type", "").split(";")[0].strip()
        if media not in ("application/json", "application/scim+json"):
            raise StepFailed(f"{answer.request} answered Content-Type {media!r}, not JSON")
        config = answer.document()
        schemes = config.get("authenticationSchemes")
        if not isinstance(schemes, list) or not schemes:
            raise StepFailed("authenticationSchemes is missing or empty")
        for scheme in schemes:
            if not isinstance(scheme, dict) or not scheme.get("type"):
                raise StepFailed(f"an authentication scheme has no type: {scheme!r}")
            if not scheme.get("description"):
                raise StepFailed(f"authentication scheme {scheme['type']!r} has no description")
        okta = config.get(V1_PROVIDER_CONFIG)
        if okta is None and self.dialect.version == "2.0":
            return f"{answer.timing}; no {V1_PROVIDER_CONFIG}: all capabilities assumed"
        if not isinstance(okta, dict) or not isinstance(
            okta.get("userManagementCapabilities"), list
        ):
            raise StepFailed(f"no {V1_PROVIDER_CONFIG} with userManagementCapabilities")
        advertised = {str(name) for name in okta["userManagementCapabilities"]}
        unknown = sorted(advertised - CAPABILITIES)
        self.capabilities = frozenset(advertised & CAPABILITIES)
        if unknown:
            raise StepFailed(f"unknown userManagementCapabilities: {', '.join(unknown)}")
        shown = ", ".join(sorted(self.capabilities)) or "none"
        return f"{answer.timing}; capabilities: {shown}"

    def check_exists(self) -> str:
        """The agent's check before every create, for a userName nobody has."""
        answer, listing = self.find(self.first.user_name)
        if listing["totalResults"] != 0:
            raise StepFailed(
                f"totalResults {listing['totalResults']} for a fresh {self.first.user_name}"
            )
        server_now = _server_clock(answer) or datetime.now(UTC)
        # Okta's clock decides in real life; the connector's avoids a false failure from skew.
        self.since = _utc_seconds(server_now - timedelta(seconds=1))
        return f"{answer.timing}, totalResults 0"

    def create_user(self) -> str:
        """Push a new active user with a password, then find it by its upper-cased userName."""
        self.need("PUSH_NEW_USERS")
        if not self.since:
            self.since = _utc_seconds(datetime.now(UTC) - timedelta(seconds=1))
        answer, _ = self.create(self.first)
        value = self.first.user_name
        if self.unique_field == "userName":
            value = value.upper()
        _, listing = self.find(value)
        ids = [r.get("id") for r in listing.get("Resources") or []]
        if self.first.id not in ids:
            raise StepFailed(f"check-exists for {value!r} does not find id {self.first.id}")
        return f"{answer.timing}, id {_short(self.first.id)}; found as {value}"

    def create_pending_user(self) -> str:
        """Check that it does not exist, then push a new user with ``active: false``."""
        self.need("PUSH_PENDING_USERS")
        if not self.since:
            self.since = _utc_seconds(datetime.now(UTC) - timedelta(seconds=1))
        _, listing = self.find(self.pending.user_name)
        if listing["totalResults"] != 0:
            raise StepFailed(f"totalResults {listing['totalResults']} for a fresh user")
        answer, document = self.create(self.pending)
        if document.get("active") is not False:
            raise StepFailed(f"{answer.request} answered active {document.get('active')!r}")
        return f"{answer.timing}, id {_short(self.pending.id)}, active false"

    def full_import(self) -> str:
        """Every page of ``/Users``, 100 at a time; both created users among them."""
        self.need("IMPORT_NEW_USERS")
        started = time.perf_counter()
        found, pages = self.import_all("Users", "User")
        self.must_contain(found, "full import")
        elapsed = time.perf_counter() - started
        return f"{len(found)} users in {pages} page(s), {elapsed:.2f} s"

    def incremental_import(self) -> str:
        """``meta.lastModified gt`` the instant before the creates finds both users."""
        self.need("IMPORT_NEW_USERS")
        if not self.since:
            raise StepSkipped("no user was created")
        condition = quote(f'meta.lastModified gt "{self.since}"', safe="")
        found, _ = self.import_all("Users", "User", f"filter={condition}&")
        self.must_contain(found, "incremental import")
        return f"{len(found)} users changed after {self.since}"

    def must_contain(self, found: Mapping[str, Any], what: str) -> None:
        """Fail when a created user is missing from an import."""
        created = [u for u in (self.first, self.pending) if u.id]
        if not created:
            raise StepSkipped("no user was created")
        missing = [f"{u.user_name} ({u.id})" for u in created if u.id not in found]
        if missing:
            raise StepFailed(f"{what} lacks {', '.join(missing)}")

    def get_by_id(self) -> str:
        """``GET /Users/{id}`` answers the user; an unknown id answers 404."""
        self.need("IMPORT_PROFILE_UPDATES")
        self.need_user(self.first)
        answer, document = self.get_user(self.first)
        if str(document.get("userName", "")).lower() != self.first.user_name.lower():
            raise StepFailed(f"{answer.request} answered userName {document.get('userName')!r}")
        unknown = self.connector.send("GET", f"Users/scim-bridge-check-{secrets.token_hex(8)}")
        self.error(unknown, 404)
        return f"{answer.timing}; unknown id 404"

    def profile_push(self) -> str:
        """A whole-user PUT with a new givenName; a GET shows it."""
        self.need("PUSH_PROFILE_UPDATES")
        self.need_user(self.first)
        self.first.given_name = f"Changed-{secrets.token_hex(3)}"
        answer, _ = self.put_user(self.first)
        shown = (self.get_user(self.first)[1].get("name") or {}).get("givenName")
        if shown != self.first.given_name:
            raise StepFailed(f"GET shows givenName {shown!r}, not {self.first.given_name!r}")
        return f"{answer.timing}; givenName {self.first.given_name} visible"

    def password_push(self) -> str:
        """A whole-user PUT with a new password."""
        self.need("PUSH_PASSWORD_UPDATES")
        self.need_user(self.first)
        answer, _ = self.put_user(self.first, secrets.token_urlsafe(12))
        return f"{answer.timing}, no password in the answer"

    def deactivate(self) -> str:
        """A whole-user PUT with ``active: false``; a GET shows it."""
        self.need("PUSH_USER_DEACTIVATION")
        self.need_user(self.first)
        self.first.active = False
        answer, _ = self.put_user(self.first)
        shown = self.get_user(self.first)[1].get("active")
        if shown is not False:
            raise StepFailed(f"GET shows active {shown!r} after the deactivation")
        return f"{answer.timing}; GET shows active false"

    def reactivate(self) -> str:
        """A whole-user PUT with ``active: true``: the agent reads ``active`` from the answer."""
        self.need("REACTIVATE_USERS")
        self.need_user(self.first)
        self.first.active = True
        answer, document = self.put_user(self.first)
        if document.get("active") is not True:
            raise StepFailed(f"{answer.request} answered active {document.get('active')!r}")
        return f"{answer.timing}, active true in the answer"

    def duplicate_create(self) -> str:
        """A second push of the first user's userName is a 409."""
        self.need("PUSH_NEW_USERS")
        self.need_user(self.first)
        again = PushedUser(self.first.user_name, self.first.given_name, True)
        body = self.dialect.user_body(again, secrets.token_urlsafe(12))
        answer = self.connector.send("POST", "Users", body)
        if 200 <= answer.status < 300:
            rid = _id_in(answer)
            if rid:
                self.pushed.append(PushedUser(again.user_name, again.given_name, True, rid))
            raise StepFailed(f"{answer.request} answered {answer.status}, expected 409")
        self.error(answer, 409)
        return f"{answer.timing}"

    def group_lifecycle(self) -> str:
        """Push, duplicate, import, replace, read and delete a group, as the agent does."""
        self.need("GROUP_PUSH")
        self.need_user(self.first)
        body = self.dialect.group_body(
            self.group_name, [self.first], f"okta-{secrets.token_hex(6)}"
        )
        created = self.connector.send("POST", "Groups", body)
        self.expect(created)
        gid = _id_in(created)
        if gid:  # deleted by the cleanup unless this step gets to delete it
            self.groups.append(gid)
        group = self.resource(created, "Group")
        if not gid:
            raise StepFailed(f"{created.request} answered a group without an id")
        if self.first.id not in _member_ids(group):
            raise StepFailed(f"{created.request} answered members {group.get('members')!r}")

        duplicate = self.connector.send("POST", "Groups", body)
        second = _id_in(duplicate) if 200 <= duplicate.status < 300 else None
        if second:
            self.groups.append(second)
        self.error(duplicate, 409)

        imported = self.import_all("Groups", "Group")[0].get(gid)
        if imported is None:
            raise StepFailed(f"the import of /Groups lacks group {gid}")
        if self.first.id not in _member_ids(imported):
            raise StepFailed(f"the imported group {gid} lacks its member inline")

        renamed = f"{self.group_name} renamed"
        newcomer = self.pending if self.pending.id else self.first
        replaced = self.connector.send(
            "PUT", f"Groups/{gid}", self.dialect.group_body(renamed, [newcomer], gid)
        )
        self.expect(replaced)
        self.resource(replaced, "Group")
        fetched = self.connector.send("GET", f"Groups/{gid}")
        self.expect(fetched, 200)
        shown = self.resource(fetched, "Group")
        if shown.get("displayName") != renamed or _member_ids(shown) != {newcomer.id}:
            raise StepFailed(
                f"GET after the PUT shows {shown.get('displayName')!r} with members "
                f"{sorted(_member_ids(shown))}, not {renamed!r} with [{newcomer.id}]"
            )

        deleted = self.connector.send("DELETE", f"Groups/{gid}")
        self.expect(deleted)
        self.groups.remove(gid)
        gone = self.connector.send("GET", f"Groups/{gid}")
        self.error(gone, 404)
        return (
            f"push {created.status}, duplicate 409, import, replace {replaced.status}, "
            f"delete {deleted.status}, then 404"
        )

    def bad_credentials(self) -> str:
        """Wrong and missing credentials are both a 401."""
        if not self.connector.credentials:
            raise StepSkipped("no credentials given (--basic or --header)")
        target = "Users?startIndex=1&count=1"
        wrong = self.connector.send(
            "GET", target, credentials=near_miss(self.connector.credentials)
        )
        self.error(wrong, 401)
        missing = self.connector.send("GET", target, credentials={})
        self.error(missing, 401)
        return f"wrong {wrong.status}, missing {missing.status}"

    def cleanup(self) -> str:
        """Deactivate every user the check created (Okta never deletes them), delete its groups."""
        done: list[str] = []
        problems: list[str] = []
        for gid in list(self.groups):
            answer = self.connector.send("DELETE", f"Groups/{gid}")
            if 200 <= answer.status < 300 or answer.status == 404:
                self.groups.remove(gid)
                done.append(f"group {_short(gid)} deleted")
            else:
                problems.append(f"DELETE Groups/{gid} answered {answer.status}")
        if self.pushed and "PUSH_USER_DEACTIVATION" not in self.capabilities:
            left = ", ".join(u.user_name for u in self.pushed)
            raise StepSkipped(f"PUSH_USER_DEACTIVATION not advertised; left active: {left}")
        for user in self.pushed:
            user.active = False
            answer = self.connector.send(
                "PUT", f"Users/{user.id}", self.dialect.user_body(user, None)
            )
            if 200 <= answer.status < 300:
                done.append(f"{user.user_name} deactivated")
            else:
                problems.append(f"PUT Users/{user.id} active false answered {answer.status}")
        if problems:
            raise StepFailed("; ".join(problems))
        return "; ".join(done) or "nothing to clean up"


def _member_ids(group: Mapping[str, Any]) -> set[str]:
    members = group.get("members") or []
    return {str(m.get("value")) for m in members if isinstance(m, dict)}


def _id_in(answer: Answer) -> str | None:
    try:
        rid = answer.document().get("id")
    except StepFailed:
        return None
    return rid if isinstance(rid, str) and rid else None


def _server_clock(answer: Answer) -> datetime | None:
    date = answer.headers.get("date")
    if not date:
        return None
    try:
        return parsedate_to_datetime(date).astimezone(UTC)
    except (TypeError, ValueError):
        return None


def _utc_seconds(instant: datetime) -> str:
    return instant.strftime("%Y-%m-%dT%H:%M:%SZ")


# The command -----------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``check`` command's arguments (shared by ``scim-bridge check`` and :func:`main`)."""
    parser.add_argument("url", metavar="URL", help="the connector's SCIM base URL")
    parser.add_argument(
        "--scim",
        choices=sorted(DIALECTS),
        default=None,
        help="the SCIM version to speak (default: 2.0 when URL contains /v2/, as the agent does)",
    )
    auth = parser.add_mutually_exclusive_group()
    auth.add_argument(
        "--basic", metavar="USER:PASSWORD", type=basic_credentials, help="HTTP Basic credentials"
    )
    auth.add_argument(
        "--header",
        metavar="'Name: value'",
        type=header_credentials,
        help="one header carrying the secret, e.g. 'Authorization: Bearer …'",
    )
    parser.add_argument(
        "--timeout", metavar="S", type=float, default=30.0, help="per request (default 30)"
    )
    parser.add_argument(
        "--unique-field",
        metavar="NAME",
        default="userName",
        help="the attribute of the check-exists filter (Okta's 'Unique user field name'); "
        "the value it looks for is the test user's userName, also its primary email",
    )
    parser.add_argument("--insecure", action="store_true", help="do not verify TLS certificates")
    parser.add_argument(
        "--progress",
        action="store_true",
        help="show import progress on stderr even when it is not a terminal",
    )


def run(args: argparse.Namespace, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Check the connector ``args`` names; the exit status."""
    out = out or sys.stdout
    err = err or sys.stderr
    url: str = args.url
    version = args.scim or ("2.0" if "/v2/" in url.rstrip("/") + "/" else "1.1")
    progress = err if args.progress or err.isatty() else None
    connector = Connector(
        url,
        args.basic or args.header or {},
        timeout_s=args.timeout,
        verify=not args.insecure,
    )
    checker = Checker(
        connector,
        DIALECTS[version],
        unique_field=args.unique_field,
        out=out,
        progress=progress,
    )
    try:
        return checker.run()
    except KeyboardInterrupt:
        print("interrupted", file=err)
        return 130


def main(
    argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """``scim-bridge check`` on its own: parse ``argv``, check, return the exit status."""
    parser = argparse.ArgumentParser(prog="scim-bridge check", description=HELP)
    add_arguments(parser)
    return run(parser.parse_args(argv), out=out, err=err)
