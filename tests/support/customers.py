"""A won customer in feedback, reached as in production: its promotion and routing produced as
events to their topics, sales' status changes through feedback's HTTP API."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from leadflow.contracts.events import LeadCompany, LeadCreated, LeadMql, LeadRouted, LeadSource
from support.feedback_events import status_is
from support.harness import SALES, eventually

H = timedelta(hours=1)
QUALIFIED = {"problem": True, "impact": True, "authority": True}
DEAL = {"value": 40000, "currency": "EUR", "stage": "proposal", "close_date": "2026-12-31"}


async def won_customer(
    client,
    *,
    team: str = "cee",
    company: LeadCompany | None = None,
    source: LeadSource | None = None,
) -> uuid.UUID:
    """A lead first seen under `source`, promoted, routed to `team`, then taken through SAL,
    SQL and SQO and won an hour ago; `client` is a feedback fed by events
    (`support.feedback_events`)."""
    lead_id = uuid.uuid4()
    now = datetime.now(UTC)
    start = now - 6 * H
    company = company or LeadCompany(industry="software", size_band="51-200", employees=120)
    source = source or LeadSource()
    created = LeadCreated(lead_id=lead_id, email=f"{lead_id}@c.example", occurred_at=start,
                          source=source, company=company)  # fmt: skip
    await client.publish(created, start, "ingest")
    promoted = LeadMql(lead_id=lead_id, fit=100, engagement=60.0, intent_tier=1,
                       channel="inbound", source=source, company=company, role="decision_maker",
                       promoted_at=start + H / 2)  # fmt: skip
    await client.publish(promoted, start + H / 2, "scoring")
    routed = LeadRouted(lead_id=lead_id, assignment_id=uuid.uuid4(), team_id=uuid.uuid4(),
                        team=team, rep_id=uuid.uuid4(), routed_at=start + H)  # fmt: skip
    await client.publish(routed, start + H, "routing")
    await eventually(lambda: status_is(client, lead_id, "routed"))
    for status, at, extra in (
        ("sal", start + 2 * H, {}),
        ("sql", start + 3 * H, {"qualification": QUALIFIED}),
        ("sqo", start + 4 * H, {"opportunity": DEAL}),
        ("won", now - H, {}),
    ):
        body = {"status": status, "occurred_at": at.isoformat(), **extra}
        response = await client.post(f"/v1/leads/{lead_id}/status", json=body, headers=SALES)
        assert response.status_code == 200, response.text
    return lead_id
