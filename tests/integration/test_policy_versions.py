"""The policy as numbered versions: feedback keeps them, publishes one as the current policy, and
every service applies it from the `policy.published` event without a restart.

Each test runs the services it needs in-process against its own database and topics (the real
PostgreSQL and broker of tests/support/harness.py)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from leadflow.contracts.events import (
    POLICY_KEY,
    TOPIC_POLICY,
    TOPIC_ROUTING,
    CloudEvent,
    LeadRouted,
    PolicyPublished,
)
from leadflow.contracts.policy_document import parse_policy
from support.harness import (
    ADMIN,
    CONFIG_READER,
    QUALIFIED_LEAD,
    REPORTS_READER,
    eventually,
    publish_events,
    rows_in,
    sample_routed,
    service_client,
)

DEFAULT_TEXT = (
    Path(__file__).parents[2] / "shared/leadflow/contracts/policy_default.yaml"
).read_text()
DEFAULT_VERSION = "2026.11-default"
YAML = {**ADMIN, "Content-Type": "application/yaml"}


def policy_text(version: str, *replacements: tuple[str, str]) -> str:
    """The shipped policy under another `version`, with each (old, new) line replaced once."""
    text = DEFAULT_TEXT.replace(f'version: "{DEFAULT_VERSION}"', f'version: "{version}"', 1)
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new, 1)
    return text


async def post_version(feedback, text: str) -> dict:
    response = await feedback.post("/v1/policy/versions", content=text, headers=YAML)
    assert response.status_code == 201, response.text
    return response.json()


async def publish(feedback, number: int) -> dict:
    response = await feedback.post(f"/v1/policy/versions/{number}/publish", headers=ADMIN)
    assert response.status_code == 200, response.text
    return response.json()


async def publish_stricter(feedback) -> None:
    """Version 2, "2026.12-stricter", wants a fit of 80 for an MQL (70 before), published."""
    await post_version(
        feedback, policy_text("2026.12-stricter", ("    fit_min: 70\n", "    fit_min: 80\n"))
    )
    await publish(feedback, 2)


async def applied(client, version: str) -> None:
    """Wait until the service behind `client` decides with the policy labelled `version`."""
    rt = client.app.state.runtime
    await eventually(
        lambda: rt.policy.version == version,
        timeout=60,
        describe=lambda: f"{rt.spec.name} still applies {rt.policy.version}",
    )


async def test_the_policy_file_is_version_1_on_a_fresh_install(stack):
    settings = await stack.isolated_settings()
    async with service_client("feedback", settings) as feedback:
        current = (await feedback.get("/v1/policy", headers=CONFIG_READER)).json()
        listed = (await feedback.get("/v1/policy/versions", headers=CONFIG_READER)).json()["items"]
        refused = await feedback.get("/v1/policy", headers=REPORTS_READER)
        unknown = await feedback.get("/v1/policy/versions/7")
        too_large = await feedback.get("/v1/policy/versions/99999999999")
        unknown_diff = await feedback.get("/v1/policy/versions/1/diff/7")
        no_rollback = await feedback.post("/v1/policy/rollback", headers=ADMIN)
    assert (current["number"], current["version"], current["state"]) == (
        1,
        DEFAULT_VERSION,
        "published",
    )
    assert current["text"] == DEFAULT_TEXT  # as written, comments kept
    assert current["document"]["scoring"]["mql"]["fit_min"] == 70
    assert [(v["number"], v["state"], v["publication"]) for v in listed] == [(1, "published", 1)]
    assert refused.status_code == 403
    assert unknown.status_code == 404
    assert too_large.status_code == 422
    assert unknown_diff.status_code == 404
    assert unknown_diff.json()["field"] == "after"
    assert no_rollback.status_code == 409


async def test_an_invalid_version_is_refused_naming_path_and_line_and_nothing_is_kept(stack):
    settings = await stack.isolated_settings()
    text = policy_text(
        "2026.12-broken",
        ("    fit_min: 70\n", "    fit_min: 170\n"),
        (
            "  sal_acceptance: {limit: 24h, clock: wall}",
            "  sal_acceptance: {limit: 24, clock: wall}",
        ),
    )
    lines = text.splitlines()
    fit_line = next(i for i, line in enumerate(lines, 1) if "fit_min: 170" in line)
    limit_line = next(i for i, line in enumerate(lines, 1) if "limit: 24," in line)
    async with service_client("feedback", settings) as feedback:
        refused = await feedback.post("/v1/policy/versions", content=text, headers=YAML)
        not_yaml = await feedback.post("/v1/policy/versions", content="scoring: [1", headers=YAML)
        same_label = await feedback.post("/v1/policy/versions", content=DEFAULT_TEXT, headers=YAML)
        not_admin = await feedback.post(
            "/v1/policy/versions",
            content=policy_text("2026.12-fine"),
            headers={**CONFIG_READER, "Content-Type": "application/yaml"},
        )
        listed = (await feedback.get("/v1/policy/versions")).json()["items"]
    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    errors = {(e["field"], e["line"]) for e in refused.json()["errors"]}
    assert errors == {
        ("scoring.mql.fit_min", fit_line),
        ("slas.sal_acceptance.limit", limit_line),
    }
    assert not_yaml.status_code == 422
    assert not_yaml.json()["errors"][0]["line"] == 1
    assert same_label.status_code == 422
    assert same_label.json()["errors"][0]["field"] == "version"
    assert not_admin.status_code == 403
    assert [v["number"] for v in listed] == [1]
    assert await rows_in(settings, "feedback.policy_versions") == 1


async def scoring_events(settings, lead_id: str) -> list[CloudEvent]:
    from leadflow.db import Database

    db = Database(settings.database_url)
    try:
        async with db.unit_of_work() as session:
            raw = await session.execute(sa.text("SELECT payload FROM scoring.outbox ORDER BY id"))
            events = [CloudEvent.from_bytes(row.payload) for row in raw]
    finally:
        await db.dispose()
    return [e for e in events if e.subject == lead_id and e.type == "lead.scored"]


async def scored(scoring, lead_id: str) -> dict:
    async def score():
        response = await scoring.get(f"/v1/leads/{lead_id}/score")
        return response.json() if response.status_code == 200 else None

    return await eventually(score, timeout=60)


async def post_lead(ingest, email: str) -> str:
    # Fit 100 but intent tier 0 and no engagement: the shipped rule (tier 2) does not promote it.
    body = {**QUALIFIED_LEAD, "email": email, "intent_tier": 0}
    response = await ingest.post("/v1/leads", json=body, headers=ADMIN)
    assert response.status_code == 202, response.text
    return response.json()["lead_id"]


async def test_a_published_version_decides_the_next_lead_without_a_restart(stack):
    settings = await stack.isolated_settings()
    async with (
        service_client("feedback", settings) as feedback,
        service_client("ingest", settings) as ingest,
        service_client("scoring", settings) as scoring,
    ):
        before = await post_lead(ingest, "first@analytical-engines.example")
        first = await scored(scoring, before)
        assert (first["is_mql"], first["policy_version"]) == (False, DEFAULT_VERSION)

        draft = await post_version(
            feedback,
            policy_text(
                "2026.12-any-intent", ("    intent_tier_min: 2\n", "    intent_tier_min: 0\n")
            ),
        )
        assert (draft["number"], draft["state"]) == (2, "draft")
        diff = (await feedback.get("/v1/policy/versions/1/diff/2")).json()
        assert [(c["path"], c["before"], c["after"]) for c in diff["changes"]] == [
            ("scoring.mql.intent_tier_min", 2, 0),
            ("version", DEFAULT_VERSION, "2026.12-any-intent"),
        ]
        assert "-    intent_tier_min: 2\n+    intent_tier_min: 0\n" in diff["text"]
        assert diff["text"].startswith("--- version 1\n+++ version 2\n")

        published = await publish(feedback, 2)
        assert (published["state"], published["publication"]) == ("published", 2)
        await applied(scoring, "2026.12-any-intent")

        after = await post_lead(ingest, "second@analytical-engines.example")
        second = await scored(scoring, after)
        assert (second["is_mql"], second["policy_version"]) == (True, "2026.12-any-intent")
        [event] = await scoring_events(settings, after)
        assert event.leadflowpolicyversion == "2026.12-any-intent"
        # The first lead's score keeps the version that decided it.
        assert (await scored(scoring, before))["policy_version"] == DEFAULT_VERSION

        listed = (await feedback.get("/v1/policy/versions")).json()["items"]
        assert [(v["number"], v["state"]) for v in listed] == [(1, "superseded"), (2, "published")]
        audit = (await feedback.get("/v1/audit?entity=policy-version", headers=ADMIN)).json()
        assert [(e["action"], e["entity_id"]) for e in audit["items"]][:2] == [
            ("published", "2"),
            ("created", "2"),
        ]


async def test_a_rollback_publishes_the_version_before_again(stack):
    settings = await stack.isolated_settings()
    async with (
        service_client("feedback", settings) as feedback,
        service_client("scoring", settings) as scoring,
    ):
        await publish_stricter(feedback)
        await applied(scoring, "2026.12-stricter")

        rolled = await feedback.post("/v1/policy/rollback", headers=ADMIN)
        assert rolled.status_code == 200, rolled.text
        assert (rolled.json()["number"], rolled.json()["publication"]) == (1, 3)
        await applied(scoring, DEFAULT_VERSION)
        current = (await feedback.get("/v1/policy")).json()
        assert current["number"] == 1
        listed = (await feedback.get("/v1/policy/versions")).json()["items"]
        assert [(v["number"], v["state"]) for v in listed] == [(1, "published"), (2, "superseded")]

        # Publishing the current version again sends nothing new.
        again = await publish(feedback, 1)
        assert again["publication"] == 3
        # Publishing the newer one again is a publication like any other.
        assert (await publish(feedback, 2))["publication"] == 4
        await applied(scoring, "2026.12-stricter")
        assert scoring.app.state.runtime.current_policy.number == 2


async def test_a_service_started_later_takes_the_stored_publication_not_the_file(stack):
    settings = await stack.isolated_settings()
    async with (
        service_client("feedback", settings) as feedback,
        service_client("scoring", settings) as scoring,
    ):
        await publish_stricter(feedback)
        await applied(scoring, "2026.12-stricter")
    async with service_client("scoring", settings) as scoring:
        # Read at start, before anything is decided: no waiting.
        assert scoring.app.state.runtime.policy.version == "2026.12-stricter"
        assert scoring.app.state.runtime.policy.scoring.mql.fit_min == 80


# --- SLA clocks keep the version they were opened under -------------------------------------


def routed(lead_id: uuid.UUID, at: datetime) -> LeadRouted:
    return sample_routed(lead_id, at, kind="mql")


async def acceptance_clock(client, lead_id: uuid.UUID) -> dict:
    async def opened():
        body = (await client.get(f"/v1/leads/{lead_id}/slas")).json()
        return next((t for t in body.get("timers", []) if t["sla"] == "sal_acceptance"), None)

    return await eventually(opened, timeout=60)


async def test_a_clock_keeps_the_limit_of_the_version_it_was_opened_under(stack):
    settings = await stack.isolated_settings()
    first, second = uuid.uuid4(), uuid.uuid4()
    async with (
        service_client("feedback", settings) as feedback,
        service_client("sla-timer", settings) as sla_timer,
    ):
        now = datetime.now(UTC)
        await publish_events(settings, TOPIC_ROUTING, [routed(first, now)])
        old = await acceptance_clock(sla_timer, first)
        assert old["policy_version"] == DEFAULT_VERSION
        started = datetime.fromisoformat(old["started_at"])
        assert datetime.fromisoformat(old["due_at"]) == started + timedelta(hours=24)

        await post_version(
            feedback,
            policy_text(
                "2026.12-slower-acceptance",
                (
                    "sal_acceptance: {limit: 24h, clock: wall}",
                    "sal_acceptance: {limit: 48h, clock: wall}",
                ),
            ),
        )
        await publish(feedback, 2)
        await applied(sla_timer, "2026.12-slower-acceptance")

        await publish_events(settings, TOPIC_ROUTING, [routed(second, now)])
        new = await acceptance_clock(sla_timer, second)
        assert new["policy_version"] == "2026.12-slower-acceptance"
        assert datetime.fromisoformat(new["due_at"]) == (
            datetime.fromisoformat(new["started_at"]) + timedelta(hours=48)
        )
        assert await acceptance_clock(sla_timer, first) == old
    # Nor does a restart move it onto the version published since.
    async with service_client("sla-timer", settings) as sla_timer:
        assert sla_timer.app.state.runtime.policy.version == "2026.12-slower-acceptance"
        assert await acceptance_clock(sla_timer, first) == old


# --- what a service takes from the topic -----------------------------------------------------


def published(version: str, number: int, publication: int, document: dict):
    return PolicyPublished(
        lead_id=POLICY_KEY,
        number=number,
        version=version,
        publication=publication,
        published_at=datetime.now(UTC),
        published_by="key:admin",
        document=document,
    )


async def test_a_late_copy_of_an_older_publication_changes_nothing(stack):
    settings = await stack.isolated_settings()
    newer = parse_policy(policy_text("2026.12-newer")).document
    older = parse_policy(policy_text("2026.12-older")).document
    async with service_client("scoring", settings) as scoring:
        await publish_events(settings, TOPIC_POLICY, [published("2026.12-newer", 3, 5, newer)])
        await applied(scoring, "2026.12-newer")
        await publish_events(settings, TOPIC_POLICY, [published("2026.12-older", 2, 4, older)])

        async def both_taken() -> bool:
            return await rows_in(settings, "scoring.inbox") >= 2

        await eventually(both_taken, timeout=30)
        await scoring.app.state.runtime.current_policy.refresh()
        assert scoring.app.state.runtime.policy.version == "2026.12-newer"


async def test_a_publication_a_service_cannot_validate_keeps_the_policy_in_force(stack):
    settings = await stack.isolated_settings()
    async with service_client("scoring", settings) as scoring:
        rt = scoring.app.state.runtime
        broken = {**rt.policy.model_dump(mode="json"), "version": "2027.01-unknown-field"}
        broken["scoring"] = {**broken["scoring"], "a_rule_this_build_lacks": 1}
        await publish_events(settings, TOPIC_POLICY, [published("2027.01-x", 2, 2, broken)])

        async def stored() -> bool:
            return await rows_in(settings, "scoring.current_policy") == 1

        await eventually(stored, timeout=30)
        assert await rt.current_policy.refresh() is False
        assert rt.policy.version == DEFAULT_VERSION


async def test_feedback_sends_the_current_publication_again_at_every_start(stack):
    settings = await stack.isolated_settings()
    async with service_client("feedback", settings) as feedback:
        await publish_stricter(feedback)
    async with service_client("feedback", settings) as feedback:
        rt = feedback.app.state.runtime
        async with rt.db.unit_of_work() as session:
            raw = await session.execute(sa.text("SELECT payload FROM feedback.outbox ORDER BY id"))
            sent = [CloudEvent.from_bytes(row.payload) for row in raw]
        listed = (await feedback.get("/v1/policy/versions")).json()["items"]
    publications = [
        (e.data["number"], e.data["publication"]) for e in sent if e.type == "policy.published"
    ]
    assert publications == [(1, 1), (2, 2), (2, 2)]  # the last one again, as it was
    assert [(v["number"], v["publication"]) for v in listed] == [(1, 1), (2, 2)]
    # A service started afterwards decides with the current publication.
    async with service_client("scoring", settings) as scoring:
        await applied(scoring, "2026.12-stricter")
        assert scoring.app.state.runtime.current_policy.publication == 2
