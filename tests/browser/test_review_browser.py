"""The weekly review page in a real browser after a real (short) `leadflow demo`: the figures
on the page are the JSON report's and Prometheus's, an exception leads to the lead's
timeline, and the team filter works. The browser signs in as a person does, with the account
and password the demo printed; tools give the API key (Bearer, or the password of HTTP Basic).
Screenshots are kept under .leadflow/artefacts/browser.

Needs Debian's Chromium at /usr/bin/chromium (`make system-deps` installs it).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest
from leadflow.settings import DEV_API_KEY
from prometheus_client.parser import text_string_to_metric_families
from support.browser import launched_chromium
from support.harness import eventually_sync

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
ARTEFACTS = ROOT / ".leadflow" / "artefacts" / "browser"
READY_LINE = "The stack keeps running"
# The JSON report, like every API, takes the key as a bearer token.
KEY = {"Authorization": f"Bearer {DEV_API_KEY}"}


class DemoRun:
    """`leadflow demo --keep` as a user runs it, its output collected line by line."""

    def __init__(self, state_dir: Path) -> None:
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "leadflow_tools.cli", "demo", "--days", "2", "--leads", "24",
             "--minutes", "0.75", "--keep", "--state-dir", str(state_dir)],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, text: str, timeout: float) -> None:
        def printed() -> bool:
            if text in self.output:
                return True
            if self.proc.poll() is not None:
                self.reader.join(5)
                raise AssertionError(
                    f"the demo exited without printing {text!r}; its output:\n{self.output}"
                )
            return False

        eventually_sync(
            printed,
            timeout=timeout,
            interval=0.5,
            describe=lambda: f"the demo did not print {text!r}; its output:\n{self.output}",
        )

    def account(self) -> tuple[str, str]:
        """The e-mail and password of the account the demo made for the review pages."""
        match = re.search(r"sign in with the e-mail (\S+) and the password (\S+) ", self.output)
        assert match, f"the demo did not print its account; its output:\n{self.output}"
        return match.group(1), match.group(2)

    def url(self, label: str) -> str:
        match = re.search(rf"^{re.escape(label)}: (\S+)", self.output, re.M)
        assert match, f"the demo did not print '{label}:'; its output:\n{self.output}"
        return match.group(1)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.reader.join(5)
        return self.proc.returncode


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    run = DemoRun(tmp_path_factory.mktemp("demo"))
    try:
        run.wait_for(READY_LINE, timeout=420)
        yield run
    finally:
        code = run.stop()
        print(f"\n--- leadflow demo output (exit {code}) ---\n{run.output}")
    assert code == 0, f"the demo did not stop cleanly (exit {code})"
    assert run.output.rstrip().endswith("stopped.")


@pytest.fixture(scope="module")
def browser():
    with launched_chromium("--disable-quic") as chromium:
        yield chromium


def signed_in_page(browser, demo: DemoRun, **options):
    """A browser page of a person who opened the review page, was sent to the sign-in page,
    signed in with the demo's account and was brought back."""
    email, password = demo.account()
    page = browser.new_page(**options)
    page.goto(demo.url("Review page"))
    page.wait_for_url("**/login?next=**")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", password)
    page.click("#sign-in button[type=submit]")
    page.wait_for_url("**/review?week=**")
    return page


def figures_on(page) -> dict[str, str]:
    return page.eval_on_selector_all(
        "[data-figure]",
        "els => Object.fromEntries(els.map(e => [e.dataset.figure, e.dataset.value]))",
    )


def expected_from(report: dict) -> dict[str, str]:
    """What the page must show for the report's week, as the page writes the raw values."""
    period = report["periods"][-1]
    m, s = period["marketing"], period["sales"]
    mql = sum(row["mql"] for row in report["conversion"]["by_source"])
    sql = sum(row["sql"] for row in report["conversion"]["by_source"])

    def raw(value) -> str:
        return "" if value is None else str(value)

    return {
        "mql": raw(period["mql"]),
        "in_target_share": raw(m["in_target_share"]["value"]),
        "full_context_share": raw(m["full_context_share"]["value"]),
        "avg_response_seconds": raw(s["response_time"]["avg_seconds"]),
        "p90_response_seconds": raw(s["response_time"]["p90_seconds"]),
        "contacted": raw(s["response_time"]["contacted"]),
        "contacted_within_limit_share": raw(s["contacted_within_limit_share"]["value"]),
        "attempts_per_mql": raw(s["attempts_per_mql"]["value"]),
        **{
            f"attempts_{channel}": raw(made["attempts"])
            for channel, made in s["attempts_by_channel"].items()
        },
        "status_share": raw(s["status_share"]["value"]),
        "sql": raw(sql),
        "mql_to_sql": raw(round(sql / mql, 4) if mql else None),
        "breaches": raw(len(report["exceptions"]["first_response_breaches"])),
        "corrective_plan.marketing": "true" if period["corrective_plan"]["marketing"] else "false",
        "corrective_plan.sales": "true" if period["corrective_plan"]["sales"] else "false",
    }


def metric(url: str, name: str, **labels: str) -> float:
    text = httpx.get(url, timeout=10).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and set(labels.items()) <= set(sample.labels.items())
    )


def numbers(shown: dict[str, str]) -> dict[str, float | None]:
    return {k: (float(v) if v not in ("", "true", "false") else v) for k, v in shown.items()}


def test_the_demo_prints_the_report_and_agrees_with_prometheus(demo):
    out = demo.output
    assert "Weekly SLA review, week of" in out
    assert re.search(r"\[#{30}\] 100\.0 %", out), "no finished progress bar"
    rows = re.findall(
        r"^  (MQL|contact attempts|first-response breaches) .*?(agree|DIFFER)$", out, re.M
    )
    assert [r[0] for r in rows] == ["MQL", "contact attempts", "first-response breaches"]
    assert all(r[1] == "agree" for r in rows), out


def test_the_review_page_shows_the_json_report_and_prometheus_figures(demo, browser):
    review_url, report_url = demo.url("Review page"), demo.url("JSON report")
    scoring, feedback, sla = re.search(r"^metrics: (\S+) (\S+) (\S+)", demo.output, re.M).groups()
    page = signed_in_page(browser, demo, viewport={"width": 1280, "height": 900})
    # simulated time goes on while the stack is kept: read the three sources until one
    # reading agrees (a timer may fire between two of them)
    reading: dict = {}

    def agreeing() -> bool:
        page.goto(review_url)
        reading["shown"] = figures_on(page)
        reading["report"] = httpx.get(report_url, headers=KEY, timeout=10).json()
        reading["mql"] = metric(scoring, "leadflow_mql_total")
        reading["attempts"] = metric(feedback, "leadflow_contact_attempts_total")
        reading["breaches"] = metric(sla, "leadflow_sla_breaches_total", sla="first_response")
        expected = expected_from(reading["report"])
        return {k: reading["shown"].get(k) for k in expected} == expected

    eventually_sync(
        agreeing,
        timeout=10,
        interval=1,
        describe=lambda: (
            f"the page shows {reading['shown']}, the report says {expected_from(reading['report'])}"
        ),
    )
    shown, report = reading["shown"], reading["report"]
    mql_metric, attempts_metric = reading["mql"], reading["attempts"]
    breach_metric = reading["breaches"]
    expected = expected_from(report)
    assert {k: shown.get(k) for k in expected} == expected
    values = numbers(shown)
    assert values["mql"] >= 3, "the demo should have produced MQLs"
    assert values["mql"] == mql_metric
    assert round(values["attempts_per_mql"] * values["mql"]) == attempts_metric
    # the attempts of each channel add up to them, and are what a reader sees
    by_channel = [values[f"attempts_{c}"] for c in ("call", "email", "linkedin", "meeting")]
    assert sum(by_channel) == attempts_metric
    assert f"calls {shown['attempts_call']}" in page.locator("#attempts-by-channel").inner_text()
    assert values["breaches"] >= 1, "the demo's slow reps should have breached"
    assert values["breaches"] == breach_metric
    # the figures are also what a reader sees
    assert page.locator('#marketing [data-figure="mql"]').inner_text() == shown["mql"]
    assert "Weekly SLA review" in page.title()
    assert page.locator("svg.chart").count() == 3
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=ARTEFACTS / "review.png", full_page=True)
    print(f"screenshot: {ARTEFACTS / 'review.png'}")
    page.close()


def test_an_exception_leads_to_the_lead_timeline(demo, browser):
    page = signed_in_page(browser, demo, viewport={"width": 1280, "height": 900})
    link = page.locator("#late-contact a.lead-link").first
    lead_id = link.get_attribute("href").rsplit("/", 1)[-1]
    link.click()
    page.wait_for_url(f"**/review/leads/{lead_id}")
    types = page.eval_on_selector_all("#timeline li", "els => els.map(e => e.dataset.type)")
    for kind in ("lead.created", "lead.scored", "lead.mql", "lead.routed", "sla.breached"):
        assert kind in types, f"{kind} is not on the timeline: {types}"
    assert types.index("lead.created") < types.index("lead.mql") < types.index("lead.routed")
    assert types.index("lead.routed") < types.index("sla.breached")
    assert "webhook.delivery" in types, "routing's webhook delivery is not on the timeline"
    assert page.locator("#decision-trace").count() == 1
    assert "round_robin" in page.locator("#decision-trace").inner_text()
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=ARTEFACTS / "timeline.png", full_page=True)
    print(f"screenshot: {ARTEFACTS / 'timeline.png'}")
    page.close()


def test_the_team_filter_shows_that_teams_figures(demo, browser):
    page = signed_in_page(browser, demo)
    page.select_option("select[name=team]", "Inbound CEE")
    page.click('form[action="/review"] button[type=submit]')
    page.wait_for_url("**team=Inbound+CEE**")
    shown = figures_on(page)
    report = httpx.get(
        demo.url("JSON report"), params={"team": "Inbound CEE"}, headers=KEY, timeout=10
    ).json()
    assert shown["mql"] == str(report["periods"][-1]["mql"])
    assert "Inbound CEE" in page.locator("h1").inner_text()
    page.close()


def test_a_browser_without_a_session_is_sent_to_sign_in_and_tools_give_a_key(demo, browser):
    """A person's browser without a session lands on the sign-in page (and nothing of the
    review); a tool without a key gets 401 with the Basic challenge, and HTTP Basic with any
    user name and the key as the password opens the page; the demo tells both ways."""
    review_url = demo.url("Review page")
    assert "sign in with the e-mail" in demo.output
    assert f"the API key {DEV_API_KEY}" in demo.output
    page = browser.new_page()
    page.goto(review_url)
    page.wait_for_url("**/login?next=**")
    assert page.locator("#sign-in").count() == 1
    assert "Weekly SLA review" not in page.content()
    page.close()
    anonymous = httpx.get(review_url, timeout=10)
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"] == 'Basic realm="Leadflow"'
    wrong = httpx.get(review_url, auth=("anyone", "lf_wrong"), timeout=10)
    assert wrong.status_code == 401
    tool = httpx.get(review_url, auth=("anyone", DEV_API_KEY), timeout=10)
    assert tool.status_code == 200 and "Weekly SLA review" in tool.text


def test_the_pages_break_no_rule_of_their_content_security_policy(demo, browser):
    """Chromium enforces each page's Content-Security-Policy and reports every violation on the
    console: the sign-in page, the review page, a timeline and the sign-out, with the pages'
    stylesheet applied (it comes from the site, as the policy allows) and not one violation."""
    console: list[str] = []
    email, password = demo.account()
    page = browser.new_page()
    page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
    answer = page.goto(demo.url("Review page"))
    page.wait_for_url("**/login?next=**")
    policy = answer.headers.get("content-security-policy")
    assert policy and "default-src 'none'" in policy
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", password)
    page.click("#sign-in button[type=submit]")
    page.wait_for_url("**/review?week=**")
    # the stylesheet applied: the page is laid out as designed, not as unstyled HTML
    assert page.evaluate("() => getComputedStyle(document.body).maxWidth") == "1180px"
    assert page.locator("svg.chart").count() == 3
    page.locator("#late-contact a.lead-link").first.click()
    page.wait_for_url("**/review/leads/**")
    assert page.locator("#timeline li").count() > 0
    page.click("#account button[type=submit]")
    page.wait_for_url("**/login")
    violations = [line for line in console if "Content Security Policy" in line]
    assert violations == [], violations
    page.close()


# Sales' steps from where a lead of the demo's week stands to won, with the bodies each needs.
TO_WON = {
    "routed": ["sal", "sql", "sqo", "won"],
    "working": ["sal", "sql", "sqo", "won"],
    "sal": ["sql", "sqo", "won"],
    "sql": ["sqo", "won"],
    "sqo": ["won"],
}
STEP_BODIES = {
    "sal": {},
    "sql": {"qualification": {"problem": True, "impact": True, "authority": True}},
    "sqo": {"opportunity": {"value": 40000, "currency": "EUR", "stage": "proposal",
                            "close_date": "2027-06-30"}},
}  # fmt: skip


def win_a_lead(feedback: str, candidates: list[str], *, won: dict, already_won: bool = False):
    """The first of `candidates` sales still work, taken through feedback's API on to won (its
    won status with `won`'s body); with `already_won`, a lead won before will do. None when no
    candidate can be."""
    for lead_id in candidates:
        answer = httpx.get(f"{feedback}/v1/leads/{lead_id}/lifecycle", headers=KEY, timeout=10)
        status = answer.json()["status"] if answer.status_code == 200 else None
        if status == "won" and already_won:
            return lead_id
        if status not in TO_WON:
            continue
        for step in TO_WON[status]:
            body = {"status": step, **(won if step == "won" else STEP_BODIES[step])}
            taken = httpx.post(f"{feedback}/v1/leads/{lead_id}/status", headers=KEY, json=body,
                               timeout=10)  # fmt: skip
            assert taken.status_code == 200, taken.text
        return lead_id
    return None


def test_the_review_page_shows_revenue_against_the_goal(demo, browser):
    """A lead the demo's sales worked becomes an SQO of 40,000 EUR and is won at 45,000 EUR
    through feedback's API; the page's revenue section then shows what the JSON report's
    revenue says: won against the week's goal, the open pipeline, coverage and cycle time, and
    the deal under both first-touch and last-touch attribution."""
    report_url = demo.url("JSON report")
    feedback = report_url.split("/v1/", 1)[0]
    report = httpx.get(report_url, headers=KEY, timeout=10).json()
    candidates = [item["lead_id"] for item in report["exceptions"]["first_response_breaches"]]
    won = win_a_lead(feedback, candidates, won={"opportunity": {"value": 45000}})
    assert won, f"no lead of the demo's week is still worked by sales: {candidates}"
    page = signed_in_page(browser, demo, viewport={"width": 1280, "height": 900})
    reading: dict = {}

    def agreeing() -> bool:
        page.goto(demo.url("Review page"))
        reading["shown"] = figures_on(page)
        reading["revenue"] = httpx.get(report_url, headers=KEY, timeout=10).json()["revenue"]
        revenue = reading["revenue"]
        expected = {
            "revenue_won": str(revenue["periods"][-1]["won"]),
            "revenue_deals": str(revenue["periods"][-1]["deals"]),
            "pipeline": str(revenue["pipeline"]["value"]),
            "coverage": "" if revenue["coverage"]["value"] is None else str(
                revenue["coverage"]["value"]),
        }  # fmt: skip
        reading["expected"] = expected
        return (
            revenue["won"] >= 45000 and {k: reading["shown"].get(k) for k in expected} == expected
        )

    eventually_sync(
        agreeing,
        timeout=20,
        interval=1,
        describe=lambda: (
            f"the page shows {reading.get('shown')}, expected {reading.get('expected')}"
        ),
    )
    revenue = reading["revenue"]
    section = page.locator("#revenue")
    assert "Revenue against the goal" in page.content()
    assert f"{revenue['periods'][-1]['goal']:,.0f} EUR goal" in section.inner_text()
    assert float(reading["shown"]["cycle_median_days"]) == revenue["cycle_time_days"]["median"]
    for model in ("first_touch", "last_touch"):
        rows = page.locator(f'#revenue-attribution tr[data-attribution="{model}.campaign"]')
        keys = {row["key"] for row in revenue["attribution"][model]["campaign"]}
        assert rows.count() == len(keys) >= 1
    assert "First touch: the lead's original source" in section.inner_text()
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=ARTEFACTS / "review-revenue.png", full_page=True)
    page.close()


def test_the_review_page_shows_open_plans_and_leads_to_the_quarter_view(demo, browser):
    """The weekly review lists the open corrective plans and overdue actions as
    `GET /v1/plans` has them, and its quarter view shows four quarters whose figures are those of
    `GET /v1/reports/sla?period=quarter`, with the policy versions published in each."""
    report_url = demo.url("JSON report")
    feedback = report_url.split("/v1/", 1)[0]
    plans = httpx.get(f"{feedback}/v1/plans", headers=KEY, timeout=10)
    assert plans.status_code == 200, plans.text
    open_plans = [p for p in plans.json()["items"] if p["status"] in ("open", "in_progress")]
    page = signed_in_page(browser, demo, viewport={"width": 1280, "height": 900})
    shown = figures_on(page)
    assert shown["open_plans"] == str(len(open_plans))
    assert "Open plans" in page.locator("h3", has_text="Open plans").inner_text()
    page.click("#quarter-view")
    page.wait_for_url("**/review/quarter?quarter=**")
    assert "Quarterly SLA review" in page.title()
    quarters = page.eval_on_selector_all(
        "#quarters tbody tr", "els => els.map(e => e.dataset.quarter)"
    )
    report = httpx.get(
        f"{feedback}/v1/reports/sla", params={"period": "quarter"}, headers=KEY, timeout=10
    ).json()
    assert quarters == [p["quarter"] for p in report["periods"]]
    assert len(quarters) == 4
    latest = report["periods"][-1]
    row = page.locator(f'#quarters tr[data-quarter="{latest["quarter"]}"]')
    assert row.locator("td").first.get_attribute("data-value") == str(
        latest["marketing"]["mql_volume"]["value"]
    )
    changes = row.locator('[data-figure="policy_changes"]').get_attribute("data-value")
    assert changes == str(len(latest["policy_changes"]))
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=ARTEFACTS / "review-quarter.png", full_page=True)
    page.close()


def test_the_review_page_shows_customer_success_after_the_signature(demo, browser):
    """A lead of the demo's week is won and handed to customer success with use case, promised
    outcomes, risks and plan (a hand-off without its plan is refused first), its kickoff is held,
    a success story told and then its churn reported through feedback's API; the page's customer
    success section shows what `GET /v1/reports/customer-success` says: the clocks after the
    signature, churn by reason and by first source, and the story."""
    report_url = demo.url("JSON report")
    feedback = report_url.split("/v1/", 1)[0]
    report = httpx.get(report_url, headers=KEY, timeout=10).json()
    candidates = [item["lead_id"] for item in report["exceptions"]["first_response_breaches"]]
    handoff = {
        "use_case": "route inbound demo requests",
        "promised_outcomes": "first response under 2 h",
        "risks": "the CRM integration is owned by a partner",
        "plan": "kickoff in week 1, CRM connected in week 2",
    }

    def post(path: str, body: dict) -> httpx.Response:
        return httpx.post(f"{feedback}{path}", headers=KEY, json=body, timeout=10)

    customer = win_a_lead(feedback, candidates, won={}, already_won=True)
    assert customer, f"no lead of the demo's week can be won: {candidates}"
    without_plan = {k: v for k, v in handoff.items() if k != "plan"}
    refused = post(
        f"/v1/leads/{customer}/status", {"status": "handed_off", "handoff": without_plan}
    )
    assert refused.status_code == 422 and refused.json()["field"] == "handoff.plan"
    handed = post(f"/v1/leads/{customer}/status", {"status": "handed_off", "handoff": handoff})
    assert handed.status_code == 200, handed.text
    assert post(f"/v1/leads/{customer}/onboarding/kickoff", {}).status_code == 200
    story = {"title": "Replies within two hours", "outcome": "MQL to SQL up from 30 % to 36 %",
             "topics": ["speed to lead"]}  # fmt: skip
    assert post(f"/v1/leads/{customer}/success-stories", story).status_code == 201
    assert post(f"/v1/leads/{customer}/churn", {"reason": "price"}).status_code == 201
    page = signed_in_page(browser, demo, viewport={"width": 1280, "height": 900})
    reading: dict = {}

    def agreeing() -> bool:
        page.goto(demo.url("Review page"))
        reading["shown"] = figures_on(page)
        cs = httpx.get(f"{feedback}/v1/reports/customer-success", headers=KEY, timeout=10).json()
        reading["expected"] = {
            "cs_handoff.met": str(cs["clocks"]["cs_handoff"]["met"]),
            "onboarding_kickoff.met": str(cs["clocks"]["onboarding_kickoff"]["met"]),
            "churned": str(cs["churn"]["churned"]),
        }
        shown = {k: reading["shown"].get(k) for k in reading["expected"]}
        return cs["churn"]["churned"] >= 1 and shown == reading["expected"]

    eventually_sync(
        agreeing,
        timeout=20,
        interval=1,
        describe=lambda: (
            f"the page shows {reading.get('shown')}, expected {reading.get('expected')}"
        ),
    )
    assert int(reading["shown"]["cs_handoff.met"]) >= 1
    section = page.locator("#customer-success")
    assert section.locator('#churn-by-reason tr[data-key="price"]').count() == 1
    assert section.locator('#churn-by-source tr[data-by="source"]').count() >= 1
    assert "Replies within two hours" in section.locator("#success-stories").inner_text()
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=ARTEFACTS / "review-customer-success.png", full_page=True)
    page.close()
