"""Importing an application's existing accounts: full pass, ids, drift, removals, delta.

Real Redis and a real Celery worker (the ``legacy`` fixture's memory adapter is the application
both the worker and the importer talk to); the application's own changes go through the memory
adapter's ``insert_user``/``edit_user``/``remove_user``, as a helpdesk would make them.
"""

from __future__ import annotations

import uuid

import pytest

from scim_bridge.adapters.errors import TransientError
from scim_bridge.adapters.memory import MemoryAdapter
from scim_bridge.api.app import create_app
from scim_bridge.store import Kind
from scim_bridge.store.imports import ImportStore
from scim_bridge.workers.identity import derived_id
from scim_bridge.workers.sync import Importer
from tests.support import TOKEN, wait_until
from tests.test_users import USERS, user_body

NAMESPACE = uuid.UUID("2b7e5a57-93a1-4e4f-8d0c-4a8f1f0b7c11")


def importer(store, adapter, publisher=None, **options) -> Importer:
    return Importer(store, adapter, namespace=NAMESPACE, page_size=3, publish=publisher, **options)


def person(name: str, **extra):
    return {
        "userName": name,
        "name": {"givenName": name.split("@")[0], "familyName": "Legacy"},
        "emails": [{"value": name, "primary": True}],
        "active": True,
        **extra,
    }


def fill(adapter: MemoryAdapter, count: int) -> list[str]:
    return [adapter.insert_user(person(f"user{i}@example.com")) for i in range(count)]


def test_a_full_pass_imports_every_user_and_group_with_ids_from_their_legacy_keys(
    client, legacy, store
):
    keys = fill(legacy.adapter, 7)
    group_key = legacy.adapter.insert_group({"displayName": "Sales"}, members=keys[:2])
    result = importer(store, legacy.adapter).full_pass()
    assert result.status == "done" and result.tally.created == 8
    listed = client.simulate_get(USERS, params={"count": "100"}).json
    assert listed["totalResults"] == 7
    ids = {u["userName"]: u["id"] for u in listed["Resources"]}
    assert ids["user0@example.com"] == derived_id(NAMESPACE, Kind.USER, keys[0])
    group = client.simulate_get(f"/scim/v2/Groups/{derived_id(NAMESPACE, Kind.GROUP, group_key)}")
    assert group.status_code == 200 and group.json["displayName"] == "Sales"
    assert sorted(m["value"] for m in group.json["members"]) == sorted(
        ids[f"user{i}@example.com"] for i in range(2)
    )
    v1 = client.simulate_get(f"/scim/v1/Users/{ids['user3@example.com']}")
    assert v1.status_code == 200 and v1.json["schemas"] == ["urn:scim:schemas:core:1.0"]


def test_a_second_pass_over_unchanged_data_changes_nothing(client, legacy, store):
    fill(legacy.adapter, 5)
    legacy.adapter.insert_group({"displayName": "Ops"}, members=["u1"])
    importer(store, legacy.adapter).full_pass()
    before = client.simulate_get(USERS).json["Resources"]
    again = importer(store, legacy.adapter).full_pass()
    assert again.tally.unchanged == 6 and again.tally.updated == again.tally.created == 0
    after = client.simulate_get(USERS).json["Resources"]
    assert [u["meta"] for u in after] == [u["meta"] for u in before]


def test_ids_are_the_same_after_the_read_model_is_wiped_and_rebuilt(client, legacy, store):
    fill(legacy.adapter, 4)
    created = client.simulate_post(USERS, json=user_body("okta-made@example.com"))
    assert created.status_code == 201
    wait_until(lambda: store.backlog() == 0)
    importer(store, legacy.adapter).full_pass()
    before = {u["userName"]: u["id"] for u in client.simulate_get(USERS).json["Resources"]}
    store.clear_data()  # Redis wiped
    assert client.simulate_get(USERS).json["totalResults"] == 0
    importer(store, legacy.adapter).full_pass()
    after = {u["userName"]: u["id"] for u in client.simulate_get(USERS).json["Resources"]}
    assert after == before and len(after) == 5
    assert after["okta-made@example.com"] == created.json["id"]
    origins = {rid: o for rid, o, _ in ImportStore(store).origins(Kind.USER)}
    assert origins[created.json["id"]] == "okta"


def test_a_change_made_in_the_application_is_seen_by_the_incremental_import_filter(
    client, legacy, store
):
    keys = fill(legacy.adapter, 3)
    importer(store, legacy.adapter).full_pass()
    rid = derived_id(NAMESPACE, Kind.USER, keys[1])
    before = client.simulate_get(f"{USERS}/{rid}").json
    legacy.adapter.edit_user(keys[1], active=False)
    result = importer(store, legacy.adapter).full_pass()
    assert result.tally.updated == 1
    after = client.simulate_get(f"{USERS}/{rid}").json
    assert after["active"] is False and after["meta"]["version"] == 'W/"2"'
    assert after["meta"]["lastModified"] > before["meta"]["lastModified"]
    since = client.simulate_get(
        USERS, params={"filter": f'meta.lastModified gt "{before["meta"]["lastModified"]}"'}
    ).json
    assert [u["id"] for u in since["Resources"]] == [rid]
    assert ImportStore(store).status()["drift_imported"] == 1


def test_drift_enforce_reverts_the_applications_change(client, legacy, store, publisher):
    created = client.simulate_post(USERS, json=user_body("kept@example.com"))
    wait_until(lambda: store.backlog() == 0)
    key = store.snapshot(Kind.USER, created.json["id"]).legacy_key
    legacy.adapter.edit_user(key, active=False, displayName="changed by the helpdesk")
    result = importer(store, legacy.adapter, publisher, drift="enforce").full_pass()
    assert result.tally.enforced == 1
    wait_until(lambda: legacy.adapter.users[key]["active"] is True)
    wait_until(lambda: store.backlog() == 0)
    assert "displayName" not in legacy.adapter.users[key]
    assert client.simulate_get(f"{USERS}/{created.json['id']}").json["active"] is True
    assert ImportStore(store).status()["drift_enforced"] == 1


def test_a_pending_okta_change_survives_a_pass_that_sees_older_data(client, legacy, store):
    keys = fill(legacy.adapter, 2)
    importer(store, legacy.adapter).full_pass()
    rid = derived_id(NAMESPACE, Kind.USER, keys[0])
    snap = store.snapshot(Kind.USER, rid)
    desired = dict(snap.desired or {}, displayName="written by Okta")
    desired["meta"] = desired.pop("meta")  # meta last, as the api stores documents
    # Accepted from Okta and not yet applied (no task published: it stays pending).
    store.write_desired(
        Kind.USER,
        rid,
        desired,
        previous=snap.desired,
        expected_version=snap.version,
        last_modified=0.0,
    )
    legacy.adapter.edit_user(keys[0], displayName="older data in the application")
    result = importer(store, legacy.adapter).full_pass()
    assert result.tally.pending == 1
    assert client.simulate_get(f"{USERS}/{rid}").json["displayName"] == "written by Okta"
    assert store.snapshot(Kind.USER, rid).state == "pending"


def test_an_okta_put_on_an_imported_user_changes_that_record_in_place(client, legacy, store):
    keys = fill(legacy.adapter, 1)
    importer(store, legacy.adapter).full_pass()
    rid = derived_id(NAMESPACE, Kind.USER, keys[0])
    body = user_body("user0@example.com", displayName="Renamed by Okta")
    replaced = client.simulate_put(f"{USERS}/{rid}", json=body)
    assert replaced.status_code == 200, replaced.text
    wait_until(lambda: store.backlog() == 0)
    assert legacy.adapter.users[keys[0]]["displayName"] == "Renamed by Okta"
    assert len(legacy.adapter.users) == 1 and ("update_user", keys[0]) in legacy.adapter.calls
    origins = {r: o for r, o, _ in ImportStore(store).origins(Kind.USER)}
    assert origins[rid] == "linked"


def test_records_gone_from_the_application_are_removed_at_the_next_pass(client, legacy, store):
    keys = fill(legacy.adapter, 4)
    importer(store, legacy.adapter).full_pass()
    legacy.adapter.remove_user(keys[2])
    result = importer(store, legacy.adapter, max_removals=1).full_pass()
    assert result.removed == 1
    assert (
        client.simulate_get(f"{USERS}/{derived_id(NAMESPACE, Kind.USER, keys[2])}").status_code
        == 404
    )
    assert client.simulate_get(USERS).json["totalResults"] == 3


def test_more_removals_than_the_threshold_are_held_until_confirmed(client, legacy, store):
    keys = fill(legacy.adapter, 6)
    importer(store, legacy.adapter).full_pass()
    for key in keys[:3]:
        legacy.adapter.remove_user(key)
    sync = importer(store, legacy.adapter, max_removals=2)
    result = sync.full_pass()
    assert result.removals_held == 3 and result.removed == 0
    assert client.simulate_get(USERS).json["totalResults"] == 6
    held = sync.imports.held()
    assert {e["key"] for e in held.values()} == set(keys[:3])
    assert ImportStore(store).status()["removals_held"] == 3
    assert sync.confirm_removals() == 3
    assert client.simulate_get(USERS).json["totalResults"] == 3
    assert sync.imports.held() == {}


def test_malformed_records_are_skipped_with_their_key_and_the_pass_goes_on(client, legacy, store):
    fill(legacy.adapter, 2)
    nameless = legacy.adapter.insert_user({"displayName": "no login"})
    legacy.adapter.users["u99"] = {**person("USER0@example.com"), "_resource_id": None}
    result = importer(store, legacy.adapter).full_pass()
    assert result.status == "done" and result.tally.created == 2
    assert result.skipped_records == {
        f"User {nameless}": "no userName",
        "User u99": "userName held by another resource",
    }
    assert client.simulate_get(USERS).json["totalResults"] == 2


class FailsOnce(MemoryAdapter):
    """The application fails on the second page of the first pass."""

    def __init__(self) -> None:
        super().__init__()
        self.pages = 0

    def list_users(self, *, cursor, limit, deadline):
        self.pages += 1
        if self.pages == 2:
            raise TransientError("the application went away")
        return super().list_users(cursor=cursor, limit=limit, deadline=deadline)


def test_an_adapter_failing_mid_pass_stops_it_with_the_error_and_the_next_pass_resumes(
    client, legacy, store
):
    adapter = FailsOnce()
    fill(adapter, 8)
    sync = importer(store, adapter)
    first = sync.full_pass()
    assert first.status == "failed" and "went away" in first.error
    assert ImportStore(store).status()["error"] == first.error
    assert client.simulate_get(USERS).json["totalResults"] == 3
    second = sync.full_pass()
    assert second.status == "done" and adapter.pages == 4  # resumed at page 2, not page 1
    assert client.simulate_get(USERS).json["totalResults"] == 8
    assert ImportStore(store).status()["error"] is None


def test_a_pass_continues_from_its_checkpoint_across_slices(client, legacy, store):
    fill(legacy.adapter, 10)
    sync = importer(store, legacy.adapter)
    first = sync.full_pass(budget_s=0)
    assert first.status == "more" and first.tally.listed == 3
    while (result := sync.full_pass(budget_s=0)).status == "more":
        pass
    assert result.status == "done" and result.tally.listed == 10 and result.tally.created == 10


def test_a_delta_pass_imports_only_what_changed_since_its_token(client, legacy, store):
    keys = fill(legacy.adapter, 20)
    sync = importer(store, legacy.adapter)
    sync.full_pass()
    assert sync.delta_pass().tally.listed == 0
    for key in keys[5:9]:
        legacy.adapter.edit_user(key, displayName="edited")
    new = legacy.adapter.insert_user(person("late@example.com"))
    delta = sync.delta_pass()
    assert delta.tally.listed == 5 and delta.tally.updated == 4 and delta.tally.created == 1
    assert (
        client.simulate_get(f"{USERS}/{derived_id(NAMESPACE, Kind.USER, new)}").status_code == 200
    )
    assert sync.delta_pass().tally.listed == 0


@pytest.mark.parametrize("policy", ["conflict", "409"])
def test_an_okta_create_of_an_imported_user_name_is_a_409_by_default(
    settings, legacy, store, publisher, policy
):
    import falcon.testing

    fill(legacy.adapter, 1)
    importer(store, legacy.adapter).full_pass()
    app = create_app(
        settings.model_copy(update={"duplicate_create": policy}), store=store, publish=publisher
    )
    http = falcon.testing.TestClient(app, headers={"Authorization": TOKEN})
    assert http.simulate_post(USERS, json=user_body("user0@example.com")).status_code == 409


def test_duplicate_create_update_links_and_updates_the_imported_record(
    settings, legacy, store, publisher
):
    import falcon.testing

    keys = fill(legacy.adapter, 1)
    importer(store, legacy.adapter).full_pass()
    app = create_app(
        settings.model_copy(update={"duplicate_create": "update"}), store=store, publish=publisher
    )
    http = falcon.testing.TestClient(app, headers={"Authorization": TOKEN})
    created = http.simulate_post(USERS, json=user_body("user0@example.com", displayName="Okta's"))
    assert created.status_code in (200, 201), created.text
    assert created.json["id"] == derived_id(NAMESPACE, Kind.USER, keys[0])
    wait_until(lambda: store.backlog() == 0)
    assert len(legacy.adapter.users) == 1
    assert legacy.adapter.users[keys[0]]["displayName"] == "Okta's"
    origins = {r: o for r, o, _ in ImportStore(store).origins(Kind.USER)}
    assert origins[created.json["id"]] == "linked"


def test_a_pass_reports_its_progress_after_every_page(client, legacy, store):
    from scim_bridge.cli.sync import _progress_printer

    fill(legacy.adapter, 7)
    seen = []
    importer(store, legacy.adapter).full_pass(progress=seen.append)
    assert [(p.phase, p.records) for p in seen] == [
        ("users", 3),
        ("users", 6),
        ("users", 7),
        ("groups", 7),
    ]
    assert all(p.rate_per_s > 0 for p in seen)

    class Terminal:
        text = ""

        def write(self, text):
            self.text += text

        def flush(self):
            pass

    terminal = Terminal()
    show = _progress_printer(terminal)
    show(seen[0].__class__("users", 500, 250.0, 1500))
    assert "users: 500 records, 250/s, about 4 s left" in terminal.text


def test_the_full_and_delta_import_tasks_run_on_the_worker_in_slices(
    settings, client, legacy, store
):
    from scim_bridge.workers.celery_app import create_celery
    from scim_bridge.workers.sync_tasks import DELTA, SYNC

    keys = fill(legacy.adapter, 1200)  # three pages of 500
    app = create_celery(settings)
    app.send_task(SYNC)
    wait_until(lambda: store.count(Kind.USER) == 1200, timeout=60)
    wait_until(lambda: ImportStore(store).status()["passes"] == 1, timeout=30)
    namespace = settings.id_namespace_uuid()
    legacy.adapter.edit_user(keys[10], displayName="changed in the application")
    app.send_task(DELTA)
    rid = derived_id(namespace, Kind.USER, keys[10])
    wait_until(
        lambda: (
            client.simulate_get(f"{USERS}/{rid}").json.get("displayName")
            == "changed in the application"
        ),
        timeout=30,
    )
