"""The console's pages and forms over HTTP: feedback in this process, routing, notify and ingest
as real processes it calls with the pages key. A person signs in as a browser does; each role
sees and changes only what it may (403 otherwise), every form needs the session's CSRF token,
every table is also CSV, and a change made from the console is audited as the person's."""

from __future__ import annotations

import asyncio
import csv
import html
import io
import re
import uuid
from contextlib import aclosing, asynccontextmanager

import httpx
import pytest
from leadflow.settings import DEV_API_KEY
from leadflow_tools.supervisor import ServiceProcess, start_all
from pydantic import SecretStr
from support.harness import ADMIN, eventually, service_client

PASSWORD = "console-password-1"


@asynccontextmanager
async def running(settings, tmp_path, names=("routing", "notify", "ingest")):
    procs = [ServiceProcess(name, settings, tmp_path / f"{name}.log") for name in names]
    try:
        await start_all(procs)
        yield {p.name: p.url for p in procs}
    finally:
        await asyncio.gather(*(asyncio.to_thread(p.stop) for p in procs))


@pytest.fixture
async def console(stack, tmp_path, monkeypatch):
    """Feedback's app behind an httpx client, reading the other services where they run."""
    # feedback's pages key, known to routing and notify too (they take a person's name from it);
    # through the environment, as settings hand their secrets on masked
    settings = await stack.isolated_settings()
    monkeypatch.setenv("LEADFLOW_PAGES_API_KEY", DEV_API_KEY)
    async with running(settings, tmp_path) as urls:
        wired = settings.model_copy(
            update={
                "pages_api_key": SecretStr(DEV_API_KEY),
                "routing_url": urls["routing"],
                "notify_url": urls["notify"],
                "ingest_url": urls["ingest"],
            }
        )
        async with service_client("feedback", wired) as feedback:
            feedback.urls = urls  # type: ignore[attr-defined]
            yield feedback


async def person(feedback, role: str, teams: tuple[str, ...] = ()) -> tuple[httpx.AsyncClient, str]:
    """A browser of a person with `role`, signed in; and the person's id."""
    email = f"{role}-{uuid.uuid4().hex[:6]}@vendor.example"
    made = await feedback.post(
        "/v1/users",
        headers=ADMIN,
        json={"email": email, "name": role.title(), "role": role, "teams": list(teams),
              "password": PASSWORD},
    )  # fmt: skip
    assert made.status_code == 201, made.text
    browser = httpx.AsyncClient(
        transport=feedback._transport, base_url="http://feedback", headers={"Accept": "text/html"}
    )
    form = await browser.get("/login")
    signed = await browser.post(
        "/login",
        data={"email": email, "password": PASSWORD, "csrf_token": token(form.text),
              "next": "/console"},
    )  # fmt: skip
    assert signed.status_code == 303, signed.text
    return browser, made.json()["id"]


def token(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "the page carries no CSRF token"
    return match.group(1)


async def submit(browser, page: str, action: str, fields: dict) -> httpx.Response:
    """Post a form of `page` as the browser does: with the page's CSRF token."""
    opened = await browser.get(page)
    assert opened.status_code == 200, opened.text
    return await browser.post(action, data={**fields, "csrf_token": token(opened.text)})


def rows_of(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


async def test_marketing_ops_configures_routing_and_every_change_is_theirs(console):
    browser, user_id = await person(console, "marketing_ops")
    async with aclosing(browser):
        made = await submit(
            browser, "/console/teams", "/console/teams",
            {"name": "DACH", "strategy": "round_robin", "timezone": "Europe/Berlin",
             "hours": "09:00-17:00", "day_mon": "1", "day_tue": "1", "holiday_country": "DE"},
        )  # fmt: skip
        assert made.status_code == 303, made.text
        team_page = made.headers["location"]
        assert team_page != "/console/teams", (await browser.get(team_page)).text
        team_id = team_page.rsplit("/", 1)[1]
        for name in ("Anna", "Bruno"):
            added = await submit(
                browser, team_page, f"/console/teams/{team_id}/reps",
                {"name": name, "email": f"{name.lower()}@vendor.example", "capacity": "5"},
            )  # fmt: skip
            assert added.status_code == 303, added.text
        shown = await browser.get(team_page)
        assert "Europe/Berlin" in shown.text and "Anna" in shown.text and "Bruno" in shown.text
        assert shown.headers["content-security-policy"].endswith(
            "script-src 'self'; connect-src 'self'"
        )
        reps = rows_of((await browser.get(f"{team_page}?format=csv")).text)
        assert sorted(r["Rep"] for r in reps) == ["Anna", "Bruno"]

        rule = await submit(
            browser, "/console/rules", "/console/rules",
            {"name": "German-speaking", "priority": "10", "team_id": team_id,
             "field_1": "country", "values_1": "DE, AT, CH"},
        )  # fmt: skip
        assert rule.status_code == 303
        listed = rows_of((await browser.get("/console/rules?format=csv")).text)
        assert [(r["Rule"], r["Team"], r["Conditions"]) for r in listed] == [
            ("German-speaking", "DACH", "country: DE or AT or CH")
        ]
        dry = await submit(
            browser,
            "/console/rules",
            "/console/rules/dry-run",
            {"country": "AT", "channel": "inbound"},
        )
        assert dry.status_code == 200
        assert re.search(
            r"This lead would go to (Anna|Bruno) in DACH because the rule “German-speaking” matches it",
            dry.text,
        )

        audit = (await console.get("/v1/audit", headers=ADMIN)).json()  # feedback's own: none here
        assert audit["items"] == [] or all(e["entity"] != "team" for e in audit["items"])
        async with httpx.AsyncClient(base_url=console.urls["routing"], headers=ADMIN) as routing:
            entries = (await routing.get("/v1/audit")).json()["items"]
        assert {(e["entity"], e["actor"]) for e in entries} == {
            ("team", f"user:{user_id}"),
            ("rep", f"user:{user_id}"),
            ("rule", f"user:{user_id}"),
        }
        page = await browser.get("/console/audit?format=csv")
        assert {r["Who"] for r in rows_of(page.text)} >= {f"user:{user_id}"}


async def test_the_pages_key_alone_names_a_person(console):
    """Another key naming someone is audited as itself."""
    async with httpx.AsyncClient(base_url=console.urls["routing"]) as routing:
        named = {**ADMIN, "X-Leadflow-On-Behalf-Of": f"user:{uuid.uuid4()}"}
        made = await routing.post("/v1/teams", headers=named, json={"name": "Nordics"})
        assert made.status_code == 201
        other = {"Authorization": "Bearer lf_test_config_reader"}
        entries = (await routing.get("/v1/audit", headers=ADMIN)).json()["items"]
        assert entries[0]["actor"].startswith("user:")  # the development key is the pages key here
        refused = await routing.post(
            "/v1/teams", headers={**other, "X-Leadflow-On-Behalf-Of": named["X-Leadflow-On-Behalf-Of"]},
            json={"name": "Baltics"},
        )  # fmt: skip
        assert refused.status_code == 403


async def test_each_role_sees_and_changes_only_what_it_may(console):
    async with httpx.AsyncClient(base_url=console.urls["routing"], headers=ADMIN) as routing:
        mine = (await routing.post("/v1/teams", json={"name": "Poland"})).json()
        theirs = (await routing.post("/v1/teams", json={"name": "France"})).json()
        rep = (await routing.post("/v1/reps", json={"name": "Ola", "team_id": mine["id"]})).json()
        other_rep = (
            await routing.post("/v1/reps", json={"name": "Luc", "team_id": theirs["id"]})
        ).json()
    viewer, _ = await person(console, "viewer")
    manager, manager_id = await person(console, "sales_manager", ("Poland",))
    async with aclosing(viewer), aclosing(manager):
        for page in ("/console/rules", "/console/endpoints", "/console/policy", "/console/audit"):
            assert (await viewer.get(page)).status_code == 403, page
            assert (await manager.get(page)).status_code == 403, page
        home = await manager.get("/console")
        assert home.status_code == 200 and 'href="/console/rules"' not in home.text
        teams = rows_of((await manager.get("/console/teams?format=csv")).text)
        assert [t["Team"] for t in teams] == ["Poland"]
        assert (await manager.get(f"/console/teams/{theirs['id']}")).status_code == 403
        assert (await manager.get(f"/console/teams/{mine['id']}/worklist")).status_code == 200
        refused = await submit(
            manager, "/console/teams", "/console/teams", {"name": "Manager's own"}
        )
        assert refused.status_code == 403
        refused = await submit(
            manager, f"/console/teams/{mine['id']}", f"/console/reps/{other_rep['id']}",
            {"out_of_office": "true"},
        )  # fmt: skip
        assert refused.status_code == 403
        away = await submit(
            manager, f"/console/teams/{mine['id']}", f"/console/reps/{rep['id']}",
            {"out_of_office": "true"},
        )  # fmt: skip
        assert away.status_code == 303
        shown = await manager.get(f"/console/teams/{mine['id']}")
        assert "Ola is out of office." in shown.text
        no_token = await manager.post(f"/console/reps/{rep['id']}", data={"out_of_office": "false"})
        assert no_token.status_code == 403
    async with httpx.AsyncClient(base_url=console.urls["routing"], headers=ADMIN) as routing:
        assert (await routing.get(f"/v1/reps/{rep['id']}")).json()["away"] is True
        entries = (await routing.get("/v1/audit", params={"entity": "rep"})).json()["items"]
        assert entries[0]["actor"] == f"user:{manager_id}"


async def test_the_policy_editor_checks_compares_publishes_and_rolls_back(console):
    browser, user_id = await person(console, "marketing_ops")
    async with aclosing(browser):
        page = await browser.get("/console/policy")
        text = re.search(r"<textarea[^>]*>(.*?)</textarea>", page.text, re.S).group(1)
        text = html.unescape(text)
        wrong = text.replace("fit_min: 70", "fit_min: 170", 1)
        refused = await browser.post(
            "/console/policy", data={"text": wrong, "csrf_token": token(page.text)}
        )
        assert refused.status_code == 422
        assert "scoring.mql.fit_min" in refused.text and "fit_min: 170" in refused.text
        label = re.search(r'^version: "([^"]+)"', text, re.M).group(1)
        lower = text.replace("intent_tier_min: 2", "intent_tier_min: 0", 1).replace(
            f'version: "{label}"', 'version: "console-any-intent"', 1
        )
        saved = await browser.post(
            "/console/policy", data={"text": lower, "csrf_token": token(page.text)}
        )
        assert saved.status_code == 303, saved.text
        version_page = saved.headers["location"]
        shown = await browser.get(version_page)
        changes = rows_of((await browser.get(f"{version_page}?format=csv")).text)
        assert ("scoring.mql.intent_tier_min", "2", "0") in [
            (c["Value"], c["Before"], c["After"]) for c in changes
        ]
        number = version_page.rsplit("/", 1)[1]
        published = await browser.post(
            f"/console/policy/versions/{number}/publish", data={"csrf_token": token(shown.text)}
        )
        assert published.status_code == 303
        current = (await console.get("/v1/policy", headers=ADMIN)).json()
        assert (current["version"], current["published_by"]) == (
            "console-any-intent",
            f"user:{user_id}",
        )
        rolled = await browser.post(
            "/console/policy/rollback", data={"csrf_token": token(shown.text)}
        )
        assert rolled.status_code == 303
        current = (await console.get("/v1/policy", headers=ADMIN)).json()
        assert current["version"] == label
        versions = rows_of((await browser.get("/console/policy?format=csv")).text)
        assert [(v["Number"], v["Label"], v["State"]) for v in versions] == [
            (number, "console-any-intent", "superseded"),
            ("1", label, "published"),
        ]


async def test_every_page_reads_without_script_and_exports_csv(console):
    browser, _ = await person(console, "admin")
    async with aclosing(browser):
        for page in ("/console", "/console/teams", "/console/worklists", "/console/rules",
                     "/console/endpoints", "/console/policy", "/console/audit",
                     "/console/leads?q=nobody"):  # fmt: skip
            shown = await browser.get(page)
            assert shown.status_code == 200, (page, shown.text)
            assert "<noscript" not in shown.text and 'href="/review"' in shown.text
            if page != "/console":
                exported = await browser.get(page + ("&" if "?" in page else "?") + "format=csv")
                assert exported.headers["content-type"].startswith("text/csv"), page
        script = await browser.get("/console/assets/console.js")
        assert script.status_code == 200 and "data-seconds-left" in script.text

    async def signed_out() -> bool:
        plain = httpx.AsyncClient(transport=console._transport, base_url="http://feedback")
        async with plain:
            answer = await plain.get("/console/teams", headers={"Accept": "text/html"})
        return answer.status_code == 303 and "/login?next=" in answer.headers["location"]

    assert await eventually(signed_out, timeout=5)


async def test_a_tool_reads_the_console_with_a_key_and_changes_only_with_admin(console):
    reader = {"Authorization": "Bearer lf_test_reader"}  # reports:read and config:read
    shown = await console.get("/console/rules?format=csv", headers=reader)
    assert shown.status_code == 200 and shown.text.startswith("Priority,Rule")
    refused = await console.post("/console/policy", headers=reader, data={"text": "version: x"})
    assert (refused.status_code, refused.json()["scope"]) == (403, "admin")
    made = await console.post("/console/teams", headers=ADMIN, data={"name": "Made by a tool"})
    assert made.status_code == 303
    async with httpx.AsyncClient(base_url=console.urls["routing"], headers=ADMIN) as routing:
        [entry] = (await routing.get("/v1/audit", params={"entity": "team"})).json()["items"]
    assert entry["actor"] == "key:admin"


async def test_endpoints_subscriptions_and_the_delivery_log(console):
    browser, user_id = await person(console, "marketing_ops")
    async with aclosing(browser):
        made = await submit(
            browser, "/console/endpoints", "/console/endpoints",
            {"url": "https://hooks.vendor.example/leadflow", "event_types": "lead.routed"},
        )  # fmt: skip
        assert made.status_code == 303
        page = await browser.get("/console/endpoints")
        assert "its signing secret (shown once): whsec_" in page.text
        [endpoint] = rows_of((await browser.get("/console/endpoints?format=csv")).text)
        assert (endpoint["URL"], endpoint["Event types"]) == (
            "https://hooks.vendor.example/leadflow",
            "lead.routed",
        )
        changed = await submit(
            browser, "/console/endpoints", f"/console/endpoints/{endpoint['Id']}",
            {"event_types": "lead.routed, sla.*"},
        )  # fmt: skip
        assert changed.status_code == 303
        [endpoint] = rows_of((await browser.get("/console/endpoints?format=csv")).text)
        assert endpoint["Event types"] == "lead.routed, sla.*"
        wrong = await submit(
            browser, "/console/endpoints", f"/console/endpoints/{endpoint['Id']}",
            {"event_types": "no.such.event"},
        )  # fmt: skip
        assert "Not done:" in (await browser.get(wrong.headers["location"])).text
        deliveries = await browser.get("/console/endpoints?format=csv&table=deliveries")
        assert deliveries.text.startswith("Event,Lead,To,State")
    async with httpx.AsyncClient(base_url=console.urls["notify"], headers=ADMIN) as notify:
        entries = (await notify.get("/v1/audit")).json()["items"]
    assert {e["actor"] for e in entries} == {f"user:{user_id}"}
