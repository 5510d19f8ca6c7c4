"""sla-timer handles a whole poll batch as a set (real PostgreSQL and broker): a batch holding
many leads' routings, contact attempts and status changes in every order, copies of events and
a replay of all of them ends in exactly the state that handling the same events one by one
gives (clocks, held-back events, SLA events in the outbox, counted promotions); a poison event
in a batch is dead-lettered alone while its neighbours take effect once.

Every event is published on one topic and one key (one partition), so that the consumer reads
them in the order they were sent and a poll returns many of them at once; the reference run
reads the same events with polls of one record each. The firing loop does not run here: the
clocks stay as the consumer leaves them.
"""

from __future__ import annotations

import itertools
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import sqlalchemy as sa
from leadflow.clock import Clock
from leadflow.contracts.events import (
    TOPIC_FEEDBACK,
    CloudEvent,
    LeadCompany,
    LeadContactAttempt,
    LeadMql,
    LeadRouted,
    LeadSource,
    LeadStatusChanged,
    Payload,
    dlq_topic,
    make_event,
)
from leadflow.contracts.policy import load_policy
from leadflow.db import kernel_tables
from leadflow.outbox import Outbox
from leadflow_sla_timer import consumers
from leadflow_sla_timer.models import early_attempts, early_statuses, metadata, mqls, timers
from support.harness import BatchRun, eventually, interleave, read_topic

OUTBOX, INBOX = kernel_tables(metadata)
T0 = datetime(2026, 11, 16, 8, tzinfo=UTC)  # a Monday, before Warsaw opens
H = timedelta(hours=1)
REP = uuid.UUID("6d1c1f0e-8a9b-4c55-9d0a-3f1f2b7c9e11")
WARSAW = {"timezone": "Europe/Warsaw"}
SOURCE = LeadSource(system="hubspot", channel="inbound", campaign="batch-test", medium="paid")
COMPANY = LeadCompany(name="Batch Test", industry="software", employees=250, country="PL")
# Timer columns that say what a clock is and where it stands (its id differs between runs).
TIMER_STATE = tuple(c.name for c in timers.c if c.name != "id")


def event(payload: Payload, at: datetime) -> CloudEvent:
    return make_event(payload, source="test", time=at)


def routed(lead_id: uuid.UUID, at: datetime, *, channel: str = "inbound", **kw) -> CloudEvent:
    payload = LeadRouted(
        lead_id=lead_id, assignment_id=uuid.uuid4(), team_id=None, team="emea", rep_id=REP,
        channel=channel, routed_at=at, **{"calendar": WARSAW, **kw},
    )  # fmt: skip
    return event(payload, at)


def attempt(lead_id: uuid.UUID, at: datetime) -> CloudEvent:
    payload = LeadContactAttempt(
        lead_id=lead_id, attempt_id=uuid.uuid4(), channel="call", occurred_at=at
    )
    return event(payload, at)


def status(lead_id: uuid.UUID, to: str, at: datetime, **kw) -> CloudEvent:
    payload = LeadStatusChanged(lead_id=lead_id, from_status=None, status=to, changed_at=at, **kw)
    return event(payload, at)


def mql(lead_id: uuid.UUID, at: datetime) -> CloudEvent:
    payload = LeadMql(
        lead_id=lead_id, fit=90, engagement=40.0, intent_tier=1, channel="inbound",
        source=SOURCE, company=COMPANY, email="ada@batch.example", role="decision_maker",
        seniority="c_level", promoted_at=at,
    )  # fmt: skip
    return event(payload, at)


class SlaTimer(BatchRun):
    """One of sla-timer's subscriptions in a consumer runner of its own (own database, own
    topics), reading polls of `batch_size` records; counts the events each batch pass got."""

    def __init__(self, settings, batch_size: int, subscription: str = "timers") -> None:
        rt = SimpleNamespace(
            policy=load_policy(settings.policy_file),
            outbox=Outbox(OUTBOX, source="sla-timer", clock=Clock()),
        )
        super().__init__(settings, "sla-timer", consumers.subscriptions(rt), INBOX, batch_size)
        self.default = subscription

    def topic_for(self, subscription) -> str:
        # the timers' attempts and statuses: feedback's topic
        return TOPIC_FEEDBACK if TOPIC_FEEDBACK in subscription.topics else subscription.topics[0]

    async def state(self, lead_ids: list[uuid.UUID]) -> dict[uuid.UUID, dict]:
        """Each lead's clocks, held-back events, SLA events (in outbox order) and promotion."""
        async with self.db.unit_of_work() as session:
            clocks = (await session.execute(sa.select(timers))).mappings().all()
            held = (await session.execute(sa.select(early_attempts))).mappings().all()
            statuses = (await session.execute(sa.select(early_statuses))).mappings().all()
            outbox = (await session.execute(sa.select(OUTBOX).order_by(OUTBOX.c.id))).all()
            promoted = (await session.execute(sa.select(mqls))).mappings().all()
        state = {
            i: {"clocks": {}, "held": None, "statuses": set(), "events": [], "mql": None}
            for i in lead_ids
        }
        ids = {row["id"]: row["sla"] for row in clocks}
        for row in clocks:
            state[row["lead_id"]]["clocks"][row["sla"]] = {k: row[k] for k in TIMER_STATE}
        for row in held:
            state[row["lead_id"]]["held"] = (row["occurred_at"], row["attempts"])
        for row in statuses:
            state[row["lead_id"]]["statuses"].add((row["event_id"], row["change"]["status"]))
        for row in outbox:
            e = CloudEvent.from_bytes(row.payload)
            data = {k: v for k, v in e.data.items() if k != "timer_id"}
            assert ids[uuid.UUID(e.data["timer_id"])] == e.data["sla"]  # names its own clock
            state[uuid.UUID(e.subject)]["events"].append((e.type, data))
        for row in promoted:
            state[row["lead_id"]]["mql"] = dict(row)
        return state


async def test_a_batch_of_many_leads_in_every_order_ends_as_handling_them_one_by_one(stack):
    runs: list[list[CloudEvent]] = []
    plain: list[uuid.UUID] = []
    for k, order in enumerate(itertools.permutations(("routed", "attempt", "sal", "sql"))):
        lead_id, t0 = uuid.uuid4(), T0 + k * timedelta(days=1)
        events = {
            "routed": routed(lead_id, t0),
            "attempt": attempt(lead_id, t0 + H),
            "sal": status(lead_id, "sal", t0 + 2 * H),
            "sql": status(lead_id, "sql", t0 + 3 * H, qualification={"budget": "yes"}),
        }
        runs.append([events[kind] for kind in order] + [attempt(lead_id, t0 + 4 * H)])
        plain.append(lead_id)
    t0 = T0 + 30 * timedelta(days=1)
    special = {name: uuid.uuid4() for name in (
        "capped_held", "capped", "rerouted", "lost_held", "pql", "won", "returned_held",
    )}  # fmt: skip
    # a partner cadence owes 6 touches, allows 8: ten before the routing, ten after it
    lead = special["capped_held"]
    runs.append(
        [*(attempt(lead, t0 + i * H) for i in range(1, 11)), routed(lead, t0, channel="partner")]
    )
    lead = special["capped"]
    runs.append(
        [routed(lead, t0, channel="partner"), *(attempt(lead, t0 + i * H) for i in range(1, 11))]
    )
    # routed again later: the clocks of the first routing stay
    lead = special["rerouted"]
    runs.append([routed(lead, t0), attempt(lead, t0 + H), routed(lead, t0 + 5 * H)])
    # lost before the routing arrived: every clock is cancelled when it opens
    lead = special["lost_held"]
    runs.append([status(lead, "lost", t0 + H), attempt(lead, t0 + 2 * H), routed(lead, t0)])
    lead = special["pql"]
    runs.append([routed(lead, t0, channel="plg", kind="pql"), attempt(lead, t0 + H)])
    lead = special["won"]
    runs.append([
        routed(lead, t0), status(lead, "won", t0 + H), status(lead, "handed_off", t0 + 2 * H),
        status(lead, "won", t0 + 3 * H),
    ])  # fmt: skip
    lead = special["returned_held"]
    runs.append([attempt(lead, t0 + H), status(lead, "returned", t0 + 2 * H), routed(lead, t0)])
    # held back, and still waiting for a routing at the end
    waiting = uuid.uuid4()
    runs.append([attempt(waiting, t0 + H), status(waiting, "sal", t0 + H), attempt(waiting, t0)])
    sent = interleave(runs)
    # copies: every fifth event again right behind itself, and the first ten once more at the end
    values = [v for i, ev in enumerate(sent) for v in [ev.to_bytes()] * (2 if i % 5 == 0 else 1)]
    values += [ev.to_bytes() for ev in sent[:10]]
    lead_ids = [*plain, *special.values(), waiting]

    states = {}
    for batch_size in (500, 1):
        async with SlaTimer(await stack.isolated_settings(), batch_size) as sla_timer:
            await sla_timer.consume(values, len(sent))
            if batch_size == 500:
                # a replay of everything is harmless
                await eventually(lambda: _processed(sla_timer, len(values)), timeout=60)
                await sla_timer.publish(values)
                await eventually(lambda: _processed(sla_timer, 2 * len(values)), timeout=60)
            states[batch_size] = await sla_timer.state(lead_ids)
            passes = sla_timer.passes
        if batch_size == 1:
            assert max(passes) == 1
        else:
            # the batch pass saw many leads' events at once, and every event once
            assert max(passes) >= 50, passes
            assert sum(passes) == len(sent), passes
    batched, one_by_one = states[500], states[1]
    for lead_id in lead_ids:
        assert batched[lead_id] == one_by_one[lead_id], lead_id

    def met(lead_id: uuid.UUID) -> Counter:
        return Counter(d["sla"] for t, d in batched[lead_id]["events"] if t == "sla.met")

    for lead_id in plain:
        clocks = batched[lead_id]["clocks"]
        assert clocks["first_response"]["state"] == "met"
        assert clocks["sal_acceptance"]["state"] == "met"
        assert clocks["sql_to_sqo"]["state"] == "open"
        assert clocks["sql_to_sqo"]["rep_id"] == REP and clocks["sql_to_sqo"]["team"] == "emea"
        assert met(lead_id) == {"first_response": 1, "sal_acceptance": 1, "contact_cadence": 1}
        assert batched[lead_id]["held"] is None and batched[lead_id]["statuses"] == set()
    for name in ("capped_held", "capped"):
        state = batched[special[name]]
        cadence = state["clocks"]["contact_cadence"]
        assert (cadence["state"], cadence["attempts"]) == ("met", 10), name
        assert cadence["attempts_exceeded_at"] is not None
        warnings = [d["level"] for t, d in state["events"] if t == "sla.warning"]
        assert warnings == ["attempts_exceeded"], name
    rerouted = batched[special["rerouted"]]["clocks"]
    assert rerouted["first_response"]["state"] == "met"
    assert rerouted["sal_acceptance"]["started_at"] == t0
    lost = batched[special["lost_held"]]
    assert {c["state"] for c in lost["clocks"].values()} == {"cancelled"}
    assert lost["events"] == [] and lost["held"] is None and lost["statuses"] == set()
    assert met(special["pql"]) == {"first_response": 1, "pql_contact": 1}
    won = batched[special["won"]]["clocks"]["cs_handoff"]
    assert (won["state"], won["met_at"], won["started_at"]) == ("met", t0 + 2 * H, t0 + H)
    returned = batched[special["returned_held"]]
    assert {sla: c["state"] for sla, c in returned["clocks"].items()} == {
        "first_response": "met", "contact_cadence": "met", "sal_acceptance": "met",
    }  # fmt: skip
    assert returned["clocks"]["first_response"]["met_at"] == t0 + H
    assert batched[waiting]["clocks"] == {}
    assert batched[waiting]["held"] == (t0, 2)
    assert [s for _, s in batched[waiting]["statuses"]] == ["sal"]


async def _processed(sla_timer: SlaTimer, n: int) -> bool:
    return sla_timer.runner.processed >= n


async def _waits_for_the_claim(sla_timer: SlaTimer) -> bool:
    """A batch has handed its events to `apply` (their inbox rows claimed in its transaction)
    and that transaction waits for a row lock on the clocks it reads."""
    if len(sla_timer.passes) < 2:
        return False
    async with sla_timer.db.unit_of_work() as session:
        waiting = await session.scalar(
            sa.text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock' AND query LIKE '%sla_timer.timers%FOR UPDATE%'"
            )
        )
    return waiting > 0


async def test_promotions_of_a_batch_are_counted_as_one_by_one(stack):
    lead_ids = [uuid.uuid4() for _ in range(30)]
    sent = []
    for k, lead_id in enumerate(lead_ids):
        at = T0 + k * H
        # promoted, promoted again after a recycle, then the first promotion replayed
        first, again = mql(lead_id, at), mql(lead_id, at + timedelta(days=40))
        sent += [first, again, first.model_copy(update={"id": uuid.uuid4()})]
    values = [ev.to_bytes() for ev in sent] + [ev.to_bytes() for ev in sent[:5]]
    states = {}
    for batch_size in (500, 1):
        settings = await stack.isolated_settings()
        async with SlaTimer(settings, batch_size, "commitments") as sla_timer:
            await sla_timer.consume(values, len(sent))
            states[batch_size] = await sla_timer.state(lead_ids)
            if batch_size == 500:
                assert max(sla_timer.passes) >= 50
    for k, lead_id in enumerate(lead_ids):
        assert states[500][lead_id]["mql"] == states[1][lead_id]["mql"]
        promoted = states[500][lead_id]["mql"]
        assert promoted["promoted_at"] == T0 + k * H + timedelta(days=40)
        assert promoted["in_target"] is True


async def test_a_poison_event_in_a_batch_is_dead_lettered_and_its_neighbours_apply(settings):
    lead_ids = [uuid.uuid4() for _ in range(20)]
    runs = [
        [routed(lead_id, T0), attempt(lead_id, T0 + H), status(lead_id, "sal", T0 + 2 * H)]
        for lead_id in lead_ids
    ]
    good = interleave(runs)
    # refused by its handler: a routing without its team
    routing = routed(uuid.uuid4(), T0)
    no_team = routing.model_copy(
        update={"id": uuid.uuid4(), "data": {k: v for k, v in routing.data.items() if k != "team"}}
    )
    # refused by its handler: a calendar no clock can run on
    bad_calendar = routed(uuid.uuid4(), T0, calendar={"timezone": "Mars/Olympus_Mons"})
    # accepted by its handler, refused by PostgreSQL in the batch pass (no NUL in jsonb): a
    # status change held back for a lead not routed yet
    nul = status(uuid.uuid4(), "sal", T0, reason="no\x00reason")
    values = [ev.to_bytes() for ev in good[:25]] + [no_team.to_bytes()]
    values += [ev.to_bytes() for ev in good[25:40]] + [nul.to_bytes(), bad_calendar.to_bytes()]
    values += [ev.to_bytes() for ev in good[40:]]

    async with SlaTimer(settings, 500) as sla_timer:
        await sla_timer.consume(values, len(good))
        dead = await read_topic(
            settings, settings.topic_prefix + dlq_topic(TOPIC_FEEDBACK), 3, idle=2.0
        )
        state = await sla_timer.state(lead_ids)
        async with sla_timer.db.unit_of_work() as session:
            handled = set(await session.scalars(sa.select(INBOX.c.event_id)))
            held = await session.scalar(sa.select(sa.func.count()).select_from(early_statuses))
    poison = {no_team.id, nul.id, bad_calendar.id}
    assert {CloudEvent.from_bytes(d.value).id for d in dead} == poison
    errors = {CloudEvent.from_bytes(d.value).id: dict(d.headers)["leadflow-error"] for d in dead}
    assert errors[no_team.id].startswith(b"payload of lead.routed invalid")
    assert errors[bad_calendar.id].startswith(b"calendar of lead.routed invalid")
    assert b"\\u0000" in errors[nul.id] or b"0x00" in errors[nul.id]
    # the failed batch was rolled back and replayed event by event: every neighbour took
    # effect once, the poison events left nothing
    assert handled == {ev.id for ev in good}
    assert held == 0
    for lead_id in lead_ids:
        clocks = state[lead_id]["clocks"]
        assert {sla: c["state"] for sla, c in clocks.items()} == {
            "first_response": "met", "contact_cadence": "met", "sal_acceptance": "met",
        }  # fmt: skip
        assert clocks["contact_cadence"]["attempts"] == 1
        assert Counter(t for t, _ in state[lead_id]["events"]) == {"sla.met": 3}


async def test_a_batch_waits_for_the_firing_loop_and_meets_the_clock_it_left(settings):
    lead = uuid.uuid4()
    first_response = (timers.c.lead_id == lead) & (timers.c.sla == "first_response")
    async with SlaTimer(settings, 500) as sla_timer:
        await sla_timer.consume([routed(lead, T0).to_bytes()], 1)
        async with sla_timer.db.unit_of_work() as session:
            # the firing loop's claim: the clock stays locked while its due levels fire
            timer = (
                await session.execute(sa.select(timers).where(first_response).with_for_update())
            ).one()
            await sla_timer.publish([attempt(lead, T0 + 5 * H).to_bytes()])
            # the attempt's batch claimed its inbox row and applies it: it waits for the claim
            await eventually(lambda: _waits_for_the_claim(sla_timer), timeout=60)
            assert sla_timer.passes == [1, 1]
            assert not await sla_timer.inbox_count(2)  # nothing committed meanwhile
            await session.execute(
                sa.update(timers)
                .where(timers.c.id == timer.id)
                .values(
                    state="breached",
                    level=2,
                    next_fire_at=datetime.fromisoformat(timer.ladder[2]["at"]),
                    version=timers.c.version + 1,
                )
            )
        await eventually(lambda: sla_timer.inbox_count(2), timeout=60)
        state = await sla_timer.state([lead])
    # the attempt met the clock as the firing loop left it: breached, nothing more to fire
    clock = state[lead]["clocks"]["first_response"]
    assert (clock["state"], clock["level"], clock["met_at"], clock["next_fire_at"]) == (
        "breached", 2, T0 + 5 * H, None,
    )  # fmt: skip
    assert clock["version"] == 3
    met = [(t, d["sla"], d["level"]) for t, d in state[lead]["events"] if d["sla"] == timer.sla]
    assert met == [("sla.met", "first_response", "breached")]
