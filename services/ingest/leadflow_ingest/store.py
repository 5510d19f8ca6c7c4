"""All of ingest's SQL: leads found and created by their identities, merged and erased; activities;
the HubSpot events seen and the contacts assembled from them; the lead as the API shows it; what
sales tools reported back and the CRM records linked to leads."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any, NamedTuple

import sqlalchemy as sa
from leadflow.db import ManyRows
from leadflow.paging import Listing, PageRequest
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from leadflow_ingest.domain.identity import Identities
from leadflow_ingest.models import (
    activities,
    crm_links,
    hubspot_contacts,
    hubspot_events,
    lead_aliases,
    leads,
    sales_reports,
)


class KnownLeads(NamedTuple):
    """The lead known by an email, and the one known by an external id (directly or through a
    merge); the same lead twice when both name it."""

    by_email: uuid.UUID | None
    by_external_id: uuid.UUID | None


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


def _known(rows: Iterable[sa.Row]) -> KnownLeads:
    found: dict[str, uuid.UUID] = {}
    for kind, lead_id in rows:
        found.setdefault(kind, lead_id)
    return KnownLeads(found.get("email"), found.get("external_id"))


async def create_unless_known(
    session: AsyncSession,
    *,
    lead_id: uuid.UUID,
    email: str,
    external_id: str | None,
    source_key: str,
    owner_source: str | None,
    snapshot: dict[str, Any],
    now: datetime,
) -> KnownLeads | None:
    """None when this inserted the lead; otherwise the leads already known by its email or
    external id (both None: a concurrent writer inserted the same person meanwhile)."""
    rows = (
        await session.execute(
            _CREATE_UNLESS_KNOWN,
            {
                "email": email,
                "external_id": external_id,
                "id": lead_id,
                "source_key": source_key,
                "owner_source": owner_source,
                "snapshot": snapshot,
                "routable": snapshot["routable"],
                "now": now,
            },
        )
    ).all()
    if any(row.kind == "created" for row in rows):
        return None
    return _known(rows)


async def find_leads(session: AsyncSession, email: str, external_id: str | None) -> KnownLeads:
    """(the lead known by this email, the one known by this external id), directly or through
    a merge, in one round trip."""
    return _known(await session.execute(_FIND, {"email": email, "external_id": external_id}))


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


async def live_lead_id(session: AsyncSession, lead_id: uuid.UUID) -> uuid.UUID | None:
    """The lead this id lives on as: itself, or the lead it was merged into; None if unknown."""
    return await session.scalar(
        sa.select(sa.func.coalesce(leads.c.merged_into, leads.c.id)).where(leads.c.id == lead_id)
    )


async def lock_leads(session: AsyncSession, ids: list[uuid.UUID]) -> list[sa.Row]:
    """These leads, locked, oldest first: every writer locks in this order, and the oldest
    survives a merge."""
    return list(
        (
            await session.execute(
                sa.select(leads)
                .where(leads.c.id.in_(ids))
                .order_by(leads.c.created_at, leads.c.id)
                .with_for_update()
            )
        ).all()
    )


async def lock_lead(session: AsyncSession, lead_id: uuid.UUID) -> sa.Row:
    return (
        await session.execute(sa.select(leads).where(leads.c.id == lead_id).with_for_update())
    ).one()


async def merge_lead(
    session: AsyncSession, survivor_id: uuid.UUID, other_id: uuid.UUID, *, now: datetime
) -> None:
    """Fold `other` into the survivor: its aliases, the leads merged into it and its activities
    move; it gives up its identities and points on."""
    await session.execute(
        sa.update(leads)
        .where(leads.c.id == other_id)
        .values(email=None, external_id=None, merged_into=survivor_id, updated_at=now)
    )
    await session.execute(
        sa.update(lead_aliases)
        .where(lead_aliases.c.lead_id == other_id)
        .values(lead_id=survivor_id)
    )
    await session.execute(
        sa.update(leads).where(leads.c.merged_into == other_id).values(merged_into=survivor_id)
    )
    await session.execute(
        sa.update(activities).where(activities.c.lead_id == other_id).values(lead_id=survivor_id)
    )


async def add_identities(
    session: AsyncSession, lead_id: uuid.UUID, identities: Identities, *, merged_from: uuid.UUID
) -> None:
    if identities.external_id is not None:
        await session.execute(
            sa.update(leads).where(leads.c.id == lead_id).values(external_id=identities.external_id)
        )
    if identities.aliases:
        await session.execute(
            insert(lead_aliases)
            .values(
                [
                    {"kind": kind, "value": value, "lead_id": lead_id, "merged_from": merged_from}
                    for kind, value in identities.aliases
                ]
            )
            .on_conflict_do_nothing()
        )


async def viewed_pages(session: AsyncSession, lead_id: uuid.UUID, pages: Iterable[str]) -> bool:
    """Whether the lead viewed a page of one of these categories."""
    return bool(
        await session.scalar(
            sa.select(
                sa.exists().where(
                    activities.c.lead_id == lead_id,
                    activities.c.type == "page_view",
                    activities.c.page_category.in_(pages),
                )
            )
        )
    )


async def save_snapshot(
    session: AsyncSession, lead_id: uuid.UUID, snapshot: dict[str, Any], *, now: datetime
) -> None:
    await session.execute(
        sa.update(leads)
        .where(leads.c.id == lead_id)
        .values(snapshot=snapshot, routable=snapshot["routable"], updated_at=now)
    )


async def add_activity(
    session: AsyncSession,
    *,
    activity_id: uuid.UUID,
    lead_id: uuid.UUID,
    activity_type: str,
    page_category: str | None,
    occurred_at: datetime,
    properties: dict[str, Any],
) -> None:
    await session.execute(
        sa.insert(activities).values(
            id=activity_id,
            lead_id=lead_id,
            type=activity_type,
            page_category=page_category,
            occurred_at=occurred_at,
            properties=properties,
        )
    )


async def known_identities(
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


async def insert_new_leads(session: AsyncSession, rows: list[dict[str, Any]]) -> set[uuid.UUID]:
    """Insert these leads: one lead (a single POST) with a plain INSERT, more with one ManyRows
    statement over arrays (one statement text whatever the batch's size); the ids of those
    inserted (the rest raced another writer to their email or external id)."""
    if len(rows) == 1:
        return set((await session.scalars(_INSERT_NEW_LEAD, rows[0])).all())
    return set((await session.scalars(_INSERT_NEW_LEADS, _new_leads.params(rows))).all())


_INSERT_NEW_LEAD = insert(leads).on_conflict_do_nothing().returning(leads.c.id)
_new_leads = ManyRows(
    leads,
    ["id", "email", "external_id", "source_key", "owner_source", "snapshot", "routable",
     "created_at", "updated_at"],
)  # fmt: skip
_INSERT_NEW_LEADS = _new_leads.insert().on_conflict_do_nothing().returning(leads.c.id)


async def lead_shown(session: AsyncSession, lead_id: uuid.UUID) -> sa.Row | None:
    return (
        await session.execute(
            sa.select(
                leads.c.snapshot,
                leads.c.created_at,
                leads.c.updated_at,
                leads.c.merged_into,
                leads.c.erased_at,
            ).where(leads.c.id == lead_id)
        )
    ).first()


async def lock_person(session: AsyncSession, survivor_id: uuid.UUID) -> list[sa.Row]:
    """The survivor of a merge and every lead merged into it, locked, oldest first."""
    return list(
        (
            await session.execute(
                sa.select(leads)
                .where(sa.or_(leads.c.id == survivor_id, leads.c.merged_into == survivor_id))
                .order_by(leads.c.created_at, leads.c.id)
                .with_for_update()
            )
        ).all()
    )


async def erase_leads(
    session: AsyncSession, remaining: dict[uuid.UUID, dict[str, Any]], *, now: datetime
) -> None:
    """Erase these leads: each keeps the snapshot given (what reports need); identities,
    aliases, activity properties and HubSpot contacts go."""
    ids = list(remaining)
    for lead_id, snapshot in remaining.items():
        await session.execute(
            sa.update(leads)
            .where(leads.c.id == lead_id)
            .values(email=None, external_id=None, snapshot=snapshot, erased_at=now, updated_at=now)
        )
    await session.execute(sa.delete(lead_aliases).where(lead_aliases.c.lead_id.in_(ids)))
    await session.execute(
        sa.update(activities).where(activities.c.lead_id.in_(ids)).values(properties={})
    )
    await session.execute(sa.delete(hubspot_contacts).where(hubspot_contacts.c.lead_id.in_(ids)))


async def first_hubspot_event(
    session: AsyncSession, portal_id: int, event_id: int, *, now: datetime
) -> bool:
    """Record a HubSpot event; False when it was seen before (HubSpot retries)."""
    fresh = await session.scalar(
        insert(hubspot_events)
        .values(portal_id=portal_id, event_id=event_id, received_at=now)
        .on_conflict_do_nothing()
        .returning(hubspot_events.c.event_id)
    )
    return fresh is not None


def _contact(portal_id: int, object_id: int) -> sa.ColumnElement[bool]:
    return sa.and_(
        hubspot_contacts.c.portal_id == portal_id, hubspot_contacts.c.object_id == object_id
    )


async def lock_contact_properties(
    session: AsyncSession, portal_id: int, object_id: int
) -> dict[str, dict]:
    """The contact's properties so far (none when it is new), locked until the transaction ends."""
    row = (
        await session.execute(
            sa.select(hubspot_contacts.c.properties)
            .where(_contact(portal_id, object_id))
            .with_for_update()
        )
    ).first()
    return dict(row.properties) if row else {}


async def save_contact_properties(
    session: AsyncSession,
    portal_id: int,
    object_id: int,
    properties: dict[str, dict],
    *,
    now: datetime,
) -> None:
    await session.execute(
        insert(hubspot_contacts)
        .values(portal_id=portal_id, object_id=object_id, properties=properties, updated_at=now)
        .on_conflict_do_update(
            index_elements=[hubspot_contacts.c.portal_id, hubspot_contacts.c.object_id],
            set_={"properties": properties, "updated_at": now},
        )
    )


async def contact_properties(
    session: AsyncSession, portal_id: int, object_id: int
) -> dict[str, dict]:
    return await session.scalar(
        sa.select(hubspot_contacts.c.properties).where(_contact(portal_id, object_id))
    )


async def link_contact(
    session: AsyncSession, portal_id: int, object_id: int, lead_id: uuid.UUID
) -> None:
    await session.execute(
        sa.update(hubspot_contacts).where(_contact(portal_id, object_id)).values(lead_id=lead_id)
    )


async def contact_property_names(
    session: AsyncSession, keys: list[tuple[int, int]]
) -> dict[tuple[int, int], set[str]]:
    """Which properties Leadflow knows of each of these (portal, contact), known ones only."""
    if not keys:
        return {}
    rows = await session.execute(
        sa.select(
            hubspot_contacts.c.portal_id,
            hubspot_contacts.c.object_id,
            hubspot_contacts.c.properties,
        ).where(sa.tuple_(hubspot_contacts.c.portal_id, hubspot_contacts.c.object_id).in_(keys))
    )
    return {(row.portal_id, row.object_id): set(row.properties) for row in rows}


# --- what sales tools report back ----------------------------------------------------------


async def first_sales_report(
    session: AsyncSession,
    system: str,
    record_id: str,
    *,
    lead_id: uuid.UUID | None,
    kind: str,
    now: datetime,
) -> bool:
    """Record a sales tool's report of one record; False when that record was reported before
    (the same change delivered again, under any delivery id)."""
    fresh = await session.scalar(
        insert(sales_reports)
        .values(system=system, record_id=record_id, lead_id=lead_id, kind=kind, received_at=now)
        .on_conflict_do_nothing()
        .returning(sales_reports.c.record_id)
    )
    return fresh is not None


async def link_crm_record(
    session: AsyncSession,
    system: str,
    object_type: str,
    object_id: str,
    lead_id: uuid.UUID,
    *,
    now: datetime,
) -> None:
    """The lead's record in a CRM; a record linked again is the lead linked last."""
    await session.execute(
        insert(crm_links)
        .values(
            system=system, object_type=object_type, object_id=object_id, lead_id=lead_id,
            linked_at=now,
        )
        .on_conflict_do_update(
            index_elements=[crm_links.c.system, crm_links.c.object_id],
            set_={"object_type": object_type, "lead_id": lead_id, "linked_at": now},
        )
    )  # fmt: skip


async def crm_linked_lead(session: AsyncSession, system: str, object_id: str) -> uuid.UUID | None:
    return await session.scalar(
        sa.select(crm_links.c.lead_id).where(
            crm_links.c.system == system, crm_links.c.object_id == object_id
        )
    )


async def hubspot_contact_lead(
    session: AsyncSession, portal_id: int, object_id: int
) -> uuid.UUID | None:
    """The lead a HubSpot contact became at intake."""
    return await session.scalar(
        sa.select(hubspot_contacts.c.lead_id).where(_contact(portal_id, object_id))
    )


async def lead_alive(session: AsyncSession, lead_id: uuid.UUID) -> uuid.UUID | None:
    """The live lead this id lives on as (itself, or the lead it was merged into), unless it
    was erased; None otherwise."""
    live = await live_lead_id(session, lead_id)
    if live is None:
        return None
    erased = await session.scalar(sa.select(leads.c.erased_at).where(leads.c.id == live))
    return None if erased is not None else live


async def forget_crm_links(session: AsyncSession, lead_ids: list[uuid.UUID]) -> None:
    """An erased lead's CRM records are no longer its: what they report matches no lead."""
    await session.execute(sa.delete(crm_links).where(crm_links.c.lead_id.in_(lead_ids)))


# --- search: leads by e-mail, name, company or id (leadflow.paging) -----------------------

LEADS = Listing(
    name="leads",
    key=leads.c.id,
    sorts={"created_at": leads.c.created_at, "updated_at": leads.c.updated_at},
    default_sort="-created_at",
    filters={"routable": (leads.c.routable, bool)},
)


def _contains(text: str) -> str:
    """An ILIKE pattern finding `text` anywhere, its own wildcards taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def search_leads(session: AsyncSession, wanted: PageRequest, text: str) -> list[sa.Row]:
    """Live leads (neither merged nor erased) whose e-mail (or one of a lead merged into it),
    name or company name holds `text` (any case), or whose id or external id is `text`."""
    pattern = _contains(text)
    snapshot = leads.c.snapshot
    name = sa.func.concat_ws(" ", snapshot["first_name"].astext, snapshot["last_name"].astext)
    found = [
        leads.c.email.ilike(pattern, escape="\\"),
        name.ilike(pattern, escape="\\"),
        snapshot["company"]["name"].astext.ilike(pattern, escape="\\"),
        leads.c.external_id == text,
        # an e-mail or external id of a lead merged into this one
        leads.c.id.in_(
            sa.select(lead_aliases.c.lead_id).where(
                sa.or_(
                    sa.and_(lead_aliases.c.kind == "email",
                            lead_aliases.c.value.ilike(pattern, escape="\\")),
                    sa.and_(lead_aliases.c.kind == "external_id", lead_aliases.c.value == text),
                )
            )
        ),
    ]  # fmt: skip
    try:
        found.append(leads.c.id == uuid.UUID(text))
    except ValueError:
        pass
    query = sa.select(leads.c.snapshot, leads.c.created_at, leads.c.updated_at).where(
        leads.c.merged_into.is_(None), leads.c.erased_at.is_(None), sa.or_(*found)
    )
    return list((await session.execute(wanted.select(query))).all())
