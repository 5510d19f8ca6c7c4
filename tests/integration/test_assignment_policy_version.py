"""Routing records the policy version each decision was made under (real PostgreSQL and
broker): in the decision trace, in `GET /v1/leads/{id}/assignment` and on the `lead.routed` and
`lead.unassigned` events' `leadflowpolicyversion`, as scoring's and sla-timer's decisions do."""

from leadflow.contracts.events import TOPIC_SCORING
from leadflow.contracts.policy import load_policy
from support.harness import (
    ADMIN,
    CONFIG_READER,
    emitted,
    eventually,
    publish_events,
    sample_mql,
    service_client,
)


async def test_an_assignment_and_its_event_name_the_policy_version_it_was_decided_under(stack):
    settings = await stack.isolated_settings()
    version = load_policy(settings.policy_file).version  # what a fresh routing applies
    async with service_client("routing", settings) as routing:
        rep = await routing.post("/v1/reps", json={"name": "Ada"}, headers=ADMIN)
        assert rep.status_code == 201, rep.text
        mql = sample_mql(1)
        await publish_events(settings, TOPIC_SCORING, [mql])

        async def routed():
            return await emitted(settings, "lead.routed") or None

        [event] = await eventually(routed, timeout=60)
        assignment = await routing.get(f"/v1/leads/{mql.lead_id}/assignment")
        dry_run = await routing.post(
            "/v1/routing:dry-run", json={"channel": "inbound"}, headers=CONFIG_READER
        )
    assert assignment.status_code == 200, assignment.text
    body = assignment.json()
    assert body["policy_version"] == body["trace"]["policy_version"] == version
    assert event.leadflowpolicyversion == version
    assert dry_run.json()["trace"]["policy_version"] == version


async def test_a_lead_no_rep_can_take_waits_with_the_version_of_that_decision(stack):
    settings = await stack.isolated_settings()
    version = load_policy(settings.policy_file).version
    async with service_client("routing", settings) as routing:
        mql = sample_mql(2)  # no rep at all: the lead waits
        await publish_events(settings, TOPIC_SCORING, [mql])

        async def waiting():
            return await emitted(settings, "lead.unassigned") or None

        [event] = await eventually(waiting, timeout=60)
        assignment = await routing.get(f"/v1/leads/{mql.lead_id}/assignment")
    assert event.leadflowpolicyversion == version
    assert assignment.json()["policy_version"] == version
