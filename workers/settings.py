"""Every setting of scim-bridge: one home for each number that matters, validated at start-up.

Read from ``SCIM_BRIDGE_*`` environment variables and, when ``SCIM_BRIDGE_CONFIG`` names one,
a TOML file (environment variables win). The time budget (docs/architecture.md) is derived here from
Okta's "Timeout for API calls" (``timeout_budget_s``), and its invariants are checked, so a bad
combination is a start-up error that says what to change.

Over 400 lines on purpose: it is one pydantic-settings model, one documented field per
setting, and the checks that tie settings together (budget, deadlines, Sentinel, TLS) must see
all of them; splitting the fields would only spread the one list operators read.
"""

from __future__ import annotations

import itertools
import os
import re
import uuid
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from scim_bridge.store.connection import Sentinels

CustomType = Literal["string", "boolean", "integer", "double"]
# The custom attributes of Okta's documented example, so its example requests work as they are.
_OKTA_EXAMPLE_ATTRIBUTES: dict[str, CustomType] = {
    "isAdmin": "boolean",
    "isOkta": "boolean",
    "departmentName": "string",
}


class SettingsError(ValueError):
    """A configuration that cannot work; the message says which setting to change."""


class Settings(BaseSettings):
    """scim-bridge's configuration. Field names map to ``SCIM_BRIDGE_<NAME>`` variables."""

    model_config = SettingsConfigDict(
        env_prefix="SCIM_BRIDGE_", extra="forbid", validate_default=True
    )

    # Redis: read model and broker -----------------------------------------------------------
    redis_url: str = "redis://127.0.0.1:6379/0"
    """The Redis server; with Sentinel, only its database number and credentials count."""
    redis_timeout_s: float = Field(1.0, gt=0, le=10)
    key_prefix: str = "sb"
    redis_sentinels: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Sentinel nodes (``host:port,host:port,...``): every client finds the primary through
    them, so a failover needs no restart."""
    redis_sentinel_master: str | None = None
    """The name the Sentinels monitor the primary under (``sentinel monitor <name> ...``)."""
    redis_sentinel_password: SecretStr | None = None
    """The Sentinels' own password (``requirepass`` of the Sentinel nodes), if any."""
    redis_min_replica_acks: int | None = Field(None, ge=0)
    """Replicas that must hold an accepted write before it is answered (Redis ``WAIT``);
    default 1 with Sentinel, else 0 (no wait)."""
    redis_replica_ack_timeout_s: float = Field(1.0, gt=0, le=10)
    """How long a write waits for those replicas; short of them it is answered 503."""

    # Authentication of the Okta agent ---------------------------------------------------------
    auth_mode: Literal["basic", "header", "none"] = "header"
    auth_username: str | None = None
    auth_password: SecretStr | None = None
    auth_header_name: str = "Authorization"
    auth_header_value: SecretStr | None = None

    # The budget (docs/architecture.md) ------------------------------------------------------
    timeout_budget_s: float = Field(30.0, ge=1)
    """Okta's "Timeout for API calls": no request may take longer."""
    confirm_wait_s: float = Field(2.0, ge=0)
    """How long a write waits for the legacy application's answer before answering anyway."""
    adapter_deadline_s: float | None = Field(None, gt=0)
    """Deadline of one reconciliation's legacy calls; default a third of the budget."""
    retry_backoff_base_s: float = Field(1.0, gt=0)
    retry_backoff_max_s: float = Field(60.0, gt=0)
    max_transient_attempts: int = Field(20, ge=1)
    visibility_timeout_s: float | None = Field(None, gt=0)
    """Broker redelivery of unacknowledged tasks; default derived from the budget."""
    max_starts: int = Field(5, ge=2)
    """A change started this many times without finishing (its worker lost each time) is poison."""
    sweep_interval_s: float = Field(5.0, gt=0)
    sweep_grace_s: float = Field(60.0, gt=0)
    """A dirty resource untouched by any task for this long is presumed lost and re-published."""

    # Protecting the legacy application ------------------------------------------------------
    legacy_max_concurrency: int = Field(0, ge=0)
    """Concurrent legacy calls across all workers and hosts (0: no cap)."""
    breaker_failure_threshold: int = Field(5, ge=1)
    """Consecutive transient failures that open the circuit breaker."""
    breaker_open_s: float = Field(30.0, gt=0)
    """How long the breaker stays open before one probe call is let through."""
    max_backlog: int = Field(10_000, ge=1)
    """Writes get 503 with Retry-After while this many resources have unfinished changes."""

    # Requests ---------------------------------------------------------------------------------
    max_body_bytes: int = Field(1_048_576, ge=1024)
    max_page_size: int = Field(1000, ge=1)
    default_page_size: int = Field(100, ge=1)
    public_base_url: str | None = None
    """The connector's URL as Okta reaches it (``https://scim.corp.example``): every ``Location``
    and ``meta.location`` is built from it, whatever Host a request carries."""
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["localhost", "127.0.0.1", "::1"]
    )
    """Without ``public_base_url``, the Host names (comma-separated) that may appear in
    locations; a request naming another host gets 400 rather than a forged URL."""

    # TLS of the api (scim-bridge serve) --------------------------------------------------------
    tls_certfile: Path | None = None
    """PEM file: the api's certificate, then any intermediate CA certificates; TLS is on when
    it and ``tls_keyfile`` are set (``serve --certfile --keyfile``)."""
    tls_keyfile: Path | None = None
    """PEM file: the certificate's private key (unencrypted)."""
    tls_min_version: Literal["1.2", "1.3"] = "1.2"
    """The oldest TLS version the api accepts."""

    # Clients of the api (api/gunicorn_worker.py) ---------------------------------------------
    client_timeout_s: float = Field(10.0, gt=0)
    """Time a client has to send a whole request (headers and body): from connecting, or from
    its previous answer on a kept-alive connection. Slower clients get 408 and are closed."""
    max_connections: int = Field(250, ge=2)
    """Open client connections per api process; more wait in the listen backlog."""

    # Work per request (api/limits.py) -------------------------------------------------------
    max_patch_operations: int = Field(1000, ge=1)
    """Operations in one PATCH. Okta sends one ``remove`` per member leaving a group."""
    max_multi_valued: int = Field(100, ge=1)
    """Values of one multi-valued attribute (emails, phoneNumbers, ...) other than members."""
    max_group_members: int = Field(50_000, ge=1)
    """Members of one group, in a request and in the group a PATCH leaves."""
    max_string_length: int = Field(8192, ge=64)
    """Characters of one string value (an X.509 certificate in base64 fits)."""
    max_attributes: int = Field(100, ge=1)
    """Entries of one ``attributes`` or ``excludedAttributes`` list."""
    request_deadline_s: float | None = Field(None, gt=0)
    """A write not stored by then is abandoned (503, nothing stored); default a third of the
    budget, so an abandoned request answers well before Okta gives up and retries."""

    # The legacy application -------------------------------------------------------------------
    adapter: str = "sql"
    adapter_options: dict[str, Any] = Field(default_factory=dict)
    sql_url: str = "sqlite:///scim-bridge-legacy.db"
    sql_mapping: Path | None = None
    """The ``sql`` adapter's mapping file (TOML, docs/sql-mapping.md); unset: its own tables."""
    ldap_mapping: Path | None = None
    """The ``ldap`` adapter's mapping file (TOML, docs/ldap.md); required by that adapter."""
    simulate_latency_s: float = Field(0.0, ge=0)
    simulate_jitter_s: float = Field(0.0, ge=0)
    simulate_error_rate: float = Field(0.0, ge=0, le=1)
    simulate_max_concurrency: int = Field(0, ge=0)
    simulate_effect_lands_on_timeout: bool = False
    """A simulated time-out still applies the change (the case idempotency is for)."""

    # Secrets ----------------------------------------------------------------------------------
    accept_passwords: bool = True
    password_key: SecretStr | None = None
    """A Fernet key (32 url-safe base64 bytes) encrypting pending passwords in Redis."""
    password_key_file: Path | None = None

    # Okta ---------------------------------------------------------------------------------------
    okta_app_name: str = Field("onprem_app", pattern=r"^[A-Za-z0-9_.-]+$")
    """``{appName}`` in Okta's custom user extension ``urn:okta:{appName}:1.0:user:{schemaName}``"""
    okta_user_schema_name: str = Field("custom", pattern=r"^[A-Za-z0-9_.-]+$")
    okta_user_attributes: dict[str, CustomType] = Field(
        default_factory=lambda: dict(_OKTA_EXAMPLE_ATTRIBUTES)
    )
    """Attributes of the custom user extension, as defined in the Okta app's profile."""
    unique_user_field: str = "userName"
    """Okta's "Unique user field name": what check-exists filters on (indexed)."""
    duplicate_create: Literal["conflict", "409", "update"] = "conflict"
    """A POST for an existing userName: 409 (``conflict``, Okta's tests), or update and return
    (and so link) the user, imported or not."""

    # Import of existing accounts (docs/import.md) ---------------------------------------------
    sync_interval_s: float = Field(3600.0, ge=0)
    """Beat runs a full import this often (0: never; ``scim-bridge sync`` still works)."""
    delta_interval_s: float = Field(60.0, ge=0)
    """Beat runs a delta import this often when the adapter has one (0: never)."""
    drift: Literal["import", "enforce"] = "import"
    """A record changed in the application with nothing pending: take it, or re-apply Okta's."""
    sync_max_removals: int = Field(100, ge=0)
    """A full pass that would remove more records than this holds them for confirmation."""
    sync_max_rate: float = Field(2500.0, ge=0)
    """Records per second a full import may take at most (0: no cap), so that reads served
    meanwhile and the legacy application keep their speed."""
    sync_niceness: int = Field(10, ge=0, le=19)
    """How many steps lower (``nice``) the CPU priority of a full import pass is than the
    process's own (0: the same), so that on a shared host the api's reads come first."""
    sync_page_size: int = Field(500, ge=1, le=10_000)
    """Records asked of the adapter per page during imports."""
    id_namespace: str | None = None
    """UUID namespace of the ids of records the application created; default derived from
    ``adapter`` and ``key_prefix`` (see :meth:`id_namespace_uuid`)."""

    # Processes --------------------------------------------------------------------------------
    worker_concurrency: int = Field(4, ge=1)
    task_events: bool = False
    """Celery task events, for Flower; they cost a publish per task state change."""
    worker_metrics_port: int = Field(9464, ge=0, le=65535)
    """Where each ``scim-bridge worker`` serves its Prometheus metrics (0: not served)."""
    worker_metrics_host: str = "0.0.0.0"  # noqa: S104 - scraped from other hosts
    """The address it listens on (``scim-bridge dev``: its ``--host``)."""
    http_metrics: bool = True
    """Count and time every api request (the benchmark turns it off to measure its cost)."""
    log_level: str = "INFO"
    log_format: Literal["json", "text"] | None = None
    """One JSON object per line, or text; unset: text for ``scim-bridge dev`` on a terminal,
    JSON for everything else (workers/logs.py)."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get("SCIM_BRIDGE_CONFIG")
        if config_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(config_file)))
        return tuple(sources)

    # Derived budget ---------------------------------------------------------------------------
    @property
    def legacy_deadline_s(self) -> float:
        """Deadline for the legacy calls of one reconciliation."""
        return self.adapter_deadline_s or self.timeout_budget_s / 3

    @property
    def api_deadline_s(self) -> float:
        """How long one api request may work before it is abandoned unstored."""
        return self.request_deadline_s or self.timeout_budget_s / 3

    @property
    def task_soft_time_limit_s(self) -> float:
        """Celery soft limit: a backstop a little past the adapter deadline."""
        return self.legacy_deadline_s + 5

    @property
    def task_time_limit_s(self) -> float:
        """Celery hard limit: the process is killed past this."""
        return self.task_soft_time_limit_s + 5

    @property
    def lock_ttl_s(self) -> float:
        """Per-resource lock lifetime: outlives any task that still runs."""
        return self.task_time_limit_s + 5

    @property
    def broker_visibility_timeout_s(self) -> float:
        """Redelivery of unacknowledged tasks: after any lock and any retry wait has passed."""
        if self.visibility_timeout_s is not None:
            return self.visibility_timeout_s
        return 2 * max(self.lock_ttl_s, self.retry_backoff_max_s) + 60

    @property
    def replica_acks(self) -> int:
        """Replica acknowledgements an accepted write waits for."""
        if self.redis_min_replica_acks is not None:
            return self.redis_min_replica_acks
        return 1 if self.redis_sentinels else 0

    def sentinels(self) -> Sentinels | None:
        """Where Sentinel finds the primary, or None when ``redis_url`` names it directly."""
        if not self.redis_sentinels or not self.redis_sentinel_master:
            return None
        nodes = []
        for node in self.redis_sentinels:
            host, _, port = node.rpartition(":")
            nodes.append((host.strip("[]"), int(port)))
        password = self.redis_sentinel_password
        return Sentinels(
            tuple(nodes),
            self.redis_sentinel_master,
            password.get_secret_value() if password is not None else None,
        )

    @field_validator("allowed_hosts", "redis_sentinels", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        if isinstance(value, str):
            return [host.strip().lower() for host in value.split(",") if host.strip()]
        return value

    @field_validator("public_base_url")
    @classmethod
    def _check_base_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not re.fullmatch(r"https?://[^/\s?#]+(/[^\s?#]*)?", value):
            raise ValueError(
                f"SCIM_BRIDGE_PUBLIC_BASE_URL must be an http(s) URL such as "
                f"https://scim.corp.example, not {value!r}"
            )
        return value.rstrip("/")

    @model_validator(mode="after")
    def _check(self) -> Settings:
        problems: list[str] = []
        if self.auth_mode == "basic" and not (self.auth_username and self.auth_password):
            problems.append(
                "auth_mode is 'basic': set SCIM_BRIDGE_AUTH_USERNAME and SCIM_BRIDGE_AUTH_PASSWORD"
            )
        if self.auth_mode == "header" and not self.auth_header_value:
            problems.append(
                "auth_mode is 'header': set SCIM_BRIDGE_AUTH_HEADER_VALUE "
                "(for example 'Bearer <token>')"
            )
        if self.confirm_wait_s + 1 > self.timeout_budget_s / 2:
            problems.append(
                f"confirm_wait_s ({self.confirm_wait_s}) must leave half the budget free: "
                f"lower SCIM_BRIDGE_CONFIRM_WAIT_S below {self.timeout_budget_s / 2 - 1:g} "
                f"or raise SCIM_BRIDGE_TIMEOUT_BUDGET_S"
            )
        if self.api_deadline_s > self.timeout_budget_s / 2:
            problems.append(
                f"request_deadline_s ({self.api_deadline_s:g}) must leave half the budget "
                f"free: lower SCIM_BRIDGE_REQUEST_DEADLINE_S below {self.timeout_budget_s / 2:g}"
            )
        if self.client_timeout_s + self.api_deadline_s >= self.timeout_budget_s:
            problems.append(
                f"client_timeout_s ({self.client_timeout_s:g}) plus request_deadline_s "
                f"({self.api_deadline_s:g}) must stay below the budget "
                f"({self.timeout_budget_s:g}): lower SCIM_BRIDGE_CLIENT_TIMEOUT_S"
            )
        if self.legacy_deadline_s > self.timeout_budget_s:
            problems.append(
                f"adapter_deadline_s ({self.legacy_deadline_s:g}) exceeds the budget "
                f"({self.timeout_budget_s:g}): lower SCIM_BRIDGE_ADAPTER_DEADLINE_S"
            )
        chain = [
            ("adapter deadline", self.legacy_deadline_s),
            ("task soft time limit", self.task_soft_time_limit_s),
            ("task hard time limit", self.task_time_limit_s),
            ("lock TTL", self.lock_ttl_s),
            ("visibility timeout", self.broker_visibility_timeout_s),
        ]
        for (low_name, low), (high_name, high) in itertools.pairwise(chain):
            if not low < high:
                problems.append(
                    f"{low_name} ({low:g} s) must be below {high_name} ({high:g} s): "
                    "raise SCIM_BRIDGE_VISIBILITY_TIMEOUT_S or lower "
                    "SCIM_BRIDGE_ADAPTER_DEADLINE_S"
                )
        if not self.retry_backoff_max_s < self.broker_visibility_timeout_s:
            problems.append(
                f"retry_backoff_max_s ({self.retry_backoff_max_s:g}) must be below "
                f"visibility_timeout_s ({self.broker_visibility_timeout_s:g}): a retry that "
                "waits longer would be redelivered as well"
            )
        if self.retry_backoff_base_s > self.retry_backoff_max_s:
            problems.append("retry_backoff_base_s must not exceed retry_backoff_max_s")
        if self.default_page_size > self.max_page_size:
            problems.append("default_page_size must not exceed max_page_size")
        if self.sweep_grace_s <= self.lock_ttl_s:
            problems.append(
                f"sweep_grace_s ({self.sweep_grace_s:g}) must exceed the lock TTL "
                f"({self.lock_ttl_s:g}): a running task would be re-published"
            )
        problems += self._sentinel_problems()
        if (self.tls_certfile is None) != (self.tls_keyfile is None):
            problems.append(
                "TLS needs both SCIM_BRIDGE_TLS_CERTFILE and SCIM_BRIDGE_TLS_KEYFILE "
                "(serve --certfile and --keyfile)"
            )
        if self.id_namespace is not None:
            try:
                uuid.UUID(self.id_namespace)
            except ValueError:
                problems.append(
                    f"id_namespace ({self.id_namespace!r}) is not a UUID: set "
                    "SCIM_BRIDGE_ID_NAMESPACE to one (for example from `uuidgen`), or unset it"
                )
        for name in self.okta_user_attributes:
            if not re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", name):
                problems.append(
                    f"okta_user_attributes: {name!r} is not a SCIM attribute name "
                    "(letters and digits, starting with a letter)"
                )
        if problems:
            raise SettingsError("invalid scim-bridge settings:\n  - " + "\n  - ".join(problems))
        return self

    def _sentinel_problems(self) -> list[str]:
        problems = []
        for node in self.redis_sentinels:
            host, _, port = node.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                problems.append(
                    f"SCIM_BRIDGE_REDIS_SENTINELS: {node!r} is not host:port "
                    "(for example sentinel-1:26379,sentinel-2:26379,sentinel-3:26379)"
                )
        if self.redis_sentinels and not self.redis_sentinel_master:
            problems.append(
                "SCIM_BRIDGE_REDIS_SENTINELS is set: set SCIM_BRIDGE_REDIS_SENTINEL_MASTER to the "
                "name the Sentinels monitor the primary under"
            )
        if self.redis_sentinel_master and not self.redis_sentinels:
            problems.append(
                "SCIM_BRIDGE_REDIS_SENTINEL_MASTER is set without SCIM_BRIDGE_REDIS_SENTINELS: "
                "list the Sentinel nodes (host:port,host:port,...)"
            )
        if self.redis_sentinels and not self.redis_url.startswith("redis://"):
            problems.append(
                "with Sentinel, SCIM_BRIDGE_REDIS_URL must be redis://[user:password@]host/db "
                "(it gives the database number and credentials only)"
            )
        wait_s = self.redis_replica_ack_timeout_s
        if self.replica_acks and wait_s + self.confirm_wait_s + 1 > self.timeout_budget_s / 2:
            problems.append(
                f"redis_replica_ack_timeout_s ({self.redis_replica_ack_timeout_s:g}) and "
                f"confirm_wait_s ({self.confirm_wait_s:g}) must leave half the budget free: "
                "lower SCIM_BRIDGE_REDIS_REPLICA_ACK_TIMEOUT_S"
            )
        return problems

    @property
    def okta_user_urn(self) -> str:
        """The URN of Okta's custom user extension."""
        return f"urn:okta:{self.okta_app_name}:1.0:user:{self.okta_user_schema_name}"

    def user_lookup_paths(self) -> tuple[str, ...]:
        """Attribute paths of users indexed for ``eq`` lookups besides the unique ones."""
        paths = ["emails"]
        field = self.unique_user_field
        if field.lower() not in {"username", "externalid", "id", "email", "emails", "emails.value"}:
            paths.append(field)
        return tuple(paths)

    @property
    def duplicate_create_updates(self) -> bool:
        """Whether an Okta create of an existing userName updates (links) that record."""
        return self.duplicate_create == "update"

    def id_namespace_uuid(self) -> uuid.UUID:
        """The namespace of derived ids: the setting, else one derived from adapter and prefix.

        The default depends only on names that do not change when secrets rotate or hosts move
        (not the database URL), so a rebuilt read model gets the same ids.
        """
        if self.id_namespace is not None:
            return uuid.UUID(self.id_namespace)
        return uuid.uuid5(uuid.NAMESPACE_URL, f"scim-bridge:{self.adapter}:{self.key_prefix}")

    def password_key_bytes(self) -> bytes | None:
        """The key encrypting pending passwords, from the setting or the key file."""
        if self.password_key is not None:
            return self.password_key.get_secret_value().encode()
        if self.password_key_file is not None:
            return self.password_key_file.read_bytes().strip()
        return None

    def adapter_options_resolved(self) -> dict[str, Any]:
        """Options handed to the adapter factory (``sql`` gets ``url`` from ``sql_url``, ``ldap``
        its ``mapping`` from ``ldap_mapping``)."""
        options = dict(self.adapter_options)
        if self.adapter == "sql":
            options.setdefault("url", self.sql_url)
            if self.sql_mapping is not None:
                options.setdefault("mapping", str(self.sql_mapping))
        if self.adapter == "ldap" and self.ldap_mapping is not None:
            options.setdefault("mapping", str(self.ldap_mapping))
        return options


def load_settings(**overrides: Any) -> Settings:
    """Read and validate the settings; raises :class:`SettingsError` with what to change."""
    from pydantic import ValidationError

    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            location = ".".join(str(part) for part in error["loc"])
            if isinstance(error.get("ctx", {}).get("error"), SettingsError):
                lines.append(str(error["ctx"]["error"]))
            else:
                name = f"SCIM_BRIDGE_{location.upper()}" if location else "settings"
                lines.append(f"{name}: {error['msg']}")
        raise SettingsError("\n".join(lines)) from None
