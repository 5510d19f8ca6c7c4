"""`leadflow demo`: a simulated business week on the embedded stack, in a few real minutes.

It starts PostgreSQL, the broker and the six services the way the end-to-end tests do
(`leadflow_tools.devstack` and `leadflow_tools.supervisor`: free ports, one database, real
processes) on a simulated clock, sets up
two teams of reps, sends leads from several sources and channels at business-hours instants,
lets the reps answer at their own pace (some too late, so SLAs breach), takes sales' statuses
back, and finally prints the weekly report, the review page's URL and the check that the
page's source (the JSON report) and Prometheus agree.
"""

from __future__ import annotations

import asyncio
import os
import random
import secrets
import signal
import sys
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from leadflow.clock import Clock
from leadflow.contracts.calendar import add_business_time, policy_calendar
from leadflow.contracts.policy import load_policy
from leadflow.settings import DEV_API_KEY

# The demo's stack has one key, the development key, with every scope: the demo's reads and
# writes present it, and feedback's pages read routing and notify with it for people signed in.
ADMIN = {"Authorization": f"Bearer {DEV_API_KEY}"}
# The local admin a person signs in to the review pages with (an admin sees every page with rep
# names and deliveries). Its password is made anew for each run and printed at the end.
REVIEWER = {"email": "admin@demo.example", "name": "Demo admin", "role": "admin"}
# Real seconds the services get to start before the simulated Monday begins (at midnight;
# the first leads come at 08:30, which leaves some more room on a slow machine).
STARTUP_ALLOWANCE = 40.0
PIPELINE_PATIENCE = 90.0  # real seconds a lead may take from ingest to its SLA clock
POLL = 0.25  # real seconds between looks at a lead's routing

# Each rep answers a new MQL after a business-time delay drawn from their range (minutes):
# quick and steady reps keep the 2-hour inbound limit, the slow and swamped ones often not.
REPS = (
    ("Ada Lovelace", "ada@demo.example", "Inbound CEE", (5, 45)),
    ("Alan Turing", "alan@demo.example", "Inbound CEE", (20, 110)),
    ("Kasia Nowak", "kasia@demo.example", "Inbound CEE", (80, 330)),
    ("Grace Hopper", "grace@demo.example", "Partners and outbound", (30, 240)),
    ("Edsger Dijkstra", "edsger@demo.example", "Partners and outbound", (120, 900)),
)
ROUTING = {
    "teams": [
        {"name": "Inbound CEE", "strategy": "round_robin"},
        {"name": "Partners and outbound", "strategy": "round_robin"},
    ],
    "reps": [{"name": n, "email": e, "team": t} for n, e, t, _ in REPS],
    "rules": [
        {"name": "partners and outbound", "priority": 10,
         "conditions": {"channel": ["partner", "outbound"]}, "team": "Partners and outbound"},
        {"name": "inbound", "priority": 20, "conditions": {"channel": ["inbound"]},
         "team": "Inbound CEE"},
    ],
}  # fmt: skip
# (weight, system, channel, medium, campaign, lead magnet)
SOURCES = (
    (4, "hubspot", "inbound", "webinar", "routing-webinar", "sla-playbook"),
    (4, "hubspot", "inbound", "cpc", "search-brand", "pricing-guide"),
    (2, "hubspot", "inbound", "organic", None, None),
    (2, "marketo", "outbound", "paid_social", "abm-fintech", "roi-calculator"),
    (2, "partner-portal", "partner", "events", "partner-referrals", None),
)
INDUSTRIES = ("software", "financial services", "manufacturing", "retail", "education")
SIZES = (30, 80, 250, 600, 900, 2500)
COUNTRIES = ("PL", "SK", "CZ", "HU", "DE")
ROLES = (("decision_maker", 5), ("influencer", 3), ("user", 2))
SENIORITY = ("c_level", "vp", "director", "manager", "individual")
FIRST = ("Anna", "Piotr", "Zuzana", "Tomas", "Eva", "Marek", "Julia", "Lukas", "Ilona", "Jan")
LAST = ("Kowalska", "Novak", "Horvath", "Schmidt", "Dvorak", "Wisniewski", "Kovac", "Szabo")
COMPANIES = ("Nordlicht", "Vistula", "Danube", "Carpathia", "Baltic", "Tatra", "Morava", "Oder")
SUFFIXES = ("Robotics", "Payments", "Logistics", "Analytics", "Foods", "Systems", "Health")
RETURN_REASONS = ("not_in_target", "budget_too_small", "timing_next_quarter", "no_need")
QUALIFIED = {"problem": True, "impact": "faster lead response", "authority": True}


@dataclass
class DemoOptions:
    days: int = 5  # business days simulated, from Monday
    leads: int = 80
    minutes: float = 3.0  # real minutes the simulated days take
    seed: int = 7
    keep: bool = False  # leave the stack running after the report, until Ctrl-C
    state_dir: Path = Path(".leadflow/demo")


@dataclass
class Tally:
    leads: int = 0
    mql: int = 0
    attempts: int = 0
    statuses: int = 0
    errors: list[str] = field(default_factory=list)


def demo_week(today: date, tz: ZoneInfo) -> datetime:
    """Monday 00:00 of last week (local): a whole past week to review."""
    monday = today - timedelta(days=today.weekday() + 7)
    return datetime(monday.year, monday.month, monday.day, tzinfo=tz)


def simulated_span(start: datetime, days: int) -> timedelta:
    """From Monday 00:00 to 18:00 of the last business day simulated."""
    end = start.replace(hour=18, minute=0) + timedelta(days=days - 1)
    return end - start


def make_lead(rng: random.Random, n: int, created_at: datetime) -> dict[str, Any]:
    """A lead as a marketing platform would send it: person, company, source, consent."""
    weights = [s[0] for s in SOURCES]
    _, system, channel, medium, campaign, magnet = rng.choices(SOURCES, weights)[0]
    first, last = rng.choice(FIRST), rng.choice(LAST)
    company = f"{rng.choice(COMPANIES)} {rng.choice(SUFFIXES)}"
    domain = company.lower().replace(" ", "-") + f"-{n}.example"
    role = rng.choices([r for r, _ in ROLES], [w for _, w in ROLES])[0]
    lead: dict[str, Any] = {
        "email": f"{first}.{last}.{n}@{domain}".lower(),
        "external_id": f"demo-{n}",
        "first_name": first,
        "last_name": last,
        "title": rng.choice(("CTO", "VP Sales", "Head of RevOps", "Sales Manager", "Analyst")),
        "role": role,
        "seniority": rng.choices(SENIORITY, (2, 3, 3, 2, 1))[0],
        "company": {
            "name": company,
            "domain": domain,
            "industry": rng.choices(INDUSTRIES, (5, 3, 3, 1, 1))[0],
            "employees": rng.choice(SIZES),
            "country": rng.choice(COUNTRIES),
        },
        "source": {k: v for k, v in
                   {"system": system, "channel": channel, "medium": medium,
                    "campaign": campaign, "lead_magnet": magnet}.items() if v},
        "consent": {"basis": "consent" if channel != "outbound" else "legitimate_interest"},
        "intent_tier": rng.choices((0, 1, 2, 3), (2, 2, 4, 2))[0],
        "occurred_at": created_at.isoformat(),
    }  # fmt: skip
    if rng.random() < 0.5:
        # interest shown on the website rather than in intent data: the lead becomes an MQL
        # on engagement, carrying its key activities
        lead["intent_tier"] = rng.choice((0, 1))
        lead["_engaged"] = True
    if rng.random() < 0.8:
        lead["intent_note"] = rng.choice(
            ("asked for a demo", "compared routing tools", "downloaded the SLA playbook")
        )
    return lead


def schedule(options: DemoOptions, start: datetime, now: datetime) -> list[tuple[datetime, dict]]:
    """When each lead arrives: business hours (08:30–16:30) of the simulated days, and not
    before `now` (a slow start compresses the first morning rather than losing it)."""
    rng = random.Random(options.seed)
    out = []
    for n in range(options.leads):
        day = start.replace(hour=8, minute=30) + timedelta(days=rng.randrange(options.days))
        offset = rng.random()
        opens = max(day, now + timedelta(minutes=10))
        closes = day + timedelta(hours=8)
        at = opens + (closes - opens) * offset if closes > opens else opens
        out.append((at, make_lead(rng, n, at)))
    out.sort(key=lambda pair: pair[0])
    return out


class Demo:
    """The running demo: the stack, the services, a webhook receiver and the traffic."""

    def __init__(self, options: DemoOptions) -> None:
        self.options = options
        self.policy = load_policy(None)
        self.tz = ZoneInfo(self.policy.calendar.time_zone)
        self.calendar = policy_calendar(self.policy)
        self.start = demo_week(datetime.now(self.tz).date(), self.tz)
        self.span = simulated_span(self.start, options.days)
        self.speed = self.span.total_seconds() / (options.minutes * 60)
        self.tally = Tally()
        self.rng = random.Random(options.seed + 1)
        self.stack = None
        self.procs: dict[str, Any] = {}
        self.clock: Clock | None = None
        self.rep_pace: dict[str, tuple[int, int]] = {}
        self.reviewer_password = secrets.token_urlsafe(12)

    def url(self, service: str) -> str:
        return self.procs[service].url

    @property
    def monday(self) -> date:
        return self.start.date()

    @property
    def review_url(self) -> str:
        return f"{self.url('feedback')}/review?week={self.monday.isoformat()}"

    @property
    def report_url(self) -> str:
        day = self.monday.isoformat()
        return f"{self.url('feedback')}/v1/reports/sla?from={day}&to={day}"

    # --- the stack -----------------------------------------------------------------------

    async def start_stack(self) -> None:
        from leadflow_tools.devstack import Stack
        from leadflow_tools.registry import SERVICE_ORDER
        from leadflow_tools.supervisor import ServiceProcess, start_all

        state = self.options.state_dir.resolve()
        state.mkdir(parents=True, exist_ok=True)
        say("starting PostgreSQL and the broker (embedded) …")
        self.stack = await asyncio.to_thread(Stack.start)
        anchor = time.time() + STARTUP_ALLOWANCE
        settings = await self.stack.isolated_settings(
            clock_start=self.start, clock_speed=self.speed, clock_anchor=anchor
        )
        # feedback's pages read routing and notify for people signed in with this key
        os.environ["LEADFLOW_PAGES_API_KEY"] = DEV_API_KEY
        self.clock = Clock(self.start, self.speed, anchor)
        self.procs = {
            name: ServiceProcess(name, settings, state / f"{name}.log") for name in SERVICE_ORDER
        }
        # feedback's timeline reads routing's decision trace and notify's deliveries over their APIs
        os.environ["LEADFLOW_ROUTING_URL"] = self.procs["routing"].url
        os.environ["LEADFLOW_NOTIFY_URL"] = self.procs["notify"].url
        say(f"starting the six services (logs in {state}) …")
        await start_all(list(self.procs.values()))

    def stop_stack(self) -> None:
        for proc in self.procs.values():
            if proc.proc is not None and proc.proc.poll() is None:
                proc.proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            proc.stop()
        if self.stack is not None:
            self.stack.stop()

    async def configure(self, client: httpx.AsyncClient, receiver_url: str) -> None:
        """Two teams, five reps, two rules; the sales tool's webhook endpoint."""
        routing = self.url("routing")
        response = await client.put(f"{routing}/v1/routing-config", json=ROUTING, headers=ADMIN)
        response.raise_for_status()
        reps = (await client.get(f"{routing}/v1/reps", params={"limit": 500})).json()["items"]
        pace = {email: minutes for _, email, _, minutes in REPS}
        self.rep_pace = {r["id"]: pace[r["email"]] for r in reps if r.get("email") in pace}
        response = await client.post(
            f"{self.url('notify')}/v1/webhook-endpoints", json={"url": receiver_url}, headers=ADMIN
        )
        response.raise_for_status()
        response = await client.post(
            f"{self.url('feedback')}/v1/users",
            json={**REVIEWER, "password": self.reviewer_password},
            headers=ADMIN,
        )
        response.raise_for_status()

    # --- traffic -------------------------------------------------------------------------

    @property
    def end(self) -> datetime:
        return self.start + self.span

    async def at(self, instant: datetime) -> bool:
        """Wait until simulated `instant`; False when it falls after the simulated days."""
        if instant > self.end:
            return False
        await self.clock.sleep_until(instant)
        return True

    async def post(self, client: httpx.AsyncClient, url: str, body: dict) -> httpx.Response | None:
        response = await client.post(url, json=body, headers=ADMIN)
        if response.status_code >= 400:
            self.tally.errors.append(f"{url}: {response.status_code} {response.text[:200]}")
            return None
        return response

    async def first_response_timer(
        self, client: httpx.AsyncClient, lead_id: str
    ) -> dict[str, Any] | None:
        """The lead's first-response clock once routing assigned it (None: not an MQL)."""
        started = time.monotonic()
        while time.monotonic() - started < PIPELINE_PATIENCE:
            score = await client.get(f"{self.url('scoring')}/v1/leads/{lead_id}/score")
            if score.status_code == 200 and score.json().get("is_mql"):
                break
            # a score below the bar stays there once its activities are in
            if score.status_code == 200 and time.monotonic() - started > 3:
                return None
            await asyncio.sleep(POLL * 2)
        while time.monotonic() - started < PIPELINE_PATIENCE:
            response = await client.get(f"{self.url('sla-timer')}/v1/leads/{lead_id}/slas")
            if response.status_code == 200:
                for timer in response.json()["timers"]:
                    if timer["sla"] == "first_response":
                        return timer
            await asyncio.sleep(POLL)
        return None

    async def lead_story(self, client: httpx.AsyncClient, created_at: datetime, lead: dict) -> None:
        """One lead: it arrives, may show interest, gets routed, and its rep works it."""
        rng = random.Random(f"{self.options.seed}-{lead['external_id']}")
        engaged = lead.pop("_engaged", False)
        if not await self.at(created_at):
            return
        accepted = await self.post(client, f"{self.url('ingest')}/v1/leads", lead)
        if accepted is None:
            return
        self.tally.leads += 1
        lead_id = accepted.json()["lead_id"]
        if engaged:
            steps = (("webinar_attended", None), ("page_view", "pricing"), ("demo_request", None))
            for minutes, (kind, page) in enumerate(steps, start=1):
                body = {
                    "lead_id": lead_id,
                    "type": kind,
                    "occurred_at": (created_at + timedelta(minutes=minutes)).isoformat(),
                }
                if page:
                    body["page_category"] = page
                await self.post(client, f"{self.url('ingest')}/v1/activities", body)  # fmt: skip
        timer = await self.first_response_timer(client, lead_id)
        if timer is None:
            return
        self.tally.mql += 1
        routed_at = datetime.fromisoformat(timer["started_at"])
        assignment = await client.get(f"{self.url('routing')}/v1/leads/{lead_id}/assignment")
        rep_id = assignment.json().get("rep_id") if assignment.status_code == 200 else None
        low, high = self.rep_pace.get(rep_id, (30, 200))
        attempt_at = add_business_time(
            self.calendar, routed_at, timedelta(minutes=rng.uniform(low, high))
        )
        feedback = self.url("feedback")
        for number in range(rng.randint(1, 5)):
            if not await self.at(attempt_at):
                return
            channel = "call" if number % 2 == 0 else rng.choice(("email", "linkedin"))
            outcome = rng.choice(("left voicemail", "no answer", "talked", "email sent"))
            body = {"channel": channel, "outcome": outcome, "rep_id": rep_id}
            if await self.post(client, f"{feedback}/v1/leads/{lead_id}/attempts", body):
                self.tally.attempts += 1
            if number == 0:
                decided = await self.sales_decides(client, rng, lead_id, attempt_at)
                if decided == "returned":
                    return
            attempt_at = add_business_time(
                self.calendar, attempt_at, timedelta(hours=rng.uniform(3, 14))
            )

    async def sales_decides(
        self, client: httpx.AsyncClient, rng: random.Random, lead_id: str, after: datetime
    ) -> str | None:
        """After the first conversation: accept (and maybe qualify), return, or keep working."""
        feedback = f"{self.url('feedback')}/v1/leads/{lead_id}/status"
        roll = rng.random()
        decide_at = add_business_time(self.calendar, after, timedelta(hours=rng.uniform(1, 6)))
        if roll < 0.15:
            if await self.at(decide_at) and await self.post(
                client, feedback, {"status": "returned", "reason": rng.choice(RETURN_REASONS)}
            ):
                self.tally.statuses += 1
                return "returned"
            return None
        if roll < 0.75:
            if not (
                await self.at(decide_at) and await self.post(client, feedback, {"status": "sal"})
            ):
                return None
            self.tally.statuses += 1
            if rng.random() < 0.5:
                qualify_at = add_business_time(
                    self.calendar, decide_at, timedelta(hours=rng.uniform(2, 12))
                )
                if await self.at(qualify_at) and await self.post(
                    client, feedback, {"status": "sql", "qualification": QUALIFIED}
                ):
                    self.tally.statuses += 1
            return "sal"
        return None

    async def progress(self) -> None:
        """A progress bar over the simulated days (a line per 10 % when not on a terminal)."""
        tty = sys.stdout.isatty()
        last_step = -1
        while True:
            now = self.clock.now()
            done = min(max((now - self.start) / self.span, 0.0), 1.0)
            bar = "#" * int(done * 30)
            line = (
                f"[{bar:<30}] {done * 100:5.1f} %  {now.astimezone(self.tz):%a %d %b %H:%M}  "
                f"leads {self.tally.leads}/{self.options.leads}  MQL {self.tally.mql}  "
                f"attempts {self.tally.attempts}  statuses {self.tally.statuses}"
            )
            if tty:
                print("\r" + line, end="", flush=True)
            elif int(done * 10) != last_step:
                last_step = int(done * 10)
                print(line, flush=True)
            if done >= 1.0:
                if tty:
                    print(flush=True)
                return
            await asyncio.sleep(0.5)

    async def drive(self) -> None:
        from leadflow_tools.receiver import WebhookReceiver

        async with (
            WebhookReceiver() as receiver,
            httpx.AsyncClient(timeout=30, headers=ADMIN) as client,
        ):
            await self.configure(client, receiver.url)
            plan = schedule(self.options, self.start, self.clock.now())
            say(
                f"simulating {self.options.days} business day(s) from "
                f"{self.start:%a %Y-%m-%d %H:%M} {self.tz.key} at {self.speed:.0f}× speed "
                f"(about {self.options.minutes:g} real minute(s)), {len(plan)} leads"
            )
            stories = [asyncio.create_task(self.lead_story(client, at, lead)) for at, lead in plan]
            await asyncio.gather(self.progress(), *stories)
            await self.settle(client)
            say(f"the sales tool received {len(receiver.received)} signed webhook(s)")

    async def settle(self, client: httpx.AsyncClient, within: float = 120) -> None:
        """Wait until feedback has taken in everything the week produced: the report agrees
        with the metrics and stops moving (on a busy machine the consumers may lag)."""
        deadline = time.monotonic() + within
        previous = None
        while time.monotonic() < deadline:
            check = await self.consistency(client)
            current = check["values"]
            if current == previous and all(r == m for r, m in current):
                return
            previous = current
            await asyncio.sleep(2)

    # --- the report ----------------------------------------------------------------------

    async def report(self, client: httpx.AsyncClient) -> dict[str, Any]:
        response = await client.get(self.report_url)
        response.raise_for_status()
        return response.json()

    async def consistency(self, client: httpx.AsyncClient) -> dict[str, Any]:
        """The week's figures from the JSON report (what the review page shows) beside the
        same counts from the services' Prometheus metrics."""
        report = await self.report(client)
        scoring = await scrape(client, f"{self.url('scoring')}/metrics")
        feedback = await scrape(client, f"{self.url('feedback')}/metrics")
        sla = await scrape(client, f"{self.url('sla-timer')}/metrics")
        period = report["periods"][-1]
        per_mql = period["sales"]["attempts_per_mql"]["value"]
        rows = [
            ("MQL", period["mql"], metric_sum(scoring, "leadflow_mql_total")),
            (
                "contact attempts",
                None if per_mql is None else round(per_mql * period["mql"]),
                metric_sum(feedback, "leadflow_contact_attempts_total"),
            ),
            (
                "first-response breaches",
                len(report["exceptions"]["first_response_breaches"]),
                metric_sum(sla, "leadflow_sla_breaches_total", sla="first_response"),
            ),
        ]
        return {
            "rows": rows,
            "values": [(r, round(m)) for _, r, m in rows],
            "report": report,
        }


async def scrape(client: httpx.AsyncClient, url: str) -> dict[tuple[str, frozenset], float]:
    """One Prometheus scrape: (sample name, labels) → value."""
    from prometheus_client.parser import text_string_to_metric_families

    text = (await client.get(url)).text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def metric_sum(samples: dict[tuple[str, frozenset], float], name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def say(message: str) -> None:
    print(message, flush=True)


async def run_demo(options: DemoOptions) -> int:
    from leadflow_feedback.domain.review import weekly_text

    demo = Demo(options)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    work = None
    try:
        await demo.start_stack()
        work = asyncio.create_task(demo.drive())
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait({work, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if not work.done():
            say("\ninterrupted; stopping …")
            work.cancel()
            return 130
        work.result()
        async with httpx.AsyncClient(timeout=30, headers=ADMIN) as client:
            check = await demo.consistency(client)
        print()
        print(weekly_text(check["report"], url=demo.review_url))
        print(
            f"  sign in with the e-mail {REVIEWER['email']} and the password "
            f"{demo.reviewer_password} ; tools give the API key {DEV_API_KEY} instead "
            "(Authorization: Bearer, or as the password of HTTP Basic with any user name)"
        )
        print(f"JSON report: {demo.report_url}")
        print(f"  (curl -H 'Authorization: Bearer {DEV_API_KEY}' '{demo.report_url}')")
        print("\nThe same week in the JSON report (what the page shows) and in Prometheus:")
        agree = True
        for name, reported, measured in check["rows"]:
            same = reported == round(measured)
            agree &= same
            print(f"  {name:<24} report {reported!s:>5}   metrics {measured:>7g}   "
                  f"{'agree' if same else 'DIFFER'}")  # fmt: skip
        for error in demo.tally.errors[:5]:
            print(f"  refused: {error}")
        print(f"metrics: {demo.url('scoring')}/metrics {demo.url('feedback')}/metrics "
              f"{demo.url('sla-timer')}/metrics")  # fmt: skip
        if options.keep:
            say("\nThe stack keeps running (simulated time goes on); Ctrl-C stops it.")
            await stop.wait()
        else:
            say("\n(the review page is served while the stack runs: add --keep to browse it)")
        return 0 if agree else 1
    finally:
        if work is not None and not work.done():
            work.cancel()
        say("stopping …")
        await asyncio.to_thread(demo.stop_stack)
        say("stopped.")
