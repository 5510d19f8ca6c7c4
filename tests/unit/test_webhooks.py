"""Standard Webhooks signing and verification, and the refusal of private webhook targets."""

from __future__ import annotations

import asyncio
import base64
import socket
import ssl
import subprocess
import threading
import time

import httpcore
import httpx
import pytest
from leadflow.webhooks import (
    DELIVERY_ERRORS,
    GuardedTransport,
    UnsafeTarget,
    WebhookVerificationError,
    check_target,
    guarded_client,
    new_secret,
    retry_after,
    sign,
    signature_headers,
    verify,
)

# The test vector published with the Standard Webhooks reference libraries.
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()
OTHER_SECRET = "whsec_" + base64.b64encode(bytes(range(32, 64))).decode()
NOW = 1_790_000_000
BODY = b'{"type":"lead.routed","data":{"lead_id":"8f6b"}}'


def delivery(secrets: list[str], body: bytes = BODY, msg_id: str = "msg_1", ts: int = NOW) -> dict:
    return signature_headers(secrets, msg_id, body, timestamp=ts)


def refusal(secret: str, headers: dict, body: bytes = BODY, **kwargs) -> str:
    with pytest.raises(WebhookVerificationError) as refused:
        verify(secret, headers, body, **kwargs)
    return str(refused.value)


# --- signing ---------------------------------------------------------------------------


def test_signature_reproduces_the_standard_webhooks_test_vector():
    assert sign(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY) == SPEC_SIGNATURE


def test_the_spec_vector_verifies_at_its_own_timestamp():
    headers = {
        "webhook-id": SPEC_ID,
        "webhook-timestamp": str(SPEC_TIMESTAMP),
        "webhook-signature": SPEC_SIGNATURE,
    }
    verify(SPEC_SECRET, headers, SPEC_BODY, now=SPEC_TIMESTAMP)
    assert "no matching signature" in refusal(
        SPEC_SECRET, headers, b'{"test": 2432232315}', now=SPEC_TIMESTAMP
    )


def test_the_whsec_prefix_is_optional_and_only_the_base64_key_counts():
    bare = SPEC_SECRET.removeprefix("whsec_")
    assert sign(bare, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY) == SPEC_SIGNATURE


def test_signature_headers_carry_id_timestamp_signature_and_json_content_type():
    headers = delivery([SECRET], msg_id="msg_abc")
    assert headers == {
        "webhook-id": "msg_abc",
        "webhook-timestamp": str(NOW),
        "webhook-signature": sign(SECRET, "msg_abc", NOW, BODY),
        "content-type": "application/json",
    }
    assert headers["webhook-signature"].startswith("v1,")
    assert len(base64.b64decode(headers["webhook-signature"][3:])) == 32  # an HMAC-SHA256


def test_signature_headers_use_the_current_time_by_default():
    before = int(time.time())
    headers = signature_headers([SECRET], "msg_1", BODY)
    assert before <= int(headers["webhook-timestamp"]) <= int(time.time())
    verify(SECRET, headers, BODY)


def test_new_secrets_are_whsec_prefixed_32_random_bytes():
    secrets = {new_secret() for _ in range(20)}
    assert len(secrets) == 20
    for secret in secrets:
        assert secret.startswith("whsec_")
        assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 32
    secret = secrets.pop()
    verify(secret, delivery([secret]), BODY, now=NOW)


def test_an_unpadded_base64_secret_signs_like_its_padded_form():
    padded = SECRET.removeprefix("whsec_")
    assert padded.endswith("=")
    unpadded = "whsec_" + padded.rstrip("=")
    assert sign(unpadded, "msg_1", NOW, BODY) == sign(SECRET, "msg_1", NOW, BODY)


# --- verification ----------------------------------------------------------------------


def test_a_signed_delivery_verifies():
    verify(SECRET, delivery([SECRET]), BODY, now=NOW)


def test_header_names_are_matched_case_insensitively():
    headers = {k.title(): v for k, v in delivery([SECRET]).items()}
    assert "Webhook-Signature" in headers
    verify(SECRET, headers, BODY, now=NOW)


def test_a_tampered_body_is_rejected():
    headers = delivery([SECRET])
    assert "no matching signature" in refusal(
        SECRET, headers, BODY.replace(b"8f6b", b"8f6c"), now=NOW
    )
    assert "no matching signature" in refusal(SECRET, headers, BODY + b" ", now=NOW)


def test_a_tampered_webhook_id_is_rejected():
    headers = {**delivery([SECRET]), "webhook-id": "msg_2"}
    assert "no matching signature" in refusal(SECRET, headers, now=NOW)


def test_a_tampered_timestamp_is_rejected_even_inside_the_tolerance():
    headers = {**delivery([SECRET]), "webhook-timestamp": str(NOW + 1)}
    assert "no matching signature" in refusal(SECRET, headers, now=NOW)


def test_a_signature_made_with_another_secret_is_rejected():
    assert "no matching signature" in refusal(SECRET, delivery([OTHER_SECRET]), now=NOW)


def test_only_v1_signatures_count():
    signature = delivery([SECRET])["webhook-signature"]
    headers = {**delivery([SECRET]), "webhook-signature": "v2," + signature[3:]}
    assert "no matching signature" in refusal(SECRET, headers, now=NOW)


def test_one_valid_signature_among_unknown_ones_is_enough():
    valid = delivery([SECRET])["webhook-signature"]
    noise = "v1,bm9wZQ== v2,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc="
    verify(SECRET, {**delivery([SECRET]), "webhook-signature": f"{noise} {valid}"}, BODY, now=NOW)


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_a_missing_header_is_rejected(missing: str):
    headers = delivery([SECRET])
    del headers[missing]
    assert "missing or malformed" in refusal(SECRET, headers, now=NOW)


@pytest.mark.parametrize("timestamp", ["", "soon", "1790000000.5", "0x6ab0f180"])
def test_a_non_integer_timestamp_is_rejected(timestamp: str):
    headers = {**delivery([SECRET]), "webhook-timestamp": timestamp}
    assert "missing or malformed" in refusal(SECRET, headers, now=NOW)


def test_a_non_ascii_signature_is_rejected_like_any_other_mismatch():
    headers = {**delivery([SECRET]), "webhook-signature": "v1,ñ"}
    assert "no matching signature" in refusal(SECRET, headers, now=NOW)


# --- timestamp tolerance ---------------------------------------------------------------


@pytest.mark.parametrize("skew", [-300, -1, 0, 1, 300])
def test_a_timestamp_within_five_minutes_either_way_is_accepted(skew: int):
    verify(SECRET, delivery([SECRET]), BODY, now=NOW + skew)


@pytest.mark.parametrize("skew", [-301, 301, -86400, 86400])
def test_a_timestamp_beyond_five_minutes_either_way_is_rejected(skew: int):
    assert "tolerance" in refusal(SECRET, delivery([SECRET]), now=NOW + skew)


def test_the_tolerance_is_configurable():
    headers = delivery([SECRET])
    verify(SECRET, headers, BODY, now=NOW + 3600, tolerance=3600)
    assert "tolerance" in refusal(SECRET, headers, now=NOW + 31, tolerance=30)


def test_a_replayed_delivery_is_rejected_once_stale_even_though_its_signature_matches():
    headers = delivery([SECRET], ts=NOW - 3600)
    verify(SECRET, headers, BODY, now=NOW - 3600)
    assert "tolerance" in refusal(SECRET, headers, now=NOW)


# --- secret rotation -------------------------------------------------------------------


def test_rotation_signs_with_every_secret_and_either_one_verifies():
    headers = delivery([SECRET, OTHER_SECRET])
    signatures = headers["webhook-signature"].split(" ")
    assert signatures == [sign(SECRET, "msg_1", NOW, BODY), sign(OTHER_SECRET, "msg_1", NOW, BODY)]
    assert signatures[0] != signatures[1]
    verify(SECRET, headers, BODY, now=NOW)
    verify(OTHER_SECRET, headers, BODY, now=NOW)
    assert "no matching signature" in refusal(new_secret(), headers, now=NOW)


def test_rotation_does_not_weaken_tamper_detection():
    headers = delivery([SECRET, OTHER_SECRET])
    for secret in (SECRET, OTHER_SECRET):
        assert "no matching signature" in refusal(secret, headers, BODY + b"!", now=NOW)


# --- webhook targets -------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hooks",
        "https://127.0.0.1:8443/hooks",
        "http://127.1/",  # shorthand for 127.0.0.1
        "http://0x7f000001/",  # hexadecimal 127.0.0.1
        "http://localhost:8080/hooks",
        "http://user@127.0.0.1/hooks",  # userinfo does not hide the host
        "http://0.0.0.0/",
        "http://[::1]/hooks",
        "http://[::]/",
        "http://[::ffff:127.0.0.1]/",  # IPv4-mapped loopback
        "http://10.0.0.5/",
        "http://172.16.0.1/",
        "http://192.168.1.10/",
        "http://100.64.0.1/",  # carrier-grade NAT
        "http://[fd00::1]/",  # unique local
        "http://[fe80::1]/",  # link-local
        "http://169.254.10.10/",  # link-local
    ],
)
async def test_private_loopback_and_link_local_targets_are_refused(url: str):
    with pytest.raises(UnsafeTarget, match=r"^url: .*non-public address"):
        await check_target(url, allow_private=False)


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",  # AWS, GCP, Azure instance metadata
        "http://[fd00:ec2::254]/latest/meta-data/",  # AWS IPv6 instance metadata
        "http://[::ffff:169.254.169.254]/",
    ],
)
async def test_cloud_metadata_addresses_are_refused(url: str):
    with pytest.raises(UnsafeTarget, match="non-public address"):
        await check_target(url, allow_private=False)


@pytest.mark.parametrize("allow_private", [False, True])
@pytest.mark.parametrize(
    "url",
    [
        "ftp://93.184.216.34/hooks",
        "file:///etc/passwd",
        "gopher://127.0.0.1:6379/_INFO",
        "javascript:alert(1)",
        "//93.184.216.34/hooks",
        "/hooks/leads",
        "https:///hooks",
        "",
    ],
)
async def test_non_http_or_relative_urls_are_refused_even_when_private_targets_are_allowed(
    url: str, allow_private: bool
):
    with pytest.raises(UnsafeTarget, match=r"^url: must be an absolute http\(s\) URL$"):
        await check_target(url, allow_private=allow_private)


@pytest.mark.parametrize("allow_private", [False, True])
async def test_a_port_out_of_range_is_refused_naming_url(allow_private: bool):
    with pytest.raises(UnsafeTarget, match=r"^url: Port out of range"):
        await check_target("https://receiver.example:70000/hooks", allow_private=allow_private)


async def test_a_host_that_does_not_resolve_is_refused():
    with pytest.raises(UnsafeTarget, match="does not resolve"):
        await check_target("https://receiver.invalid/hooks", allow_private=False)


@pytest.mark.parametrize(
    "url", ["https://93.184.216.34/hooks", "https://[2606:4700:4700::1111]:8443/hooks"]
)
async def test_public_https_targets_are_accepted(url: str):
    await check_target(url, allow_private=False)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:9000/hooks/leads", "http://localhost/", "http://10.1.2.3/"]
)
async def test_private_targets_are_accepted_when_explicitly_allowed(url: str):
    await check_target(url, allow_private=True)


def test_unsafe_target_is_a_value_error_for_callers_that_validate_input():
    assert issubclass(UnsafeTarget, ValueError)


# --- the guarded connection of deliveries ----------------------------------------------
#
# Name resolution is replaced at its lowest level, `socket.getaddrinfo` (which the event loop's
# getaddrinfo runs in a worker thread): the guard's own code path is the one used in production.
# The sockets are real, to a listener on 127.0.0.1.

NAME = "hooks.rebind.test"
PUBLIC = "93.184.216.34"
TIMEOUT = httpx.Timeout(5.0)


class Resolver:
    """DNS answers for test names, one list of addresses per lookup (the last one repeats); other
    names resolve as usual. `lookups` counts the lookups of each test name."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.answers: dict[str, list[list[str]]] = {}
        self.lookups: dict[str, int] = {}
        self.before_answer = lambda: None
        real = socket.getaddrinfo

        def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
            name = host.decode() if isinstance(host, bytes) else host
            if name not in self.answers:
                return real(host, port, family, type, proto, flags)
            self.before_answer()
            count = self.lookups.get(name, 0)
            self.lookups[name] = count + 1
            answers = self.answers[name]
            addresses = answers[min(count, len(answers) - 1)]
            return [
                (
                    socket.AF_INET6 if ":" in a else socket.AF_INET,
                    socket.SOCK_STREAM,
                    socket.IPPROTO_TCP,
                    "",
                    (a, int(port or 0), 0, 0) if ":" in a else (a, int(port or 0)),
                )
                for a in addresses
            ]

        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)

    def answer(self, name: str, *answers: list[str]) -> None:
        self.answers[name] = list(answers)


@pytest.fixture
def dns(monkeypatch):
    return Resolver(monkeypatch)


class Listener:
    """A plain HTTP listener on 127.0.0.1 (optionally TLS) that closes every connection after one
    answer, so each request needs a new connection. Records the requests it read."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self.ssl_context = ssl_context
        self.requests: list[bytes] = []
        self.connections = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                (int(line.split(b":")[1]) for line in head.split(b"\r\n")
                 if line.lower().startswith(b"content-length:")),
                0,
            )  # fmt: skip
            self.requests.append(head + await reader.readexactly(length))
            writer.write(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def __aenter__(self) -> Listener:
        self.server = await asyncio.start_server(self.serve, "127.0.0.1", 0, ssl=self.ssl_context)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()
        await self.server.wait_closed()


class Route(httpcore.AnyIOBackend):
    """The network between the delivery worker and `PUBLIC`: a connection to `PUBLIC` arrives at
    the local listener (which no public address can reach from a test). Records the address of
    every connection opened."""

    def __init__(self) -> None:
        self.opened: list[str] = []

    async def connect_tcp(self, host: str, port: int, *args, **kwargs):
        self.opened.append(host)
        return await super().connect_tcp(
            "127.0.0.1" if host == PUBLIC else host, port, *args, **kwargs
        )


def private_allowed(value: bool = False):
    return lambda: value


async def test_a_name_resolving_to_a_private_address_is_refused_when_connecting(dns):
    dns.answer(NAME, ["127.0.0.1"])
    async with Listener() as receiver, guarded_client(
        allow_private=private_allowed(False), timeout=TIMEOUT
    ) as client:
        refusal = rf"^url: {NAME} resolves to non-public address 127\.0\.0\.1$"
        with pytest.raises(UnsafeTarget, match=refusal):
            await client.post(f"http://{NAME}:{receiver.port}/hooks", content=b"{}")
    assert receiver.connections == 0
    assert dns.lookups[NAME] == 1


@pytest.mark.parametrize(
    "address", ["10.0.0.7", "169.254.169.254", "::1", "fd00:ec2::254", "::ffff:127.0.0.1"]
)
async def test_any_non_public_address_in_the_answer_is_refused_before_a_socket_opens(dns, address):
    dns.answer(NAME, [PUBLIC, address])
    route = Route()
    async with guarded_client(
        allow_private=private_allowed(False), timeout=TIMEOUT, connector=route
    ) as client:
        with pytest.raises(UnsafeTarget, match=f"non-public address {address}$"):
            await client.post(f"http://{NAME}/hooks", content=b"{}")
    assert route.opened == []


async def test_a_name_that_turns_private_after_a_public_answer_is_refused_on_the_next_connection(dns):
    """DNS rebinding: the address that was checked is the address connected to, each time."""
    dns.answer(NAME, [PUBLIC], ["127.0.0.1"])
    route = Route()
    async with Listener() as receiver, guarded_client(
        allow_private=private_allowed(False), timeout=TIMEOUT, connector=route
    ) as client:
        url = f"http://{NAME}:{receiver.port}/hooks"
        first = await client.post(url, content=b'{"n":1}')
        assert first.status_code == 204
        with pytest.raises(UnsafeTarget, match="non-public address 127.0.0.1"):
            await client.post(url, content=b'{"n":2}')
    assert route.opened == [PUBLIC]  # the checked address, never the name, never 127.0.0.1
    assert len(receiver.requests) == 1 and receiver.requests[0].endswith(b'{"n":1}')
    assert f"host: {NAME}:{receiver.port}".encode() in receiver.requests[0].lower()
    assert dns.lookups[NAME] == 2  # one lookup per connection: nothing resolves the name again


async def test_a_signed_post_goes_through_the_same_guard_and_says_what_the_receiver_answered(dns):
    """`post_signed`, the deliveries' POST below httpx's models: the same guarded connection,
    the Host and Content-Length a receiver needs, the receiver's status and Retry-After."""
    dns.answer(NAME, [PUBLIC], ["127.0.0.1"])
    route = Route()
    async with (
        Listener() as receiver,
        guarded_client(
            allow_private=private_allowed(False), timeout=TIMEOUT, connector=route
        ) as client,
    ):
        url = f"http://{NAME}:{receiver.port}/hooks"
        headers = signature_headers([SECRET], "msg_1", b'{"n":1}', timestamp=1)
        answer = await client.post_signed(url, b'{"n":1}', headers)
        assert (answer.status, answer.retry_after) == (204, None)
        with pytest.raises(UnsafeTarget, match="non-public address 127.0.0.1"):
            await client.post_signed(url, b'{"n":2}', headers)
    assert route.opened == [PUBLIC]
    request = receiver.requests[0].lower()
    assert f"host: {NAME}:{receiver.port}\r\n".encode() in request
    assert b"content-length: 7\r\n" in request and request.endswith(b'{"n":1}')
    assert headers["webhook-signature"].lower().encode() in request
    assert len(receiver.requests) == 1


class Anywhere(httpcore.AnyIOBackend):
    """Every connection, whatever its checked address, arrives at the local listener."""

    async def connect_tcp(self, host: str, port: int, *args, **kwargs):
        return await super().connect_tcp("127.0.0.1", port, *args, **kwargs)


async def test_a_signed_post_sends_the_host_credentials_and_agent_httpx_would_send(dns):
    v6 = "2606:4700:4700::1111"  # a public address: the guard lets it through
    dns.answer(NAME, [PUBLIC])
    async with Listener() as receiver, guarded_client(
        allow_private=private_allowed(False), timeout=TIMEOUT, connector=Anywhere()
    ) as client:
        await client.post_signed(f"http://[{v6}]:{receiver.port}/hooks", b"{}", {})
        url = f"http://ops%40acme:s%3Acret@{NAME}:{receiver.port}/hooks?x=1"
        await client.post_signed(url, b"{}", {})
    plain, credentials = (request.lower() for request in receiver.requests)
    assert f"host: [{v6}]:{receiver.port}\r\n".encode() in plain  # an IPv6 host in brackets
    assert b"user-agent: leadflow/" in plain and b"authorization" not in plain
    assert plain.startswith(b"post /hooks http/1.1\r\n")
    basic = b"authorization: basic " + base64.b64encode(b"ops@acme:s:cret").lower()
    assert basic in credentials and f"host: {NAME}:{receiver.port}\r\n".encode() in credentials
    assert credentials.startswith(b"post /hooks?x=1 http/1.1\r\n")


async def test_a_signed_post_reads_a_retry_after_and_fails_as_httpx_would_name_it():
    async def busy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 7\r\nContent-Length: 4\r\n\r\nbusy"
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(busy, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server, guarded_client(allow_private=private_allowed(True), timeout=TIMEOUT) as c:
        answer = await c.post_signed(f"http://127.0.0.1:{port}/hooks", b"{}", {})
        assert (answer.status, answer.retry_after) == (429, 7.0)
        server.close()
        await server.wait_closed()
        with pytest.raises(DELIVERY_ERRORS) as failed:
            await c.post_signed(f"http://127.0.0.1:{port}/hooks", b"{}", {})
    assert type(failed.value).__name__ == "ConnectError"
    assert (retry_after("12"), retry_after("soon"), retry_after(None)) == (12.0, None, None)
    # a wait no timestamp can hold is cut to a day; digits that are not ASCII are no number
    assert (retry_after("9" * 30), retry_after("\u00b2"), retry_after("1.5")) == (86_400.0, None, None)


async def test_private_targets_connect_when_explicitly_allowed(dns):
    dns.answer(NAME, ["127.0.0.1"])
    async with Listener() as receiver, guarded_client(
        allow_private=private_allowed(True), timeout=TIMEOUT
    ) as client:
        response = await client.post(f"http://{NAME}:{receiver.port}/hooks", content=b"{}")
        literal = await client.post(f"http://127.0.0.1:{receiver.port}/hooks", content=b"{}")
    assert (response.status_code, literal.status_code) == (204, 204)
    assert len(receiver.requests) == 2


async def test_the_allow_private_setting_is_read_at_each_connection(dns):
    dns.answer(NAME, ["127.0.0.1"])
    allowed = [True]
    async with Listener() as receiver, guarded_client(
        allow_private=lambda: allowed[0], timeout=TIMEOUT
    ) as client:
        url = f"http://{NAME}:{receiver.port}/hooks"
        assert (await client.post(url, content=b"{}")).status_code == 204
        allowed[0] = False
        with pytest.raises(UnsafeTarget, match="non-public address 127.0.0.1"):
            await client.post(url, content=b"{}")
    assert len(receiver.requests) == 1


async def test_an_unresolvable_host_is_refused_when_connecting():
    async with guarded_client(allow_private=private_allowed(False), timeout=TIMEOUT) as client:
        with pytest.raises(UnsafeTarget, match="host 'receiver.invalid' does not resolve"):
            await client.post("https://receiver.invalid/hooks", content=b"{}")


async def test_redirects_are_not_followed_by_the_guarded_client(dns):
    hits: list[bytes] = []

    async def redirect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hits.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(
            b"HTTP/1.1 307 Moved\r\nLocation: http://169.254.169.254/\r\n"
            b"Content-Length: 0\r\nConnection: close\r\n\r\n"
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(redirect, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with guarded_client(allow_private=private_allowed(True), timeout=TIMEOUT) as client:
            response = await client.get(f"http://127.0.0.1:{port}/")
    finally:
        server.close()
    assert response.status_code == 307 and len(hits) == 1


@pytest.fixture(scope="module")
def certificates(tmp_path_factory) -> dict[str, tuple[str, str]]:
    """Self-signed certificates (cert, key) for NAME and for another name, made with openssl."""
    folder = tmp_path_factory.mktemp("tls")
    made = {}
    for name in (NAME, "other.rebind.test"):
        cert, key = folder / f"{name}.pem", folder / f"{name}.key"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
             "-keyout", str(key), "-out", str(cert), "-subj", f"/CN={name}",
             "-addext", f"subjectAltName=DNS:{name}"],
            check=True, capture_output=True,
        )  # fmt: skip
        made[name] = (str(cert), str(key))
    return made


def server_tls(cert: str, key: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


@pytest.mark.parametrize("served", [NAME, "other.rebind.test"])
async def test_tls_verifies_the_certificate_against_the_host_name_not_the_checked_address(
    dns, certificates, served
):
    """The socket goes to the checked address; the TLS handshake (SNI and certificate check)
    still uses the host name of the URL."""
    dns.answer(NAME, [PUBLIC])
    client_tls = ssl.create_default_context(cafile=certificates[NAME][0])
    client_tls.load_verify_locations(cafile=certificates["other.rebind.test"][0])
    route = Route()
    client = httpx.AsyncClient(
        transport=GuardedTransport(
            allow_private=private_allowed(False), connector=route, verify=client_tls
        ),
        timeout=TIMEOUT,
    )
    async with Listener(server_tls(*certificates[served])) as receiver, client:
        url = f"https://{NAME}:{receiver.port}/hooks"
        if served == NAME:
            assert (await client.post(url, content=b"{}")).status_code == 204
            assert len(receiver.requests) == 1
        else:  # a certificate for another name is refused, though the address passed the check
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED|match"):
                await client.post(url, content=b"{}")
            assert receiver.requests == []
    assert route.opened == [PUBLIC]


async def test_resolution_does_not_block_the_event_loop(dns):
    """The lookup runs off the event loop: a task of the loop gets to run while it is under way
    (a lookup on the loop's own thread would wait for that task in vain)."""
    released = threading.Event()
    waited: list[bool] = []
    dns.before_answer = lambda: waited.append(released.wait(timeout=5))
    dns.answer(NAME, ["127.0.0.1"])

    async def release() -> None:
        await asyncio.sleep(0)
        released.set()

    async with guarded_client(allow_private=private_allowed(False), timeout=TIMEOUT) as client:
        for lookup in (
            check_target(f"https://{NAME}/hooks", allow_private=False),  # at registration
            client.post(f"https://{NAME}/hooks", content=b"{}"),  # at delivery
        ):
            released.clear()
            refused, _ = await asyncio.gather(lookup, release(), return_exceptions=True)
            assert isinstance(refused, UnsafeTarget), refused
    assert waited == [True, True]


async def test_parallel_deliveries_keep_their_connections_alive():
    """Deliveries sent in parallel reuse their connections on the next round: the client keeps
    alive every connection it opened (none closed and opened again between rounds)."""
    accepted = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted
        accepted += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                await reader.readexactly(length)
                writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = guarded_client(allow_private=lambda: True, timeout=httpx.Timeout(10.0))
    try:
        async with client:
            opened = []
            for _ in range(3):
                answers = await asyncio.gather(
                    *(
                        client.post(f"http://127.0.0.1:{port}/hooks", content=b"{}")
                        for _ in range(50)
                    )
                )
                assert {answer.status_code for answer in answers} == {204}
                opened.append(accepted)
    finally:
        server.close()
        await server.wait_closed()
    assert 0 < opened[0] <= 50
    assert opened == [opened[0]] * 3
