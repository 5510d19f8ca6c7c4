"""What an inbound lead or activity becomes: a new lead, an update of a known one, a merge of two
known ones, an event; what erasing a lead leaves; how HubSpot's contact events become leads
(reading from HubSpot's CRM API the contacts whose events carry too little); how what sales
tools report back (HubSpot's status properties and logged activities, Salesforce's Outbound
Messages, generic signed webhooks) becomes `lead.sales_reported`, each record once. One place
for HTTP, batch, Kafka and platform adapters."""

from __future__ import annotations

import logging
import os
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from leadflow import audit, metrics
from leadflow.consumer import Received, Reject
from leadflow.contracts.connectors import (
    Connectors,
    ConnectorsError,
    HubSpotInbound,
    load_connectors,
)
from leadflow.contracts.erasure import forget_events, without_personal_data
from leadflow.contracts.events import (
    LeadActivity,
    LeadCreated,
    LeadCrmLinked,
    LeadErased,
    LeadSalesReported,
    LeadUpdated,
)
from leadflow.contracts.policy import Policy
from leadflow.contracts.yaml_lines import Lines, lines_of_text
from leadflow.errors import Forbidden, LeadGone, NotFound, ProblemError, validation_errors
from leadflow.outbox import Outbox
from leadflow.paging import Page, PageRequest
from leadflow.publications import CURRENT_CONNECTORS
from leadflow.service import Runtime
from leadflow.settings import Settings
from pydantic import SecretStr, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from leadflow_ingest import store
from leadflow_ingest.domain import hubspot, normalise, salesforce
from leadflow_ingest.domain import sales_reports as reports
from leadflow_ingest.domain.hubspot_mapping import (
    DEFAULT_MAPPING,
    HubSpotMapping,
    MappingError,
    mapping_from_yaml,
)
from leadflow_ingest.domain.identity import merged_identities, new_identities
from leadflow_ingest.domain.ownership import Writer
from leadflow_ingest.domain.snapshot import (
    JOB_SEEKER,
    lead_snapshot,
    marks_job_seeker,
    with_job_seeker,
)
from leadflow_ingest.hubspot_crm import (
    ContactRead,
    EngagementRead,
    HubSpotCrm,
    HubSpotTokenUnreadable,
)
from leadflow_ingest.schemas import (
    ActivityAccepted,
    ActivityIn,
    BatchItemResult,
    BatchResult,
    FieldError,
    HubSpotContactResult,
    HubSpotEvent,
    HubSpotWebhookResult,
    LeadAccepted,
    LeadErasure,
    LeadIn,
    LeadView,
    SalesReportsAccepted,
    decoded_json,
)

log = logging.getLogger(__name__)


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
    known = await store.create_unless_known(
        session,
        lead_id=lead_id,
        email=email,
        external_id=body.external_id,
        source_key=writer.key_name,
        owner_source=writer.source,
        snapshot=created.model_dump(mode="json"),
        now=now,
    )
    if known is None:
        event = await outbox.emit(session, created)
        metrics.leads_ingested.labels("created").inc()
        return LeadAccepted(lead_id=lead_id, event_id=event.id, duplicate=False)
    by_email, by_external = known
    if by_email is None and by_external is None:
        # a concurrent request created the same person a moment ago: this is its update
        by_email, by_external = await store.find_leads(session, email, body.external_id)
    rows = await store.lock_leads(
        session, list(dict.fromkeys(i for i in (by_email, by_external) if i is not None))
    )
    if any(row.erased_at is not None for row in rows):
        # erased while this input was on its way: its identities are free now, so the input
        # is new consent-bearing data and makes a new lead, never the erased one again
        return await accept_lead(session, outbox, policy, body, writer=writer, now=now)
    for row in rows:
        writer.check_owner(row.owner_source, "email" if row.id == by_email else "external_id")
    survivor, merged = rows[0], rows[1:]  # the oldest survives
    for other in merged:
        await store.merge_lead(session, survivor.id, other.id, now=now)
        await store.add_identities(
            session,
            survivor.id,
            merged_identities(survivor.external_id, other.email, other.external_id),
            merged_from=other.id,
        )
    await store.add_identities(
        session,
        survivor.id,
        new_identities(
            survivor.external_id,
            email,
            body.external_id,
            known_by_email=by_email is not None,
            known_by_external_id=by_external is not None,
        ),
        merged_from=survivor.id,
    )
    pages = policy.scoring.negative.job_seeker_pages
    seen = bool(pages) and await store.viewed_pages(session, survivor.id, pages)
    snapshot = lead_snapshot(
        survivor.id,
        survivor.email or email,
        body,
        survivor.snapshot,
        policy,
        now=now,
        activity_flags={JOB_SEEKER} if seen else frozenset(),
    ).model_dump(mode="json")
    await store.save_snapshot(session, survivor.id, snapshot, now=now)
    payload = LeadUpdated.model_validate(
        {**snapshot, "merged_lead_ids": [str(o.id) for o in merged]}
    )
    event = await outbox.emit(session, payload)
    metrics.leads_ingested.labels("merged" if merged else "updated").inc()
    return LeadAccepted(lead_id=survivor.id, event_id=event.id, duplicate=True)


async def accept_published_lead(
    session: AsyncSession,
    outbox: Outbox,
    policy: Policy,
    value: bytes | None,
    key: bytes | None,
    *,
    now: datetime,
) -> LeadAccepted:
    """A lead a platform published to `leads.inbound` (the record's value and key): the same
    intake as over HTTP, written by `kafka:<key>`. A record that is not a valid lead is
    dead-lettered."""
    try:
        body = LeadIn.model_validate(orjson.loads(value or b""))
    except (ValidationError, orjson.JSONDecodeError, TypeError) as exc:
        raise Reject(f"invalid lead payload: {exc}") from exc
    source = (key or b"kafka").decode(errors="replace")
    return await accept_lead(
        session, outbox, policy, body, writer=Writer(key_name=f"kafka:{source}"), now=now
    )


async def accept_activity(
    session: AsyncSession,
    outbox: Outbox,
    policy: Policy,
    body: ActivityIn,
    *,
    writer: Writer,
    now: datetime,
) -> ActivityAccepted:
    """Record an activity of a known lead (by id, or by email); a careers-page visit also
    marks the lead a job seeker, which changes it."""
    if body.lead_id is not None:
        lead_id = await store.live_lead_id(session, body.lead_id)
    else:
        email, _ = normalise.normalise_email(body.email or "")
        lead_id = await store.find_lead(session, "email", email)
    if lead_id is None:
        field = "lead_id" if body.lead_id is not None else "email"
        raise NotFound("no lead with this lead_id or email; send the lead first", field=field)
    lead = await store.lock_lead(session, lead_id)
    if lead.erased_at is not None:
        raise LeadGone(lead_id, field="lead_id")
    writer.check_owner(lead.owner_source, "lead_id" if body.lead_id is not None else "email")
    activity_id = uuid.uuid4()
    occurred_at = body.occurred_at or now
    await store.add_activity(
        session,
        activity_id=activity_id,
        lead_id=lead_id,
        activity_type=body.type,
        page_category=body.page_category,
        occurred_at=occurred_at,
        properties=body.properties,
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
    if marks_job_seeker(body.type, body.page_category, lead.snapshot.get("flags") or [], policy):
        # the lead changes, so say so
        snapshot = with_job_seeker(lead.snapshot, now=now).model_dump(mode="json")
        await store.save_snapshot(session, lead_id, snapshot, now=now)
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
    known_emails, known_external = await store.known_identities(
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
        inserted = await store.insert_new_leads(
            session,
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
            ],
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


def _refused(index: int, problem: ProblemError) -> BatchItemResult:
    field = problem.extra.get("field", "body")
    return BatchItemResult(
        index=index,
        status=problem.status,
        errors=[FieldError(field=field, message=problem.detail)],
    )


async def accept_batch(
    session: AsyncSession,
    outbox: Outbox,
    policy: Policy,
    items: list[Any],
    *,
    writer: Writer,
    now: datetime,
) -> BatchResult:
    """Each item of a batch accepted or refused on its own, one result per item in order:
    invalid items are refused (422 naming their fields), the valid ones written."""
    valid: dict[int, LeadIn] = {}
    results: list[BatchItemResult | None] = [None] * len(items)
    for index, item in enumerate(items):
        try:
            valid[index] = LeadIn.model_validate(item)
        except ValidationError as exc:
            results[index] = BatchItemResult(
                index=index, status=422, errors=validation_errors(exc.errors())
            )
    outcomes = await accept_leads(
        session, outbox, policy, list(valid.values()), writer=writer, now=now
    )
    for index, outcome in zip(valid, outcomes, strict=True):
        if isinstance(outcome, ProblemError):
            results[index] = _refused(index, outcome)
        else:
            results[index] = BatchItemResult(
                index=index,
                status=202,
                lead_id=outcome.lead_id,
                event_id=outcome.event_id,
                duplicate=outcome.duplicate,
            )
    answered: list[BatchItemResult] = results  # type: ignore[assignment]  # every slot filled
    accepted = sum(1 for r in answered if r.status == 202)
    return BatchResult(accepted=accepted, rejected=len(answered) - accepted, results=answered)


async def show_lead(session: AsyncSession, lead_id: uuid.UUID) -> LeadView | uuid.UUID:
    """The lead as ingest knows it, or the id of the lead it was merged into. An erased lead
    is gone (410)."""
    row = await store.lead_shown(session, lead_id)
    if row is None:
        raise NotFound(f"lead {lead_id} not found")
    if row.erased_at is not None:
        raise LeadGone(lead_id)
    if row.merged_into is not None:
        return row.merged_into
    return LeadView.model_validate(
        {**row.snapshot, "created_at": row.created_at, "updated_at": row.updated_at}
    )


async def search_leads(rt: Runtime, wanted: PageRequest, text: str) -> Page[LeadView]:
    """Live leads whose e-mail, name or company holds `text`, or whose id is `text`."""
    async with rt.db.unit_of_work() as session:
        rows = await store.search_leads(session, wanted, text.strip())
    return wanted.page(
        rows,
        lambda row: LeadView.model_validate(
            {**row.snapshot, "created_at": row.created_at, "updated_at": row.updated_at}
        ),
    )


async def erase_lead(
    session: AsyncSession, outbox: Outbox, lead_id: uuid.UUID, *, now: datetime
) -> LeadErasure:
    """Erase the person behind `lead_id`: the lead it was merged into (if any) and every lead
    merged into that one lose their personal data, identities and activity properties, and
    each emits `lead.erased` once. What reports need stays (ids, times, channel, scores' inputs
    without names). Erasing again changes nothing and answers the same."""
    survivor_id = await store.live_lead_id(session, lead_id)
    if survivor_id is None:
        raise NotFound(f"lead {lead_id} not found", field="lead_id")
    group = await store.lock_person(session, survivor_id)
    survivor = next(r for r in group if r.id == survivor_id)
    ids = [r.id for r in group]
    erased_at = survivor.erased_at
    if erased_at is None:
        erased_at = now
        await store.erase_leads(
            session, {m.id: without_personal_data(m.snapshot) for m in group}, now=now
        )
        # the addresses this process checked lately are kept for its next requests: forget
        # them all (the erased person's may be there under any spelling)
        normalise.normalise_email.cache_clear()
        await forget_events(session, outbox.table, ids)
        await store.forget_crm_links(session, ids)
        await outbox.emit_many(session, [(LeadErased(lead_id=i), None) for i in ids])
        # who asked for it and which leads went; nothing of the person
        await audit.record(
            session, outbox.table.metadata, action="erased", entity="lead",
            entity_id=survivor_id, after={"erased_lead_ids": [str(i) for i in ids]},
        )  # fmt: skip
    return LeadErasure(lead_id=survivor_id, erased_lead_ids=ids, erased_at=erased_at)


@dataclass(frozen=True)
class HubSpotIntake:
    """What HubSpot's webhooks need besides the database: the mapping in force and, with a
    private app's token, the CRM API to read contacts from."""

    mapping: HubSpotMapping
    crm: HubSpotCrm | None


_HUBSPOT_INTAKE = "hubspot_intake"
# Contact events that leave nothing to read.
_GONE = frozenset({"contact.deletion", "contact.privacyDeletion"})


def load_hubspot_intake(settings: Settings) -> HubSpotIntake:
    """The mapping file over the defaults, and the CRM client when a token is configured.
    Raises MappingError naming each bad line of the file, HubSpotTokenUnreadable."""
    mapping = DEFAULT_MAPPING
    if settings.hubspot_mapping_file:
        path = Path(settings.hubspot_mapping_file)
        origin = f"HubSpot mapping file {str(path)!r}"
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise MappingError(f"{origin} cannot be read: {exc}") from None
        mapping = mapping_from_yaml(text, origin)
    token = settings.hubspot_private_app_token
    if token is None and settings.hubspot_private_app_token_file:
        try:
            secret = Path(settings.hubspot_private_app_token_file).read_text("utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise HubSpotTokenUnreadable(f"the HubSpot token file cannot be read: {exc}") from None
        token = SecretStr(secret) if secret else None
    crm = HubSpotCrm(settings.hubspot_api_url, token) if token is not None else None
    return HubSpotIntake(mapping, crm)


def connectors_lines(settings: Settings) -> Lines:
    """The line of each key of the connectors file (none when it is not set or not there)."""
    if not settings.connectors_file:
        return {}
    try:
        return lines_of_text(Path(settings.connectors_file).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return {}


async def prepare_hubspot_intake(rt: Runtime) -> None:
    """At start: a broken mapping file, an unreadable token file, a broken connectors file or a
    webhook secret that cannot be read stops ingest before it takes any webhook."""
    try:
        rt.state[_HUBSPOT_INTAKE] = load_hubspot_intake(rt.settings)
        rt.state[_SALES_REPORTING] = reporting = load_sales_reporting(
            rt.settings, rt.state[_HUBSPOT_INTAKE]
        )
        unknown = reports.unknown_reasons(
            reporting.connectors, rt.policy.reasons, connectors_lines(rt.settings)
        )
        if unknown:
            raise ConnectorsError(
                "the connectors file maps values to reasons the policy does not list:\n  "
                + "\n  ".join(unknown)
            )
    except (MappingError, HubSpotTokenUnreadable, ConnectorsError) as exc:
        log.error("refusing to start: %s", exc)
        raise


def hubspot_intake(rt: Runtime) -> HubSpotIntake:
    if _HUBSPOT_INTAKE not in rt.state:
        rt.state[_HUBSPOT_INTAKE] = load_hubspot_intake(rt.settings)
    return rt.state[_HUBSPOT_INTAKE]


async def accept_hubspot_webhook(rt: Runtime, events: list[HubSpotEvent]) -> HubSpotWebhookResult:
    """A HubSpot webhook batch. Contacts whose properties Leadflow has not all seen (new ones,
    or events carrying an id and one property) are first read whole from HubSpot, and so are
    the calls, e-mails and meetings sales logged, outside any transaction; then the batch is
    recorded in one: contacts' data as leads, status properties and activities (when the
    connectors file takes them) as sales reports. If HubSpot cannot be read within the
    budget, nothing is recorded and the answer is 503: HubSpot sends the batch again, so no
    event is lost to a slow HubSpot."""
    intake = hubspot_intake(rt)
    inbound = (await current_sales_reporting(rt)).connectors.hubspot.inbound
    reporting = [e for e in events if _reports_sales(inbound, e)]
    events = [e for e in events if not _reports_sales(inbound, e)]
    engagements = await read_engagements(intake, inbound, reporting)
    read: dict[tuple[int, int], ContactRead] = {}
    if intake.crm is not None:
        async with rt.db.unit_of_work() as session:
            wanted = await contacts_to_read(session, events, intake.mapping)
        if wanted:
            found = await intake.crm.read_contacts(
                sorted({object_id for _, object_id in wanted}),
                hubspot.properties_read(intake.mapping),
            )
            read = {key: found[key[1]] for key in wanted if key[1] in found}
    async with rt.db.unit_of_work() as session:
        result = await accept_hubspot_events(
            session,
            rt.outbox,
            rt.policy,
            events,
            now=rt.clock.now(),
            mapping=intake.mapping,
            read=read,
        )
        if not inbound.enabled:
            return result
        sales = await accept_hubspot_sales_events(
            session, rt.outbox, inbound, reporting, engagements, now=rt.clock.now()
        )
    return result.model_copy(
        update={
            "received": result.received + len(reporting),
            "duplicates": result.duplicates + sales.duplicates,
            "sales_reports": sales,
        }
    )


async def contacts_to_read(
    session: AsyncSession, events: list[HubSpotEvent], mapping: HubSpotMapping
) -> list[tuple[int, int]]:
    """(portal, contact) of the batch's contacts that lack a property a lead is made from,
    counting what the batch itself brings."""
    brought: dict[tuple[int, int], set[str]] = {}
    for event in events:
        if event.subscriptionType.startswith("contact.") and event.subscriptionType not in _GONE:
            names = brought.setdefault((event.portalId, event.objectId), set())
            if event.propertyName:
                names.add(event.propertyName)
    known = await store.contact_property_names(session, list(brought))
    return [
        key
        for key, names in brought.items()
        if hubspot.properties_missing(known.get(key, set()) | names, mapping)
    ]


async def accept_hubspot_events(
    session: AsyncSession,
    outbox: Outbox,
    policy: Policy,
    events: list[HubSpotEvent],
    *,
    now: datetime,
    mapping: HubSpotMapping = DEFAULT_MAPPING,
    read: Mapping[tuple[int, int], ContactRead] | None = None,
) -> HubSpotWebhookResult:
    """Record the batch (each event once) with what was read from HubSpot of its contacts, and
    bring every touched contact that has an email onto its lead, written as the HubSpot source."""
    duplicates = 0
    touched: dict[tuple[int, int], None] = {}
    for event in sorted(events, key=lambda e: (e.occurredAt, e.eventId)):
        if not await store.first_hubspot_event(session, event.portalId, event.eventId, now=now):
            duplicates += 1
            continue
        if not event.subscriptionType.startswith("contact."):
            continue
        properties = await store.lock_contact_properties(session, event.portalId, event.objectId)
        properties = hubspot.with_change(
            properties, event.propertyName, event.propertyValue, event.occurredAt
        )
        await store.save_contact_properties(
            session, event.portalId, event.objectId, properties, now=now
        )
        touched[(event.portalId, event.objectId)] = None
    for key in touched:
        contact = (read or {}).get(key)
        if contact is not None:
            properties = await store.lock_contact_properties(session, *key)
            properties = hubspot.with_read(properties, contact.properties, contact.updated_at)
            await store.save_contact_properties(session, *key, properties, now=now)

    leads: list[HubSpotContactResult] = []
    waiting = 0
    for portal_id, object_id in touched:
        properties = await store.contact_properties(session, portal_id, object_id)
        body = hubspot.lead_from_contact(portal_id, object_id, properties, mapping)
        if not body.get("email"):
            waiting += 1  # kept; the lead is made when the email property arrives
            continue
        try:
            lead = LeadIn.model_validate(body)
        except ValidationError as exc:
            leads.append(
                HubSpotContactResult(
                    object_id=object_id, status=422, errors=validation_errors(exc.errors())
                )
            )
            continue
        lead.occurred_at = hubspot.last_change(properties)
        accepted = await accept_lead(
            session,
            outbox,
            policy,
            lead,
            writer=Writer(key_name=f"hubspot:{portal_id}", source=hubspot.SOURCE),
            now=now,
        )
        await store.link_contact(session, portal_id, object_id, accepted.lead_id)
        leads.append(
            HubSpotContactResult(
                object_id=object_id,
                status=202,
                lead_id=accepted.lead_id,
                duplicate=accepted.duplicate,
            )
        )
    return HubSpotWebhookResult(
        received=len(events), duplicates=duplicates, waiting_for_email=waiting, leads=leads
    )


# --- what sales tools report back ----------------------------------------------------------


@dataclass(frozen=True)
class SalesReporting:
    """The connectors file in force and each generic webhook's secret (never logged)."""

    connectors: Connectors
    webhook_secrets: dict[str, str]


_SALES_REPORTING = "sales_reporting"


def _webhook_secret(name: str, secret_env: str | None, secret_file: str | None) -> str:
    if secret_env is not None:
        secret = os.environ.get(secret_env, "").strip()
        if not secret:
            raise ConnectorsError(
                f"webhook {name!r}: the environment variable {secret_env} holds no secret"
            )
        return secret
    try:
        secret = Path(secret_file or "").read_text("utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConnectorsError(
            f"webhook {name!r}: the secret file cannot be read ({type(exc).__name__})"
        ) from None
    if not secret:
        raise ConnectorsError(f"webhook {name!r}: the secret file is empty")
    return secret


def load_sales_reporting(
    settings: Settings, intake: HubSpotIntake, connectors: Connectors | None = None
) -> SalesReporting:
    """`connectors` (else the connectors file, `LEADFLOW_CONNECTORS_FILE`) and the secrets they
    name. Raises ConnectorsError naming each problem: an invalid file, a secret not there,
    HubSpot activities to read without a private app's token to read them with."""
    if connectors is None:
        connectors = load_connectors(settings.connectors_file)
    inbound = connectors.hubspot.inbound
    if inbound.enabled and inbound.engagements and intake.crm is None:
        raise ConnectorsError(
            "connectors.hubspot.inbound.engagements: HubSpot's calls, e-mails and meetings are "
            "read through its CRM API; set LEADFLOW_HUBSPOT_PRIVATE_APP_TOKEN (or its _FILE), "
            "or list no engagements"
        )
    secrets = {
        w.name: _webhook_secret(w.name, w.signature.secret_env, w.signature.secret_file)
        for w in connectors.webhooks
    }
    return SalesReporting(connectors, secrets)


def sales_reporting(rt: Runtime) -> SalesReporting:
    if _SALES_REPORTING not in rt.state:
        rt.state[_SALES_REPORTING] = load_sales_reporting(rt.settings, hubspot_intake(rt))
    return rt.state[_SALES_REPORTING]


_SALES_PUBLICATION = "sales_reporting_publication"


async def current_sales_reporting(rt: Runtime) -> SalesReporting:
    """The connectors in force: those last changed through notify's API as ingest took them
    (one row read by its key; rebuilt only when its publication changed), else the connectors
    file. A document ingest cannot apply (a secret it does not have, a reason the policy does
    not list) is logged and the connectors in force kept."""
    async with rt.db.unit_of_work() as session:
        row = await CURRENT_CONNECTORS.stored(session, rt.spec.metadata)
    if row is None or rt.state.get(_SALES_PUBLICATION) == row.publication:
        return sales_reporting(rt)
    rt.state[_SALES_PUBLICATION] = row.publication  # logged once, not on every use
    try:
        connectors = Connectors.model_validate(row.document)
        reporting = load_sales_reporting(rt.settings, hubspot_intake(rt), connectors)
        unknown = reports.unknown_reasons(connectors, rt.policy.reasons, {})
        if unknown:
            raise ConnectorsError("reasons the policy does not list: " + "; ".join(unknown))
    except ValueError as exc:  # ConnectorsError and pydantic's ValidationError
        log.error(
            "published connectors not applied: %s", exc, extra={"publication": row.publication}
        )
        return sales_reporting(rt)
    rt.state[_SALES_REPORTING] = reporting
    log.info("published connectors applied", extra={"publication": row.publication})
    return reporting


async def lead_of(
    session: AsyncSession, system: str, refs: tuple[reports.LeadRef, ...]
) -> uuid.UUID | None:
    """The live lead the first of a report's references that names one names: a lead id, an
    e-mail or external id as intake knows them, a CRM record as intake or notify linked it."""
    for ref in refs:
        found: uuid.UUID | None = None
        if ref.by == "lead_id":
            found = uuid.UUID(ref.value)
        elif ref.by == "email":
            found = await store.find_lead(session, "email", normalise.normalise_email(ref.value)[0])
        elif ref.by == "external_id":
            found = await store.find_lead(session, "external_id", ref.value)
        elif ref.by == "crm":
            found = await store.crm_linked_lead(session, system, ref.value)
        elif ref.by == "hubspot_contact":
            portal_id, contact_id = (int(part) for part in ref.value.split(":"))
            found = await store.hubspot_contact_lead(
                session, portal_id, contact_id
            ) or await store.crm_linked_lead(session, system, str(contact_id))
        live = await store.lead_alive(session, found) if found is not None else None
        if live is not None:
            return live
    return None


async def record_sales_reports(
    session: AsyncSession,
    outbox: Outbox,
    found: list[reports.Report],
    *,
    system: str,
    ignored: int = 0,
    duplicates: int = 0,
    now: datetime,
) -> SalesReportsAccepted:
    """Pass each report on to feedback as `lead.sales_reported`, each (system, record) once;
    one whose record names no lead Leadflow knows is kept (so a redelivery stays a duplicate)
    and counted, not passed on. A value the tables do not list goes on as `unmapped`, so that
    it shows on the lead's timeline; each outcome is counted once the batch commits."""
    result = SalesReportsAccepted(ignored=ignored, duplicates=duplicates)
    for report in found:
        lead_id = await lead_of(session, report.system, report.leads)
        fresh = await store.first_sales_report(
            session, report.system, report.record_id, lead_id=lead_id, kind=report.kind, now=now
        )
        if not fresh:
            result.duplicates += 1
        elif lead_id is None:
            result.unmatched += 1
            log.info(
                "a sales report matched no lead",
                extra={"system": report.system, "record_id": report.record_id},
            )
        else:
            await outbox.emit(session, LeadSalesReported(lead_id=lead_id, **report.fields()))
            result.reported += 1
            result.lead_ids.append(lead_id)
            if report.kind == "unmapped":
                result.unmapped += 1
                log.warning(
                    "a sales report carried a value the connectors file does not list",
                    extra={"system": report.system, "record_id": report.record_id},
                )
    counted = {
        "reported": result.reported - result.unmapped,
        "unmapped": result.unmapped,
        "duplicate": result.duplicates,
        "unmatched": result.unmatched,
        "ignored": result.ignored,
    }
    for outcome, amount in counted.items():
        if amount:
            metrics.count_on_commit(session, metrics.sales_reports.labels(system, outcome), amount)
    return result


def _reports_sales(inbound: HubSpotInbound, event: HubSpotEvent) -> bool:
    """Whether a HubSpot event is sales reporting (a watched status property of a contact, a
    call, e-mail or meeting created) rather than a contact's data."""
    if not inbound.enabled:
        return False
    if event.subscriptionType == "object.creation":
        return reports.hubspot_engagement_kind(inbound, event.objectTypeId) is not None
    changes_contact = event.subscriptionType == "contact.propertyChange" or (
        event.subscriptionType == "object.propertyChange"
        and event.objectTypeId == reports.HUBSPOT_CONTACT
    )
    return changes_contact and reports.watched_property(inbound, event.propertyName)


async def read_engagements(
    intake: HubSpotIntake, inbound: HubSpotInbound, events: list[HubSpotEvent]
) -> dict[tuple[int, int], EngagementRead | None]:
    """The calls, e-mails and meetings a batch names, read from HubSpot with their contacts
    (outside any transaction, within the read budget: 503 otherwise, and HubSpot retries)."""
    read: dict[tuple[int, int], EngagementRead | None] = {}
    if intake.crm is None:
        return read
    deadline = intake.crm.deadline()
    for event in events:
        kind = reports.hubspot_engagement_kind(inbound, event.objectTypeId)
        if kind is None or (event.portalId, event.objectId) in read:
            continue
        read[(event.portalId, event.objectId)] = await intake.crm.read_engagement(
            kind, event.objectId, reports.ENGAGEMENT_PROPERTIES[kind], deadline=deadline
        )
    return read


async def accept_hubspot_sales_events(
    session: AsyncSession,
    outbox: Outbox,
    inbound: HubSpotInbound,
    events: list[HubSpotEvent],
    engagements: Mapping[tuple[int, int], EngagementRead | None],
    *,
    now: datetime,
) -> SalesReportsAccepted:
    """HubSpot's status property changes and logged activities, each event once (by its id)
    and each record once (by what changed): the reports they make."""
    found: list[reports.Report] = []
    ignored = duplicates = 0
    for event in sorted(events, key=lambda e: (e.occurredAt, e.eventId)):
        if not await store.first_hubspot_event(session, event.portalId, event.eventId, now=now):
            duplicates += 1
            continue
        kind = reports.hubspot_engagement_kind(inbound, event.objectTypeId)
        report: reports.Report | None
        if event.subscriptionType == "object.creation" and kind is not None:
            engagement = engagements.get((event.portalId, event.objectId))
            report = (
                reports.hubspot_engagement_report(
                    inbound,
                    event.portalId,
                    kind,
                    event.objectId,
                    engagement.properties,
                    engagement.contact_ids,
                    created_ms=engagement.created_at,
                )  # fmt: skip
                if engagement is not None
                else None
            )
        else:
            report = reports.hubspot_property_report(
                inbound, event.portalId, event.objectId, event.propertyName or "",
                event.propertyValue, event.occurredAt,
            )  # fmt: skip
        if report is None:
            ignored += 1
        else:
            found.append(report)
    return await record_sales_reports(
        session, outbox, found, system=reports.HUBSPOT, ignored=ignored, duplicates=duplicates,
        now=now,
    )  # fmt: skip


async def accept_outbound_message(rt: Runtime, body: bytes) -> SalesReportsAccepted:
    """A Salesforce Outbound Message: refused unless it comes from the configured organisation;
    each notification's Lead status or Task mapped and passed on once. The caller answers the
    `Ack` once this returned (then Salesforce stops delivering it)."""
    inbound = (await current_sales_reporting(rt)).connectors.salesforce.inbound
    if not inbound.enabled or inbound.organization_id is None:
        raise NotFound("the Salesforce connector is not configured (connectors.salesforce.inbound)")
    message = salesforce.parse_outbound_message(body)
    if not salesforce.same_organization(inbound.organization_id, message.organization_id):
        log.warning("an Outbound Message of another Salesforce organisation was refused")
        raise Forbidden(
            "the message comes from another Salesforce organisation than the configured one",
            field="notifications.OrganizationId",
        )
    now = rt.clock.now()
    found, ignored = [], 0
    for notification in message.notifications:
        report = salesforce.notification_report(inbound, notification, now=now)
        if report is None:
            ignored += 1
        else:
            found.append(report)
    async with rt.db.unit_of_work() as session:
        return await record_sales_reports(
            session, rt.outbox, found, system=reports.SALESFORCE, ignored=ignored, now=now
        )


async def accept_webhook_report(
    rt: Runtime, name: str, body: bytes, headers: Mapping[str, str]
) -> SalesReportsAccepted:
    """A generic webhook's delivery: its HMAC checked with the webhook's secret, its body mapped
    by the webhook's field paths and value tables; a path the body lacks is a 422 naming it."""
    configured = await current_sales_reporting(rt)
    webhook = configured.connectors.webhook(name)
    if webhook is None:
        raise NotFound(f"no webhook named {name!r} is configured", field="name")
    reports.verify_webhook(webhook, configured.webhook_secrets[name], body, headers)
    now = rt.clock.now()
    report = reports.webhook_report(webhook, decoded_json(body), now=now)
    async with rt.db.unit_of_work() as session:
        return await record_sales_reports(
            session, rt.outbox, [report] if report else [], system=f"webhook:{webhook.name}",
            ignored=int(report is None), now=now,
        )  # fmt: skip


async def link_crm_records(rt: Runtime, session: AsyncSession, received: list[Received]) -> None:
    """Notify made or found a lead's record in a CRM: what that CRM reports about the record
    (a Task's WhoId, a call on the contact) is about the lead."""
    for item in received:
        match item.payload:
            case LeadCrmLinked() as linked:
                await store.link_crm_record(
                    session, linked.system, linked.object_type, linked.object_id,
                    linked.lead_id, now=linked.linked_at,
                )  # fmt: skip
