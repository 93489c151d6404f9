"""The step runner of the check: each step's PASS, FAIL or SKIP line and the checks and requests
the lifecycle steps share."""

from __future__ import annotations

import secrets
import ssl
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TextIO
from urllib.parse import quote

import httpx

from scim_bridge.check.protocol import (
    Answer,
    Connector,
    PushedUser,
    ScimVersion,
    StepFailed,
    StepSkipped,
)
from scim_bridge.check.strict_v1 import PAGE_SIZE

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


def short_id(rid: str) -> str:
    return rid if len(rid) <= 8 else rid[:8] + "…"


def _has_password(document: Mapping[str, Any]) -> bool:
    return any(key.lower() == "password" for key in document)


class Steps:
    """Runs steps and reports each as PASS, FAIL or SKIP; what the lifecycle's steps share."""

    def __init__(
        self,
        connector: Connector,
        scim: ScimVersion,
        *,
        unique_field: str,
        out: TextIO,
        progress: TextIO | None,
    ) -> None:
        self.connector = connector
        self.scim = scim
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
            reason = untrusted_certificate(exc) or f"{type(exc).__name__}: {exc}"
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
        problems = self.scim.resource_problems(kind, document)
        if problems:
            raise StepFailed(f"{answer.request}: {kind} rejected: " + "; ".join(problems))
        return document

    def listing(self, answer: Answer, kind: str, start_index: int) -> dict[str, Any]:
        """The answer as a ListResponse page the agent accepts."""
        document = answer.document()
        problems = self.scim.list_problems(kind, document)
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
        problems = self.scim.error_problems(answer.document())
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
        answer = self.connector.send("PUT", f"Users/{user.id}", self.scim.user_body(user, password))
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
        body = self.scim.user_body(user, secrets.token_urlsafe(12))
        answer = self.connector.send("POST", "Users", body)
        self.expect(answer)
        rid = id_in(answer)
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


def member_ids(group: Mapping[str, Any]) -> set[str]:
    members = group.get("members") or []
    return {str(m.get("value")) for m in members if isinstance(m, dict)}


def id_in(answer: Answer) -> str | None:
    try:
        rid = answer.document().get("id")
    except StepFailed:
        return None
    return rid if isinstance(rid, str) and rid else None


def server_clock(answer: Answer) -> datetime | None:
    date = answer.headers.get("date")
    if not date:
        return None
    try:
        return parsedate_to_datetime(date).astimezone(UTC)
    except (TypeError, ValueError):
        return None


def utc_seconds(instant: datetime) -> str:
    return instant.strftime("%Y-%m-%dT%H:%M:%SZ")


# The command -----------------------------------------------------------------------------------


def untrusted_certificate(exc: BaseException) -> str | None:
    """What to say when ``exc`` is a failed verification of the connector's certificate."""
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, ssl.SSLCertVerificationError):
        cause = cause.__cause__ or cause.__context__
    if cause is None:
        return None
    return (
        f"TLS: certificate verify failed ({cause.verify_message}): the connector's certificate "
        "is not signed by a CA this machine trusts; name its CA with --ca-file PEM"
    )
