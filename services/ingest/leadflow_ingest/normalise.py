"""Pure normalisation of inbound lead data: email, domain, names, size band, intake flags."""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email

FREE_MAIL = frozenset(
    {
        "gmail.com",
        "yahoo.com",
        "hotmail.com",
        "outlook.com",
        "wp.pl",
        "o2.pl",
        "onet.pl",
        "interia.pl",
        "azet.sk",
        "centrum.sk",
        "icloud.com",
        "proton.me",
    }
)
SIZE_BANDS = (
    (1, 9, "1-9"),
    (10, 49, "10-49"),
    (50, 249, "50-249"),
    (250, 999, "250-999"),
    (1000, 4999, "1000-4999"),
    (5000, None, "5000+"),
)


def normalise_email(raw: str) -> tuple[str, bool]:
    """Lower-cased email and whether its syntax is valid (an invalid one is flagged, not refused)."""
    email = raw.strip().lower()
    try:
        validate_email(email, check_deliverability=False)
        return email, True
    except EmailNotValidError:
        return email, False


def email_domain(email: str) -> str:
    return email.rpartition("@")[2]


def company_domain(email: str, given: str | None) -> str | None:
    if given:
        domain = given.strip().lower()
        for prefix in ("https://", "http://"):
            domain = domain.removeprefix(prefix)
        return domain.split("/")[0].removeprefix("www.") or None
    domain = email_domain(email)
    return None if domain in FREE_MAIL else domain


def size_band(employees: int | None) -> str | None:
    if employees is None:
        return None
    for low, high, name in SIZE_BANDS:
        if employees >= low and (high is None or employees <= high):
            return name
    return None


def clean_name(value: str | None) -> str | None:
    if value is None:
        return None
    value = " ".join(value.split())
    return value or None


def intake_flags(*, email_valid: bool, title: str | None, email: str) -> list[str]:
    flags = []
    if not email_valid:
        flags.append("invalid_email")
    lowered = (title or "").lower()
    if "student" in lowered or email_domain(email).endswith(".edu"):
        flags.append("student")
    if any(w in lowered for w in ("job seeker", "looking for", "open to work")):
        flags.append("job_seeker")
    return flags
