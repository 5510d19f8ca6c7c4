"""What notify's messages say: Slack Block Kit, Teams Adaptive Cards and e-mail, in English and
Polish, one notice or a digest, times in the recipient's zone; payloads checked against the local
receivers implementing Slack's and Teams' documented webhook contracts."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime

import httpx
import pytest
from leadflow_notify.domain.messages import (
    Notice,
    Recipient,
    email_message,
    format_due,
    slack_message,
    subject,
    teams_message,
)
from support.chat_receivers import (
    SlackWebhookReceiver,
    TeamsWorkflowReceiver,
    slack_payload_problems,
    teams_payload_problems,
)

DUE = datetime(2026, 12, 7, 9, 30, tzinfo=UTC)  # a Monday; 10:30 in Warsaw

ANNA = Recipient(
    name="Anna Nowak",
    email="anna@example.com",
    slack_member_id="U024BE7LH",
    teams_upn="anna@contoso.onmicrosoft.com",
    language="en",
    timezone="Europe/Warsaw",
)
BREACH = Notice(
    event_type="sla.breached",
    level="breach",
    lead_id="5f0c6a1e-3b7d-4c1a-9d7e-2f4b8a6c1d3e",
    lead_name="Jane Doe",
    company="Acme",
    source="hubspot",
    score=82.0,
    rep_name="Piotr Zieliński",
    sla="first_response",
    due_at=DUE,
    timeline_url="http://127.0.0.1:8005/review/leads/5f0c6a1e-3b7d-4c1a-9d7e-2f4b8a6c1d3e",
)
BARE = Notice(
    event_type="lead.routed",
    level="routed",
    lead_id="0b9e2d4c-1a3f-4e5d-8c7b-6a5f4e3d2c1b",
    lead_name=None,
    company=None,
    source=None,
    score=None,
    rep_name=None,
    sla=None,
    due_at=None,
    timeline_url="http://127.0.0.1:8005/review/leads/0b9e2d4c-1a3f-4e5d-8c7b-6a5f4e3d2c1b",
)
SENDER = "Leadflow <leadflow@example.com>"
UNSUBSCRIBE = "https://leadflow.example.com/v1/unsubscribe?token=abc"


def several(n: int) -> list[Notice]:
    return [
        replace(BREACH, lead_id=f"lead-{i:04d}", lead_name=f"Lead number {i}") for i in range(n)
    ]


def slack_texts(payload: dict) -> str:
    return json.dumps(payload, ensure_ascii=False)


def plain_and_html(message) -> tuple[str, str]:
    return (
        message.get_body(("plain",)).get_content(),
        message.get_body(("html",)).get_content(),
    )


def test_a_breach_names_the_lead_company_sla_level_and_due_time():
    payload = slack_message(ANNA, [BREACH])
    section = payload["blocks"][2]["text"]["text"]
    assert payload["blocks"][0] == {
        "type": "header",
        "text": {"type": "plain_text", "text": "SLA breached: Jane Doe"},
    }
    assert "*SLA breached: Jane Doe* · Acme" in section
    assert "Status: SLA first response: breached" in section
    assert "Due: Mon 7 Dec, 10:30 (Europe/Warsaw)" in section
    assert "Rep: Piotr Zieliński · Score: 82 · Source: hubspot" in section
    assert payload["blocks"][2]["accessory"]["url"] == BREACH.timeline_url


def test_the_due_time_is_shown_in_the_recipients_zone_with_its_name():
    assert format_due(DUE, ANNA) == "Mon 7 Dec, 10:30 (Europe/Warsaw)"
    assert format_due(DUE, replace(ANNA, timezone="America/New_York")) == (
        "Mon 7 Dec, 04:30 (America/New_York)"
    )
    # A naive instant is UTC; a zone the database does not know reads as UTC.
    assert format_due(DUE.replace(tzinfo=None), replace(ANNA, timezone="UTC")) == (
        "Mon 7 Dec, 09:30 (UTC)"
    )
    assert format_due(DUE, replace(ANNA, timezone="Mars/Olympus")) == "Mon 7 Dec, 09:30 (UTC)"


def test_a_polish_recipient_reads_polish_wording_and_polish_day_and_month_names():
    anna = replace(ANNA, language="pl")
    section = slack_message(anna, [BREACH])["blocks"][2]["text"]["text"]
    assert "*Przekroczono SLA: Jane Doe* · Acme" in section
    assert "Stan: SLA first response: przekroczone" in section
    assert "Termin: pon. 7 gru, 10:30 (Europe/Warsaw)" in section
    assert "Handlowiec: Piotr Zieliński" in section
    text, _ = plain_and_html(email_message(anna, [BREACH], SENDER, UNSUBSCRIBE))
    assert text.startswith("Cześć Anna Nowak,\n\nLead wymaga Twojej uwagi.\n")
    assert "Otwórz oś czasu: " + BREACH.timeline_url in text


def test_an_unknown_language_reads_as_english():
    section = slack_message(replace(ANNA, language="de"), [BREACH])["blocks"][2]["text"]["text"]
    assert "Status: SLA first response: breached" in section


@pytest.mark.parametrize(
    ("count", "expected"),
    [
        (2, "[Leadflow] 2 leady wymagają Twojej uwagi"),
        (5, "[Leadflow] 5 leadów wymaga Twojej uwagi"),
        (12, "[Leadflow] 12 leadów wymaga Twojej uwagi"),
        (22, "[Leadflow] 22 leady wymagają Twojej uwagi"),
    ],
)
def test_a_polish_digest_subject_uses_the_polish_plural(count, expected):
    assert subject(replace(ANNA, language="pl"), several(count)) == expected


def test_the_subject_of_one_notice_names_its_lead_and_company():
    assert subject(ANNA, [BREACH]) == "[Leadflow] SLA breached: Jane Doe (Acme)"
    assert subject(ANNA, several(3)) == "[Leadflow] 3 leads need your attention"


def test_a_digest_counts_the_leads_it_is_about_not_its_notices():
    warning = replace(BREACH, event_type="sla.warning", level="warning")
    assert subject(ANNA, [warning, BREACH, BARE]) == "[Leadflow] 2 leads need your attention"
    payload = slack_message(ANNA, [warning, BREACH])
    assert payload["blocks"][0]["text"]["text"] == "2 Leadflow notices"
    assert payload["blocks"][1]["text"]["text"] == "Hi <@U024BE7LH>, a lead needs your attention."


def test_several_notices_become_one_digest_listing_each_lead_with_its_link():
    notices = several(3)
    slack = slack_message(ANNA, notices)
    assert slack["blocks"][0]["text"]["text"] == "3 Leadflow notices"
    buttons = [b["accessory"]["url"] for b in slack["blocks"] if "accessory" in b]
    assert buttons == [n.timeline_url for n in notices]
    card = teams_message(ANNA, notices)["attachments"][0]["content"]
    assert [a["url"] for a in card["actions"]] == [n.timeline_url for n in notices]
    text, html = plain_and_html(email_message(ANNA, notices, SENDER, UNSUBSCRIBE))
    for notice in notices:
        assert notice.lead_name in text and notice.lead_name in html
    assert "3 leads need your attention." in text


def test_a_long_digest_stays_within_slack_limits_and_says_how_many_more():
    payload = slack_message(ANNA, several(60))
    assert len(payload["blocks"]) <= 50
    assert payload["blocks"][-1]["elements"][0]["text"] == "…and 40 more"
    assert slack_payload_problems(payload) == []
    card = teams_message(ANNA, several(60))["attachments"][0]["content"]
    assert len(card["actions"]) == 5
    assert card["body"][-1]["text"] == "…and 40 more"


def test_missing_fields_are_left_out_never_shown_as_none():
    anna = replace(ANNA, slack_member_id=None, teams_upn=None)
    message = email_message(anna, [BARE], SENDER, UNSUBSCRIBE)
    text, html = plain_and_html(message)
    rendered = [
        slack_texts(slack_message(anna, [BARE])),
        slack_texts(teams_message(anna, [BARE])),
        text,
        html,
        message["Subject"],
    ]
    for output in rendered:
        assert "None" not in output and "null" not in output.replace('"contentUrl": null', "")
    assert "Lead 0b9e2d4c" in text  # no name: the lead's short id
    assert "Due" not in text and "Company" not in text and "Score" not in text
    facts = teams_message(anna, [BARE])["attachments"][0]["content"]["body"][2]["items"][1]
    assert facts["facts"] == [{"title": "Status", "value": "assigned to you"}]


def test_a_score_of_zero_is_shown_and_a_fraction_keeps_one_decimal():
    zero = slack_message(ANNA, [replace(BREACH, score=0)])["blocks"][2]["text"]["text"]
    half = slack_message(ANNA, [replace(BREACH, score=82.46)])["blocks"][2]["text"]["text"]
    assert "Score: 0 ·" in zero
    assert "Score: 82.5 ·" in half


HOSTILE = '<script>alert("x")</script> & <!channel> <at>Boss</at> [win](http://evil.example)'


def test_a_hostile_company_name_is_escaped_in_html():
    _, html = plain_and_html(
        email_message(ANNA, [replace(BREACH, company=HOSTILE)], SENDER, UNSUBSCRIBE)
    )
    assert "<script>" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; &lt;!channel&gt;" in html


def test_a_hostile_company_name_cannot_mention_or_format_in_slack():
    payload = slack_message(ANNA, [replace(BREACH, company=HOSTILE)])
    section = payload["blocks"][2]["text"]["text"]
    assert "<!channel>" not in section and "<script>" not in section
    assert "&lt;!channel&gt;" in section and "&amp;" in section
    assert "<!channel>" not in payload["text"]


def test_a_hostile_company_name_cannot_mention_or_link_in_teams():
    card = teams_message(ANNA, [replace(BREACH, company=HOSTILE)])["attachments"][0]["content"]
    company = card["body"][2]["items"][1]["facts"][0]["value"]
    assert "<at>" not in company
    assert r"\[win\](http://evil.example)" in company
    assert len(card["msteams"]["entities"]) == 1


def test_slack_mentions_the_member_when_known_and_greets_by_name_otherwise():
    mentioned = slack_message(ANNA, [BREACH])
    assert mentioned["blocks"][1]["text"]["text"] == "Hi <@U024BE7LH>, a lead needs your attention."
    assert "<@U024BE7LH>" in mentioned["text"]  # the notification itself pings the member
    named = slack_message(replace(ANNA, slack_member_id=None), [BREACH])
    assert named["blocks"][1]["text"]["text"] == "Hi Anna Nowak, a lead needs your attention."


def test_teams_mentions_the_recipient_by_upn_only_when_known():
    card = teams_message(ANNA, [BREACH])["attachments"][0]["content"]
    assert card["body"][1]["text"] == "Hi <at>Anna Nowak</at>, a lead needs your attention."
    assert card["msteams"]["entities"] == [
        {
            "type": "mention",
            "text": "<at>Anna Nowak</at>",
            "mentioned": {"id": "anna@contoso.onmicrosoft.com", "name": "Anna Nowak"},
        }
    ]
    plain = teams_message(replace(ANNA, teams_upn=None), [BREACH])["attachments"][0]["content"]
    assert "entities" not in plain["msteams"]
    assert plain["body"][1]["text"] == "Hi Anna Nowak, a lead needs your attention."


def test_teams_carries_one_adaptive_card_opening_the_timeline():
    payload = teams_message(ANNA, [BREACH])
    attachment = payload["attachments"][0]
    assert payload["type"] == "message" and len(payload["attachments"]) == 1
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert attachment["contentUrl"] is None
    card = attachment["content"]
    assert card["$schema"] == "http://adaptivecards.io/schemas/adaptive-card.json"
    assert (card["type"], card["version"]) == ("AdaptiveCard", "1.4")
    assert card["actions"] == [
        {"type": "Action.OpenUrl", "title": "Open timeline", "url": BREACH.timeline_url}
    ]
    facts = {f["title"]: f["value"] for f in card["body"][2]["items"][1]["facts"]}
    assert facts == {
        "Company": "Acme",
        "Status": "SLA first response: breached",
        "Due": "Mon 7 Dec, 10:30 (Europe/Warsaw)",
        "Rep": "Piotr Zieliński",
        "Score": "82",
        "Source": "hubspot",
    }


def test_an_email_has_plain_and_html_alternatives_and_one_click_unsubscribe():
    message = email_message(
        ANNA, [BREACH], SENDER, UNSUBSCRIBE, message_id="<n-1@leadflow>", sent_at=DUE
    )
    assert message["From"] == SENDER
    assert message["To"] == "Anna Nowak <anna@example.com>"
    assert message["Subject"] == "[Leadflow] SLA breached: Jane Doe (Acme)"
    assert message["List-Unsubscribe"] == f"<{UNSUBSCRIBE}>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["Message-ID"] == "<n-1@leadflow>"
    assert message["Date"] == "Mon, 07 Dec 2026 09:30:00 +0000"
    assert message["Content-Language"] == "en"
    assert message.get_content_type() == "multipart/alternative"
    text, html = plain_and_html(message)
    assert "Due: Mon 7 Dec, 10:30 (Europe/Warsaw)" in text
    assert f'<a href="{BREACH.timeline_url}">Open timeline</a>' in html
    assert UNSUBSCRIBE.replace("&", "&amp;") in html and UNSUBSCRIBE in text


def test_a_line_break_in_a_name_cannot_add_a_header():
    message = email_message(
        ANNA, [replace(BREACH, lead_name="Jane\r\nBcc: everyone@example.com")], SENDER, UNSUBSCRIBE
    )
    assert message["Subject"] == "[Leadflow] SLA breached: Jane Bcc: everyone@example.com (Acme)"
    assert message["Bcc"] is None


def test_a_message_needs_a_notice_and_an_email_needs_an_address():
    with pytest.raises(ValueError, match="notices"):
        slack_message(ANNA, [])
    with pytest.raises(ValueError, match="recipient.email"):
        email_message(replace(ANNA, email=None), [BREACH], SENDER, UNSUBSCRIBE)


async def post(receiver, payload) -> httpx.Response:
    transport = httpx.ASGITransport(app=receiver.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://receiver") as client:
        return await client.post(receiver.path, json=payload)


@pytest.mark.parametrize("language", ["en", "pl"])
@pytest.mark.parametrize("notices", [[BREACH], [BARE], several(3), several(60)])
async def test_slack_payloads_are_accepted_by_the_incoming_webhook_contract(language, notices):
    receiver = SlackWebhookReceiver()
    payload = slack_message(replace(ANNA, language=language), notices)
    response = await post(receiver, payload)
    assert (response.status_code, response.text) == (200, "ok")
    assert receiver.accepted == [payload]


@pytest.mark.parametrize("language", ["en", "pl"])
@pytest.mark.parametrize("notices", [[BREACH], [BARE], several(3), several(60)])
async def test_teams_payloads_are_accepted_by_the_workflow_webhook_contract(language, notices):
    receiver = TeamsWorkflowReceiver()
    payload = teams_message(replace(ANNA, language=language), notices)
    response = await post(receiver, payload)
    assert response.status_code == 202
    assert receiver.accepted == [payload]


async def test_the_slack_contract_refuses_what_slack_refuses():
    receiver = SlackWebhookReceiver()
    assert (await post(receiver, {})).text == "no_text"
    long_header = {
        "blocks": [{"type": "header", "text": {"type": "plain_text", "text": "x" * 151}}]
    }
    answer = await post(receiver, long_header)
    assert (answer.status_code, answer.text) == (400, "invalid_payload")
    unknown = {"text": "x", "blocks": [{"type": "table"}]}
    assert (await post(receiver, unknown)).status_code == 400
    too_many = {"blocks": [{"type": "divider"}] * 51}
    assert (await post(receiver, too_many)).status_code == 400
    assert receiver.accepted == []


async def test_the_teams_contract_refuses_what_is_not_an_adaptive_card_message():
    receiver = TeamsWorkflowReceiver()
    assert (await post(receiver, {"text": "hello"})).status_code == 400
    legacy = {
        "type": "message",
        "attachments": [{"contentType": "application/vnd.microsoft.card.hero", "content": {}}],
    }
    assert (await post(receiver, legacy)).status_code == 400
    oversized = teams_message(ANNA, [BREACH])
    oversized["attachments"][0]["content"]["body"].append(
        {"type": "TextBlock", "text": "x" * 29_000}
    )
    assert (await post(receiver, oversized)).status_code == 413
    payload = teams_message(ANNA, [BREACH])
    payload["attachments"][0]["content"]["msteams"]["entities"][0]["text"] = "<at>Nobody</at>"
    assert teams_payload_problems(payload) == [
        "content.msteams.entities[0].text: not in the card's text"
    ]
    assert receiver.accepted == []
