"""Decides what an inbound lead or activity becomes: a new lead, an update of a known one, an event."""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from leadflow import metrics
from leadflow.errors import NotFound
from leadflow.events import LeadActivity, LeadCompany, LeadCreated, LeadSource, LeadUpdated
from leadflow.outbox import Outbox
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from leadflow_ingest import normalise
from leadflow_ingest.models import activities, leads
from leadflow_ingest.schemas import ActivityAccepted, ActivityIn, LeadAccepted, LeadIn


def snapshot_of(lead_id: uuid.UUID, body: LeadIn, now: datetime) -> dict:
    email, valid = normalise.normalise_email(body.email)
    company = body.company
    snapshot = {
        "lead_id": lead_id,
        "email": email,
        "external_id": body.external_id,
        "first_name": normalise.clean_name(body.first_name),
        "last_name": normalise.clean_name(body.last_name),
        "phone": body.phone,
        "title": normalise.clean_name(body.title),
        "role": body.role,
        "seniority": body.seniority,
        "company": LeadCompany(
            name=normalise.clean_name(company.name),
            domain=normalise.company_domain(email, company.domain),
            industry=(company.industry or "").strip().lower().replace(" ", "_") or None,
            employees=company.employees,
            size_band=normalise.size_band(company.employees),
            country=(company.country or "").strip().upper() or None,
            region=company.region,
            tech_stack=company.tech_stack,
        ),
        "source": LeadSource.model_validate(body.source.model_dump()),
        "consent_basis": body.consent.basis,
        "routable": body.consent.basis != "none",
        "intent_tier": body.intent_tier,
        "intent_note": body.intent_note,
        "flags": normalise.intake_flags(email_valid=valid, title=body.title, email=email),
        "occurred_at": body.occurred_at or now,
    }
    if body.properties:
        snapshot["properties"] = body.properties
    return snapshot


async def accept_lead(
    session: AsyncSession, outbox: Outbox, body: LeadIn, *, source_key: str, now: datetime
) -> LeadAccepted:
    """Create the lead, or update the one with the same email or external id."""
    email, _ = normalise.normalise_email(body.email)
    match = (
        sa.or_(leads.c.email == email, leads.c.external_id == body.external_id)
        if body.external_id
        else leads.c.email == email
    )
    existing = (
        await session.execute(sa.select(leads.c.id).where(match).with_for_update())
    ).scalar_one_or_none()
    if existing is None:
        lead_id = uuid.uuid4()
        payload = LeadCreated(**snapshot_of(lead_id, body, now))
        inserted = await session.scalar(
            insert(leads)
            .values(
                id=lead_id,
                email=email,
                external_id=body.external_id,
                source_key=source_key,
                snapshot=payload.model_dump(mode="json"),
                routable=payload.routable,
                created_at=now,
                updated_at=now,
            )
            .on_conflict_do_nothing()
            .returning(leads.c.id)
        )
        if inserted is not None:
            event = await outbox.emit(session, payload)
            metrics.leads_ingested.labels("created").inc()
            return LeadAccepted(lead_id=lead_id, event_id=event.id, duplicate=False)
        # a concurrent request created the same person a moment ago: treat this as its update
        existing = (await session.execute(sa.select(leads.c.id).where(match))).scalar_one()
    payload = LeadUpdated(**snapshot_of(existing, body, now))
    await session.execute(
        sa.update(leads)
        .where(leads.c.id == existing)
        .values(
            snapshot=payload.model_dump(mode="json"),
            routable=payload.routable,
            updated_at=now,
            external_id=sa.func.coalesce(leads.c.external_id, body.external_id),
        )
    )
    event = await outbox.emit(session, payload)
    metrics.leads_ingested.labels("updated").inc()
    return LeadAccepted(lead_id=existing, event_id=event.id, duplicate=True)


async def accept_activity(
    session: AsyncSession, outbox: Outbox, body: ActivityIn, *, now: datetime
) -> ActivityAccepted:
    if body.lead_id is not None:
        lead_id = await session.scalar(sa.select(leads.c.id).where(leads.c.id == body.lead_id))
    else:
        email, _ = normalise.normalise_email(body.email or "")
        lead_id = await session.scalar(sa.select(leads.c.id).where(leads.c.email == email))
    if lead_id is None:
        raise NotFound("no lead with this lead_id or email; send the lead first", field="lead_id")
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
    return ActivityAccepted(activity_id=activity_id, lead_id=lead_id, event_id=event.id)
