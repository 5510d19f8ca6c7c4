"""People hear of their leads' clocks, every service a real process: a qualified lead sent to
ingest is scored and routed to the rep of a team with a team lead, a Slack channel and e-mail;
on a simulated clock its first-response clock warns, breaches and escalates to the team lead,
while notify is killed with `kill -9` twice and restarted. The rep hears the warning and the
breach and the team lead the escalation, on Slack (a local server implementing Slack's
incoming-webhook contract) and by e-mail (a real SMTP server process), each exactly once.

The clock runs CLOCK_SPEED times faster than real time, and the test policy puts the ladder
within a minute of real time: a one-hour first-response limit on the wall clock, warned at a
quarter of it, breached at the hour, escalated to the team lead at an hour and a quarter (the
manager's step, far later, never comes during the test; the other clocks opened with the lead
are made long enough to stay silent)."""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import httpx
import pytest
import yaml
from leadflow.contracts.policy import DEFAULT_POLICY_RESOURCE, load_policy
from leadflow_notify.domain.messages import WORDING
from leadflow_tools.registry import SERVICE_ORDER
from leadflow_tools.supervisor import ServiceProcess, start_all
from prometheus_client.parser import text_string_to_metric_families
from support.chat_receivers import SlackWebhookReceiver
from support.harness import ADMIN, SOURCE, eventually, present_read_key, sample_lead
from support.smtp_server import SmtpServer

pytestmark = pytest.mark.e2e

CLOCK_START = datetime(2026, 11, 17, 8, 0, tzinfo=UTC)  # a Tuesday, 09:00 in Warsaw
CLOCK_SPEED = 150.0  # the one-hour limit passes in 24 real seconds
POLICY_VERSION = "2026.12-e2e-people-hear-their-clocks"

REP = {
    "name": "Ola Nowak",
    "email": "ola@vendor.example",
    "slack_member_id": "U0REP0001",
    "language": "en",
}
TEAM_LEAD = {
    "name": "Tom Lead",
    "email": "tom@vendor.example",
    "slack_member_id": "U0LEAD001",
    "language": "en",
}
# What each person hears of the lead's first-response clock (event types of the notices).
EXPECTED = Counter(
    {
        ("rep", "sla.warning"): 1,
        ("rep", "sla.breached"): 1,
        ("team_lead", "sla.escalated"): 1,
    }
)
WHO_BY_MEMBER = {REP["slack_member_id"]: "rep", TEAM_LEAD["slack_member_id"]: "team_lead"}
WHO_BY_ADDRESS = {REP["email"]: "rep", TEAM_LEAD["email"]: "team_lead"}
EVENT_BY_TITLE = {title: event for event, title in WORDING["en"].events.items()}
LEAD_URL = re.compile(r"/review/leads/([0-9a-f-]{36})")
REF = re.compile(r"^ref ([0-9a-f-]{36})$")


def fast_ladder_policy(path: Path) -> Path:
    """The shipped policy with a one-hour wall-clock first response on inbound, a ladder that
    climbs within it and every other clock the lead opens long enough to say nothing."""
    text = resources.files("leadflow.contracts").joinpath(DEFAULT_POLICY_RESOURCE).read_text()
    policy = yaml.safe_load(text)
    policy["version"] = POLICY_VERSION
    slas = policy["slas"]
    slas["channels"]["inbound"]["first_response"] = {"limit": "1h", "clock": "wall"}
    slas["channels"]["inbound"]["cadence"]["within"] = "52w"
    slas["sal_acceptance"] = {"limit": "52w", "clock": "wall"}
    slas["escalation"] = {
        "warning_at": 0.25,
        "breach_at": 1.0,
        "team_lead_at": 1.25,
        "manager_at": 100.0,
        "reassign_on_breach": False,
    }
    path.write_text(yaml.safe_dump(policy, sort_keys=False), encoding="utf-8")
    load_policy(path)  # refuses it here, with its reasons, rather than in six service logs
    return path


@pytest.fixture
async def smtp(tmp_path):
    with SmtpServer(tmp_path / "mail") as server:
        yield server


@pytest.fixture
async def people_services(stack, smtp, tmp_path):
    """The six services on the fast clock and the test policy; notify hands e-mail to `smtp`,
    sends each message at once (no digest window) and holds none for working hours."""
    overrides = {
        "policy_file": str(fast_ladder_policy(tmp_path / "policy.yaml")),
        "smtp_host": "127.0.0.1",
        "smtp_port": smtp.port,
        "smtp_starttls": False,
        "notify_digest_window": 0.0,
        "notify_quiet_hours": False,
    }
    settings = await stack.isolated_settings(
        clock_start=CLOCK_START, clock_speed=CLOCK_SPEED, clock_anchor=time.time(), **overrides
    )
    procs = {
        name: ServiceProcess(name, settings, tmp_path / f"{name}.log") for name in SERVICE_ORDER
    }
    try:
        await start_all(list(procs.values()), timeout=120)
        yield procs
    finally:
        await asyncio.gather(*(asyncio.to_thread(proc.stop) for proc in procs.values()))


@dataclass
class Heard:
    """What the receivers got, one entry per distinct message (a message repeated under the
    same id after a crash counts once): who it was for and the notices it carried, as
    (who, event type, lead id)."""

    slack: dict[str, tuple[str, list[tuple[str, str]]]]
    email: dict[str, tuple[str, list[tuple[str, str]]]]

    def notices(self, channel: str) -> Counter:
        messages = self.slack if channel == "slack" else self.email
        return Counter(
            (who, event, lead) for who, notices in messages.values() for event, lead in notices
        )


def slack_messages(payloads: list[dict]) -> dict[str, tuple[str, list[tuple[str, str]]]]:
    """{ref: (who, [(event type, lead id), …])}: the person mentioned, and each notice's section
    (its timeline button names the lead) followed by the context block naming its event type."""
    found: dict[str, tuple[str, list[tuple[str, str]]]] = {}
    for payload in payloads:
        blocks = payload["blocks"]
        texts = [
            e["text"] for b in blocks if b["type"] == "context" for e in b["elements"]
        ]  # fmt: skip
        [ref] = [m.group(1) for t in texts if (m := REF.match(t))]
        [who] = {w for member, w in WHO_BY_MEMBER.items() if f"<@{member}>" in payload["text"]}
        notices = []
        for block, after in zip(blocks, blocks[1:], strict=False):
            button = block.get("accessory") or {}
            if block["type"] == "section" and button.get("type") == "button":
                lead = LEAD_URL.search(button["url"]).group(1)
                notices.append((after["elements"][0]["text"].strip("`"), lead))
        found.setdefault(ref, (who, notices))
    return found


def email_messages(mail: list) -> dict[str, tuple[str, list[tuple[str, str]]]]:
    """{Message-ID: (who, [(event type, lead id), …])}: the one recipient, and each notice of
    the plain-text body (its title line names the event, its timeline link the lead)."""
    found: dict[str, tuple[str, list[tuple[str, str]]]] = {}
    for received in mail:
        [address] = received.rcpt_tos
        text = received.message.get_body(("plain",)).get_content()
        events = [
            EVENT_BY_TITLE[line.split(":", 1)[0]]
            for line in text.splitlines()
            if line.split(":", 1)[0] in EVENT_BY_TITLE
        ]
        leads = LEAD_URL.findall(text)
        assert len(events) == len(leads), text
        notices = list(zip(events, leads, strict=True))
        found.setdefault(received.message["Message-ID"], (WHO_BY_ADDRESS[address], notices))
    return found


async def test_rep_and_team_lead_hear_each_level_once_through_notify_crashes(
    people_services, smtp, tmp_path
):
    services = people_services
    urls = {name: proc.url for name, proc in services.items()}
    notify = services["notify"]
    async with (
        SlackWebhookReceiver() as slack,
        httpx.AsyncClient(timeout=10, event_hooks={"request": [present_read_key]}) as http,
    ):
        team = await http.post(
            f"{urls['routing']}/v1/teams",
            headers=ADMIN,
            json={"name": "Inbound PL", "team_lead": TEAM_LEAD, "slack_webhook_url": slack.url},
        )
        assert team.status_code == 201, team.text
        team_id = team.json()["id"]
        rule = await http.post(
            f"{urls['routing']}/v1/rules",
            headers=ADMIN,
            json={"name": "Poland", "conditions": {"country": ["PL"]}, "team_id": team_id},
        )
        assert rule.status_code == 201, rule.text
        rep = await http.post(
            f"{urls['routing']}/v1/reps", headers=ADMIN, json={**REP, "team_id": team_id}
        )
        assert rep.status_code == 201, rep.text
        rep_id = rep.json()["id"]

        created = await http.post(f"{urls['ingest']}/v1/leads", headers=SOURCE, json=sample_lead(1))
        assert created.status_code == 202, created.text
        lead_id = created.json()["lead_id"]

        async def assignment():
            got = await http.get(f"{urls['routing']}/v1/leads/{lead_id}/assignment")
            return got.json() if got.status_code == 200 else None

        routed = await eventually(assignment, timeout=60)
        assert (routed["rep_id"], routed["team_id"]) == (rep_id, team_id), routed

        async def first_response() -> dict | None:
            slas = (await http.get(f"{urls['sla-timer']}/v1/leads/{lead_id}/slas")).json()
            found = [t for t in slas.get("timers", []) if t["sla"] == "first_response"]
            return found[0] if found else None

        timer = await eventually(first_response, timeout=60)
        assert timer["state"] == "open", timer  # not breached yet

        async def directory_known() -> bool:
            """Notify has handled the team's two directories (the team's, then with its rep):
            what it knows of the people survives its crash; a level told before any directory
            of the team arrived would have nobody to reach."""
            text = (await http.get(f"{urls['notify']}/metrics")).text
            return (
                sum(
                    sample.value
                    for family in text_string_to_metric_families(text)
                    for sample in family.samples
                    if sample.name == "leadflow_events_consumed_total"
                    and sample.labels.get("type") == "team.directory"
                    and sample.labels.get("outcome") == "processed"
                )
                >= 2
            )

        await eventually(directory_known, timeout=60)

        # notify dies before the clock's first level: the warning arrives while it is down
        await asyncio.to_thread(notify.kill)
        await asyncio.to_thread(notify.start, 120)

        last: list = []

        async def notices() -> list[dict]:
            try:
                got = await http.get(f"{urls['notify']}/v1/notices", params={"lead_id": lead_id})
            except httpx.TransportError:  # restarting
                return last
            assert got.status_code == 200, got.text
            last[:] = got.json()["items"]
            return last

        def describe() -> str:
            heard = Heard(slack_messages(slack.accepted), email_messages(smtp.messages()))
            return (
                f"notices: {last}; slack: {heard.slack}; e-mail: {heard.email}; "
                f"slack refused: {slack.refused}; notify's log ends with:\n{notify.log_tail()}"
            )

        async def warning_sent() -> bool:
            rows = [n for n in await notices() if n["level"] == "warning"]
            return len(rows) == 2 and all(n["state"] == "sent" for n in rows)

        await eventually(warning_sent, timeout=60, describe=describe)
        # and again once the warning is out, before the breach: the breach and the team
        # lead's escalation are told by the restarted process
        await asyncio.to_thread(notify.kill)
        await asyncio.to_thread(notify.start, 120)

        async def all_sent() -> bool:
            rows = await notices()
            return len(rows) == 6 and all(n["state"] == "sent" for n in rows)

        await eventually(all_sent, timeout=120, describe=describe)
        final = (
            await http.get(f"{urls['notify']}/v1/notices", params={"lead_id": lead_id})
        ).json()["items"]
        timer = await first_response()

    heard = Heard(slack_messages(slack.accepted), email_messages(smtp.messages()))
    expected = Counter({(who, event, lead_id): n for (who, event), n in EXPECTED.items()})
    # every notice in exactly one distinct message on each channel: none missing, none twice
    assert heard.notices("slack") == expected, describe()
    assert heard.notices("email") == expected, describe()
    assert slack.refused == []
    # the rows say the same: each person, level and channel once, sent in the message that
    # the receiver got under that id
    assert {n["state"] for n in final} == {"sent"}
    assert sorted((n["recipient"].split(":")[0], n["level"], n["channel"]) for n in final) == [
        ("rep", "breach", "email"),
        ("rep", "breach", "slack"),
        ("rep", "warning", "email"),
        ("rep", "warning", "slack"),
        ("team_lead", "team_lead", "email"),
        ("team_lead", "team_lead", "slack"),
    ]
    assert {n["message_id"] for n in final if n["channel"] == "slack"} == set(heard.slack)
    assert {f"<{n['message_id']}@leadflow>" for n in final if n["channel"] == "email"} == set(
        heard.email
    )
    # sla-timer climbed exactly that far, on the test policy
    assert timer["state"] == "breached", timer
    assert timer["levels_fired"] == ["warning", "breached", "escalated_team_lead"], timer
    assert timer["policy_version"] == POLICY_VERSION, timer
