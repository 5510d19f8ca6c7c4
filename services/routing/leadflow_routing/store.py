"""All of routing's SQL: prebuilt statements and the batched reads and writes of the use cases."""

from __future__ import annotations

import re
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import sqlalchemy as sa
from leadflow.contracts.erasure import forget_events, without_personal_data
from leadflow.db import ManyRows, kernel_tables
from leadflow.paging import Listing, PageRequest
from sqlalchemy.dialects.postgresql import ARRAY, UUID, insert
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession

from leadflow_routing.domain.assignment import Owner, RepView, RuleView, TeamView
from leadflow_routing.models import (
    accounts,
    assignments,
    erased_leads,
    lead_clocks,
    metadata,
    rep_open_work,
    reps,
    rules,
    teams,
    unassigned,
)

OUTBOX, _ = kernel_tables(metadata)
ROWS_PER_INSERT = 1000

_ids = sa.bindparam("ids", type_=ARRAY(UUID(as_uuid=True)))
u = unassigned.c
_domains = sa.bindparam("domains", type_=ARRAY(sa.Text))
a = assignments.c


# --- routing decisions ---------------------------------------------------------------------

# Leads of a batch already erased or routed (a re-sent MQL changes nothing).
_known_leads = sa.union_all(
    sa.select(erased_leads.c.lead_id, sa.literal("erased").label("kind"))
    .where(erased_leads.c.lead_id == sa.any_(_ids)),
    sa.select(a.lead_id, sa.literal("routed")).where(a.current, a.lead_id == sa.any_(_ids)),
)  # fmt: skip
_erased_among = sa.select(erased_leads.c.lead_id).where(erased_leads.c.lead_id == sa.any_(_ids))
_active_rules = (
    sa.select(rules).where(rules.c.active).order_by(rules.c.priority, rules.c.created_at)
)
_read_accounts = sa.select(accounts).where(accounts.c.domain == sa.any_(_domains))
_read_teams = sa.select(teams).where(teams.c.id == sa.any_(_ids)).order_by(teams.c.id)
# In key order, so that two batches never wait on each other in a circle.
_lock_teams = _read_teams.with_for_update()
w = rep_open_work.c
# A rep's leads in open work, as kept in rep_open_work (no row yet: none).
_with_open_leads = reps.outerjoin(rep_open_work, w.rep_id == reps.c.id)
_open_leads = sa.func.coalesce(w.open_leads, 0).label("open_leads")
_last_assigned = sa.select(sa.func.max(a.created_at)).where(a.rep_id == reps.c.id).scalar_subquery()
_team_reps = (
    sa.select(reps, _open_leads, _last_assigned.label("last_assigned_at"))
    .select_from(_with_open_leads)
    .where(reps.c.team_id == sa.any_(_ids))
)
# The current assignments of leads about to be routed again, locked in key order.
_lock_current = (
    sa.select(a.id, a.lead_id, a.rep_id, a.closed_at, a.mql)
    .where(a.current, a.lead_id == sa.any_(_ids))
    .order_by(a.lead_id)
    .with_for_update()
)
_close_assignments = (
    sa.update(assignments)
    .where(a.id == sa.bindparam("key"))
    .values(current=False, closed_at=sa.bindparam("at"))
)
# A batch's new assignments and account owners, each kind with one statement.
_assignment_rows = ManyRows(
    assignments,
    ["id", "lead_id", "team_id", "rep_id", "reason", "trace", "current", "mql", "created_at",
     "closed_at"],
)  # fmt: skip
_add_assignments = _assignment_rows.insert()
_account_rows = ManyRows(accounts, ["domain", "rep_id", "team_id", "since"])
_add_accounts = _account_rows.insert().on_conflict_do_nothing()
_move_positions = (
    sa.update(teams)
    .where(teams.c.id == sa.bindparam("key"))
    .values(rr_position=sa.bindparam("position"))
)
# The leads left their reps' open work: the first change that says so sets the instant.
_closing = (
    sa.func.unnest(
        sa.bindparam("leads", type_=ARRAY(UUID(as_uuid=True))),
        sa.bindparam("ats", type_=ARRAY(sa.DateTime(timezone=True))),
    )
    .table_valued("lead_id", "at")
    .render_derived(name="closing")
)
_close_open_work = (
    sa.update(assignments)
    .where(a.lead_id == _closing.c.lead_id, a.current, a.closed_at.is_(None))
    .values(closed_at=_closing.c.at)
    .returning(a.rep_id)
)
# Changes to reps' counts of open leads, written in the order given (rep order): every
# transaction that changes a count does it as its last statement, so two of them wait on each
# other's counts, if at all, in one direction only (and never on anything else while they hold
# a count).
_count_rows = ManyRows(rep_open_work, ["rep_id", "open_leads"])
_count_open_work = _count_rows.insert()
_count_open_work = _count_open_work.on_conflict_do_update(
    index_elements=[w.rep_id],
    set_={"open_leads": w.open_leads + _count_open_work.excluded.open_leads},
)


@dataclass(frozen=True)
class Current:
    """A lead's current assignment, as a reassignment finds it."""

    id: uuid.UUID
    rep_id: uuid.UUID | None
    closed_at: datetime | None
    mql: dict[str, Any]


async def known_leads(session: AsyncSession, ids: list[uuid.UUID]) -> dict[str, set[uuid.UUID]]:
    """Of these leads, the erased ones and those routed already: {"erased": …, "routed": …}."""
    known: dict[str, set[uuid.UUID]] = {"erased": set(), "routed": set()}
    for lead_id, kind in await session.execute(_known_leads, {"ids": ids}):
        known[kind].add(lead_id)
    return known


async def erased_among(session: AsyncSession, ids: Iterable[uuid.UUID]) -> set[uuid.UUID]:
    return set(await session.scalars(_erased_among, {"ids": sorted(set(ids))}))


async def is_erased(session: AsyncSession, lead_id: uuid.UUID) -> bool:
    return bool(await erased_among(session, [lead_id]))


async def active_rules(session: AsyncSession) -> list[RuleView]:
    """The active rules in the order they are tried."""
    return [
        RuleView(r.id, r.name, r.team_id, r.conditions)
        for r in await session.execute(_active_rules)
    ]


async def account_owners(session: AsyncSession, domains: list[str]) -> dict[str, Owner]:
    """The owners of the accounts among these domains (a domain without one is left out)."""
    if not domains:
        return {}
    return {
        r.domain: Owner(r.rep_id, r.team_id)
        for r in await session.execute(_read_accounts, {"domains": domains})
    }


async def read_teams(
    session: AsyncSession, team_ids: list[uuid.UUID], *, lock: bool
) -> list[TeamView]:
    """The teams, locked until the transaction ends when `lock` (their positions move)."""
    rows = await session.execute(_lock_teams if lock else _read_teams, {"ids": team_ids})
    return [TeamView(t.id, t.name, t.strategy, t.calendar, t.rr_position) for t in rows]


async def team_reps(
    session: AsyncSession, team_ids: list[uuid.UUID]
) -> dict[uuid.UUID, list[RepView]]:
    """Each team's reps with their open leads and last assignment (every team listed, if
    only with no rep)."""
    found: dict[uuid.UUID, list[RepView]] = {team_id: [] for team_id in team_ids}
    for r in await session.execute(_team_reps, {"ids": team_ids}):
        found[r.team_id].append(
            RepView(
                r.id, r.name, r.active, r.out_of_office, r.weight, r.capacity, r.open_leads,
                r.timezone, r.working_hours, r.last_assigned_at, r.out_of_office_until,
            )
        )  # fmt: skip
    return found


async def lock_current(
    session: AsyncSession, lead_ids: list[uuid.UUID]
) -> dict[uuid.UUID, Current]:
    rows = await session.execute(_lock_current, {"ids": sorted(set(lead_ids))})
    return {r.lead_id: Current(r.id, r.rep_id, r.closed_at, r.mql) for r in rows}


async def write_routing(
    session: AsyncSession,
    *,
    closed: list[dict[str, Any]],
    added: list[dict[str, Any]],
    opened_accounts: list[dict[str, Any]],
    positions: list[dict[str, Any]],
    queued: list[dict[str, Any]],
    left_queue: list[uuid.UUID],
    still_waiting: list[dict[str, Any]],
) -> None:
    """The rows of a unit of work's routing decisions, one statement per kind."""
    # the closed assignments first: a lead has one current assignment at a time
    if closed:
        await session.execute(_close_assignments, closed)
    if added:
        await session.execute(_add_assignments, _assignment_rows.params(added))
    if opened_accounts:
        await session.execute(_add_accounts, _account_rows.params(opened_accounts))
    if positions:
        await session.execute(_move_positions, positions)
    if left_queue:
        await leave_queue(session, left_queue)
    if queued:
        await session.execute(_enqueue, queued)
    if still_waiting:
        await session.execute(_rewait, still_waiting)


# --- the unassigned queue -----------------------------------------------------------------


@dataclass(frozen=True)
class Waiting:
    """A lead waiting in the unassigned queue."""

    lead_id: uuid.UUID
    team_id: uuid.UUID | None
    reason: str
    routing_reason: str
    away_from: uuid.UUID | None
    queued_at: datetime


_enqueue = (
    insert(unassigned)
    .on_conflict_do_nothing()
    .execution_options(insertmanyvalues_page_size=ROWS_PER_INSERT)
)
_rewait = (
    sa.update(unassigned)
    .where(u.lead_id == sa.bindparam("key"))
    .values(team_id=sa.bindparam("team"), reason=sa.bindparam("why"))
)
_leave_queue = sa.delete(unassigned).where(u.lead_id == sa.any_(_ids))
_waiting_page = sa.select(u.lead_id, u.seq).order_by(u.seq)
# The waiting rows of leads whose locks this unit of work holds; another replica's are skipped.
_lock_waiting = (
    sa.select(unassigned)
    .where(u.lead_id == sa.any_(_ids))
    .order_by(u.lead_id)
    .with_for_update(skip_locked=True)
)
_waiting_with_team = (
    sa.select(unassigned, teams.c.name.label("team"))
    .outerjoin(teams, teams.c.id == u.team_id)
    .order_by(u.seq)
)
_waiting_by_team = sa.select(
    u.team_id, sa.func.count().label("n"), sa.func.min(u.queued_at).label("oldest")
).group_by(u.team_id)


def _waiting(row: Row) -> Waiting:
    return Waiting(
        row.lead_id, row.team_id, row.reason, row.routing_reason, row.away_from, row.queued_at
    )


async def waiting_page(
    session: AsyncSession, after: int, limit: int
) -> list[tuple[uuid.UUID, int]]:
    """The next `limit` waiting leads (with their place) in queue order after the place `after`
    (unlocked: a first look)."""
    query = _waiting_page.where(u.seq > after).limit(limit)
    return [(r.lead_id, r.seq) for r in await session.execute(query)]


async def lock_waiting(
    session: AsyncSession, lead_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, Waiting]:
    """Of these leads, those still waiting, locked until the transaction ends."""
    rows = await session.execute(_lock_waiting, {"ids": sorted(set(lead_ids))})
    return {r.lead_id: _waiting(r) for r in rows}


async def leave_queue(session: AsyncSession, lead_ids: Iterable[uuid.UUID]) -> None:
    ids = sorted(set(lead_ids))
    if ids:
        await session.execute(_leave_queue, {"ids": ids})


async def waiting_leads(session: AsyncSession) -> Sequence[Row]:
    """Every waiting lead with its team's name, oldest first."""
    return (await session.execute(_waiting_with_team)).all()


async def waiting_by_team(
    session: AsyncSession,
) -> tuple[dict[uuid.UUID | None, tuple[int, datetime]], dict[uuid.UUID, str]]:
    """How many leads wait for each team (None: no team) and since when the oldest, and every
    team's name."""
    waiting = {r.team_id: (r.n, r.oldest) for r in await session.execute(_waiting_by_team)}
    names = {r.id: r.name for r in await session.execute(sa.select(teams.c.id, teams.c.name))}
    return waiting, names


async def close_open_work(
    session: AsyncSession, first: dict[uuid.UUID, datetime]
) -> Counter[uuid.UUID]:
    """Close the open work of each lead at its instant (an assignment closed stays as it is);
    a lead waiting for a rep leaves the queue. Returns the change to each rep's open leads
    (for count_open_work, once the transaction's other writes are done)."""
    left: Counter[uuid.UUID] = Counter()
    if first:
        leads = sorted(first)
        closed = await session.scalars(
            _close_open_work, {"leads": leads, "ats": [first[lead] for lead in leads]}
        )
        left.subtract(rep_id for rep_id in closed if rep_id is not None)
        await leave_queue(session, first)
    return left


async def count_open_work(session: AsyncSession, changes: Mapping[uuid.UUID, int]) -> None:
    """Add each change to its rep's count of open leads: the transaction's last statement
    (see _count_open_work)."""
    wanted = sorted((rep_id, n) for rep_id, n in changes.items() if n)
    if wanted:
        await session.execute(
            _count_open_work,
            _count_rows.params({"rep_id": rep_id, "open_leads": n} for rep_id, n in wanted),
        )


_missing_counts = (
    insert(rep_open_work)
    .from_select(["rep_id"], sa.select(reps.c.id).order_by(reps.c.id))
    .on_conflict_do_nothing()
)
_lock_counts = sa.select(w.rep_id, w.open_leads).order_by(w.rep_id).with_for_update()
_recount = (
    sa.update(rep_open_work)
    .values(
        open_leads=sa.select(sa.func.count())
        .where(a.rep_id == w.rep_id, a.current, a.closed_at.is_(None))
        .scalar_subquery()
    )
    .returning(w.rep_id, w.open_leads)
)


async def add_missing_counts(session: AsyncSession) -> None:
    """A count row for every rep without one (a rep made before counts were kept)."""
    await session.execute(_missing_counts)


async def recount_open_work(session: AsyncSession) -> dict[uuid.UUID, int]:
    """Count every rep's open leads again, from the assignments; returns the counts that were
    wrong, as they were. Every count is locked first: a transaction that changed assignments
    and is about to change its counts either committed before the count (and is in it) or
    waits and adds its change to the new count."""
    before = dict((await session.execute(_lock_counts)).tuples().all())
    after = dict((await session.execute(_recount)).tuples().all())
    return {rep_id: n for rep_id, n in before.items() if after.get(rep_id, n) != n}


# --- erasure ------------------------------------------------------------------------------

_record_erased = insert(erased_leads).on_conflict_do_nothing()
_lead_assignments = (
    sa.select(a.id, a.mql).where(a.lead_id == sa.bindparam("lead")).with_for_update()
)
_redact_assignment = (
    sa.update(assignments).where(a.id == sa.bindparam("key")).values(mql=sa.bindparam("mql"))
)


async def erase_lead(session: AsyncSession, lead_id: uuid.UUID, now: datetime) -> None:
    """Record the lead erased; redact its assignments; it no longer waits for a rep."""
    await session.execute(_record_erased, {"lead_id": lead_id, "erased_at": now})
    await leave_queue(session, [lead_id])
    redacted = [
        {"key": row.id, "mql": without_personal_data(row.mql)}
        for row in await session.execute(_lead_assignments, {"lead": lead_id})
        if not row.mql.get("erased")
    ]
    if redacted:
        await session.execute(_redact_assignment, redacted)


async def forget_lead_events(session: AsyncSession, lead_ids: list[uuid.UUID]) -> None:
    """The lead's events still in routing's outbox: published ones deleted, waiting ones
    redacted."""
    await forget_events(session, OUTBOX, lead_ids)


# --- configuration: teams, reps, rules -------------------------------------------

_team_exists = sa.select(teams.c.id).where(teams.c.id == sa.bindparam("key"))


async def locked_row(
    session: AsyncSession, kind: Literal["team", "rep", "rule"], key: uuid.UUID
) -> Row | None:
    """A team's, rep's or rule's row as it is before a change in this transaction, locked
    until the transaction ends (what the audit log records as `before`)."""
    table = {"team": teams, "rep": reps, "rule": rules}[kind]
    query = sa.select(table).where(table.c.id == key).with_for_update()
    return (await session.execute(query)).first()


async def team_exists(session: AsyncSession, team_id: uuid.UUID) -> bool:
    return await session.scalar(_team_exists, {"key": team_id}) is not None


async def add_team(session: AsyncSession, team_id: uuid.UUID, values: dict[str, Any]) -> None:
    await session.execute(sa.insert(teams).values(id=team_id, **values))


async def update_team(session: AsyncSession, team_id: uuid.UUID, values: dict[str, Any]) -> None:
    await session.execute(sa.update(teams).where(teams.c.id == team_id).values(**values))


async def all_teams(session: AsyncSession) -> Sequence[Row]:
    return (await session.execute(sa.select(teams).order_by(teams.c.created_at))).all()


async def directory(
    session: AsyncSession, team_ids: Iterable[uuid.UUID]
) -> list[tuple[Row, list[Row]]]:
    """Each of these teams with its reps (by name), for the team directory it publishes."""
    ids = sorted(set(team_ids))
    found = (await session.execute(_read_teams, {"ids": ids})).all()
    members = (
        await session.execute(
            sa.select(reps).where(reps.c.team_id == sa.any_(_ids)).order_by(reps.c.name, reps.c.id),
            {"ids": ids},
        )
    ).all()
    return [(team, [r for r in members if r.team_id == team.id]) for team in found]


async def patch_team(
    session: AsyncSession, team_id: uuid.UUID, values: dict[str, Any]
) -> Row | None:
    """The team after the changes; None if there is no such team."""
    query = (
        sa.update(teams).where(teams.c.id == team_id).values(**values).returning(teams)
        if values
        else sa.select(teams).where(teams.c.id == team_id)
    )
    return (await session.execute(query)).first()


async def team_ids_by_name(session: AsyncSession) -> dict[str, uuid.UUID]:
    return {r.name: r.id for r in await session.execute(sa.select(teams.c.id, teams.c.name))}


async def add_rep(session: AsyncSession, rep_id: uuid.UUID, values: dict[str, Any]) -> None:
    await session.execute(sa.insert(reps).values(id=rep_id, **values))
    await session.execute(insert(rep_open_work).values(rep_id=rep_id).on_conflict_do_nothing())


async def update_rep(session: AsyncSession, rep_id: uuid.UUID, values: dict[str, Any]) -> None:
    await session.execute(sa.update(reps).where(reps.c.id == rep_id).values(**values))


async def change_rep(
    session: AsyncSession, rep_id: uuid.UUID, changes: dict[str, Any]
) -> Row | None:
    """The rep after the changes (as it is when there are none); None if there is no such rep."""
    if changes:
        query = sa.update(reps).where(reps.c.id == rep_id).values(**changes).returning(reps)
    else:
        query = sa.select(reps).where(reps.c.id == rep_id)
    return (await session.execute(query)).first()


async def rep_matching(session: AsyncSession, email: str | None, name: str) -> uuid.UUID | None:
    """A rep of a routing file: by email when it gives one, else by name."""
    match = reps.c.email == email if email else reps.c.name == name
    return await session.scalar(sa.select(reps.c.id).where(match).limit(1))


async def all_reps(session: AsyncSession) -> Sequence[Row]:
    return (await session.execute(sa.select(reps).order_by(reps.c.created_at))).all()


async def add_rule(session: AsyncSession, rule_id: uuid.UUID, values: dict[str, Any]) -> None:
    await session.execute(sa.insert(rules).values(id=rule_id, **values))


async def all_rules(session: AsyncSession) -> Sequence[Row]:
    """In the order they are tried."""
    return (
        await session.execute(sa.select(rules).order_by(rules.c.priority, rules.c.created_at))
    ).all()


async def delete_rule(session: AsyncSession, rule_id: uuid.UUID) -> bool:
    deleted = await session.scalar(
        sa.delete(rules).where(rules.c.id == rule_id).returning(rules.c.id)
    )
    return deleted is not None


async def delete_all_rules(session: AsyncSession) -> None:
    await session.execute(sa.delete(rules))


async def current_assignment(session: AsyncSession, lead_id: uuid.UUID) -> Row | None:
    return (
        await session.execute(
            sa.select(a.lead_id, a.id, a.team_id, a.rep_id, a.reason, a.trace, a.created_at).where(
                a.lead_id == lead_id, a.current
            )
        )
    ).first()


# --- the check of teams.strategy ----------------------------------------------------------

STRATEGY_CHECK = "ck_teams_strategy_known"
_check_lock = sa.select(
    sa.func.pg_advisory_xact_lock(sa.func.hashtext(f"{teams.fullname}.strategy"))
)
_check_definition = sa.text(
    "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
    "WHERE conrelid = CAST(:table AS regclass) AND conname = :name"
)
_strategies_in_use = sa.select(teams.c.name, teams.c.strategy).where(
    teams.c.strategy != sa.all_(sa.bindparam("names", type_=ARRAY(sa.Text)))
)


async def lock_strategy_check(session: AsyncSession) -> None:
    """Serialise the check's update with other routing instances starting at the same time."""
    await session.execute(_check_lock)


async def checked_strategies(session: AsyncSession) -> set[str] | None:
    """The strategy names the database's CHECK constraint accepts; None when it has none."""
    definition = await session.scalar(
        _check_definition, {"table": teams.fullname, "name": STRATEGY_CHECK}
    )
    if definition is None:
        return None
    # PostgreSQL shows it as CHECK ((strategy = ANY (ARRAY['a'::text, 'b'::text])))
    return set(re.findall(r"'([^']*)'", definition))


async def teams_with_other_strategies(
    session: AsyncSession, names: Sequence[str]
) -> list[tuple[str, str]]:
    """(team, strategy) of the teams whose strategy is not one of `names`."""
    rows = await session.execute(_strategies_in_use, {"names": list(names)})
    return [(r.name, r.strategy) for r in rows]


async def replace_strategy_check(session: AsyncSession, names: Sequence[str]) -> None:
    """The CHECK constraint of teams.strategy accepts exactly `names` (plain identifiers, as
    the registry makes sure: they are written into the statement)."""
    allowed = ", ".join(f"'{name}'" for name in names)
    await session.execute(
        sa.text(
            f"ALTER TABLE {teams.fullname} DROP CONSTRAINT IF EXISTS {STRATEGY_CHECK}, "
            f"ADD CONSTRAINT {STRATEGY_CHECK} CHECK (strategy IN ({allowed}))"
        )
    )


# --- configuration: reads, deletions, what uses what ------------------------------------

_open = sa.and_(a.current, a.closed_at.is_(None))
# A far instant standing for "no clock due": paging compares sort values, never nulls.
NO_DUE = datetime(9999, 1, 1, tzinfo=UTC)

TEAMS = Listing(
    name="teams",
    key=teams.c.id,
    sorts={"created_at": teams.c.created_at, "name": teams.c.name},
    default_sort="created_at",
    filters={
        "name": (teams.c.name, str),
        "strategy": (teams.c.strategy, str),
        "is_fallback": (teams.c.is_fallback, bool),
    },
)
REPS = Listing(
    name="reps",
    key=reps.c.id,
    sorts={"created_at": reps.c.created_at, "name": reps.c.name},
    default_sort="created_at",
    filters={
        "team_id": (reps.c.team_id, uuid.UUID),
        "active": (reps.c.active, bool),
        "out_of_office": (reps.c.out_of_office, bool),
        "email": (reps.c.email, str),
    },
)
RULES = Listing(
    name="rules",
    key=rules.c.id,
    sorts={"priority": rules.c.priority, "name": rules.c.name, "created_at": rules.c.created_at},
    default_sort="priority",
    filters={"team_id": (rules.c.team_id, uuid.UUID), "active": (rules.c.active, bool)},
)
ACCOUNTS = Listing(
    name="accounts",
    key=accounts.c.domain,
    sorts={"domain": accounts.c.domain, "since": accounts.c.since},
    default_sort="domain",
    filters={"rep_id": (accounts.c.rep_id, uuid.UUID), "team_id": (accounts.c.team_id, uuid.UUID)},
)
WAITING = Listing(
    name="unassigned",
    key=u.lead_id,
    sorts={"queue": u.seq, "queued_at": u.queued_at},
    default_sort="queue",
    filters={"team_id": (u.team_id, uuid.UUID), "reason": (u.reason, str)},
)
# A lead's clock due first (lateral: one per lead in open work).
_first_clock = (
    sa.select(lead_clocks.c.sla, lead_clocks.c.due_at, lead_clocks.c.level)
    .where(lead_clocks.c.lead_id == a.lead_id)
    .order_by(lead_clocks.c.due_at, lead_clocks.c.sla)
    .limit(1)
    .lateral("first_clock")
)
WORKLIST = Listing(
    name="worklist",
    key=a.lead_id,
    sorts={
        "due_at": sa.func.coalesce(_first_clock.c.due_at, NO_DUE),
        "assigned_at": a.created_at,
    },
    default_sort="due_at",
    filters={"sla": (_first_clock.c.sla, str)},
)
_rep_read = sa.select(reps, _open_leads).select_from(_with_open_leads)
_worklist = (
    sa.select(
        a.lead_id, a.team_id, a.rep_id, a.created_at.label("assigned_at"),
        a.mql["kind"].astext.label("kind"), a.mql["channel"].astext.label("channel"),
        _first_clock.c.sla, _first_clock.c.due_at, _first_clock.c.level,
    )
    .select_from(assignments.outerjoin(_first_clock, sa.true()))
    .where(_open)
)  # fmt: skip


async def page_teams(session: AsyncSession, wanted: PageRequest) -> Sequence[Row]:
    return (await session.execute(wanted.select(sa.select(teams)))).all()


async def page_reps(session: AsyncSession, wanted: PageRequest) -> Sequence[Row]:
    """Reps with their open leads now."""
    return (await session.execute(wanted.select(_rep_read))).all()


async def page_rules(session: AsyncSession, wanted: PageRequest) -> Sequence[Row]:
    return (await session.execute(wanted.select(sa.select(rules)))).all()


async def page_accounts(session: AsyncSession, wanted: PageRequest) -> Sequence[Row]:
    return (await session.execute(wanted.select(sa.select(accounts)))).all()


async def page_waiting(session: AsyncSession, wanted: PageRequest) -> Sequence[Row]:
    """Waiting leads with their team's name."""
    return (await session.execute(wanted.select(_waiting_with_team))).all()


async def page_worklist(
    session: AsyncSession,
    wanted: PageRequest,
    *,
    rep_id: uuid.UUID | None = None,
    team_id: uuid.UUID | None = None,
) -> Sequence[Row]:
    """The open leads of a rep or a team, each with its clock due first."""
    query = _worklist
    if rep_id is not None:
        query = query.where(a.rep_id == rep_id)
    if team_id is not None:
        query = query.where(a.team_id == team_id)
    return (await session.execute(wanted.select(query))).all()


async def team_row(session: AsyncSession, team_id: uuid.UUID) -> Row | None:
    return (await session.execute(sa.select(teams).where(teams.c.id == team_id))).first()


async def rep_row(session: AsyncSession, rep_id: uuid.UUID) -> Row | None:
    """The rep with its open leads now."""
    return (await session.execute(_rep_read.where(reps.c.id == rep_id))).first()


async def rule_row(session: AsyncSession, rule_id: uuid.UUID) -> Row | None:
    return (await session.execute(sa.select(rules).where(rules.c.id == rule_id))).first()


async def rep_exists(session: AsyncSession, rep_id: uuid.UUID) -> Row | None:
    """The rep's id and team, if there is such a rep."""
    query = sa.select(reps.c.id, reps.c.team_id).where(reps.c.id == rep_id)
    return (await session.execute(query)).first()


async def team_uses(session: AsyncSession, team_id: uuid.UUID) -> dict[str, int]:
    """What still uses the team: its reps, rules, accounts, leads in open work and waiting."""
    counts = sa.select(
        sa.select(sa.func.count()).where(reps.c.team_id == team_id).scalar_subquery().label("reps"),
        sa.select(sa.func.count()).where(rules.c.team_id == team_id).scalar_subquery()
        .label("rules"),
        sa.select(sa.func.count()).where(accounts.c.team_id == team_id).scalar_subquery()
        .label("accounts"),
        sa.select(sa.func.count()).where(_open, a.team_id == team_id).scalar_subquery()
        .label("open leads"),
        sa.select(sa.func.count()).where(u.team_id == team_id).scalar_subquery()
        .label("waiting leads"),
    )  # fmt: skip
    row = (await session.execute(counts)).one()
    return dict(row._mapping)


async def rep_uses(session: AsyncSession, rep_id: uuid.UUID) -> dict[str, int]:
    """What still uses the rep: its leads in open work and the accounts it owns."""
    counts = sa.select(
        sa.select(sa.func.count()).where(_open, a.rep_id == rep_id).scalar_subquery()
        .label("open leads"),
        sa.select(sa.func.count()).where(accounts.c.rep_id == rep_id).scalar_subquery()
        .label("accounts"),
    )  # fmt: skip
    row = (await session.execute(counts)).one()
    return dict(row._mapping)


async def delete_team(session: AsyncSession, team_id: uuid.UUID) -> None:
    await session.execute(sa.delete(teams).where(teams.c.id == team_id))


async def delete_rep(session: AsyncSession, rep_id: uuid.UUID) -> None:
    await session.execute(sa.delete(reps).where(reps.c.id == rep_id))
    await session.execute(sa.delete(rep_open_work).where(w.rep_id == rep_id))


async def patch_rule(session: AsyncSession, rule_id: uuid.UUID, changes: dict[str, Any]) -> Row:
    query = (
        sa.update(rules).where(rules.c.id == rule_id).values(**changes).returning(rules)
        if changes
        else sa.select(rules).where(rules.c.id == rule_id)
    )
    return (await session.execute(query)).one()


async def accounts_follow_rep(session: AsyncSession, rep_id: uuid.UUID) -> None:
    """A rep moved to another team takes its accounts along (an account's leads go to its
    owner's team)."""
    team = sa.select(reps.c.team_id).where(reps.c.id == rep_id).scalar_subquery()
    await session.execute(
        sa.update(accounts).where(accounts.c.rep_id == rep_id).values(team_id=team)
    )


async def next_out_of_office_end(session: AsyncSession, now: datetime) -> datetime | None:
    """The soonest instant after `now` at which a rep's out of office ends by itself."""
    return await session.scalar(
        sa.select(sa.func.min(reps.c.out_of_office_until)).where(
            reps.c.out_of_office, reps.c.out_of_office_until > now
        )
    )


# --- account owners ------------------------------------------------------------------------


async def locked_account(session: AsyncSession, domain: str) -> Row | None:
    query = sa.select(accounts).where(accounts.c.domain == domain).with_for_update()
    return (await session.execute(query)).first()


async def add_account(session: AsyncSession, values: dict[str, Any]) -> Row | None:
    """The account made; None when the domain has an owner already."""
    query = insert(accounts).values(**values).on_conflict_do_nothing().returning(accounts)
    return (await session.execute(query)).first()


async def change_account(session: AsyncSession, domain: str, values: dict[str, Any]) -> Row:
    query = (
        sa.update(accounts).where(accounts.c.domain == domain).values(**values).returning(accounts)
    )
    return (await session.execute(query)).one()


async def own_account(session: AsyncSession, values: dict[str, Any]) -> None:
    """The account's owner is this rep (and team) from now on; the same owner stays as it is,
    since when included."""
    statement = insert(accounts).values(**values)
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=[accounts.c.domain],
            set_={
                "rep_id": statement.excluded.rep_id,
                "team_id": statement.excluded.team_id,
                "since": statement.excluded.since,
            },
            where=sa.or_(
                accounts.c.rep_id != statement.excluded.rep_id,
                accounts.c.team_id != statement.excluded.team_id,
            ),
        )
    )


async def all_accounts(session: AsyncSession) -> Sequence[Row]:
    return (await session.execute(sa.select(accounts).order_by(accounts.c.domain))).all()


async def delete_account(session: AsyncSession, domain: str) -> None:
    await session.execute(sa.delete(accounts).where(accounts.c.domain == domain))


# --- the SLA clocks of open work -----------------------------------------------------------

_clock_rows = ManyRows(lead_clocks, ["lead_id", "sla", "started_at", "due_at", "level"])
_open_clocks = _clock_rows.insert()
_open_clocks = _open_clocks.on_conflict_do_update(
    index_elements=[lead_clocks.c.lead_id, lead_clocks.c.sla],
    set_={
        "started_at": _open_clocks.excluded.started_at,
        "due_at": _open_clocks.excluded.due_at,
        "level": _open_clocks.excluded.level,
    },
)
_c = lead_clocks.c


async def open_clocks(
    session: AsyncSession, lead_ids: Iterable[uuid.UUID], clocks: list[dict[str, Any]]
) -> None:
    """The leads (routed again, or for the first time) have these clocks now, and no other."""
    ids = sorted(set(lead_ids))
    if ids:
        await session.execute(
            sa.delete(lead_clocks).where(_c.lead_id == sa.any_(_ids)), {"ids": ids}
        )
    if clocks:
        # the last of a lead's clock: an upsert cannot change a row twice in one statement
        last = {(clock["lead_id"], clock["sla"]): clock for clock in clocks}
        await session.execute(_open_clocks, _clock_rows.params(last.values()))


async def clocks_fired(session: AsyncSession, fired: list[dict[str, Any]]) -> None:
    """sla-timer fired a level of these clocks: kept for leads in open work, unless the clock
    was started before the one routing knows (an older assignment's)."""
    statement = insert(lead_clocks).from_select(
        ["lead_id", "sla", "started_at", "due_at", "level"],
        sa.select(
            sa.bindparam("lead_id", type_=UUID(as_uuid=True)),
            sa.bindparam("sla", type_=sa.Text),
            sa.bindparam("started_at", type_=sa.DateTime(timezone=True)),
            sa.bindparam("due_at", type_=sa.DateTime(timezone=True)),
            sa.bindparam("level", type_=sa.Text),
        ).where(sa.exists().where(_open, a.lead_id == sa.bindparam("lead_id"))),
    )
    statement = statement.on_conflict_do_update(
        index_elements=[_c.lead_id, _c.sla],
        set_={
            "started_at": statement.excluded.started_at,
            "due_at": statement.excluded.due_at,
            "level": statement.excluded.level,
        },
        where=_c.started_at <= statement.excluded.started_at,
    )
    if fired:
        await session.execute(statement, fired)


async def clocks_met(session: AsyncSession, met: list[dict[str, Any]]) -> None:
    """These clocks were met: no longer open (one started later, by a newer assignment, stays)."""
    if met:
        await session.execute(
            sa.delete(lead_clocks).where(
                _c.lead_id == sa.bindparam("lead"),
                _c.sla == sa.bindparam("sla_name"),
                _c.started_at <= sa.bindparam("started"),
            ),
            met,
        )


async def close_clocks(session: AsyncSession, lead_ids: Iterable[uuid.UUID]) -> None:
    """The leads left open work (or were erased): routing forgets their clocks."""
    ids = sorted(set(lead_ids))
    if ids:
        await session.execute(
            sa.delete(lead_clocks).where(_c.lead_id == sa.any_(_ids)), {"ids": ids}
        )
