"""Pure normalisation of inbound lead data: email, domain, names, size band, intake flags."""

from __future__ import annotations

from functools import lru_cache

import pycountry
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


@lru_cache(maxsize=4096)
def normalise_email(raw: str) -> tuple[str, bool]:
    """Lower-cased email and whether its syntax is valid (an invalid one is flagged, not refused).
    Cached: a lead's address is checked again when its snapshot is built."""
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


# Names platforms send that ISO 3166 does not list under that spelling.
COUNTRY_ALIASES = {
    "uk": "GB",
    "u.k.": "GB",
    "england": "GB",
    "scotland": "GB",
    "wales": "GB",
    "great britain": "GB",
    "britain": "GB",
    "u.s.": "US",
    "u.s.a.": "US",
    "america": "US",
    "polska": "PL",
    "slovensko": "SK",
    "slovak republic": "SK",
    "česko": "CZ",
    "cesko": "CZ",
    "česká republika": "CZ",
    "deutschland": "DE",
    "österreich": "AT",
    "magyarország": "HU",
    "россия": "RU",
    "russia": "RU",
    "south korea": "KR",
    "korea": "KR",
    "czech": "CZ",
    "holland": "NL",
    "the netherlands": "NL",
}


@lru_cache(maxsize=4096)
def country_code(raw: str | None) -> str | None:
    """ISO 3166-1 alpha-2 for a code (PL, POL), an English or common local name; None if unknown."""
    if raw is None:
        return None
    value = " ".join(raw.split())
    if not value:
        return None
    alias = COUNTRY_ALIASES.get(value.lower())
    if alias:
        return alias
    try:
        return pycountry.countries.lookup(value).alpha_2
    except LookupError:
        return None


# The fixed industry taxonomy, and the names platforms use for each entry.
INDUSTRIES: dict[str, tuple[str, ...]] = {
    "software": (
        "software",
        "saas",
        "computer software",
        "information technology",
        "it",
        "it services",
        "technology",
        "internet",
        "cloud",
        "cybersecurity",
        "computer & network security",
    ),
    "financial_services": (
        "financial services",
        "finance",
        "banking",
        "bank",
        "fintech",
        "insurance",
        "investment management",
        "capital markets",
        "accounting",
    ),
    "manufacturing": (
        "manufacturing",
        "industrial",
        "industrial automation",
        "machinery",
        "automotive",
        "electronics",
        "chemicals",
        "electrical/electronic manufacturing",
    ),
    "healthcare": (
        "healthcare",
        "health care",
        "hospital & health care",
        "medical devices",
        "pharmaceuticals",
        "biotechnology",
        "life sciences",
    ),
    "retail": ("retail", "e-commerce", "ecommerce", "consumer goods", "wholesale"),
    "telecommunications": ("telecommunications", "telecom", "wireless"),
    "media": ("media", "marketing and advertising", "advertising", "publishing", "entertainment"),
    "professional_services": (
        "professional services",
        "consulting",
        "management consulting",
        "legal services",
        "law practice",
        "staffing and recruiting",
    ),
    "education": ("education", "higher education", "e-learning", "education management"),
    "government": ("government", "public sector", "government administration", "defense"),
    "energy": ("energy", "utilities", "oil & energy", "renewables"),
    "logistics": ("logistics", "transportation", "logistics and supply chain", "shipping"),
    "real_estate": ("real estate", "construction", "architecture & planning"),
    "hospitality": ("hospitality", "travel", "leisure", "restaurants", "food & beverages"),
    "nonprofit": ("nonprofit", "non-profit", "non-profit organization management", "ngo"),
}
_INDUSTRY_LOOKUP = {
    " ".join(name.replace("_", " ").split()): key
    for key, names in INDUSTRIES.items()
    for name in (key, *names)
}


def industry(raw: str | None) -> str | None:
    """The taxonomy entry for a platform's industry name; `other` when it is not known."""
    if raw is None or not raw.strip():
        return None
    value = " ".join(raw.strip().lower().replace("_", " ").split())
    return _INDUSTRY_LOOKUP.get(value, "other")


def clean_name(value: str | None) -> str | None:
    if value is None:
        return None
    value = " ".join(value.split())
    return value or None


def intake_flags(
    *,
    email_valid: bool,
    title: str | None,
    email: str,
    competitor_domains: tuple[str, ...] = (),
    student_markers: tuple[str, ...] = (),
    job_seeker_markers: tuple[str, ...] = (),
    student_domain_suffixes: tuple[str, ...] = (),
) -> list[str]:
    """Negative-signal flags known at intake; the markers and domains come from the policy."""
    flags = []
    if not email_valid:
        flags.append("invalid_email")
    domain = email_domain(email)
    if any(domain == d or domain.endswith("." + d) for d in competitor_domains):
        flags.append("competitor")
    lowered = (title or "").lower()
    if any(m in lowered for m in student_markers) or any(
        domain.endswith(suffix) for suffix in student_domain_suffixes
    ):
        flags.append("student")
    if any(m in lowered for m in job_seeker_markers):
        flags.append("job_seeker")
    return flags
