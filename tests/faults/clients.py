"""The clients of a fault case and their memory.

:class:`Ledger` is the clients' memory: every write they made, which ones were accepted (a 2xx
answer) and the state each resource should end in. :func:`burst` is the load: a few client
threads that create, replace and delete users through HTTP and retry what was not accepted, the
way the Okta agent does. :class:`Reader` measures GET /Users/{id} while a fault is on.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from scim_bridge.store import Kind
from tests.support import TOKEN

USERS = "/scim/v2/Users"
GROUPS = "/scim/v2/Groups"
HEADERS = {"Authorization": TOKEN, "Content-Type": "application/scim+json"}
USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"


def user_body(
    user_name: str, given: str = "Jane", family: str = "Doe", active: bool = True, **extra: Any
) -> dict[str, Any]:
    body = {
        "schemas": [USER_SCHEMA],
        "userName": user_name,
        "name": {"givenName": given, "familyName": family},
        "emails": [{"value": user_name, "type": "work", "primary": True}],
        "active": active,
    }
    body.update(extra)
    return body


def group_body(name: str, members: list[str]) -> dict[str, Any]:
    return {
        "schemas": [GROUP_SCHEMA],
        "displayName": name,
        "members": [{"value": m} for m in members],
    }


def version_of(document: Mapping[str, Any]) -> int:
    """The version number of a returned resource (``W/"3"`` -> 3)."""
    return int(str(document["meta"]["version"]).removeprefix("W/").strip('"'))


@dataclass
class AcceptedWrite:
    """One write a client made and scim-bridge accepted (answered 2xx)."""

    kind: Kind
    rid: str
    op: str  # create | replace | delete
    version: int  # the version the answer carried (0 for a delete: it has no body)
    status: int


@dataclass
class Ledger:
    """Every accepted change, and what each resource should end as, thread-safe."""

    changes: list[AcceptedWrite] = field(default_factory=list)
    final: dict[tuple[Kind, str], dict[str, Any] | None] = field(default_factory=dict)
    """The client's last intent per resource: its last body, None for deleted."""
    attempts: int = 0
    refused: dict[int, int] = field(default_factory=dict)
    """Status -> count of answers that were not accepted (the client retried them)."""
    adopted: int = 0
    """Creates answered 5xx that the client then found stored (checked by userName)."""
    resolved: int = 0
    """Deletes answered 5xx whose retry found the user gone (the first attempt was stored)."""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def accept(self, change: AcceptedWrite, intent: dict[str, Any] | None) -> None:
        with self._lock:
            self.changes.append(change)
            self.final[(change.kind, change.rid)] = intent

    def adopt(self, kind: Kind, rid: str, intent: dict[str, Any] | None) -> None:
        with self._lock:
            self.adopted += 1
            self.final[(kind, rid)] = intent

    def resolve(self, kind: Kind, rid: str, intent: dict[str, Any] | None) -> None:
        with self._lock:
            self.resolved += 1
            self.final[(kind, rid)] = intent

    def not_accepted(self, status: int) -> None:
        with self._lock:
            self.refused[status] = self.refused.get(status, 0) + 1

    def attempt(self) -> None:
        with self._lock:
            self.attempts += 1

    @property
    def accepted(self) -> int:
        return len(self.changes)

    def ids(self, kind: Kind = Kind.USER) -> list[str]:
        with self._lock:
            return [rid for (k, rid) in self.final if k is kind]


class GaveUp(Exception):
    """A write that was still not accepted when the client's own deadline ran out."""


class Client:
    """One SCIM client thread's connection, retrying what is not accepted (5xx, no answer).

    A retried POST first looks the userName up, as the Okta agent does before it creates: the
    earlier attempt may have been stored although its answer was lost.
    """

    def __init__(
        self, base_url: str, ledger: Ledger, *, give_up_s: float = 60.0, prefer_async: bool = False
    ) -> None:
        headers = dict(HEADERS)
        if prefer_async:
            headers["Prefer"] = "respond-async"
        self.http = httpx.Client(base_url=base_url, headers=headers, timeout=10)
        self.ledger = ledger
        self.give_up_s = give_up_s

    def close(self) -> None:
        self.http.close()

    def _send(self, method: str, url: str, body: Any | None = None) -> httpx.Response | None:
        self.ledger.attempt()
        try:
            return self.http.request(method, url, json=body)
        except httpx.HTTPError:
            self.ledger.not_accepted(0)
            return None

    def _retrying(self, attempt: Callable[[], httpx.Response | None]) -> httpx.Response:
        """Repeat ``attempt`` while it gets no answer or a 5xx."""
        deadline = time.monotonic() + self.give_up_s
        delay = 0.1
        while True:
            answer = attempt()
            if answer is not None and answer.status_code < 500:
                return answer
            if answer is not None:
                self.ledger.not_accepted(answer.status_code)
            if time.monotonic() > deadline:
                raise GaveUp(f"no answer but {answer and answer.status_code}")
            time.sleep(delay)  # a client's back-off between retries
            delay = min(1.0, delay * 1.5)

    def create_user(self, body: dict[str, Any]) -> str:
        deadline = time.monotonic() + self.give_up_s
        first = True
        while True:
            if not first:
                found = self.find_user(body["userName"])
                if found is not None:
                    self.ledger.adopt(Kind.USER, found, body)
                    return found
            first = False
            answer = self._send("POST", USERS, body)
            if answer is not None and answer.status_code in (201, 202):
                doc = answer.json()
                self.ledger.accept(
                    AcceptedWrite(
                        Kind.USER, doc["id"], "create", version_of(doc), answer.status_code
                    ),
                    body,
                )
                return str(doc["id"])
            if answer is not None and answer.status_code < 500 and answer.status_code != 409:
                raise AssertionError(f"create refused: {answer.status_code} {answer.text}")
            # 5xx, no answer, or 409 after a lost answer: look the userName up and try again.
            if answer is not None:
                self.ledger.not_accepted(answer.status_code)
            if time.monotonic() > deadline:
                raise GaveUp(f"create of {body['userName']} never accepted")
            time.sleep(0.2)

    def find_user(self, user_name: str) -> str | None:
        query = {"filter": f'userName eq "{user_name}"'}
        answer = self._retrying(lambda: self._get(USERS, params=query))
        found = answer.json().get("Resources") or []
        return str(found[0]["id"]) if found else None

    def _get(self, url: str, params: dict[str, str] | None = None) -> httpx.Response | None:
        try:
            return self.http.get(url, params=params)
        except httpx.HTTPError:
            return None

    def replace_user(self, rid: str, body: dict[str, Any]) -> int:
        answer = self._retrying(lambda: self._send("PUT", f"{USERS}/{rid}", body))
        if answer.status_code not in (200, 202):
            raise AssertionError(f"replace refused: {answer.status_code} {answer.text}")
        doc = answer.json()
        self.ledger.accept(
            AcceptedWrite(Kind.USER, rid, "replace", version_of(doc), answer.status_code), body
        )
        return version_of(doc)

    def delete_user(self, rid: str) -> None:
        tries = [0]

        def attempt() -> httpx.Response | None:
            tries[0] += 1
            return self._send("DELETE", f"{USERS}/{rid}")

        answer = self._retrying(attempt)
        if answer.status_code in (202, 204):
            self.ledger.accept(AcceptedWrite(Kind.USER, rid, "delete", 0, answer.status_code), None)
        elif answer.status_code == 404 and tries[0] > 1:
            self.ledger.resolve(Kind.USER, rid, None)  # an earlier attempt was stored
        else:
            raise AssertionError(f"delete refused: {answer.status_code} {answer.text}")


@dataclass
class BurstResult:
    seconds: float
    errors: list[str]


def burst(
    base_url: str,
    ledger: Ledger,
    *,
    changes: int,
    clients: int = 6,
    prefix: str = "user",
    seed: int = 7,
    on_progress: Callable[[int], None] | None = None,
    delete_share: float = 0.04,
    prefer_async: bool = False,
) -> BurstResult:
    """``changes`` user writes from ``clients`` threads: creates, PUTs, a few DELETEs.

    Each thread owns the users it creates, so the changes to one user are sequential and the
    client's last accepted body is what the user must end as. ``on_progress(done)`` is called
    (from the client threads, serialised) after every accepted change: fault injectors hook here.
    """
    done = [0]
    progress_lock = threading.Lock()
    errors: list[str] = []
    per_thread = [changes // clients + (1 if i < changes % clients else 0) for i in range(clients)]

    def run(index: int) -> None:
        rng = random.Random(seed * 1000 + index)
        client = Client(base_url, ledger, prefer_async=prefer_async)
        owned: list[tuple[str, dict[str, Any]]] = []
        created = 0
        try:
            for _ in range(per_thread[index]):
                roll = rng.random()
                if not owned or roll < 0.4:
                    created += 1
                    body = user_body(
                        f"{prefix}-{index}-{created}@example.com",
                        given=f"G{created}",
                        family=f"F{index}",
                    )
                    rid = client.create_user(body)
                    owned.append((rid, body))
                elif roll < 0.4 + delete_share and len(owned) > 1:
                    rid, _ = owned.pop(rng.randrange(len(owned)))
                    client.delete_user(rid)
                else:
                    slot = rng.randrange(len(owned))
                    rid, body = owned[slot]
                    new = dict(body)
                    if rng.random() < 0.3:
                        new["active"] = not body["active"]
                    else:
                        new["name"] = {
                            "givenName": f"G{rng.randrange(10**6)}",
                            "familyName": body["name"]["familyName"],
                        }
                        new["displayName"] = f"D{rng.randrange(10**6)}"
                    client.replace_user(rid, new)
                    owned[slot] = (rid, new)
                with progress_lock:
                    done[0] += 1
                    if on_progress is not None:
                        on_progress(done[0])
        except Exception as exc:  # reported, the test fails on it
            errors.append(f"client {index}: {type(exc).__name__}: {exc}")
        finally:
            client.close()

    started = time.monotonic()
    threads = [threading.Thread(target=run, args=(i,), name=f"client-{i}") for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    return BurstResult(time.monotonic() - started, errors)


class Reader:
    """A thread reading GET /Users/{id} of known users while a fault is on; latency percentiles.

    Every answer counts (200, 404 for a deleted user, 503 while Redis is down); a request that
    got no answer at all counts as an error and its time is kept too.
    """

    def __init__(self, base_url: str, ids: Callable[[], list[str]], seed: int = 3) -> None:
        self.base_url = base_url
        self.ids = ids
        self.samples: list[float] = []
        self.statuses: dict[int, int] = {}
        self._stop = threading.Event()
        self._rng = random.Random(seed)
        self._thread = threading.Thread(target=self._run, name="reader", daemon=True)

    def __enter__(self) -> Reader:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(15)

    def _run(self) -> None:
        with httpx.Client(base_url=self.base_url, headers=HEADERS, timeout=10) as http:
            while not self._stop.is_set():
                known = self.ids()
                if not known:
                    self._stop.wait(0.01)
                    continue
                rid = self._rng.choice(known)
                started = time.perf_counter()
                try:
                    status = http.get(f"{USERS}/{rid}").status_code
                except httpx.HTTPError:
                    status = 0
                self.samples.append(time.perf_counter() - started)
                self.statuses[status] = self.statuses.get(status, 0) + 1

    def percentile(self, p: float) -> float | None:
        if not self.samples:
            return None
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]
