"""A consumer stalls past its session timeout (SIGSTOP, as a long GC pause or a frozen VM would),
its partitions move to the other instance, then it wakes up and finishes the batch it held:
no lead is routed, delivered or clocked twice, and none is lost."""

import asyncio
import signal

import httpx
import pytest
from pipeline import (
    CountingReceiver,
    FaultyService,
    assert_each_lead_exactly_once,
    configure_routing,
    end_state,
    make_services,
    send_leads,
    settled,
    start_services,
    stop_services,
)
from support.harness import eventually

PAUSE_PAST_SESSION = 8.0  # seconds the stalled consumer stays away after its session expired


@pytest.mark.e2e
@pytest.mark.timeout(600)
@pytest.mark.parametrize("stalled", ["routing", "sla-timer"])
async def test_a_consumer_paused_past_its_session_timeout_doubles_nothing(
    stalled, settings, tmp_path
):
    services = make_services(settings, tmp_path)
    services[f"{stalled}-2"] = FaultyService(stalled, settings, tmp_path / f"{stalled}-2.log")
    accepted: dict[int, str] = {}
    try:
        await start_services(services)
        async with CountingReceiver() as receiver, httpx.AsyncClient(timeout=15) as http:
            await configure_routing(http, services, receiver.url)
            ingest = services["ingest"].url
            await send_leads(http, ingest, range(0, 20), accepted)
            victim = services[stalled].proc
            victim.send_signal(signal.SIGSTOP)
            try:
                sending = asyncio.create_task(send_leads(http, ingest, range(20, 60), accepted, 1))
                await asyncio.sleep(
                    settings.consumer_session_timeout_ms / 1000 + PAUSE_PAST_SESSION
                )
            finally:
                victim.send_signal(signal.SIGCONT)
            await sending
            await send_leads(http, ingest, range(60, 80), accepted)
            lead_ids = set(accepted.values())

            async def drained():
                if len(receiver.ids_per_lead) < len(lead_ids):
                    return None
                state = await end_state(settings)
                return state if settled(state, lead_ids) else None

            await eventually(drained, timeout=180, interval=1)
            await asyncio.sleep(3)
            assert_each_lead_exactly_once(await end_state(settings), receiver, lead_ids)
            assert victim.poll() is None  # the stalled instance survived and kept its place
    finally:
        stop_services(services)
