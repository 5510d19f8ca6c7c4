"""Decides what an inbound lead or activity becomes: a new lead, an update of a known one, a
merge of two known ones, an event; and what erasing a lead leaves. One place for HTTP, batch,
Kafka and platform adapters."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from leadflow import metrics
from leadflow.contracts.erasure import forget_events, without_personal_data
from leadflow.contracts.events import (
    LeadActivity,
    LeadCreated,
    LeadErased,
    LeadSnapshot,
    LeadUpdated,
)
from leadflow.contracts.policy import Policy
from leadflow.errors import Forbidden, LeadGone, NotFound, ProblemError
from leadflow.outbox import Outbox
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from leadflow_ingest import normalise
from leadflow_ingest.models import activities, hubspot_contacts, lead_aliases, leads
from leadflow_ingest.schemas import (
    ActivityAccepted,
    ActivityIn,
    LeadAccepted,
    LeadErasure,
    LeadIn,
)

Snapshot = TypeVar("Snapshot", bound=LeadSnapshot)

# What marketing owes with every lead beyond who it is (DOMAIN.md, "Context").
CONTEXT_FIELDS = ("source.campaign", "source.lead_magnet", "intent_note")


@dataclass(frozen=True)
class Writer:
    """Who is writing: the API key (or Kafka source) and the source system it is bound to."""

    key_name: str
    source: str | None = None

    def check_source_system(self, system: str | None) -> None:
        if self.source and system and system.strip().lower() != self.source.lower():
            raise Forbidden(
                f"this key writes leads of source '{self.source}' only",
                field="source.system",
            )

    def check_owner(self, owner: str | None, field: str) -> None:
        if self.source and owner and owner.lower() != self.source.lower():
            raise Forbidden(
                f"this lead belongs to another source; this key writes '{self.source}' leads only",
                field=field,
            )


def _deep_merge(base: dict, changes: dict) -> dict:
    merged = dict(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _given_fields(body: LeadIn) -> dict[str, Any]:
    """Only what the sender set: an update that omits a field keeps what is known."""
    given = body.model_dump(mode="json", exclude_unset=True)
    extras = body.properties
    for name in extras:
        given.pop(name, None)
    given.pop("email", None)  # identity, handled by the caller
    company = given.get("company")
    if company is not None:
        if "name" in company:
            company["name"] = normalise.clean_name(company["name"])
        if "industry" in company:
            raw = company["industry"]
            company["industry"] = normalise.industry(raw)
            if company["industry"] == "other":
                company["industry_raw"] = raw
        if "country" in company:
            raw = company["country"]
            company["country"] = normalise.country_code(raw)
            if raw and company["country"] is None:
                company["country_raw"] = raw
        if company.get("domain"):
            company["domain"] = normalise.company_domain("", company["domain"])
    source = given.get("source")
    if source is not None and source.get("system"):
        source["system"] = source["system"].strip().lower()
    for name in ("first_name", "last_name", "title"):
        if name in given:
            given[name] = normalise.clean_name(given[name])
    consent = given.pop("consent", None)
    if consent is not None:
        given["consent_basis"] = consent["basis"]
    if extras:
        given["properties"] = extras
    return given


def lead_snapshot(
    lead_id: uuid.UUID,
    email: str,
    body: LeadIn,
    previous: dict | None,
    policy: Policy,
    *,
    now: datetime,
    activity_flags: set[str] = frozenset(),
    kind: type[Snapshot] = LeadSnapshot,
) -> Snapshot:
    """The lead after this input, as the payload `kind` (LeadCreated, …): the previous
    snapshot with the given fields applied, normalised, with the derived parts (domain, size
    band, flags, context) recomputed."""
    base = dict(previous or {})
    base.pop("merged_lead_ids", None)
    snapshot = _deep_merge(base, _given_fields(body))
    snapshot["lead_id"] = str(lead_id)
    snapshot["email"] = email
    snapshot["occurred_at"] = (body.occurred_at or now).isoformat()
    company = dict(snapshot.get("company") or {})
    if not company.get("domain"):
        company["domain"] = normalise.company_domain(email, None)
    company["size_band"] = normalise.size_band(company.get("employees"))
    snapshot["company"] = company
    snapshot.setdefault("consent_basis", "consent")
    snapshot["routable"] = snapshot["consent_basis"] != "none"
    negative = policy.scoring.negative
    _, email_valid = normalise.normalise_email(email)
    flags = normalise.intake_flags(
        email_valid=email_valid,
        title=snapshot.get("title"),
        email=email,
        competitor_domains=negative.competitor_domains,
        student_markers=negative.student_markers,
        job_seeker_markers=negative.job_seeker_markers,
        student_domain_suffixes=negative.student_domain_suffixes,
    )
    snapshot["flags"] = sorted(set(flags) | set(activity_flags))
    source = snapshot.get("source") or {}
    present = {
        "source.campaign": source.get("campaign"),
        "source.lead_magnet": source.get("lead_magnet"),
        "intent_note": snapshot.get("intent_note"),
    }
    snapshot["context_missing"] = [name for name in CONTEXT_FIELDS if not present[name]]
    return kind.model_validate(snapshot)


async def find_lead(session: AsyncSession, kind: str, value: str | None) -> uuid.UUID | None:
    """The live lead known by this email or external id, directly or through a merge."""
    if not value:
        return None
    column = leads.c.email if kind == "email" else leads.c.external_id
    direct = sa.select(leads.c.id.label("id")).where(column == value)
    alias = sa.select(lead_aliases.c.lead_id.label("id")).where(
        lead_aliases.c.kind == kind, lead_aliases.c.value == value
    )
    return await session.scalar(sa.union_all(direct, alias).limit(1))


def _known_by(kind: str, value: sa.BindParameter) -> list[sa.Select]:
    column = leads.c.email if kind == "email" else leads.c.external_id
    return [
        sa.select(sa.literal(kind).label("kind"), leads.c.id.label("id")).where(column == value),
        sa.select(sa.literal(kind).label("kind"), lead_aliases.c.lead_id.label("id")).where(
            lead_aliases.c.kind == kind, lead_aliases.c.value == value
        ),
    ]


# The statements of a single lead's intake are built once: building and caching a statement
# cost more per request than running it. A NULL external id matches nothing.
_EMAIL = sa.bindparam("email", type_=sa.Text)
_EXTERNAL_ID = sa.bindparam("external_id", type_=sa.Text)
_FIND = sa.union_all(*_known_by("email", _EMAIL), *_known_by("external_id", _EXTERNAL_ID))
_NOW = sa.bindparam("now", type_=leads.c.created_at.type)
_found = _FIND.cte("found")
_created = (
    insert(leads)
    .from_select(
        [
            "id",
            "email",
            "external_id",
            "source_key",
            "owner_source",
            "snapshot",
            "routable",
            "created_at",
            "updated_at",
        ],
        sa.select(
            sa.bindparam("id", type_=leads.c.id.type),
            _EMAIL,
            _EXTERNAL_ID,
            sa.bindparam("source_key", type_=sa.Text),
            sa.bindparam("owner_source", type_=sa.Text),
            sa.bindparam("snapshot", type_=leads.c.snapshot.type),
            sa.bindparam("routable", type_=sa.Boolean),
            _NOW,
            _NOW,
        ).where(~sa.exists(sa.select(_found.c.id))),
    )
    .on_conflict_do_nothing()
    .returning(leads.c.id)
    .cte("created")
)
# One round trip for a lead new to Leadflow: ("created", id) when this statement inserted it;
# otherwise the (kind, id) of each lead already known by its email or external id, as
# `find_leads` reads them, and nothing is written. Neither (a concurrent writer inserted the
# same person since the statement began): `find_leads` again.
_CREATE_UNLESS_KNOWN = sa.union_all(
    sa.select(sa.literal("created").label("kind"), _created.c.id),
    sa.select(_found.c.kind, _found.c.id),
)


def _known(rows: Iterable[sa.Row]) -> tuple[uuid.UUID | None, uuid.UUID | None]:
    found: dict[str, uuid.UUID] = {}
    for kind, lead_id in rows:
        found.setdefault(kind, lead_id)
    return found.get("email"), found.get("external_id")


async def find_leads(
    session: AsyncSession, email: str, external_id: str | None
) -> tuple[uuid.UUID | None, uuid.UUID | None]:
    """(the lead known by this email, the one known by this external id), directly or through
    a merge, in one round trip."""
    return _known(await session.execute(_FIND, {"email": email, "external_id": external_id}))


async def _activity_flags(session: AsyncSession, lead_id: uuid.UUID, policy: Policy) -> set[str]:
    pages = policy.scoring.negative.job_seeker_pages
    if not pages:
        return set()
    seen = await session.scalar(
        sa.select(
            sa.exists().where(
                activities.c.lead_id == lead_id,
                activities.c.type == "page_view",
                activities.c.page_category.in_(pages),
            )
        )
    )
    return {"job_seeker"} if seen else set()


async def _merge(session: AsyncSession, survivor: sa.Row, other: sa.Row, now: datetime) -> None:
    """Fold `other` into `survivor`: identities, aliases and activities move; `other` points on."""
    await session.execute(
        sa.update(leads)
        .where(leads.c.id == other.id)
        .values(email=None, external_id=None, merged_into=survivor.id, updated_at=now)
    )
    await session.execute(
        sa.update(lead_aliases)
        .where(lead_aliases.c.lead_id == other.id)
        .values(lead_id=survivor.id)
    )
    await session.execute(
        sa.update(leads).where(leads.c.merged_into == other.id).values(merged_into=survivor.id)
    )
    aliases = [{"kind": "email", "value": other.email}]
    if other.external_id:
        if survivor.external_id is None:
            await session.execute(
                sa.update(leads)
                .where(leads.c.id == survivor.id)
                .values(external_id=other.external_id)
            )
        else:
            aliases.append({"kind": "external_id", "value": other.external_id})
    await session.execute(
        insert(lead_aliases)
        .values([{**a, "lead_id": survivor.id, "merged_from": other.id} for a in aliases])
        .on_conflict_do_nothing()
    )
    await session.execute(
        sa.update(activities).where(activities.c.lead_id == other.id).values(lead_id=survivor.id)
    )


async def accept_lead(
    session: AsyncSession,
    outbox: Outbox,
    policy: Policy,
    body: LeadIn,
    *,
    writer: Writer,
    now: datetime,
) -> LeadAccepted:
    """Create the lead, update the one with the same email or external id, or merge the two
    leads that turn out to be one person. Raises Forbidden before writing anything."""
    email, _ = normalise.normalise_email(body.email)
    writer.check_source_system(body.source.system)
    if writer.source and not body.source.system:
        body.source.system = writer.source
    lead_id = uuid.uuid4()
    created = lead_snapshot(lead_id, email, body, None, policy, now=now, kind=LeadCreated)
    snapshot = created.model_dump(mode="json")
    found = (
        await session.execute(
            _CREATE_UNLESS_KNOWN,
            {
                "email": email,
                "external_id": body.external_id,
                "id": lead_id,
                "source_key": writer.key_name,
                "owner_source": writer.source,
                "snapshot": snapshot,
                "routable": snapshot["routable"],
                "now": now,
            },
        )
    ).all()
    if any(row.kind == "created" for row in found):
        event = await outbox.emit(session, created)
        metrics.leads_ingested.labels("created").inc()
        return LeadAccepted(lead_id=lead_id, event_id=event.id, duplicate=False)
    if found:
        by_email, by_external = _known(found)
    else:  # a concurrent request created the same person a moment ago: this is its update
        by_email, by_external = await find_leads(session, email, body.external_id)
    known = list(dict.fromkeys(i for i in (by_email, by_external) if i is not None))

    rows = (
        await session.execute(
            sa.select(leads)
            .where(leads.c.id.in_(known))
            .order_by(leads.c.created_at, leads.c.id)
            .with_for_update()
        )
    ).all()
    if any(row.erased_at is not None for row in rows):
        # erased while this input was on its way: its identities are free now, so the input
        # is new consent-bearing data and makes a new lead, never the erased one again
        return await accept_lead(session, outbox, policy, body, writer=writer, now=now)
    for row in rows:
        writer.check_owner(row.owner_source, "email" if row.id == by_email else "external_id")
    survivor, merged = rows[0], rows[1:]
    for other in merged:
        await _merge(session, survivor, other, now)
    if body.external_id and by_external is None:
        if survivor.external_id is None:
            await session.execute(
                sa.update(leads)
                .where(leads.c.id == survivor.id)
                .values(external_id=body.external_id)
            )
        else:
            await session.execute(
                insert(lead_aliases)
                .values(
                    kind="external_id",
                    value=body.external_id,
                    lead_id=survivor.id,
                    merged_from=survivor.id,
                )
                .on_conflict_do_nothing()
            )
    if by_email is None:  # known by external id under another address: keep both addresses
        await session.execute(
            insert(lead_aliases)
            .values(kind="email", value=email, lead_id=survivor.id, merged_from=survivor.id)
            .on_conflict_do_nothing()
        )
    previous = survivor.snapshot
    snapshot = lead_snapshot(
        survivor.id,
        survivor.email or email,
        body,
        previous,
        policy,
        now=now,
        activity_flags=await _activity_flags(session, survivor.id, policy),
    ).model_dump(mode="json")
    await session.execute(
        sa.update(leads)
        .where(leads.c.id == survivor.id)
        .values(snapshot=snapshot, routable=snapshot["routable"], updated_at=now)
    )
    payload = LeadUpdated.model_validate(
        {**snapshot, "merged_lead_ids": [str(o.id) for o in merged]}
    )
    event = await outbox.emit(session, payload)
    metrics.leads_ingested.labels("merged" if merged else "updated").inc()
    return LeadAccepted(lead_id=survivor.id, event_id=event.id, duplicate=True)


async def accept_activity(
    session: AsyncSession,
    outbox: Outbox,
    policy: Policy,
    body: ActivityIn,
    *,
    writer: Writer,
    now: datetime,
) -> ActivityAccepted:
    if body.lead_id is not None:
        lead_id = await session.scalar(
            sa.select(sa.func.coalesce(leads.c.merged_into, leads.c.id)).where(
                leads.c.id == body.lead_id
            )
        )
    else:
        email, _ = normalise.normalise_email(body.email or "")
        lead_id = await find_lead(session, "email", email)
    if lead_id is None:
        field = "lead_id" if body.lead_id is not None else "email"
        raise NotFound("no lead with this lead_id or email; send the lead first", field=field)
    lead = (
        await session.execute(sa.select(leads).where(leads.c.id == lead_id).with_for_update())
    ).one()
    if lead.erased_at is not None:
        raise LeadGone(lead_id, field="lead_id")
    writer.check_owner(lead.owner_source, "lead_id" if body.lead_id is not None else "email")
    activity_id = uuid.uuid4()
    occurred_at = body.occurred_at or now
    await session.execute(
        sa.insert(activities).values(
            id=activity_id,
            lead_id=lead_id,
            type=body.type,
            page_category=body.page_category,
            occurred_at=occurred_at,
            properties=body.properties,
        )
    )
    event = await outbox.emit(
        session,
        LeadActivity(
            lead_id=lead_id,
            activity_id=activity_id,
            activity_type=body.type,
            page_category=body.page_category,
            occurred_at=occurred_at,
            properties=body.properties,
        ),
    )
    pages = policy.scoring.negative.job_seeker_pages
    flags = lead.snapshot.get("flags") or []
    if body.type == "page_view" and body.page_category in pages and "job_seeker" not in flags:
        # a careers-page visit marks a job seeker: the lead changes, so say so
        snapshot = {**lead.snapshot, "flags": sorted({*flags, "job_seeker"}), "occurred_at": now}
        snapshot = LeadSnapshot.model_validate(snapshot).model_dump(mode="json")
        await session.execute(
            sa.update(leads).where(leads.c.id == lead_id).values(snapshot=snapshot, updated_at=now)
        )
        await outbox.emit(session, LeadUpdated.model_validate(snapshot))
    return ActivityAccepted(activity_id=activity_id, lead_id=lead_id, event_id=event.id)


async def accept_leads(
    session: AsyncSession,
    outbox: Outbox,
    policy: Policy,
    bodies: list[LeadIn],
    *,
    writer: Writer,
    now: datetime,
) -> list[LeadAccepted | ProblemError]:
    """Many leads in one transaction, one result per body in order (a refusal in its place).

    Leads that are new to Leadflow and to the rest of the batch (their email and external id
    known nowhere and given once) are written together: one lookup, one multi-row insert, one
    outbox insert. The others (updates, merges, repeats within the batch) then go one by one
    through `accept_lead`, each in a savepoint so that one refusal leaves the rest."""
    results: list[LeadAccepted | ProblemError | None] = [None] * len(bodies)
    emails: list[str] = []
    for index, body in enumerate(bodies):
        emails.append(normalise.normalise_email(body.email)[0])
        try:
            writer.check_source_system(body.source.system)
        except ProblemError as exc:
            results[index] = exc
    seen_emails = Counter(e for i, e in enumerate(emails) if results[i] is None)
    seen_external = Counter(
        b.external_id for i, b in enumerate(bodies) if results[i] is None and b.external_id
    )
    known_emails, known_external = await _known_identities(
        session, list(seen_emails), list(seen_external)
    )
    fresh = [
        i
        for i, body in enumerate(bodies)
        if results[i] is None
        and seen_emails[emails[i]] == 1
        and emails[i] not in known_emails
        and (
            not body.external_id
            or (seen_external[body.external_id] == 1 and body.external_id not in known_external)
        )
    ]
    if fresh:
        rows: dict[uuid.UUID, tuple[int, dict]] = {}
        payloads: dict[uuid.UUID, LeadCreated] = {}
        for i in fresh:
            body = bodies[i]
            if writer.source and not body.source.system:
                body.source.system = writer.source
            lead_id = uuid.uuid4()
            payloads[lead_id] = lead_snapshot(
                lead_id, emails[i], body, None, policy, now=now, kind=LeadCreated
            )
            rows[lead_id] = (i, payloads[lead_id].model_dump(mode="json"))
        inserted = set(
            (
                await session.scalars(
                    insert(leads)
                    .values(
                        [
                            {
                                "id": lead_id,
                                "email": emails[i],
                                "external_id": bodies[i].external_id,
                                "source_key": writer.key_name,
                                "owner_source": writer.source,
                                "snapshot": snapshot,
                                "routable": snapshot["routable"],
                                "created_at": now,
                                "updated_at": now,
                            }
                            for lead_id, (i, snapshot) in rows.items()
                        ]
                    )
                    .on_conflict_do_nothing()
                    .returning(leads.c.id)
                )
            ).all()
        )
        # the rest raced another writer
        created = [(lead_id, i) for lead_id, (i, _) in rows.items() if lead_id in inserted]
        events = await outbox.emit_many(
            session, [(payloads[lead_id], None) for lead_id, _ in created]
        )
        for (lead_id, i), event in zip(created, events, strict=True):
            results[i] = LeadAccepted(lead_id=lead_id, event_id=event.id, duplicate=False)
        if created:
            metrics.leads_ingested.labels("created").inc(len(created))
    for index, body in enumerate(bodies):
        if results[index] is not None:
            continue
        try:
            async with session.begin_nested():
                results[index] = await accept_lead(
                    session, outbox, policy, body, writer=writer, now=now
                )
        except ProblemError as exc:
            results[index] = exc
    return results  # type: ignore[return-value]  # every slot is filled above


async def _known_identities(
    session: AsyncSession, emails: list[str], external_ids: list[str]
) -> tuple[set[str], set[str]]:
    """Which of these emails and external ids a lead already has, directly or by a merge."""
    known_emails: set[str] = set()
    known_external: set[str] = set()
    if emails:
        known_emails.update(
            await session.scalars(sa.select(leads.c.email).where(leads.c.email.in_(emails)))
        )
        known_emails.update(
            await session.scalars(
                sa.select(lead_aliases.c.value).where(
                    lead_aliases.c.kind == "email", lead_aliases.c.value.in_(emails)
                )
            )
        )
    if external_ids:
        known_external.update(
            await session.scalars(
                sa.select(leads.c.external_id).where(leads.c.external_id.in_(external_ids))
            )
        )
        known_external.update(
            await session.scalars(
                sa.select(lead_aliases.c.value).where(
                    lead_aliases.c.kind == "external_id", lead_aliases.c.value.in_(external_ids)
                )
            )
        )
    return known_emails, known_external


async def erase_lead(
    session: AsyncSession, outbox: Outbox, lead_id: uuid.UUID, *, now: datetime
) -> LeadErasure:
    """Erase the person behind `lead_id`: the lead it was merged into (if any) and every lead
    merged into that one lose their personal data, identities and activity properties, and
    each emits `lead.erased` once. What reports need stays (ids, times, channel, scores' inputs
    without names). Erasing again changes nothing and answers the same."""
    row = (
        await session.execute(
            sa.select(leads.c.id, leads.c.merged_into).where(leads.c.id == lead_id)
        )
    ).first()
    if row is None:
        raise NotFound(f"lead {lead_id} not found", field="lead_id")
    survivor_id = row.merged_into or row.id
    group = (
        await session.execute(
            sa.select(leads)
            .where(sa.or_(leads.c.id == survivor_id, leads.c.merged_into == survivor_id))
            .order_by(leads.c.created_at, leads.c.id)
            .with_for_update()
        )
    ).all()
    survivor = next(r for r in group if r.id == survivor_id)
    ids = [r.id for r in group]
    erased_at = survivor.erased_at
    if erased_at is None:
        erased_at = now
        for member in group:
            await session.execute(
                sa.update(leads)
                .where(leads.c.id == member.id)
                .values(
                    email=None,
                    external_id=None,
                    snapshot=without_personal_data(member.snapshot),
                    erased_at=now,
                    updated_at=now,
                )
            )
        await session.execute(sa.delete(lead_aliases).where(lead_aliases.c.lead_id.in_(ids)))
        # the addresses this process checked lately are kept for its next requests: forget
        # them all (the erased person's may be there under any spelling)
        normalise.normalise_email.cache_clear()
        await session.execute(
            sa.update(activities).where(activities.c.lead_id.in_(ids)).values(properties={})
        )
        await session.execute(
            sa.delete(hubspot_contacts).where(hubspot_contacts.c.lead_id.in_(ids))
        )
        await forget_events(session, outbox.table, ids)
        await outbox.emit_many(session, [(LeadErased(lead_id=i), None) for i in ids])
    return LeadErasure(lead_id=survivor_id, erased_lead_ids=ids, erased_at=erased_at)
