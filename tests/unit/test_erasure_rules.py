"""What erasure removes from a lead's data and its events, and what it keeps for the reports."""

from leadflow.contracts.erasure import ERASED_TEXT, without_personal_data


def test_a_lead_loses_who_the_person_is_and_keeps_what_reports_count():
    lead = {
        "email": "ana@example.com",
        "first_name": "Ana",
        "title": "CFO",
        "intent_note": "wants a demo on Friday",
        "properties": {"hs_persona": "finance"},
        "company": {"name": "Acme", "industry": "software", "employees": 120},
        "source": {"system": "hubspot", "channel": "paid_search", "utm_term": "ana acme"},
        "score": 72,
    }
    erased = without_personal_data(lead)
    assert erased["email"] is None and erased["first_name"] is None and erased["title"] is None
    assert erased["intent_note"] is None and erased["properties"] == {}
    assert erased["company"] == {"name": None, "industry": "software", "employees": 120}
    assert erased["source"] == {"system": "hubspot", "channel": "paid_search"}
    assert erased["score"] == 72 and erased["erased"] is True


def test_a_hand_off_keeps_its_four_parts_but_not_their_words():
    status_change = {
        "status": "handed_off",
        "handoff": {
            "use_case": "Ana's team closes the books in Acme's ERP",
            "promised_outcomes": "month-end close in 3 days",
            "risks": "Ana leaves in March",
            "plan": "kickoff with Ana on 12 May",
            "handed_off_to": "cs-team",
        },
    }
    handoff = without_personal_data(status_change)["handoff"]
    for part in ("use_case", "promised_outcomes", "risks", "plan"):
        assert handoff[part] == ERASED_TEXT
    assert handoff["handed_off_to"] == "cs-team"
    assert without_personal_data({"status": "won", "handoff": None})["handoff"] is None
