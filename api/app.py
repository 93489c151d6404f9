"""The Falcon application: ``create_app`` wires collaborators, ``get_app`` is gunicorn's entry.

gunicorn 'api.app:get_app()' -c deploy/gunicorn.conf.py
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import falcon

from api import errors
from api.auth import Authenticator
from api.capacity import BacklogEstimate
from api.discovery import Document, Listed, resource_types, schemas, service_provider_config
from api.health import Health, Metrics, Readiness
from api.reads import ReadService
from api.resources import Collection, Endpoint, Item
from api.writes import WriteService
from workers.readmodel import Kind, ReadModel
from workers.runtime import Runtime, password_vault
from workers.settings import Settings, load_settings
from workers.tasks import RECONCILE

log = logging.getLogger("scim_bridge.api")

Publish = Callable[[Kind, str], None]


def celery_publisher(settings: Settings) -> Publish:
    """Publish reconcile tasks through Celery (built lazily, after gunicorn forks)."""
    from workers.celery_app import create_celery

    app = create_celery(settings)

    def publish(kind: Kind, rid: str) -> None:
        app.send_task(RECONCILE, args=[kind.value, rid])

    return publish


def create_app(
    settings: Settings, *, store: ReadModel, publish: Publish
) -> falcon.App[falcon.Request, falcon.Response]:
    """The WSGI app for ``settings``, with its collaborators given (tests pass their own)."""
    if settings.accept_passwords and settings.password_key_bytes() is None:
        from workers.settings import SettingsError

        raise SettingsError(
            "passwords are accepted but no key encrypts them: set SCIM_BRIDGE_PASSWORD_KEY or "
            "SCIM_BRIDGE_PASSWORD_KEY_FILE (or SCIM_BRIDGE_ACCEPT_PASSWORDS=false)"
        )
    app = falcon.App(middleware=[Authenticator(settings)], cors_enable=False)
    app.req_options.strip_url_path_trailing_slash = True
    app.resp_options.default_media_type = "application/scim+json"
    errors.install(app)

    reads = ReadService(store)
    writes = WriteService(
        store,
        publish,
        vault=password_vault(settings),
        confirm_wait_s=settings.confirm_wait_s,
        backlog=BacklogEstimate(store),
    )
    prefix = "/scim/v2"
    for kind in Kind:
        endpoint = Endpoint(
            kind,
            reads,
            writes,
            max_body_bytes=settings.max_body_bytes,
            default_count=settings.default_page_size,
            max_count=settings.max_page_size,
        )
        app.add_route(f"{prefix}/{kind.endpoint}", Collection(endpoint))
        app.add_route(f"{prefix}/{kind.endpoint}/{{rid}}", Item(endpoint))
    app.add_route(f"{prefix}/ServiceProviderConfig", Document(service_provider_config(settings)))
    types, described = Listed(resource_types()), Listed(schemas())
    app.add_route(f"{prefix}/ResourceTypes", types)
    app.add_route(f"{prefix}/ResourceTypes/{{member}}", types, suffix="member")
    app.add_route(f"{prefix}/Schemas", described)
    app.add_route(f"{prefix}/Schemas/{{member}}", described, suffix="member")
    app.add_route("/healthz", Health())
    app.add_route("/readyz", Readiness(store))
    app.add_route("/metrics", Metrics(store))
    return app


def get_app() -> falcon.App[falcon.Request, falcon.Response]:
    """Gunicorn's entry point: settings from the environment, Redis and Celery from them."""
    settings = load_settings()
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    runtime = Runtime(settings)
    return create_app(settings, store=runtime.store, publish=celery_publisher(settings))
