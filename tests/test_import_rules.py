"""The rules of imports without processes: decisions, capabilities, settings, the commands."""

from __future__ import annotations

import json
import uuid

import pytest

from scim_bridge.adapters.memory import MemoryAdapter
from scim_bridge.adapters.port import Capability, LegacyRecord
from scim_bridge.cli.main import main
from scim_bridge.store import Kind
from scim_bridge.store.imports import Stored
from scim_bridge.workers.capabilities import advertised_functions
from scim_bridge.workers.celery_app import create_celery
from scim_bridge.workers.identity import derived_id, resource_id
from scim_bridge.workers.observe import decide, document
from scim_bridge.workers.settings import SettingsError, load_settings
from scim_bridge.workers.sync import Importer
from tests.support import make_settings

NAMESPACE = uuid.UUID("0e1f2d3c-4b5a-4697-8a8b-9c0d1e2f3a4b")


def _doc(**changes):
    record = LegacyRecord("7", None, {"userName": "ann@example.com", "active": True, **changes})
    return document(
        Kind.USER,
        "id-7",
        record,
        created="2026-01-01T00:00:00.000Z",
        last_modified="2026-01-01T00:00:00.000Z",
        version=1,
    )


def test_a_record_never_seen_is_imported_and_one_with_a_pending_change_is_left_alone():
    assert decide(Kind.USER, Stored("id-7"), _doc(), drift="import").write == "import"
    pending = Stored("id-7", version=3, pending=True, desired=_doc(), applied=_doc())
    assert decide(Kind.USER, pending, _doc(active=False), drift="import").write is None


def test_an_unchanged_record_is_not_written_whatever_its_meta():
    stored = Stored("id-7", version=2, desired=_doc(), applied=_doc(), legacy_key="7")
    observed = _doc() | {"meta": {"lastModified": "later"}}
    assert decide(Kind.USER, stored, observed, drift="import").write is None
    unknown_key = Stored("id-7", version=2, desired=_doc(), applied=_doc())
    assert decide(Kind.USER, unknown_key, observed, drift="import").write == "same"


def test_drift_is_imported_or_enforced_as_the_policy_says():
    stored = Stored("id-7", version=2, desired=_doc(), applied=_doc(), legacy_key="7")
    assert decide(Kind.USER, stored, _doc(active=False), drift="import").write == "import"
    assert decide(Kind.USER, stored, _doc(active=False), drift="enforce").write == "enforce"


def test_what_the_adapter_cannot_store_is_never_taken_for_drift():
    okta_wrote = _doc(title="Engineer", name={"givenName": "Ann", "middleName": "B"})
    stored = Stored("id-7", version=2, desired=okta_wrote, applied=okta_wrote, legacy_key="7")
    listed = _doc(name={"givenName": "Ann"})  # the application keeps no title, no middle name
    keeps = frozenset({"name.givenName", "emails"})
    assert decide(Kind.USER, stored, listed, drift="import", attributes=keeps).write is None
    assert decide(Kind.USER, stored, listed, drift="import").write == "import"
    renamed = _doc(name={"givenName": "Anna"})
    assert decide(Kind.USER, stored, renamed, drift="import", attributes=keeps).write == "import"


def test_group_members_compare_as_a_set_of_ids():
    group = LegacyRecord("3", None, {"displayName": "Ops"})
    made = document(
        Kind.GROUP,
        "g-3",
        group,
        member_ids=["a", "b"],
        created="c",
        last_modified="m",
        version=1,
    )
    reordered = dict(made, members=[{"value": "b", "display": "B"}, {"value": "a"}])
    stored = Stored("g-3", version=1, desired=reordered, applied=reordered, legacy_key="3")
    assert decide(Kind.GROUP, stored, made, drift="import").write is None


def test_ids_come_from_the_record_or_from_its_key_and_the_namespace():
    okta_made = LegacyRecord("9", "5a3c2b1e-0000-4000-8000-000000000001", {})
    assert resource_id(NAMESPACE, Kind.USER, okta_made) == okta_made.resource_id
    app_made = LegacyRecord("9", None, {})
    assert resource_id(NAMESPACE, Kind.USER, app_made) == derived_id(NAMESPACE, Kind.USER, "9")
    assert derived_id(NAMESPACE, Kind.USER, "9") != derived_id(NAMESPACE, Kind.GROUP, "9")
    other = uuid.UUID("11111111-2222-4333-8444-555555555555")
    assert derived_id(other, Kind.USER, "9") != derived_id(NAMESPACE, Kind.USER, "9")


def test_the_id_namespace_is_a_uuid_setting_with_a_stable_default():
    first = load_settings(auth_mode="none", adapter="sql", key_prefix="acme")
    again = load_settings(auth_mode="none", adapter="sql", key_prefix="acme", sql_url="sqlite://")
    assert first.id_namespace_uuid() == again.id_namespace_uuid()
    assert load_settings(auth_mode="none", key_prefix="other").id_namespace_uuid() != (
        first.id_namespace_uuid()
    )
    chosen = str(uuid.uuid4())
    assert load_settings(auth_mode="none", id_namespace=chosen).id_namespace_uuid() == (
        uuid.UUID(chosen)
    )
    with pytest.raises(SettingsError, match="SCIM_BRIDGE_ID_NAMESPACE"):
        load_settings(auth_mode="none", id_namespace="not-a-uuid")
    with pytest.raises(SettingsError, match="SCIM_BRIDGE_DRIFT"):
        load_settings(auth_mode="none", drift="sometimes")
    assert load_settings(auth_mode="none", duplicate_create="409").duplicate_create_updates is False


def test_beat_runs_the_imports_on_their_intervals_and_zero_turns_one_off(
    redis_server, password_key
):
    schedule = create_celery(make_settings(redis_server.url, password_key)).conf.beat_schedule
    assert (
        schedule["full-import"]["schedule"] == 3600 and schedule["delta-import"]["schedule"] == 60
    )
    off = make_settings(redis_server.url, password_key, sync_interval_s=0, delta_interval_s=0)
    assert set(create_celery(off).conf.beat_schedule) == {"sweep-dirty-resources"}


class CannotList(MemoryAdapter):
    def list_users(self, *, cursor, limit, deadline):
        raise NotImplementedError("this application has no way to enumerate its accounts")


def test_imports_are_advertised_only_by_adapters_that_can_list():
    assert Capability.IMPORT_NEW_USERS in advertised_functions(MemoryAdapter())
    functions = advertised_functions(CannotList())
    assert Capability.IMPORT_NEW_USERS not in functions
    assert Capability.IMPORT_PROFILE_UPDATES not in functions
    assert Capability.PUSH_NEW_USERS in functions


@pytest.fixture
def operator_env(monkeypatch, settings):
    monkeypatch.setenv("SCIM_BRIDGE_REDIS_URL", settings.redis_url)
    monkeypatch.setenv("SCIM_BRIDGE_AUTH_MODE", "none")
    monkeypatch.setenv("SCIM_BRIDGE_ADAPTER", "memory")


def _run(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    return exit_.value.code, capsys.readouterr().out


def test_status_and_accounts_show_drift_and_origins(operator_env, legacy, store, capsys):
    adapter = legacy.adapter
    key = adapter.insert_user({"userName": "helpdesk@example.com", "active": True})
    sync = Importer(store, adapter, namespace=load_settings(auth_mode="none").id_namespace_uuid())
    sync.full_pass()
    adapter.edit_user(key, active=False)
    sync.full_pass()
    main(["status", "--json"])
    status = json.loads(capsys.readouterr().out)
    assert status["imports"]["drift_imported"] == 1
    main(["status"])
    assert "1 imported, 0 re-applied" in capsys.readouterr().out
    code, out = _run(["accounts", "--json"], capsys)
    listing = json.loads(out)
    assert code == 0 and listing["counts"] == {"imported": 1}
    assert listing["accounts"]["imported"][0]["name"] == "helpdesk@example.com"


def test_sync_lists_and_confirms_held_removals(operator_env, legacy, store, capsys, monkeypatch):
    monkeypatch.setenv("SCIM_BRIDGE_SYNC_MAX_REMOVALS", "0")
    namespace = load_settings(auth_mode="none").id_namespace_uuid()
    adapter = legacy.adapter
    key = adapter.insert_user({"userName": "leaver@example.com", "active": True})
    Importer(store, adapter, namespace=namespace).full_pass()
    adapter.remove_user(key)
    held = Importer(store, adapter, namespace=namespace, max_removals=0).full_pass()
    assert held.removals_held == 1
    code, out = _run(["sync", "--pending-removals", "--json"], capsys)
    entries = json.loads(out)
    assert code == 0 and [e["key"] for e in entries.values()] == [key]
    code, out = _run(["sync", "--confirm-removals", "--json"], capsys)
    assert json.loads(out) == {"removed": 1}
    assert store.count(Kind.USER) == 0
