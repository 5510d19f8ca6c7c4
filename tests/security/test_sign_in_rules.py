"""The pure rules of people's sign-in: what each role may see, which role an identity provider's
claims give, when failed sign-ins slow and lock, where a sign-in may send a browser, and which
session secrets production refuses."""

from datetime import UTC, datetime, timedelta

import pytest
from leadflow.sessions import SessionSecretError, local_path, session_secret
from leadflow.settings import Settings
from leadflow_feedback.domain import roles, sign_in
from pydantic import ValidationError

NOW = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)
LIMITS = sign_in.Limits(max_failures=5, lock=timedelta(minutes=15))


@pytest.mark.parametrize(
    ("role", "scope", "allowed"),
    [
        ("viewer", "reports:read", True),
        ("viewer", "config:read", False),
        ("sales_manager", "reports:read", True),
        ("sales_manager", "config:read", False),
        ("marketing_ops", "config:read", True),
        ("marketing_ops", "leads:read", False),
        ("admin", "leads:read", True),
        ("nobody", "reports:read", False),
    ],
)
def test_each_role_holds_its_scopes(role, scope, allowed):
    assert roles.allows(role, scope) is allowed


def test_a_sales_manager_sees_only_their_teams_leads_and_others_see_every_lead():
    assert roles.may_see_lead("sales_manager", ("Inbound CEE",), "Inbound CEE")
    assert not roles.may_see_lead("sales_manager", ("Inbound CEE",), "Enterprise")
    assert not roles.may_see_lead("sales_manager", ("Inbound CEE",), None)  # not routed yet
    for role in ("viewer", "marketing_ops", "admin"):
        assert roles.may_see_lead(role, (), "Enterprise")


def test_the_role_claim_wins_then_the_strongest_group_then_the_default():
    def role(claims, default=None):
        return roles.role_from_claims(
            claims, role_claim="leadflow_role", groups_claim="groups",
            group_roles={"sales": "sales_manager", "ops": "marketing_ops", "it": "admin"},
            default=default,
        )  # fmt: skip

    assert role({"leadflow_role": "viewer", "groups": ["it"]}) == "viewer"
    assert role({"leadflow_role": "root", "groups": ["sales", "ops"]}) == "marketing_ops"
    assert role({"groups": "it"}) == "admin"
    assert role({"groups": ["unknown"]}) is None
    assert role({"groups": ["unknown"]}, default="viewer") == "viewer"
    assert role({}, default="superuser") is None


def test_failures_slow_each_answer_more_then_lock_at_the_limit():
    failures = sign_in.Failures()
    waits = []
    for n in range(1, 6):
        failures = sign_in.after_failure(failures, NOW, LIMITS)
        waits.append(sign_in.penalty_seconds(failures.count))
        assert failures.count == n
    assert waits == sorted(waits) and waits[0] < waits[-1] <= sign_in.PENALTY_MAX
    assert sign_in.locked(failures, NOW) == NOW + LIMITS.lock
    assert sign_in.locked(failures, NOW + LIMITS.lock) is None


def test_old_failures_are_forgotten_and_a_lock_ends():
    four = sign_in.Failures(4, NOW, None)
    later = sign_in.after_failure(four, NOW + timedelta(minutes=16), LIMITS)
    assert later.count == 1 and later.locked_until is None
    ended = sign_in.Failures(5, NOW, NOW + LIMITS.lock)
    again = sign_in.after_failure(ended, NOW + LIMITS.lock + timedelta(seconds=1), LIMITS)
    assert again.count == 1 and again.locked_until is None


@pytest.mark.parametrize(
    ("candidate", "expected"),
    [
        ("/review?week=2026-11-30", "/review?week=2026-11-30"),
        ("/review/leads/abc", "/review/leads/abc"),
        ("//evil.test", "/review"),
        ("/\\evil.test", "/review"),
        ("https://evil.test/review", "/review"),
        ("javascript:alert(1)", "/review"),
        ("review", "/review"),
        ("/review\r\nSet-Cookie: x=1", "/review"),
        (None, "/review"),
        ("", "/review"),
    ],
)
def test_a_sign_in_goes_on_only_to_a_path_of_this_site(candidate, expected):
    assert local_path(candidate) == expected


@pytest.mark.parametrize("secret", ["short", "a" * 64, "abcabcabcabcabcabcabcabcabcabcabcabc"])
def test_production_refuses_a_weak_session_secret(secret):
    with pytest.raises(ValidationError, match="session_secret"):
        Settings(env="production", api_keys=[], session_secret=secret)


def test_feedback_refuses_to_sign_sessions_in_production_without_a_secret(tmp_path):
    with pytest.raises(SessionSecretError, match="required in production"):
        session_secret(Settings(env="production", api_keys=[]))
    weak = tmp_path / "secret"
    weak.write_text("password\n")
    with pytest.raises(SessionSecretError, match="weak"):
        session_secret(Settings(env="production", api_keys=[], session_secret_file=str(weak)))
    with pytest.raises(SessionSecretError, match="cannot be read"):
        session_secret(Settings(env="production", api_keys=[], session_secret_file="/nonexistent"))
    # elsewhere a random secret of the process: sessions end when it stops
    assert session_secret(Settings(env="development")) != session_secret(Settings())


def test_production_takes_a_strong_session_secret():
    strong = "q8Xv2mP4rT9wZ1yL6nB3cF7hJ0kD5sGa"
    assert Settings(env="production", api_keys=[], session_secret=strong).session_secret
