"""The console's pages (`/console/...`): teams and reps, rules with a dry run, webhook endpoints
and deliveries, the policy's versions, worklists, the audit log and lead search. Each is a
server-rendered page that reads without script and changes through plain forms (POST, then a
redirect), carrying the session's CSRF token; each table is also CSV (`?format=csv`, and
`table=` where a page has several). The pages are for people: outside the OpenAPI document."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib.resources import files
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import ChoiceLoader, Environment, PackageLoader, select_autoescape
from leadflow import audit
from leadflow.auth import Caller, Person, require_page
from leadflow.errors import Forbidden, NotFound, ProblemError
from leadflow.paging import PageRequest
from leadflow.service import Runtime, RuntimeDep
from leadflow.sessions import CONSOLE_CONTENT_SECURITY_POLICY, CSRF_FIELD, check_csrf

from leadflow_feedback.console import reasons
from leadflow_feedback.console.services import Answer, Services
from leadflow_feedback.console.tables import Table, as_csv, cell, pick
from leadflow_feedback.domain import roles
from leadflow_feedback.models import metadata
from leadflow_feedback.people.api import _form, account_bar, signed_in
from leadflow_feedback.policy_versions import store as policy_store
from leadflow_feedback.policy_versions import use_cases as policy

console = APIRouter(prefix="/console", include_in_schema=False)
Viewer = Annotated[Caller | Person, Depends(require_page("reports:read", signed_in))]
Format = Annotated[str | None, Query(alias="format", pattern="^(html|csv)$")]
TableName = Annotated[str | None, Query(alias="table", max_length=40)]


@dataclass(frozen=True)
class Wanted:
    """What a page's query asks for: the page, or one of its tables as CSV (`?format=csv`,
    `table=` where the page has several)."""

    format_: str | None = None
    table: str | None = None


def wanted_of(format_: Format = None, table: TableName = None) -> Wanted:
    return Wanted(format_, table)


WantedDep = Annotated[Wanted, Depends(wanted_of)]

templates = Environment(
    loader=ChoiceLoader(
        [
            PackageLoader("leadflow_feedback.console", "templates"),
            PackageLoader("leadflow_feedback", "templates"),
        ]
    ),
    autoescape=select_autoescape(default=True, default_for_string=True),
)
templates.filters["cell"] = cell
ASSETS = {
    "console.js": (
        "text/javascript",
        files("leadflow_feedback.console").joinpath("assets/console.js"),
    ),
    "console.css": ("text/css", files("leadflow_feedback.console").joinpath("assets/console.css")),
}
STRATEGIES = ("round_robin", "weighted", "load_balanced", "least_recently_assigned")
# The fields routing's rules match (routing answers 422 naming any other).
RULE_FIELDS = (
    "country", "region", "segment", "industry", "employees", "channel", "source", "campaign",
    "fit", "engagement",
)  # fmt: skip
CHANNELS = ("inbound", "outbound", "partner", "plg")


# --- who may do what --------------------------------------------------------------------------


def role_of(viewer: Caller | Person) -> str:
    """A person's role; a key stands for the role its scopes amount to."""
    if isinstance(viewer, Person):
        return viewer.role
    if viewer.spec.allows("admin"):
        return "admin"
    return "marketing_ops" if viewer.spec.allows("config:read") else "viewer"


def teams_of(viewer: Caller | Person) -> tuple[str, ...]:
    return viewer.teams if isinstance(viewer, Person) else ()


def must_configure(viewer: Caller | Person) -> None:
    role = role_of(viewer)
    if not roles.may_configure(role):
        raise Forbidden(f"the role '{role}' does not change the configuration", scope="config")


def must_see_team(viewer: Caller | Person, team: str) -> None:
    role = role_of(viewer)
    if not roles.may_see_team(role, teams_of(viewer), team):
        raise Forbidden(f"the role '{role}' does not see the team {team}", scope="team")


# Every route takes one of four dependencies, which say who may use it: `PageDep` (anyone who
# reads the pages), `ConfigPageDep` (one who configures), `ChangeDep` (a form posted by anyone
# who reads; the route checks what the change needs) and `ConfigChangeDep` (a configuration
# change, from one who configures).


@dataclass(frozen=True)
class Page:
    """One request to the console: the request, the runtime and who looks."""

    request: Request
    rt: Runtime
    viewer: Caller | Person

    @property
    def services(self) -> Services:
        """Routing, notify and ingest as this viewer reaches them."""
        return Services.of(self.rt, self.viewer)


@dataclass(frozen=True)
class Change:
    """A form posted to the console, and from where."""

    page: Page
    form: dict[str, str]


async def page_of(request: Request, rt: RuntimeDep, viewer: Viewer) -> Page:
    return Page(request, rt, viewer)


PageDep = Annotated[Page, Depends(page_of)]


async def configuring_page(page: PageDep) -> Page:
    """A page of the configuration, shown to one who configures."""
    must_configure(page.viewer)
    return page


async def change_of(page: PageDep) -> Change:
    """A posted form; a person's must carry the session's CSRF token (a key is no cookie). A
    tool changes through the console only with `admin`, as through the APIs (the policy's
    changes are feedback's own use cases, which no other service checks)."""
    form = await _form(page.request)
    if isinstance(page.viewer, Person):
        check_csrf(page.request, form.get(CSRF_FIELD))
    elif not page.viewer.spec.allows("admin"):
        name = page.viewer.spec.name
        raise Forbidden(f"API key '{name}' lacks the scope 'admin'", scope="admin")
    return Change(page, form)


async def configuration_change(page: PageDep) -> Change:
    """The posted form of a configuration change, from one who configures."""
    must_configure(page.viewer)
    return await change_of(page)


ConfigPageDep = Annotated[Page, Depends(configuring_page)]
ChangeDep = Annotated[Change, Depends(change_of)]
ConfigChangeDep = Annotated[Change, Depends(configuration_change)]


# --- rendering --------------------------------------------------------------------------------


def flash(request: Request, message: str, problem: bool = False) -> None:
    request.session["console_flash"] = {"message": message[:500], "problem": problem}


def back(request: Request, path: str, message: str, problem: bool = False) -> RedirectResponse:
    flash(request, message, problem)
    return RedirectResponse(path, status_code=303)


def after(request: Request, answer: Answer, path: str, done: str) -> RedirectResponse:
    if answer.ok:
        return back(request, path, done)
    return back(request, path, f"Not done: {answer.problem}", problem=True)


async def call_then_back(
    page: Page, call: tuple[str, str, str], path: str, done: str, json: Any = None
) -> RedirectResponse:
    """Make one call (method, service, path) of another service and go back to the page with
    what came of it."""
    method, service, url = call
    answer = await page.services.call(method, service, url, json=json)
    return after(page.request, answer, path, done)


async def policy_step(
    request: Request, step: Awaitable[Any], done: Callable[[Any], str]
) -> RedirectResponse:
    """A step of the policy's use cases, then back to the policy's page with what came of it."""
    try:
        made = await step
    except ProblemError as exc:
        return back(request, "/console/policy", f"Not done: {exc.detail}", problem=True)
    return back(request, "/console/policy", done(made))


async def render(
    page: Page,
    template: str,
    *,
    tables: list[Table] | None = None,
    wanted: Wanted = Wanted(),
    status: int = 200,
    **context: Any,
) -> Response:
    """The page, or one of its tables as CSV when `?format=csv` asks."""
    tables = tables or []
    if wanted.format_ == "csv":
        chosen = pick(tables, wanted.table)
        if chosen is None:
            raise NotFound(f"this page has no table {wanted.table!r}", field="table")
        return Response(
            as_csv(chosen),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{chosen.name}.csv"'},
        )
    request, role = page.request, role_of(page.viewer)
    html = templates.get_template(template).render(
        account=await account_bar(page.rt, request, page.viewer),
        flash=request.session.pop("console_flash", None) if "session" in request.scope else None,
        role=role,
        configures=roles.may_configure(role),
        path=request.url.path,
        tables={t.name: t for t in tables},
        **context,
    )
    return HTMLResponse(
        html,
        status_code=status,
        headers={"Content-Security-Policy": CONSOLE_CONTENT_SECURITY_POLICY},
    )


@console.get("/assets/{name}")
async def asset(name: str) -> Response:
    if name not in ASSETS:
        raise NotFound(f"no asset {name}")
    media, path = ASSETS[name]
    return Response(
        path.read_text(), media_type=media, headers={"Cache-Control": "public, max-age=3600"}
    )


# --- home -------------------------------------------------------------------------------------


@console.get("", response_class=HTMLResponse)
async def home(page: PageDep) -> Response:
    return await render(page, "console_home.html")


# --- teams and reps ---------------------------------------------------------------------------


async def visible_teams(services: Services, viewer: Caller | Person) -> tuple[list[dict], str]:
    answer = await services.everything("routing", "/v1/teams", sort="name")
    if not answer.ok:
        return [], answer.problem
    role = role_of(viewer)
    return [t for t in answer.items if roles.may_see_team(role, teams_of(viewer), t["name"])], ""


def calendar_text(calendar: dict | None) -> str:
    if not calendar:
        return "the policy's"
    hours = calendar.get("hours") or {}
    days = ", ".join(
        f"{d} {' '.join(s if isinstance(s, str) else '-'.join(s) for s in hours[d])}" for d in hours
    )
    parts = [calendar.get("timezone") or "", days, calendar.get("holiday_country") or ""]
    return "; ".join(p for p in parts if p)


def hours_text(working_hours: dict | None) -> str:
    if not working_hours:
        return "always"
    return ", ".join(
        f"{day} {' '.join('-'.join(s) for s in spans)}" for day, spans in working_hours.items()
    )


TEAM_COLUMNS = [
    ("name", "Team"), ("strategy", "Strategy"), ("calendar_text", "Calendar"),
    ("is_fallback", "Fallback"), ("id", "Id"),
]  # fmt: skip
REP_COLUMNS = [
    ("name", "Rep"), ("email", "E-mail"), ("capacity", "Capacity"), ("open_leads", "Open leads"),
    ("hours_text", "Working hours"), ("timezone", "Time zone"), ("away", "Out of office"),
    ("active", "Active"), ("id", "Id"),
]  # fmt: skip


async def team_rows(page: Page) -> tuple[list[dict], str]:
    """The teams the viewer sees, each with its calendar in words, and what went wrong."""
    teams, problem = await visible_teams(page.services, page.viewer)
    return [{**t, "calendar_text": calendar_text(t.get("calendar"))} for t in teams], problem


@console.get("/teams", response_class=HTMLResponse)
async def teams_page(page: PageDep, wanted: WantedDep) -> Response:
    rows, problem = await team_rows(page)
    return await render(
        page, "console_teams.html",
        tables=[Table("teams", TEAM_COLUMNS, rows)], wanted=wanted,
        problem=problem, strategies=STRATEGIES, days=reasons.DAYS,
    )  # fmt: skip


@console.post("/teams")
async def create_team(change: ConfigChangeDep) -> Response:
    request, form = change.page.request, change.form
    body: dict[str, Any] = {
        "name": form.get("name", "").strip(),
        "strategy": form.get("strategy") or "round_robin",
    }
    try:
        hours = reasons.span(form.get("hours", ""))
    except ValueError as exc:
        return back(request, "/console/teams", f"Not done: hours: {exc}", problem=True)
    timezone = form.get("timezone", "").strip()
    if hours or timezone:
        days = [d for d in reasons.DAYS if form.get(f"day_{d}")] or list(reasons.DAYS[:5])
        calendar: dict[str, Any] = {"timezone": timezone or "UTC"}
        calendar["hours"] = {d: [f"{hours[0]}-{hours[1]}"] for d in days} if hours else {}
        if form.get("holiday_country", "").strip():
            calendar["holiday_country"] = form["holiday_country"].strip().upper()
        body["calendar"] = calendar
    answer = await change.page.services.call("POST", "routing", "/v1/teams", json=body)
    if answer.ok:
        return back(request, f"/console/teams/{answer.body['id']}", f"Team {body['name']} created.")
    return after(request, answer, "/console/teams", "")


async def team_and_reps(services: Services, viewer, team_id: uuid.UUID) -> tuple[dict, list[dict]]:
    team = await services.get("routing", f"/v1/teams/{team_id}")
    if team.status == 404:
        raise NotFound(f"no team {team_id}", field="team_id")
    if not team.ok:
        raise ProblemError(f"routing did not show the team: {team.problem}", status=502)
    must_see_team(viewer, team.body["name"])
    reps = await services.everything("routing", "/v1/reps", team_id=str(team_id), sort="name")
    return team.body, reps.items


@console.get("/teams/{team_id}", response_class=HTMLResponse)
async def team_page(team_id: uuid.UUID, page: PageDep, wanted: WantedDep) -> Response:
    viewer = page.viewer
    team, reps = await team_and_reps(page.services, viewer, team_id)
    rows = [{**r, "hours_text": hours_text(r.get("working_hours"))} for r in reps]
    role = role_of(viewer)
    return await render(
        page, "console_team.html",
        tables=[Table("reps", REP_COLUMNS, rows)], wanted=wanted,
        team={**team, "calendar_text": calendar_text(team.get("calendar"))},
        may_set_away=roles.may_set_away(role, teams_of(viewer), team["name"]), days=reasons.DAYS,
    )  # fmt: skip


def working_hours(form: dict[str, str]) -> dict[str, list[list[str]]] | None:
    hours = reasons.span(form.get("hours", ""))
    if hours is None:
        return None
    days = [d for d in reasons.DAYS if form.get(f"day_{d}")] or list(reasons.DAYS[:5])
    return {d: [list(hours)] for d in days}


@console.post("/teams/{team_id}/reps")
async def add_rep(team_id: uuid.UUID, change: ConfigChangeDep) -> Response:
    form = change.form
    here = f"/console/teams/{team_id}"
    body: dict[str, Any] = {"name": form.get("name", "").strip(), "team_id": str(team_id)}
    for field in ("email", "timezone"):
        if form.get(field, "").strip():
            body[field] = form[field].strip()
    try:
        if form.get("capacity", "").strip():
            body["capacity"] = int(form["capacity"])
        if (hours := working_hours(form)) is not None:
            body["working_hours"] = hours
    except ValueError as exc:
        return back(change.page.request, here, f"Not done: {exc}", problem=True)
    return await call_then_back(
        change.page, ("POST", "routing", "/v1/reps"), here, f"Rep {body['name']} added.", body
    )


@console.post("/reps/{rep_id}")
async def change_rep(rep_id: uuid.UUID, posted: ChangeDep) -> Response:
    """Out of office and back (a sales manager for their teams' reps), capacity and working
    hours (those who configure)."""
    request, viewer, form = posted.page.request, posted.page.viewer, posted.form
    services = posted.page.services
    rep = await services.get("routing", f"/v1/reps/{rep_id}")
    if not rep.ok:
        return back(request, "/console/teams", f"Not done: {rep.problem}", problem=True)
    team = await services.get("routing", f"/v1/teams/{rep.body['team_id']}")
    team_name = team.body["name"] if team.ok else ""
    here = f"/console/teams/{rep.body['team_id']}"
    change: dict[str, Any] = {}
    if "out_of_office" in form:
        if not roles.may_set_away(role_of(viewer), teams_of(viewer), team_name):
            raise Forbidden(
                f"the role '{role_of(viewer)}' does not manage {team_name}", scope="team"
            )
        change["out_of_office"] = form["out_of_office"] == "true"
    else:
        must_configure(viewer)
        try:
            if form.get("capacity", "").strip():
                change["capacity"] = int(form["capacity"])
            if "hours" in form:
                change["working_hours"] = working_hours(form)
        except ValueError as exc:
            return back(request, here, f"Not done: {exc}", problem=True)
    answer = await services.call("PATCH", "routing", f"/v1/reps/{rep_id}", json=change)
    if "out_of_office" in change:
        state = "out of office" if change["out_of_office"] else "back in office"
        done = f"{rep.body['name']} is {state}."
    else:
        done = f"{rep.body['name']} changed."
    return after(request, answer, here, done)


# --- worklists --------------------------------------------------------------------------------

WORK_COLUMNS = [
    ("lead_id", "Lead"), ("rep", "Rep"), ("kind", "Kind"), ("channel", "Channel"),
    ("sla", "SLA"), ("sla_level", "Level"), ("due_at", "Due"), ("countdown", "Time left"),
    ("seconds_left", "Seconds left"), ("state", "State"),
]  # fmt: skip


@console.get("/worklists", response_class=HTMLResponse)
async def worklists_page(page: PageDep, wanted: WantedDep) -> Response:
    rows, problem = await team_rows(page)
    return await render(
        page, "console_worklists.html",
        tables=[Table("teams", TEAM_COLUMNS, rows)], wanted=wanted, problem=problem,
    )  # fmt: skip


@console.get("/teams/{team_id}/worklist", response_class=HTMLResponse)
async def worklist_page(team_id: uuid.UUID, page: PageDep, wanted: WantedDep) -> Response:
    services = page.services
    team, reps = await team_and_reps(services, page.viewer, team_id)
    names = {r["id"]: r["name"] for r in reps}
    work = await services.everything("routing", f"/v1/teams/{team_id}/worklist")
    rows = [
        {**w, "rep": names.get(w.get("rep_id"), w.get("rep_id")),
         "countdown": reasons.countdown(w.get("seconds_left"))}
        for w in work.items
    ]  # fmt: skip
    return await render(
        page, "console_worklist.html",
        tables=[Table("worklist", WORK_COLUMNS, rows)], wanted=wanted,
        team=team, problem=work.problem,
    )  # fmt: skip


# --- rules and the dry run --------------------------------------------------------------------

RULE_COLUMNS = [
    ("priority", "Priority"), ("name", "Rule"), ("conditions_text", "Conditions"),
    ("team", "Team"), ("active", "Active"), ("id", "Id"),
]  # fmt: skip


def conditions_text(conditions: dict[str, Any]) -> str:
    def one(condition: Any) -> str:
        if isinstance(condition, list):
            return " or ".join(str(v) for v in condition)
        if "not" in condition:
            return f"not ({one(condition['not'])})"
        if "in" in condition:
            return one(condition["in"])
        low, high = condition.get("min"), condition.get("max")
        return f"{'' if low is None else low}–{'' if high is None else high}"

    return "; ".join(f"{name}: {one(c)}" for name, c in conditions.items())


def dry_run_body(form: dict[str, str]) -> dict[str, Any]:
    """A lead as routing's dry run takes it, from the panel's fields (empty ones left out)."""
    company = {k: form.get(k, "").strip() for k in ("country", "industry", "region", "domain")}
    company = {k: v for k, v in company.items() if v}
    if form.get("size_band", "").strip():
        company["size_band"] = form["size_band"].strip()
    if form.get("employees", "").strip().isdigit():
        company["employees"] = int(form["employees"])
    source = {k: form.get(k, "").strip() for k in ("system", "campaign")}
    body: dict[str, Any] = {
        "channel": form.get("channel") or "inbound",
        "company": company,
        "source": {k: v for k, v in source.items() if v},
    }
    for score in ("fit", "engagement"):
        if form.get(score, "").strip().isdigit():
            body[score] = int(form[score])
    return body


async def rules_view(page: Page, wanted: Wanted, *, lead: dict, outcome: dict | None) -> Response:
    """The rules' page (its viewer configures), with the dry run's lead and outcome."""
    services = page.services
    teams, problem = await visible_teams(services, page.viewer)
    names = {t["id"]: t["name"] for t in teams}
    rules = await services.everything("routing", "/v1/rules", sort="priority")
    rows = [
        {**r, "team": names.get(r["team_id"], r["team_id"]),
         "conditions_text": conditions_text(r.get("conditions") or {})}
        for r in rules.items
    ]  # fmt: skip
    return await render(
        page, "console_rules.html",
        tables=[Table("rules", RULE_COLUMNS, rows)], wanted=wanted,
        teams=teams, fields=RULE_FIELDS, channels=CHANNELS, lead=lead, outcome=outcome,
        problem=problem or rules.problem,
    )  # fmt: skip


@console.get("/rules", response_class=HTMLResponse)
async def rules_page(page: ConfigPageDep, wanted: WantedDep) -> Response:
    return await rules_view(page, wanted, lead={}, outcome=None)


@console.post("/rules")
async def create_rule(change: ConfigChangeDep) -> Response:
    form = change.form
    conditions = {
        form[f"field_{i}"]: reasons.values(form.get(f"values_{i}", ""))
        for i in range(1, 4)
        if form.get(f"field_{i}") and form.get(f"values_{i}", "").strip()
    }
    body: dict[str, Any] = {
        "name": form.get("name", "").strip(),
        "team_id": form.get("team_id") or None,
        "conditions": conditions,
    }
    if form.get("priority", "").strip().isdigit():
        body["priority"] = int(form["priority"])
    return await call_then_back(
        change.page, ("POST", "routing", "/v1/rules"), "/console/rules",
        f"Rule {body['name']} saved.", body,
    )  # fmt: skip


@console.post("/rules/{rule_id}/delete")
async def delete_rule(rule_id: uuid.UUID, change: ConfigChangeDep) -> Response:
    return await call_then_back(
        change.page, ("DELETE", "routing", f"/v1/rules/{rule_id}"), "/console/rules",
        "Rule deleted.",
    )  # fmt: skip


@console.post("/rules/dry-run", response_class=HTMLResponse)
async def dry_run(change: ConfigChangeDep) -> Response:
    """Where a lead like the one described would go now, and why (nothing is written)."""
    form = change.form
    answer = await change.page.services.call(
        "POST", "routing", "/v1/routing:dry-run", json=dry_run_body(form)
    )
    outcome = (
        {"reason": reasons.why_routed(answer.body), **answer.body}
        if answer.ok
        else {"problem": answer.problem}
    )
    return await rules_view(change.page, Wanted(), lead=form, outcome=outcome)


# --- webhook endpoints and deliveries ---------------------------------------------------------

ENDPOINT_COLUMNS = [
    ("url", "URL"), ("event_types", "Event types"), ("team_id", "Team"), ("enabled", "Enabled"),
    ("id", "Id"),
]  # fmt: skip
DELIVERY_COLUMNS = [
    ("event_type", "Event"), ("lead_id", "Lead"), ("target", "To"), ("state", "State"),
    ("attempts", "Attempts"), ("last_status", "Last status"), ("last_error", "Last error"),
    ("delivered_at", "Delivered"), ("id", "Id"),
]  # fmt: skip


@console.get("/endpoints", response_class=HTMLResponse)
async def endpoints_page(page: ConfigPageDep, wanted: WantedDep) -> Response:
    services = page.services
    endpoints = await services.everything("notify", "/v1/webhook-endpoints")
    urls = {e["id"]: e["url"] for e in endpoints.items}
    deliveries = await services.get("notify", "/v1/deliveries", limit=100)
    rows = [
        {**d, "target": d.get("connector") or urls.get(d.get("endpoint_id"), d.get("endpoint_id"))}
        for d in deliveries.items
    ]
    types = await services.get("notify", "/v1/event-types")
    return await render(
        page, "console_endpoints.html",
        tables=[Table("endpoints", ENDPOINT_COLUMNS, endpoints.items),
                Table("deliveries", DELIVERY_COLUMNS, rows)],
        wanted=wanted, problem=endpoints.problem or deliveries.problem,
        event_types=(types.body or {}).get("event_types", []) if types.ok else [],
    )  # fmt: skip


@console.post("/endpoints")
async def create_endpoint(change: ConfigChangeDep) -> Response:
    request, form = change.page.request, change.form
    types = [t.strip() for t in form.get("event_types", "").split(",") if t.strip()]
    body: dict[str, Any] = {
        "url": form.get("url", "").strip(),
        "event_types": types or ["lead.routed"],
    }
    answer = await change.page.services.call("POST", "notify", "/v1/webhook-endpoints", json=body)
    if answer.ok:
        secret = answer.body.get("secret")
        return back(
            request,
            "/console/endpoints",
            f"Endpoint added; its signing secret (shown once): {secret}",
        )
    return after(request, answer, "/console/endpoints", "")


@console.post("/endpoints/{endpoint_id}")
async def change_endpoint(endpoint_id: uuid.UUID, change: ConfigChangeDep) -> Response:
    """An endpoint's subscription (its event types), or its pause and resumption."""
    form = change.form
    body: dict[str, Any] = {}
    if "event_types" in form:
        body["event_types"] = [t.strip() for t in form["event_types"].split(",") if t.strip()]
    if "enabled" in form:
        body["enabled"] = form["enabled"] == "true"
    return await call_then_back(
        change.page, ("PATCH", "notify", f"/v1/webhook-endpoints/{endpoint_id}"),
        "/console/endpoints", "Endpoint changed.", body,
    )  # fmt: skip


@console.post("/deliveries/{delivery_id}/replay")
async def replay(delivery_id: uuid.UUID, change: ConfigChangeDep) -> Response:
    return await call_then_back(
        change.page, ("POST", "notify", f"/v1/deliveries/{delivery_id}/replay"),
        "/console/endpoints", "Delivery queued again.",
    )  # fmt: skip


# --- the policy -------------------------------------------------------------------------------

VERSION_COLUMNS = [
    ("number", "Number"), ("version", "Label"), ("state", "State"), ("created_by", "Made by"),
    ("created_at", "Made"), ("published_by", "Published by"), ("published_at", "Published"),
]  # fmt: skip
CHANGE_COLUMNS = [("path", "Value"), ("before", "Before"), ("after", "After")]


async def all_versions(rt: Runtime) -> list[dict[str, Any]]:
    wanted = PageRequest(policy_store.VERSIONS, limit=500, sort="-number", cursor=None, filters={})
    page = await policy.versions(rt, wanted)
    return [v.model_dump(mode="json") for v in page.items]


async def policy_view(
    page: Page, wanted: Wanted, *, text: str | None = None, errors=None, status=200
) -> Response:
    """The policy's page (its viewer configures), with the editor's text and its problems."""
    current = await policy.current(page.rt)
    return await render(
        page, "console_policy.html",
        tables=[Table("versions", VERSION_COLUMNS, await all_versions(page.rt))],
        wanted=wanted, status=status,
        current=current, text=current.text if text is None else text, errors=errors,
    )  # fmt: skip


@console.get("/policy", response_class=HTMLResponse)
async def policy_page(page: ConfigPageDep, wanted: WantedDep) -> Response:
    return await policy_view(page, wanted)


@console.post("/policy", response_class=HTMLResponse)
async def save_policy(change: ConfigChangeDep) -> Response:
    """Check the policy as written and keep it as a draft, or show the editor again with each
    problem's field and line."""
    text = change.form.get("text", "").replace("\r\n", "\n")
    try:
        made = await policy.create_version(change.page.rt, text)
    except ProblemError as exc:
        errors = exc.errors or [{"field": exc.extra.get("field") or "", "message": exc.detail}]
        return await policy_view(change.page, Wanted(), text=text, errors=errors, status=422)
    return back(
        change.page.request,
        f"/console/policy/versions/{made.number}",
        f"Version {made.number} saved as a draft.",
    )


@console.get("/policy/versions/{number}", response_class=HTMLResponse)
async def version_page(number: int, page: ConfigPageDep, wanted: WantedDep) -> Response:
    rt = page.rt
    shown = await policy.version(rt, number)
    current = await policy.current(rt)
    diff = await policy.diff(rt, current.number, number)
    rows = [c.model_dump(mode="json") for c in diff.changes]
    return await render(
        page, "console_version.html",
        tables=[Table("changes", CHANGE_COLUMNS, rows)], wanted=wanted,
        shown=shown, current=current, diff=diff,
    )  # fmt: skip


@console.post("/policy/versions/{number}/publish")
async def publish_version(number: int, change: ConfigChangeDep) -> Response:
    return await policy_step(
        change.page.request,
        policy.publish(change.page.rt, number),
        lambda made: f"Version {made.number} ({made.version}) is the policy now.",
    )


@console.post("/policy/rollback")
async def roll_back(change: ConfigChangeDep) -> Response:
    return await policy_step(
        change.page.request,
        policy.rollback(change.page.rt),
        lambda made: f"Rolled back: version {made.number} ({made.version}) is the policy again.",
    )


# --- the audit log ----------------------------------------------------------------------------

AUDIT_COLUMNS = [
    ("at", "When"), ("service", "Service"), ("actor", "Who"), ("action", "Action"),
    ("entity", "What"), ("entity_id", "Which"),
]  # fmt: skip


@console.get("/audit", response_class=HTMLResponse)
async def audit_page(page: ConfigPageDep, wanted: WantedDep) -> Response:
    """The changes of routing, notify and feedback, newest first, with who made them."""
    services = page.services
    rows: list[dict[str, Any]] = []
    problems = []
    for name in ("routing", "notify"):
        answer = await services.get(name, "/v1/audit", limit=200)
        problems += [f"{name}: {answer.problem}"] if not answer.ok else []
        rows += [{**e, "service": name} for e in answer.items]
    newest = PageRequest(audit.listing(metadata), limit=200, sort="-id", cursor=None, filters={})
    async with page.rt.db.unit_of_work() as session:
        own = await audit.entries(session, newest)
    rows += [{**e.model_dump(mode="json"), "service": "feedback"} for e in own.items]
    rows.sort(key=lambda e: str(e.get("at")), reverse=True)
    return await render(
        page, "console_audit.html",
        tables=[Table("audit", AUDIT_COLUMNS, rows)], wanted=wanted,
        problem="; ".join(problems),
    )  # fmt: skip


# --- leads ------------------------------------------------------------------------------------

LEAD_COLUMNS = [
    ("email", "E-mail"), ("name", "Name"), ("company", "Company"), ("status", "Status"),
    ("id", "Id"),
]  # fmt: skip


@console.get("/leads", response_class=HTMLResponse)
async def leads_page(
    page: ConfigPageDep, wanted: WantedDep,
    q: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:  # fmt: skip
    """Find a lead by e-mail, name, company or id, and open its timeline."""
    rows: list[dict[str, Any]] = []
    problem = ""
    if q:
        answer = await page.services.get("ingest", "/v1/leads", q=q, limit=50)
        problem = answer.problem
        for lead in answer.items:
            company = lead.get("company") or {}
            name = " ".join(p for p in (lead.get("first_name"), lead.get("last_name")) if p)
            rows.append({
                "id": lead.get("id") or lead.get("lead_id"), "email": lead.get("email"),
                "name": name, "company": company.get("name"), "status": lead.get("status"),
            })  # fmt: skip
    return await render(
        page, "console_leads.html",
        tables=[Table("leads", LEAD_COLUMNS, rows)], wanted=wanted,
        q=q or "", problem=problem,
    )  # fmt: skip
