"""Standard Webhooks signing and verification, and the refusal of private webhook targets."""

from __future__ import annotations

import base64
import time

import pytest
from leadflow.webhooks import (
    UnsafeTarget,
    WebhookVerificationError,
    check_target,
    new_secret,
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


def refusal(secret: str, headers: dict, body: bytes = BODY, **kwargs) -> str:  # noqa: ANN003
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
def test_private_loopback_and_link_local_targets_are_refused(url: str):
    with pytest.raises(UnsafeTarget, match=r"^url: .*non-public address"):
        check_target(url, allow_private=False)


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",  # AWS, GCP, Azure instance metadata
        "http://[fd00:ec2::254]/latest/meta-data/",  # AWS IPv6 instance metadata
        "http://[::ffff:169.254.169.254]/",
    ],
)
def test_cloud_metadata_addresses_are_refused(url: str):
    with pytest.raises(UnsafeTarget, match="non-public address"):
        check_target(url, allow_private=False)


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
def test_non_http_or_relative_urls_are_refused_even_when_private_targets_are_allowed(
    url: str, allow_private: bool
):
    with pytest.raises(UnsafeTarget, match=r"^url: must be an absolute http\(s\) URL$"):
        check_target(url, allow_private=allow_private)


def test_a_host_that_does_not_resolve_is_refused():
    with pytest.raises(UnsafeTarget, match="does not resolve"):
        check_target("https://receiver.invalid/hooks", allow_private=False)


@pytest.mark.parametrize(
    "url", ["https://93.184.216.34/hooks", "https://[2606:4700:4700::1111]:8443/hooks"]
)
def test_public_https_targets_are_accepted(url: str):
    check_target(url, allow_private=False)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:9000/hooks/leads", "http://localhost/", "http://10.1.2.3/"]
)
def test_private_targets_are_accepted_when_explicitly_allowed(url: str):
    check_target(url, allow_private=True)


def test_unsafe_target_is_a_value_error_for_callers_that_validate_input():
    assert issubclass(UnsafeTarget, ValueError)
