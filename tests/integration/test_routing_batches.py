"""Routing handles a whole poll batch of MQLs as a set (real PostgreSQL and broker): a batch of
many leads across rules, strategies, account owners, capacities and working hours, with copies
of events, a re-sent MQL, an erased and an already routed lead, ends in exactly the state that
handling the same events one by one gives; a poison event in a batch is dead-lettered alone
while its neighbours are routed once and the rolled-back batch leaves nothing behind.

Every event is published on one topic and one key (one partition), so that the consumer reads
them in the order they were sent and a poll returns many of them at once; the reference run
reads the same events with polls of one record each.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import sqlalchemy as sa
from leadflow import metrics
from leadflow.clock import Clock
from leadflow.contracts.events import (
    TOPIC_SCORING,
    CloudEvent,
    LeadCompany,
    LeadMql,
    LeadSource,
    LeadStatusChanged,
    dlq_topic,
    make_event,
)
from leadflow.contracts.policy import default_policy
from leadflow.db import Database, kernel_tables
from leadflow.outbox import Outbox
from leadflow_routing import consumers, store, use_cases
from leadflow_routing.models import (
    FALLBACK_TEAM_ID,
    accounts,
    assignments,
    erased_leads,
    metadata,
    rep_open_work,
    reps,
    rules,
    teams,
)
from support.harness import BatchRun, counted, eventually, read_topic

OUTBOX, INBOX = kernel_tables(metadata)
FALLBACK = FALLBACK_TEAM_ID
T0 = datetime(2025, 3, 3, 9, tzinfo=UTC)


def fixed(name: str) -> uuid.UUID:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"leadflow-routing-batches/{name}")


TEAMS = {
    "rr": ("round_robin", {"channel": ["inbound"], "country": ["pl"]}),
    "weighted": ("weighted", {"channel": ["partner"]}),
    "balanced": ("load_balanced", {"channel": ["outbound"]}),
}
# name: (team, fields)
REPS = {
    "ada": ("rr", {}),
    "bob": ("rr", {}),
    "cyd": ("rr", {"out_of_office": True}),
    "dee": ("weighted", {"weight": 3}),
    "eve": ("weighted", {"weight": 1}),
    "fay": ("balanced", {"capacity": 3}),
    "gus": ("balanced", {"capacity": 2}),
    "hal": ("fallback", {"working_hours": {"sun": []}}),  # never within working hours
    "ivy": ("fallback", {}),
    "jon": ("fallback", {}),
}
ERASED, ROUTED_BEFORE = fixed("lead/erased"), fixed("lead/routed-before")


def team_id(name: str) -> uuid.UUID:
    return FALLBACK if name == "fallback" else fixed(f"team/{name}")


async def set_up(db: Database) -> None:
    """The same teams, reps (fixed ids: round robin orders by id), rules, accounts,
    one erased and one routed lead in every database."""
    async with db.unit_of_work() as session:
        for name, (strategy, _) in TEAMS.items():
            await session.execute(
                sa.insert(teams).values(id=team_id(name), name=name, strategy=strategy)
            )
        for priority, (name, (_, conditions)) in enumerate(TEAMS.items()):
            await session.execute(
                sa.insert(rules).values(
                    id=fixed(f"rule/{name}"), name=name, priority=priority,
                    conditions=conditions, team_id=team_id(name),
                )
            )  # fmt: skip
        for name, (team, fields) in REPS.items():
            await session.execute(
                sa.insert(reps).values(id=fixed(f"rep/{name}"), team_id=team_id(team), name=name, **fields)
            )  # fmt: skip
        # an owner who takes their account's leads, one who is away (the rule decides)
        for domain, rep in (("owned.example", "bob"), ("away.example", "cyd")):
            await session.execute(
                sa.insert(accounts).values(
                    domain=domain, rep_id=fixed(f"rep/{rep}"), team_id=team_id("rr"), since=T0
                )
            )
        await session.execute(sa.insert(erased_leads).values(lead_id=ERASED, erased_at=T0))
        await session.execute(
            sa.insert(assignments).values(
                id=fixed("assignment/before"), lead_id=ROUTED_BEFORE, team_id=team_id("rr"),
                rep_id=fixed("rep/ada"), reason="mql", trace={}, mql={}, created_at=T0,
            )
        )  # fmt: skip
    # the reps' counts of open leads, as routing's worker makes them when it starts
    await use_cases.recount_open_work(SimpleNamespace(db=db))


def mql(lead_id: uuid.UUID, channel: str, country: str, domain: str | None) -> LeadMql:
    return LeadMql(
        lead_id=lead_id,
        fit=90,
        engagement=40.0,
        intent_tier=1,
        channel=channel,
        source=LeadSource(system="hubspot", channel=channel, campaign="batch"),
        company=LeadCompany(name=f"Co {lead_id.hex[:6]}", domain=domain, country=country),
        email=f"lead-{lead_id.hex[:8]}@example.com",
        promoted_at=T0,
    )


def mqls() -> list[LeadMql]:
    """Leads of every path in turn: rule teams of every strategy, the fallback queue, account
    owners present and away, domains first seen in the batch (their later leads go to the rep
    their first one got), no domain."""
    shapes = [
        ("inbound", "PL", None),
        ("partner", "DE", "shared-{k}.example"),
        ("outbound", "US", None),
        ("inbound", "DE", None),
        ("inbound", "PL", "owned.example"),
        ("inbound", "PL", "away.example"),
        ("inbound", "PL", "shared-{k}.example"),
        ("outbound", "PL", "new-{n}.example"),
    ]
    made = []
    for n in range(64):
        channel, country, domain = shapes[n % len(shapes)]
        domain = domain and domain.format(k=n % 3, n=n)
        made.append(mql(fixed(f"lead/{n}"), channel, country, domain))
    return made


class Routing(BatchRun):
    """Routing's subscriptions, each in a consumer runner of its own (own database, own
    topics), reading polls of `batch_size` records; counts the events each batch pass got."""

    def __init__(self, settings, batch_size: int) -> None:
        clock = Clock()
        rt = SimpleNamespace(
            clock=clock,
            outbox=Outbox(OUTBOX, source="routing", clock=clock),
            policy=default_policy(),  # the SLA clocks a routed lead opens
        )
        super().__init__(settings, "routing", consumers.subscriptions(rt), INBOX, batch_size)
        self.default = "mql"
        self.rt = rt

    async def __aenter__(self) -> Routing:
        await set_up(self.db)
        return await super().__aenter__()

    async def state(self) -> dict:
        """Everything routing wrote, without the ids and instants each run makes anew."""
        async with self.db.unit_of_work() as session:
            rows = (
                await session.execute(sa.select(assignments).order_by(assignments.c.lead_id))
            ).all()
            owners = (await session.execute(sa.select(accounts).order_by(accounts.c.domain))).all()
            positions = (await session.execute(sa.select(teams.c.name, teams.c.rr_position))).all()
            outbox = (
                await session.execute(sa.select(OUTBOX.c.payload).order_by(OUTBOX.c.id))
            ).all()
        events = [CloudEvent.from_bytes(r.payload) for r in outbox]
        routed = [e.data for e in events if e.type == "lead.routed"]
        by_assignment = {r.id: r.lead_id for r in rows}
        return {
            "assignments": [
                (r.lead_id, r.team_id, r.rep_id, r.reason, r.current, r.trace) for r in rows
            ],
            "accounts": [(a.domain, a.rep_id, a.team_id) for a in owners],
            "positions": sorted(positions),
            # what notify delivers with each decision: the MQL routed and the rep's name
            "context": sorted(
                (e["lead_id"], e["mql"]["lead_id"], e["rep_id"], e["rep_name"]) for e in routed
            ),
            "routed": [(e["lead_id"], e["team"], e["rep_id"], e["reason"]) for e in routed],
            "assignment_ids": {
                (e["lead_id"], by_assignment[uuid.UUID(e["assignment_id"])]) for e in routed
            },
            # the leads no rep could take: each waits, told once
            "unassigned": [
                (e.data["lead_id"], e.data.get("team"), e.data["reason"])
                for e in events
                if e.type == "lead.unassigned"
            ],
        }


async def test_a_batch_of_mqls_is_routed_as_handling_them_one_by_one(stack):
    leads = mqls()
    sent = [make_event(m, source="test") for m in leads]
    # the same lead promoted again later (a new event): it stays where its first MQL put it
    sent.append(make_event(leads[5], source="test"))
    # an erased lead and a lead routed before this batch
    sent.append(make_event(mql(ERASED, "inbound", "PL", None), source="test"))
    sent.append(make_event(mql(ROUTED_BEFORE, "inbound", "PL", None), source="test"))
    # copies: every seventh event again right behind itself, the first five again at the end
    values = [v for i, e in enumerate(sent) for v in [e.to_bytes()] * (2 if i % 7 == 0 else 1)]
    values += [e.to_bytes() for e in sent[:5]]

    states, passes = {}, {}
    for batch_size in (500, 1):
        async with Routing(await stack.isolated_settings(), batch_size) as routing:
            await routing.consume(values, len(sent))
            states[batch_size] = await routing.state()
            passes[batch_size] = routing.passes
    assert max(passes[1]) == 1
    # the batch pass saw many leads at once, and every event once
    assert max(passes[500]) >= 50, passes[500]
    assert sum(passes[500]) == len(sent), passes[500]
    batched, one_by_one = states[500], states[1]
    for part in batched:
        assert batched[part] == one_by_one[part], part

    rep = {fixed(f"rep/{name}"): name for name in REPS}
    got = {lead_id: rep.get(rep_id) for lead_id, _, rep_id, *_ in batched["assignments"]}
    # each lead once: the re-sent MQL, the copies and the lead routed before change nothing;
    # the erased lead is not routed; a lead no rep can take waits (lead.unassigned) instead
    assert len(batched["routed"]) + len(batched["unassigned"]) == len(leads)
    waiting = {lead_id for lead_id, _, _ in batched["unassigned"]}
    assert waiting == {str(lead_id) for lead_id, name in got.items() if name is None}
    assert {(team, reason) for _, team, reason in batched["unassigned"]} == {
        ("balanced", "at_capacity")
    }
    assert ERASED not in got and got[ROUTED_BEFORE] == "ada"
    assert all(current for *_, current, _ in batched["assignments"])
    # the owner takes the account's leads; an away owner's go by the rule
    owned = [m.lead_id for m in leads if m.company.domain == "owned.example"]
    away = [m.lead_id for m in leads if m.company.domain == "away.example"]
    assert {got[i] for i in owned} == {"bob"}
    assert {got[i] for i in away} <= {"ada", "bob"}
    # a domain first seen in the batch belongs to the rep its first lead got
    owners = {domain: rep.get(rep_id) for domain, rep_id, _ in batched["accounts"]}
    for k in range(3):
        domain = f"shared-{k}.example"
        first = next(m.lead_id for m in leads if m.company.domain == domain)
        assert {got[m.lead_id] for m in leads if m.company.domain == domain} == {got[first]}
        assert owners[domain] == got[first]
    # load balanced: the capacities hold inside the batch, the rest find no one
    balanced = Counter(got[m.lead_id] for m in leads if m.channel == "outbound")
    assert balanced == {"fay": 3, "gus": 2, None: len(leads) // 4 - 5}
    # the fallback queue: hal is never within working hours
    assert {got[m.lead_id] for m in leads[3::8]} == {"ivy", "jon"}
    # each team's round-robin position moved once per lead it got by rule, not by account
    by_rule = Counter(
        team for _, team, _, _, _, trace in batched["assignments"]
        if trace and trace["strategy"] != "account_owner"
    )  # fmt: skip
    positions = dict(batched["positions"])
    assert {name: positions[name] for name in ("rr", "weighted", "fallback", "balanced")} == {
        name: by_rule[team_id(name)] for name in ("rr", "weighted", "fallback", "balanced")
    }
    rr = [
        got[lead_id] for lead_id, team, _, _, _, trace in batched["assignments"]
        if team == team_id("rr") and trace and trace["strategy"] == "round_robin"
    ]  # fmt: skip
    # cyd is away: the turn passes on, both others get leads
    assert set(rr) == {"ada", "bob"}
    # each decision carries its own MQL and the name of the rep it chose
    rep_names = {str(fixed(f"rep/{name}")): name for name in REPS}
    assert len(batched["context"]) == len(leads) - len(waiting)
    for lead_id, mql_lead_id, rep_id, rep_name in batched["context"]:
        assert mql_lead_id == lead_id
        assert rep_name == (rep_names[rep_id] if rep_id else None)
    assert all(lead_id == str(owner) for lead_id, owner in batched["assignment_ids"])


async def test_a_poison_event_in_a_batch_is_dead_lettered_and_its_neighbours_route(settings):
    good = [mql(uuid.uuid4(), "inbound", "DE", None) for _ in range(30)]
    # refused by its handler: an MQL without its lead
    broken = make_event(good[0], source="test")
    no_lead = broken.model_copy(
        update={"data": {k: v for k, v in broken.data.items() if k != "lead_id"}}
    )
    # accepted by its handler, refused by PostgreSQL in the batch pass (no NUL in jsonb)
    nul = mql(uuid.uuid4(), "inbound", "DE", None)
    nul = nul.model_copy(update={"company": LeadCompany(name="Nul\x00Co", country="DE")})
    events = [make_event(m, source="test") for m in good]
    values = [e.to_bytes() for e in events[:10]] + [no_lead.to_bytes()]
    values += [e.to_bytes() for e in events[10:20]] + [make_event(nul, source="test").to_bytes()]
    values += [e.to_bytes() for e in events[20:]]

    routed_before = counted(metrics.leads_routed)
    async with Routing(settings, 500) as routing:
        await routing.consume(values, len(good))
        dead = await read_topic(
            settings, settings.topic_prefix + dlq_topic(TOPIC_SCORING), 2, idle=2.0
        )
        state = await routing.state()
        async with routing.db.unit_of_work() as session:
            handled = set(await session.scalars(sa.select(INBOX.c.event_id)))
    assert sorted(CloudEvent.from_bytes(d.value).id for d in dead) == sorted(
        [no_lead.id, CloudEvent.from_bytes(values[21]).id]
    )
    errors = {CloudEvent.from_bytes(d.value).id: dict(d.headers)["leadflow-error"] for d in dead}
    assert errors[no_lead.id].startswith(b"payload of lead.mql invalid")
    # the failed batch was rolled back and replayed event by event: every neighbour was routed
    # once, the poison events left nothing (no assignment, event, delivery or position move)
    assert handled == {e.id for e in events}
    routed = {uuid.UUID(lead_id) for lead_id, *_ in state["routed"]}
    assert routed == {m.lead_id for m in good}
    assert len(state["routed"]) == len(good)
    assert len(state["context"]) == len(good)
    assert dict(state["positions"])["fallback"] == len(good)
    # the rolled-back batch counted nothing: each lead is counted once, as routed once
    assert counted(metrics.leads_routed) - routed_before == len(good)
    fallback = {rep_id for _, team, rep_id, _ in state["routed"] if team == "fallback"}
    assert fallback == {str(fixed("rep/ivy")), str(fixed("rep/jon"))}


async def test_status_changes_close_open_work_once_at_the_first_closing_change(settings):
    leads = [mql(uuid.uuid4(), "inbound", "DE", None) for _ in range(6)]
    t1, t2 = T0 + timedelta(days=1), T0 + timedelta(days=2)

    def change(lead: LeadMql, status: str, at: datetime) -> CloudEvent:
        return make_event(
            LeadStatusChanged(lead_id=lead.lead_id, from_status="working", status=status,
                              changed_at=at),
            source="test",
        )  # fmt: skip

    changes = [
        change(leads[0], "won", t1),
        change(leads[1], "working", t1),  # still open work
        change(leads[2], "recycled", t1),
        change(leads[0], "lost", t2),  # closed already: the first instant stays
        change(leads[3], "sal", t1),
        change(leads[3], "returned", t2),
        change(mql(uuid.uuid4(), "inbound", "DE", None), "won", t1),  # never routed here
    ]
    values = [e.to_bytes() for e in changes] + [changes[0].to_bytes(), changes[2].to_bytes()]
    async with Routing(settings, 500) as routing:
        await routing.consume([make_event(m, source="test").to_bytes() for m in leads], 6)
        routing.passes.clear()  # the status changes' passes only
        await routing.consume(values, 6 + len(changes), subscription="feedback")
        assert max(routing.passes) > 1, routing.passes
        async with routing.db.unit_of_work() as session:
            closed = dict(
                (
                    await session.execute(sa.select(assignments.c.lead_id, assignments.c.closed_at))
                ).all()
            )
    assert closed == {
        leads[0].lead_id: t1,
        leads[1].lead_id: None,
        leads[2].lead_id: t1,
        leads[3].lead_id: t2,
        leads[4].lead_id: None,
        leads[5].lead_id: None,
        ROUTED_BEFORE: None,  # set up open, no change for it
    }


async def waiting_for(db: Database, pid: int) -> bool:
    """Some transaction waits for a lock the backend `pid` holds."""
    async with db.unit_of_work() as session:
        blocked = await session.scalar(
            sa.text(
                "SELECT count(*) FROM pg_stat_activity WHERE :pid = ANY(pg_blocking_pids(pid))"
            ),
            {"pid": pid},
        )
    return blocked > 0


async def test_an_erasure_and_a_batch_routing_the_same_lead_wait_for_each_other(settings):
    first, lead = mqls()[:2]
    async with Routing(settings, 500) as routing:
        # The consumer running (joined, polling) before the race begins.
        await routing.consume([make_event(first, source="test").to_bytes()], 1)
        async with routing.db.unit_of_work() as erasing:
            # `lead.erased` handled by the erasure consumer, not yet committed: it found no
            # assignment to redact, and holds the lead until it commits.
            await use_cases.erase(erasing, [lead.lead_id], T0)
            erasure = await erasing.scalar(sa.text("SELECT pg_backend_pid()"))
            batch = asyncio.create_task(
                routing.consume([make_event(lead, source="test").to_bytes()], 2)
            )
            # The batch took the event (its inbox row written, not committed) and now waits
            # for the erasure's lock on the lead: nothing of it is visible yet.
            await eventually(lambda: waiting_for(routing.db, erasure), timeout=60)
            assert not await routing.inbox_count(2), "the batch did not wait for the erasure"
        await batch
        async with routing.db.unit_of_work() as session:
            routed = await session.scalar(
                sa.select(sa.func.count()).where(assignments.c.lead_id == lead.lead_id)
            )
        assert routed == 0  # the batch found the lead erased once the erasure committed


async def open_work(db: Database) -> tuple[dict[uuid.UUID, int], dict[uuid.UUID, int]]:
    """Each rep's open leads as routing keeps them, and as the assignments count them (reps
    with none left out of both)."""
    a = assignments.c
    async with db.unit_of_work() as session:
        kept = (
            await session.execute(
                sa.select(rep_open_work.c.rep_id, rep_open_work.c.open_leads).where(
                    rep_open_work.c.open_leads != 0
                )
            )
        ).tuples()
        counted = (
            await session.execute(
                sa.select(a.rep_id, sa.func.count())
                .where(a.current, a.closed_at.is_(None), a.rep_id.is_not(None))
                .group_by(a.rep_id)
            )
        ).tuples()
        return dict(kept.all()), dict(counted.all())


async def test_reps_counts_of_open_leads_follow_routing_closing_and_reassigning_at_once(settings):
    """Units of work routing new MQLs, closing leads' open work and reassigning leads, all at
    once on the same reps: none deadlocks, and every rep's kept count of open leads is the
    number of its open assignments; a count found wrong is mended by the recount."""
    first = mqls()
    more = [
        mql(fixed(f"lead/more/{n}"), channel, "PL", None)
        for n, channel in enumerate(["inbound", "partner", "outbound"] * 16)
    ]
    async with Routing(settings, 500) as routing:
        db, rt = routing.db, routing.rt
        await routing.consume([make_event(m, source="test").to_bytes() for m in first], 64)
        kept, counted = await open_work(db)
        assert kept == counted
        assert sum(counted.values()) > 32, counted

        async def route(chunk: list[LeadMql]) -> None:
            async with db.unit_of_work() as session:
                await use_cases.route_batch(rt, session, chunk)

        async def close(chunk: list[LeadMql]) -> None:
            async with db.unit_of_work() as session:
                await use_cases.close_open_work(
                    session,
                    [
                        LeadStatusChanged(lead_id=m.lead_id, from_status="working", status="won",
                                          changed_at=T0 + timedelta(days=1))
                        for m in chunk
                    ],
                )  # fmt: skip

        async def reassign(chunk: list[LeadMql]) -> None:
            async with db.unit_of_work() as session:
                await use_cases.reassign(rt, session, [m.lead_id for m in chunk], "manual")

        await asyncio.gather(
            *(route(more[k::6]) for k in range(6)),
            *(close(first[k : k + 8]) for k in range(0, 32, 8)),
            *(reassign(first[k : k + 8]) for k in range(16, 64, 8)),  # some closed meanwhile
        )
        kept, counted = await open_work(db)
        assert kept == counted
        # a lead listed twice is routed away twice in one unit of work: its clocks and counts
        # are those of its last assignment
        await reassign(first[60:62] * 2)
        kept, counted = await open_work(db)
        assert kept == counted
        assert await use_cases.recount_open_work(SimpleNamespace(db=db)) == {}

        # a count written wrong (as by a routing that did not keep them) is mended
        ada = fixed("rep/ada")
        async with db.unit_of_work() as session:
            await session.execute(
                sa.update(rep_open_work).where(rep_open_work.c.rep_id == ada).values(open_leads=99)
            )
        assert await use_cases.recount_open_work(SimpleNamespace(db=db)) == {ada: 99}
        assert await open_work(db) == (kept, counted)
        async with db.unit_of_work() as session:
            load = (await store.team_reps(session, [team_id("rr")]))[team_id("rr")]
        assert {r.id: r.open_leads for r in load if r.open_leads} == {
            rep_id: n for rep_id, n in counted.items() if rep_id in {r.id for r in load}
        }
