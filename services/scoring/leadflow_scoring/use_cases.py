"""What scoring does: every lead change or activity re-scores the lead, MQLs and PQLs are promoted
once (again after a recycle), and leads no event touches are re-scored as time decays them.

A unit of work is applied as a set: `change_of` checks each event's payload and says what it
changes (a `Change`); `apply_changes` then applies the whole batch with a fixed number of
statements whatever its size. The `ScoreBook` locks the touched leads' score rows (in key
order) and reads them once, with the product usage of their accounts within the PQL window,
replays the changes in arrival order in memory — re-scoring the lead after each one, so that
every `lead.scored` and the one promotion come out exactly as if the events had come one by
one — and writes the changed rows, the new usage, the PQL claims and the outgoing events with
one statement each. Merges and erasures, rare, add a statement or two of their own. The decay
reviewer re-scores its due leads with the same book.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from leadflow import metrics
from leadflow.consumer import Received
from leadflow.contracts.erasure import without_personal_data
from leadflow.contracts.events import (
    BreakdownItem,
    LeadActivity,
    LeadCreated,
    LeadErased,
    LeadMql,
    LeadScored,
    LeadSnapshot,
    LeadStatusChanged,
    LeadUpdated,
    Payload,
)
from leadflow.contracts.policy import Policy
from leadflow.db import touch
from leadflow.errors import NotFound
from leadflow.service import Runtime
from sqlalchemy.ext.asyncio import AsyncSession

from leadflow_scoring import store
from leadflow_scoring.domain import rules
from leadflow_scoring.schemas import LeadScore

REVIEW_TAG = "scoring.review"
# rt.state keys: the reviewer's wake-up event, and the instant it plans to look next
# (None while it is awake and will look again anyway).
REVIEW_WAKE = "scoring.review_wake"
REVIEW_PLANNED = "scoring.review_planned"


class ClaimLost(Exception):
    """Another unit of work promoted an account this batch promoted too: the batch is retried
    (event by event), and then sees that promotion."""


# -- what one event changes ------------------------------------------------------------------


@dataclass(frozen=True)
class LeadChanged:
    """A lead snapshot from ingest; a merge names the leads it absorbed."""

    lead_id: uuid.UUID
    snapshot: dict[str, Any]
    merged: tuple[uuid.UUID, ...] = ()


@dataclass(frozen=True)
class Engaged:
    """An activity that counts as an engagement kind (`entry` of the interactions)."""

    lead_id: uuid.UUID
    entry: dict[str, Any]
    activity: LeadActivity


@dataclass(frozen=True)
class Erased:
    lead_id: uuid.UUID


@dataclass(frozen=True)
class Recycled:
    """Sales recycled the lead: why, when, and until when it rests in nurture."""

    lead_id: uuid.UUID
    values: dict[str, Any]


Change = LeadChanged | Engaged | Erased | Recycled


def change_of(payload: Payload, policy: Policy) -> Change | None:
    """What an event changes; None for one that changes nothing scoring keeps."""
    match payload:
        case LeadCreated():
            return LeadChanged(payload.lead_id, payload.model_dump(mode="json"))
        case LeadUpdated():
            snapshot = payload.model_dump(mode="json")
            return LeadChanged(payload.lead_id, snapshot, tuple(payload.merged_lead_ids))
        case LeadActivity():
            kind = rules.activity_kind(payload.activity_type, payload.page_category)
            if kind is None:
                return None
            entry = {
                "kind": kind,
                "type": payload.activity_type,
                "occurred_at": payload.occurred_at.isoformat(),
            }
            return Engaged(payload.lead_id, entry, payload)
        case LeadErased():
            return Erased(payload.lead_id)
        case LeadStatusChanged(status="recycled"):
            changed_at = rules.aware(payload.changed_at)
            nurture_until = payload.nurture_until or changed_at + policy.nurture_for(payload.reason)
            values = {
                "recycled_at": changed_at,
                "recycle_reason": payload.reason,
                "nurture_until": rules.aware(nurture_until),
            }
            return Recycled(payload.lead_id, values)
    return None


# -- the score rows of a unit of work ---------------------------------------------------------


@dataclass
class Usage:
    """One product_usage row: a product_usage activity kept for its account's PQL thresholds."""

    activity_id: uuid.UUID
    lead_id: uuid.UUID
    account: str
    user_id: str
    feature: str | None
    occurred_at: datetime


@dataclass
class Known:
    """A lead's score row as the batch found it and changes it; `exists` is False while the
    row is not there for the events replayed so far (new, or absorbed by a merge)."""

    row: dict[str, Any]
    stored: dict[str, Any] | None  # as the database holds it (None: no row)
    exists: bool


UsageMove = Callable[[AsyncSession], Awaitable[None]]


class ScoreBook:
    """The score rows of the leads a unit of work touches and the product usage of their
    accounts within the PQL window: read once, changed in memory event by event in arrival
    order (each change followed by the re-score handling it alone would do), written once.

    Outgoing events wait in `pending` and are written in order with one `emit_many`; an
    erasure writes what waits first, so that the outbox's redaction reaches it as it would
    have."""

    def __init__(self, rt: Runtime, session: AsyncSession, now: datetime) -> None:
        self.rt = rt
        self.policy: Policy = rt.policy
        self.session = session
        self.now = now
        self.since = now - self.policy.scoring.pql.window
        self.leads: dict[uuid.UUID, Known] = {}
        # product usage of the loaded accounts within the window, and the rows this batch adds
        self.usage: dict[uuid.UUID, Usage] = {}
        self.usage_of_lead: dict[uuid.UUID, dict[uuid.UUID, Usage]] = {}
        self.loaded_accounts: set[str] = set()
        self.promoted_accounts: set[str] = set()
        self.stored_usage: dict[uuid.UUID, uuid.UUID] = {}  # activity id -> lead, in the database
        self.new_usage: dict[uuid.UUID, Usage] = {}
        self.usage_moves: list[UsageMove] = []  # merges and erasures, in order
        self.claims: list[dict[str, Any]] = []
        self.pending: list[tuple[Any, str | None]] = []
        self.promoted: list[str] = []

    # -- reading ---------------------------------------------------------------------------

    async def load(
        self,
        ids: list[uuid.UUID],
        *,
        create: bool = True,
        absorbed: Sequence[uuid.UUID] = (),
        usage: Sequence[Engaged] = (),
        snapshots: Mapping[uuid.UUID, list[dict]] | None = None,
    ) -> None:
        """Lock and read the rows of `ids` (created empty first when `create`) and of the
        `absorbed` leads of merges, then the product usage of every account involved."""
        ids = sorted(set(ids))
        created: set[uuid.UUID] = set()
        if create and ids:
            created = await store.create_rows(self.session, ids)
        locked = sorted(set(ids) | set(absorbed))
        if not locked:
            return
        for row in await store.lock_rows(self.session, locked):
            lead_id = row["lead_id"]
            self.leads[lead_id] = Known(dict(row), dict(row), lead_id not in created)
        for lead_id in locked:
            if lead_id not in self.leads:  # an absorbed lead scoring never heard of
                self.leads[lead_id] = Known({}, None, False)

        accounts = await store.accounts_used_by(self.session, locked, self.since)
        if usage:
            # accounts the batch's usage may land in, whichever snapshot the lead has then
            for engaged in usage:
                known = self.leads[engaged.lead_id]
                leads = [known.row.get("lead") or {}, *(snapshots or {}).get(engaged.lead_id, [])]
                accounts.update(rules.account_of(engaged.activity, lead) for lead in leads)
            self.stored_usage = await store.stored_usage(
                self.session, [e.activity.activity_id for e in usage]
            )
        await self.load_accounts(accounts)

    async def load_accounts(self, accounts: set[str]) -> None:
        """Read the usage within the window and the PQL verdicts of accounts not read yet."""
        missing = sorted(accounts - self.loaded_accounts)
        if not missing:
            return
        self.loaded_accounts.update(missing)
        for row in await store.usage_of(self.session, missing, self.since):
            if row["activity_id"] not in self.usage:
                self._remember(Usage(**row))
        self.promoted_accounts.update(await store.promoted_among(self.session, missing))

    # -- changing --------------------------------------------------------------------------

    def _create(self, lead_id: uuid.UUID, **values: Any) -> Known:
        """The lead's row comes to be, as a new row holds it, with `values`."""
        known = self.leads[lead_id]
        known.row = {**store.NEW_ROW, "lead_id": lead_id, **values}
        known.exists = True
        return known

    async def apply(self, change: Change) -> None:
        """One event's change, then the re-score handling it alone would do."""
        match change:
            case LeadChanged():
                known = self.leads[change.lead_id]
                if not known.exists:
                    self._create(change.lead_id, lead=change.snapshot)
                elif not known.row["lead"].get("erased"):
                    # an erased lead is not filled again by an event published before its erasure
                    known.row["lead"] = change.snapshot
                if change.merged:
                    self._absorb(change.lead_id, change.merged)
                self.rescore(change.lead_id)
            case Engaged():
                known = self.leads[change.lead_id]
                if not known.exists:
                    known = self._create(change.lead_id, interactions=[change.entry])
                else:
                    known.row["interactions"] = [*known.row["interactions"], change.entry]
                if change.activity.activity_type == "product_usage":
                    await self._record_usage(change.activity, known.row["lead"])
                self.rescore(change.lead_id)
            case Erased():
                await self._erase(change.lead_id)
            case Recycled():
                known = self.leads[change.lead_id]
                if not known.exists:
                    self._create(change.lead_id, recycle_intent_tier=0, **change.values)
                else:
                    known.row.update(change.values, recycle_intent_tier=known.row["intent_tier"])
                self.rescore(change.lead_id)

    def _absorb(self, survivor: uuid.UUID, merged: tuple[uuid.UUID, ...]) -> None:
        """Two leads were one person: the survivor takes their interactions, and an MQL already
        promoted for either stays promoted once (sales got it; it is not sent again)."""
        rows = []
        for lead_id in merged:
            known = self.leads[lead_id]
            if known.exists:
                rows.append(known.row)
                known.exists = False
        if not rows:
            return
        for lead_id in merged:
            moved = self.usage_of_lead.pop(lead_id, {})
            for usage in moved.values():
                usage.lead_id = survivor
            self.usage_of_lead.setdefault(survivor, {}).update(moved)
        for activity_id, lead_id in self.stored_usage.items():
            if lead_id in merged:
                self.stored_usage[activity_id] = survivor
        self.usage_moves.append(partial(store.move_usage, ids=list(merged), survivor=survivor))
        row = self.leads[survivor].row
        row["interactions"] = [*row["interactions"], *(i for r in rows for i in r["interactions"])]
        earliest = min((r["mql_at"] for r in rows if r["mql_at"] is not None), default=None)
        if earliest is not None and row["mql_at"] is None:
            row["mql_at"] = earliest

    async def _record_usage(self, activity: LeadActivity, lead: dict) -> None:
        """Keep a product_usage activity for its account's PQL thresholds."""
        if activity.activity_id in self.stored_usage or activity.activity_id in self.new_usage:
            return  # recorded already
        props = activity.properties
        user = props.get("user_id") or props.get("user") or activity.lead_id
        feature = props.get("feature")
        usage = Usage(
            activity_id=activity.activity_id,
            lead_id=activity.lead_id,
            account=rules.account_of(activity, lead or {}),
            user_id=str(user),
            feature=str(feature) if feature not in (None, "") else None,
            occurred_at=rules.aware(activity.occurred_at),
        )
        await self.load_accounts({usage.account})
        self.new_usage[usage.activity_id] = usage
        self._remember(usage)

    def _remember(self, usage: Usage) -> None:
        self.usage[usage.activity_id] = usage
        self.usage_of_lead.setdefault(usage.lead_id, {})[usage.activity_id] = usage

    async def _erase(self, lead_id: uuid.UUID) -> None:
        """The lead's personal data goes: its snapshot keeps only what names nobody, its product
        usage (user ids, accounts as the product names them) is deleted, and its outbox rows are
        forgotten. Scores, breakdown and interactions stay; the lead is never scored again."""
        known = self.leads[lead_id]
        if not known.exists:  # erased before scoring heard of it: whatever arrives late stays inert
            self._create(lead_id, lead={"erased": True})
        elif not known.row["lead"].get("erased"):
            known.row.update(lead=without_personal_data(known.row["lead"]), next_review_at=None)
        for activity_id in self.usage_of_lead.pop(lead_id, {}):
            del self.usage[activity_id]
            self.new_usage.pop(activity_id, None)
        for activity_id in [a for a, lead in self.stored_usage.items() if lead == lead_id]:
            del self.stored_usage[activity_id]
        self.usage_moves.append(partial(store.drop_usage, lead=lead_id))
        await self.flush_events()
        await store.forget_outbox_events(self.session, lead_id)

    # -- scoring ---------------------------------------------------------------------------

    def pql_verdict(self, lead_id: uuid.UUID) -> tuple[str | None, tuple[bool, list[str]] | None]:
        """The PQL verdict of the lead's product accounts within the window: the first account
        that crosses a threshold and is not a PQL yet (with its reasons); else no account and
        the reasons of the last account that fell short; (None, None) without product usage."""
        since = self.since
        accounts = sorted(
            {
                u.account
                for u in self.usage_of_lead.get(lead_id, {}).values()
                if u.occurred_at > since
            }
            - self.promoted_accounts
        )
        verdict: tuple[str | None, tuple[bool, list[str]] | None] = (None, None)
        for account in accounts:
            in_window = [
                u for u in self.usage.values() if u.account == account and u.occurred_at > since
            ]
            features = Counter(u.feature for u in in_window if u.feature is not None)
            users = len({u.user_id for u in in_window})
            decided = rules.is_pql(rules.ProductUsage(account, dict(features), users), self.policy)
            if decided[0]:
                return account, decided
            verdict = (None, decided)
        return verdict

    def rescore(self, lead_id: uuid.UUID) -> None:
        """Score the lead at the book's `now`; a lead.scored when the score changed and a
        lead.mql when the lead is promoted wait in `pending`; plan its next review."""
        known = self.leads[lead_id]
        row = known.row
        if not known.exists or not row["lead"]:
            return  # an activity before its lead: scored when the lead arrives
        if row["lead"].get("erased"):
            return  # the person is erased: the last score stays for the reports, nothing is promoted
        policy, now = self.policy, self.now
        interactions = rules.interactions_of(row["interactions"])
        result = rules.evaluate(rules.facts_of(row["lead"], policy), interactions, now, policy)
        breakdown = [
            BreakdownItem(rule=b.rule, points=b.points, detail=b.detail) for b in result.breakdown
        ]
        changed = (result.fit, round(result.engagement, 2), result.intent_tier, result.is_mql) != (
            row["fit"],
            round(row["engagement"], 2),
            row["intent_tier"],
            row["is_mql"],
        ) or row["scored_at"] is None

        account, pql = self.pql_verdict(lead_id)
        state = rules.PromotionState(
            promoted=row["mql_at"] is not None,
            routable=row["lead"].get("routable", True),
            nurture_until=row["nurture_until"],
            recycle_intent_tier=row["recycle_intent_tier"] or 0,
        )
        kind, promotion_reasons = rules.promotion(result, pql, state, now, policy)
        if kind == "pql":
            self.promoted_accounts.add(account)
            self.claims.append({"account": account, "lead_id": lead_id, "promoted_at": now})

        review = rules.next_decay_at(interactions, now, policy)
        if result.is_mql and (lapse := rules.behaviours_lapse_at(interactions, now, policy)):
            # a required behaviour ageing out of its window ends the rule without any event
            review = min(review or lapse, lapse)
        nurture_until = row["nurture_until"]
        still_nurtured = kind is None and nurture_until is not None and now < nurture_until
        if still_nurtured:
            review = min(review or nurture_until, nurture_until)
        row.update(
            fit=result.fit,
            engagement=result.engagement,
            intent_tier=result.intent_tier,
            is_mql=result.is_mql,
            breakdown=[b.model_dump() for b in breakdown],
            reasons=list(result.mql_reasons),
            policy_version=policy.version,
            scored_at=now,
            next_review_at=review,
        )
        if kind is not None:
            row.update(mql_at=now, mql_kind=kind, nurture_until=None)
        planned = self.rt.state.get(REVIEW_PLANNED)
        if review is not None and (planned is None or review < planned):
            touch(self.session, REVIEW_TAG)

        if changed:
            scored = LeadScored(
                lead_id=lead_id,
                fit=result.fit,
                engagement=result.engagement,
                intent_tier=result.intent_tier,
                is_mql=result.is_mql,
                breakdown=breakdown,
                scored_at=now,
                reasons=list(result.mql_reasons),
            )
            self.pending.append((scored, policy.version))  # lead.scored before lead.mql
        if kind is not None:
            lead = LeadSnapshot.model_validate(row["lead"])
            mql = LeadMql(
                lead_id=lead_id,
                kind=kind,
                fit=result.fit,
                engagement=result.engagement,
                intent_tier=result.intent_tier,
                breakdown=breakdown,
                # A PQL runs on the product-led SLA whatever channel first brought the lead.
                channel="plg" if kind == "pql" else lead.source.channel,
                source=lead.source,
                company=lead.company,
                email=lead.email,
                first_name=lead.first_name,
                last_name=lead.last_name,
                title=lead.title,
                role=lead.role,
                seniority=lead.seniority,
                intent_note=lead.intent_note,
                key_activities=row["interactions"][-10:],
                promoted_at=now,
                reasons=promotion_reasons,
            )
            self.pending.append((mql, policy.version))
            self.promoted.append(kind)

    # -- writing ---------------------------------------------------------------------------

    async def flush_events(self) -> None:
        await self.rt.outbox.emit_many(self.session, self.pending)
        self.pending = []

    async def write(self) -> None:
        """Write what the replay changed: the waiting events, the score rows (absorbed ones
        deleted), the product usage and the PQL claims; count the promotions on commit."""
        await self.flush_events()
        gone = sorted(i for i, k in self.leads.items() if not k.exists and k.stored is not None)
        if gone:
            await store.delete_rows(self.session, gone)
        changed = [
            {"lead_id": lead_id, **{name: k.row[name] for name in store.SCORE_COLUMNS}}
            for lead_id, k in self.leads.items()
            if k.exists and k.row != k.stored
        ]
        if changed:
            await store.write_rows(self.session, changed)
        # merges and erasures reach the usage rows stored before this batch; the batch's own
        # rows are inserted as the replay left them
        for move in self.usage_moves:
            await move(self.session)
        if self.new_usage:
            await store.add_usage(self.session, [vars(u) for u in self.new_usage.values()])
        if self.claims:
            claimed = await store.claim_accounts(self.session, self.claims)
            if len(claimed) < len(self.claims):
                raise ClaimLost(sorted({c["account"] for c in self.claims} - claimed))
        for kind, n in Counter(self.promoted).items():
            metrics.count_on_commit(self.session, metrics.mql_promoted.labels(kind), n)


# -- use cases ---------------------------------------------------------------------------------


async def apply_events(rt: Runtime, session: AsyncSession, received: list[Received]) -> None:
    """Apply a unit of work's events (one poll batch, in arrival order) to the score rows."""
    changes = [
        change for item in received if (change := change_of(item.payload, rt.policy)) is not None
    ]
    await apply_changes(rt, session, changes)


async def apply_changes(rt: Runtime, session: AsyncSession, changes: list[Change]) -> None:
    """Apply checked changes in arrival order (see the module's docstring)."""
    if not changes:
        return
    book = ScoreBook(rt, session, rt.clock.now())
    snapshots: dict[uuid.UUID, list[dict]] = {}
    absorbed: list[uuid.UUID] = []
    usage: list[Engaged] = []
    for change in changes:
        match change:
            case LeadChanged():
                snapshots.setdefault(change.lead_id, []).append(change.snapshot)
                absorbed.extend(change.merged)
            case Engaged() if change.activity.activity_type == "product_usage":
                usage.append(change)
    await book.load(
        [change.lead_id for change in changes],
        absorbed=absorbed,
        usage=usage,
        snapshots=snapshots,
    )
    for change in changes:
        await book.apply(change)
    await book.write()


async def review_due(rt: Runtime, now: datetime | None = None, limit: int = 200) -> int:
    """Re-score leads whose next review has come (decay period passed, nurture ended), at
    most `limit` of them in one transaction; rows another instance holds are skipped."""
    now = now or rt.clock.now()
    async with rt.db.unit_of_work() as session:
        due = await store.due_for_review(session, now, limit)
        if due:
            book = ScoreBook(rt, session, now)
            await book.load(due, create=False)
            for lead_id in due:
                book.rescore(lead_id)
                row = book.leads[lead_id].row
                if row["next_review_at"] is not None and row["next_review_at"] <= now:
                    # A lead that could not be scored (no snapshot yet) waits for its next event.
                    row["next_review_at"] = None
            await book.write()
    return len(due)


async def next_review(rt: Runtime) -> datetime | None:
    async with rt.db.unit_of_work() as session:
        return await store.earliest_review(session)


async def decay_reviewer(rt: Runtime, batch: int = 200, idle_cap: float = 60.0) -> None:
    """Background loop: re-scores leads that receive no events when their score changes by
    time alone, sleeping until the earliest next review (woken by commits that plan an
    earlier one; at most `idle_cap` real seconds, for reviews planned by other instances)."""
    wake: asyncio.Event = rt.state.setdefault(REVIEW_WAKE, asyncio.Event())
    while not rt.stop:
        rt.state[REVIEW_PLANNED] = None
        wake.clear()
        if await review_due(rt, limit=batch) >= batch:
            continue
        upcoming = await next_review(rt)
        now = rt.clock.now()
        delay = idle_cap
        if upcoming is not None and upcoming <= now:
            delay = 1.0  # due, but held by another instance: it is being reviewed
        elif upcoming is not None:
            delay = min(rt.clock.real_seconds(upcoming - now), idle_cap)
        rt.state[REVIEW_PLANNED] = now + timedelta(seconds=delay * rt.clock.speed)
        await rt.stop.pause(delay, wake)


async def on_start(rt: Runtime) -> None:
    """Let commits that plan an early review wake the reviewer."""
    wake = rt.state.setdefault(REVIEW_WAKE, asyncio.Event())
    rt.db.on_commit(REVIEW_TAG, wake.set)


async def current_score(rt: Runtime, lead_id: uuid.UUID) -> LeadScore:
    """The lead's score as of its last scoring, and why; NotFound before it was scored."""
    async with rt.db.unit_of_work() as session:
        row = await store.score_of(session, lead_id)
    if row is None or row.scored_at is None:
        raise NotFound(f"lead {lead_id} has not been scored")
    return LeadScore(lead_id=lead_id, **row._asdict())
