"""What the pipeline reliability tests share: services as processes that can be crashed at an exact
point, a sender that retries until ingest accepts, a receiver, and the complete end-state count."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import sqlalchemy as sa
from leadflow import faults
from leadflow.db import Database
from leadflow.settings import Settings
from leadflow_tools.receiver import WebhookReceiver
from leadflow_tools.registry import SERVICE_ORDER
from leadflow_tools.supervisor import ServiceProcess, start_all
from support.harness import ADMIN, SOURCE, eventually, sample_lead


@dataclass
class FaultyService(ServiceProcess):
    """A service process that, when `fault` is set (`<point>:<n>`), exits at that crash point."""

    fault: str | None = None
    crashes: list[str] = field(default_factory=list)

    def environment(self) -> dict[str, str]:
        env = super().environment()
        env.pop(faults.ENV_VAR, None)
        if self.fault:
            env[faults.ENV_VAR] = self.fault
        return env

    async def kill_and_restart(self, down_for: float = 0.0) -> None:
        self.kill()
        self.crashes.append("kill -9")
        await asyncio.sleep(down_for)
        self.fault = None
        await asyncio.to_thread(self.start, 120)

    async def crash_at(
        self,
        point: str,
        arrivals: int,
        load: Callable[[asyncio.Event], Awaitable[None]],
        timeout: float = 180,
    ) -> None:
        """Restart with the crash point armed, keep `load` running until the process exits there
        (then `load` is told to stop and finishes what it is doing), restart it clean."""
        self.kill()
        self.fault = f"{point}:{arrivals}"
        self.launch()
        enough = asyncio.Event()
        feeding = asyncio.create_task(load(enough))
        try:
            code = await asyncio.wait_for(asyncio.to_thread(self.proc.wait), timeout)
        except TimeoutError:
            feeding.cancel()
            raise AssertionError(
                f"{self.name} never reached the crash point {point}; its log ends with:\n"
                + self.log_tail()
            ) from None
        enough.set()
        assert code == faults.EXIT_CODE, f"{self.name} exited {code}, not at {point}"
        self.crashes.append(point)
        self.fault = None
        await asyncio.to_thread(self.start, 120)
        await feeding  # its last lead may have waited for this very service


def make_services(settings: Settings, logs: Path) -> dict[str, FaultyService]:
    return {name: FaultyService(name, settings, logs / f"{name}.log") for name in SERVICE_ORDER}


async def start_services(services: dict[str, FaultyService]) -> None:
    await start_all(list(services.values()), timeout=120)


async def log_task_stacks(services: dict[str, FaultyService]) -> None:
    """Have each running service log the stack of every task it runs (SIGUSR1): where a loop
    that stopped making progress waits, in its log, for a failure to show."""
    asked = {}
    for name, service in services.items():
        if service.proc is not None and service.proc.poll() is None:
            asked[name] = service.log_path.read_bytes().count(TASKS_LOGGED)
            service.proc.send_signal(signal.SIGUSR1)

    def all_logged() -> bool:
        return all(
            services[name].log_path.read_bytes().count(TASKS_LOGGED) > before
            for name, before in asked.items()
        )

    with contextlib.suppress(AssertionError):
        await eventually(all_logged, timeout=10)


TASKS_LOGGED = b"tasks of this process"


def stop_services(services: dict[str, FaultyService]) -> None:
    for proc in services.values():
        proc.stop()


class CountingReceiver(WebhookReceiver):
    """Keeps, per lead, every webhook-id it was sent (a retry of one delivery repeats its id)."""

    def __init__(self) -> None:
        super().__init__()
        self.ids_per_lead: dict[str, set[str]] = defaultdict(set)
        self.requests = 0

    def record(self, headers: dict[str, str], body: bytes) -> None:
        self.requests += 1
        lead_id = json.loads(body)["data"]["lead"]["lead_id"]
        self.ids_per_lead[lead_id].add(headers["webhook-id"])


async def configure_routing(http: httpx.AsyncClient, services: dict, receiver_url: str) -> None:
    """Two reps in routing, each able to hold every lead a run sends (a rep at capacity gets no
    more: the lead would wait), and notify's endpoint for `lead.routed` at the receiver."""
    for name in ("Rep A", "Rep B"):
        rep = await http.post(
            f"{services['routing'].url}/v1/reps",
            headers=ADMIN,
            json={"name": name, "capacity": 10_000},
        )
        assert rep.status_code == 201, rep.text
    endpoint = await http.post(
        f"{services['notify'].url}/v1/webhook-endpoints", headers=ADMIN, json={"url": receiver_url}
    )
    assert endpoint.status_code == 201, endpoint.text


async def send_lead(http: httpx.AsyncClient, ingest_url: str, n: int, accepted: dict) -> None:
    """POST lead n until ingest answers 202 (it may be down or restarting); a lead resent after
    an unanswered try must come back as the same lead."""
    while True:
        try:
            response = await http.post(
                f"{ingest_url}/v1/leads", headers=SOURCE, json=sample_lead(n)
            )
        except httpx.TransportError:
            await asyncio.sleep(0.3)
            continue
        if response.status_code == 202:
            lead_id = response.json()["lead_id"]
            assert accepted.setdefault(n, lead_id) == lead_id, f"lead {n} accepted twice as two"
            return
        assert response.status_code in (502, 503), (response.status_code, response.text)
        await asyncio.sleep(0.3)


async def send_leads(
    http: httpx.AsyncClient, ingest_url: str, numbers: range, accepted: dict, concurrency: int = 4
) -> None:
    queue = iter(numbers)

    async def worker() -> None:
        for n in queue:
            await send_lead(http, ingest_url, n, accepted)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


@dataclass
class EndState:
    """Every lead's trace in every service, counted in full."""

    ingest_leads: int
    mql_leads: set[str]
    assignments: Counter
    deliveries: dict[str, list[str]]  # lead -> states of its deliveries
    timers: dict[str, list[tuple[str, str]]]  # lead -> (sla, state) of each timer
    feedback: dict[str, str]  # lead -> lifecycle status


async def end_state(settings: Settings) -> EndState:
    db = Database(settings.database_url)
    try:
        async with db.unit_of_work() as s:
            ingest_leads = await s.scalar(sa.text("SELECT count(*) FROM ingest.leads"))
            mql = {
                str(r[0])
                for r in await s.execute(
                    sa.text("SELECT lead_id FROM scoring.lead_scores WHERE is_mql")
                )
            }
            assignments = Counter(
                str(r[0])
                for r in await s.execute(sa.text("SELECT lead_id FROM routing.assignments"))
            )
            deliveries: dict[str, list[str]] = defaultdict(list)
            for r in await s.execute(sa.text("SELECT lead_id, state FROM notify.deliveries")):
                deliveries[str(r[0])].append(r[1])
            timers: dict[str, list[tuple[str, str]]] = defaultdict(list)
            for r in await s.execute(sa.text("SELECT lead_id, sla, state FROM sla_timer.timers")):
                timers[str(r[0])].append((r[1], r[2]))
            feedback = {
                str(r[0]): r[1]
                for r in await s.execute(sa.text("SELECT lead_id, status FROM feedback.leads"))
            }
    finally:
        await db.dispose()
    return EndState(ingest_leads, mql, assignments, dict(deliveries), dict(timers), feedback)


def settled(state: EndState, lead_ids: set[str]) -> bool:
    """Every lead has reached the end of the path everywhere (whether exactly once is checked
    by assert_each_lead_exactly_once)."""
    return (
        set(state.timers) >= lead_ids
        and set(state.feedback) >= lead_ids
        and all(state.feedback[lead] == "routed" for lead in lead_ids)
        and set(state.deliveries) >= lead_ids
        and all("pending" not in d for d in state.deliveries.values())
    )


def assert_each_lead_exactly_once(
    state: EndState, receiver: CountingReceiver, lead_ids: set[str]
) -> None:
    """Routed once, one delivery per endpoint delivered once (by webhook-id), one clock per SLA."""
    n = len(lead_ids)
    assert state.ingest_leads == n, f"ingest holds {state.ingest_leads} leads for {n} sent"
    assert state.mql_leads == lead_ids, f"MQL missing: {len(lead_ids - state.mql_leads)}"
    doubled = {lead: c for lead, c in state.assignments.items() if c != 1}
    assert not doubled, f"leads routed more than once: {list(doubled.items())[:5]}"
    assert set(state.assignments) == lead_ids, (
        f"{len(lead_ids - set(state.assignments))} leads not routed"
    )
    bad = {lead: d for lead, d in state.deliveries.items() if d != ["delivered"]}
    assert not bad, f"deliveries not exactly one and delivered: {list(bad.items())[:5]}"
    assert set(state.deliveries) == lead_ids, (
        f"{len(lead_ids - set(state.deliveries))} leads without a delivery at notify, e.g. "
        f"{sorted(lead_ids - set(state.deliveries))[:3]}"
    )
    webhooks = {lead: ids for lead, ids in receiver.ids_per_lead.items() if len(ids) != 1}
    assert not webhooks, f"leads delivered under several webhook-ids: {list(webhooks)[:5]}"
    assert set(receiver.ids_per_lead) == lead_ids, (
        f"{len(lead_ids - set(receiver.ids_per_lead))} leads never reached the receiver"
    )
    assert set(state.timers) == lead_ids, f"{len(lead_ids - set(state.timers))} leads w/o timers"
    shapes = Counter(tuple(sorted(t)) for t in state.timers.values())
    assert len(shapes) == 1, f"leads' timers differ: {shapes.most_common(3)}"
    (shape,) = shapes
    slas = [sla for sla, _ in shape]
    assert len(slas) == len(set(slas)), f"an SLA clock started twice: {shape}"
    assert ("first_response", "open") in shape, shape  # no attempt yet: the clock runs
    assert set(state.feedback) == lead_ids
    statuses = Counter(state.feedback.values())
    assert statuses == Counter({"routed": n}), statuses


async def settled_now(
    settings: Settings, receiver: CountingReceiver, lead_ids: set[str]
) -> EndState | None:
    """The end state when every lead has settled everywhere, else None."""
    if not set(receiver.ids_per_lead) >= lead_ids:
        return None
    state = await end_state(settings)
    return state if settled(state, lead_ids) else None


async def settle_and_count(
    settings: Settings, receiver: CountingReceiver, lead_ids: set[str], timeout: float
) -> EndState:
    """Wait up to `timeout` for every lead to settle, leave room for a wrong second delivery or
    clock to show up, then count everything (not settling in time is reported by the count)."""
    try:
        await eventually(lambda: settled_now(settings, receiver, lead_ids), timeout, interval=1)
    except AssertionError:
        pass  # the count says what is missing or doubled
    await asyncio.sleep(3)
    return await end_state(settings)
