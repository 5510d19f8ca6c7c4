"""Webhook targets cannot be turned against the network Leadflow runs in: a target is checked when
it is registered and again whenever a delivery connects, on the very address the connection goes
to (its name may resolve elsewhere by then, or between two lookups), and redirects are never
followed. (The address classes refused and the guarded connection itself are in
tests/unit/test_webhooks.py; the 422 at registration in tests/integration/test_http_contracts.py.)"""

import asyncio
import socket

import pytest
import sqlalchemy as sa
from leadflow.contracts.events import TOPIC_SCORING
from leadflow.db import Database
from leadflow_tools.devstack import free_port
from leadflow_tools.receiver import WebhookReceiver
from support.harness import ADMIN, eventually, publish_events, routing_and_notify, sample_mql

FAST = (0, 0.2, 0.2)


async def deliveries(settings) -> list:
    db = Database(settings.database_url)
    try:
        async with db.unit_of_work() as session:
            return (
                await session.execute(
                    sa.text(
                        "SELECT state, attempts, last_status, last_error FROM notify.deliveries"
                    )
                )
            ).all()
    finally:
        await db.dispose()


async def register(notify, url: str) -> None:
    rep = await notify.routing.post("/v1/reps", json={"name": "A"}, headers=ADMIN)
    assert rep.status_code == 201
    endpoint = await notify.post("/v1/webhook-endpoints", json={"url": url}, headers=ADMIN)
    assert endpoint.status_code == 201, endpoint.text


async def test_a_target_that_became_private_is_refused_at_delivery(stack, monkeypatch):
    settings = await stack.isolated_settings(webhook_retry_schedule=FAST)
    async with WebhookReceiver() as receiver, routing_and_notify(settings) as notify:
        await register(notify, receiver.url)  # accepted while private targets were allowed
        monkeypatch.setattr(notify.app.state.runtime.settings, "webhook_allow_private", False)
        await publish_events(settings, TOPIC_SCORING, [sample_mql(1)])

        async def dead():
            rows = await deliveries(settings)
            return rows if rows and rows[0].state == "dead" else None

        # Final: every try had ended (and reached whatever it reached) before it was recorded.
        (row,) = await eventually(dead, timeout=60)
    assert receiver.received == []  # not one request reached the private address
    assert row.attempts == len(FAST) and row.last_status is None
    assert "non-public address 127.0.0.1" in row.last_error


class RebindingDns:
    """A DNS rebinding attacker's name server, with a zero TTL: the answers for `name` alternate
    between a public address and `private`, one per lookup. It replaces `socket.getaddrinfo`, the
    lowest level of name resolution (the event loop's getaddrinfo runs it in a worker thread), in
    this process, where the notify service runs; other names resolve as usual.

    The public answer is a multicast address: public by the guard's classification, yet no TCP
    connection to it can be opened (the kernel refuses it at once, no packet leaves), so a
    connection that goes to the checked public address fails without touching the internet."""

    PUBLIC = "224.0.0.251"

    def __init__(self, monkeypatch, name: str, private: str) -> None:
        self.name, self.private, self.lookups = name, private, 0
        real = socket.getaddrinfo

        def getaddrinfo(host, port, *args, **kwargs):
            if (host.decode() if isinstance(host, bytes) else host) != self.name:
                return real(host, port, *args, **kwargs)
            self.lookups += 1
            address = self.PUBLIC if self.lookups % 2 else self.private
            return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port))]

        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


async def test_a_name_rebinding_between_lookups_never_reaches_a_private_receiver(
    stack, monkeypatch
):
    """Registration sees the public answer; every later lookup may give either. Checking a name and
    then connecting to it (two lookups) lets one attempt through to the private receiver; the guard
    checks the address it connects to, so no attempt gets there and the delivery is dead-lettered
    with the private address named."""
    settings = await stack.isolated_settings(webhook_retry_schedule=FAST)
    settings = settings.model_copy(update={"webhook_allow_private": False})
    async with WebhookReceiver() as receiver:
        dns = RebindingDns(monkeypatch, "hooks.rebind.test", "127.0.0.1")
        url = receiver.url.replace("127.0.0.1", dns.name)
        async with routing_and_notify(settings) as notify:
            await register(notify, url)  # the first lookup: public, so the target is accepted
            await publish_events(settings, TOPIC_SCORING, [sample_mql(1)])

            async def finished():
                rows = await deliveries(settings)
                return rows if rows and rows[0].state != "pending" else None

            # Final: every try had ended (redirect and all) before it was recorded.
            (row,) = await eventually(finished, timeout=60)
    assert receiver.received == []  # not one request reached the private address
    assert (row.state, row.attempts, row.last_status) == ("dead", len(FAST), None)
    assert row.last_error == "url: hooks.rebind.test resolves to non-public address 127.0.0.1"
    assert dns.lookups == 1 + len(FAST)  # the registration, then one per delivery attempt


async def redirecting_receiver(
    status: int, location: str, hits: list
) -> tuple[asyncio.Server, str]:
    """A receiver answering every request with a redirect to `location`."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            (int(line.split(b":")[1]) for line in head.split(b"\r\n")
             if line.lower().startswith(b"content-length:")),
            0,
        )  # fmt: skip
        await reader.readexactly(length)
        hits.append(head)
        writer.write(
            f"HTTP/1.1 {status} Moved\r\nLocation: {location}\r\nContent-Length: 0\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        await writer.drain()
        writer.close()

    port = free_port()
    server = await asyncio.start_server(serve, "127.0.0.1", port)
    return server, f"http://127.0.0.1:{port}/hooks"


@pytest.mark.parametrize("status", [301, 302, 307, 308])
async def test_a_redirect_is_not_followed(stack, status):
    settings = await stack.isolated_settings(webhook_retry_schedule=(0,))
    hits: list = []
    async with (
        WebhookReceiver() as inside,  # stands for an internal service or a metadata endpoint
        routing_and_notify(settings) as notify,
    ):
        server, url = await redirecting_receiver(status, inside.url, hits)
        try:
            await register(notify, url)
            await publish_events(settings, TOPIC_SCORING, [sample_mql(1)])

            async def finished():
                rows = await deliveries(settings)
                return rows if rows and rows[0].state != "pending" else None

            # Final: every try had ended (redirect and all) before it was recorded.
            (row,) = await eventually(finished, timeout=60)
        finally:
            server.close()
    assert len(hits) == 1
    assert inside.received == []  # the redirect target never saw the delivery
    assert (row.state, row.last_status) == ("dead", status)
