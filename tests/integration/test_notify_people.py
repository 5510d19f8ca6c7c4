"""People hear of their leads' clocks: the escalation ladder decides who (warning and breach →
the rep, the team-lead step → the team lead, the manager step → the manager), on every channel
they have (e-mail to a real SMTP server process, the team's Slack and Teams channels, local
servers implementing the vendors' documented webhook contracts), each level once, in their
language, as digests within a window, and outside their working hours only a manager-level
escalation at once. Routing and notify run in this process on the real PostgreSQL and broker."""

import uuid
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from leadflow.contracts.events import TOPIC_SCORING, TOPIC_SLA, SlaEscalated, SlaWarning
from leadflow.db import Database
from leadflow_routing.models import FALLBACK_TEAM_ID
from support.chat_receivers import SlackWebhookReceiver, TeamsWorkflowReceiver
from support.harness import (
    ADMIN,
    eventually,
    publish_events,
    routing_and_notify,
    sample_breach,
    sample_mql,
)
from support.smtp_server import SmtpServer

REP = {"name": "Ola Nowak", "email": "ola@vendor.example", "slack_member_id": "U0REP0001"}
LEAD = {"name": "Tom Lead", "email": "tom@vendor.example", "slack_member_id": "U0LEAD001"}
MANAGER = {"name": "Mia Boss", "email": "mia@vendor.example", "teams_upn": "mia@vendor.example"}


def ladder(lead_id: uuid.UUID, rep_id: str, timer_id: uuid.UUID) -> list:
    """A first-response clock's four levels, as sla-timer emits them."""
    breach = sample_breach(lead_id, team="fallback").model_copy(
        update={"timer_id": timer_id, "rep_id": uuid.UUID(rep_id)}
    )
    common = breach.model_dump(include=set(SlaWarning.model_fields) - {"level"})
    return [
        SlaWarning(**common, level="warning"),
        breach,
        SlaEscalated(**common, level="escalated_team_lead", escalate_to="team_lead"),
        SlaEscalated(**common, level="escalated_manager", escalate_to="manager"),
    ]


async def routed_lead(notify, settings, rep: dict, team: dict) -> tuple[uuid.UUID, str]:
    """The fallback team with its people and channels, one rep, and a lead routed to the rep
    that notify knows (its context and the team's directory)."""
    routing = notify.routing
    changed = await routing.patch(f"/v1/teams/{FALLBACK_TEAM_ID}", json=team, headers=ADMIN)
    assert changed.status_code == 200, changed.text
    created = await routing.post("/v1/reps", json=rep, headers=ADMIN)
    assert created.status_code == 201, created.text
    mql = sample_mql(1).model_copy(update={"first_name": "Zoe", "last_name": "Quant"})
    await publish_events(settings, TOPIC_SCORING, [mql])
    db = Database(settings.database_url)

    async def known():
        async with db.unit_of_work() as session:
            return await session.scalar(
                sa.text(
                    "SELECT count(*) = 1 FROM notify.lead_context WHERE lead_id = :id "
                    "AND context->'assignment'->>'rep_id' IS NOT NULL"
                ),
                {"id": mql.lead_id},
            ) and await session.scalar(
                sa.text(
                    "SELECT count(*) = 1 FROM notify.team_directory WHERE team_id = :team "
                    "AND jsonb_array_length(directory->'reps') = 1"
                ),
                {"team": FALLBACK_TEAM_ID},
            )

    try:
        await eventually(known, timeout=60)
    finally:
        await db.dispose()
    return mql.lead_id, created.json()["id"]


async def notices(notify, lead_id) -> list[dict]:
    response = await notify.get("/v1/notices", params={"lead_id": str(lead_id), "limit": 500})
    assert response.status_code == 200, response.text
    return response.json()["items"]


async def all_settled(notify, lead_id, expected: int):
    found = await notices(notify, lead_id)
    return found if len(found) == expected and all(n["state"] != "pending" for n in found) else None


async def test_each_level_reaches_its_person_once_on_every_channel(stack, tmp_path):
    with SmtpServer(tmp_path / "mail") as smtp:
        settings = await stack.isolated_settings(
            smtp_host="127.0.0.1",
            smtp_port=smtp.port,
            smtp_starttls=False,
            notify_digest_window=0,
        )
        async with (
            SlackWebhookReceiver() as slack,
            TeamsWorkflowReceiver() as teams,
            routing_and_notify(settings) as notify,
        ):
            team = {
                "team_lead": LEAD,
                "manager": MANAGER,
                "slack_webhook_url": slack.url,
                "teams_webhook_url": teams.url,
            }
            rep = {**REP, "language": "pl", "timezone": "Europe/Warsaw"}
            lead_id, rep_id = await routed_lead(notify, settings, rep, team)
            timer = uuid.uuid4()
            levels = ladder(lead_id, rep_id, timer)
            await publish_events(settings, TOPIC_SLA, levels)
            # the same levels again (a replay): nobody hears anything twice
            await publish_events(settings, TOPIC_SLA, ladder(lead_id, rep_id, timer))
            found = await eventually(lambda: all_settled(notify, lead_id, 12), timeout=60)
            mail = await eventually(
                lambda: len(smtp.messages()) >= 3 and smtp.messages(), timeout=30
            )

    assert {n["state"] for n in found} == {"sent"}
    heard = {(n["recipient"].split(":")[0], n["level"], n["channel"]) for n in found}
    assert heard == {
        (who, level, channel)
        for who, level in (
            ("rep", "warning"),
            ("rep", "breach"),
            ("team_lead", "team_lead"),
            ("manager", "manager"),
        )
        for channel in ("email", "slack", "teams")
    }
    # e-mail: the rep's warning and breach (one digest or two messages), the team lead's and
    # the manager's escalation; each Message-ID once
    to = sorted(address for m in mail for address in m.rcpt_tos)
    assert to.count(LEAD["email"]) == 1 and to.count(MANAGER["email"]) == 1
    assert 1 <= to.count(REP["email"]) <= 2
    assert len({m.message["Message-ID"] for m in mail}) == len(mail)
    rep_mail = [m for m in mail if REP["email"] in m.rcpt_tos]
    assert all(m.message["Content-Language"] == "pl" for m in rep_mail)  # the rep reads Polish
    text = "".join(m.message.get_body(("plain",)).get_content() for m in rep_mail)
    assert "Zoe Quant" in text and "Co 1" in text
    # Slack: the rep mentioned in their messages, the team lead in theirs; one ref per message
    mentions = [p["text"] for p in slack.accepted]
    assert any("<@U0REP0001>" in t for t in mentions) and any("<@U0LEAD001>" in t for t in mentions)
    refs = [
        b["elements"][0]["text"]
        for p in slack.accepted
        for b in p["blocks"]
        if b["type"] == "context" and b["elements"][0]["text"].startswith("ref ")
    ]
    assert len(refs) == len(set(refs)) == len(slack.accepted)
    assert slack.refused == [] and teams.refused == []
    assert len(teams.accepted) == len({n["message_id"] for n in found if n["channel"] == "teams"})


async def test_a_storm_of_breaches_is_one_digest_per_recipient_per_window(stack):
    settings = await stack.isolated_settings(notify_digest_window=3)
    async with SlackWebhookReceiver() as slack, routing_and_notify(settings) as notify:
        lead_id, rep_id = await routed_lead(notify, settings, REP, {"slack_webhook_url": slack.url})
        breaches = [
            sample_breach(lead_id, team="fallback").model_copy(
                update={"timer_id": uuid.uuid4(), "rep_id": uuid.UUID(rep_id)}
            )
            for _ in range(120)
        ]
        await publish_events(settings, TOPIC_SLA, breaches)
        found = await eventually(lambda: all_settled(notify, lead_id, 120), timeout=90)
    assert {n["state"] for n in found} == {"sent"}
    messages = {n["message_id"] for n in found}
    # one message at once, then what came meanwhile as one digest a window later (a slow
    # consumer may split the storm across one more window)
    assert 1 <= len(messages) <= 3, len(messages)
    assert len(slack.accepted) == len(messages)


async def test_outside_working_hours_only_the_manager_hears_at_once(stack):
    settings = await stack.isolated_settings(notify_digest_window=0)
    now = datetime.now(UTC)
    tomorrow = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")[
        (now + timedelta(days=1)).weekday()
    ]
    asleep = {"timezone": "UTC", "working_hours": {tomorrow: [["09:00", "10:00"]]}}
    async with SlackWebhookReceiver() as slack, routing_and_notify(settings) as notify:
        team = {"manager": {**MANAGER, **asleep}, "slack_webhook_url": slack.url}
        lead_id, rep_id = await routed_lead(notify, settings, REP, team)
        # the rep's hours change after the lead reached them: routing tells notify
        changed = await notify.routing.patch(f"/v1/reps/{rep_id}", json=asleep, headers=ADMIN)
        assert changed.status_code == 200, changed.text
        db = Database(settings.database_url)

        async def hours_known():
            async with db.unit_of_work() as session:
                return await session.scalar(
                    # the new hours themselves: before the change the rep's are JSON null,
                    # which is not an SQL NULL
                    sa.text(
                        "SELECT jsonb_exists(directory->'reps'->0->'working_hours', :day) "
                        "FROM notify.team_directory WHERE team_id = :team"
                    ),
                    {"team": FALLBACK_TEAM_ID, "day": tomorrow},
                )

        try:
            await eventually(hours_known, timeout=60)
        finally:
            await db.dispose()
        _, breach, _, manager = ladder(lead_id, rep_id, uuid.uuid4())
        await publish_events(settings, TOPIC_SLA, [breach, manager])

        async def both_queued():
            found = await notices(notify, lead_id)
            last[:] = found
            states = {n["level"]: n for n in found}
            return (
                states
                if states.get("manager", {}).get("state") == "sent" and "breach" in states
                else None
            )

        last: list = []

        async def describe_found():
            last[:] = await notices(notify, lead_id)

        states = await eventually(both_queued, timeout=60, describe=lambda: f"notices: {last}")
    assert states["breach"]["state"] == "pending"  # held for the rep's morning
    held_until = datetime.fromisoformat(states["breach"]["next_attempt_at"])
    assert held_until > now + timedelta(hours=1)
    assert len(slack.accepted) == 1


async def test_someone_with_no_channel_is_reported_undeliverable(stack):
    settings = await stack.isolated_settings(notify_digest_window=0)
    async with routing_and_notify(settings) as notify:
        lead_id, rep_id = await routed_lead(notify, settings, {"name": "No Address"}, {})
        _, breach, _, _ = ladder(lead_id, rep_id, uuid.uuid4())
        await publish_events(settings, TOPIC_SLA, [breach])
        [notice] = await eventually(lambda: notices(notify, lead_id), timeout=60)
    assert (notice["state"], notice["channel"]) == ("undeliverable", "none")
    assert notice["last_error"] == "no address for any channel"


def alertmanager_body(status: str, fingerprints=("a1b2c3", "d4e5f6")) -> dict:
    """Alertmanager's webhook body (payload version 4) for two alerts of one group."""
    started = "2026-12-04T10:00:00Z"
    return {
        "version": "4",
        "groupKey": '{}:{alertname="LeadflowSlaBreaches"}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "notify",
        "groupLabels": {"alertname": "LeadflowSlaBreaches"},
        "commonLabels": {"alertname": "LeadflowSlaBreaches", "severity": "critical"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": [
            {
                "status": status,
                "labels": {
                    "alertname": "LeadflowSlaBreaches",
                    "severity": "critical",
                    "channel": c,
                },
                "annotations": {"summary": f"first responses breached on {c}"},
                "startsAt": started,
                "endsAt": "2026-12-04T11:00:00Z"
                if status == "resolved"
                else "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus:9090/graph",
                "fingerprint": fingerprint,
            }
            for c, fingerprint in zip(("inbound", "partner"), fingerprints, strict=True)
        ],
    }


async def test_alertmanager_alerts_reach_the_on_call_person_once_each(stack):
    async with SlackWebhookReceiver() as slack:
        settings = await stack.isolated_settings(
            notify_digest_window=0, oncall_name="Ops", oncall_slack_webhook_url=slack.url
        )
        async with routing_and_notify(settings) as notify:
            anonymous = await notify.post(
                "/v1/alerts/alertmanager", json=alertmanager_body("firing")
            )
            assert anonymous.status_code == 401
            wrong = await notify.post(
                "/v1/alerts/alertmanager",
                json={**alertmanager_body("firing"), "version": "3"},
                headers=ADMIN,
            )
            assert wrong.status_code == 422 and wrong.json()["errors"][0]["field"] == "version"
            for _ in range(2):  # Alertmanager repeats a group's notification
                taken = await notify.post(
                    "/v1/alerts/alertmanager", json=alertmanager_body("firing"), headers=ADMIN
                )
                assert taken.status_code == 202, taken.text
                assert taken.json() == {"accepted": 2, "notices": 2}
            await eventually(lambda: slack.accepted or None, timeout=30)
            resolved = await notify.post(
                "/v1/alerts/alertmanager", json=alertmanager_body("resolved"), headers=ADMIN
            )
            assert resolved.status_code == 202
            await eventually(lambda: len(slack.accepted) >= 2 or None, timeout=30)
            sent = await notify.get("/v1/notices", params={"state": "sent"})
    assert sorted(n["level"] for n in sent.json()["items"]) == [
        "firing",
        "firing",
        "resolved",
        "resolved",
    ]
    assert len(slack.accepted) == 2  # the two firing alerts as one message, then their end
    first = slack.accepted[0]["text"] + str(slack.accepted[0]["blocks"])
    assert "LeadflowSlaBreaches" in first and "first responses breached on partner" in first


async def test_a_throttling_or_refusing_channel_is_retried_then_dead_lettered_and_replayed(
    stack, tmp_path
):
    with SmtpServer(tmp_path / "mail", refused=(REP["email"],)) as smtp:
        settings = await stack.isolated_settings(
            smtp_host="127.0.0.1",
            smtp_port=smtp.port,
            smtp_starttls=False,
            notify_digest_window=0,
            webhook_retry_schedule=(0, 1, 1),
        )
        async with SlackWebhookReceiver() as slack, routing_and_notify(settings) as notify:
            slack.answer, slack.retry_after = "rate_limited", 1
            lead_id, rep_id = await routed_lead(
                notify, settings, REP, {"slack_webhook_url": slack.url}
            )
            _, breach, _, _ = ladder(lead_id, rep_id, uuid.uuid4())
            await publish_events(settings, TOPIC_SLA, [breach])
            # Slack answers 429 with Retry-After: tried again after it, then it is accepted
            await eventually(lambda: len(slack.refused) >= 2 or None, timeout=30)
            slack.answer = "ok"

            async def by_channel():
                found = {n["channel"]: n for n in await notices(notify, lead_id)}
                done = all(n["state"] in ("sent", "dead") for n in found.values())
                return found if len(found) == 2 and done else None

            found = await eventually(by_channel, timeout=60)
            assert found["slack"]["state"] == "sent" and found["slack"]["attempts"] == 3
            assert len(slack.accepted) == 1
            # the mail server refuses the rep's address for good (550): dead at once, with why
            dead = found["email"]
            assert (dead["state"], dead["attempts"], dead["last_status"]) == ("dead", 1, 550)
            assert "550" in dead["last_error"]
            anonymous = await notify.post(f"/v1/notices/{dead['id']}/replay")
            assert anonymous.status_code == 401
            replay = await notify.post(f"/v1/notices/{dead['id']}/replay", headers=ADMIN)
            assert replay.status_code == 202, replay.text

            async def tried_again():
                again = {n["channel"]: n for n in await notices(notify, lead_id)}["email"]
                return (
                    again
                    if again["state"] == "dead" and again["message_id"] != dead["message_id"]
                    else None
                )

            await eventually(tried_again, timeout=60)
            unknown = await notify.post(f"/v1/notices/{uuid.uuid4()}/replay", headers=ADMIN)
            assert unknown.status_code == 404
