"""Process settings from LEADFLOW_* variables, API keys, production refusals, and the shared clock."""

from __future__ import annotations

import hashlib
import json
import os
import time
from datetime import UTC, datetime, timedelta

import pytest
from leadflow.auth import find_key
from leadflow.clock import Clock, clock_from_settings
from leadflow.settings import DEV_API_KEY, ApiKeySpec, Settings
from pydantic import ValidationError

START = datetime(2026, 11, 16, 8, 0, tzinfo=UTC)
SOURCE_DIGEST = hashlib.sha256(b"lf_live_source").hexdigest()
SAFE_KEYS = [ApiKeySpec(name="hubspot", sha256=SOURCE_DIGEST, scopes=["leads:write"])]


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """A process environment with no LEADFLOW_* variables but the ones a test sets."""
    for name in list(os.environ):
        if name.upper().startswith("LEADFLOW_"):
            monkeypatch.delenv(name)
    return monkeypatch


def refusal(**values) -> str:
    with pytest.raises(ValidationError) as refused:
        Settings(**values)
    return str(refused.value)


# --- reading the environment ---------------------------------------------------------------


def test_defaults_are_a_local_development_stack(env):
    settings = Settings()
    assert settings.env == "development"
    assert settings.database_url == "postgresql+asyncpg://postgres@127.0.0.1:55432/leadflow"
    assert settings.kafka_bootstrap == "127.0.0.1:19092"
    assert settings.topic_prefix == ""
    assert settings.topic_partitions == 6
    assert settings.clock_start is None and settings.clock_speed == 1.0
    assert settings.webhook_allow_private is False
    assert settings.max_body_bytes == 1_048_576
    [key] = settings.api_keys
    assert key.name == "development" and key.scopes == ["*"]
    assert key.sha256 == hashlib.sha256(DEV_API_KEY.encode()).hexdigest()


def test_every_setting_is_read_from_its_leadflow_variable(env):
    env.setenv("LEADFLOW_ENV", "test")
    env.setenv("LEADFLOW_DATABASE_URL", "postgresql+asyncpg://app@db:5432/leads")
    env.setenv("LEADFLOW_KAFKA_BOOTSTRAP", "kafka-1:9092,kafka-2:9092")
    env.setenv("LEADFLOW_TOPIC_PREFIX", "staging.")
    env.setenv("LEADFLOW_TOPIC_PARTITIONS", "12")
    env.setenv("LEADFLOW_CLOCK_START", "2026-11-16T08:00:00+00:00")
    env.setenv("LEADFLOW_CLOCK_SPEED", "3600")
    env.setenv("LEADFLOW_CLOCK_ANCHOR", "1790000000.5")
    env.setenv("LEADFLOW_WEBHOOK_ALLOW_PRIVATE", "true")
    env.setenv("LEADFLOW_MAX_BODY_BYTES", "65536")
    env.setenv("LEADFLOW_CONSUMER_MAX_ATTEMPTS", "3")
    env.setenv("LEADFLOW_PORT", "9001")
    env.setenv("LEADFLOW_POLICY_FILE", "/etc/leadflow/policy.yaml")
    settings = Settings()
    assert settings.env == "test"
    assert settings.database_url == "postgresql+asyncpg://app@db:5432/leads"
    assert settings.kafka_bootstrap == "kafka-1:9092,kafka-2:9092"
    assert settings.topic_prefix == "staging."
    assert settings.topic_partitions == 12
    assert settings.clock_start == START
    assert settings.clock_speed == 3600.0
    assert settings.clock_anchor == 1790000000.5
    assert settings.webhook_allow_private is True
    assert settings.max_body_bytes == 65536
    assert settings.consumer_max_attempts == 3
    assert settings.port == 9001
    assert settings.policy_file == "/etc/leadflow/policy.yaml"


def test_variables_without_the_prefix_are_ignored(env):
    env.setenv("DATABASE_URL", "postgresql://elsewhere/db")
    env.setenv("TOPIC_PARTITIONS", "1")
    settings = Settings()
    assert "elsewhere" not in settings.database_url
    assert settings.topic_partitions == 6


def test_api_keys_are_read_as_json(env):
    keys = [
        {
            "name": "hubspot",
            "sha256": SOURCE_DIGEST,
            "scopes": ["leads:write"],
            "source": "hubspot",
        },
        {"name": "ops", "key": "lf_dev_ops", "scopes": ["admin", "sales:write"]},
    ]
    env.setenv("LEADFLOW_API_KEYS", json.dumps(keys))
    hubspot, ops = Settings().api_keys
    assert (hubspot.name, hubspot.sha256, hubspot.source) == ("hubspot", SOURCE_DIGEST, "hubspot")
    assert ops.sha256 == hashlib.sha256(b"lf_dev_ops").hexdigest()
    assert ops.scopes == ["admin", "sales:write"]


@pytest.mark.parametrize(
    ("scheme", "expected"),
    [
        ("postgresql://", "postgresql+asyncpg://"),
        ("postgres://", "postgresql+asyncpg://"),
        ("postgresql+asyncpg://", "postgresql+asyncpg://"),
    ],
)
def test_database_urls_always_use_the_asyncpg_driver(env, scheme: str, expected: str):
    env.setenv("LEADFLOW_DATABASE_URL", scheme + "app:pw@db:5432/leads")
    settings = Settings()
    assert settings.database_url == expected + "app:pw@db:5432/leads"
    assert settings.sync_database_url == "postgresql://app:pw@db:5432/leads"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("LEADFLOW_ENV", "staging"),
        ("LEADFLOW_TOPIC_PARTITIONS", "0"),
        ("LEADFLOW_CLOCK_SPEED", "0"),
        ("LEADFLOW_CLOCK_SPEED", "-60"),
        ("LEADFLOW_CLOCK_START", "next monday"),
        ("LEADFLOW_MAX_BODY_BYTES", "100"),
        ("LEADFLOW_CONSUMER_BATCH_SIZE", "0"),
        ("LEADFLOW_CONSUMER_MAX_ATTEMPTS", "0"),
        ("LEADFLOW_WEBHOOK_ALLOW_PRIVATE", "perhaps"),
        ("LEADFLOW_API_KEYS", "lf_dev_key"),
    ],
)
def test_a_bad_value_is_refused_naming_the_setting(env, variable: str, value: str):
    env.setenv(variable, value)
    with pytest.raises(ValueError) as refused:  # a ValidationError, or unparsable JSON
        Settings()
    assert variable.removeprefix("LEADFLOW_").lower() in str(refused.value)


# --- API keys --------------------------------------------------------------------------------


def test_a_plain_key_is_kept_as_its_sha256_digest():
    spec = ApiKeySpec(name="dev", key="s3cret")
    assert spec.sha256 == hashlib.sha256(b"s3cret").hexdigest()


def test_a_given_digest_is_used_as_is():
    spec = ApiKeySpec(name="hubspot", sha256=SOURCE_DIGEST)
    assert spec.sha256 == SOURCE_DIGEST and spec.key is None


def test_a_key_needs_a_digest_or_a_plain_key():
    with pytest.raises(ValidationError, match="needs `sha256`"):
        ApiKeySpec(name="nothing")


def test_keys_default_to_every_scope():
    spec = ApiKeySpec(name="dev", key="k")
    assert all(spec.allows(s) for s in ("leads:write", "sales:write", "admin"))


def test_a_scoped_key_allows_only_its_scopes():
    spec = ApiKeySpec(name="crm", key="k", scopes=["sales:write"])
    assert spec.allows("sales:write")
    assert not spec.allows("leads:write")
    assert not spec.allows("admin")


def test_an_unknown_scope_is_refused():
    with pytest.raises(ValidationError) as refused:
        ApiKeySpec(name="crm", key="k", scopes=["leads:erase"])
    assert refused.value.errors()[0]["loc"][0] == "scopes"


def test_a_presented_key_is_found_by_its_digest():
    keys = [*SAFE_KEYS, ApiKeySpec(name="crm", key="lf_dev_crm", scopes=["sales:write"])]
    assert find_key(keys, "lf_live_source").name == "hubspot"
    assert find_key(keys, "lf_dev_crm").name == "crm"
    assert find_key(keys, SOURCE_DIGEST) is None  # the digest itself is not a key
    assert find_key(keys, "lf_live_sourc") is None
    assert find_key(keys, "") is None


# --- production refuses unsafe values ---------------------------------------------------------


def test_production_with_digest_keys_starts():
    settings = Settings(env="production", api_keys=SAFE_KEYS)
    assert settings.env == "production"


def test_production_refuses_the_default_development_key(env):
    env.setenv("LEADFLOW_ENV", "production")
    with pytest.raises(ValidationError, match=r"api_keys\[development\]: plain keys are refused"):
        Settings()


def test_production_refuses_plain_keys():
    keys = [*SAFE_KEYS, ApiKeySpec(name="crm", key="lf_crm")]
    assert "api_keys[crm]: plain keys are refused; give sha256" in refusal(
        env="production", api_keys=keys
    )


def test_production_refuses_private_webhook_targets():
    assert "webhook_allow_private: private webhook targets are refused" in refusal(
        env="production", api_keys=SAFE_KEYS, webhook_allow_private=True
    )


def test_production_refuses_simulated_time():
    assert "clock_start: simulated time is refused" in refusal(
        env="production", api_keys=SAFE_KEYS, clock_start=START
    )


def test_production_names_every_problem_at_once():
    message = refusal(
        env="production",
        api_keys=[ApiKeySpec(name="crm", key="k")],
        webhook_allow_private=True,
        clock_start=START,
    )
    for problem in ("api_keys[crm]", "webhook_allow_private", "clock_start"):
        assert problem in message


def test_production_from_the_environment_with_digest_keys_starts(env):
    env.setenv("LEADFLOW_ENV", "production")
    env.setenv("LEADFLOW_API_KEYS", json.dumps([{"name": "hubspot", "sha256": SOURCE_DIGEST}]))
    assert Settings().env == "production"


@pytest.mark.parametrize("mode", ["development", "test"])
def test_outside_production_the_conveniences_are_allowed(mode: str):
    settings = Settings(
        env=mode,
        api_keys=[ApiKeySpec(name="dev", key="k")],
        webhook_allow_private=True,
        clock_start=START,
    )
    assert settings.webhook_allow_private and settings.clock_start == START


# --- the clock ---------------------------------------------------------------------------------


def test_a_real_clock_reads_utc_wall_time():
    clock = Clock()
    before = datetime.now(UTC)
    now = clock.now()
    assert before <= now <= datetime.now(UTC)
    assert now.tzinfo is UTC
    assert not clock.simulated


def test_a_real_clock_ignores_a_speed():
    clock = Clock(speed=3600)
    assert clock.speed == 1.0
    assert abs(clock.now() - datetime.now(UTC)) < timedelta(seconds=1)


def test_a_simulated_clock_reads_start_plus_elapsed_real_time_times_speed():
    clock = Clock(START, speed=60, anchor=time.time() - 10)  # 10 real seconds ago
    assert clock.simulated
    elapsed = clock.now() - START
    assert timedelta(minutes=10) <= elapsed < timedelta(minutes=10, seconds=30)


def test_a_simulated_clock_reads_its_start_at_its_anchor():
    anchor = time.time()
    clock = Clock(START, speed=3600, anchor=anchor)
    assert clock.now() - START < timedelta(minutes=10)  # at most ~0.17 real seconds later
    assert Clock(START, speed=3600, anchor=anchor + 3600).now() < START  # anchor in the future


def test_a_naive_start_is_read_as_utc():
    clock = Clock(datetime(2026, 11, 16, 8), speed=1.0, anchor=time.time())
    assert clock.start == START
    assert clock.now().tzinfo is not None


def test_processes_sharing_an_anchor_agree_on_the_instant():
    anchor = time.time() - 100
    a, b = Clock(START, 3600, anchor), Clock(START, 3600, anchor)
    assert abs(a.now() - b.now()) < timedelta(minutes=1)
    assert a.now() - START >= timedelta(hours=100)


def test_processes_with_different_anchors_disagree_by_the_anchor_gap_times_speed():
    now = time.time()
    early, late = Clock(START, 3600, now - 2), Clock(START, 3600, now)
    gap = early.now() - late.now()
    assert timedelta(hours=1, minutes=59) < gap < timedelta(hours=2, minutes=1)


def test_real_seconds_divides_simulated_time_by_the_speed():
    clock = Clock(START, speed=3600, anchor=time.time())
    assert clock.real_seconds(timedelta(hours=1)) == pytest.approx(1.0)
    assert clock.real_seconds(timedelta(days=5)) == pytest.approx(120.0)
    assert clock.real_seconds(timedelta(hours=-3)) == 0.0
    assert Clock().real_seconds(timedelta(seconds=1.5)) == pytest.approx(1.5)


async def test_sleep_until_waits_simulated_time_at_the_clocks_speed():
    clock = Clock(START, speed=36_000, anchor=time.time())  # 1 simulated hour = 0.1 real s
    target = clock.now() + timedelta(hours=1)
    started = time.monotonic()
    await clock.sleep_until(target)
    waited = time.monotonic() - started
    assert 0.09 <= waited < 1.0
    assert clock.now() >= target


async def test_sleep_until_a_past_instant_returns_at_once():
    clock = Clock(START, speed=36_000, anchor=time.time())
    started = time.monotonic()
    await clock.sleep_until(START - timedelta(days=1))
    assert time.monotonic() - started < 0.05


async def test_sleep_until_is_capped_in_real_seconds():
    clock = Clock(START, speed=60, anchor=time.time())  # a simulated hour is a real minute
    started = time.monotonic()
    await clock.sleep_until(clock.now() + timedelta(hours=1), cap=0.05)
    assert 0.04 <= time.monotonic() - started < 0.5


def test_the_clock_is_built_from_settings():
    settings = Settings(clock_start=START, clock_speed=3600, clock_anchor=1790000000.0)
    clock = clock_from_settings(settings)
    assert (clock.start, clock.speed, clock.anchor) == (START, 3600, 1790000000.0)
    assert not clock_from_settings(Settings()).simulated


def test_a_malformed_key_digest_is_refused_and_case_does_not_matter():
    import hashlib

    import pytest
    from leadflow.settings import ApiKeySpec
    from pydantic import ValidationError

    digest = hashlib.sha256(b"lf_key").hexdigest()
    assert ApiKeySpec(name="k", sha256=digest.upper()).sha256 == digest
    with pytest.raises(ValidationError, match="64 hex digits"):
        ApiKeySpec(name="k", sha256="not-a-digest")


def test_an_exhausted_connection_pool_is_transient_not_a_crash():
    from leadflow.db import is_transient
    from sqlalchemy.exc import TimeoutError as PoolTimeoutError

    assert is_transient(PoolTimeoutError("QueuePool limit of size 10 overflow 10 reached"))
    assert not is_transient(ValueError("a bug"))
