"""The embedded broker is killed (SIGKILL) and started again, its memory gone, at random moments
while leads flow, without waiting for the pipeline to drain first: whatever it held, published
and not yet consumed, is lost with it. Relays publish their replay window again, consumers read
the new log from its start where it is not the log they read, and every lead is counted exactly
once in every service and at the webhook receiver.

LEADFLOW_BROKER_RESETS lists the outages in seconds (default "3,10,60": shorter and longer than
a consumer's session timeout), LEADFLOW_BROKER_RESET_LEADS the number of leads (default 150),
LEADFLOW_BROKER_RESET_SEED the random moments (printed when not given). `make soak` runs 10,000
leads with five resets."""

import asyncio
import os
import random

import httpx
import pytest
import sqlalchemy as sa
from leadflow.db import Database
from leadflow.kafka import ensure_topics
from leadflow_tools.devstack import EmbeddedBroker, free_port
from pipeline import (
    CountingReceiver,
    assert_each_lead_exactly_once,
    configure_routing,
    log_task_stacks,
    make_services,
    send_lead,
    settle_and_count,
    start_services,
    stop_services,
)

OUTAGES = [float(s) for s in os.environ.get("LEADFLOW_BROKER_RESETS", "3,10,60").split(",")]
LEADS = int(os.environ.get("LEADFLOW_BROKER_RESET_LEADS", "150"))
SEED = int(os.environ.get("LEADFLOW_BROKER_RESET_SEED", str(random.randrange(1 << 30))))
GAP = (2.0, 8.0)  # seconds of flow between one reset's end and the next kill
DRAIN = 300 + LEADS / 20


@pytest.mark.e2e
@pytest.mark.timeout(int(600 + sum(OUTAGES) + len(OUTAGES) * GAP[1] + DRAIN + LEADS / 10))
async def test_broker_killed_and_restarted_empty_while_leads_flow_loses_nothing(stack, tmp_path):
    print(f"LEADFLOW_BROKER_RESET_SEED={SEED} outages={OUTAGES} leads={LEADS}")
    rng = random.Random(SEED)
    broker = EmbeddedBroker(free_port(), tmp_path / "broker.log")
    await asyncio.to_thread(broker.start)
    settings = (await stack.isolated_settings()).model_copy(
        update={
            "kafka_bootstrap": broker.bootstrap,
            "broker_reset_recovery": True,
            # as `leadflow run` makes them: a topic the broker re-creates comes back the same
            "topic_partitions": EmbeddedBroker.AUTO_CREATED_PARTITIONS,
        }
    )
    await ensure_topics(settings)
    services = make_services(settings, tmp_path)
    accepted: dict[int, str] = {}
    resets: list[str] = []
    try:
        await start_services(services)
        async with CountingReceiver() as receiver, httpx.AsyncClient(timeout=15) as http:
            await configure_routing(http, services, receiver.url)
            ingest = services["ingest"].url
            # Leads flow for as long as the resets take, then the rest of them at once.
            planned = sum(OUTAGES) + len(OUTAGES) * sum(GAP) / 2
            pace = planned / LEADS
            resetting = True

            async def sender() -> None:
                for n in range(LEADS):
                    await send_lead(http, ingest, n, accepted)
                    if resetting:
                        await asyncio.sleep(pace)

            async def reset_at_random_moments() -> None:
                for outage in OUTAGES:
                    await asyncio.sleep(rng.uniform(*GAP))
                    at = len(accepted)
                    broker.proc.kill()  # SIGKILL: nothing drains, its memory is gone
                    await asyncio.to_thread(broker.proc.wait)
                    await asyncio.sleep(outage)
                    await asyncio.to_thread(broker.start)
                    resets.append(f"{outage:g} s after lead {at}")

            sending = asyncio.create_task(sender())
            await reset_at_random_moments()
            resetting = False
            await sending
            lead_ids = set(accepted.values())
            assert len(lead_ids) == LEADS
            state = await settle_and_count(settings, receiver, lead_ids, timeout=DRAIN)
            try:
                assert_each_lead_exactly_once(state, receiver, lead_ids)
            except AssertionError as exc:
                await log_task_stacks(services)
                undelivered = sorted(lead_ids - set(state.deliveries))
                unclocked = sorted(lead_ids - set(state.timers))
                raise AssertionError(
                    f"after resets {resets} (seed {SEED}): {exc}; no delivery: "
                    f"{len(undelivered)} {undelivered[:5]}, no clock: {len(unclocked)} "
                    f"{unclocked[:5]}; {await where_they_stopped(settings, lead_ids, state)} "
                    f"(logs {tmp_path})"
                ) from exc
            print(f"resets: {resets}; {len(lead_ids)} leads each counted once")
    finally:
        stop_services(services)
        await asyncio.to_thread(broker.stop)


async def where_they_stopped(settings, lead_ids: set[str], state) -> str:
    """For leads that are not MQLs: their ingest events (published?) and whether scoring's
    inbox holds them; and every consumer position scoring keeps."""
    missing = sorted(lead_ids - state.mql_leads)
    if not missing:
        return ""
    db = Database(settings.database_url)
    try:
        async with db.unit_of_work() as s:
            events = (
                await s.execute(
                    sa.text(
                        "SELECT o.key, o.topic, o.published_at IS NOT NULL AS published, "
                        "EXISTS (SELECT 1 FROM scoring.inbox i WHERE i.event_id = o.event_id) "
                        "AS in_scoring FROM ingest.outbox o WHERE o.key = ANY(:keys) ORDER BY o.id"
                    ),
                    {"keys": missing},
                )
            ).all()
            positions = (await s.execute(sa.text("SELECT * FROM scoring.consumer_positions"))).all()
    finally:
        await db.dispose()
    return f"events of leads not MQL: {[tuple(e) for e in events][:12]}; scoring positions: " + str(
        [tuple(p) for p in positions]
    )
