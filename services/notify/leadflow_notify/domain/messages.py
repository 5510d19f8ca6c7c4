"""What a message to a person says about their leads, on Slack, Microsoft Teams and e-mail.

Pure: given a recipient and one or more notices it builds the payload (a dict for a chat
webhook, an `EmailMessage` for SMTP) and sends nothing. Several notices for one recipient become
one digest; which notices go together is decided elsewhere. The wording is English or Polish, per
recipient; times are shown in the recipient's IANA zone. The bodies come from the Jinja2
templates beside this module (loaded once, at import): e-mail HTML is autoescaped, and Slack
mrkdwn escapes `&`, `<` and `>` in every value, so a lead's company cannot inject markup or a
mention. The payload shapes follow the vendors' documents:

- Slack incoming webhooks with Block Kit: https://api.slack.com/messaging/webhooks,
  https://api.slack.com/reference/block-kit/blocks
- Teams workflow webhooks with an Adaptive Card (1.4) and `msteams.entities` mentions:
  https://learn.microsoft.com/en-us/microsoftteams/platform/task-modules-and-cards/cards/cards-format
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

# Bounds that keep every payload inside the vendors' limits whatever the data: a value is cut
# to VALUE_CHARS (so a section's text stays far below Slack's 3,000), a digest lists at most
# LISTED_NOTICES (2 Slack blocks each, under the 50-block limit) and says how many more there are.
VALUE_CHARS = 200
LISTED_NOTICES = 20
SLACK_HEADER_CHARS = 150
TEAMS_CARD_ACTIONS = 5


@dataclass(frozen=True)
class Recipient:
    """A person who gets messages: where to reach them and how to speak to them."""

    name: str
    email: str | None
    slack_member_id: str | None
    teams_upn: str | None
    language: str = "en"  # "en" | "pl"; anything else reads as English
    timezone: str = "UTC"  # IANA zone; an unknown one reads as UTC


@dataclass(frozen=True)
class Notice:
    """One thing that happened to a lead that a person should hear about."""

    event_type: str  # sla.warning, sla.breached, sla.escalated, lead.routed
    level: str  # warning, breach, team_lead, manager, routed
    lead_id: str
    lead_name: str | None
    company: str | None
    source: str | None
    score: float | None
    rep_name: str | None
    sla: str | None  # the SLA kind, e.g. first_response
    due_at: datetime | None
    timeline_url: str


def _plural_pl(count: int, one: str, few: str, many: str) -> str:
    if count == 1:
        return one
    if count % 10 in (2, 3, 4) and count % 100 not in (12, 13, 14):
        return few
    return many


@dataclass(frozen=True)
class Wording:
    """Everything a message says in one language."""

    events: dict[str, str]
    levels: dict[str, str]
    labels: dict[str, str]
    weekdays: tuple[str, ...]
    months: tuple[str, ...]
    notices: Callable[[int], str]  # "3 Leadflow notices"
    attention: Callable[[int], str]  # "3 leads need your attention"


WORDING: dict[str, Wording] = {
    "en": Wording(
        events={
            "sla.warning": "SLA due soon",
            "sla.breached": "SLA breached",
            "sla.escalated": "SLA escalated",
            "lead.routed": "New lead assigned",
            "alert.firing": "Alert firing",
            "alert.resolved": "Alert resolved",
        },
        levels={
            "warning": "due soon",
            "breach": "breached",
            "team_lead": "escalated to the team lead",
            "manager": "escalated to the manager",
            "routed": "assigned to you",
            "critical": "critical",
            "warning_alert": "warning",
        },
        labels={
            "greeting": "Hi {name},",
            "company": "Company",
            "sla": "SLA",
            "status": "Status",
            "due": "Due",
            "rep": "Rep",
            "score": "Score",
            "source": "Source",
            "lead": "Lead {id}",
            "open": "Open timeline",
            "more": "…and {count} more",
            "footer": "Sent by Leadflow about the leads you work on.",
            "unsubscribe": "Unsubscribe from these messages",
        },
        weekdays=("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"),
        months=("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"),
        notices=lambda n: f"{n} Leadflow notice" if n == 1 else f"{n} Leadflow notices",
        attention=lambda n: (
            "a lead needs your attention" if n == 1 else f"{n} leads need your attention"
        ),
    ),
    "pl": Wording(
        events={
            "sla.warning": "Zbliża się termin SLA",
            "sla.breached": "Przekroczono SLA",
            "sla.escalated": "Eskalacja SLA",
            "lead.routed": "Nowy lead przypisany",
            "alert.firing": "Alert aktywny",
            "alert.resolved": "Alert zakończony",
        },
        levels={
            "warning": "termin wkrótce",
            "breach": "przekroczone",
            "team_lead": "eskalacja do lidera zespołu",
            "manager": "eskalacja do kierownika",
            "routed": "przypisany do Ciebie",
            "critical": "krytyczny",
            "warning_alert": "ostrzeżenie",
        },
        labels={
            "greeting": "Cześć {name},",
            "company": "Firma",
            "sla": "SLA",
            "status": "Stan",
            "due": "Termin",
            "rep": "Handlowiec",
            "score": "Wynik",
            "source": "Źródło",
            "lead": "Lead {id}",
            "open": "Otwórz oś czasu",
            "more": "…i {count} więcej",
            "footer": "Wiadomość od Leadflow o leadach, którymi się zajmujesz.",
            "unsubscribe": "Wypisz się z tych wiadomości",
        },
        weekdays=("pon.", "wt.", "śr.", "czw.", "pt.", "sob.", "niedz."),
        months=("sty", "lut", "mar", "kwi", "maj", "cze", "lip", "sie", "wrz", "paź", "lis", "gru"),
        notices=lambda n: (
            f"{n} {_plural_pl(n, 'powiadomienie', 'powiadomienia', 'powiadomień')} Leadflow"
        ),
        attention=lambda n: (
            "lead wymaga Twojej uwagi"
            if n == 1
            else f"{n} {_plural_pl(n, 'lead', 'leady', 'leadów')} "
            + _plural_pl(n, "wymaga", "wymagają", "wymaga")
            + " Twojej uwagi"
        ),
    ),
}


def wording(recipient: Recipient) -> Wording:
    return WORDING.get(recipient.language, WORDING["en"])


def _zone(recipient: Recipient) -> ZoneInfo:
    try:
        return ZoneInfo(recipient.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def format_due(when: datetime, recipient: Recipient) -> str:
    """`Mon 7 Dec, 10:30 (Europe/Warsaw)`: the instant in the recipient's zone and words."""
    words = wording(recipient)
    zone = _zone(recipient)
    local = (when if when.tzinfo else when.replace(tzinfo=UTC)).astimezone(zone)
    return (
        f"{words.weekdays[local.weekday()]} {local.day} {words.months[local.month - 1]}, "
        f"{local:%H:%M} ({zone.key})"
    )


def _clip(value: object) -> str | None:
    """A value as one line of at most VALUE_CHARS, or None when there is nothing to show."""
    if value is None:
        return None
    text = " ".join(str(value).split())
    if not text:
        return None
    return text if len(text) <= VALUE_CHARS else text[: VALUE_CHARS - 1] + "…"


def _score(score: float | None) -> str | None:
    if score is None:
        return None
    return f"{score:.0f}" if float(score).is_integer() else f"{score:.1f}"


@dataclass(frozen=True)
class NoticeView:
    """A notice as the templates show it: every value a clipped string or None, never "None"."""

    title: str
    lead: str
    company: str | None
    state: str  # "SLA first response: breached", or the level alone
    due: str | None
    rep: str | None
    score: str | None
    source: str | None
    event_type: str
    url: str
    lead_id: str


def _view(notice: Notice, recipient: Recipient) -> NoticeView:
    words = wording(recipient)
    level = words.levels.get(notice.level, notice.level.replace("_", " "))
    sla = _clip(notice.sla.replace("_", " ")) if notice.sla else None
    return NoticeView(
        title=words.events.get(notice.event_type, notice.event_type),
        lead=_clip(notice.lead_name) or words.labels["lead"].format(id=str(notice.lead_id)[:8]),
        company=_clip(notice.company),
        state=f"{words.labels['sla']} {sla}: {level}" if sla else level,
        due=format_due(notice.due_at, recipient) if notice.due_at else None,
        rep=_clip(notice.rep_name),
        score=_score(notice.score),
        source=_clip(notice.source),
        event_type=notice.event_type,
        url=notice.timeline_url,
        lead_id=str(notice.lead_id),
    )


def _views(recipient: Recipient, notices: Sequence[Notice]) -> list[NoticeView]:
    if not notices:
        raise ValueError("notices: a message needs at least one notice")
    return [_view(n, recipient) for n in notices]


def _leads(views: list[NoticeView]) -> int:
    """How many leads the notices are about (a warning and a breach of one lead: one)."""
    return len({view.lead_id for view in views})


def _headline(views: list[NoticeView], recipient: Recipient) -> str:
    if len(views) == 1:
        return f"{views[0].title}: {views[0].lead}"
    return wording(recipient).notices(len(views))


def subject(recipient: Recipient, notices: Sequence[Notice]) -> str:
    """The e-mail subject: the one notice and its lead, or how many leads a digest is about."""
    views = _views(recipient, notices)
    if len(views) == 1:
        view = views[0]
        company = f" ({view.company})" if view.company else ""
        return f"[Leadflow] {view.title}: {view.lead}{company}"
    return f"[Leadflow] {_sentence(wording(recipient).attention(_leads(views)))}"


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def _greeting(words: Wording, who: str, attention: str) -> str:
    """`Hi <@U123>, a lead needs your attention.`; without a name, the sentence alone."""
    if not who:
        return _sentence(attention) + "."
    return f"{words.labels['greeting'].format(name=who)} {attention}."


def _slack_escape(value: object) -> object:
    """Slack mrkdwn's three control characters, escaped in every value a template prints."""
    if isinstance(value, str):
        return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return value


_TEMPLATES = Environment(
    loader=PackageLoader("leadflow_notify.domain", "templates"),
    autoescape=select_autoescape(["html", "html.j2"]),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)
_SLACK_TEMPLATES = _TEMPLATES.overlay(autoescape=False, finalize=_slack_escape)
_EMAIL_TEXT = _TEMPLATES.get_template("email.txt.j2")
_EMAIL_HTML = _TEMPLATES.get_template("email.html.j2")
_SLACK_NOTICE = _SLACK_TEMPLATES.get_template("slack_notice.mrkdwn.j2")


def _context(recipient: Recipient, views: list[NoticeView]) -> dict[str, object]:
    words = wording(recipient)
    listed = views[:LISTED_NOTICES]
    name = _clip(recipient.name) or ""
    attention = words.attention(_leads(views))
    return {
        "name": name,
        "attention": attention,
        "greeting_line": words.labels["greeting"].format(name=name) if name else "",
        "attention_line": _sentence(attention) + ".",
        "labels": words.labels,
        "notices": listed,
        "more": len(views) - len(listed),
    }


def slack_message(recipient: Recipient, notices: Sequence[Notice]) -> dict:
    """An incoming-webhook payload: `text` (the notification and fallback) and Block Kit
    `blocks` (header, who it is for, one section with a timeline button per notice)."""
    views = _views(recipient, notices)
    context = _context(recipient, views)
    words = wording(recipient)
    who = (
        f"<@{recipient.slack_member_id}>"
        if recipient.slack_member_id
        else _slack_escape(context["name"])
    )
    attention = _greeting(words, who, str(context["attention"]))
    headline = _headline(views, recipient)
    blocks: list[dict] = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": _cut(headline, SLACK_HEADER_CHARS)},
        },
        {"type": "section", "text": {"type": "mrkdwn", "text": attention}},
    ]
    for index, view in enumerate(context["notices"]):
        blocks.append(
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": _SLACK_NOTICE.render(notice=view, **context).strip(),
                },
                "accessory": {
                    "type": "button",
                    "text": {"type": "plain_text", "text": words.labels["open"]},
                    "url": view.url,
                    "action_id": f"open-timeline-{index}",
                },
            }
        )
        blocks.append(
            {"type": "context", "elements": [{"type": "mrkdwn", "text": f"`{view.event_type}`"}]}
        )
    if context["more"]:
        more = words.labels["more"].format(count=context["more"])
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": more}]})
    return {"text": f"{_slack_escape(headline)} — {attention}", "blocks": blocks}


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


_TEAMS_MARKDOWN = re.compile(r"([\\*_\[\]`])")
_TEAMS_AT = re.compile(r"</?at>", re.IGNORECASE)


def _teams_text(value: str) -> str:
    """A value shown as itself in an Adaptive Card: no markdown, no `<at>` mention of its own."""
    return _TEAMS_MARKDOWN.sub(r"\\\1", _TEAMS_AT.sub("", value))


def teams_message(recipient: Recipient, notices: Sequence[Notice]) -> dict:
    """A workflow-webhook payload: a message with one Adaptive Card (1.4) attachment, the
    recipient mentioned through `msteams.entities` when their UPN is known."""
    views = _views(recipient, notices)
    context = _context(recipient, views)
    words = wording(recipient)
    name = _teams_text(str(context["name"]))
    who = f"<at>{name}</at>" if recipient.teams_upn and name else name
    body: list[dict] = [
        {
            "type": "TextBlock",
            "text": _teams_text(_headline(views, recipient)),
            "size": "Medium",
            "weight": "Bolder",
            "wrap": True,
        },
        {
            "type": "TextBlock",
            "text": _greeting(words, who, str(context["attention"])),
            "wrap": True,
        },
    ]
    for view in context["notices"]:
        facts = [
            (words.labels["company"], view.company),
            (words.labels["status"], view.state),
            (words.labels["due"], view.due),
            (words.labels["rep"], view.rep),
            (words.labels["score"], view.score),
            (words.labels["source"], view.source),
        ]
        body.append(
            {
                "type": "Container",
                "separator": True,
                "selectAction": {"type": "Action.OpenUrl", "url": view.url},
                "items": [
                    {
                        "type": "TextBlock",
                        "text": _teams_text(f"{view.title}: {view.lead}"),
                        "weight": "Bolder",
                        "wrap": True,
                    },
                    {
                        "type": "FactSet",
                        "facts": [
                            {"title": title, "value": _teams_text(value)}
                            for title, value in facts
                            if value
                        ],
                    },
                ],
            }
        )
    if context["more"]:
        more = words.labels["more"].format(count=context["more"])
        body.append({"type": "TextBlock", "text": more, "isSubtle": True, "wrap": True})
    actions = [
        {
            "type": "Action.OpenUrl",
            "title": words.labels["open"] if len(views) == 1 else _teams_text(view.lead),
            "url": view.url,
        }
        for view in views[:TEAMS_CARD_ACTIONS]
    ]
    card: dict = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": body,
        "actions": actions,
        "msteams": {"width": "Full"},
    }
    if recipient.teams_upn and name:
        card["msteams"]["entities"] = [
            {
                "type": "mention",
                "text": f"<at>{name}</at>",
                "mentioned": {"id": recipient.teams_upn, "name": name},
            }
        ]
    return {
        "type": "message",
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": None,
                "content": card,
            }
        ],
    }


def email_message(
    recipient: Recipient,
    notices: Sequence[Notice],
    sender: str,
    unsubscribe_url: str,
    *,
    message_id: str | None = None,
    sent_at: datetime | None = None,
) -> EmailMessage:
    """A multipart/alternative e-mail (plain text and HTML) with one-click unsubscribe
    (RFC 8058). `message_id` and `sent_at`, when given, become its Message-ID and Date."""
    if not recipient.email:
        raise ValueError("recipient.email: the recipient has no e-mail address")
    views = _views(recipient, notices)
    context = _context(recipient, views)
    context |= {"headline": _headline(views, recipient), "unsubscribe_url": unsubscribe_url}
    message = EmailMessage()
    message["Subject"] = subject(recipient, notices)
    message["From"] = sender
    message["To"] = formataddr((_clip(recipient.name) or "", recipient.email))
    if sent_at is not None:
        message["Date"] = format_datetime(
            sent_at if sent_at.tzinfo else sent_at.replace(tzinfo=UTC)
        )
    if message_id is not None:
        message["Message-ID"] = message_id
    message["List-Unsubscribe"] = f"<{unsubscribe_url}>"
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message.set_content(_EMAIL_TEXT.render(**context))
    message.add_alternative(_EMAIL_HTML.render(**context), subtype="html")
    # After the bodies: setting content clears every Content-* header.
    message["Content-Language"] = "pl" if wording(recipient) is WORDING["pl"] else "en"
    return message
