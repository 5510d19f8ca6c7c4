"""The weekly review page and the lead timeline, rendered from report fixtures (no I/O)."""

import html
import re
import uuid
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from leadflow.contracts.policy import default_policy
from leadflow_feedback.domain import charts
from leadflow_feedback.domain.reports import LeadFacts, StatusStep, calibration, sla_report
from leadflow_feedback.domain.review import (
    first_response_limits,
    render_review,
    render_timeline,
    week_figures,
    weekly_text,
)

WAW = ZoneInfo("Europe/Warsaw")
POLICY = default_policy()
MONDAY = date(2026, 3, 2)
NOW = datetime(2026, 3, 7, 12, tzinfo=WAW)
REP = uuid.uuid4()


def lead(day: int, hour: int, *, responded_after: timedelta | None, **extra) -> LeadFacts:
    routed = datetime(2026, 3, 2 + day, hour, tzinfo=WAW)
    facts = LeadFacts(
        lead_id=uuid.uuid4(),
        status="working",
        channel="inbound",
        source={"medium": "paid", "campaign": "spring-webinar"},
        team="CEE <inbound>",
        rep_id=REP,
        mql_at=routed - timedelta(minutes=1),
        routed_at=routed,
        role="decision_maker",
        mql_fit=90,
        fit=90,
        in_target=True,
        mql_context_missing=[],
        context_missing=[],
        attempts=2,
        first_attempt_at=routed + responded_after if responded_after else None,
    )
    for key, value in extra.items():
        setattr(facts, key, value)
    return facts


def fixture_leads() -> list[LeadFacts]:
    late = lead(0, 10, responded_after=timedelta(hours=5))
    quick = lead(1, 10, responded_after=timedelta(minutes=30))
    returned = lead(2, 11, responded_after=timedelta(minutes=45), status="returned", in_target=False)
    returned.history = [StatusStep("returned", "not_in_target", datetime(2026, 3, 4, 15, tzinfo=WAW))]
    sql = lead(3, 9, responded_after=timedelta(minutes=20), status="sql")
    sql.history = [
        StatusStep("sal", None, datetime(2026, 3, 5, 12, tzinfo=WAW)),
        StatusStep("sql", None, datetime(2026, 3, 5, 15, tzinfo=WAW)),
    ]
    return [late, quick, returned, sql]


def render(leads: list[LeadFacts], **overrides) -> str:
    week = sla_report(leads, POLICY, first=MONDAY, last=MONDAY, granularity="week", now=NOW)
    trend = sla_report(
        leads, POLICY, first=MONDAY - timedelta(weeks=3), last=MONDAY, granularity="week", now=NOW
    )
    cal = calibration(
        leads, POLICY, start=datetime(2026, 1, 1, tzinfo=WAW), end=datetime(2026, 3, 9, tzinfo=WAW)
    )
    args = {
        "week": MONDAY,
        "team": None,
        "teams": ["CEE <inbound>"],
        "week_report": week,
        "trend_report": trend,
        "calibration": cal,
        "names": {},
        "reps": {},
        "sla_limits": first_response_limits(POLICY),
        **overrides,
    }
    return render_review(**args), week


def figure(page: str, name: str) -> str:
    match = re.search(rf'data-figure="{re.escape(name)}" data-value="([^"]*)"', page)
    assert match, f"figure {name} is not on the page"
    return html.unescape(match.group(1))


def test_the_page_shows_the_weeks_figures_of_the_report():
    page, report = render(fixture_leads())
    figures = week_figures(report)
    assert figures["mql"] == 4
    assert figure(page, "mql") == "4"
    assert float(figure(page, "attempts_per_mql")) == figures["attempts_per_mql"]["value"] == 2
    assert float(figure(page, "in_target_share")) == figures["in_target_share"]["value"] == 0.75
    assert float(figure(page, "mql_to_sql")) == figures["mql_to_sql"] == 0.25
    assert float(figure(page, "avg_response_seconds")) == figures["avg_response_seconds"]
    assert figure(page, "breaches") == "1"
    assert figure(page, "corrective_plan.marketing") in ("true", "false")
    assert "Weekly SLA review — week of 2026-03-02" in page


def test_exceptions_link_to_the_lead_timelines():
    leads = fixture_leads()
    page, report = render(leads)
    late_id = report["exceptions"]["first_response_breaches"][0]["lead_id"]
    returned_id = report["exceptions"]["returned_not_in_target"][0]["lead_id"]
    assert f'href="/review/leads/{late_id}"' in page
    assert f'href="/review/leads/{returned_id}"' in page
    # the campaign brought an SQL, so it is no exception
    assert report["exceptions"]["campaigns_without_sql"] == []
    assert 'id="campaigns-without-sql"' not in page


def test_a_campaign_without_sql_is_listed():
    leads = [lead(0, 10, responded_after=timedelta(minutes=10))]
    page, _ = render(leads)
    assert re.search(r'id="campaigns-without-sql">\s*<li>spring-webinar — 1 MQL</li>', page)


def test_lead_rep_and_team_names_are_escaped():
    leads = fixture_leads()
    late = leads[0]
    page, _ = render(
        leads,
        names={str(late.lead_id): "<script>alert('lead')</script> Bobby & Co"},
        reps={str(REP): "<img src=x onerror=alert(1)>"},
        team="CEE <inbound>",
    )
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(&#39;lead&#39;)&lt;/script&gt; Bobby &amp; Co" in page
    assert "<img src=x" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "CEE &lt;inbound&gt;" in page


def test_the_charts_are_inline_svg_with_the_plan_and_sla_lines():
    page, _ = render(fixture_leads())
    assert page.count("<svg") == 3
    assert 'aria-label="MQL per week against the plan"' in page
    assert ">SLA</text>" in page and ">plan</text>" in page


def test_an_empty_week_renders_without_figures():
    page, report = render([])
    assert figure(page, "mql") == "0"
    assert figure(page, "attempts_per_mql") == ""
    assert "None: every routed MQL was contacted within its limit." in page
    assert report["exceptions"]["first_response_breaches"] == []


def test_chart_labels_are_escaped():
    svg = charts.bars([("<b>", 1.0)], line=2.0, line_label="plan", label='"x" & y')
    assert "<b>" not in svg and "&lt;b&gt;" in svg
    assert 'aria-label="&#34;x&#34; &amp; y"' in svg


def test_weekly_text_names_both_parties_and_the_exceptions():
    _, report = render(fixture_leads())
    text = weekly_text(report, url="http://127.0.0.1:8005/review?week=2026-03-02")
    assert "MQL vs plan             4 of" in text
    assert "late first contact          1" in text
    assert text.endswith("Review page: http://127.0.0.1:8005/review?week=2026-03-02")


def test_the_timeline_shows_every_event_in_order_with_trace_and_deliveries():
    lead_id = uuid.uuid4()
    assignment_id = uuid.uuid4()
    t0 = datetime(2026, 3, 2, 10, tzinfo=WAW)
    entries = [
        {"type": "lead.created", "occurred_at": t0, "source": "ingest",
         "details": {"source": {"channel": "inbound", "system": "hubspot"}, "company": {}}},
        {"type": "lead.scored", "occurred_at": t0 + timedelta(seconds=1), "source": "scoring",
         "details": {"fit": 100, "engagement": 0, "intent_tier": 2, "is_mql": True,
                     "breakdown": [{"rule": "industry", "points": 15, "detail": "<software>"}],
                     "reasons": ["mql: fit 100 >= 70"]}},
        {"type": "lead.routed", "occurred_at": t0 + timedelta(seconds=2), "source": "routing",
         "details": {"team": "CEE", "rep_id": str(REP), "reason": "mql",
                     "assignment_id": str(assignment_id)}},
        {"type": "sla.breached", "occurred_at": t0 + timedelta(hours=2), "source": "sla-timer",
         "details": {"sla": "first_response", "level": "breach"}},
        {"type": "lead.contact_attempt", "occurred_at": t0 + timedelta(hours=3),
         "source": "feedback", "details": {"channel": "call", "outcome": "voicemail"}},
    ]  # fmt: skip
    page = render_timeline(
        lead_id=lead_id,
        lead={"status": "working", "display_name": "Ada <Lovelace>", "team": "CEE",
              "channel": "inbound", "source": {}},
        entries=entries,
        assignment={"assignment_id": str(assignment_id),
                    "trace": {"strategy": "round_robin", "rule": "cee inbound",
                              "rules_tried": [{"rule": "cee inbound", "matched": True}],
                              "considered": [{"rep_id": str(REP), "name": "Alan <T>",
                                              "chosen": True, "skipped": None}]}},
        deliveries=[{"event_type": "lead.routed", "state": "delivered", "attempts": 1,
                     "last_status": 204, "delivered_at": (t0 + timedelta(seconds=3)).isoformat()}],
        reps={str(REP): "Alan <T>"},
        time_zone="Europe/Warsaw",
    )  # fmt: skip
    order = re.findall(r'data-type="([^"]+)"', page)
    assert order == [
        "lead.created",
        "lead.scored",
        "lead.routed",
        "webhook.delivery",
        "sla.breached",
        "lead.contact_attempt",
    ]
    assert "Ada &lt;Lovelace&gt;" in page and "Ada <Lovelace>" not in page
    assert 'id="decision-trace"' in page and "round_robin" in page
    assert "Alan &lt;T&gt; (chosen)" in page
    assert "&lt;software&gt;" in page
    assert "Mon 2026-03-02 10:00" in page
