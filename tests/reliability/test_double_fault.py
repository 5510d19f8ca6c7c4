"""Faults that overlap: a second failure while the pipeline is still recovering from the first.

1. The broker goes away; while it is down, routing is killed (SIGKILL) and started again, so it
   has to come up against a missing broker; then the broker returns (empty: the embedded broker
   keeps topics in memory, so what it held is settled before it stops).
2. The sales tool's receiver answers 503 to every delivery while ingest is killed mid-stream and
   restarted; once the receiver recovers every delivery completes, once per lead.
3. PostgreSQL stops, then the broker stops too; they come back in the opposite order (broker
   first, database last).

Each ends with the full count of tests/reliability/pipeline.py: every accepted lead routed
exactly once, one delivery per endpoint delivered under one webhook-id, one clock per SLA.
LEADFLOW_DOUBLE_FAULT_LEADS sets the number of leads (default 60),
LEADFLOW_DOUBLE_FAULT_OUTAGE_SECONDS how long the broker (and database) stay away (default 25)."""

import asyncio
import json
import os
import shutil
import tempfile
from collections import Counter
from pathlib import Path

import httpx
import pytest
from leadflow.kafka import ensure_topics
from leadflow.settings import Settings
from leadflow_tools.cli import migrate_all
from leadflow_tools.devstack import EmbeddedBroker, EmbeddedPostgres, ensure_database, free_port
from pipeline import (
    CountingReceiver,
    FaultyService,
    assert_each_lead_exactly_once,
    configure_routing,
    make_services,
    send_leads,
    settle_and_count,
    settled_now,
    start_services,
    stop_services,
)
from support.harness import SOURCE, TEST_KEYS, eventually, sample_lead

LEADS = int(os.environ.get("LEADFLOW_DOUBLE_FAULT_LEADS", "60"))
# How long the broker stays away: longer than a consumer's session (10 s), as in
# test_broker_outage.py, and short enough that routing, started again in the middle of it, is
# still waiting for the broker (it waits about 30 s while it starts) when the broker returns.
OUTAGE = float(os.environ.get("LEADFLOW_DOUBLE_FAULT_OUTAGE_SECONDS", "25"))
# Tries close together, for several minutes: the receiver's outage ends well within them.
RETRY_SCHEDULE = [0, 1, 2] + [3] * 100
DRAIN = 300 + LEADS


def thirds(n: int) -> tuple[range, range, range]:
    a, b = n // 3, 2 * n // 3
    return range(0, a), range(a, b), range(b, n)


async def until_accepted(accepted: dict, count: int) -> None:
    await eventually(lambda: len(accepted) >= count, timeout=300, interval=0.1)


async def kill_and_relaunch(service: FaultyService) -> None:
    """kill -9, then start the process again without waiting for it to become ready."""
    await asyncio.to_thread(service.kill)
    service.crashes.append("kill -9")
    service.fault = None
    service.launch()


@pytest.mark.e2e
@pytest.mark.timeout(900 + LEADS)
async def test_routing_killed_and_restarted_during_a_broker_outage(stack, tmp_path):
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
    routing = services["routing"]
    accepted: dict[int, str] = {}
    before, during, after = thirds(LEADS)
    try:
        await start_services(services)
        async with CountingReceiver() as receiver, httpx.AsyncClient(timeout=15) as http:
            await configure_routing(http, services, receiver.url)
            ingest = services["ingest"].url
            await send_leads(http, ingest, before, accepted)
            # The broker that comes back is empty: what it holds now must be through first.
            await eventually(
                lambda: settled_now(settings, receiver, set(accepted.values())),
                timeout=DRAIN,
                interval=1,
            )

            await asyncio.to_thread(broker.stop)
            outage = asyncio.create_task(asyncio.sleep(OUTAGE))
            sending = asyncio.create_task(send_leads(http, ingest, during, accepted, 1))
            await until_accepted(accepted, before.stop + len(during) // 2)
            await kill_and_relaunch(routing)  # mid-stream, broker still down
            await sending
            assert set(during).issubset(accepted)  # ingest took every lead without the broker
            await outage
            assert routing.proc.poll() is None, (
                "routing, started while the broker was down, gave up:\n" + routing.log_tail()
            )

            await asyncio.to_thread(broker.start)
            await asyncio.to_thread(routing.wait_ready, 180)
            await send_leads(http, ingest, after, accepted)

            lead_ids = set(accepted.values())
            assert len(lead_ids) == len(accepted) == LEADS
            state = await settle_and_count(settings, receiver, lead_ids, DRAIN)
            try:
                assert_each_lead_exactly_once(state, receiver, lead_ids)
            except AssertionError as exc:
                raise AssertionError(
                    f"routing killed during a broker outage: {exc} (logs {tmp_path})"
                ) from exc
        assert routing.crashes == ["kill -9"]
    finally:
        stop_services(services)
        await asyncio.to_thread(broker.stop)


class FlakyReceiver(CountingReceiver):
    """Answers `status` to every delivery (set it to 503 to refuse them all) and keeps how often
    each webhook-id was answered with a success."""

    def __init__(self) -> None:
        super().__init__()
        self.refused = 0
        self.succeeded: Counter[str] = Counter()

    def record(self, headers: dict[str, str], body: bytes) -> None:
        super().record(headers, body)
        if 200 <= self.status < 300:
            self.succeeded[headers["webhook-id"]] += 1
        else:
            self.refused += 1


@pytest.mark.e2e
@pytest.mark.timeout(900 + LEADS)
async def test_receiver_failing_while_ingest_is_killed_mid_stream(stack, tmp_path, monkeypatch):
    # The services are processes: they read the schedule from the environment they inherit.
    monkeypatch.setenv("LEADFLOW_WEBHOOK_RETRY_SCHEDULE", json.dumps(RETRY_SCHEDULE))
    settings = await stack.isolated_settings()
    services = make_services(settings, tmp_path)
    accepted: dict[int, str] = {}
    healthy, refused, _ = thirds(LEADS)
    try:
        await start_services(services)
        async with FlakyReceiver() as receiver, httpx.AsyncClient(timeout=15) as http:
            await configure_routing(http, services, receiver.url)
            ingest = services["ingest"].url
            await send_leads(http, ingest, healthy, accepted)

            receiver.status = 503
            sending = asyncio.create_task(
                send_leads(http, ingest, range(refused.start, LEADS), accepted)
            )
            await until_accepted(accepted, len(healthy) + len(refused))
            await services["ingest"].kill_and_restart(down_for=1)  # leads still coming
            await sending
            lead_ids = set(accepted.values())
            assert len(lead_ids) == len(accepted) == LEADS

            # Every lead has met the failing receiver at least once (all of those sent after it
            # broke), and some were tried again, before it recovers.
            def all_tried() -> bool:
                return set(receiver.ids_per_lead) >= lead_ids and receiver.refused > LEADS - len(
                    healthy
                )

            await eventually(all_tried, timeout=DRAIN, interval=0.5)
            receiver.status = 204

            state = await settle_and_count(settings, receiver, lead_ids, DRAIN)
            try:
                assert_each_lead_exactly_once(state, receiver, lead_ids)
            except AssertionError as exc:
                raise AssertionError(
                    f"receiver failing while ingest was killed: {exc} (logs {tmp_path})"
                ) from exc
            ids = {next(iter(ids)) for ids in receiver.ids_per_lead.values()}
            repeated = {i: n for i, n in receiver.succeeded.items() if n != 1}
            assert not repeated, (
                f"webhooks sent again after a success: {list(repeated.items())[:5]}"
            )
            assert set(receiver.succeeded) == ids, (
                f"{len(ids - set(receiver.succeeded))} webhook-ids never answered with a success"
            )
        assert services["ingest"].crashes == ["kill -9"]
    finally:
        stop_services(services)


@pytest.mark.e2e
@pytest.mark.timeout(900 + LEADS)
async def test_database_and_broker_down_together_return_in_the_opposite_order(stack, tmp_path):
    # Not under tmp_path: another pytest session starting meanwhile makes pytest's own temporary
    # root private again, and the server (run as its own user when tests run as root) would lose
    # its way to the data directory.
    pgdir = Path(tempfile.mkdtemp(prefix="leadflow-double-fault-"))
    pg = EmbeddedPostgres(pgdir / "pgdata", port=free_port(), log_file=tmp_path / "pg.log")
    broker = EmbeddedBroker(free_port(), tmp_path / "broker.log")
    await asyncio.to_thread(pg.start)
    broker.start()
    services: dict[str, FaultyService] = {}
    accepted: dict[int, str] = {}
    before, during, after = thirds(LEADS)
    try:
        url = await ensure_database(pg.url, "double_fault")
        await asyncio.to_thread(migrate_all, url)
        settings = Settings(
            env="test",
            database_url=url,
            kafka_bootstrap=broker.bootstrap,
            topic_partitions=EmbeddedBroker.AUTO_CREATED_PARTITIONS,
            topic_prefix="double.",
            api_keys=TEST_KEYS,
            webhook_allow_private=True,
        )
        await ensure_topics(settings)
        services = make_services(settings, tmp_path)
        await start_services(services)
        async with CountingReceiver() as receiver, httpx.AsyncClient(timeout=15) as http:
            await configure_routing(http, services, receiver.url)
            ingest = services["ingest"].url
            await send_leads(http, ingest, before, accepted)
            await eventually(
                lambda: settled_now(settings, receiver, set(accepted.values())),
                timeout=DRAIN,
                interval=1,
            )

            await asyncio.to_thread(pg.stop)
            await asyncio.to_thread(broker.stop)
            # Without its database ingest refuses leads with a 503 problem naming the cause,
            # and writes none of them.
            refusal = await http.post(
                f"{ingest}/v1/leads", headers=SOURCE, json=sample_lead(during.start)
            )
            assert refusal.status_code == 503, refusal.text
            assert refusal.headers["content-type"] == "application/problem+json"
            assert "Retry-After" in refusal.headers
            sending = asyncio.create_task(send_leads(http, ingest, during, accepted, 2))
            await asyncio.sleep(OUTAGE)  # leads keep knocking while both are away
            assert not set(during) & set(accepted), "a lead was accepted without a database"

            await asyncio.to_thread(broker.start)
            await asyncio.sleep(OUTAGE / 2)
            await asyncio.to_thread(pg.start)
            await asyncio.wait_for(sending, timeout=DRAIN)
            await send_leads(http, ingest, after, accepted)
            for service in services.values():
                assert service.proc.poll() is None, f"{service.name} died:\n{service.log_tail()}"

            lead_ids = set(accepted.values())
            assert len(lead_ids) == len(accepted) == LEADS
            state = await settle_and_count(settings, receiver, lead_ids, DRAIN)
            try:
                assert_each_lead_exactly_once(state, receiver, lead_ids)
            except AssertionError as exc:
                raise AssertionError(
                    f"database and broker down together: {exc} (logs {tmp_path})"
                ) from exc
    finally:
        stop_services(services)
        await asyncio.to_thread(broker.stop)
        await asyncio.to_thread(pg.stop)
        shutil.rmtree(pgdir, ignore_errors=True)
