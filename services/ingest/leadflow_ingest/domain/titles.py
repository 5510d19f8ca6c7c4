"""A person's seniority read from their job title, English or Polish, by an ordered table of rules.

The table is data: each rule is a regular expression over the normalised title (lower case,
Polish letters without their diacritics, punctuation as spaces) and the seniority it means. The
first rule that matches decides, so the exceptions come before the general rules: an assistant
to the CEO is not C-level, an office manager manages no team, a "wiceprezes zarządu" sits on
the management board. A title no rule knows has no seniority (None), rather than a guess."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

Seniority = Literal["c_level", "vp", "director", "manager", "individual"]
SENIORITIES: tuple[Seniority, ...] = ("c_level", "vp", "director", "manager", "individual")


@dataclass(frozen=True)
class TitleRule:
    """Titles matching `pattern` (over the normalised title) have `seniority`."""

    pattern: re.Pattern[str]
    seniority: Seniority
    why: str = ""

    @classmethod
    def of(cls, pattern: str, seniority: Seniority, why: str = "") -> TitleRule:
        return cls(re.compile(pattern), seniority, why)


# Polish letters NFKD does not take apart.
_UNDECOMPOSED = str.maketrans({"ł": "l", "Ł": "l", "ø": "o", "ß": "ss"})
_SEPARATORS = re.compile(r"[^\w&]+")


def normalise_title(title: str) -> str:
    """'Członek Zarządu, CFO' -> 'czlonek zarzadu cfo'."""
    decomposed = unicodedata.normalize("NFKD", title.translate(_UNDECOMPOSED))
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch)).lower()
    plain = plain.replace("'", "").replace("’", "")  # director's -> directors
    return " ".join(_SEPARATORS.sub(" ", plain).split())


_ASSISTANT = (
    r"\b(assistant|asystent\w*|secretary|sekretar\w*|receptionist|recepcjonist\w*"
    r"|interns?|internship|trainee|stazyst\w*|praktykant\w*)\b"
)
_C_SUITE = r"\b(ceo|cfo|cto|coo|cmo|cio|cro|cso|cpo|cdo|cco|chro|ciso|caio)\b"

TITLE_RULES: tuple[TitleRule, ...] = (
    # Titles that carry an assistant's word but rank by the rest.
    TitleRule.of(r"\bassistant vice president\b|\bavp\b", "vp", "banking's AVP"),
    TitleRule.of(r"\bassistant (director|head)\b", "director"),
    TitleRule.of(r"\bassistant manager\b", "manager"),
    # Whoever assists, serves or learns beside a senior person is not that person.
    TitleRule.of(_ASSISTANT, "individual", "assistant to the CEO, director's assistant"),
    # Titles with a senior-sounding word that name an individual contributor.
    TitleRule.of(
        r"\b(product owner|process owner|office manager|(key )?account (manager|executive)"
        r"|opiekun\w* klient\w*|(menedzer|menadzer|manager)\w* ds kluczowych klientow"
        r"|chief (architect|engineer|scientist|economist|editor))\b",
        "individual",
    ),
    # The management board (zarząd) of a Polish company is its executive team.
    TitleRule.of(
        r"\b(czlon\w* zarzadu|(wice)?prezes\w* zarzadu|board member|member of the board"
        r"|czlon\w* rady nadzorczej)\b",
        "c_level",
        "Polish management board",
    ),
    TitleRule.of(
        r"\b(co ?founder|founder|zalozyciel\w*|wspolzalozyciel\w*|co ?owner|owner"
        r"|wlasciciel\w*|wspolwlasciciel\w*)\b",
        "c_level",
        "founders and owners",
    ),
    TitleRule.of(
        r"^((managing|senior|founding|equity|general) )?partner( |$)"
        r"(?!(manager|account|marketing|success|sales|development|program))",
        "c_level",
        "a firm's partners",
    ),
    TitleRule.of(r"\b(vp|svp|evp|vice president|wiceprezes\w*)\b", "vp"),
    TitleRule.of(
        _C_SUITE + r"|\bchief (\w+ ){0,3}officer\b|\bchief executive\b"
        r"|(?<!vice )\bpresident\b|\bprezes\w*\b|\bmanaging director\b"
        r"|\bdyrektor\w* (generaln\w*|zarzadzajac\w*|naczeln\w*)\b",
        "c_level",
    ),
    TitleRule.of(
        r"\b(chief of staff|general manager|country manager|head|director|dyrektor\w*"
        r"|wicedyrektor\w*|szef\w*|prokurent\w*)\b",
        "director",
    ),
    TitleRule.of(
        r"\b(manager|kierowni\w*|menedzer\w*|menadzer\w*|team lead(er)?|lider\w* zespolu"
        r"|supervisor|superintendent)\b",
        "manager",
    ),
    TitleRule.of(
        r"\b(engineer|developer|programist\w*|inzynier\w*|specialist|specjalist\w*|analyst"
        r"|analityk\w*|consultant|konsultant\w*|representative|przedstawiciel\w*|handlowi\w*"
        r"|designer|projektant\w*|grafik\w*|accountant|ksiegow\w*|associate|coordinator"
        r"|koordynator\w*|executive|administrator\w*|architect|architekt\w*|scientist"
        r"|technician|technik\w*|advisor|adviser|doradca|doradczyni|recruiter|rekruter\w*"
        r"|writer|copywriter|editor|redaktor\w*|tester\w*|officer|urzednik\w*|pracownik\w*"
        r"|operator\w*|sprzedawc\w*|agent\w*|student\w*|lecturer|wykladowc\w*|teacher"
        r"|nauczyciel\w*|ambassador|marketer|tech lead|sdr|bdr|ae)\b",
        "individual",
    ),
)


def seniority_from_title(
    title: str | None, rules: Sequence[TitleRule] = TITLE_RULES
) -> Seniority | None:
    """The seniority the first matching rule gives the title; None when no rule knows it."""
    if not title:
        return None
    normalised = normalise_title(title)
    for rule in rules:
        if rule.pattern.search(normalised):
            return rule.seniority
    return None


def with_rules_first(extra: Iterable[TitleRule]) -> tuple[TitleRule, ...]:
    """The shipped table behind rules of one's own (tried first)."""
    return (*extra, *TITLE_RULES)
