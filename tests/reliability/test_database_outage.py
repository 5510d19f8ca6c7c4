"""PostgreSQL goes away under a running service: requests fail fast with a 503 problem, readiness
says so, nothing is half-written, and the service recovers by itself when the database is back."""

import asyncio
import time

import sqlalchemy as sa
from leadflow.db import Database
from leadflow.kafka import ensure_topics
from leadflow.settings import Settings
from leadflow_tools.cli import migrate_all
from leadflow_tools.devstack import EmbeddedPostgres, ensure_database, free_port
from support.harness import ADMIN, TEST_KEYS, eventually, sample_lead, service_client


async def test_ingest_fails_fast_during_a_database_outage_and_recovers_without_restart(
    stack, tmp_path
):
    pg = EmbeddedPostgres(tmp_path / "pgdata", port=free_port())
    pg.start()
    try:
        url = await ensure_database(pg.url, "outage")
        await asyncio.to_thread(migrate_all, url)
        settings = Settings(
            env="test",
            database_url=url,
            kafka_bootstrap=stack.bootstrap,
            topic_prefix="outage.",
            topic_partitions=1,
            api_keys=TEST_KEYS,
        )
        await ensure_topics(settings)
        async with service_client("ingest", settings) as ingest:
            before = await ingest.post("/v1/leads", json=sample_lead(1), headers=ADMIN)
            assert before.status_code == 202

            await asyncio.to_thread(pg.stop)
            started = time.monotonic()
            during = await ingest.post("/v1/leads", json=sample_lead(2), headers=ADMIN)
            took = time.monotonic() - started
            assert during.status_code == 503, during.text
            assert during.headers["content-type"] == "application/problem+json"
            assert "Retry-After" in during.headers
            assert took < 15  # bounded by the connect timeout, not hanging
            ready = await ingest.get("/readyz")
            assert ready.status_code == 503
            assert (await ingest.get("/healthz")).status_code == 200  # alive, just not ready

            await asyncio.to_thread(pg.start)

            async def accepted():
                response = await ingest.post("/v1/leads", json=sample_lead(3), headers=ADMIN)
                return response if response.status_code == 202 else None

            after = await eventually(accepted, timeout=60, interval=0.5)
            assert after.json()["duplicate"] is False
            await eventually(lambda: _ready(ingest), timeout=30, interval=0.5)
            db = Database(url)
            try:

                async def relayed():
                    async with db.unit_of_work() as session:
                        rows = (
                            await session.execute(
                                sa.text(
                                    "SELECT email, (SELECT count(*) FROM ingest.outbox o "
                                    "WHERE o.published_at IS NULL) AS waiting FROM ingest.leads "
                                    "ORDER BY created_at"
                                )
                            )
                        ).all()
                    return rows if rows and rows[0].waiting == 0 else None

                rows = await eventually(relayed, timeout=60, interval=0.5)
            finally:
                await db.dispose()
            # the lead refused during the outage was not half-written
            assert [r.email for r in rows] == [sample_lead(1)["email"], sample_lead(3)["email"]]
    finally:
        await asyncio.to_thread(pg.stop)


async def _ready(client) -> bool:
    return (await client.get("/readyz")).status_code == 200
