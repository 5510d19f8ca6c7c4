"""A sales tool's receiver misbehaving in the ways real ones do: answering too slowly, resetting the
connection, throttling with 429 + Retry-After, failing in bursts of 5xx. Every delivery either
completes (same webhook-id on every try, so the receiver can drop repeats) or is dead-lettered,
and a replay after the receiver is fixed delivers it.

(500 then 200, a receiver down for every try plus replay, and a retry surviving a restart are in
tests/integration/test_webhook_delivery.py.)"""

import asyncio
import json
import socket
import struct
import time

import pytest
import sqlalchemy as sa
from leadflow.contracts.events import TOPIC_SCORING
from leadflow.db import Database
from leadflow_tools.devstack import free_port
from support.harness import ADMIN, eventually, publish_events, routing_and_notify, sample_mql

FAST = (0, 0.3, 0.3, 0.3, 0.3)  # five tries, a third of a second apart
READ_TIMEOUT = 2.0  # LEADFLOW_WEBHOOK_READ_TIMEOUT here: a receiver has two seconds to answer
SLOW = READ_TIMEOUT + 2  # a slow receiver's answer comes after the delivery gave up on it


class ScriptedReceiver:
    """A bare HTTP/1.1 server whose n-th request gets the n-th scripted behaviour (the last one
    repeats): an int status, ("429", seconds), "slow" or "reset"."""

    def __init__(self, script: list) -> None:
        self.script = script
        self.port = free_port()
        self.requests: list[tuple[float, dict[str, str], bytes]] = []
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/leads"

    async def __aenter__(self):
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc) -> None:
        self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")[1:]
                headers = {
                    k.strip().lower(): v.strip()
                    for k, _, v in (ln.partition(":") for ln in lines if ln)
                }
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                n = len(self.requests)
                self.requests.append((time.monotonic(), headers, body))
                action = self.script[min(n, len(self.script) - 1)]
                if action == "reset":
                    sock = writer.get_extra_info("socket")
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    writer.transport.abort()
                    return
                if action == "slow":
                    await asyncio.sleep(SLOW)
                    action = 204
                extra = ""
                if isinstance(action, tuple):
                    action, retry_after = action
                    extra = f"Retry-After: {retry_after}\r\n"
                writer.write(
                    f"HTTP/1.1 {action} X\r\n{extra}Content-Length: 0\r\n\r\n".encode("latin-1")
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()


async def deliveries(settings) -> list:
    db = Database(settings.database_url)
    try:
        async with db.unit_of_work() as session:
            return (
                await session.execute(
                    sa.text(
                        "SELECT id, state, attempts, last_status, last_error FROM notify.deliveries"
                    )
                )
            ).all()
    finally:
        await db.dispose()


async def setup(client, url: str) -> None:
    rep = await client.routing.post("/v1/reps", json={"name": "Ada"}, headers=ADMIN)
    assert rep.status_code == 201
    endpoint = await client.post("/v1/webhook-endpoints", json={"url": url}, headers=ADMIN)
    assert endpoint.status_code == 201, endpoint.text


@pytest.mark.parametrize(
    ("script", "tries"),
    [
        (["slow", 204], 2),
        (["reset", "reset", 204], 3),
        ([503, 502, 500, 503, 204], 5),
        ([("429", 2), 204], 2),
    ],
    ids=["slow-receiver-times-out", "connection-resets", "5xx-burst", "429-retry-after"],
)
async def test_a_misbehaving_receiver_gets_the_delivery_once_it_answers(stack, script, tries):
    settings = await stack.isolated_settings(
        webhook_retry_schedule=FAST, webhook_read_timeout=READ_TIMEOUT
    )
    async with ScriptedReceiver(script) as receiver, routing_and_notify(settings) as rt:
        await setup(rt, receiver.url)
        mql = sample_mql(1)
        await publish_events(settings, TOPIC_SCORING, [mql])

        async def delivered():
            rows = await deliveries(settings)
            return rows if rows and rows[0].state == "delivered" else None

        # Final: no try is due any more, and every try had ended before the row said so.
        rows = await eventually(delivered, timeout=60)
        assert len(receiver.requests) == tries
    (row,) = rows
    assert (row.state, row.attempts, row.last_error) == ("delivered", tries, None)
    ids = {headers["webhook-id"] for _, headers, _ in receiver.requests}
    assert ids == {str(row.id)}  # one idempotency key for every try
    bodies = {body for _, _, body in receiver.requests}
    assert len(bodies) == 1 and json.loads(bodies.pop())["data"]["lead"]["lead_id"] == str(
        mql.lead_id
    )
    if isinstance(script[0], tuple):  # the receiver asked for 2 s; the schedule said 0.3 s
        gap = receiver.requests[1][0] - receiver.requests[0][0]
        assert gap >= 2 * 0.95, gap


async def test_a_receiver_that_always_resets_dead_letters_and_replay_delivers(stack):
    settings = await stack.isolated_settings(webhook_retry_schedule=FAST)
    async with ScriptedReceiver(["reset"]) as receiver, routing_and_notify(settings) as rt:
        await setup(rt, receiver.url)
        await publish_events(settings, TOPIC_SCORING, [sample_mql(1)])

        async def dead():
            rows = await deliveries(settings)
            return rows if rows and rows[0].state == "dead" else None

        (row,) = await eventually(dead, timeout=60)
        assert row.attempts == len(FAST) == len(receiver.requests)
        assert row.last_status is None
        assert "ReadError" in row.last_error or "RemoteProtocolError" in row.last_error, row
        receiver.script = [204]
        replay = await rt.post(f"/v1/deliveries/{row.id}/replay", headers=ADMIN)
        assert replay.status_code in (200, 202), replay.text

        async def delivered():
            rows = await deliveries(settings)
            return rows if rows[0].state == "delivered" else None

        (row,) = await eventually(delivered, timeout=30)
    assert len(receiver.requests) == len(FAST) + 1
    assert {h["webhook-id"] for _, h, _ in receiver.requests} == {str(row.id)}
