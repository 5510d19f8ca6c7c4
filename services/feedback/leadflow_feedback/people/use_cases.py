"""What happens to people's accounts: made, changed and disabled by an admin (each change in
the audit log, never a password or its hash), signed in with a password (slowed, then locked,
after failures), found again from their session, and made on a first sign-in through the
company's identity provider."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from fastapi import Request
from leadflow import audit
from leadflow.auth import Person
from leadflow.errors import Conflict, NotFound, Unprocessable
from leadflow.paging import Page, PageRequest
from leadflow.service import Runtime
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from leadflow_feedback.domain import roles, sign_in
from leadflow_feedback.people import store
from leadflow_feedback.people.schemas import UserChange, UserIn, UserOut

log = logging.getLogger(__name__)

# argon2id with the library's defaults (RFC 9106's second recommended profile); hashes carry
# their parameters, so raising them later re-hashes each password at its next sign-in.
hasher = PasswordHasher()


@cache
def _absent_hash() -> str:
    """A hash no password matches in practice, checked when the account does not exist (or has
    no password) so that the answer takes as long as for a real one."""
    return hasher.hash(uuid.uuid4().hex)


def _now() -> datetime:
    # Wall time, not the runtime's clock: a simulated clock (the demo's) must not shorten locks
    # or sessions.
    return datetime.now(UTC)


def out(row: Any) -> UserOut:
    return UserOut(
        id=row.id, email=row.email, name=row.name, role=row.role, teams=row.teams or [],
        has_password=row.password_hash is not None, oidc_issuer=row.oidc_issuer,
        created_at=row.created_at, changed_at=row.changed_at, disabled_at=row.disabled_at,
        last_signed_in_at=row.last_signed_in_at,
    )  # fmt: skip


async def _hash(password: str) -> str:
    return await asyncio.to_thread(hasher.hash, password)


# --- accounts, by an admin ------------------------------------------------------------------


async def create_user(rt: Runtime, body: UserIn) -> UserOut:
    password = body.password.get_secret_value() if body.password else None
    password_hash = await _hash(password) if password else None
    now = _now()
    try:
        async with rt.db.unit_of_work() as session:
            row = await store.add_user(
                session, id=uuid.uuid4(), email=body.email.lower(), name=body.name,
                role=body.role, teams=body.teams, password_hash=password_hash,
                created_at=now, changed_at=now,
            )  # fmt: skip
            await audit.record(
                session, rt.spec.metadata, action="created", entity="user", entity_id=row.id,
                after=out(row),
            )  # fmt: skip
    except IntegrityError:
        raise Conflict("a person with this e-mail already exists", field="email") from None
    return out(row)


async def users(rt: Runtime, wanted: PageRequest) -> Page[UserOut]:
    async with rt.db.unit_of_work() as session:
        rows = await store.page_users(session, wanted)
    return wanted.page(rows, out)


async def user(rt: Runtime, user_id: uuid.UUID) -> UserOut:
    async with rt.db.unit_of_work() as session:
        row = await store.user_by_id(session, user_id)
    if row is None:
        raise NotFound(f"no person {user_id}", field="user_id")
    return out(row)


async def change_user(rt: Runtime, user_id: uuid.UUID, change: UserChange) -> UserOut:
    values: dict[str, Any] = change.model_dump(exclude_unset=True, exclude={"password", "disabled"})
    if any(v is None for v in values.values()):
        field = next(k for k, v in values.items() if v is None)
        raise Unprocessable(f"{field} cannot be emptied", field=field)
    if change.password is not None:
        values["password_hash"] = await _hash(change.password.get_secret_value())
        values["sessions_valid_from"] = _now()  # a new password signs the person out everywhere
    now = _now()
    async with rt.db.unit_of_work() as session:
        before = await store.user_by_id(session, user_id, lock=True)
        if before is None:
            raise NotFound(f"no person {user_id}", field="user_id")
        if change.disabled is not None:
            values["disabled_at"] = (before.disabled_at or now) if change.disabled else None
        row = await store.change_user(session, user_id, **values, changed_at=now)
        if change.password is not None or change.disabled is False:
            await store.forget_failures(session, "account", _digest(row.email))
        after = {
            **out(row).model_dump(mode="json"),
            "password_changed": change.password is not None,
        }
        await audit.record(
            session, rt.spec.metadata, action="changed", entity="user", entity_id=row.id,
            before=out(before), after=after,
        )  # fmt: skip
    return out(row)


# --- signing in with a password -------------------------------------------------------------


@dataclass(frozen=True)
class SignedIn:
    user_id: uuid.UUID


@dataclass(frozen=True)
class Refused:
    """Wrong e-mail or password (the answer does not say which)."""


@dataclass(frozen=True)
class Locked:
    until: datetime
    retry_after: int  # seconds


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _verify(password_hash: str | None, password: str) -> bool:
    try:
        return hasher.verify(password_hash or _absent_hash(), password) and bool(password_hash)
    except (VerificationError, InvalidHashError):
        return False


async def sign_in_with_password(
    rt: Runtime, email: str, password: str, address: str
) -> SignedIn | Refused | Locked:
    """Check the password under the locks of the account's and the address's failure counts;
    a failure is counted on both and its answer waits longer each time, and reaching a limit
    locks for `LEADFLOW_SIGN_IN_LOCK_SECONDS`. Known and unknown e-mails take the same path."""
    s = rt.settings
    lock = timedelta(seconds=s.sign_in_lock_seconds)
    per_account = sign_in.Limits(s.sign_in_max_failures, lock)
    per_address = sign_in.Limits(s.sign_in_max_failures_per_address, lock)
    account, client = _digest(email.strip().lower()), _digest(address)
    now = _now()
    async with rt.db.unit_of_work() as session:
        # address first, then account: every sign-in takes the two locks in the same order
        by_address = await store.failures_locked(session, "address", client, now)
        by_account = await store.failures_locked(session, "account", account, now)
        until = sign_in.locked(by_address, now) or sign_in.locked(by_account, now)
        if until is not None:
            return Locked(until, max(1, int((until - now).total_seconds())))
        row = await store.user_by_email(session, email.strip().lower())
        usable = row is not None and row.disabled_at is None
        matches = await asyncio.to_thread(_verify, row.password_hash if usable else None, password)
        if matches:
            await _signed_in(session, row, password, now)
            await store.forget_failures(session, "account", account)
            await store.forget_unfailed(session, "address", client)
            log.info("signed in", extra={"user_id": str(row.id), "method": "password"})
            return SignedIn(row.id)
        failed_account = sign_in.after_failure(by_account, now, per_account)
        failed_address = sign_in.after_failure(by_address, now, per_address)
        await store.save_failures(session, "account", account, failed_account)
        await store.save_failures(session, "address", client, failed_address)
    log.warning("sign-in refused", extra={"failures": failed_account.count})
    await asyncio.sleep(sign_in.penalty_seconds(failed_account.count))
    return Refused()


async def _signed_in(session: AsyncSession, row: Any, password: str, now: datetime) -> None:
    values: dict[str, Any] = {"last_signed_in_at": now}
    if hasher.check_needs_rehash(row.password_hash):
        values["password_hash"] = await _hash(password)
    await store.change_user(session, row.id, **values)


# --- the session's person -------------------------------------------------------------------


def start_session(request: Request, user_id: uuid.UUID) -> None:
    """A new session for the person: nothing of the one before survives (its CSRF token
    included), so a session made before the sign-in cannot be carried over."""
    request.session.clear()
    request.session.update({"uid": str(user_id), "at": time.time()})


async def person_of(rt: Runtime, request: Request) -> Person | None:
    """The person the session names, as the database has them now (a disabled person or a
    session older than `LEADFLOW_SESSION_MAX_AGE` since sign-in is no one)."""
    if "session" not in request.scope:
        return None
    uid, at = request.session.get("uid"), request.session.get("at")
    if not isinstance(uid, str) or not isinstance(at, int | float) or isinstance(at, bool):
        return None
    if time.time() - at > rt.settings.session_max_age:
        request.session.clear()
        return None
    try:
        user_id = uuid.UUID(uid)
    except ValueError:
        return None
    async with rt.db.unit_of_work() as session:
        row = await store.user_by_id(session, user_id)
    ended = row is not None and row.sessions_valid_from is not None
    if (
        row is None
        or row.disabled_at is not None
        or (ended and at < row.sessions_valid_from.timestamp())
    ):
        request.session.clear()
        return None
    return Person(row.id, row.role, roles.scopes_of(row.role), tuple(row.teams or ()))


async def name_of(rt: Runtime, person: Person) -> str:
    async with rt.db.unit_of_work() as session:
        row = await store.user_by_id(session, person.id)
    return row.name if row is not None else "?"


# --- people from the company's identity provider --------------------------------------------


async def person_from_identity(rt: Runtime, issuer: str, claims: dict[str, Any]) -> uuid.UUID:
    """The person an identity provider vouched for: found by issuer and subject (or, the first
    time, made with the role the claims give); their role follows the claims at each sign-in.
    Unprocessable when the claims give no role and no default is set, or no e-mail."""
    s = rt.settings
    role = roles.role_from_claims(
        claims, role_claim=s.oidc_role_claim, groups_claim=s.oidc_groups_claim,
        group_roles=s.oidc_group_roles, default=s.oidc_default_role,
    )  # fmt: skip
    if role is None:
        raise Unprocessable("the identity provider gave this person no Leadflow role")
    email = claims.get("email")
    if not isinstance(email, str) or "@" not in email:
        raise Unprocessable("the identity provider gave no e-mail for this person")
    subject = str(claims["sub"])
    name = str(claims.get("name") or email)
    now = _now()
    audit.actor.set(f"oidc:{issuer}")  # the provider vouched for the person and their role
    async with rt.db.unit_of_work() as session:
        row = await store.user_by_identity(session, issuer, subject)
        if row is None:
            if await store.user_by_email(session, email.lower()) is not None:
                raise Conflict("a person with this e-mail already signs in another way")
            row = await store.add_user(
                session, id=uuid.uuid4(), email=email.lower(), name=name, role=role, teams=[],
                oidc_issuer=issuer, oidc_subject=subject, created_at=now, changed_at=now,
                last_signed_in_at=now,
            )  # fmt: skip
            await audit.record(
                session, rt.spec.metadata, action="created", entity="user", entity_id=row.id,
                after=out(row),
            )  # fmt: skip
        else:
            if row.disabled_at is not None:
                raise Unprocessable("this person is disabled in Leadflow")
            changed = row.role != role
            after = await store.change_user(
                session, row.id, role=role, last_signed_in_at=now,
                **({"changed_at": now} if changed else {}),
            )  # fmt: skip
            if changed:
                await audit.record(
                    session, rt.spec.metadata, action="changed", entity="user",
                    entity_id=row.id, before=out(row), after=out(after),
                )  # fmt: skip
    log.info("signed in", extra={"user_id": str(row.id), "method": "oidc"})
    return row.id
