"""A local HTTP receiver of webhook deliveries, as a sales tool would run one."""

from __future__ import annotations

import asyncio

from leadflow_tools.devstack import free_port


class WebhookReceiver:
    """A local HTTP receiver for webhook deliveries, as a sales tool would run one."""

    def __init__(self, status: int = 204) -> None:
        self.port = free_port()
        self.status = status
        self.received: list[tuple[dict[str, str], bytes]] = []
        self._server = None
        self._task: asyncio.Task | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/leads"

    def record(self, headers: dict[str, str], body: bytes) -> None:
        """What to do with each delivery; subclasses (e.g. benchmarks) keep other things."""
        self.received.append((headers, body))

    async def __aenter__(self) -> WebhookReceiver:
        import uvicorn

        async def app(scope, receive, send) -> None:
            if scope["type"] != "http":
                return
            body = b""
            while True:
                message = await receive()
                body += message.get("body", b"")
                if not message.get("more_body"):
                    break
            headers = {k.decode(): v.decode() for k, v in scope["headers"]}
            self.record(headers, body)
            await send({"type": "http.response.start", "status": self.status, "headers": []})
            await send({"type": "http.response.body", "body": b""})

        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_config=None,
            access_log=False,
            lifespan="off",
            backlog=4096,
        )
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            await asyncio.sleep(0.05)
        return self

    async def __aexit__(self, *exc) -> None:
        self._server.should_exit = True
        await self._task

