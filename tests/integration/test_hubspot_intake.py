"""HubSpot intake over the real PostgreSQL and broker, against a local server implementing
HubSpot's documented contract of the contacts batch read (leadflow_tools/hubspot_server.py):
contacts whose webhooks carry only ids are read whole, with the private app's token, waiting as a
429 asks; a HubSpot that cannot be read loses no webhook event; a broken mapping file stops
ingest; and a HubSpot contact with a senior title, a deciding buying role, a fitting company and
enough engagement becomes an MQL under the default policy."""

import time
from datetime import UTC, datetime

import orjson
import pytest
from leadflow_ingest.domain.hubspot import signature_v3
from leadflow_ingest.domain.hubspot_mapping import MappingError
from leadflow_ingest.hubspot_crm import HubSpotCrm, HubSpotTokenUnreadable
from leadflow_tools.hubspot_server import HubSpotApiServer
from pydantic import SecretStr
from support.harness import ADMIN, emitted, eventually, rows_in, service_client

SECRET = "hs-client-secret-for-tests"
TOKEN = "pat-eu1-00000000-1111-2222-3333-444444444444"
PORTAL = 62515
UPDATED = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)

GRACE = {
    "email": "Grace.Hopper@Analytical-Engines.example",
    "firstname": "Grace",
    "lastname": "Hopper",
    "jobtitle": "Prezes Zarządu",
    "hs_buying_role": "CHAMPION;DECISION_MAKER",
    "company": "Analytical Engines",
    "industry": "Computer Software",
    "numberofemployees": "250",
    "country": "Poland",
    "hs_analytics_source": "PAID_SEARCH",
    "hs_analytics_source_data_1": "q4-lead-routing",
    "first_conversion_event_name": "SLA playbook: Landing page form",
    "hs_legal_basis": "Freely given consent from contact",
}


def hubspot_request(events, *, timestamp=None):
    body = orjson.dumps(events)
    ts = str(timestamp if timestamp is not None else int(time.time() * 1000))
    uri = "http://ingest/v1/sources/hubspot/webhook"
    headers = {
        "Content-Type": "application/json",
        "X-HubSpot-Request-Timestamp": ts,
        "X-HubSpot-Signature-v3": signature_v3(SECRET, "POST", uri, body, ts),
    }
    return body, headers


def hs_event(event_id, kind, object_id=901, prop=None, value=None, after_read=False):
    # before the contact's last change HubSpot reports, unless `after_read`
    offset = 60_000 if after_read else -60_000
    event = {
        "eventId": event_id, "subscriptionId": 11, "portalId": PORTAL,
        "occurredAt": int(UPDATED.timestamp() * 1000) + offset + event_id,
        "subscriptionType": kind, "attemptNumber": 0, "objectId": object_id,
        "changeSource": "CRM",
    }  # fmt: skip
    if prop:
        event |= {"propertyName": prop, "propertyValue": value}
    return event


async def post_webhook(ingest, events):
    body, headers = hubspot_request(events)
    return await ingest.post("/v1/sources/hubspot/webhook", content=body, headers=headers)


@pytest.fixture
async def hubspot():
    async with HubSpotApiServer(TOKEN) as server:
        server.add_contact(901, GRACE, UPDATED)
        yield server


@pytest.fixture
async def settings(stack, hubspot):
    return await stack.isolated_settings(
        hubspot_client_secret=SECRET,
        hubspot_private_app_token=TOKEN,
        hubspot_api_url=hubspot.url,
    )


@pytest.fixture
async def ingest(settings):
    async with service_client("ingest", settings) as client:
        client.settings = settings
        yield client


async def test_a_contact_known_only_by_its_id_is_read_from_hubspot_and_arrives_with_context(
    ingest, hubspot
):
    answer = await post_webhook(ingest, [hs_event(1, "contact.creation")])
    assert answer.status_code == 200, answer.text
    [made] = answer.json()["leads"]
    assert made["status"] == 202
    lead = (await ingest.get(f"/v1/leads/{made['lead_id']}")).json()
    assert lead["email"] == "grace.hopper@analytical-engines.example"
    assert lead["external_id"] == f"hubspot:{PORTAL}:901"
    assert (lead["title"], lead["seniority"], lead["role"]) == (
        "Prezes Zarządu", "c_level", "decision_maker",
    )  # fmt: skip
    assert lead["company"]["industry"] == "software"
    assert lead["company"]["employees"] == 250
    assert lead["source"] == {
        "system": "hubspot", "channel": "inbound", "medium": "paid_search",
        "campaign": "q4-lead-routing", "lead_magnet": "SLA playbook: Landing page form",
        "utm": None,
    }  # fmt: skip
    assert lead["context_missing"] == ["intent_note"]

    [read] = hubspot.batch_reads()
    assert read["headers"]["authorization"] == f"Bearer {TOKEN}"
    assert read["headers"]["content-type"] == "application/json"
    assert read["json"]["inputs"] == [{"id": "901"}]
    assert read["json"]["propertiesWithHistory"] == []
    assert {"email", "jobtitle", "hs_buying_role", "hs_analytics_source",
            "first_conversion_event_name"} <= set(read["json"]["properties"])  # fmt: skip

    # once every property is known, a change arrives by webhook alone; one older than what
    # was read changes nothing, a newer one replaces it
    older = hs_event(2, "contact.propertyChange", prop="jobtitle", value="Marketing Intern")
    newer = hs_event(3, "contact.propertyChange", prop="jobtitle", value="Office Manager",
                     after_read=True)  # fmt: skip
    changed = await post_webhook(ingest, [older, newer])
    assert changed.status_code == 200, changed.text
    assert len(hubspot.batch_reads()) == 1
    lead = (await ingest.get(f"/v1/leads/{made['lead_id']}")).json()
    assert (lead["title"], lead["seniority"]) == ("Office Manager", "individual")


async def test_a_rate_limited_read_waits_as_hubspot_s_retry_after_asks(ingest, hubspot):
    hubspot.answers = [("rate_limited", 1)]
    started = time.monotonic()
    answer = await post_webhook(ingest, [hs_event(1, "contact.creation")])
    assert answer.status_code == 200, answer.text
    assert answer.json()["leads"][0]["status"] == 202
    assert len(hubspot.batch_reads()) == 2
    assert time.monotonic() - started >= 1.0


async def test_a_hubspot_that_cannot_be_read_loses_no_webhook_event(ingest, hubspot):
    hubspot.down = True
    batch = [hs_event(1, "contact.creation"),
             hs_event(2, "contact.propertyChange", prop="lifecyclestage", value="lead")]  # fmt: skip
    refused = await post_webhook(ingest, batch)
    assert refused.status_code == 503, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert int(refused.headers["retry-after"]) >= 1
    assert len(hubspot.batch_reads()) >= 2  # retried within the budget
    assert await rows_in(ingest.settings, "ingest.hubspot_events") == 0  # nothing recorded
    assert await rows_in(ingest.settings, "ingest.hubspot_contacts") == 0

    # HubSpot sends the batch again later; now it can be read and nothing is a duplicate
    hubspot.down = False
    again = await post_webhook(ingest, batch)
    assert again.status_code == 200, again.text
    assert again.json()["duplicates"] == 0
    [made] = again.json()["leads"]
    lead = (await ingest.get(f"/v1/leads/{made['lead_id']}")).json()
    assert lead["role"] == "decision_maker"
    assert lead["properties"]["hubspot"] == {"lifecyclestage": "lead"}


async def test_a_refused_token_is_a_503_so_hubspot_keeps_the_batch(stack, hubspot, capsys):
    settings = await stack.isolated_settings(
        hubspot_client_secret=SECRET,
        hubspot_private_app_token="pat-revoked",
        hubspot_api_url=hubspot.url,
    )
    async with service_client("ingest", settings) as ingest:
        refused = await post_webhook(ingest, [hs_event(1, "contact.creation")])
        assert refused.status_code == 503
        assert "INVALID_AUTHENTICATION" in refused.json()["detail"]
        assert "pat-revoked" not in refused.text
        logged = capsys.readouterr().err
        assert "HubSpot refused to read contacts" in logged  # the operator is told why
        assert "INVALID_AUTHENTICATION" in logged
        assert "pat-revoked" not in logged
        assert len(hubspot.batch_reads()) == 1  # no retry mends a refused token
        assert await rows_in(settings, "ingest.hubspot_events") == 0


async def test_the_token_may_come_from_a_secret_file(stack, hubspot, tmp_path):
    secret = tmp_path / "hubspot-token"
    secret.write_text(TOKEN + "\n")
    settings = await stack.isolated_settings(
        hubspot_client_secret=SECRET, hubspot_private_app_token_file=str(secret),
        hubspot_api_url=hubspot.url,
    )  # fmt: skip
    async with service_client("ingest", settings) as ingest:
        answer = await post_webhook(ingest, [hs_event(1, "contact.creation")])
        assert answer.json()["leads"][0]["status"] == 202
    assert hubspot.batch_reads()[0]["headers"]["authorization"] == f"Bearer {TOKEN}"
    missing = await stack.isolated_settings(hubspot_private_app_token_file=str(tmp_path / "no"))
    with pytest.raises(HubSpotTokenUnreadable):
        async with service_client("ingest", missing):
            pass


async def test_a_contact_hubspot_does_not_have_waits_for_its_email(ingest, hubspot):
    answer = await post_webhook(ingest, [hs_event(1, "contact.creation", object_id=404)])
    assert answer.status_code == 200, answer.text
    assert answer.json()["waiting_for_email"] == 1
    assert await rows_in(ingest.settings, "ingest.hubspot_events") == 1
    assert hubspot.batch_reads()[0]["json"]["inputs"] == [{"id": "404"}]


async def test_a_mapping_file_changes_what_contacts_mean(stack, hubspot, tmp_path):
    mapping = tmp_path / "hubspot-mapping.yaml"
    mapping.write_text("sources:\n  PAID_SEARCH: {channel: partner, medium: paid}\n")
    settings = await stack.isolated_settings(
        hubspot_client_secret=SECRET, hubspot_private_app_token=TOKEN,
        hubspot_api_url=hubspot.url, hubspot_mapping_file=str(mapping),
    )  # fmt: skip
    async with service_client("ingest", settings) as ingest:
        answer = await post_webhook(ingest, [hs_event(1, "contact.creation")])
        [made] = answer.json()["leads"]
        lead = (await ingest.get(f"/v1/leads/{made['lead_id']}")).json()
        assert (lead["source"]["channel"], lead["source"]["medium"]) == ("partner", "paid")


async def test_a_mapping_file_with_an_unknown_field_stops_ingest_naming_the_line(stack, tmp_path):
    mapping = tmp_path / "hubspot-mapping.yaml"
    mapping.write_text("buying_roles:\n  CHAMPION: influencer\nsourcez: {}\n")
    settings = await stack.isolated_settings(hubspot_mapping_file=str(mapping))
    with pytest.raises(MappingError) as refused:
        async with service_client("ingest", settings):
            pass
    assert "line 3: sourcez: Extra inputs are not permitted" in str(refused.value)


async def test_a_hubspot_contact_becomes_an_mql_under_the_default_policy(settings, hubspot):
    async with (
        service_client("ingest", settings) as ingest,
        service_client("scoring", settings) as scoring,
    ):
        answer = await post_webhook(ingest, [hs_event(1, "contact.creation")])
        assert answer.status_code == 200, answer.text
        lead_id = answer.json()["leads"][0]["lead_id"]
        for activity in ({"type": "demo_request"},
                         {"type": "page_view", "page_category": "pricing"},
                         {"type": "page_view", "page_category": "docs"}):  # fmt: skip
            body = {"email": GRACE["email"], **activity}
            posted = await ingest.post("/v1/activities", json=body, headers=ADMIN)
            assert posted.status_code == 202, posted.text

        async def promoted():
            found = await emitted(settings, "lead.mql", "scoring")
            return found or None

        [mql] = await eventually(promoted, timeout=60)
        data = mql.data
        assert data["lead_id"] == lead_id
        assert (data["fit"], data["engagement"]) == (100, 52.0)
        assert (data["role"], data["seniority"]) == ("decision_maker", "c_level")
        assert data["channel"] == "inbound"
        assert data["source"]["medium"] == "paid_search"
        assert data["source"]["campaign"] == "q4-lead-routing"
        assert [r.split(":")[0] for r in data["reasons"]] == [
            "fit_met", "engagement_met", "role_eligible",
        ]  # fmt: skip
        score = (await scoring.get(f"/v1/leads/{lead_id}/score")).json()
        assert score["is_mql"] is True


async def test_more_than_100_contacts_are_read_in_batches_of_100(hubspot, caplog):
    for contact_id in range(1000, 1150):
        hubspot.add_contact(contact_id, {"email": f"c{contact_id}@example.com"}, UPDATED)
    crm = HubSpotCrm(hubspot.url, SecretStr(TOKEN))
    hubspot.answers = [("error", None)]
    found = await crm.read_contacts(list(range(1000, 1151)), ["email", "jobtitle"])
    assert sorted(found) == list(range(1000, 1150))  # 1150 is not in the account
    assert found[1000].properties == {"email": "c1000@example.com", "jobtitle": None}
    assert found[1000].updated_at == int(UPDATED.timestamp() * 1000)
    sizes = [len(r["json"]["inputs"]) for r in hubspot.batch_reads()]
    assert sizes == [100, 100, 51]  # the first tried again after HubSpot's 500
    assert TOKEN not in caplog.text
