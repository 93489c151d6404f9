"""What one request costs the api: membership PATCHes on large groups, long attribute lists.

    .venv/bin/python bench/bench_request_work.py [--members 1000,5000] [--removals 10,100]

In process (the Falcon app through its test client, no HTTP), against its own ``redis-server``:

1. a group of ``--members`` members; a PATCH of Okta's shape (one ``remove`` of
   ``members[value eq "<id>"]`` per member leaving, then an ``add`` of the same members back),
   once as Okta sends it (applied to the member list, api/members.py) and once with the
   URN-qualified path ``urn:...:Group:members[...]``, which means the same and goes through
   scim2-models' general PATCH; alternating, each twice;
2. ``GET /Users`` of 40 users with an ``attributes`` list of 100 entries naming no attribute,
   and of 100 entries repeating two attributes, against ``attributes=userName``.

Writes bench/RESULTS-request-work.md. Each figure is wall time of one request, median of runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import falcon.testing
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scim_bridge.api.app import create_app  # noqa: E402
from scim_bridge.cli.processes import free_port, redis_server_command, stop, wait_until  # noqa: E402
from scim_bridge.store import Kind  # noqa: E402
from scim_bridge.workers.passwords import PasswordVault  # noqa: E402
from scim_bridge.workers.runtime import Runtime  # noqa: E402
from scim_bridge.workers.settings import load_settings  # noqa: E402

PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
GROUP_URN_MEMBERS = "urn:ietf:params:scim:schemas:core:2.0:Group:members"


def timed(call) -> float:
    started = time.perf_counter()
    response = call()
    assert response.status_code == 200, response.text[:300]
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--members", default="1000,5000")
    parser.add_argument("--removals", default="10,100")
    args = parser.parse_args()
    load_start = os.getloadavg()
    port = free_port()
    directory = Path(tempfile.mkdtemp())
    server = subprocess.Popen(
        redis_server_command(port, directory), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_until(lambda: _pings(port), timeout=10)
        settings = load_settings(
            redis_url=f"redis://127.0.0.1:{port}/0",
            auth_mode="none",
            adapter="memory",
            password_key=PasswordVault.generate_key().decode(),
            confirm_wait_s=0.0,
            max_backlog=10**6,
            max_body_bytes=8 * 1024 * 1024,
            allowed_hosts=["falconframework.org"],
        )
        runtime = Runtime(settings)
        client = falcon.testing.TestClient(
            create_app(settings, store=runtime.store, publish=lambda kind, rid: None)
        )
        rows = [
            _membership(client, runtime.store, int(n), int(k))
            for n in args.members.split(",")
            for k in args.removals.split(",")
        ]
        attribute_rows = _attributes(client)
    finally:
        stop(server)
    _write(rows, attribute_rows, load_start, os.getloadavg())


def _pings(port: int) -> bool:
    try:
        return bool(redis.Redis(port=port).ping())
    except redis.RedisError:
        return False


def _membership(client, store, members: int, removals: int) -> dict:
    ids = [str(uuid.uuid4()) for _ in range(members)]
    pipe = store.redis.pipeline()
    for rid in ids:
        doc = {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "id": rid}
        pipe.hset(store.keys.resource(Kind.USER, rid), mapping={"doc": json.dumps(doc), "v": 1})
    pipe.execute()
    body = {
        "schemas": [GROUP],
        "displayName": f"g{members}-{removals}",
        "members": [{"value": rid} for rid in ids],
    }
    gid = client.simulate_post("/scim/v2/Groups", json=body).json["id"]
    leaving = ids[:removals]

    def batch(prefix: str) -> dict:
        operations = [{"op": "remove", "path": f'{prefix}[value eq "{rid}"]'} for rid in leaving]
        back = [{"value": rid} for rid in leaving]
        operations.append({"op": "add", "path": prefix, "value": back})
        return {"schemas": [PATCH_OP], "Operations": operations}

    times: dict[str, list[float]] = {"direct": [], "general": []}
    for _ in range(2):
        for case, prefix in (("direct", "members"), ("general", GROUP_URN_MEMBERS)):
            times[case].append(
                timed(
                    lambda p=prefix: client.simulate_patch(f"/scim/v2/Groups/{gid}", json=batch(p))
                )
            )
    direct, general = statistics.median(times["direct"]), statistics.median(times["general"])
    return {
        "members": members,
        "removals": removals,
        "direct_s": direct,
        "general_s": general,
        "ratio": general / direct,
    }


def _attributes(client) -> list[tuple[str, float]]:
    for i in range(40):
        client.simulate_post(
            "/scim/v2/Users",
            json={
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": f"a{i}@example.com",
                "name": {"givenName": "A", "familyName": "B"},
            },
        )
    cases = [
        ("attributes=userName", "attributes=userName"),
        ("100 entries naming no attribute", "attributes=" + ",".join(f"x{i}" for i in range(100))),
        (
            "100 entries repeating two",
            "attributes=" + ",".join("name.givenName" if i % 2 else "userName" for i in range(100)),
        ),
    ]
    rows = []
    for label, query in cases:
        runs = [
            timed(lambda q=query: client.simulate_get("/scim/v2/Users", query_string=q))
            for _ in range(3)
        ]
        rows.append((label, statistics.median(runs)))
    return rows


def _write(rows: list[dict], attribute_rows, load_start, load_end) -> None:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    lines = [
        "# What one request costs: membership PATCHes on large groups, attribute lists",
        "",
        f"- date: {time.strftime('%Y-%m-%dT%H:%M:%S%z')}",
        f"- machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}; load average at "
        f"start {' '.join(f'{x:.2f}' for x in load_start)}, at end "
        f"{' '.join(f'{x:.2f}' for x in load_end)} (shared machine)",
        f"- command: `{' '.join([Path(sys.executable).name, *sys.argv])}`",
        f"- code: commit {commit}",
        "- in process, through the Falcon test client; wall time of one request, median of 2",
        "",
        "## Okta's membership PATCH: N removes of `members[value eq ...]` and one add",
        "",
        "| members | removes | applied to the member list, s | general PATCH, s | ratio |",
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        lines.append(
            f"| {row['members']:,} | {row['removals']} | {row['direct_s']:.3f} | "
            f"{row['general_s']:.3f} | {row['ratio']:.0f} x |"
        )
    lines += [
        "",
        "## `GET /Users` (40 users) with an `attributes` list, median of 3",
        "",
        "| attributes | s |",
        "| --- | ---: |",
    ]
    lines += [f"| {label} | {seconds:.3f} |" for label, seconds in attribute_rows]
    (ROOT / "bench" / "RESULTS-request-work.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
