"""The dirty set, not the broker, is the truth about unfinished work."""

from __future__ import annotations

import time

import falcon.testing

from scim_bridge.api.app import create_app
from scim_bridge.cli.processes import wait_until
from scim_bridge.store import Kind
from tests.support import TOKEN, make_settings
from tests.test_users import user_body


def test_a_task_dropped_on_the_floor_is_recovered_by_the_sweeper(
    settings, store, legacy, publisher
):
    dropped: list[tuple[Kind, str]] = []
    quick = make_settings(
        settings.redis_url, settings.password_key.get_secret_value(), confirm_wait_s=0.2
    )
    app = create_app(quick, store=store, publish=lambda kind, rid: dropped.append((kind, rid)))
    client = falcon.testing.TestClient(app, headers={"Authorization": TOKEN})
    created = client.simulate_post("/scim/v2/Users", json=user_body("lost@example.com"))
    assert created.status_code == 201  # accepted, not confirmed
    assert dropped and legacy.adapter.users == {}
    time.sleep(0.3)
    assert legacy.adapter.users == {}  # nobody was told
    # Time passes beyond the grace period: the sweeper (run by beat) finds the dirty mark.
    store.touch_dirty(Kind.USER, created.json["id"], time.time() - settings.sweep_grace_s - 1)
    from scim_bridge.workers.celery_app import create_celery

    create_celery(settings).send_task("scim_bridge.sweep")
    wait_until(lambda: legacy.adapter.users, timeout=10)
    wait_until(lambda: store.backlog() == 0, timeout=10)
    assert store.snapshot(Kind.USER, created.json["id"]).state == "applied"
