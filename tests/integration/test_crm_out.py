"""Notify writes each routed lead to the CRMs of the connectors file, through its delivery
queue: in HubSpot the contact's owner and lead status and a task for the rep due at the
first-response deadline, in Salesforce the Lead's OwnerId and a Task; 429s wait as asked, a 401
takes the token again once and then dead-letters with a reason, a CRM that is down loses
nothing, nothing is written twice, and `lead.crm_linked` goes out once per lead and CRM.

HubSpot and Salesforce cannot be reached from the tests: they run against local servers
implementing the vendors' documented contracts of exactly the calls notify makes
(leadflow_tools/hubspot_server.py, leadflow_tools/salesforce_server.py). Notify runs in this
process on the real PostgreSQL and broker."""

from __future__ import annotations

import uuid
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from leadflow import metrics
from leadflow.contracts.connectors import ConnectorsError
from leadflow.contracts.events import (
    TOPIC_INGEST,
    TOPIC_ROUTING,
    LeadCreated,
    LeadErased,
    LeadRouted,
    Person,
    TeamDirectory,
)
from leadflow.db import Database
from leadflow_tools.hubspot_server import HubSpotApiServer
from leadflow_tools.salesforce_server import SalesforceServer
from support.harness import (
    ADMIN,
    counted,
    emitted,
    eventually,
    publish_events,
    sample_mql,
    service_client,
)

TOKEN = "pat-na1-11111111-2222-3333-4444-555555555555"
REP_ID = uuid.UUID("6f1d6c2e-0a55-4c9b-8d7e-3b2a1c0d9e8f")
REP_EMAIL = "ola.nowak@vendor.example"
OWNER = "41001"
TEAM_ID = uuid.UUID("0c7e3d2b-9a1f-4e6d-8b5c-2a4f6e8d0b1c")
# Tuesday 15:30 in Warsaw: the inbound first response (2 business hours, 9:00–17:00) is due
# the next morning at 9:30, 08:30 UTC.
ROUTED_AT = datetime(2026, 12, 1, 14, 30, tzinfo=UTC)
DUE = "2026-12-02T08:30:00Z"
# Retries within seconds, so an outage and its end fit in a test.
FAST = (0, 0.3, 0.3, 0.5, 0.5, 1, 1, 1, 1, 1, 1, 1)


def routed(mql, *, rep_id: uuid.UUID = REP_ID, assignment_id: uuid.UUID | None = None):
    return LeadRouted(
        lead_id=mql.lead_id,
        assignment_id=assignment_id or uuid.uuid4(),
        team_id=TEAM_ID,
        team="Inbound",
        rep_id=rep_id,
        rep_name="Ola Nowak",
        channel="inbound",
        routed_at=ROUTED_AT,
        mql=mql.model_dump(mode="json"),
    )


def directory() -> TeamDirectory:
    return TeamDirectory(
        lead_id=TEAM_ID,
        team_id=TEAM_ID,
        team="Inbound",
        reps=[Person(id=REP_ID, name="Ola Nowak", email=REP_EMAIL)],
        changed_at=datetime.now(UTC),
    )


def a_lead(n: int):
    return sample_mql(n).model_copy(
        update={"first_name": "Zoe", "last_name": f"Quant{n}", "title": "Head of Data"}
    )


@asynccontextmanager
async def notify_writing_to(stack, tmp_path, connectors: dict[str, Any], **overrides):
    """Notify with this connectors file, retrying within seconds."""
    path = tmp_path / f"connectors-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(yaml.safe_dump({"connectors": connectors}))
    settings = await stack.isolated_settings(
        connectors_file=str(path), webhook_retry_schedule=FAST, **overrides
    )
    async with service_client("notify", settings) as notify:
        yield notify, settings


def hubspot_out(**outbound) -> dict:
    return {"hubspot": {"outbound": {"enabled": True, **outbound}}}


async def crm_deliveries(notify, lead_id, connector: str) -> list[dict]:
    response = await notify.get("/v1/deliveries", params={"lead_id": str(lead_id)})
    assert response.status_code == 200, response.text
    return [d for d in response.json()["items"] if d["connector"] == connector]


async def settled(notify, lead_id, connector: str, state: str = "delivered") -> dict | None:
    found = await crm_deliveries(notify, lead_id, connector)
    return found[0] if len(found) == 1 and found[0]["state"] == state else None


async def known_to_notify(settings, sql: str, **params) -> None:
    """Wait until notify's own tables show what the test needs before the next event."""
    db = Database(settings.database_url)

    async def there():
        async with db.unit_of_work() as session:
            return await session.scalar(sa.text(sql), params)

    try:
        await eventually(there, timeout=60)
    finally:
        await db.dispose()


async def directory_known(settings) -> None:
    await publish_events(settings, TOPIC_ROUTING, [directory()])
    await known_to_notify(
        settings,
        "SELECT count(*) = 1 FROM notify.team_directory WHERE team_id = :team",
        team=TEAM_ID,
    )


async def published_twice(settings, payload) -> None:
    """One event sent twice, as a broker redelivers it (same CloudEvent id)."""
    from leadflow.contracts.events import make_event
    from leadflow.kafka import make_producer

    event = make_event(payload, source="routing")
    producer = make_producer(settings, "test-redelivery")
    await producer.start()
    try:
        for _ in range(2):
            await producer.send_and_wait(
                settings.topic_prefix + payload.topic,
                event.to_bytes(),
                key=str(payload.lead_id).encode(),
            )
    finally:
        await producer.stop()


async def linked(settings, lead_id) -> list:
    return [
        e for e in await emitted(settings, "lead.crm_linked", "notify") if e.subject == str(lead_id)
    ]


async def test_notify_refuses_to_start_with_an_invalid_connectors_file(stack, tmp_path):
    path = tmp_path / "connectors.yaml"
    path.write_text("connectors:\n  hubspot:\n    outbound:\n      owners: {ola: not-an-id}\n")
    settings = await stack.isolated_settings(connectors_file=str(path))
    with pytest.raises(ConnectorsError) as refused:
        async with service_client("notify", settings):
            pass
    assert refused.value.problems[0][0] == "hubspot.outbound.owners.ola"


# --- HubSpot --------------------------------------------------------------------------------


async def test_a_routed_hubspot_contact_gets_its_owner_status_and_a_task_due_at_the_deadline(
    stack, tmp_path
):
    async with HubSpotApiServer(TOKEN) as hubspot:
        hubspot.owners[REP_EMAIL] = OWNER  # the rep is found among HubSpot's users by e-mail
        hubspot.ten_second_limit = 100
        hubspot.add_contact(7001, {"email": "lead1@example.com"}, datetime.now(UTC))
        async with notify_writing_to(
            stack, tmp_path, hubspot_out(), hubspot_api_url=hubspot.url,
            hubspot_private_app_token=TOKEN,
        ) as (notify, settings):  # fmt: skip
            mql = a_lead(1)
            # the lead came in through HubSpot: intake knows its contact
            created = LeadCreated(
                lead_id=mql.lead_id, email="lead1@example.com",
                external_id="hubspot:62515:7001", occurred_at=ROUTED_AT,
            )  # fmt: skip
            await publish_events(settings, TOPIC_INGEST, [created])
            await known_to_notify(
                settings,
                "SELECT count(*) = 1 FROM notify.lead_context WHERE lead_id = :id "
                "AND context->>'external_id' IS NOT NULL",
                id=mql.lead_id,
            )
            await directory_known(settings)
            await publish_events(settings, TOPIC_ROUTING, [routed(mql)])
            delivery = await eventually(lambda: settled(notify, mql.lead_id, "hubspot"), 60)
            links = await eventually(lambda: linked(settings, mql.lead_id), 30)

    contact = hubspot.contacts["7001"]["properties"]
    assert contact["hubspot_owner_id"] == OWNER and contact["hs_lead_status"] == "OPEN"
    [task] = hubspot.contact_tasks("7001")
    assert task["hs_timestamp"] == DUE
    assert task["hubspot_owner_id"] == OWNER
    assert task["hs_task_subject"] == "Follow up with Zoe Quant1 (Co 1)"
    assert task["hs_task_status"] == "NOT_STARTED" and task["hs_task_priority"] == "HIGH"
    assert len(hubspot.contacts) == 1  # found by the id intake knew, nothing created
    assert all(r["headers"]["authorization"] == f"Bearer {TOKEN}" for r in hubspot.requests)
    assert (delivery["attempts"], delivery["endpoint_id"]) == (1, None)
    [link] = links
    assert (link.data["system"], link.data["object_type"], link.data["object_id"]) == (
        "hubspot", "contacts", "7001",
    )  # fmt: skip


async def test_a_lead_hubspot_lacks_becomes_a_contact_and_a_replay_writes_nothing_twice(
    stack, tmp_path
):
    async with HubSpotApiServer(TOKEN) as hubspot:
        # the answer to the task's creation is lost: the retry finds the task, makes no other
        hubspot.answers = [("lost", "POST /crm/v3/objects/tasks")]
        connectors = hubspot_out(owners={str(REP_ID): OWNER}, lead_status="IN_PROGRESS")
        async with notify_writing_to(
            stack, tmp_path, connectors, hubspot_api_url=hubspot.url,
            hubspot_private_app_token=TOKEN,
        ) as (notify, settings):  # fmt: skip
            mql = a_lead(2)
            # delivered twice by the broker: queued once
            await published_twice(settings, routed(mql))
            first = await eventually(lambda: settled(notify, mql.lead_id, "hubspot"), 60)
            # a replay writes again, and finds what is there
            replay = await notify.post(f"/v1/deliveries/{first['id']}/replay", headers=ADMIN)
            assert replay.status_code == 202, replay.text
            calls = len(hubspot.requests)
            await eventually(lambda: len(hubspot.requests) > calls + 2 or None, 30)
            again = await eventually(lambda: settled(notify, mql.lead_id, "hubspot"), 60)
            links = await linked(settings, mql.lead_id)

    [(contact_id, contact)] = hubspot.contacts.items()
    assert contact["properties"]["email"] == "lead2@example.com"
    assert contact["properties"]["firstname"] == "Zoe"
    assert contact["properties"]["hubspot_owner_id"] == OWNER
    assert contact["properties"]["hs_lead_status"] == "IN_PROGRESS"
    assert len(hubspot.contact_tasks(contact_id)) == 1
    assert first["attempts"] == 2  # the try whose answer was lost, then the one that found it
    assert again["id"] == first["id"]
    assert [e.data["object_id"] for e in links] == [contact_id]


async def test_a_429_is_waited_out_as_retry_after_asks_without_counting_a_try(stack, tmp_path):
    async with HubSpotApiServer(TOKEN) as hubspot:
        hubspot.answers = [("rate_limited", 2)]
        connectors = hubspot_out(owners={str(REP_ID): OWNER})
        async with notify_writing_to(
            stack, tmp_path, connectors, hubspot_api_url=hubspot.url,
            hubspot_private_app_token=TOKEN,
        ) as (notify, settings):  # fmt: skip
            mql = a_lead(3)
            await publish_events(settings, TOPIC_ROUTING, [routed(mql)])
            delivery = await eventually(lambda: settled(notify, mql.lead_id, "hubspot"), 60)

    refused, after = hubspot.requests[0], hubspot.requests[1]
    assert after["at"] - refused["at"] >= 1.9  # Retry-After: 2
    assert delivery["attempts"] == 1 and len(hubspot.tasks) == 1


async def test_hubspots_ten_second_window_is_kept_without_a_429(stack, tmp_path):
    async with HubSpotApiServer(TOKEN) as hubspot:
        hubspot.ten_second_limit = 8  # the account's window, as HubSpot counts it
        connectors = hubspot_out(owners={str(REP_ID): OWNER}, requests_per_10s=8)
        async with notify_writing_to(
            stack, tmp_path, connectors, hubspot_api_url=hubspot.url,
            hubspot_private_app_token=TOKEN,
        ) as (notify, settings):  # fmt: skip
            leads = [a_lead(n) for n in (20, 21, 22)]  # 4 calls each: 12 in all
            await publish_events(settings, TOPIC_ROUTING, [routed(mql) for mql in leads])
            written = [
                await eventually(lambda m=m: settled(notify, m.lead_id, "hubspot"), 60)
                for m in leads
            ]

    times = sorted(r["at"] for r in hubspot.requests)
    assert len(times) == 12  # no call refused and made again
    assert all(later - earlier >= 9.9 for earlier, later in zip(times, times[8:], strict=False))
    assert all(d["attempts"] == 1 for d in written) and len(hubspot.tasks) == 3


async def test_a_401_reads_the_token_again_once_then_dead_letters_with_a_reason(stack, tmp_path):
    token_file = tmp_path / "hubspot-token"
    token_file.write_text("pat-na1-revoked")
    async with HubSpotApiServer(TOKEN) as hubspot:
        connectors = hubspot_out(owners={str(REP_ID): OWNER})
        async with notify_writing_to(
            stack, tmp_path, connectors, hubspot_api_url=hubspot.url,
            hubspot_private_app_token_file=str(token_file),
        ) as (notify, settings):  # fmt: skip
            # the secret was rotated after notify read it: the 401 makes notify read it again
            token_file.write_text(TOKEN + "\n")
            first = a_lead(4)
            await publish_events(settings, TOPIC_ROUTING, [routed(first)])
            await eventually(lambda: settled(notify, first.lead_id, "hubspot"), 60)
            # revoked in HubSpot and not replaced: one more read of the file, then a dead letter
            hubspot.token = "pat-na1-new-one-nobody-has"
            calls = len(hubspot.requests)
            refusals = counted(metrics.crm_calls.labels("hubspot", "unauthorized"))
            dead_letters = counted(metrics.crm_writes.labels("hubspot", "dead_lettered"))
            second = a_lead(5)
            await publish_events(settings, TOPIC_ROUTING, [routed(second)])
            dead = await eventually(lambda: settled(notify, second.lead_id, "hubspot", "dead"), 60)
            connectors_view = (await notify.get("/v1/connectors")).json()

    assert [r["headers"]["authorization"] for r in hubspot.requests[:2]] == [
        "Bearer pat-na1-revoked", f"Bearer {TOKEN}",
    ]  # fmt: skip
    assert len(hubspot.requests) - calls == 2  # the refused call and its one retry, no more
    assert counted(metrics.crm_calls.labels("hubspot", "unauthorized")) - refusals == 2
    assert counted(metrics.crm_writes.labels("hubspot", "dead_lettered")) - dead_letters == 1
    assert dead["attempts"] == 1 and dead["last_status"] == 401
    assert "refused the private app token" in dead["last_error"]
    assert TOKEN not in dead["last_error"]
    assert connectors_view["hubspot"]["credentials"] == {"private_app_token": True}
    assert TOKEN not in str(connectors_view)


async def test_a_hubspot_that_is_down_loses_nothing_and_gets_every_lead_once_back(stack, tmp_path):
    async with HubSpotApiServer(TOKEN) as hubspot:
        hubspot.down = True
        connectors = hubspot_out(owners={str(REP_ID): OWNER})
        async with notify_writing_to(
            stack, tmp_path, connectors, hubspot_api_url=hubspot.url,
            hubspot_private_app_token=TOKEN,
        ) as (notify, settings):  # fmt: skip
            leads = [a_lead(n) for n in (6, 7, 8)]
            await publish_events(settings, TOPIC_ROUTING, [routed(mql) for mql in leads])

            async def retried_while_down():
                found = [await crm_deliveries(notify, m.lead_id, "hubspot") for m in leads]
                return all(
                    len(d) == 1 and d[0]["state"] == "pending" and d[0]["attempts"] >= 3
                    for d in found
                )

            await eventually(retried_while_down, timeout=60)
            hubspot.down = False
            written = [
                await eventually(lambda m=m: settled(notify, m.lead_id, "hubspot"), 60)
                for m in leads
            ]

    assert all(d["last_error"] is None for d in written)
    assert len(hubspot.contacts) == 3 and len(hubspot.tasks) == 3
    assert sorted(c["properties"]["email"] for c in hubspot.contacts.values()) == [
        "lead6@example.com", "lead7@example.com", "lead8@example.com",
    ]  # fmt: skip


async def test_an_erased_lead_is_not_written_and_its_crm_rows_say_nothing_of_it(stack, tmp_path):
    async with HubSpotApiServer(TOKEN) as hubspot:
        hubspot.down = True
        connectors = hubspot_out(owners={str(REP_ID): OWNER})
        async with notify_writing_to(
            stack, tmp_path, connectors, hubspot_api_url=hubspot.url,
            hubspot_private_app_token=TOKEN,
        ) as (notify, settings):  # fmt: skip
            mql = a_lead(23)
            await publish_events(settings, TOPIC_ROUTING, [routed(mql)])

            async def tried():
                found = await crm_deliveries(notify, mql.lead_id, "hubspot")
                return found and found[0]["attempts"] >= 1 and found[0]

            await eventually(tried, timeout=60)
            await publish_events(settings, TOPIC_INGEST, [LeadErased(lead_id=mql.lead_id)])
            cancelled = await eventually(
                lambda: settled(notify, mql.lead_id, "hubspot", "cancelled"), 60
            )
            hubspot.down = False
            db = Database(settings.database_url)
            try:
                async with db.unit_of_work() as session:
                    stored = await session.scalar(
                        sa.text("SELECT body FROM notify.deliveries WHERE id = :id"),
                        {"id": uuid.UUID(cancelled["id"])},
                    )
            finally:
                await db.dispose()

    assert cancelled["last_error"] == "lead erased"
    assert b"lead23@example.com" not in stored and b"Quant23" not in stored
    assert not hubspot.contacts and not hubspot.tasks


# --- Salesforce -----------------------------------------------------------------------------

CLIENT_ID = "3MVG9leadflowTestConsumerKey"
CLIENT_SECRET = "F0E1D2C3B4A5968778695A4B3C2D1E0F"
USER = "005000000000123AAA"


def salesforce_out(server: SalesforceServer, **outbound) -> dict:
    owners = {REP_EMAIL: USER}  # the rep's e-mail names their Salesforce user
    return {
        "salesforce": {
            "outbound": {"enabled": True, "login_url": server.url, "owners": owners, **outbound}
        }
    }


def org() -> SalesforceServer:
    server = SalesforceServer(CLIENT_ID, CLIENT_SECRET)
    server.users.add(USER)
    return server


async def test_a_routed_lead_owns_its_salesforce_lead_and_task_in_both_crms_linked_once_each(
    stack, tmp_path
):
    async with org() as salesforce, HubSpotApiServer(TOKEN) as hubspot:
        connectors = {**salesforce_out(salesforce), **hubspot_out(owners={REP_EMAIL: OWNER})}
        async with notify_writing_to(
            stack, tmp_path, connectors, hubspot_api_url=hubspot.url,
            hubspot_private_app_token=TOKEN, salesforce_client_id=CLIENT_ID,
            salesforce_client_secret=CLIENT_SECRET,
        ) as (notify, settings):  # fmt: skip
            await directory_known(settings)
            mql = a_lead(9)
            await publish_events(settings, TOPIC_ROUTING, [routed(mql)])
            first = await eventually(lambda: settled(notify, mql.lead_id, "salesforce"), 60)
            await eventually(lambda: settled(notify, mql.lead_id, "hubspot"), 60)
            # written again (a replay): the upserts find the Lead and the Task
            replay = await notify.post(f"/v1/deliveries/{first['id']}/replay", headers=ADMIN)
            assert replay.status_code == 202, replay.text
            calls = len(salesforce.requests)
            await eventually(lambda: len(salesforce.requests) >= calls + 2 or None, 30)
            await eventually(lambda: settled(notify, mql.lead_id, "salesforce"), 60)
            links = await linked(settings, mql.lead_id)
            view = (await notify.get("/v1/connectors")).json()

    [lead] = salesforce.leads.values()
    assert lead["Leadflow_Lead_Id__c"] == str(mql.lead_id)
    assert (lead["OwnerId"], lead["Status"]) == (USER, "Open - Not Contacted")
    assert (lead["LastName"], lead["Company"], lead["Email"]) == (
        "Quant9", "Co 9", "lead9@example.com",
    )  # fmt: skip
    [task] = salesforce.tasks.values()
    assert (task["WhoId"], task["OwnerId"]) == (lead["Id"], USER)
    assert (task["ActivityDate"], task["ReminderDateTime"]) == ("2026-12-02", DUE)
    assert task["Subject"] == "Follow up with Zoe Quant9 (Co 9)"
    assert len(salesforce.token_requests()) == 1  # kept for the replay
    assert {(e.data["system"], e.data["object_type"]) for e in links} == {
        ("salesforce", "Lead"), ("hubspot", "contacts"),
    }  # fmt: skip
    assert len(links) == 2
    assert [e.data["object_id"] for e in links if e.data["system"] == "salesforce"] == [lead["Id"]]
    assert view["salesforce"]["credentials"] == {"client_id": True, "client_secret": True}
    assert view["salesforce"]["outbound"]["owners"] == {REP_EMAIL: USER}
    assert CLIENT_SECRET not in str(view) and TOKEN not in str(view)


async def test_a_salesforce_401_takes_a_new_token_once_then_dead_letters_with_a_reason(
    stack, tmp_path
):
    async with org() as salesforce:
        async with notify_writing_to(
            stack, tmp_path, salesforce_out(salesforce, owners={str(REP_ID): USER}),
            salesforce_client_id=CLIENT_ID, salesforce_client_secret=CLIENT_SECRET,
        ) as (notify, settings):  # fmt: skip
            first = a_lead(10)
            await publish_events(settings, TOPIC_ROUTING, [routed(first)])
            await eventually(lambda: settled(notify, first.lead_id, "salesforce"), 60)
            # the org ended the session before its timeout: one new token, and on
            salesforce.expire_tokens()
            second = a_lead(11)
            await publish_events(settings, TOPIC_ROUTING, [routed(second)])
            renewed = await eventually(lambda: settled(notify, second.lead_id, "salesforce"), 60)
            # the org refuses every token (the integration user lost API access)
            salesforce.refuse_tokens = True
            third = a_lead(12)
            await publish_events(settings, TOPIC_ROUTING, [routed(third)])
            dead = await eventually(
                lambda: settled(notify, third.lead_id, "salesforce", "dead"), 60
            )

    assert renewed["attempts"] == 1 and len(salesforce.leads) == 2
    assert len(salesforce.token_requests()) == 3  # the first, after the expiry, after the refusal
    assert dead["attempts"] == 1 and dead["last_status"] == 401
    assert dead["last_error"].startswith("Salesforce refused a new access token")
    assert "INVALID_SESSION_ID" in dead["last_error"]
    form = salesforce.token_requests()[0]["form"]
    assert form == {
        "grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
    }  # fmt: skip


async def test_a_salesforce_that_is_down_loses_nothing(stack, tmp_path):
    async with org() as salesforce:
        salesforce.down = True
        async with notify_writing_to(
            stack, tmp_path, salesforce_out(salesforce, owners={str(REP_ID): USER}),
            salesforce_client_id=CLIENT_ID, salesforce_client_secret=CLIENT_SECRET,
        ) as (notify, settings):  # fmt: skip
            leads = [a_lead(n) for n in (13, 14)]
            await publish_events(settings, TOPIC_ROUTING, [routed(mql) for mql in leads])

            async def retried_while_down():
                found = [await crm_deliveries(notify, m.lead_id, "salesforce") for m in leads]
                return all(len(d) == 1 and d[0]["attempts"] >= 3 for d in found) and all(
                    d[0]["state"] == "pending" for d in found
                )

            await eventually(retried_while_down, timeout=60)
            salesforce.down = False
            for m in leads:
                await eventually(lambda m=m: settled(notify, m.lead_id, "salesforce"), 60)

    assert len(salesforce.leads) == 2 and len(salesforce.tasks) == 2
