"""The broker goes away for 30 s (LEADFLOW_BROKER_OUTAGE_SECONDS) while leads arrive: ingest keeps
answering 202 (the leads wait in its outbox), and once the broker is back everything drains and
every lead is routed, delivered and clocked exactly once.

The embedded broker keeps topics in memory, so the broker that comes back is empty: the services
must re-create what they publish to and re-join their consumer groups on their own."""

import asyncio
import os
import time

import httpx
import pytest
from leadflow.kafka import ensure_topics
from leadflow_tools.devstack import EmbeddedBroker, free_port
from pipeline import (
    CountingReceiver,
    assert_each_lead_exactly_once,
    configure_routing,
    end_state,
    make_services,
    send_leads,
    settled,
    start_services,
    stop_services,
)
from support.harness import SOURCE, eventually, sample_lead

OUTAGE = float(os.environ.get("LEADFLOW_BROKER_OUTAGE_SECONDS", "30"))


@pytest.mark.e2e
@pytest.mark.timeout(600 + int(OUTAGE))
async def test_ingest_answers_202_during_a_broker_outage_and_everything_drains_after(
    stack, tmp_path
):
    broker = EmbeddedBroker(free_port(), tmp_path / "broker.log")
    broker.start()
    settings = (await stack.isolated_settings()).model_copy(
        update={
            "kafka_bootstrap": broker.bootstrap,
            # as `leadflow run` makes them: a topic the broker re-creates comes back the same
            "topic_partitions": EmbeddedBroker.AUTO_CREATED_PARTITIONS,
        }
    )
    await ensure_topics(settings)
    services = make_services(settings, tmp_path)
    accepted: dict[int, str] = {}
    try:
        await start_services(services)
        async with CountingReceiver() as receiver, httpx.AsyncClient(timeout=15) as http:
            await configure_routing(http, services, receiver.url)
            ingest = services["ingest"].url
            await send_leads(http, ingest, range(0, 10), accepted)
            await eventually(lambda: len(receiver.ids_per_lead) == 10 or None, timeout=120)

            await asyncio.to_thread(broker.stop)
            during = []
            n = 10
            ends = time.monotonic() + OUTAGE
            while time.monotonic() < ends:  # no retry: each answer during the outage counts
                response = await http.post(
                    f"{ingest}/v1/leads", headers=SOURCE, json=sample_lead(n)
                )
                during.append(response.status_code)
                if response.status_code == 202:
                    accepted[n] = response.json()["lead_id"]
                n += 1
                await asyncio.sleep(0.5)
            assert during and set(during) == {202}, during
            await asyncio.to_thread(broker.start)
            await send_leads(http, ingest, range(n, n + 10), accepted)  # and after it

            lead_ids = set(accepted.values())

            async def drained():
                if len(receiver.ids_per_lead) < len(lead_ids):
                    return None
                state = await end_state(settings)
                return state if settled(state, lead_ids) else None

            try:
                await eventually(drained, timeout=240, interval=1)
            except AssertionError:
                pass  # the count below says what did not drain
            await asyncio.sleep(3)
            try:
                assert_each_lead_exactly_once(await end_state(settings), receiver, lead_ids)
            except AssertionError as exc:
                raise AssertionError(
                    f"after the broker came back (empty): {exc} (logs {tmp_path})"
                ) from exc
    finally:
        stop_services(services)
        await asyncio.to_thread(broker.stop)
