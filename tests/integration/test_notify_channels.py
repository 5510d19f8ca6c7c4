"""notify's channels against real servers: e-mail through `leadflow.mail.send_mail` to aiosmtpd
run as its own process, and the rendered Slack and Teams payloads POSTed over HTTP to the local
receivers implementing the vendors' documented webhook contracts."""

from __future__ import annotations

import socket
from dataclasses import replace

import httpx
import pytest
from leadflow.mail import MailOutcome, SmtpSettings, send_mail
from leadflow.settings import Settings
from leadflow_notify.domain.messages import (
    Notice,
    Recipient,
    email_message,
    slack_message,
    teams_message,
)
from leadflow_tools.devstack import free_port
from support.chat_receivers import SlackWebhookReceiver, TeamsWorkflowReceiver
from support.harness import eventually
from support.smtp_server import SmtpServer

REFUSED = "gone@example.com"
SENDER = "Leadflow <leadflow@example.com>"
UNSUBSCRIBE = "https://leadflow.example.com/v1/unsubscribe?token=abc"
ANNA = Recipient(
    name="Anna Nowak",
    email="anna@example.com",
    slack_member_id="U024BE7LH",
    teams_upn="anna@contoso.onmicrosoft.com",
    language="pl",
    timezone="Europe/Warsaw",
)
NOTICE = Notice(
    event_type="sla.warning",
    level="warning",
    lead_id="5f0c6a1e-3b7d-4c1a-9d7e-2f4b8a6c1d3e",
    lead_name="Jane Doe",
    company="Acme <Polska> & Co",
    source="hubspot",
    score=71.0,
    rep_name="Anna Nowak",
    sla="first_response",
    due_at=None,
    timeline_url="http://127.0.0.1:8005/review/leads/5f0c6a1e-3b7d-4c1a-9d7e-2f4b8a6c1d3e",
)


@pytest.fixture(scope="module")
def smtp(tmp_path_factory):
    with SmtpServer(tmp_path_factory.mktemp("smtp"), refused=(REFUSED,)) as server:
        yield server


def relay(port: int, timeout: float = 5.0) -> SmtpSettings:
    # The local server offers no STARTTLS; a real relay is reached with it (the default).
    return SmtpSettings(host="127.0.0.1", port=port, starttls=False, timeout=timeout)


async def test_an_email_arrives_with_plain_and_html_parts_and_one_click_unsubscribe(smtp):
    before = len(smtp.messages())
    other = replace(
        NOTICE, lead_id="0b9e2d4c-1a3f-4e5d-8c7b-6a5f4e3d2c1b", lead_name="Jan Kowalski"
    )
    message = email_message(ANNA, [NOTICE, other], SENDER, UNSUBSCRIBE, message_id="<n1@lf>")

    outcome = await send_mail(relay(smtp.port), message)

    assert outcome == MailOutcome(ok=True, code=250, error=None, permanent=False)
    mails = await eventually(lambda: smtp.messages()[before:])
    assert len(mails) == 1
    mail = mails[0]
    assert mail.mail_from == "leadflow@example.com"
    assert mail.rcpt_tos == ["anna@example.com"]
    received = mail.message
    assert received["Subject"] == "[Leadflow] 2 leady wymagają Twojej uwagi"
    assert received["Message-ID"] == "<n1@lf>"
    assert received["List-Unsubscribe"] == f"<{UNSUBSCRIBE}>"
    assert received["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert received.get_content_type() == "multipart/alternative"
    text = received.get_body(("plain",)).get_content()
    html = received.get_body(("html",)).get_content()
    assert "Jane Doe (Acme <Polska> & Co)" in text and "Jan Kowalski" in text
    assert "Acme &lt;Polska&gt; &amp; Co" in html and "<Polska>" not in html


async def test_a_550_for_the_recipient_is_a_permanent_failure(smtp):
    before = len(smtp.messages())
    message = email_message(Recipient("Gone", REFUSED, None, None), [NOTICE], SENDER, UNSUBSCRIBE)

    outcome = await send_mail(relay(smtp.port), message)

    assert (outcome.ok, outcome.code, outcome.permanent) == (False, 550, True)
    assert "5.1.1" in outcome.error
    assert len(smtp.messages()) == before


async def test_a_refused_connection_is_a_transient_failure():
    message = email_message(ANNA, [NOTICE], SENDER, UNSUBSCRIBE)

    outcome = await send_mail(relay(free_port()), message)

    assert (outcome.ok, outcome.code, outcome.permanent) == (False, None, False)
    assert outcome.error


async def test_a_relay_that_never_greets_is_a_transient_timeout():
    with socket.socket() as silent:  # accepts connections (backlog) but never says 220
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        message = email_message(ANNA, [NOTICE], SENDER, UNSUBSCRIBE)

        outcome = await send_mail(relay(silent.getsockname()[1], timeout=0.5), message)

    assert (outcome.ok, outcome.permanent) == (False, False)
    assert outcome.error == "no answer within 0.5 s"


async def test_no_relay_configured_is_a_permanent_failure_without_a_connection():
    message = email_message(ANNA, [NOTICE], SENDER, UNSUBSCRIBE)
    outcome = await send_mail(SmtpSettings.from_settings(Settings(smtp_host=None)), message)
    assert (outcome.ok, outcome.permanent) == (False, True)


def test_the_relay_settings_come_from_the_kernel_settings_and_hide_the_password():
    settings = Settings(smtp_host="smtp.example.com", smtp_user="lf", smtp_password="s3cret")
    smtp = SmtpSettings.from_settings(settings)
    assert (smtp.host, smtp.port, smtp.starttls, smtp.user, smtp.password) == (
        "smtp.example.com",
        587,
        True,
        "lf",
        "s3cret",
    )
    assert smtp.sender == "Leadflow <leadflow@localhost>" and smtp.timeout == 10.0
    assert "s3cret" not in repr(smtp) and "s3cret" not in repr(settings)


async def test_the_slack_message_is_accepted_by_the_incoming_webhook():
    payload = slack_message(ANNA, [NOTICE])
    async with SlackWebhookReceiver() as slack, httpx.AsyncClient() as client:
        response = await client.post(slack.url, json=payload)
    assert (response.status_code, response.text) == (200, "ok")
    assert slack.accepted == [payload]


async def test_the_teams_card_is_accepted_by_the_workflow_webhook():
    payload = teams_message(ANNA, [NOTICE, NOTICE])
    async with TeamsWorkflowReceiver() as teams, httpx.AsyncClient() as client:
        response = await client.post(teams.url, json=payload)
    assert response.status_code == 202
    assert teams.accepted == [payload]


@pytest.mark.parametrize("receiver_type", [SlackWebhookReceiver, TeamsWorkflowReceiver])
async def test_a_rate_limited_webhook_answers_429_with_retry_after(receiver_type):
    render = slack_message if receiver_type is SlackWebhookReceiver else teams_message
    async with receiver_type() as receiver, httpx.AsyncClient() as client:
        receiver.answer = "rate_limited"
        receiver.retry_after = 7
        response = await client.post(receiver.url, json=render(ANNA, [NOTICE]))
    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"
    assert receiver.accepted == []


async def test_a_removed_slack_webhook_answers_404_no_service():
    async with SlackWebhookReceiver() as slack, httpx.AsyncClient() as client:
        slack.answer = "no_service"
        response = await client.post(slack.url, json=slack_message(ANNA, [NOTICE]))
    assert (response.status_code, response.text) == (404, "no_service")


async def test_a_hanging_webhook_times_the_client_out():
    async with TeamsWorkflowReceiver() as teams, httpx.AsyncClient(timeout=0.5) as client:
        teams.answer = "hang"
        with pytest.raises(httpx.ReadTimeout):
            await client.post(teams.url, json=teams_message(ANNA, [NOTICE]))
