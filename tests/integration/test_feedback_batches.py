"""Feedback handles a whole poll batch as a set (real PostgreSQL and broker): a batch holding
many leads' events, copies of events, and one lead's events in any order ends in exactly the
state that handling the same events one by one gives; a poison event in a batch is
dead-lettered alone while its neighbours take effect once.

Every event is published on one topic and one key (one partition), so that the consumer reads
them in the order they were sent and a poll returns many of them at once; the reference run
reads the same events with polls of one record each.
"""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import sqlalchemy as sa
from leadflow.clock import Clock
from leadflow.contracts.events import (
    TOPIC_SCORING,
    CloudEvent,
    LeadActivity,
    LeadCompany,
    LeadCreated,
    LeadErased,
    LeadMql,
    LeadRouted,
    LeadScored,
    LeadSource,
    Payload,
    SlaBreached,
    SlaMet,
    dlq_topic,
    make_event,
)
from leadflow.contracts.policy import load_policy
from leadflow.db import kernel_tables
from leadflow.outbox import Outbox
from leadflow_feedback import consumers
from leadflow_feedback.models import leads, metadata, status_history, timeline
from support.harness import BatchRun, interleave, read_topic

OUTBOX, INBOX = kernel_tables(metadata)
T0 = datetime(2025, 3, 3, 9, tzinfo=UTC)
REP = uuid.UUID("6d1c1f0e-8a9b-4c55-9d0a-3f1f2b7c9e11")
SOURCE = LeadSource(system="hubspot", channel="inbound", campaign="batch-test", medium="paid")
COMPANY = LeadCompany(name="Batch Test", industry="software", employees=250, country="PL")
KINDS = ("created", "scored", "mql", "routed")
CHAIN = [("lead", "mql"), ("mql", "routed")]


def events_of(lead_id: uuid.UUID, t0: datetime) -> dict[str, CloudEvent]:
    """A lead's events: created at t0, scored and promoted a minute later, routed after two,
    its first response met an hour later, its contact cadence exhausted after twelve days."""
    scored_at, routed_at = t0 + timedelta(minutes=1), t0 + timedelta(minutes=2)
    payloads: dict[str, tuple[Payload, datetime]] = {
        "created": (
            LeadCreated(lead_id=lead_id, email="ada@batch.example", first_name="Ada",
                        last_name="Lovelace", company=COMPANY, source=SOURCE,
                        role="decision_maker", occurred_at=t0),
            t0,
        ),
        "scored": (
            LeadScored(lead_id=lead_id, fit=90, engagement=40.0, intent_tier=1, is_mql=True,
                       scored_at=scored_at),
            scored_at,
        ),
        "mql": (
            LeadMql(lead_id=lead_id, fit=90, engagement=40.0, intent_tier=1, channel="inbound",
                    source=SOURCE, company=COMPANY, email="ada@batch.example",
                    first_name="Ada", last_name="Lovelace", role="decision_maker",
                    seniority="c_level", promoted_at=scored_at),
            scored_at,
        ),
        "routed": (
            LeadRouted(lead_id=lead_id, assignment_id=uuid.uuid4(), team_id=uuid.uuid4(),
                       team="cee", rep_id=REP, routed_at=routed_at,
                       calendar={"timezone": "Europe/Warsaw"}),
            routed_at,
        ),
        "met": (
            SlaMet(lead_id=lead_id, timer_id=uuid.uuid4(), sla="first_response",
                   started_at=routed_at, due_at=routed_at + timedelta(hours=2), level="met",
                   met_at=routed_at + timedelta(hours=1), business_seconds=3600.0),
            routed_at + timedelta(hours=1),
        ),
        "cadence": (
            SlaBreached(lead_id=lead_id, timer_id=uuid.uuid4(), sla="contact_cadence",
                        started_at=routed_at, due_at=routed_at + timedelta(days=12),
                        level="breached", outcome="unreachable"),
            routed_at + timedelta(days=12),
        ),
        "erased": (LeadErased(lead_id=lead_id), t0 + timedelta(minutes=5)),
    }  # fmt: skip
    return {
        kind: make_event(payload, source="test", time=at)
        for kind, (payload, at) in payloads.items()
    }


class Feedback(BatchRun):
    """Feedback's lifecycle subscription in a consumer runner of its own (own database, own
    topics), reading polls of `batch_size` records; counts the events each batch pass got."""

    def __init__(self, settings, batch_size: int) -> None:
        rt = SimpleNamespace(
            policy=load_policy(settings.policy_file),
            outbox=Outbox(OUTBOX, source="feedback", clock=Clock()),
        )
        super().__init__(settings, "feedback", consumers.subscriptions(rt), INBOX, batch_size)

    def topic_for(self, subscription) -> str:
        return TOPIC_SCORING  # where the poison test looks for dead letters

    async def state(self, lead_ids: list[uuid.UUID]) -> dict[uuid.UUID, dict]:
        """Each lead's row, status history (instants and reasons included) and timeline."""
        async with self.db.unit_of_work() as session:
            rows = (await session.execute(sa.select(leads))).mappings().all()
            history = (
                (await session.execute(sa.select(status_history).order_by(status_history.c.id)))
                .mappings()
                .all()
            )
            entries = (
                (await session.execute(sa.select(timeline).order_by(timeline.c.id)))
                .mappings()
                .all()
            )
        state = {i: {"row": None, "history": [], "timeline": []} for i in lead_ids}
        for row in rows:
            state.setdefault(row["lead_id"], {"row": None, "history": [], "timeline": []})
            state[row["lead_id"]]["row"] = dict(row)
        for h in history:
            state[h["lead_id"]]["history"].append(
                (h["from_status"], h["status"], h["reason"], h["changed_at"])
            )
        for e in entries:
            # the status changes feedback emits have ids of their own in each run
            key = e["event_id"] if e["type"] != "lead.status_changed" else e["details"]["status"]
            state[e["lead_id"]]["timeline"].append((e["type"], key, e["occurred_at"]))
        return state


async def test_a_batch_of_many_leads_in_every_order_ends_as_handling_them_one_by_one(stack):
    runs: list[list[CloudEvent]] = []
    plain: list[uuid.UUID] = []
    for k, order in enumerate(itertools.permutations(KINDS)):
        lead_id = uuid.uuid4()
        events = events_of(lead_id, T0 + timedelta(days=k))
        runs.append([events[kind] for kind in order] + [events["met"]])
        plain.append(lead_id)
    # the contact cadence exhausted before the routing arrives and after it; an erasure
    # between the snapshot and the promotion; a lead known only from its score
    special = {name: uuid.uuid4() for name in ("cadence_first", "cadence_last", "erased", "score")}
    e = events_of(special["cadence_first"], T0 + timedelta(days=30))
    runs.append([e["cadence"], e["mql"], e["created"], e["routed"]])
    e = events_of(special["cadence_last"], T0 + timedelta(days=31))
    runs.append([e["routed"], e["cadence"], e["mql"], e["scored"]])
    e = events_of(special["erased"], T0 + timedelta(days=32))
    runs.append([e["created"], e["erased"], e["mql"], e["routed"], e["created"]])
    e = events_of(special["score"], T0 + timedelta(days=33))
    runs.append([e["scored"]])
    sent = interleave(runs)
    unique = len({event.id for event in sent})
    # copies: every fifth event again right behind itself, and the first ten once more at the end
    values = [v for i, ev in enumerate(sent) for v in [ev.to_bytes()] * (2 if i % 5 == 0 else 1)]
    values += [ev.to_bytes() for ev in sent[:10]]
    assert unique == len(sent) - 1  # the erased lead's snapshot is sent twice on purpose
    lead_ids = plain + list(special.values())

    states = {}
    for batch_size in (500, 1):
        async with Feedback(await stack.isolated_settings(), batch_size) as feedback:
            await feedback.consume(values, unique)
            states[batch_size] = await feedback.state(lead_ids)
            passes = feedback.passes
        if batch_size == 1:
            assert max(passes) == 1
        else:
            # the batch pass saw many leads' events at once, and every event once
            assert max(passes) >= 50, passes
            assert sum(passes) == unique, passes
    batched, one_by_one = states[500], states[1]
    assert batched.keys() == one_by_one.keys() == set(lead_ids)
    for lead_id in lead_ids:
        assert batched[lead_id] == one_by_one[lead_id], lead_id

    for lead_id in plain:
        state = batched[lead_id]
        row = state["row"]
        assert row["status"] == "routed"
        assert [h[:2] for h in state["history"]] == CHAIN
        assert (row["team"], row["rep_id"], row["fit"], row["channel"]) == (
            "cee",
            REP,
            90,
            "inbound",
        )
        assert row["display_name"] == "Ada Lovelace · Batch Test"
        assert row["sla_response_seconds"] == 3600.0
        assert len(state["timeline"]) == 5  # each event once, copies or not
    for name in ("cadence_first", "cadence_last"):
        state = batched[special[name]]
        assert state["row"]["status"] == "recycled"
        assert [h[:3] for h in state["history"]] == [
            ("lead", "mql", None), ("mql", "routed", None),
            ("routed", "unreachable", "unreachable"), ("unreachable", "recycled", "unreachable"),
        ]  # fmt: skip
        assert [t[1] for t in state["timeline"] if t[0] == "lead.status_changed"] == [
            "unreachable",
            "recycled",
        ]
    erased = batched[special["erased"]]
    assert erased["row"]["status"] == "routed" and erased["row"]["display_name"] is None
    assert erased["row"]["erased_at"] is not None
    score = batched[special["score"]]
    assert (score["row"]["status"], score["row"]["fit"], score["history"]) == ("lead", 90, [])


async def test_a_poison_event_in_a_batch_is_dead_lettered_and_its_neighbours_apply(settings):
    runs, lead_ids = [], []
    for k in range(20):
        lead_id = uuid.uuid4()
        events = events_of(lead_id, T0 + timedelta(days=k))
        runs.append([events[kind] for kind in ("created", "mql", "routed")])
        lead_ids.append(lead_id)
    good = interleave(runs)
    # refused by its handler: a routing without its team
    routing = events_of(lead_ids[3], T0)["routed"]
    no_team = routing.model_copy(
        update={"id": uuid.uuid4(), "data": {k: v for k, v in routing.data.items() if k != "team"}}
    )
    # accepted by its handler, refused by PostgreSQL in the batch pass (no NUL in jsonb)
    nul = make_event(
        LeadActivity(lead_id=lead_ids[5], activity_id=uuid.uuid4(), activity_type="web\x00visit",
                     occurred_at=T0),
        source="test", time=T0,
    )  # fmt: skip
    values = [ev.to_bytes() for ev in good[:25]] + [no_team.to_bytes()]
    values += [ev.to_bytes() for ev in good[25:40]] + [nul.to_bytes()]
    values += [ev.to_bytes() for ev in good[40:]]

    async with Feedback(settings, 500) as feedback:
        await feedback.consume(values, len(good))
        dead = await read_topic(
            settings, settings.topic_prefix + dlq_topic(TOPIC_SCORING), 2, idle=2.0
        )
        state = await feedback.state(lead_ids)
        async with feedback.db.unit_of_work() as session:
            handled = set(await session.scalars(sa.select(INBOX.c.event_id)))
            recorded = set(await session.scalars(sa.select(timeline.c.event_id)))
    assert sorted(CloudEvent.from_bytes(d.value).id for d in dead) == sorted([no_team.id, nul.id])
    errors = {CloudEvent.from_bytes(d.value).id: dict(d.headers)["leadflow-error"] for d in dead}
    assert errors[no_team.id].startswith(b"payload of lead.routed invalid")
    assert b"\\u0000" in errors[nul.id] or b"0x00" in errors[nul.id]
    # the failed batch was rolled back and replayed event by event: every neighbour took
    # effect once, the poison events left nothing
    assert handled == recorded == {ev.id for ev in good}
    for lead_id in lead_ids:
        assert state[lead_id]["row"]["status"] == "routed"
        assert [h[:2] for h in state[lead_id]["history"]] == CHAIN
        assert len(state[lead_id]["timeline"]) == 3
