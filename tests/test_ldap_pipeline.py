"""The ldap adapter through the whole pipeline, as operators run it: ``scim-bridge dev`` against a
real slapd replays the Okta agent's lifecycle (``scim-bridge check``) into the directory; a wrong
bind password stops the worker with a clear message that ``scim-bridge status`` repeats, and the
change written meanwhile reaches the directory once the password is fixed."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import falcon.testing
import httpx

from scim_bridge.api.app import create_app
from scim_bridge.cli.processes import free_port, wait_until
from scim_bridge.workers.celery_app import create_celery
from scim_bridge.workers.runtime import Runtime
from tests.adapters.directory import (
    ACTIVE_PASSWORD_AND_GROUPS,
    ROOT_PASSWORD,
    Slapd,
    write_mapping,
)
from tests.support import TOKEN, make_settings, running_dev
from tests.test_users import user_body

ROOT = Path(__file__).parent.parent

# What Okta sends: no displayName, so userName names the entry (cn) and displayName has its own
# attribute; the agent's primary email is the mail.
OKTA_SHAPE = (
    """\
[ldap]
url = "{url}"
bind_dn = "{bind_dn}"
bind_password_file = "{password_file}"

[users]
base = "ou=people,{base}"
object_classes = ["inetOrgPerson"]
rdn = "cn"
changed = "modifyTimestamp"
[users.attributes]
userName = "cn"
"name.givenName" = "givenName"
"name.familyName" = "sn"
displayName = "displayName"
"emails[primary eq true].value" = "mail"
"""
    + ACTIVE_PASSWORD_AND_GROUPS
)


def _env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCIM_BRIDGE_")}
    env["PYTHONPATH"] = str(ROOT)
    env.update(values)
    return env


def _entries(slapd: Slapd, base: str, *attributes: str) -> list[dict]:
    with slapd.connection() as connection:
        connection.search(
            base, "(objectClass=*)", search_scope="LEVEL", attributes=list(attributes)
        )
        return [
            {"dn": e.entry_dn, **{a: e[a].values for a in attributes}} for e in connection.entries
        ]


def test_the_okta_lifecycle_through_dev_lands_in_the_directory(slapd, tmp_path):
    tree = slapd.new_tree()
    mapping = write_mapping(slapd, tmp_path, OKTA_SHAPE, base=tree)
    port = free_port()
    with running_dev(
        tmp_path,
        port,
        _env(
            SCIM_BRIDGE_ADAPTER="ldap",
            SCIM_BRIDGE_LDAP_MAPPING=str(mapping),
            SCIM_BRIDGE_WORKER_METRICS_PORT="0",
        ),
        timeout=120,
    ) as dev:
        text = dev.banner
        assert "ldap adapter" in text, text
        header = dev.header
        for base_url in (f"http://127.0.0.1:{port}/scim/", f"http://127.0.0.1:{port}/scim/v2/"):
            check = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "scim_bridge.cli",
                    "check",
                    base_url,
                    "--header",
                    f"Authorization: {header}",
                ],
                env=_env(),
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert check.returncode == 0, check.stdout + check.stderr
            assert "FAIL" not in check.stdout
        users = _entries(slapd, f"ou=people,{tree}", "cn", "employeeType", "userPassword")
        assert users, "the check's users should be entries of the directory"
        # The check deactivates what it created (Okta never deletes users): so does the directory.
        assert {tuple(u["employeeType"]) for u in users} == {("disabled",)}
        assert any(u["userPassword"] and u["userPassword"][0].startswith(b"{SSHA}") for u in users)
        # The check deleted its groups: so did the directory. A group pushed now lands there,
        # its member named by DN.
        assert _entries(slapd, f"ou=groups,{tree}", "cn") == []
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}/scim/v2", headers={"Authorization": header}
        ) as http:
            someone = http.get("/Users").json()["Resources"][0]
            group = {
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                "displayName": "Engineering",
                "members": [{"value": someone["id"]}],
            }
            assert http.post("/Groups", json=group).status_code == 201
        member_dn = f"cn={someone['userName']},ou=people,{tree}"
        wait_until(
            lambda: (
                _entries(slapd, f"ou=groups,{tree}", "member")
                == [{"dn": f"cn=Engineering,ou=groups,{tree}", "member": [member_dn]}]
            ),
            timeout=30,
        )


def test_a_wrong_bind_password_stops_the_worker_says_why_and_loses_nothing(
    slapd, redis_server, password_key, tmp_path
):
    tree = slapd.new_tree()
    mapping = write_mapping(slapd, tmp_path, base=tree, password="wrong-password")
    prefix = f"ldap{uuid.uuid4().hex[:8]}"
    # A database of its own: the session's in-process worker consumes the queue of db 0.
    redis_url = redis_server.url.rsplit("/", 1)[0] + "/7"
    env = _env(
        SCIM_BRIDGE_REDIS_URL=redis_url,
        SCIM_BRIDGE_KEY_PREFIX=prefix,
        SCIM_BRIDGE_AUTH_MODE="none",
        SCIM_BRIDGE_PASSWORD_KEY=password_key,
        SCIM_BRIDGE_ADAPTER="ldap",
        SCIM_BRIDGE_LDAP_MAPPING=str(mapping),
        SCIM_BRIDGE_WORKER_METRICS_PORT="0",
    )
    settings = make_settings(
        redis_url,
        password_key,
        key_prefix=prefix,
        adapter="ldap",
        ldap_mapping=mapping,
        confirm_wait_s=0.2,
    )
    celery = create_celery(settings)
    app = create_app(
        settings,
        store=Runtime(settings).store,
        publish=lambda kind, rid: celery.send_task("scim_bridge.reconcile", args=[kind.value, rid]),
    )
    client = falcon.testing.TestClient(app, headers={"Authorization": TOKEN})
    created = client.simulate_post(
        "/scim/v2/Users", json=user_body("kept@example.com", displayName="Kept")
    )
    assert created.status_code == 201  # accepted, pending: no worker yet

    worker_argv = [sys.executable, "-m", "scim_bridge.cli", "worker", "--concurrency", "1"]
    refused = subprocess.run(worker_argv, env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2
    assert "invalidCredentials" in refused.stderr and "ldap.bind_dn" in refused.stderr
    status = subprocess.run(
        [sys.executable, "-m", "scim_bridge.cli", "status"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert status.returncode == 0, status.stderr
    assert "adapter refused at worker start" in status.stdout
    assert "invalidCredentials" in status.stdout

    Path(re.search(r'bind_password_file = "([^"]+)"', mapping.read_text()).group(1)).write_text(
        ROOT_PASSWORD
    )
    worker = subprocess.Popen(
        worker_argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        store = Runtime(settings).store
        wait_until(lambda: store.backlog() == 0, timeout=60)
        assert store.dead_letters() == {}
        users = _entries(slapd, f"ou=people,{tree}", "uid")
        assert [u["uid"] for u in users] == [["kept@example.com"]]
        assert store.status().adapter_problem is None
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(60)


def test_imports_of_the_directory_keep_the_ids_of_entries_okta_created(
    client, legacy, store, slapd, tmp_path
):
    from ldap3 import MODIFY_REPLACE

    from scim_bridge.adapters.ldap import LdapAdapter
    from scim_bridge.store import Kind
    from scim_bridge.workers.sync import Importer

    tree = slapd.new_tree()
    adapter = legacy.use(
        LdapAdapter.from_options({"mapping": str(write_mapping(slapd, tmp_path, base=tree))})
    )
    try:
        body = user_body("okta@example.com", displayName="From Okta")
        rid = client.simulate_post("/scim/v2/Users", json=body).json["id"]
        wait_until(lambda: store.backlog() == 0, timeout=20)
        with slapd.connection() as connection:
            connection.add(
                f"uid=local,ou=people,{tree}",
                ["inetOrgPerson"],
                {"uid": "local", "cn": "Made Here", "sn": "Here"},
            )
        sync = Importer(store, adapter, namespace=uuid.uuid4(), page_size=10)
        start = sync.delta_pass()  # the first delta only takes the token for "now"
        assert start.tally.listed == 0
        full = sync.full_pass()
        assert full.tally.created == 1 and full.tally.skipped == 0  # only the local entry
        listed = client.simulate_get("/scim/v2/Users").json
        assert listed["totalResults"] == 2
        assert rid in {u["id"] for u in listed["Resources"]}
        with slapd.connection() as connection:
            connection.modify(
                f"uid=okta@example.com,ou=people,{tree}",
                {"cn": [(MODIFY_REPLACE, ["Changed In The Directory"])]},
            )
        delta = sync.delta_pass()
        assert delta.tally.updated >= 1 and delta.tally.created == 0
        assert store.snapshot(Kind.USER, rid).desired["displayName"] == "Changed In The Directory"
        assert client.simulate_get("/scim/v2/Users").json["totalResults"] == 2
    finally:
        adapter.close()
