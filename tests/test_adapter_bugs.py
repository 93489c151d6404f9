"""Port rule 4: an exception that is not one of the port's errors is an adapter bug. It is logged
with the plugin's name, retried as transient, and dead-lettered after the configured attempts;
it never escapes the task to be re-published by the sweeper forever."""

from __future__ import annotations

import logging

from scim_bridge.adapters.memory import MemoryAdapter
from scim_bridge.cli.processes import wait_until
from scim_bridge.store import Kind
from tests.test_users import user_body

USERS = "/scim/v2/Users"


class Buggy(MemoryAdapter):
    """A plugin with a bug: every update raises KeyError."""

    def __init__(self) -> None:
        super().__init__()
        self.update_calls = 0

    def update_user(self, key, user, *, previous, deadline):
        self.update_calls += 1
        raise KeyError("departmentName")


def test_an_adapter_bug_is_retried_then_dead_lettered_with_the_plugin_named(
    client, legacy, store, settings, caplog
):
    adapter = legacy.use(Buggy())
    rid = client.simulate_post(USERS, json=user_body()).json["id"]
    wait_until(lambda: store.backlog() == 0)
    caplog.set_level(logging.ERROR, logger="scim_bridge.tasks")
    changed = client.simulate_put(f"{USERS}/{rid}", json=user_body(displayName="Jane D."))
    # Retries are quick here, so the refusal may come within the write's confirmation wait.
    assert changed.status_code in (200, 400), changed.text
    if changed.status_code == 400:
        assert "adapter bug in plugin 'memory'" in changed.json["detail"]
    entry = f"{Kind.USER}:{rid}"
    wait_until(lambda: entry in store.dead_letters(), timeout=30)
    reason = str(store.dead_letters()[entry])
    assert "adapter bug" in reason and "KeyError" in reason and "'memory'" in reason, reason
    assert adapter.update_calls == settings.max_transient_attempts
    # The refused change rolled back: reads show what the legacy application holds.
    wait_until(lambda: "displayName" not in client.simulate_get(f"{USERS}/{rid}").json)
    assert any("adapter bug in plugin 'memory'" in r.getMessage() for r in caplog.records)
