"""Attacks on people's sign-in to the review pages (feedback in this process, real PostgreSQL):
guessing passwords is slowed and then locked per account and per client address, and answers
the same whether the account exists; a tampered or expired session cookie is a new sign-in,
never an error; a form posted without its session's CSRF token is refused; the sign-in sends a
browser only to a path of this site; every page carries the Content-Security-Policy."""

import base64
import json
import re
import time
import uuid

import httpx
import pytest
from itsdangerous import TimestampSigner
from leadflow.sessions import CONTENT_SECURITY_POLICY
from pydantic import SecretStr
from support.harness import ADMIN, NO_KEY, service_client

SECRET = "a-session-secret-for-the-tests-only-0123456789"
PASSWORD = "correct horse battery staple"
HTML = {"Accept": "text/html,application/xhtml+xml"}


@pytest.fixture
async def feedback(settings):
    wired = settings.model_copy(
        update={"session_secret": SecretStr(SECRET), "sign_in_max_failures_per_address": 8}
    )
    async with service_client("feedback", wired) as client:
        yield client


def browser(feedback, address: str = "192.0.2.10") -> httpx.AsyncClient:
    """A browser of its own (its own cookies) at `address`, talking to the same app."""
    transport = httpx.ASGITransport(app=feedback.app, client=(address, 50000))
    return httpx.AsyncClient(transport=transport, base_url="http://feedback", headers=HTML)


async def make_person(feedback, email="ana@example.com", role="viewer", **extra) -> str:
    made = await feedback.post(
        "/v1/users",
        json={"email": email, "name": "Ana", "role": role, "password": PASSWORD, **extra},
        headers=ADMIN,
    )
    assert made.status_code == 201, made.text
    return made.json()["id"]


async def form_token(client: httpx.AsyncClient, path: str = "/login") -> str:
    page = await client.get(path)
    assert page.status_code == 200, page.text
    return re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)


async def sign_in(client, email="ana@example.com", password=PASSWORD, next_="/review"):
    token = await form_token(client)
    return await client.post(
        "/login",
        data={"email": email, "password": password, "csrf_token": token, "next": next_},
    )


def session_cookie(data: dict, *, age: int = 0) -> str:
    """A cookie as the session middleware writes it, signed `age` seconds ago."""

    class Then(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - age

    return Then(SECRET).sign(base64.b64encode(json.dumps(data).encode())).decode()


# --- brute force ----------------------------------------------------------------------------


async def test_failed_sign_ins_are_slowed_then_the_account_is_locked(feedback):
    await make_person(feedback)
    async with browser(feedback) as attacker:
        took = []
        for _ in range(4):
            started = time.monotonic()
            wrong = await sign_in(attacker, password="not the password!")
            took.append(time.monotonic() - started)
            assert wrong.status_code == 401
            assert "The e-mail or the password is wrong." in wrong.text
        assert took[3] > took[0] + 1.0, took  # each failure waits longer than the one before
        fifth = await sign_in(attacker, password="not the password!")
        assert fifth.status_code == 401
        # locked: even the right password is refused, from anywhere, for the lock time
    for where in ("192.0.2.10", "198.51.100.7"):
        async with browser(feedback, where) as person:
            locked = await sign_in(person)
            assert locked.status_code == 429, locked.text
            assert 800 < int(locked.headers["retry-after"]) <= 900
            assert "Too many failed sign-ins" in locked.text


async def test_a_lock_or_a_refusal_says_nothing_of_whether_the_account_exists(feedback):
    await make_person(feedback)
    answers = {}
    for email in ("ana@example.com", "nobody@example.com"):
        async with browser(feedback, f"203.0.113.{len(answers) + 1}") as attacker:
            seen = []
            for _ in range(6):
                answer = await sign_in(attacker, email=email, password="not the password!")
                problem = re.search(r'id="sign-in-problem">([^<]+)<', answer.text).group(1)
                seen.append((answer.status_code, re.sub(r"\d\d:\d\d", "hh:mm", problem)))
            answers[email] = seen
    assert answers["ana@example.com"] == answers["nobody@example.com"]
    assert [s for s, _ in answers["nobody@example.com"]] == [401] * 5 + [429]


async def test_one_address_guessing_many_accounts_is_locked(feedback):
    async with browser(feedback, "192.0.2.99") as sprayer:
        for n in range(8):  # sign_in_max_failures_per_address in these settings
            answer = await sign_in(sprayer, email=f"guess{n}@example.com", password="wrong")
            assert answer.status_code == 401
        await make_person(feedback, email="real@example.com")
        locked = await sign_in(sprayer, email="real@example.com")
        assert locked.status_code == 429
    async with browser(feedback, "192.0.2.100") as elsewhere:  # another address still may
        assert (await sign_in(elsewhere, email="real@example.com")).status_code == 303


async def test_a_new_password_from_an_admin_lifts_the_lock(feedback):
    user_id = await make_person(feedback)
    async with browser(feedback) as person:
        for _ in range(5):
            await sign_in(person, password="not the password!")
        assert (await sign_in(person)).status_code == 429
        changed = await feedback.patch(
            f"/v1/users/{user_id}", json={"password": PASSWORD + "!"}, headers=ADMIN
        )
        assert changed.status_code == 200
        assert (await sign_in(person, password=PASSWORD + "!")).status_code == 303


# --- sessions -------------------------------------------------------------------------------


async def test_a_person_signs_in_sees_the_review_page_and_signs_out(feedback):
    await make_person(feedback)
    async with browser(feedback) as person:
        anonymous = await person.get("/review?week=2026-11-30")
        assert anonymous.status_code == 303
        assert anonymous.headers["location"] == "/login?next=%2Freview%3Fweek%3D2026-11-30"
        signed = await sign_in(person, next_="/review?week=2026-11-30")
        assert signed.status_code == 303 and signed.headers["location"] == "/review?week=2026-11-30"
        cookie = signed.headers["set-cookie"]
        assert "httponly" in cookie.lower() and "samesite=lax" in cookie.lower()
        assert "max-age=" in cookie.lower() and "secure" not in cookie.lower()  # not production
        page = await person.get("/review?week=2026-11-30")
        assert page.status_code == 200 and "Weekly SLA review" in page.text
        assert "Signed in as Ana (viewer)" in page.text
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        out = await person.post("/logout", data={"csrf_token": token})
        assert out.status_code == 303 and out.headers["location"] == "/login"
        assert (await person.get("/review")).status_code == 303


@pytest.mark.parametrize(
    "cookie",
    [
        "not-a-session",
        session_cookie({"uid": str(uuid.uuid4()), "at": int(time.time())})[:-3] + "AAA",
        "eyJ1aWQiOiAieCJ9.Zm9v.YmFy",
    ],
    ids=["garbage", "bad-signature", "forged-shape"],
)
async def test_a_tampered_cookie_is_a_new_sign_in_never_an_error(feedback, cookie):
    async with browser(feedback) as person:
        person.cookies.set("leadflow_session", cookie)
        page = await person.get("/review")
        assert page.status_code == 303 and page.headers["location"].startswith("/login?next=")
        assert (await person.get("/login")).status_code == 200


async def test_a_cookie_signed_with_another_secret_or_for_a_changed_person_is_refused(feedback):
    user_id = await make_person(feedback)
    forged = TimestampSigner("guessed-secret").sign(
        base64.b64encode(json.dumps({"uid": user_id, "at": int(time.time())}).encode())
    )
    async with browser(feedback) as person:
        person.cookies.set("leadflow_session", forged.decode())
        assert (await person.get("/review")).status_code == 303
        person.cookies.set(
            "leadflow_session", session_cookie({"uid": user_id, "at": int(time.time())})
        )
        assert (await person.get("/review")).status_code == 200  # the real secret: signed in
        await feedback.patch(f"/v1/users/{user_id}", json={"disabled": True}, headers=ADMIN)
        assert (await person.get("/review")).status_code == 303  # disabled: signed out


async def test_a_new_password_ends_the_persons_sessions_everywhere(feedback):
    user_id = await make_person(feedback)
    async with browser(feedback) as stolen, browser(feedback, "198.51.100.8") as person:
        assert (await sign_in(stolen)).status_code == 303
        assert (await stolen.get("/review")).status_code == 200
        changed = await feedback.patch(
            f"/v1/users/{user_id}", json={"password": PASSWORD + "?"}, headers=ADMIN
        )
        assert changed.status_code == 200
        assert (await stolen.get("/review")).status_code == 303  # the old session is over
        assert (await sign_in(person, password=PASSWORD + "?")).status_code == 303
        assert (await person.get("/review")).status_code == 200  # a new one works


async def test_an_expired_session_is_a_new_sign_in(feedback, settings):
    user_id = await make_person(feedback)
    max_age = settings.session_max_age
    async with browser(feedback) as person:
        # the cookie itself too old (no page for longer than the session lasts)
        person.cookies.set(
            "leadflow_session",
            session_cookie({"uid": user_id, "at": int(time.time())}, age=max_age + 5),
        )
        assert (await person.get("/review")).status_code == 303
        # a fresh cookie of a sign-in longer ago than a session lasts
        person.cookies.set(
            "leadflow_session",
            session_cookie({"uid": user_id, "at": int(time.time()) - max_age - 5}),
        )
        assert (await person.get("/review")).status_code == 303


# --- CSRF -----------------------------------------------------------------------------------


async def test_a_cross_site_post_without_the_sessions_token_is_refused(feedback):
    await make_person(feedback)
    async with browser(feedback) as person, browser(feedback, "198.51.100.1") as attacker:
        assert (await sign_in(person)).status_code == 303
        cases = {
            "login without a token": (attacker, "/login", {"email": "ana@example.com",
                                                           "password": PASSWORD}),
            "logout without a token": (person, "/logout", {}),
            "logout with another session's token": (
                person, "/logout", {"csrf_token": await form_token(attacker)}
            ),
        }  # fmt: skip
        for case, (client, path, form) in cases.items():
            refused = await client.post(path, data=form, headers={"Origin": "https://evil.test"})
            assert refused.status_code == 403, case
            assert refused.headers["content-type"] == "application/problem+json", case
            assert refused.json()["field"] == "csrf_token", case
        assert (await person.get("/review")).status_code == 200  # still signed in


# --- open redirect --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "next_",
    ["//evil.test/review", "https://evil.test/", "/\\evil.test", "javascript:alert(1)",
     "evil.test", "/\r\nLocation: https://evil.test", "\\\\evil.test"],
)  # fmt: skip
async def test_the_sign_in_sends_a_browser_nowhere_but_this_site(feedback, next_):
    await make_person(feedback)
    async with browser(feedback) as person:
        form = await person.get("/login", params={"next": next_})
        assert 'name="next" value="/review"' in form.text
        signed = await sign_in(person, next_=next_)
        assert signed.status_code == 303
        location = signed.headers["location"]
        assert location == "/review" or (location.startswith("/") and "evil" not in location)


async def test_the_sign_in_keeps_a_path_of_this_site(feedback):
    await make_person(feedback)
    async with browser(feedback) as person:
        lead = f"/review/leads/{uuid.uuid4()}"
        assert (await sign_in(person, next_=lead)).headers["location"] == lead


# --- Content-Security-Policy ----------------------------------------------------------------


async def test_every_page_carries_the_content_security_policy_and_nothing_inline(feedback):
    await make_person(feedback)
    async with browser(feedback) as person:
        pages = {"/login": await person.get("/login")}
        await sign_in(person)
        pages["/review"] = await person.get("/review")
        lead = f"/review/leads/{uuid.uuid4()}"
        pages["/review (key)"] = await feedback.get("/review", headers=ADMIN)
        for path, page in pages.items():
            assert page.status_code == 200, path
            assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY, path
            assert page.headers["x-content-type-options"] == "nosniff", path
            assert "<style" not in page.text and "style=" not in page.text, path
            assert "<script" not in page.text, path
        unknown = await person.get(lead)
        assert unknown.status_code == 404
        sheet = await person.get("/assets/leadflow.css")
        assert sheet.status_code == 200 and sheet.headers["content-type"].startswith("text/css")
    assert "style-src 'self'" in CONTENT_SECURITY_POLICY
    assert "script-src" not in CONTENT_SECURITY_POLICY  # default-src 'none': no script at all


async def test_tools_still_open_pages_with_a_key_and_get_a_challenge_without_one(feedback):
    page = await feedback.get("/review", headers=ADMIN)
    assert page.status_code == 200
    tool = await feedback.get("/review", headers=NO_KEY)
    assert tool.status_code == 401
    assert tool.headers["www-authenticate"] == 'Basic realm="Leadflow"'
