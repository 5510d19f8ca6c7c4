"""HTTP of people's accounts: `/v1/users` for admins (an admin key), and the sign-in and
sign-out pages (`/login`, `/logout`, `/login/oidc`), which are outside the OpenAPI document:
they are forms for browsers, not an API."""

from __future__ import annotations

import uuid
from datetime import UTC
from importlib.resources import files
from typing import Annotated
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from leadflow import paging
from leadflow.auth import KEY_RESPONSES, Caller, Person, require_scope
from leadflow.paging import Page, PageRequest
from leadflow.service import RuntimeDep
from leadflow.sessions import CSRF_FIELD, check_csrf, csrf_token, local_path

from leadflow_feedback.domain.review import templates
from leadflow_feedback.people import oidc, store, use_cases
from leadflow_feedback.people.schemas import UserChange, UserIn, UserOut

users = APIRouter(
    prefix="/v1",
    tags=["users"],
    responses=KEY_RESPONSES,
    dependencies=[Depends(require_scope("admin"))],
)
sign_in = APIRouter(include_in_schema=False)
UserPage = Annotated[PageRequest, Depends(paging.query(store.USERS))]

STYLESHEET = files("leadflow_feedback").joinpath("templates/leadflow.css").read_text()


async def signed_in(request: Request, rt: RuntimeDep) -> Person | None:
    """The person of the request's session, if any (the pages' `require_page` asks it)."""
    return await use_cases.person_of(rt, request)


async def account_bar(rt, request: Request, viewer: Caller | Person) -> dict | None:
    """What a page's header shows a signed-in person: who they are and how to sign out."""
    if not isinstance(viewer, Person):
        return None
    name = await use_cases.name_of(rt, viewer)
    return {"name": name, "role": viewer.role, "csrf_token": csrf_token(request)}


@users.post("/users", status_code=201, response_model=UserOut)
async def create_user(body: UserIn, rt: RuntimeDep) -> UserOut:
    """Make a person's account: a role, a sales manager's teams, and a local password or none
    (then the person signs in with the company's identity provider). Audited, without the
    password."""
    return await use_cases.create_user(rt, body)


@users.get("/users", response_model=Page[UserOut])
async def list_users(rt: RuntimeDep, wanted: UserPage) -> Page[UserOut]:
    """Everyone who may sign in, disabled people included (`disabled=false`: only the others);
    never a password or its hash. Cursor-paginated as every list."""
    return await use_cases.users(rt, wanted)


@users.get("/users/{user_id}", response_model=UserOut)
async def get_user(user_id: uuid.UUID, rt: RuntimeDep) -> UserOut:
    return await use_cases.user(rt, user_id)


@users.patch("/users/{user_id}", response_model=UserOut)
async def change_user(user_id: uuid.UUID, body: UserChange, rt: RuntimeDep) -> UserOut:
    """Change a person's name, role, teams or password, or disable them (`disabled: true`:
    they can no longer sign in and their open sessions end at their next page); a new password
    or enabling again lifts a lock of failed sign-ins, and a new password ends the person's
    sessions everywhere. Audited, without the password."""
    return await use_cases.change_user(rt, user_id, body)


# --- the sign-in pages ----------------------------------------------------------------------


def _login_page(
    request: Request, rt, *, next_: str, email: str = "", problem: str | None = None, status=200
) -> HTMLResponse:
    page = templates.get_template("login.html").render(
        csrf_token=csrf_token(request),
        next=next_,
        email=email,
        problem=problem,
        oidc=oidc.configured(rt.settings),
        account=None,
    )
    return HTMLResponse(page, status_code=status)


@sign_in.get("/assets/leadflow.css")
async def stylesheet() -> Response:
    return Response(
        STYLESHEET, media_type="text/css", headers={"Cache-Control": "public, max-age=3600"}
    )


@sign_in.get("/login", response_class=HTMLResponse)
async def login_form(
    request: Request, rt: RuntimeDep, next_: Annotated[str | None, Query(alias="next")] = None
) -> HTMLResponse:
    return _login_page(request, rt, next_=local_path(next_))


async def _form(request: Request) -> dict[str, str]:
    """The urlencoded form's fields (the body size is capped by the app factory)."""
    body = (await request.body()).decode("utf-8", errors="replace")
    return {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}


@sign_in.post("/login", response_class=HTMLResponse)
async def login(request: Request, rt: RuntimeDep) -> Response:
    """Check the e-mail and password: a session and back to `next` (a path of this site only),
    or the form again with one answer for a wrong e-mail and a wrong password alike."""
    form = await _form(request)
    check_csrf(request, form.get(CSRF_FIELD))
    next_ = local_path(form.get("next"))
    email, password = form.get("email", "")[:320], form.get("password", "")[:1024]
    address = request.client.host if request.client else "unknown"
    outcome = await use_cases.sign_in_with_password(rt, email, password, address)
    if isinstance(outcome, use_cases.SignedIn):
        use_cases.start_session(request, outcome.user_id)
        return RedirectResponse(next_, status_code=303)
    if isinstance(outcome, use_cases.Locked):
        until = outcome.until.astimezone(UTC).strftime("%H:%M UTC")
        problem = f"Too many failed sign-ins: try again after {until}."
        response = _login_page(request, rt, next_=next_, email=email, problem=problem, status=429)
        response.headers["Retry-After"] = str(outcome.retry_after)
        return response
    problem = "The e-mail or the password is wrong."
    return _login_page(request, rt, next_=next_, email=email, problem=problem, status=401)


@sign_in.post("/logout")
async def logout(request: Request) -> Response:
    form = await _form(request)
    check_csrf(request, form.get(CSRF_FIELD))
    request.session.clear()
    return RedirectResponse("/login", status_code=303)


@sign_in.get("/login/oidc")
async def login_with_identity_provider(
    request: Request, rt: RuntimeDep, next_: Annotated[str | None, Query(alias="next")] = None
) -> Response:
    """Off to the company's identity provider (authorization code with PKCE)."""
    return await oidc.start(rt, request, local_path(next_))


@sign_in.get("/login/oidc/callback", name="oidc_callback")
async def identity_provider_answered(request: Request, rt: RuntimeDep) -> Response:
    """The identity provider's answer: the code exchanged, the ID token checked, a session."""
    user_id, next_ = await oidc.finish(rt, request)
    use_cases.start_session(request, user_id)
    return RedirectResponse(next_, status_code=303)
