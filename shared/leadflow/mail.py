"""Hands an e-mail to the SMTP relay and says whether a failed try is worth another.

Sending is aiosmtplib's (a maintained asyncio SMTP client: EHLO, STARTTLS, AUTH, pipelining,
RFC 5321 replies as typed exceptions); this module only decides what a reply means. A 5xx reply
(the relay refusing the sender, a recipient or the message) is permanent: the same message would
be refused again. A 4xx reply, a refused or dropped connection and a timeout are transient. The
password and the message's addresses and bodies are never logged, only its Message-ID.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from email.message import EmailMessage

import aiosmtplib

from leadflow.settings import Settings

log = logging.getLogger("leadflow.mail")


@dataclass(frozen=True)
class SmtpSettings:
    """Where and how to reach the SMTP relay."""

    host: str | None
    port: int = 587
    starttls: bool = True
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    sender: str = "Leadflow <leadflow@localhost>"
    timeout: float = 10.0

    @classmethod
    def from_settings(cls, settings: Settings) -> SmtpSettings:
        return cls(
            host=settings.smtp_host,
            port=settings.smtp_port,
            starttls=settings.smtp_starttls,
            user=settings.smtp_user,
            password=settings.smtp_password,
            sender=settings.smtp_from,
            timeout=settings.smtp_timeout,
        )


@dataclass(frozen=True)
class MailOutcome:
    """What became of one message: accepted by the relay (`ok`), or why not; `code` is the
    relay's reply code when it gave one, `permanent` says a retry would be refused again."""

    ok: bool
    code: int | None = None
    error: str | None = None
    permanent: bool = False


def _refused(code: int, text: str) -> MailOutcome:
    return MailOutcome(ok=False, code=code, error=f"{code} {text}".strip(), permanent=code >= 500)


async def send_mail(settings: SmtpSettings, message: EmailMessage) -> MailOutcome:
    """Send `message` (its From and To headers are the envelope) through the relay."""
    if not settings.host:
        return MailOutcome(ok=False, error="no SMTP relay is configured", permanent=True)
    message_id = message.get("Message-ID", "")
    try:
        refused, _reply = await aiosmtplib.send(
            message,
            hostname=settings.host,
            port=settings.port,
            start_tls=settings.starttls,
            username=settings.user,
            password=settings.password,
            timeout=settings.timeout,
        )
    except aiosmtplib.SMTPRecipientsRefused as exc:
        # Every recipient refused: permanent only if every refusal was a 5xx.
        codes = [r.code for r in exc.recipients]
        outcome = MailOutcome(
            ok=False,
            code=max(codes) if codes else None,
            error="; ".join(f"{r.code} {r.message}" for r in exc.recipients),
            permanent=bool(codes) and all(code >= 500 for code in codes),
        )
    except aiosmtplib.SMTPResponseException as exc:
        outcome = _refused(exc.code, exc.message)
    except aiosmtplib.SMTPTimeoutError:
        outcome = MailOutcome(ok=False, error=f"no answer within {settings.timeout:g} s")
    except (aiosmtplib.SMTPException, OSError) as exc:
        # Refused or dropped connections, and a relay without STARTTLS: worth another try
        # (the relay may come back, or be fixed), never a reason to drop the message.
        outcome = MailOutcome(ok=False, error=f"{type(exc).__name__}: {exc}")
    else:
        # Some recipients refused and others accepted: the message went out.
        error = "; ".join(f"{r.code} {r.message}" for r in refused.values()) or None
        outcome = MailOutcome(ok=True, code=250, error=error)
    log.info(
        "mail %s",
        "sent" if outcome.ok else "refused",
        extra={
            "message_id": message_id,
            "smtp_code": outcome.code,
            "permanent": outcome.permanent,
        },
    )
    return outcome
