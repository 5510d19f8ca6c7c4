"""Standard Webhooks signing and verification, and the guard against private webhook targets.

The guard runs twice: when a target is registered (`check_target`, for a clear 422) and when a
delivery connects (`GuardedBackend`, under `guarded_client`). The second one is what holds: the
host name is resolved once, asynchronously, each address is checked, and the socket is opened to
the checked address itself, so a name that resolves elsewhere by the time of the connection (DNS
rebinding) cannot reach a private, loopback or link-local address. TLS still verifies the
certificate against the host name of the URL."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import ipaddress
import secrets
import select
import socket
import ssl
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import SplitResult, urlsplit

import anyio
import httpcore
import httpx

from leadflow import __version__


class WebhookVerificationError(Exception):
    pass


class UnsafeTarget(ValueError):
    pass


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def _key(secret: str) -> bytes:
    """The key bytes of a `whsec_<base64>` secret; padding may be left off, as the reference
    libraries allow. Raises ValueError when the rest is not base64."""
    raw = secret.removeprefix("whsec_")
    try:
        return base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("the secret after `whsec_` must be base64") from exc


def check_secret(secret: str) -> str:
    """The secret unchanged if it can sign; ValueError otherwise (for request validation)."""
    if len(_key(secret)) < 16:
        raise ValueError("the secret must hold at least 16 bytes of key")
    return secret


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """`v1,<base64 HMAC-SHA256 of "id.timestamp.body">` with the secret's key bytes."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return (
        "v1," + base64.b64encode(hmac.new(_key(secret), signed, hashlib.sha256).digest()).decode()
    )


def signature_headers(
    secrets_: list[str], msg_id: str, body: bytes, timestamp: int | None = None
) -> dict[str, str]:
    """Headers for one delivery; several secrets (during rotation) give several signatures."""
    ts = int(time.time()) if timestamp is None else timestamp
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": " ".join(sign(s, msg_id, ts, body) for s in secrets_),
        "content-type": "application/json",
    }


def verify(
    secret: str,
    headers: dict[str, str],
    body: bytes,
    *,
    tolerance: int = 300,
    now: float | None = None,
) -> None:
    """Raise WebhookVerificationError unless one signature matches and the timestamp is fresh."""
    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        msg_id = lowered["webhook-id"]
        ts = int(lowered["webhook-timestamp"])
        signatures = lowered["webhook-signature"].split()
    except (KeyError, ValueError) as exc:
        raise WebhookVerificationError("missing or malformed webhook headers") from exc
    if abs((now if now is not None else time.time()) - ts) > tolerance:
        raise WebhookVerificationError("timestamp outside the tolerance")
    expected = sign(secret, msg_id, ts, body)
    if not any(hmac.compare_digest(expected.encode(), s.encode()) for s in signatures):
        raise WebhookVerificationError("no matching signature")


def check_url(url: str) -> SplitResult:
    """The parts of an absolute http(s) URL with a host; UnsafeTarget otherwise. No lookup."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeTarget("url: must be an absolute http(s) URL")
    try:
        parts.port  # noqa: B018 - raises on a port out of range
    except ValueError as exc:
        raise UnsafeTarget(f"url: {exc}") from exc
    return parts


async def resolve_public(host: str, port: int) -> list[str]:
    """The addresses `host` resolves to, looked up without blocking the event loop; UnsafeTarget
    when it does not resolve or when any of them is not a public (global) address."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
    except (socket.gaierror, UnicodeError) as exc:
        raise UnsafeTarget(f"url: host {host!r} does not resolve") from exc
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    for address in addresses:
        if not ipaddress.ip_address(address).is_global:
            raise UnsafeTarget(f"url: {host} resolves to non-public address {address}")
    return addresses


async def check_target(url: str, *, allow_private: bool) -> None:
    """Refuse non-HTTP(S) URLs and hosts that resolve to private, loopback or link-local addresses."""
    parts = check_url(url)
    if not allow_private:
        await resolve_public(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))


class _Stream(httpcore.AsyncNetworkStream):
    """A webhook connection's stream. httpcore asks every idle connection of the pool whether
    its socket is readable (closed by the server) each time a request enters or leaves the
    pool; this answers from the socket itself, where AnyIO's stream builds its whole attribute
    table for each question, which cost more than sending the request."""

    def __init__(self, stream: httpcore.AsyncNetworkStream) -> None:
        self._stream = stream
        self._socket: socket.socket | None = stream.get_extra_info("socket")

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        return await self._stream.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        await self._stream.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's stream interface
    ) -> httpcore.AsyncNetworkStream:
        return _Stream(await self._stream.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> object:
        if info == "is_readable":
            return _readable(self._socket)
        return self._stream.get_extra_info(info)


def _readable(sock: socket.socket | None) -> bool:
    """Whether a read would return at once (data or the end of the stream); a socket that is
    gone counts as readable, so the pool drops its connection."""
    fd = -1 if sock is None else sock.fileno()
    if fd < 0:
        return True
    poll = select.poll()
    poll.register(fd, select.POLLIN)
    return bool(poll.poll(0))


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """The network backend of outbound webhooks: `connect_tcp` resolves the host, refuses it when
    an address is not public (unless `allow_private()`), and connects to the checked address.
    `allow_private` is read at each connection, so a changed setting applies to the next one.
    `connector` opens the sockets (httpcore's AnyIO backend unless another is given)."""

    def __init__(
        self,
        allow_private: Callable[[], bool] = lambda: False,
        connector: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self.allow_private = allow_private
        self.connector = connector or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's backend interface
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        if self.allow_private():
            return _Stream(
                await self.connector.connect_tcp(
                    host, port, timeout, local_address=local_address, socket_options=socket_options
                )
            )
        deadline = None if timeout is None else anyio.current_time() + timeout
        try:
            with anyio.fail_after(timeout):
                addresses = await resolve_public(host, port)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from exc
        error: Exception | None = None
        for address in addresses:  # each one checked above; the first that answers is used
            remaining = None if deadline is None else max(deadline - anyio.current_time(), 0.0)
            try:
                return _Stream(
                    await self.connector.connect_tcp(
                        address,
                        port,
                        remaining,
                        local_address=local_address,
                        socket_options=socket_options,
                    )
                )
            except httpcore.ConnectError as exc:
                error = exc
        raise error or httpcore.ConnectError(f"{host} has no address")

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's backend interface
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise UnsafeTarget("url: webhooks are delivered over TCP only")

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport over connection pools whose every connection goes through a
    GuardedBackend (httpx 0.28 cannot be handed a network backend; its transport keeps the pool
    it sends through in `_pool`, so this one builds that itself)."""

    def __init__(
        self,
        *,
        allow_private: Callable[[], bool],
        connector: httpcore.AsyncNetworkBackend | None = None,
        verify: ssl.SSLContext | bool = True,
        limits: httpx.Limits | None = None,
    ) -> None:
        limits = limits or httpx.Limits(max_connections=100, max_keepalive_connections=100)
        self._pool = _Pools(
            limits,
            ssl_context=httpx.create_ssl_context(verify=verify),
            network_backend=GuardedBackend(allow_private, connector),
        )

    async def post(
        self, url: httpcore.URL, headers: list[tuple[bytes, bytes]], body: bytes,
        extensions: dict[str, object],
    ) -> httpcore.Response:  # fmt: skip
        """A POST through the guarded pools, below httpx's models; its answer read whole."""
        return await self._pool.request(
            b"POST", url, headers=headers, content=body, extensions=extensions
        )


class _Pools:
    """Connection pools of at most POOL_SIZE connections each, taken in turn by requests.

    httpcore's pool looks at every one of its connections each time a request enters or
    leaves it (and asks each idle one whether the server closed it, a system call), so its
    cost per request grows with its size; deliveries sent in parallel through one large pool
    spent more on that than on sending. Several small pools keep it bounded. Each keeps alive
    as many connections as it may open: httpcore closes an idle connection whenever a pool
    holds more connections in all than it may keep alive, so a smaller number would close and
    open connections all the time."""

    POOL_SIZE = 10

    def __init__(self, limits: httpx.Limits, **options: object) -> None:
        total = limits.max_connections or 100
        size = min(self.POOL_SIZE, total)
        self._pools = [
            httpcore.AsyncConnectionPool(
                max_connections=size,
                max_keepalive_connections=size,
                keepalive_expiry=limits.keepalive_expiry,
                **options,
            )
            for _ in range(max(total // size, 1))
        ]
        self._next = 0

    def _take(self) -> httpcore.AsyncConnectionPool:
        pool = self._pools[self._next]
        self._next = (self._next + 1) % len(self._pools)
        return pool

    async def handle_async_request(self, request: httpcore.Request) -> httpcore.Response:
        return await self._take().handle_async_request(request)

    async def request(
        self, method: bytes, url: httpcore.URL, *, headers: list[tuple[bytes, bytes]],
        content: bytes, extensions: dict[str, object],
    ) -> httpcore.Response:  # fmt: skip
        """One request whose answer is read whole (httpcore adds Host and Content-Length)."""
        return await self._take().request(
            method, url, headers=headers, content=content, extensions=extensions
        )

    async def aclose(self) -> None:
        for pool in self._pools:
            await pool.aclose()

    async def __aenter__(self) -> _Pools:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


CONNECT_TIMEOUT = 5.0  # seconds to open a connection to a webhook receiver


def delivery_timeout(read: float) -> httpx.Timeout:
    """A delivery's timeouts: `read` seconds (LEADFLOW_WEBHOOK_READ_TIMEOUT) for the receiver's
    answer and each other step, `CONNECT_TIMEOUT` to connect."""
    return httpx.Timeout(read, connect=CONNECT_TIMEOUT)


# What a delivery's POST can fail with below httpx: httpcore's errors, which `post_signed`
# lets through as they are (httpx maps each to an exception of the same name).
DELIVERY_ERRORS: tuple[type[Exception], ...] = (
    httpx.HTTPError,
    httpcore.TimeoutException,
    httpcore.NetworkError,
    httpcore.ProtocolError,
    httpcore.UnsupportedProtocol,
)


@dataclass(frozen=True)
class Answer:
    """A receiver's answer to a delivery: its status and the seconds it asked to wait."""

    status: int
    retry_after: float | None


MAX_RETRY_AFTER = 86_400.0  # seconds: a receiver's Retry-After is honoured up to a day


def retry_after(value: str | None) -> float | None:
    """A `Retry-After` header in seconds, at most MAX_RETRY_AFTER (a longer wait would put the
    next try past any instant a timestamp holds); None when absent or not a number of seconds
    in ASCII digits (an HTTP date is not read)."""
    if not value or not (value.isascii() and value.isdigit()):
        return None
    return min(float(value), MAX_RETRY_AFTER)


# Sent with every delivery, as httpx's client sent its own: some receivers and their firewalls
# refuse a request without a User-Agent.
_DELIVERY_HEADERS = ((b"user-agent", f"Leadflow/{__version__}".encode()), (b"accept", b"*/*"))


@lru_cache(maxsize=1024)
def _target(url: str) -> tuple[httpcore.URL, tuple[tuple[bytes, bytes], ...]]:
    """httpcore's form of a delivery URL, parsed as httpx parses it (international names
    encoded), and the headers it implies, as httpx's client gives them: the Host (an IPv6
    address in brackets) and, for credentials in the URL, HTTP Basic. Once per URL."""
    parsed = httpx.URL(url)
    headers = [(b"host", parsed.netloc), *_DELIVERY_HEADERS]
    if parsed.userinfo:
        credentials = f"{parsed.username}:{parsed.password}".encode()
        headers.append((b"authorization", b"Basic " + base64.b64encode(credentials)))
    target = httpcore.URL(
        scheme=parsed.raw_scheme, host=parsed.raw_host, port=parsed.port, target=parsed.raw_path
    )
    return target, tuple(headers)


class GuardedClient(httpx.AsyncClient):
    """httpx's client over a GuardedTransport, and `post_signed`: a delivery's POST sent
    straight to the transport's connection pools, past httpx's request and response models,
    cookies, redirect and authentication steps, none of which a delivery uses (they cost
    notify more CPU than the request itself, a POST per routed lead)."""

    def __init__(self, transport: GuardedTransport, timeout: httpx.Timeout) -> None:
        super().__init__(
            transport=transport, timeout=timeout, follow_redirects=False, trust_env=False
        )
        self._guarded = transport
        self._extensions = {"timeout": timeout.as_dict()}

    async def post_signed(self, url: str, body: bytes, headers: dict[str, str]) -> Answer:
        """POST `body` with `headers` to `url`; the answer's body is read and dropped. Raises
        UnsafeTarget for an address the guard refuses and one of DELIVERY_ERRORS when the
        POST fails."""
        target, implied = _target(url)
        response = await self._guarded.post(
            target,
            [*implied, *((k.encode(), v.encode()) for k, v in headers.items())],
            body,
            self._extensions,
        )
        wait = next((v for k, v in response.headers if k.lower() == b"retry-after"), None)
        return Answer(response.status, retry_after(wait.decode("latin-1") if wait else None))


def guarded_client(
    *,
    allow_private: Callable[[], bool],
    timeout: httpx.Timeout | float,
    connector: httpcore.AsyncNetworkBackend | None = None,
) -> GuardedClient:
    """The HTTP client for outbound webhooks: every connection is guarded, redirects are not
    followed and proxies from the environment are not used (a proxy would resolve the name
    itself, out of the guard's sight). A `timeout` in seconds is the read timeout of
    `delivery_timeout` (the `webhook_read_timeout` setting)."""
    if not isinstance(timeout, httpx.Timeout):
        timeout = delivery_timeout(timeout)
    return GuardedClient(
        GuardedTransport(allow_private=allow_private, connector=connector), timeout
    )
