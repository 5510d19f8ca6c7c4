"""Scoring handles a whole poll batch as a set (real PostgreSQL and broker): a batch holding many
leads' events, copies of events, and one lead's events in the order they happened ends in exactly
the state — score rows, product usage, PQL accounts and the outgoing events, in order — that
handling the same events one by one gives; every promotion happens once, at the event that
crossed the rule; a poison event in a batch is dead-lettered alone while its neighbours take
effect once.

Every event is published on one topic and one key (one partition), so that the consumer reads
them in the order they were sent and a poll returns many of them at once; the reference run
reads the same events with polls of one record each. Both runs score on a stopped clock, so
that their instants agree.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import sqlalchemy as sa
from leadflow import metrics
from leadflow.clock import Clock
from leadflow.contracts.events import (
    TOPIC_FEEDBACK,
    TOPIC_INGEST,
    CloudEvent,
    LeadActivity,
    LeadCreated,
    LeadErased,
    LeadStatusChanged,
    LeadUpdated,
    dlq_topic,
    make_event,
)
from leadflow.contracts.policy import load_policy
from leadflow.db import kernel_tables
from leadflow.outbox import Outbox
from leadflow_scoring import consumers
from leadflow_scoring.models import lead_scores, metadata, pql_accounts, product_usage
from support.harness import QUALIFIED_LEAD, BatchRun, counted, interleave, read_topic

OUTBOX, INBOX = kernel_tables(metadata)
NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)  # the stopped clock both runs score at
T0 = NOW - timedelta(hours=2)  # when the leads' activities happened
PERSON = {k: v for k, v in QUALIFIED_LEAD.items() if k != "consent"}


def created(lead_id: uuid.UUID, email: str, **changes) -> CloudEvent:
    lead = LeadCreated(lead_id=lead_id, occurred_at=T0, **{**PERSON, "email": email, **changes})
    return make_event(lead, source="ingest", time=T0)


def updated(lead_id: uuid.UUID, email: str, **changes) -> CloudEvent:
    lead = LeadUpdated(lead_id=lead_id, occurred_at=T0, **{**PERSON, "email": email, **changes})
    return make_event(lead, source="ingest", time=T0)


def activity(lead_id: uuid.UUID, type_: str, minute: int, **fields) -> CloudEvent:
    payload = LeadActivity(
        lead_id=lead_id,
        activity_id=uuid.uuid4(),
        activity_type=type_,
        occurred_at=T0 + timedelta(minutes=minute),
        **fields,
    )
    return make_event(payload, source="ingest", time=T0)


def erased(lead_id: uuid.UUID) -> CloudEvent:
    return make_event(LeadErased(lead_id=lead_id), source="ingest", time=T0)


def usage(lead_id: uuid.UUID, minute: int, account: str, user: str, feature: str) -> CloudEvent:
    properties = {"account": account, "user_id": user, "feature": feature}
    return activity(lead_id, "product_usage", minute, properties=properties)


class Scoring(BatchRun):
    """Scoring's subscriptions in consumer runners of their own (own database, own topics),
    reading polls of `batch_size` records; counts the events each batch pass got."""

    def __init__(self, settings, batch_size: int) -> None:
        clock = Clock(start=NOW, speed=0.0)
        rt = SimpleNamespace(
            policy=load_policy(settings.policy_file),
            outbox=Outbox(OUTBOX, source="scoring", clock=clock),
            clock=clock,
            state={},
        )
        super().__init__(settings, "scoring", consumers.subscriptions(rt), INBOX, batch_size)

    async def consume(self, values: list[bytes], handled: int, topic: str = TOPIC_INGEST) -> None:
        await super().consume(values, handled, topic)

    async def state(self) -> dict:
        """Every score row, usage row and PQL account, and the outgoing events in order."""
        async with self.db.unit_of_work() as session:
            rows = (await session.execute(sa.select(lead_scores))).mappings().all()
            usage = (
                (
                    await session.execute(
                        sa.select(product_usage).order_by(product_usage.c.activity_id)
                    )
                )
                .mappings()
                .all()
            )
            accounts = (await session.execute(sa.select(pql_accounts))).mappings().all()
            payloads = await session.scalars(sa.select(OUTBOX.c.payload).order_by(OUTBOX.c.id))
            events = [CloudEvent.from_bytes(payload) for payload in payloads]
        return {
            "scores": {row["lead_id"]: dict(row) for row in rows},
            "usage": [dict(row) for row in usage],
            "accounts": {row["account"]: dict(row) for row in accounts},
            # the event ids are each run's own
            "events": [
                (e.type, e.subject, e.time, e.leadflowpolicyversion, e.data) for e in events
            ],
        }


def of(state: dict, type_: str, lead_id: uuid.UUID) -> list[dict]:
    return [
        data
        for kind, subject, *_, data in state["events"]
        if (kind, subject) == (type_, str(lead_id))
    ]


async def test_a_batch_of_many_leads_ends_as_handling_the_events_one_by_one(stack):
    runs: list[list[CloudEvent]] = []
    plain = [uuid.uuid4() for _ in range(45)]
    for k, lead_id in enumerate(plain):
        # intent tier 2 is an MQL at once; tiers 0 and 1 become one at the third activity
        runs.append([
            created(lead_id, f"buyer{k}@prospect{k}.example", intent_tier=k % 3),
            activity(lead_id, "demo_request", 1),
            activity(lead_id, "page_view", 2, page_category="pricing"),
            activity(lead_id, "page_view", 3, page_category="docs"),
            activity(lead_id, "webinar_attended", 4),
            activity(lead_id, "unsubscribed", 5),  # not an engagement: ignored
        ])  # fmt: skip
    lead = {name: uuid.uuid4() for name in ("early", "demoted", "never", "erased", "erased_first")}
    # activities before their lead: scored once the lead arrives, promoted then
    runs.append([
        activity(lead["early"], "demo_request", 1),
        activity(lead["early"], "demo_request", 2),
        created(lead["early"], "early@prospect.example", intent_tier=0),
    ])  # fmt: skip
    # promoted by its first snapshot; the next one breaks the rule, the promotion stays; the
    # last one is back to the first one's score, a change again
    runs.append([
        created(lead["demoted"], "demoted@prospect.example"),
        updated(lead["demoted"], "demoted@prospect.example", role="user"),
        updated(lead["demoted"], "demoted@prospect.example"),
        updated(lead["demoted"], "demoted@prospect.example", role="user"),
    ])  # fmt: skip
    runs.append([
        created(lead["never"], "never@prospect.example", role="user", intent_tier=0),
        activity(lead["never"], "demo_request", 1),
        activity(lead["never"], "demo_request", 2),
    ])  # fmt: skip
    # erased between its snapshots: the late snapshot and activity leave it inert
    runs.append([
        created(lead["erased"], "gone@prospect.example", intent_tier=0),
        activity(lead["erased"], "page_view", 1, page_category="pricing"),
        usage(lead["erased"], 2, "erased-account", "gone@prospect.example", "reports"),
        erased(lead["erased"]),
        created(lead["erased"], "gone@prospect.example"),
        activity(lead["erased"], "demo_request", 3),
    ])  # fmt: skip
    runs.append([erased(lead["erased_first"]), created(lead["erased_first"], "x@p.example")])
    # one product account used by two leads: the third use, by either, makes a PQL, once
    a, b, c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    user = {"role": "user", "intent_tier": 0}
    runs.append([
        created(a, "dev@acme.example", **user),
        created(b, "ops@acme.example", **user),
        usage(a, 1, "acme", "u-a", "reports"),
        usage(b, 2, "acme", "u-b", "reports"),
        usage(a, 3, "acme", "u-a", "reports"),
        usage(b, 4, "acme", "u-b", "reports"),
    ])  # fmt: skip
    # five active users of another account
    runs.append(
        [created(c, "lead@globex.example", **user)]
        + [usage(c, n, "globex", f"g-{n}", f"f{n}") for n in range(5)]
    )
    # a merge: the survivor takes the absorbed lead's interactions and its promotion
    x, y = uuid.uuid4(), uuid.uuid4()
    runs.append([
        created(x, "one@merge.example"),
        activity(x, "page_view", 1, page_category="pricing"),
        created(y, "two@merge.example", role="user", intent_tier=0),
        updated(y, "two@merge.example", merged_lead_ids=[str(x)]),
        activity(y, "demo_request", 2),
        activity(x, "demo_request", 3),  # late, for the absorbed id: a new row, no snapshot
    ])  # fmt: skip
    # every lead's first event in a batch of its own first, so that the big batch finds rows
    # scored before it
    first = [run[0] for run in runs]
    sent = interleave([run[1:] for run in runs])
    # copies: every seventh event again right behind itself, and the first ten once more at the end
    values = [v for i, ev in enumerate(sent) for v in [ev.to_bytes()] * (2 if i % 7 == 0 else 1)]
    values += [ev.to_bytes() for ev in sent[:10] + first[:5]]

    states = {}
    for batch_size in (500, 1):
        async with Scoring(await stack.isolated_settings(), batch_size) as scoring:
            await scoring.consume([ev.to_bytes() for ev in first], len(first))
            await scoring.consume(values, len(first) + len(sent))
            states[batch_size] = await scoring.state()
            passes = scoring.passes
        if batch_size == 1:
            assert max(passes) == 1
        else:
            # the batch pass saw many leads' events at once, and every event once
            assert max(passes) >= 50, passes
            assert sum(passes) == len(first) + len(sent), passes
    batched, one_by_one = states[500], states[1]
    assert batched["scores"].keys() == one_by_one["scores"].keys()
    for lead_id, row in batched["scores"].items():
        assert row == one_by_one["scores"][lead_id], lead_id
    assert batched["usage"] == one_by_one["usage"]
    assert batched["accounts"] == one_by_one["accounts"]
    assert len(batched["events"]) == len(one_by_one["events"])
    for event, reference in zip(batched["events"], one_by_one["events"], strict=True):
        assert event == reference

    state = batched
    for k, lead_id in enumerate(plain):
        [mql] = of(state, "lead.mql", lead_id)
        scored = [e["engagement"] for e in of(state, "lead.scored", lead_id)]
        assert scored == [0, 30, 42, 52, 67]  # one per change, copies or not
        assert mql["engagement"] == (0 if k % 3 == 2 else 52)  # promoted where it crossed
        assert state["scores"][lead_id]["engagement"] == 67
    [early] = of(state, "lead.mql", lead["early"])
    assert early["engagement"] == 60 and len(early["key_activities"]) == 2
    [demoted] = of(state, "lead.mql", lead["demoted"])
    assert demoted["role"] == "decision_maker"
    assert [e["is_mql"] for e in of(state, "lead.scored", lead["demoted"])] == [
        True, False, True, False,
    ]  # fmt: skip
    row = state["scores"][lead["demoted"]]
    assert (row["is_mql"], row["mql_kind"], row["lead"]["role"]) == (False, "mql", "user")
    assert of(state, "lead.mql", lead["never"]) == []
    gone = state["scores"][lead["erased"]]
    assert gone["lead"]["erased"] is True and gone["lead"]["email"] is None
    assert [i["kind"] for i in gone["interactions"]] == [
        "pricing_page", "product_usage", "demo_request",
    ]  # fmt: skip
    assert gone["engagement"] == 12  # scored before the erasure, never since
    assert all(u["lead_id"] != lead["erased"] for u in state["usage"])
    assert state["scores"][lead["erased_first"]]["lead"] == {"erased": True}
    assert of(state, "lead.scored", lead["erased_first"]) == []
    [pql] = of(state, "lead.mql", a)
    assert (pql["kind"], pql["channel"]) == ("pql", "plg")
    assert pql["reasons"] == [
        "feature_uses_met: reports used 3× ≥ 3 in account acme within 30 days"
    ]
    assert of(state, "lead.mql", b) == []
    [by_users] = of(state, "lead.mql", c)
    assert by_users["reasons"][0].startswith("active_users_met: 5 active users")
    assert {k: v["lead_id"] for k, v in state["accounts"].items()} == {"acme": a, "globex": c}
    assert len([u for u in state["usage"] if u["account"] == "acme"]) == 4
    survivor, absorbed = state["scores"][y], state["scores"][x]
    assert [i["kind"] for i in survivor["interactions"]] == ["pricing_page", "demo_request"]
    assert survivor["mql_at"] == NOW and of(state, "lead.mql", y) == []  # sales has it already
    assert len(of(state, "lead.mql", x)) == 1
    assert (absorbed["lead"], [i["kind"] for i in absorbed["interactions"]]) == (
        {},
        ["demo_request"],
    )


async def test_a_poison_event_in_a_batch_is_dead_lettered_and_its_neighbours_apply(settings):
    runs, lead_ids = [], []
    for k in range(20):
        lead_id = uuid.uuid4()
        runs.append([
            created(lead_id, f"buyer{k}@poison.example"),
            activity(lead_id, "demo_request", 1),
        ])  # fmt: skip
        lead_ids.append(lead_id)
    good = interleave(runs)
    # refused by its handler: a lead without an email
    no_email = created(uuid.uuid4(), "x@poison.example")
    no_email = no_email.model_copy(
        update={"data": {k: v for k, v in no_email.data.items() if k != "email"}}
    )
    # accepted by its handler, refused by PostgreSQL in the batch pass (no NUL in jsonb)
    nul = created(uuid.uuid4(), "nul@poison.example", intent_note="a\x00b")
    values = [ev.to_bytes() for ev in good[:15]] + [no_email.to_bytes()]
    values += [ev.to_bytes() for ev in good[15:30]] + [nul.to_bytes()]
    values += [ev.to_bytes() for ev in good[30:]]

    promoted_before = counted(metrics.mql_promoted)
    async with Scoring(settings, 500) as scoring:
        await scoring.consume(values, len(good))
        dead = await read_topic(
            settings, settings.topic_prefix + dlq_topic(TOPIC_INGEST), 2, idle=2.0
        )
        state = await scoring.state()
        async with scoring.db.unit_of_work() as session:
            handled = set(await session.scalars(sa.select(INBOX.c.event_id)))
    assert sorted(CloudEvent.from_bytes(d.value).id for d in dead) == sorted([no_email.id, nul.id])
    errors = {CloudEvent.from_bytes(d.value).id: dict(d.headers)["leadflow-error"] for d in dead}
    assert errors[no_email.id].startswith(b"payload of lead.created invalid")
    assert b"\\u0000" in errors[nul.id] or b"0x00" in errors[nul.id]
    # the failed batch was rolled back and replayed event by event: every neighbour took
    # effect once, the poison events left nothing
    assert handled == {ev.id for ev in good}
    assert state["scores"].keys() == set(lead_ids)
    for lead_id in lead_ids:
        assert len(of(state, "lead.mql", lead_id)) == 1
        assert [e["engagement"] for e in of(state, "lead.scored", lead_id)] == [0, 30]
        assert [i["kind"] for i in state["scores"][lead_id]["interactions"]] == ["demo_request"]
    # the rolled-back batch counted nothing: one promotion counted per lead
    assert counted(metrics.mql_promoted) - promoted_before == len(lead_ids)


def status(lead_id: uuid.UUID, status_: str, at: datetime) -> CloudEvent:
    change = LeadStatusChanged(
        lead_id=lead_id, from_status="working", status=status_, reason="unreachable", changed_at=at
    )
    return make_event(change, source="feedback", time=at)


async def test_recycles_in_a_batch_end_as_handled_one_by_one(stack):
    leads = [uuid.uuid4() for _ in range(60)]
    snapshots = [
        created(lead_id, f"buyer{k}@recycle.example", intent_tier=k % 3)
        for k, lead_id in enumerate(leads)
    ]
    unknown = uuid.uuid4()  # recycled before scoring heard of it
    changes = [status(lead_id, "recycled", T0) for lead_id in leads]
    changes += [status(lead_id, "sal", T0) for lead_id in leads[:10]]  # not scoring's business
    changes += [status(unknown, "recycled", T0)]
    values = [ev.to_bytes() for ev in changes] + [ev.to_bytes() for ev in changes[:5]]
    nurture = load_policy(None).nurture_for("unreachable")

    states = {}
    for batch_size in (500, 1):
        async with Scoring(await stack.isolated_settings(), batch_size) as scoring:
            await scoring.consume([ev.to_bytes() for ev in snapshots], len(snapshots))
            await scoring.consume(values, len(snapshots) + len(changes), TOPIC_FEEDBACK)
            states[batch_size] = await scoring.state()
            passes = scoring.passes
        if batch_size == 500:
            assert max(passes) >= 50, passes
    batched, one_by_one = states[500], states[1]
    assert batched == one_by_one

    for k, lead_id in enumerate(leads):
        row = batched["scores"][lead_id]
        assert (row["recycle_reason"], row["recycled_at"]) == ("unreachable", T0)
        assert row["nurture_until"] == row["next_review_at"] == T0 + nurture
        assert row["recycle_intent_tier"] == k % 3  # its intent tier when it was recycled
        assert len(of(batched, "lead.mql", lead_id)) == (1 if k % 3 == 2 else 0)
    row = batched["scores"][unknown]
    assert (row["lead"], row["recycle_intent_tier"], row["scored_at"]) == ({}, 0, None)
