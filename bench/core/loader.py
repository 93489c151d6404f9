"""The benchmark users: realistic bodies, loaded through the api's own code and settled."""

from __future__ import annotations

import json
import multiprocessing
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis

from core.processes import PREFIX

USERS_PATH = "/scim/v2/Users"
V1_USERS_PATH = "/scim/Users"
CONFIRMED = "applied"


FIRST = [
    "anna",
    "ben",
    "carla",
    "david",
    "emma",
    "felix",
    "grace",
    "hugo",
    "ines",
    "jonas",
    "karin",
    "liam",
    "maria",
    "noah",
    "olga",
    "paul",
    "rita",
    "samir",
    "tina",
    "umar",
]
LAST = [
    "schmidt",
    "nguyen",
    "garcia",
    "kowalski",
    "smith",
    "rossi",
    "dubois",
    "jensen",
    "tanaka",
    "silva",
    "muller",
    "novak",
    "ahmed",
    "larsen",
    "moreau",
    "fischer",
]
DEPARTMENTS = [
    "Engineering",
    "Sales",
    "Finance",
    "Human Resources",
    "Support",
    "Legal",
    "Marketing",
    "Operations",
    "Research",
    "Facilities",
]


def user_name(i: int) -> str:
    return f"{FIRST[i % len(FIRST)]}.{LAST[(i // len(FIRST)) % len(LAST)]}.{i}@example.com"


def user_body(i: int) -> dict[str, Any]:
    """A realistic Okta-provisioned user."""
    first, last = FIRST[i % len(FIRST)].title(), LAST[(i // len(FIRST)) % len(LAST)].title()
    name = user_name(i)
    return {
        "schemas": [
            "urn:ietf:params:scim:schemas:core:2.0:User",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
        ],
        "userName": name,
        "externalId": f"00u{i:017x}",
        "name": {"givenName": first, "familyName": last, "formatted": f"{first} {last}"},
        "displayName": f"{first} {last}",
        "emails": [{"value": name, "type": "work", "primary": True}],
        "phoneNumbers": [{"value": f"+1 555 {i % 1000:03d} {i % 10000:04d}", "type": "work"}],
        "active": True,
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
            "department": DEPARTMENTS[i % len(DEPARTMENTS)],
            "employeeNumber": str(100000 + i),
        },
    }


def _load_chunk(job: tuple[str, str, int, int]) -> list[str]:
    """Create users ``start..stop-1`` through the api's own code, then settle them.

    Each user is POSTed to the api's WSGI app in this process (validation, canonical document,
    every rendering and index the api stores, the Lua write), with no confirmation wait and
    no task published; then settled as the reconciler does after the legacy application
    confirmed (applied state = desired state, sync state ``applied``, nothing dirty).
    """
    import falcon.testing

    from scim_bridge.api.app import create_app
    from scim_bridge.store import Kind
    from scim_bridge.workers.runtime import Runtime
    from scim_bridge.workers.settings import load_settings

    url, password_key, start, stop = job
    token = "Bearer bench-loader"
    settings = load_settings(
        redis_url=url,
        key_prefix=PREFIX,
        auth_mode="header",
        auth_header_value=token,
        password_key=password_key,
        adapter="memory",
        confirm_wait_s=0.0,
        log_level="WARNING",
        allowed_hosts=["falconframework.org"],  # the in-process test client's Host
    )
    store = Runtime(settings).store
    app = create_app(settings, store=store, publish=lambda kind, rid: None)
    client = falcon.testing.TestClient(
        app, headers={"Authorization": token, "Content-Type": "application/scim+json"}
    )
    ids = []
    for i in range(start, stop):
        result = client.simulate_post(USERS_PATH, body=json.dumps(user_body(i)))
        if result.status_code != 201:
            raise RuntimeError(f"creating user {i}: {result.status} {result.text[:300]}")
        rid = result.json["id"]
        snap = store.snapshot(Kind.USER, rid)
        settled = store.settle(
            Kind.USER, rid, version=snap.version, applied=snap.desired, legacy_key=f"L{i}"
        )
        if settled != "settled":
            raise RuntimeError(f"settling user {i}: {settled}")
        ids.append(rid)
    return ids


def load_users(url: str, password_key: str, users: int, processes: int) -> tuple[list[str], float]:
    step = max(1, min(2000, users // (processes * 4) or 1))
    jobs = [(url, password_key, s, min(users, s + step)) for s in range(0, users, step)]
    started = time.monotonic()
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        chunks = pool.map(_load_chunk, jobs, chunksize=1)
    return [rid for chunk in chunks for rid in chunk], time.monotonic() - started


def check_created(client: redis.Redis, ids: list[str], wait_s: float = 20) -> dict[str, Any]:
    """Sync state of the created users, and how many were confirmed inside their request.

    A create's outcome is pushed to ``{p}:out:u:{id}:1``; the request waiting for it pops it
    (the list disappears). A list still present after the user is applied means nobody was
    waiting any more: that response came back unconfirmed.
    """
    if not ids:
        return {"created": 0, "applied": 0, "confirmed_in_request": 0, "confirmed_pct": 0.0}
    deadline = time.monotonic() + wait_s
    states: list[bytes | None] = []
    first_check: Counter[str] | None = None
    while True:
        pipe = client.pipeline(transaction=False)
        for rid in ids:
            pipe.hget(f"{PREFIX}:u:r:{rid}", "st")
        states = pipe.execute()
        counted = Counter((s or b"missing").decode() for s in states)
        if first_check is None:
            first_check = counted
        if counted.get(CONFIRMED, 0) == len(ids) or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    time.sleep(0.5)  # an outcome is pushed just after the settle
    pipe = client.pipeline(transaction=False)
    for rid in ids:
        pipe.exists(f"{PREFIX}:out:u:{rid}:1")
    leftover = pipe.execute()
    confirmed = sum(
        1 for s, left in zip(states, leftover, strict=True) if s == CONFIRMED.encode() and not left
    )
    return {
        "created": len(ids),
        "sync_state_right_after_run": dict(first_check or {}),
        "sync_state_final": dict(counted),
        "applied": counted.get(CONFIRMED, 0),
        "confirmed_in_request": confirmed,
        "confirmed_pct": round(100 * confirmed / len(ids), 2),
    }


# The run ---------------------------------------------------------------------------------
def write_paths(path: Path, lines: Sequence[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path
