"""Crash safety: while leads flow through all six services (each its own process), crash them one
after another and restart them; at the end every lead is counted in every service, exactly once.

The crashes: `kill -9` of each of the six services, the outbox relay of a service exiting after
the broker acknowledged part of a batch it has not marked published, and a consumer exiting after
its batch's transaction committed but before its offsets were committed. Order, victims and crash
points are drawn from LEADFLOW_CRASH_SEED (random when unset; printed on failure).

LEADFLOW_CRASH_LEADS sets the number of leads: `make test` runs a bounded number, `make soak`
runs 10,000."""

import asyncio
import itertools
import os
import random

import httpx
import pytest
from leadflow_tools.registry import SERVICE_ORDER
from pipeline import (
    CountingReceiver,
    assert_each_lead_exactly_once,
    configure_routing,
    end_state,
    make_services,
    send_lead,
    send_leads,
    settled,
    start_services,
    stop_services,
)
from support.harness import eventually

LEADS = int(os.environ.get("LEADFLOW_CRASH_LEADS", "100"))
SEED = int(os.environ.get("LEADFLOW_CRASH_SEED") or random.randrange(1_000_000))
RELAYS = ("ingest", "scoring", "routing")  # relays that publish in the lead's path
CONSUMERS = ("scoring", "routing", "sla-timer", "feedback", "notify")


def crash_plan(rng: random.Random) -> list[tuple[str, str, int]]:
    """(service, crash, arrivals): kill -9 of each service, plus the two exact crash points."""
    plan = [(name, "kill -9", 0) for name in SERVICE_ORDER]
    plan.append((rng.choice(RELAYS), "outbox.published", rng.randint(1, 3)))
    plan.append((rng.choice(CONSUMERS), "consumer.db_committed", rng.randint(1, 2)))
    rng.shuffle(plan)
    return plan


@pytest.mark.e2e
@pytest.mark.timeout(900 + LEADS // 5)
async def test_crashes_anywhere_lose_nothing_and_double_nothing(settings, tmp_path):
    rng = random.Random(SEED)
    plan = crash_plan(rng)
    context = f"seed {SEED}, {LEADS} leads, plan {plan}, logs {tmp_path}"
    services = make_services(settings, tmp_path)
    accepted: dict[int, str] = {}
    try:
        await start_services(services)
        async with CountingReceiver() as receiver, httpx.AsyncClient(timeout=15) as http:
            await configure_routing(http, services, receiver.url)
            ingest = services["ingest"].url
            # Leads go in len(plan) + 1 chunks; crash k comes once chunk k is in, while
            # chunk k + 1 is being sent, so every crash hits a pipeline under load.
            bounds = [LEADS * i // (len(plan) + 1) for i in range(len(plan) + 2)]
            started = [asyncio.Event() for _ in plan]
            sent = [asyncio.Event() for _ in range(len(plan) + 1)]

            async def sender() -> None:
                for chunk in range(len(plan) + 1):
                    if chunk:
                        await started[chunk - 1].wait()
                    await send_leads(
                        http, ingest, range(bounds[chunk], bounds[chunk + 1]), accepted
                    )
                    sent[chunk].set()

            extra = itertools.count(LEADS)

            async def load(enough: asyncio.Event) -> None:
                """Leads keep coming until the armed crash point is reached."""
                while not enough.is_set():
                    await send_lead(http, ingest, next(extra), accepted)
                    await asyncio.sleep(0.5)

            async def crasher() -> None:
                for k, (name, crash, arrivals) in enumerate(plan):
                    await sent[k].wait()
                    started[k].set()
                    if crash == "kill -9":
                        await services[name].kill_and_restart(down_for=rng.uniform(0, 2))
                    else:
                        await services[name].crash_at(crash, arrivals, load)

            await asyncio.gather(sender(), crasher())
            lead_ids = set(accepted.values())
            assert len(lead_ids) == len(accepted) >= LEADS, context

            async def delivered_everywhere():
                if len(receiver.ids_per_lead) < len(lead_ids):
                    return None
                state = await end_state(settings)
                return state if settled(state, lead_ids) else None

            try:
                await eventually(delivered_everywhere, timeout=300 + LEADS * 0.2, interval=1)
            except AssertionError:
                pass  # the count below says what is missing or doubled
            await asyncio.sleep(3)  # room for a wrong second delivery or clock to show up
            state = await end_state(settings)
            try:
                assert_each_lead_exactly_once(state, receiver, lead_ids)
            except AssertionError as exc:
                raise AssertionError(f"{exc} ({context})") from exc
        crashed = {name: proc.crashes for name, proc in services.items()}
        assert all(crashed.values()), crashed  # each of the six went down at least once
        assert any("outbox.published" in c for c in crashed.values()), crashed
        assert any("consumer.db_committed" in c for c in crashed.values()), crashed
    finally:
        stop_services(services)
