"""All five services as real processes against the session's PostgreSQL and broker."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from leadflow.registry import SERVICE_ORDER
from leadflow.testing import (
    ADMIN,
    SALES,
    SOURCE,
    ServiceProcess,
    WebhookReceiver,
    eventually,
    start_all,
)


@pytest.fixture
async def services(stack, settings, tmp_path):
    procs = {
        name: ServiceProcess(name, settings, tmp_path / f"{name}.log") for name in SERVICE_ORDER
    }
    try:
        await start_all(list(procs.values()))
        yield procs
    finally:
        for proc in procs.values():
            proc.stop()


@dataclass
class LeadRun:
    """One lead's way through the running services: the rep it is routed to, the endpoint
    its `lead.routed` webhook is signed for and the receiver that endpoint points at."""

    urls: dict[str, str]
    http: httpx.AsyncClient
    receiver: WebhookReceiver
    rep: dict
    secret: str
    lead_id: str = ""

    async def ingest(self, lead: dict) -> dict:
        """Send the lead from the CRM source; the answer to the source."""
        created = await self.http.post(f"{self.urls['ingest']}/v1/leads", headers=SOURCE, json=lead)
        assert created.status_code == 202, created.text
        self.lead_id = created.json()["lead_id"]
        return created.json()

    async def delivered(self, timeout: float = 60) -> list[tuple[dict[str, str], bytes]]:
        """The webhook deliveries, once there is one."""
        return await eventually(lambda: self.receiver.received, timeout=timeout)

    async def first_response(self, state: str, timeout: float = 30) -> dict:
        """The lead's first-response SLA timer, once it is in `state`."""

        async def in_state() -> dict | None:
            slas = await self.http.get(f"{self.urls['sla-timer']}/v1/leads/{self.lead_id}/slas")
            first = [t for t in slas.json()["timers"] if t["sla"] == "first_response"]
            return first[0] if first and first[0]["state"] == state else None

        return await eventually(in_state, timeout=timeout)

    async def connected_call(self) -> None:
        """The rep's call reaches the lead, reported once feedback knows the lead (its
        consumer may lag sla-timer's)."""

        async def known_to_feedback() -> bool:
            url = f"{self.urls['feedback']}/v1/leads/{self.lead_id}/lifecycle"
            return (await self.http.get(url)).status_code == 200

        await eventually(known_to_feedback, timeout=60)
        attempt = await self.http.post(
            f"{self.urls['feedback']}/v1/leads/{self.lead_id}/attempts",
            headers=SALES,
            json={"channel": "call", "rep_id": self.rep["id"], "outcome": "connected"},
        )
        assert attempt.status_code == 202, attempt.text


@pytest.fixture
async def lead_run(services) -> AsyncIterator[LeadRun]:
    """The running services with one rep and a webhook endpoint for `lead.routed`; the test
    sends its lead with `ingest`."""
    urls = {name: proc.url for name, proc in services.items()}
    async with WebhookReceiver() as receiver, httpx.AsyncClient(timeout=10) as http:
        rep = await http.post(
            f"{urls['routing']}/v1/reps",
            headers=ADMIN,
            json={"name": "Rep One", "email": "rep1@vendor.example"},
        )
        assert rep.status_code == 201, rep.text
        endpoint = await http.post(
            f"{urls['routing']}/v1/webhook-endpoints",
            headers=ADMIN,
            json={"url": receiver.url, "event_types": ["lead.routed"]},
        )
        assert endpoint.status_code == 201, endpoint.text
        yield LeadRun(urls, http, receiver, rep.json(), endpoint.json()["secret"])
