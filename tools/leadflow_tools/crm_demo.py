"""`leadflow crm-demo hubspot`: the HubSpot round trip on the embedded stack, in about a minute.

It starts PostgreSQL, the broker and the six services as `leadflow demo` does, and a local
server implementing HubSpot's documented CRM API v3 contract (`leadflow_tools.hubspot_server`:
it is not HubSpot, which needs an account; docs/integrations.md says how to connect a real one).
Then it does what HubSpot and a rep would: HubSpot sends a signed contact webhook, the lead
qualifies and is routed, notify writes the contact's owner and a task due at the first-response
deadline, the rep logs a call on the contact, HubSpot's webhook tells ingest of it, and the
first-response clock is met. Each step is printed as it happens.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import orjson
import yaml
from leadflow.settings import DEV_API_KEY

ADMIN = {"Authorization": f"Bearer {DEV_API_KEY}"}
# What the local HubSpot server and ingest share, as a real app and ingest would.
CLIENT_SECRET = "crm-demo-client-secret"
TOKEN = "pat-demo-00000000-1111-2222-3333-444444444444"
PORTAL = 62515
CONTACT = 7101
OWNER = "41001"
REP = {"name": "Ola Nowak", "email": "ola.nowak@demo.example"}
CONNECTED = "f240bbac-87c9-4f6e-bf70-924b57d47db7"  # HubSpot's default call disposition id
CONTACT_PROPERTIES = {
    "email": "grace.hopper@analytical-engines.example",
    "firstname": "Grace",
    "lastname": "Hopper",
    "jobtitle": "Prezes Zarządu",
    "hs_buying_role": "DECISION_MAKER",
    "company": "Analytical Engines",
    "industry": "Computer Software",
    "numberofemployees": "250",
    "country": "Poland",
    "hs_analytics_source": "PAID_SEARCH",
    "hs_legal_basis": "Freely given consent from contact",
}
ACTIVITIES = (
    {"type": "demo_request"},
    {"type": "page_view", "page_category": "pricing"},
    {"type": "page_view", "page_category": "docs"},
)
PATIENCE = 120.0  # real seconds a step may take on a slow machine

T = TypeVar("T")


def say(message: str) -> None:
    print(message, flush=True)


async def until(check: Callable[[], Awaitable[T | None]], what: str) -> T:
    """The first truthy answer of `check`, polled; RuntimeError naming `what` after PATIENCE."""
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        found = await check()
        if found:
            return found
        await asyncio.sleep(0.25)
    raise RuntimeError(f"gave up waiting for {what} after {PATIENCE:.0f} s")


class HubSpotRoundTrip:
    """The stack, the local HubSpot server and the steps of the round trip."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir.resolve()
        self.stack: Any = None
        self.procs: dict[str, Any] = {}
        self.http = httpx.AsyncClient(timeout=30, headers=ADMIN)
        self._event_ids = iter(range(1, 1_000_000))

    def url(self, service: str) -> str:
        return self.procs[service].url

    async def start(self, hubspot_url: str) -> None:
        from leadflow_tools.devstack import Stack
        from leadflow_tools.registry import SERVICE_ORDER
        from leadflow_tools.supervisor import ServiceProcess, start_all

        self.state_dir.mkdir(parents=True, exist_ok=True)
        connectors = self.state_dir / "connectors.yaml"
        connectors.write_text(yaml.safe_dump({"connectors": {"hubspot": {
            "outbound": {"enabled": True}, "inbound": {"enabled": True},
        }}}), encoding="utf-8")  # fmt: skip
        token_file = self.state_dir / "hubspot-token"
        token_file.write_text(TOKEN, encoding="utf-8")
        say("starting PostgreSQL and the broker (embedded) …")
        self.stack = await asyncio.to_thread(Stack.start)
        settings = await self.stack.isolated_settings(
            connectors_file=str(connectors),
            hubspot_client_secret=CLIENT_SECRET,
            hubspot_private_app_token_file=str(token_file),
            hubspot_api_url=hubspot_url,
        )
        self.procs = {
            name: ServiceProcess(name, settings, self.state_dir / f"{name}.log")
            for name in SERVICE_ORDER
        }
        say(f"starting the six services (logs in {self.state_dir}) …")
        await start_all(list(self.procs.values()))

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.stop()
        if self.stack is not None:
            self.stack.stop()

    async def hubspot_webhook(self, **event: Any) -> dict[str, Any]:
        """One event sent and signed as HubSpot sends it (X-HubSpot-Signature-v3)."""
        from leadflow_ingest.domain.hubspot import signature_v3

        now_ms = int(time.time() * 1000)
        body = orjson.dumps([{
            "eventId": next(self._event_ids), "subscriptionId": 1, "portalId": PORTAL,
            "occurredAt": now_ms, "attemptNumber": 0, "changeSource": "CRM", **event,
        }])  # fmt: skip
        url = f"{self.url('ingest')}/v1/sources/hubspot/webhook"
        headers = {
            "Content-Type": "application/json",
            "X-HubSpot-Request-Timestamp": str(now_ms),
            "X-HubSpot-Signature-v3": signature_v3(CLIENT_SECRET, "POST", url, body, str(now_ms)),
        }
        answer = await self.http.post(url, content=body, headers=headers)
        answer.raise_for_status()
        return answer.json()

    async def first_response(self, lead_id: str, state: str) -> dict[str, Any]:
        async def in_state() -> dict[str, Any] | None:
            answer = await self.http.get(f"{self.url('sla-timer')}/v1/leads/{lead_id}/slas")
            if answer.status_code != 200:
                return None
            timers = [t for t in answer.json()["timers"] if t["sla"] == "first_response"]
            return timers[0] if timers and timers[0]["state"] == state else None

        return await until(in_state, f"the first-response clock to be {state}")

    async def run(self, hubspot: Any) -> None:
        rep = await self.http.post(f"{self.url('routing')}/v1/reps", json=REP)
        rep.raise_for_status()
        say(f"routing: rep {REP['name']} <{REP['email']}> is HubSpot owner {OWNER}")

        made = await self.hubspot_webhook(subscriptionType="contact.creation", objectId=CONTACT)
        lead_id = made["leads"][0]["lead_id"]
        say(f"HubSpot → ingest: contact.creation of contact {CONTACT}; ingest read it through "
            f"the CRM API and made lead {lead_id}")  # fmt: skip
        for activity in ACTIVITIES:
            posted = await self.http.post(
                f"{self.url('ingest')}/v1/activities", json={"lead_id": lead_id, **activity}
            )
            posted.raise_for_status()
        say("ingest: a demo request and two page views")

        opened = await self.first_response(lead_id, "open")
        say(f"routing: the lead is an MQL, routed to {REP['name']}; first response due "
            f"{opened['due_at']}")  # fmt: skip
        tasks = await until(lambda: _async(hubspot.contact_tasks(str(CONTACT))), "the task")
        properties = hubspot.contacts[str(CONTACT)]["properties"]
        say(f"notify → HubSpot: contact {CONTACT} hubspot_owner_id = "
            f"{properties.get('hubspot_owner_id')}, hs_lead_status = "
            f"{properties.get('hs_lead_status')}")  # fmt: skip
        for task in tasks:
            say(f"notify → HubSpot: task {task.get('hs_task_subject')!r}, owner "
                f"{task.get('hubspot_owner_id')}, due {task.get('hs_timestamp')}")  # fmt: skip

        called = datetime.now(UTC) - timedelta(seconds=5)
        hubspot.add_engagement(
            "calls", 88001,
            {"hs_timestamp": str(int(called.timestamp() * 1000)),
             "hs_call_disposition": CONNECTED, "hs_call_direction": "OUTBOUND"},
            [CONTACT], created_at=called,
        )  # fmt: skip
        say(f"the rep logs a connected call on contact {CONTACT} in HubSpot")
        logged = await self.hubspot_webhook(
            subscriptionType="object.creation", objectTypeId="0-48", objectId=88001
        )
        say(f"HubSpot → ingest: object.creation of call 88001; sales reports "
            f"{logged['sales_reports']}")  # fmt: skip
        met = await self.first_response(lead_id, "met")
        lifecycle = await self.http.get(f"{self.url('feedback')}/v1/leads/{lead_id}/lifecycle")
        status = lifecycle.json().get("status") if lifecycle.status_code == 200 else "?"
        say(f"sla-timer: first response met at {met['met_at']} (due {met['due_at']}); the lead "
            f"is {status}")  # fmt: skip


async def _async(value: T) -> T:
    return value


async def run_crm_demo(system: str, state_dir: Path) -> int:
    from leadflow_tools.hubspot_server import HubSpotApiServer

    if system != "hubspot":
        say(f"no demo of {system!r}; known: hubspot")
        return 2
    trip = HubSpotRoundTrip(state_dir)
    try:
        async with HubSpotApiServer(TOKEN) as hubspot:
            hubspot.owners[REP["email"]] = OWNER
            hubspot.add_contact(CONTACT, CONTACT_PROPERTIES, datetime.now(UTC))
            say(f"a local HubSpot API server (HubSpot's documented CRM v3 contract) at "
                f"{hubspot.url}")  # fmt: skip
            await trip.start(hubspot.url)
            await trip.run(hubspot)
        say("the HubSpot round trip is complete.")
        return 0
    except (RuntimeError, httpx.HTTPError) as exc:
        say(f"the round trip failed: {exc}")
        return 1
    finally:
        await trip.http.aclose()
        say("stopping …")
        await asyncio.to_thread(trip.stop)
        say("stopped.")


def _crm_demo(args: argparse.Namespace) -> int:
    return asyncio.run(run_crm_demo(args.system, Path(args.state_dir)))


def add_parser(sub) -> None:
    demo = sub.add_parser(
        "crm-demo",
        help="the HubSpot round trip against a local server implementing HubSpot's API contract",
    )
    demo.add_argument("system", choices=["hubspot"], help="the CRM (hubspot)")
    demo.add_argument(
        "--state-dir", default=".leadflow/crm-demo", help="logs (default .leadflow/crm-demo)"
    )
    demo.set_defaults(func=_crm_demo)
