"""A local HTTP receiver of webhook deliveries, as a sales tool would run one, and the local
server it is built on."""

from __future__ import annotations

import asyncio

from leadflow_tools.devstack import free_port


async def read_body(receive) -> bytes:
    """The whole body of an ASGI HTTP request."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


class LocalServer:
    """An ASGI app of its own (`app`) served by uvicorn on a free local port while the `async
    with` block lasts; `stopping()` runs first on the way out (to release held requests)."""

    def __init__(self) -> None:
        self.port = free_port()
        self._server = None
        self._task: asyncio.Task | None = None

    async def app(self, scope, receive, send) -> None:
        raise NotImplementedError

    def stopping(self) -> None:
        """Called before the server stops."""

    async def __aenter__(self):
        import uvicorn

        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=self.port,
            log_config=None,
            access_log=False,
            lifespan="off",
            interface="asgi3",  # a bound method: uvicorn would guess ASGI 2 from its signature
            backlog=4096,
        )
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._task.done():
                await self._task  # raises what stopped it
            await asyncio.sleep(0.02)
        return self

    async def __aexit__(self, *exc) -> None:
        self.stopping()
        self._server.should_exit = True
        await self._task


class WebhookReceiver(LocalServer):
    """A local HTTP receiver for webhook deliveries, as a sales tool would run one."""

    def __init__(self, status: int = 204) -> None:
        super().__init__()
        self.status = status
        self.received: list[tuple[dict[str, str], bytes]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/leads"

    def record(self, headers: dict[str, str], body: bytes) -> None:
        """What to do with each delivery; subclasses (e.g. benchmarks) keep other things."""
        self.received.append((headers, body))

    async def app(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        self.record(headers, body)
        await send({"type": "http.response.start", "status": self.status, "headers": []})
        await send({"type": "http.response.body", "body": b""})
