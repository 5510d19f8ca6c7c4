"""Process settings read from `LEADFLOW_*` environment variables, refusing unsafe production values."""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from functools import lru_cache
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_API_KEY = "lf_dev_key"

Scope = Literal[
    "leads:read",  # leads with their personal data
    "reports:read",  # reports, the review page, timelines
    "config:read",  # teams, reps, rules, endpoints, subscriptions, deliveries
    "leads:write",
    "sales:write",
    "alerts:write",
    "admin",  # every scope
]


class ApiKeySpec(BaseModel):
    """One API key: who holds it and what it may write. Stored as a SHA-256 digest."""

    name: str
    sha256: str | None = None
    key: str | None = Field(default=None, description="plain key; development only")
    scopes: list[Scope | Literal["*"]] = ["*"]
    source: str | None = Field(default=None, description="the source system whose leads it writes")

    @field_validator("sha256")
    @classmethod
    def _hex_digest(cls, digest: str | None) -> str | None:
        if digest is None:
            return None
        digest = digest.strip().lower()
        if not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise ValueError("must be the 64 hex digits of the key's SHA-256")
        return digest

    @model_validator(mode="after")
    def _digest(self) -> ApiKeySpec:
        if self.sha256 is None and self.key is None:
            raise ValueError("an API key needs `sha256` (or `key` in development)")
        if self.sha256 is None and self.key is not None:
            self.sha256 = hashlib.sha256(self.key.encode()).hexdigest()
        return self

    def allows(self, scope: str) -> bool:
        return scope in self.scopes or "*" in self.scopes or "admin" in self.scopes


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LEADFLOW_", extra="ignore")

    env: Literal["development", "test", "production"] = "development"
    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:55432/leadflow"
    kafka_bootstrap: str = "127.0.0.1:19092"
    topic_prefix: str = ""
    topic_partitions: int = Field(default=6, ge=1)
    # How topics Leadflow creates are replicated (1 suits a single broker; 3 with
    # min.insync.replicas 2 is the usual production cluster). Existing topics are left alone.
    topic_replication_factor: int = Field(default=1, ge=1)
    topic_min_insync_replicas: int | None = Field(default=None, ge=1)
    api_keys: list[ApiKeySpec] = Field(
        default_factory=lambda: [ApiKeySpec(name="development", key=DEV_API_KEY)]
    )
    clock_start: datetime | None = None
    clock_speed: float = Field(default=1.0, gt=0)
    clock_anchor: float | None = Field(
        default=None, description="real UNIX time at which the simulated clock read clock_start"
    )
    policy_file: str | None = None
    # YAML file with the installation's CRM connectors (shared/leadflow/contracts/connectors.py).
    connectors_file: str | None = None
    log_level: str = "INFO"
    webhook_allow_private: bool = False
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    # HubSpot adapter (ingest): the app's client secret checks X-HubSpot-Signature-v3; the
    # public URL is the one HubSpot signs when a proxy rewrites what the service sees.
    hubspot_client_secret: str | None = None
    # Seconds between webhook tries, first try included; default: the Standard Webhooks schedule.
    webhook_retry_schedule: tuple[float, ...] | None = None
    # Seconds a webhook receiver has to answer a delivery before the try counts as failed.
    webhook_read_timeout: float = Field(default=10.0, gt=0)
    hubspot_webhook_url: str | None = None
    # HubSpot private app's access token (ingest reads contacts through the CRM API with it);
    # never logged. Or the path of a file holding it (a mounted secret).
    hubspot_private_app_token: SecretStr | None = None
    hubspot_private_app_token_file: str | None = None
    # Base URL of HubSpot's API (a local server in the tests).
    hubspot_api_url: str = "https://api.hubapi.com"
    # YAML file whose entries override ingest's HubSpot mapping (roles, sources, titles).
    hubspot_mapping_file: str | None = None
    # notify's writes to Salesforce (connectors.salesforce.outbound): the connected app's
    # consumer key and secret (or a file holding it) for the OAuth 2.0 client-credentials flow;
    # never logged. HubSpot's writes use the private app token above.
    salesforce_client_id: str | None = None
    salesforce_client_secret: SecretStr | None = None
    salesforce_client_secret_file: str | None = None
    # Where feedback's lead timeline reads routing's decision trace and notify's webhook
    # deliveries (they own them; feedback shows them without copying them).
    routing_url: str = "http://127.0.0.1:8003"
    # Where feedback's console finds leads (ingest's search, `GET /v1/leads?q=`).
    ingest_url: str = "http://127.0.0.1:8001"
    notify_url: str = "http://127.0.0.1:8006"
    # feedback: the key its pages read routing and notify with for a signed-in person (who has
    # no key); only the reads the person's role allows are made with it. Unset: people's pages
    # show no rep names, decision traces or deliveries (development: the development key).
    pages_api_key: SecretStr | None = None
    # feedback's sign-in: the secret signing the session cookie (required in production, at
    # least 32 characters; unset elsewhere: a random one per process), or a file holding it,
    # and how long a session lasts (seconds, from sign-in and since the last page).
    session_secret: SecretStr | None = None
    session_secret_file: str | None = None
    session_max_age: int = Field(default=28_800, ge=60, le=30 * 86_400)
    # Failed sign-ins: the answer slows with each failure; after this many within the lock
    # time an account (any e-mail, known or not) or a client address is locked for it.
    sign_in_max_failures: int = Field(default=5, ge=1)
    sign_in_max_failures_per_address: int = Field(default=20, ge=1)
    sign_in_lock_seconds: int = Field(default=900, ge=1)
    # OpenID Connect sign-in (feedback): the identity provider's discovery document (or its
    # issuer URL), the client registered there, its secret (or a file holding it), the claim
    # naming a Leadflow role, a JSON map of groups (claim `oidc_groups_claim`) to roles, and
    # the role of a person neither gives one (unset: such a person is refused).
    oidc_discovery_url: str | None = None
    oidc_client_id: str | None = None
    oidc_client_secret: SecretStr | None = None
    oidc_client_secret_file: str | None = None
    oidc_scopes: str = "openid email profile"
    oidc_role_claim: str | None = None
    oidc_groups_claim: str = "groups"
    oidc_group_roles: dict[str, str] = Field(default_factory=dict)
    oidc_default_role: str | None = None
    # notify's e-mail: the SMTP relay it hands messages to (unset: no e-mail can be sent).
    smtp_host: str | None = Field(default=None, description="SMTP relay host")
    smtp_port: int = Field(default=587, ge=1, le=65535, description="SMTP relay port")
    smtp_starttls: bool = Field(default=True, description="upgrade with STARTTLS before AUTH")
    smtp_user: str | None = Field(default=None, description="SMTP AUTH user")
    smtp_password: str | None = Field(
        default=None, repr=False, description="SMTP AUTH password; never logged"
    )
    smtp_from: str = Field(
        default="Leadflow <leadflow@localhost>", description="From address of notify's e-mail"
    )
    smtp_timeout: float = Field(default=10.0, gt=0, description="seconds per SMTP exchange")
    # Where people open a lead's timeline page from a message: {public_url}/review/leads/{id}.
    public_url: str = Field(
        default="http://127.0.0.1:8005", description="public base URL of the review pages"
    )
    # notify's messages to people: one per recipient and channel per window (what comes
    # meanwhile goes as one digest); outside a person's working hours only a manager-level
    # escalation goes out at once when quiet hours are on.
    notify_digest_window: float = Field(default=300.0, ge=0, description="seconds")
    notify_quiet_hours: bool = True
    # Who hears Prometheus' alerts that Alertmanager posts to notify (POST /v1/alerts/alertmanager).
    oncall_name: str = "on call"
    oncall_email: str | None = None
    oncall_slack_webhook_url: str | None = None
    oncall_teams_webhook_url: str | None = None
    consumer_batch_size: int = Field(default=500, ge=1)
    consumer_max_attempts: int = Field(default=5, ge=1)
    # How long the broker may hold a consumer's fetch that finds nothing new (milliseconds):
    # for the subscriptions on a lead's way to its rep, its clock and its notification
    # (`Subscription.urgent`), and for every other one (Kafka's own default). A fetch held
    # longer is asked for less often: the broker and the service spend a tenth as much on a
    # subscription that has nothing to read.
    consumer_fetch_wait_ms: int = Field(default=50, ge=0, le=10_000)
    consumer_relaxed_fetch_wait_ms: int = Field(default=500, ge=0, le=10_000)
    # How long a consumer that stops heartbeating keeps its partitions (milliseconds). Kafka's
    # default group.min.session.timeout.ms refuses less than 6,000. A group join waits about half
    # of it on the embedded broker, so the tests use the minimum.
    consumer_session_timeout_ms: int = Field(default=10_000, ge=6_000, le=300_000)
    outbox_batch_size: int = Field(default=500, ge=1)
    # Published outbox rows are kept this long (seconds), so that a relay can send them again
    # when the broker lost its log; erasure still scrubs personal data from them.
    outbox_replay_window: int = Field(default=3600, ge=60)
    # Recovery from a broker that lost its log (an in-memory broker restarted): consumers keep
    # their positions in PostgreSQL and check them against the broker's log, relays publish
    # their replay window again. On by default; a broker that keeps its log (Apache Kafka) never
    # triggers it, and turning it off saves the broker's share of the position checks.
    broker_reset_recovery: bool = True
    # routing: how often the unassigned queue is looked at again for reps that became eligible
    # (working hours begin, out of office ends); changes through the API look at once.
    unassigned_recheck_seconds: float = Field(default=30.0, gt=0, le=3600)
    # sla-timer: claims fired at once while a backlog of due timers waits (SKIP LOCKED).
    sla_timer_claimers: int = Field(default=3, ge=1)
    host: str = "127.0.0.1"
    port: int | None = None

    @field_validator("database_url")
    @classmethod
    def _asyncpg_driver(cls, url: str) -> str:
        for plain in ("postgresql://", "postgres://"):
            if url.startswith(plain):
                return "postgresql+asyncpg://" + url[len(plain) :]
        return url

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Settings:
        if self.env != "production":
            return self
        problems = []
        for spec in self.api_keys:
            if spec.key is not None:
                problems.append(f"api_keys[{spec.name}]: plain keys are refused; give sha256")
        if self.webhook_allow_private:
            problems.append("webhook_allow_private: private webhook targets are refused")
        if self.clock_start is not None:
            problems.append("clock_start: simulated time is refused")
        if problems:
            raise ValueError("unsafe production settings: " + "; ".join(problems))
        return self

    @model_validator(mode="after")
    def _refuse_weak_session_secret(self) -> Settings:
        # feedback, which signs sessions, refuses to start in production without one (or its
        # file, read and checked at start); the other services need none
        if self.env != "production" or self.session_secret is None:
            return self
        if weak_secret(self.session_secret.get_secret_value()):
            raise ValueError(
                "unsafe production settings: session_secret is weak (at least 32 characters, "
                "not one repeated pattern; e.g. `openssl rand -base64 48`)"
            )
        return self

    @property
    def sync_database_url(self) -> str:
        return self.database_url.replace("+asyncpg", "")


def weak_secret(secret: str) -> bool:
    """Shorter than 32 characters, or fewer than 10 distinct ones (`aaaa…`, `abcabc…`)."""
    return len(secret) < 32 or len(set(secret)) < 10


@lru_cache
def get_settings() -> Settings:
    return Settings()
