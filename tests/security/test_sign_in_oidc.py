"""Sign-in through an OpenID Connect identity provider: a real one, `oidc-provider-mock`, runs as
a local process; the browser's step at the provider (its authorization form) is driven over
HTTP. Feedback uses the authorization code with PKCE (S256), makes the person on their first
sign-in with the role their groups map to, and refuses an answer it did not ask for."""

import json
import subprocess
import sys
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from leadflow_tools.devstack import free_port
from pydantic import SecretStr
from support.harness import ADMIN, eventually_sync, service_client

HTML = {"Accept": "text/html"}
PEOPLE = [
    {"sub": "ana-1", "email": "ana@corp.example", "name": "Ana Corp", "groups": ["lf-admins"]},
    {"sub": "bo-2", "email": "bo@corp.example", "name": "Bo Corp", "groups": ["lf-viewers"]},
    {"sub": "cy-3", "email": "cy@corp.example", "name": "Cy Corp", "groups": ["others"]},
]


@pytest.fixture
def provider():
    """The identity provider, a real OpenID Connect server on a free port."""
    port = free_port()
    claims = [arg for person in PEOPLE for arg in ("--user-claims", json.dumps(person))]
    proc = subprocess.Popen(
        [sys.executable, "-m", "oidc_provider_mock", "--port", str(port), *claims],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:

        def serving() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"the provider exited: {proc.stderr.read()}")
            try:
                return httpx.get(f"{url}/.well-known/openid-configuration").status_code == 200
            except httpx.HTTPError:
                return False

        eventually_sync(serving, timeout=30, interval=0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
async def feedback(settings, provider):
    wired = settings.model_copy(
        update={
            "session_secret": SecretStr("a-session-secret-for-the-tests-only-0123456789"),
            "public_url": "http://feedback",
            "oidc_discovery_url": provider,
            "oidc_client_id": "leadflow",
            "oidc_client_secret": SecretStr("the-client-secret"),
            "oidc_group_roles": {"lf-admins": "admin", "lf-viewers": "viewer"},
        }
    )
    async with service_client("feedback", wired) as client:
        yield client


def browser(feedback) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=feedback.app)
    return httpx.AsyncClient(transport=transport, base_url="http://feedback", headers=HTML)


async def at_the_provider(authorize_url: str, sub: str) -> str:
    """What a person does at the provider: open its authorization form and pick who they are;
    the answer is the redirect back to feedback's callback."""
    async with httpx.AsyncClient() as http:
        form = await http.get(authorize_url)
        assert form.status_code == 200 and 'name="sub"' in form.text, form.text
        answered = await http.post(authorize_url, data={"sub": sub})
    assert answered.status_code == 302, answered.text
    return answered.headers["location"]


async def sign_in_through_provider(person: httpx.AsyncClient, sub: str, next_="/review"):
    started = await person.get("/login/oidc", params={"next": next_})
    assert started.status_code == 302, started.text
    authorize_url = started.headers["location"]
    back = urlsplit(await at_the_provider(authorize_url, sub))
    assert (back.scheme, back.netloc, back.path) == ("http", "feedback", "/login/oidc/callback")
    return authorize_url, await person.get(f"{back.path}?{back.query}")


async def test_a_person_signs_in_with_the_provider_and_is_made_on_the_first_time(feedback):
    async with browser(feedback) as person:
        login = await person.get("/login")
        assert 'id="sign-in-oidc"' in login.text
        authorize_url, done = await sign_in_through_provider(
            person, "ana-1", "/review?week=2026-11-30"
        )
        asked = parse_qs(urlsplit(authorize_url).query)
        assert asked["code_challenge_method"] == ["S256"] and len(asked["code_challenge"][0]) >= 43
        assert asked["client_id"] == ["leadflow"] and "openid" in asked["scope"][0].split()
        assert asked["state"] and asked["nonce"]
        assert done.status_code == 303, done.text
        assert done.headers["location"] == "/review?week=2026-11-30"
        page = await person.get("/review")
        assert page.status_code == 200 and "Signed in as Ana Corp (admin)" in page.text
    people = (await feedback.get("/v1/users", headers=ADMIN)).json()["items"]
    assert [(p["email"], p["role"], p["has_password"]) for p in people] == [
        ("ana@corp.example", "admin", False)
    ]
    assert people[0]["oidc_issuer"].startswith("http://127.0.0.1:")
    audit = await feedback.get("/v1/audit", params={"entity": "user"}, headers=ADMIN)
    [made] = audit.json()["items"]
    assert (made["action"], made["actor"]) == ("created", f"oidc:{people[0]['oidc_issuer']}")
    async with browser(feedback) as again:  # a second sign-in finds the same person
        _, done = await sign_in_through_provider(again, "ana-1")
        assert done.status_code == 303
    assert len((await feedback.get("/v1/users", headers=ADMIN)).json()["items"]) == 1


async def test_the_role_comes_from_the_groups_and_a_person_without_one_is_refused(feedback):
    async with browser(feedback) as bo:
        _, done = await sign_in_through_provider(bo, "bo-2")
        assert done.status_code == 303
        assert "Signed in as Bo Corp (viewer)" in (await bo.get("/review")).text
    async with browser(feedback) as cy:
        _, refused = await sign_in_through_provider(cy, "cy-3")
        assert refused.status_code == 422
        assert "no Leadflow role" in refused.json()["detail"]
        assert (await cy.get("/review")).status_code == 303  # not signed in


async def test_an_answer_feedback_did_not_ask_for_is_refused(feedback):
    async with browser(feedback) as person, browser(feedback) as attacker:
        started = await attacker.get("/login/oidc")
        back = urlsplit(await at_the_provider(started.headers["location"], "ana-1"))
        # the attacker's code and state, delivered to someone else's browser (login CSRF)
        foreign = await person.get(f"{back.path}?{back.query}")
        assert foreign.status_code == 400, foreign.text
        assert (await person.get("/review")).status_code == 303
        forged = await attacker.get(f"{back.path}?code=made-up&state=made-up")
        assert forged.status_code == 400
    assert (await feedback.get("/v1/users", headers=ADMIN)).json()["items"] == []


async def test_without_a_provider_configured_the_sign_in_page_offers_only_passwords(settings):
    async with service_client("feedback", settings) as feedback, browser(feedback) as person:
        assert 'id="sign-in-oidc"' not in (await person.get("/login")).text
        assert (await person.get("/login/oidc")).status_code == 404
