"""Seniority read from real job titles, English and Polish, by ingest's table of title rules."""

from __future__ import annotations

import pytest
from leadflow.contracts.policy import default_policy
from leadflow_ingest.domain.titles import (
    SENIORITIES,
    TITLE_RULES,
    TitleRule,
    normalise_title,
    seniority_from_title,
    with_rules_first,
)

TITLES = [
    # C-level: chiefs, founders, owners, presidents, the Polish management board
    ("Chief Executive Officer", "c_level"),
    ("CEO & Co-founder", "c_level"),
    ("Co-Founder", "c_level"),
    ("Founder and Managing Director", "c_level"),
    ("CFO", "c_level"),
    ("Chief Revenue Officer", "c_level"),
    ("Chief Information Security Officer (CISO)", "c_level"),
    ("Chief Marketing Officer, EMEA", "c_level"),
    ("President & CEO", "c_level"),
    ("Managing Director", "c_level"),
    ("Owner", "c_level"),
    ("Managing Partner", "c_level"),
    ("Prezes Zarządu", "c_level"),
    ("Prezeska Zarządu", "c_level"),
    ("Członek Zarządu", "c_level"),
    ("Członkini Zarządu ds. Finansowych", "c_level"),
    ("Wiceprezes Zarządu", "c_level"),
    ("Właściciel", "c_level"),
    ("Współwłaścicielka", "c_level"),
    ("Założyciel i Prezes", "c_level"),
    ("Dyrektor Generalny", "c_level"),
    ("Dyrektor Zarządzający", "c_level"),
    ("Prezes", "c_level"),
    ("Prezes Zarzadu", "c_level"),  # typed without Polish letters
    # VP
    ("VP of Sales", "vp"),
    ("Vice President, Marketing", "vp"),
    ("Senior Vice-President Engineering", "vp"),
    ("SVP Global Operations", "vp"),
    ("EVP, Chief of Customer Experience", "vp"),
    ("Assistant Vice President", "vp"),
    ("Wiceprezes", "vp"),
    ("Wiceprezes ds. Sprzedaży", "vp"),
    # Director
    ("Head of Marketing", "director"),
    ("Senior Director, Demand Generation", "director"),
    ("Sales Director CEE", "director"),
    ("Director of Engineering", "director"),
    ("Executive Director", "director"),
    ("General Manager, Poland", "director"),
    ("Country Manager", "director"),
    ("Chief of Staff", "director"),
    ("Dyrektor Sprzedaży", "director"),
    ("Dyrektorka ds. Marketingu", "director"),
    ("Dyrektor Finansowy", "director"),
    ("Zastępca Dyrektora Departamentu IT", "director"),
    ("Wicedyrektor", "director"),
    ("Szef Działu Sprzedaży", "director"),
    ("Prokurent", "director"),
    # Manager
    ("Marketing Manager", "manager"),
    ("Product Manager", "manager"),
    ("Senior Project Manager", "manager"),
    ("Lead Generation Manager", "manager"),
    ("Partner Manager", "manager"),
    ("Team Lead, Customer Success", "manager"),
    ("Kierownik Działu IT", "manager"),
    ("Kierowniczka Projektu", "manager"),
    ("Menedżer ds. Marketingu", "manager"),
    ("Lider Zespołu Sprzedaży", "manager"),
    ("Assistant Manager", "manager"),
    # Individual contributors, tricky ones first
    ("Assistant to the CEO", "individual"),
    ("Executive Assistant to the CFO", "individual"),
    ("Director's Assistant", "individual"),
    ("Managing Director's Assistant", "individual"),
    ("Asystentka Prezesa Zarządu", "individual"),
    ("Sekretarka Zarządu", "individual"),
    ("Office Manager", "individual"),
    ("Key Account Manager", "individual"),
    ("Account Executive", "individual"),
    ("Product Owner", "individual"),
    ("Chief Architect", "individual"),
    ("Marketing Intern", "individual"),
    ("Stażystka w Dziale Marketingu", "individual"),
    ("Software Engineer", "individual"),
    ("Senior Software Engineer", "individual"),
    ("Tech Lead", "individual"),
    ("Data Analyst", "individual"),
    ("Sales Development Representative", "individual"),
    ("Specjalista ds. marketingu", "individual"),
    ("Specjalistka ds. Kadr", "individual"),
    ("Programista Python", "individual"),
    ("Inżynier Sprzedaży", "individual"),
    ("Przedstawiciel Handlowy", "individual"),
    ("Opiekun Klienta Kluczowego", "individual"),
    ("Księgowa", "individual"),
    ("Analityk Danych", "individual"),
    ("Konsultant SAP", "individual"),
    ("Doradca Zarządu", "individual"),
    # Nothing to go by
    ("mgr inż.", None),
    ("Ninja", None),
    ("", None),
    (None, None),
]


@pytest.mark.parametrize(("title", "seniority"), TITLES, ids=lambda v: repr(v))
def test_a_job_title_has_the_seniority_people_would_give_it(title, seniority):
    assert seniority_from_title(title) == seniority


def test_the_table_covers_many_real_titles_in_both_languages():
    assert len(TITLES) >= 60
    assert {s for _, s in TITLES if s} == set(SENIORITIES)


def test_every_seniority_the_table_gives_is_one_the_policy_scores():
    scored = set(default_policy().scoring.fit.seniority_points)
    assert {rule.seniority for rule in TITLE_RULES} <= scored
    assert set(SENIORITIES) == scored


def test_titles_are_compared_without_case_diacritics_or_punctuation():
    assert normalise_title("  Członek  Zarządu, CFO ") == "czlonek zarzadu cfo"
    assert normalise_title("Director’s Assistant") == "directors assistant"
    assert normalise_title("Co-Founder & CEO") == "co founder & ceo"


def test_rules_of_one_s_own_are_tried_before_the_shipped_ones():
    rules = with_rules_first([TitleRule.of(r"\bgeschaftsfuhrer\w*", "c_level")])
    assert seniority_from_title("Geschäftsführer", rules) == "c_level"
    assert seniority_from_title("Geschäftsführer") is None
    office = with_rules_first([TitleRule.of(r"^office manager$", "manager")])
    assert seniority_from_title("Office Manager", office) == "manager"
