"""The Falcon application: ``create_app`` wires collaborators, ``get_app`` is gunicorn's entry.

scim-bridge serve     (gunicorn with api/gunicorn_conf.py; see cli/serve.py)
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import falcon

from scim_bridge.api import errors
from scim_bridge.api.auth import Authenticator
from scim_bridge.api.capacity import BacklogEstimate
from scim_bridge.api.correlation import RequestIds
from scim_bridge.api.deadline import RequestDeadline
from scim_bridge.api.dialects import SCIM_1, SCIM_2
from scim_bridge.api.discovery import Listed, ProviderConfig, resource_types, schema_documents
from scim_bridge.api.health import Health, Metrics, Readiness
from scim_bridge.api.http_metrics import RequestMetrics
from scim_bridge.api.limits import RequestLimits
from scim_bridge.api.origin import Origin
from scim_bridge.api.reads import ReadService
from scim_bridge.api.resources import Collection, Endpoint, Item, RootSearch
from scim_bridge.api.schemas import build_schemas
from scim_bridge.api.writes import WriteService
from scim_bridge.store import Kind, Store
from scim_bridge.workers import logs
from scim_bridge.workers.runtime import Runtime, password_vault
from scim_bridge.workers.settings import Settings, SettingsError, load_settings
from scim_bridge.workers.tasks import RECONCILE

log = logging.getLogger("scim_bridge.api")

Publish = Callable[[Kind, str], None]


def celery_publisher(settings: Settings) -> Publish:
    """Publish reconcile tasks through Celery (built lazily, after gunicorn forks)."""
    from scim_bridge.workers.celery_app import create_celery

    app = create_celery(settings)

    def publish(kind: Kind, rid: str) -> None:
        request_id = logs.current_request_id()
        headers = {logs.REQUEST_ID_HEADER: request_id} if request_id else None
        app.send_task(RECONCILE, args=[kind.value, rid], headers=headers)

    return publish


def create_app(
    settings: Settings, *, store: Store, publish: Publish
) -> falcon.App[falcon.Request, falcon.Response]:
    """The WSGI app for ``settings``, with its collaborators given (tests pass their own)."""
    if settings.accept_passwords and settings.password_key_bytes() is None:
        raise SettingsError(
            "passwords are accepted but no key encrypts them: set SCIM_BRIDGE_PASSWORD_KEY or "
            "SCIM_BRIDGE_PASSWORD_KEY_FILE (or SCIM_BRIDGE_ACCEPT_PASSWORDS=false)"
        )
    # The request clock starts first, so authentication is inside what it measures.
    # The correlation id first, so every line and answer, a refusal too, carries it.
    middleware: list[Any] = [RequestIds()]
    if settings.http_metrics:
        middleware.append(RequestMetrics())
    middleware.append(RequestDeadline(settings.api_deadline_s))
    middleware.append(Authenticator(settings))
    app = falcon.App(middleware=middleware, cors_enable=False)
    app.req_options.strip_url_path_trailing_slash = True
    app.resp_options.default_media_type = "application/scim+json"
    errors.install(app)

    schemas = build_schemas(settings)
    reads = ReadService(store, schemas)
    limits = RequestLimits.of(settings)
    writes = WriteService(
        store,
        publish,
        schemas,
        vault=password_vault(settings) if settings.accept_passwords else None,
        confirm_wait_s=settings.confirm_wait_s,
        backlog=BacklogEstimate(store),
        duplicate_create_updates=settings.duplicate_create_updates,
        max_backlog=settings.max_backlog,
        limits=limits,
    )
    types, described = resource_types(schemas), schema_documents(schemas)
    origin = Origin(settings.public_base_url, settings.allowed_hosts)
    for prefix, dialect in (("/scim/v2", SCIM_2), ("/scim/v1", SCIM_1), ("/scim", SCIM_1)):
        endpoints = {
            kind: Endpoint(
                kind,
                prefix,
                dialect,
                schemas,
                reads,
                writes,
                max_body_bytes=settings.max_body_bytes,
                default_count=settings.default_page_size,
                max_count=settings.max_page_size,
                origin=origin,
                limits=limits,
            )
            for kind in Kind
        }
        for kind, endpoint in endpoints.items():
            app.add_route(f"{prefix}/{kind.endpoint}", Collection(endpoint))
            app.add_route(
                f"{prefix}/{kind.endpoint}/.search", Collection(endpoint), suffix="search"
            )
            app.add_route(f"{prefix}/{kind.endpoint}/{{rid}}", Item(endpoint))
        # RFC 7644's singular endpoint is what strict SCIM 2.0 clients validate: in 2.0 it is the
        # RFC document alone. Okta's agent reads the plural, which carries its capabilities.
        strict = dialect.name != "1.1"
        app.add_route(
            f"{prefix}/ServiceProviderConfig",
            ProviderConfig(settings, store, dialect, okta_capabilities=not strict),
        )
        app.add_route(f"{prefix}/ServiceProviderConfigs", ProviderConfig(settings, store, dialect))
        listed_types, listed_schemas = Listed(types, dialect), Listed(described, dialect)
        app.add_route(f"{prefix}/ResourceTypes", listed_types)
        app.add_route(f"{prefix}/ResourceTypes/{{member}}", listed_types, suffix="member")
        app.add_route(f"{prefix}/Schemas", listed_schemas)
        app.add_route(f"{prefix}/Schemas/{{member}}", listed_schemas, suffix="member")
        if dialect is SCIM_2:
            app.add_route(
                f"{prefix}/.search", RootSearch(endpoints[Kind.USER], endpoints[Kind.GROUP])
            )
    app.add_route("/healthz", Health())
    app.add_route("/readyz", Readiness(store))
    app.add_route("/metrics", Metrics(store, legacy_cap=settings.legacy_max_concurrency))
    return app


def get_app() -> falcon.App[falcon.Request, falcon.Response]:
    """Gunicorn's entry point: settings from the environment, Redis and Celery from them."""
    settings = load_settings()
    if not logging.getLogger().handlers:  # a gunicorn configuration without scim-bridge's logging
        logs.configure(logs.log_format(settings.log_format, command="serve"), settings.log_level)
    runtime = Runtime(settings)
    return create_app(settings, store=runtime.store, publish=celery_publisher(settings))
