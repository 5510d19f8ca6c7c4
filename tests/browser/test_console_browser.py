"""The operations console in a real browser, the six services running as processes: a
marketing-ops person makes a team with a calendar and two reps, writes a rule, sees a dry run's
reason, publishes a policy that lowers the MQL threshold and sees a lead that only it promotes
routed without a restart, then rolls back; a sales manager sees that lead in the team's
worklist with its clock counting down, marks the rep due next out of office, and the next lead
goes to the other rep. Screenshots of each page are kept under .leadflow/artefacts/browser/console.

Needs Debian's Chromium at /usr/bin/chromium (`make system-deps` installs it).
"""

from __future__ import annotations

import asyncio
import re
import uuid
from pathlib import Path

import httpx
import pytest
from leadflow.settings import DEV_API_KEY
from leadflow_tools.registry import SERVICE_ORDER
from leadflow_tools.supervisor import ServiceProcess, start_all
from support.browser import launched_chromium
from support.harness import ADMIN, QUALIFIED_LEAD, eventually_sync

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
ARTEFACTS = ROOT / ".leadflow" / "artefacts" / "browser" / "console"
PASSWORD = "console-walkthrough-1"
TEAM = "DACH Inbound"
NEW_LABEL = "console-any-intent"


@pytest.fixture(scope="module")
def services(stack, tmp_path_factory):
    """The six services as processes; feedback's pages key is known to all of them (routing
    and notify take the person a console change is made for from it alone)."""
    logs = tmp_path_factory.mktemp("console-services")
    settings = asyncio.run(stack.isolated_settings())
    procs = {name: ServiceProcess(name, settings, logs / f"{name}.log") for name in SERVICE_ORDER}
    with pytest.MonkeyPatch.context() as env:
        env.setenv("LEADFLOW_PAGES_API_KEY", DEV_API_KEY)
        env.setenv("LEADFLOW_ROUTING_URL", procs["routing"].url)
        env.setenv("LEADFLOW_NOTIFY_URL", procs["notify"].url)
        env.setenv("LEADFLOW_INGEST_URL", procs["ingest"].url)
        try:
            asyncio.run(start_all(list(procs.values()), timeout=300))  # a busy machine is slow
            yield {name: proc.url for name, proc in procs.items()}
        finally:
            for proc in procs.values():
                proc.stop()


@pytest.fixture(scope="module")
def browser():
    with launched_chromium() as chromium:
        yield chromium


def account(urls: dict, role: str, teams: list[str]) -> str:
    email = f"{role}-{uuid.uuid4().hex[:6]}@vendor.example"
    made = httpx.post(
        f"{urls['feedback']}/v1/users",
        headers=ADMIN,
        json={"email": email, "name": role.replace("_", " ").title(), "role": role,
              "teams": teams, "password": PASSWORD},
        timeout=10,
    )  # fmt: skip
    assert made.status_code == 201, made.text
    return email


def signed_in(browser, urls: dict, email: str, **options):
    """A person's browser: the console sends them to sign in and brings them back."""
    page = browser.new_page(viewport={"width": 1280, "height": 900}, **options)
    violations: list[str] = []
    page.on(
        "console",
        lambda m: "Content Security Policy" in m.text and violations.append(m.text),
    )
    page.violations = violations  # type: ignore[attr-defined]
    page.goto(f"{urls['feedback']}/console")
    page.wait_for_url("**/login?next=**")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", PASSWORD)
    page.click("#sign-in button[type=submit]")
    page.wait_for_url("**/console")
    return page


def shot(page, name: str) -> None:
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTEFACTS / f"{name}.png"), full_page=True)


def flash(page) -> str:
    return page.inner_text("#flash")


def send_lead(urls: dict, **changes) -> str:
    body = {
        **QUALIFIED_LEAD,
        "email": f"buyer-{uuid.uuid4().hex[:8]}@wien-{uuid.uuid4().hex[:4]}.example",
    }
    body["company"] = {**QUALIFIED_LEAD["company"], "country": "AT"}
    body.update(changes)
    sent = httpx.post(f"{urls['ingest']}/v1/leads", headers=ADMIN, json=body, timeout=10)
    assert sent.status_code == 202, sent.text
    return sent.json()["lead_id"]


def read(urls: dict, service: str, path: str) -> dict | None:
    answer = httpx.get(f"{urls[service]}{path}", headers=ADMIN, timeout=10)
    return answer.json() if answer.status_code == 200 else None


def routed(urls: dict, lead_id: str) -> dict:
    return eventually_sync(
        lambda: (
            (a := read(urls, "routing", f"/v1/leads/{lead_id}/assignment")) and a["rep_id"] and a
        ),
        timeout=60,
        describe=lambda: f"lead {lead_id} was not routed to a rep",
    )


def test_marketing_ops_and_a_sales_manager_run_routing_from_the_console(services, browser):
    urls = services
    ops = signed_in(browser, urls, account(urls, "marketing_ops", []))
    shot(ops, "01-console-home")

    # a team with a business calendar
    ops.click("nav.console >> text=Teams and reps")
    ops.fill("#team-form input[name=name]", TEAM)
    ops.fill("#team-form input[name=timezone]", "Europe/Vienna")
    ops.fill("#team-form input[name=hours]", "08:00-20:00")
    ops.check("#team-form input[name=day_sat]")
    ops.check("#team-form input[name=day_sun]")
    ops.fill("#team-form input[name=holiday_country]", "AT")
    ops.click("#team-form button[type=submit]")
    ops.wait_for_url(re.compile(r".*/console/teams/[0-9a-f-]{36}$"))
    team_id = ops.url.rsplit("/", 1)[1]
    assert "Europe/Vienna" in ops.inner_text("#calendar")

    # two reps
    for name in ("Anna Adler", "Bruno Berger"):
        ops.fill("#rep-form input[name=name]", name)
        ops.fill("#rep-form input[name=email]", f"{name.split()[0].lower()}@vendor.example")
        ops.fill("#rep-form input[name=capacity]", "10")
        ops.click("#rep-form button[type=submit]")
        ops.wait_for_selector(f"tr[data-rep='{name}']")
    shot(ops, "02-team-with-reps")

    # a rule, and a dry run whose reason updates as the lead is described
    ops.click("nav.console >> text=Rules")
    ops.fill("#rule-form input[name=name]", "DACH by country")
    ops.fill("#rule-form input[name=priority]", "10")
    ops.select_option("#rule-form select[name=team_id]", label=TEAM)
    ops.select_option("#rule-form select[name=field_1]", "country")
    ops.fill("#rule-form input[name=values_1]", "DE, AT, CH")
    ops.click("#rule-form button[type=submit]")
    assert "Rule DACH by country saved." in flash(ops)
    ops.fill("#dry-run-form input[name=country]", "AT")  # the live panel answers without a click
    reason = ops.wait_for_selector("#dry-run-reason", timeout=15_000).inner_text()
    assert re.search(
        rf"would go to (Anna Adler|Bruno Berger) in {TEAM} because the rule “DACH by country” matches it",
        reason,
    ), reason
    shot(ops, "03-rules-and-dry-run")

    # a policy that lowers the MQL threshold: intent tier 0 is enough
    ops.click("nav.console >> text=Policy")
    text = ops.input_value("#policy-text")
    label = re.search(r'^version: "([^"]+)"', text, re.M).group(1)
    lowered = text.replace("intent_tier_min: 2", "intent_tier_min: 0", 1).replace(
        f'version: "{label}"', f'version: "{NEW_LABEL}"', 1
    )
    ops.fill("#policy-text", lowered)
    ops.click("#policy-form button[type=submit]")
    ops.wait_for_url("**/console/policy/versions/*")
    assert "scoring.mql.intent_tier_min" in ops.inner_text("#changes-table")
    shot(ops, "04-policy-diff")
    ops.click("#publish")
    assert f"({NEW_LABEL}) is the policy now" in flash(ops)
    shot(ops, "05-policy-published")

    # a lead with intent tier 0, an MQL only under the new version, is routed without a restart
    # (each service applies a publication within seconds: send until one is scored under it)
    def promoted_under_new_version() -> str | None:
        lead_id = send_lead(urls, intent_tier=0)
        score = eventually_sync(
            lambda: read(urls, "scoring", f"/v1/leads/{lead_id}/score"), timeout=30
        )
        return lead_id if score["policy_version"] == NEW_LABEL and score["is_mql"] else None

    first = eventually_sync(promoted_under_new_version, timeout=60, interval=1)
    assignment = routed(urls, first)
    assert assignment["team_id"] == team_id

    ops.click("#roll-back")
    assert f"({label}) is the policy again" in flash(ops)
    assert read(urls, "feedback", "/v1/policy")["version"] == label
    shot(ops, "06-policy-rolled-back")

    ops.click("nav.console >> text=Audit log")
    assert "user:" in ops.inner_text("#audit-table")
    shot(ops, "07-audit-log")
    ops.click("nav.console >> text=Endpoints and deliveries")
    shot(ops, "08-endpoints-and-deliveries")

    # the sales manager: the lead in the team's worklist, its clock counting down
    manager = signed_in(browser, urls, account(urls, "sales_manager", [TEAM]))
    manager.click("nav.console >> text=Worklists")
    manager.click(f"text={TEAM}")
    row = manager.wait_for_selector(f"tr[data-lead='{first}']")
    countdown = row.query_selector("[data-seconds-left]")
    assert countdown is not None, row.inner_text()
    before = countdown.inner_text()
    manager.wait_for_function(
        "([el, was]) => el.textContent !== was", arg=[countdown, before], timeout=5_000
    )
    shot(manager, "09-worklist-countdown")

    # the rep the team would pick next goes out of office: the next lead goes to the other
    sample = {"channel": "inbound", "company": {"country": "AT"}}
    due_next = httpx.post(
        f"{urls['routing']}/v1/routing:dry-run", headers=ADMIN, json=sample, timeout=10
    ).json()
    names = {
        r["id"]: r["name"] for r in read(urls, "routing", f"/v1/reps?team_id={team_id}")["items"]
    }
    away, other = due_next["rep_id"], next(i for i in names if i != due_next["rep_id"])
    manager.click("text=The team's reps")
    # from the keyboard: the button takes the focus and Enter presses it
    manager.focus(f"button[aria-label='Mark out of office: {names[away]}']")
    manager.keyboard.press("Enter")
    manager.wait_for_selector("#flash")
    assert f"{names[away]} is out of office." in flash(manager)
    shot(manager, "10-rep-out-of-office")
    second = send_lead(urls)
    assert routed(urls, second)["rep_id"] == other
    assert ops.violations == [] and manager.violations == []

    # without script every page still reads: the worklist shows the time left as rendered
    plain = signed_in(
        browser, urls, account(urls, "sales_manager", [TEAM]), java_script_enabled=False
    )
    plain.goto(f"{urls['feedback']}/console/teams/{team_id}/worklist")
    assert plain.inner_text(f"tr[data-lead='{first}'] [data-seconds-left]").endswith("s")
    shot(plain, "11-worklist-without-script")
