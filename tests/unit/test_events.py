"""The CloudEvents envelope, one typed payload per event type, and the topic each type travels on."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from leadflow.contracts.events import (
    ALL_TOPICS,
    CONNECTORS_KEY,
    PAYLOAD_TYPES,
    POLICY_KEY,
    TOPIC_FEEDBACK,
    TOPIC_INBOUND,
    TOPIC_INGEST,
    TOPIC_NOTIFY,
    TOPIC_ROUTING,
    TOPIC_SCORING,
    TOPIC_SLA,
    ApiKeyChanged,
    CloudEvent,
    ConnectorsPublished,
    LeadActivity,
    LeadChurned,
    LeadCompany,
    LeadContactAttempt,
    LeadCreated,
    LeadCrmLinked,
    LeadErased,
    LeadMql,
    LeadOnboardingMilestone,
    LeadRouted,
    LeadSalesReported,
    LeadScored,
    LeadSource,
    LeadStatusChanged,
    LeadUnassigned,
    LeadUpdated,
    Payload,
    Person,
    PolicyPublished,
    SlaBreached,
    SlaCorrectivePlanRequired,
    SlaEscalated,
    SlaMet,
    SlaWarning,
    TeamDirectory,
    WebhookDeadLettered,
    dlq_topic,
    make_event,
)
from pydantic import ValidationError

LEAD = uuid.UUID("0b5a3c52-5f0e-4a43-9d8e-2a3f3a1f0c11")
T0 = datetime(2026, 11, 20, 15, 30, tzinfo=UTC)
SNAPSHOT = dict(
    lead_id=LEAD,
    email="ada@analytical-engines.example",
    first_name="Ada",
    role="decision_maker",
    seniority="c_level",
    company=LeadCompany(name="Analytical Engines", employees=250, country="PL"),
    source=LeadSource(system="hubspot", channel="inbound", utm={"utm_source": "webinar"}),
    intent_tier=2,
    flags=["free_email"],
    occurred_at=T0,
)
SLA = dict(
    lead_id=LEAD,
    timer_id=uuid.uuid4(),
    sla="first_touch",
    channel="inbound",
    team="EMEA",
    rep_id=uuid.uuid4(),
    started_at=T0,
    due_at=T0 + timedelta(hours=2),
    level="due",
)

# One realistic payload of every event type, with optional fields filled in.
TEAM = uuid.UUID("00000000-0000-0000-0000-0000000000ee")
SAMPLES: dict[str, Payload] = {
    p.type: p
    for p in (
        LeadCreated(**SNAPSHOT),
        LeadUpdated(**SNAPSHOT, merged_lead_ids=[uuid.uuid4()]),
        LeadActivity(
            lead_id=LEAD,
            activity_id=uuid.uuid4(),
            activity_type="page_view",
            page_category="pricing",
            occurred_at=T0,
            properties={"path": "/pricing", "seconds": 42},
        ),
        LeadErased(lead_id=LEAD),
        LeadScored(
            lead_id=LEAD,
            fit=100,
            engagement=35.5,
            intent_tier=2,
            is_mql=True,
            breakdown=[{"rule": "industry", "points": 15, "detail": "software"}],
            scored_at=T0,
        ),
        LeadMql(
            lead_id=LEAD,
            kind="pql",
            fit=80,
            engagement=20.0,
            intent_tier=1,
            channel="plg",
            email="ada@analytical-engines.example",
            key_activities=[{"type": "product_usage", "at": T0.isoformat()}],
            promoted_at=T0,
        ),
        LeadRouted(
            lead_id=LEAD,
            assignment_id=uuid.uuid4(),
            team_id=uuid.uuid4(),
            team="EMEA",
            rep_id=None,
            channel="partner",
            reason="rule:emea",
            routed_at=T0,
            calendar={"timezone": "Europe/Warsaw"},
        ),
        LeadUnassigned(
            lead_id=LEAD,
            team_id=TEAM,
            team="EMEA",
            reason="all_out_of_office",
            queued_at=T0,
            trace={"rule": "emea", "considered": [{"name": "Ola", "skipped": "out_of_office"}]},
        ),
        TeamDirectory(
            lead_id=TEAM,
            team_id=TEAM,
            team="EMEA",
            team_lead=Person(name="Tom Lead", email="tom@vendor.example", language="pl"),
            reps=[Person(id=uuid.uuid4(), name="Ola", slack_member_id="U0REP0001")],
            slack_webhook_url="https://hooks.slack.com/services/T0/B0/X",
            changed_at=T0,
        ),
        WebhookDeadLettered(
            lead_id=LEAD,
            delivery_id=uuid.uuid4(),
            endpoint_id=uuid.uuid4(),
            event_type="lead.routed",
            attempts=8,
            last_error="HTTP 503",
        ),
        LeadSalesReported(
            lead_id=LEAD,
            kind="status",
            system="hubspot",
            record_id="62515:901:hs_lead_status:1764496800000",
            occurred_at=T0,
            status="returned",
            reason="not_in_target",
        ),
        LeadCrmLinked(
            lead_id=LEAD,
            system="salesforce",
            object_type="lead",
            object_id="00Q5e000001AbCdEAF",
            linked_at=T0,
        ),
        ApiKeyChanged(
            lead_id=TEAM,
            key_id=TEAM,
            name="crm sync",
            sha256="0" * 64,
            scopes=["sales:write"],
            created_by="key:admin",
            created_at=T0,
            changed_at=T0,
        ),
        ConnectorsPublished(
            lead_id=CONNECTORS_KEY,
            publication=1,
            published_at=T0,
            published_by="key:admin",
            document={"hubspot": {"inbound": {"enabled": True}}},
        ),
        PolicyPublished(
            lead_id=POLICY_KEY,
            number=2,
            version="2026.12-faster",
            publication=2,
            published_at=T0,
            published_by="key:admin",
            document={"version": "2026.12-faster", "scoring": {"mql": {"fit_min": 70}}},
        ),
        SlaWarning(**SLA),
        SlaBreached(
            **{**SLA, "sla": "contact_cadence", "level": "breached"},
            outcome="unreachable",
            missing=["2 more calls", "attempts on 1 more day"],
        ),
        SlaEscalated(**{**SLA, "level": "escalated"}, escalate_to="manager", reassign=True),
        SlaMet(**SLA, met_at=T0 + timedelta(minutes=30), business_seconds=1800.0),
        SlaCorrectivePlanRequired(
            lead_id=uuid.uuid4(),
            party="marketing",
            period_start=T0,
            period_end=T0 + timedelta(days=30),
            consecutive_misses=2,
            missed=["mql_volume", "full_context_share"],
        ),
        LeadContactAttempt(
            lead_id=LEAD,
            attempt_id=uuid.uuid4(),
            channel="call",
            occurred_at=T0,
            rep_id=uuid.uuid4(),
            outcome="voicemail",
        ),
        LeadStatusChanged(
            lead_id=LEAD, from_status="working", status="sal", reason=None, changed_at=T0
        ),
        LeadOnboardingMilestone(
            lead_id=LEAD, milestone="key_feature_activated", reached_at=T0, feature="reports"
        ),
        LeadChurned(lead_id=LEAD, reason="low_adoption", churned_at=T0),
    )
}

# Which topic carries each type: the topic of the one service that produces it (docs/architecture.md).
EXPECTED_TOPICS = {
    "lead.created": TOPIC_INGEST,
    "lead.updated": TOPIC_INGEST,
    "lead.activity": TOPIC_INGEST,
    "lead.erased": TOPIC_INGEST,
    "lead.sales_reported": TOPIC_INGEST,
    "lead.scored": TOPIC_SCORING,
    "lead.mql": TOPIC_SCORING,
    "lead.routed": TOPIC_ROUTING,
    "lead.unassigned": TOPIC_ROUTING,
    "team.directory": TOPIC_ROUTING,
    "webhook.dead_lettered": TOPIC_NOTIFY,
    "lead.crm_linked": TOPIC_NOTIFY,
    "sla.warning": TOPIC_SLA,
    "sla.breached": TOPIC_SLA,
    "sla.escalated": TOPIC_SLA,
    "sla.met": TOPIC_SLA,
    "sla.corrective_plan_required": TOPIC_SLA,
    "lead.contact_attempt": TOPIC_FEEDBACK,
    "lead.status_changed": TOPIC_FEEDBACK,
    "lead.onboarding_milestone": TOPIC_FEEDBACK,
    "lead.churned": TOPIC_FEEDBACK,
}


def event_of(payload: Payload, **kwargs) -> CloudEvent:
    return make_event(payload, source="test", time=T0, **kwargs)


def error_fields(exc: ValidationError) -> set[str]:
    return {".".join(str(p) for p in e["loc"]) for e in exc.errors()}


# --- the registry of types ---------------------------------------------------------------


def test_every_event_type_has_a_sample_here():
    assert set(SAMPLES) == set(PAYLOAD_TYPES)


def test_the_registry_keys_are_the_types_the_payloads_declare():
    for name, cls in PAYLOAD_TYPES.items():
        assert cls.type == name
        assert cls.schema_version == 1


# --- envelope round trip -----------------------------------------------------------------


@pytest.mark.parametrize("event_type", sorted(SAMPLES))
def test_every_payload_survives_the_wire_unchanged(event_type: str):
    payload = SAMPLES[event_type]
    event = event_of(payload, policy_version="2026.11-default")
    received = CloudEvent.from_bytes(event.to_bytes())
    assert received == event
    assert type(received.payload()) is PAYLOAD_TYPES[event_type]
    assert received.payload() == payload


@pytest.mark.parametrize("event_type", sorted(SAMPLES))
def test_every_payload_validates_from_plain_json(event_type: str):
    data = orjson.loads(orjson.dumps(SAMPLES[event_type].model_dump(mode="json")))
    assert PAYLOAD_TYPES[event_type].model_validate(data) == SAMPLES[event_type]


def test_the_envelope_carries_the_cloudevents_attributes():
    event_id = uuid.uuid4()
    event = event_of(SAMPLES["lead.mql"], policy_version="2026.11-default", event_id=event_id)
    wire = orjson.loads(event.to_bytes())
    assert wire == {
        "specversion": "1.0",
        "id": str(event_id),
        "source": "test",
        "type": "lead.mql",
        "time": "2026-11-20T15:30:00Z",
        "subject": str(LEAD),
        "datacontenttype": "application/json",
        "dataschema": "leadflow:lead.mql/v1",
        "leadflowpolicyversion": "2026.11-default",
        "data": SAMPLES["lead.mql"].model_dump(mode="json"),
    }


def test_an_event_without_a_policy_version_leaves_the_attribute_out():
    wire = orjson.loads(event_of(SAMPLES["lead.erased"]).to_bytes())
    assert "leadflowpolicyversion" not in wire
    assert wire["data"] == {"lead_id": str(LEAD)}


def test_make_event_gives_a_fresh_id_and_the_current_time_by_default():
    before = datetime.now(UTC)
    first = make_event(SAMPLES["lead.erased"], source="ingest")
    second = make_event(SAMPLES["lead.erased"], source="ingest")
    assert first.id != second.id
    assert before <= first.time <= datetime.now(UTC)
    assert first.time.tzinfo is not None


def test_the_subject_is_the_lead_id_so_every_event_is_keyed_by_lead():
    for payload in SAMPLES.values():
        assert event_of(payload).subject == str(payload.lead_id)


def test_unknown_envelope_extensions_are_kept():
    wire = orjson.loads(event_of(SAMPLES["lead.erased"]).to_bytes())
    wire["traceparent"] = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    again = CloudEvent.from_bytes(orjson.dumps(wire))
    assert orjson.loads(again.to_bytes())["traceparent"] == wire["traceparent"]


def test_unknown_payload_fields_from_a_newer_producer_are_kept():
    data = {**SAMPLES["lead.contact_attempt"].model_dump(mode="json"), "duration_s": 95}
    payload = LeadContactAttempt.model_validate(data)
    assert payload.model_dump(mode="json")["duration_s"] == 95


def test_payloads_are_immutable():
    with pytest.raises(ValidationError):
        SAMPLES["lead.scored"].fit = 0  # type: ignore[misc]


# --- what is refused -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"specversion": "0.3"}, "specversion"),
        ({"id": "not-a-uuid"}, "id"),
        ({"time": "yesterday"}, "time"),
        ({"datacontenttype": "text/xml"}, "datacontenttype"),
        ({"data": "a string"}, "data"),
        ({"subject": None}, "subject"),
    ],
)
def test_a_malformed_envelope_is_refused_naming_the_attribute(change: dict, field: str):
    wire = {**orjson.loads(event_of(SAMPLES["lead.erased"]).to_bytes()), **change}
    with pytest.raises(ValidationError) as refused:
        CloudEvent.from_bytes(orjson.dumps(wire))
    assert error_fields(refused.value) == {field}


@pytest.mark.parametrize("attribute", ["source", "type", "time", "subject", "data"])
def test_a_missing_required_attribute_is_refused_naming_it(attribute: str):
    wire = orjson.loads(event_of(SAMPLES["lead.erased"]).to_bytes())
    del wire[attribute]
    with pytest.raises(ValidationError) as refused:
        CloudEvent.from_bytes(orjson.dumps(wire))
    assert error_fields(refused.value) == {attribute}


def test_bytes_that_are_not_json_are_refused():
    with pytest.raises(ValidationError):
        CloudEvent.from_bytes(b"{not json")


@pytest.mark.parametrize(
    ("event_type", "change", "field"),
    [
        ("lead.created", {"lead_id": "42"}, "lead_id"),
        ("lead.created", {"email": None}, "email"),
        ("lead.created", {"source": {"channel": "carrier-pigeon"}}, "source.channel"),
        ("lead.created", {"company": {"employees": "many"}}, "company.employees"),
        ("lead.activity", {"occurred_at": "soon"}, "occurred_at"),
        ("lead.scored", {"fit": "high"}, "fit"),
        ("lead.scored", {"breakdown": [{"points": 3}]}, "breakdown.0.rule"),
        ("lead.mql", {"kind": "sql"}, "kind"),
        ("lead.routed", {"team": None}, "team"),
        ("lead.unassigned", {"reason": "mixed"}, "reason"),
        ("webhook.dead_lettered", {"attempts": "eight"}, "attempts"),
        ("lead.crm_linked", {"system": "pipedrive"}, "system"),
        ("lead.sales_reported", {"kind": "rumour"}, "kind"),
        ("sla.breached", {"party": "legal"}, "party"),
        ("sla.escalated", {"escalate_to": "ceo"}, "escalate_to"),
        ("sla.met", {"business_seconds": "long"}, "business_seconds"),
        ("lead.contact_attempt", {"channel": "fax"}, "channel"),
        ("lead.status_changed", {"changed_at": None}, "changed_at"),
    ],
)
def test_a_bad_payload_is_refused_naming_the_field(event_type: str, change: dict, field: str):
    event = event_of(SAMPLES[event_type])
    bad = event.model_copy(update={"data": {**event.data, **change}})
    with pytest.raises(ValidationError) as refused:
        bad.payload()
    assert error_fields(refused.value) == {field}


@pytest.mark.parametrize("event_type", sorted(SAMPLES))
def test_a_payload_without_its_lead_id_is_refused(event_type: str):
    event = event_of(SAMPLES[event_type])
    data = {k: v for k, v in event.data.items() if k != "lead_id"}
    with pytest.raises(ValidationError) as refused:
        event.model_copy(update={"data": data}).payload()
    assert "lead_id" in error_fields(refused.value)


@pytest.mark.parametrize(
    ("event_type", "required"),
    [
        ("lead.created", {"email", "occurred_at"}),
        ("lead.routed", {"assignment_id", "team_id", "team", "rep_id", "routed_at"}),
        (
            "sla.met",
            {"timer_id", "sla", "started_at", "due_at", "level", "met_at", "business_seconds"},
        ),
        ("lead.status_changed", {"from_status", "status", "changed_at"}),
    ],
)
def test_an_empty_payload_names_every_required_field(event_type: str, required: set[str]):
    event = event_of(SAMPLES[event_type]).model_copy(update={"data": {"lead_id": str(LEAD)}})
    with pytest.raises(ValidationError) as refused:
        event.payload()
    assert error_fields(refused.value) == required


# --- topics --------------------------------------------------------------------------------


def test_there_are_nine_distinct_topics():
    assert ALL_TOPICS == (
        "leads.inbound",
        "leadflow.ingest",
        "leadflow.scoring",
        "leadflow.routing",
        "leadflow.sla",
        "leadflow.feedback",
        "leadflow.notify",
        "leadflow.access",
        "leadflow.policy",
    )
    assert len(set(ALL_TOPICS)) == len(ALL_TOPICS)


@pytest.mark.parametrize("event_type", sorted(EXPECTED_TOPICS))
def test_each_type_travels_on_its_producers_topic(event_type: str):
    assert PAYLOAD_TYPES[event_type].topic == EXPECTED_TOPICS[event_type]


def test_every_topic_but_the_inbound_one_carries_leadflow_events():
    used = {cls.topic for cls in PAYLOAD_TYPES.values()}
    assert used == set(ALL_TOPICS) - {TOPIC_INBOUND}


@pytest.mark.parametrize("topic", ALL_TOPICS)
def test_the_dead_letter_topic_is_the_topic_with_a_dlq_suffix(topic: str):
    assert dlq_topic(topic) == topic + ".dlq"
    assert dlq_topic(topic) not in ALL_TOPICS


def test_dead_letter_topics_are_distinct_per_topic():
    assert len({dlq_topic(t) for t in ALL_TOPICS}) == len(ALL_TOPICS)
    assert dlq_topic("leadflow.sla") == "leadflow.sla.dlq"
