"""What a signed-in person sees follows their role, never more: feedback reads routing and notify
for a person with its pages key (`LEADFLOW_PAGES_API_KEY`) only where the person's role holds the
read's scope, and a sales manager opens only their teams' leads, another team's answering as an
unknown lead does. Routing and notify run as real processes (feedback reaches them over HTTP, as
in production); feedback runs in this process."""

import re
import uuid
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import httpx
import pytest
import sqlalchemy as sa
from leadflow_feedback.models import leads
from leadflow_tools.supervisor import ServiceProcess, start_all
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import create_async_engine
from support.harness import ADMIN, service_client

PASSWORD = "correct horse battery staple"
HTML = {"Accept": "text/html"}
CEE, ENTERPRISE = uuid.uuid4(), uuid.uuid4()


@pytest.fixture
async def services(stack, tmp_path):
    settings = await stack.isolated_settings()
    others = {
        name: ServiceProcess(name, settings, tmp_path / f"{name}.log")
        for name in ("routing", "notify")
    }
    try:
        await start_all(list(others.values()))
        wired = settings.model_copy(
            update={
                "routing_url": others["routing"].url,
                "notify_url": others["notify"].url,
                "session_secret": SecretStr("a-session-secret-for-the-tests-only-0123456789"),
                # every read scope: what a person sees is limited by their role, not the key
                "pages_api_key": SecretStr("lf_test_reader"),
            }
        )
        engine = create_async_engine(settings.database_url)
        async with service_client("feedback", wired) as feedback:
            now = datetime.now(UTC)
            async with engine.begin() as conn:
                await conn.execute(
                    sa.insert(leads),
                    [
                        {"lead_id": CEE, "team": "Inbound CEE", "updated_at": now,
                         "display_name": "Lead of CEE"},
                        {"lead_id": ENTERPRISE, "team": "Enterprise", "updated_at": now,
                         "display_name": "Lead of Enterprise"},
                    ],
                )  # fmt: skip
            await engine.dispose()
            for role, teams in (
                ("viewer", []),
                ("sales_manager", ["Inbound CEE"]),
                ("marketing_ops", []),
                ("admin", []),
            ):
                made = await feedback.post(
                    "/v1/users",
                    json={"email": f"{role}@example.com", "name": role, "role": role,
                          "teams": teams, "password": PASSWORD},
                    headers=ADMIN,
                )  # fmt: skip
                assert made.status_code == 201, made.text
            yield feedback
    finally:
        for proc in others.values():
            proc.stop()


@asynccontextmanager
async def signed_in(feedback, role: str):
    """A browser of its own, signed in through the form as the person with `role`."""
    transport = httpx.ASGITransport(app=feedback.app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://feedback", headers=HTML
    ) as client:
        form = await client.get("/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
        done = await client.post(
            "/login",
            data={"email": f"{role}@example.com", "password": PASSWORD, "csrf_token": token},
        )
        assert done.status_code == 303, done.text
        yield client


def notes(page: httpx.Response) -> list[str]:
    return re.findall(r'<p class="note">([^<]*)</p>', page.text)


async def test_a_viewer_sees_the_reports_but_not_the_configuration(services):
    async with signed_in(services, "viewer") as viewer:
        review = await viewer.get("/review")
        assert review.status_code == 200
        assert notes(review) == ["routing did not show /v1/reps: the role viewer does not show it"]
        timeline = await viewer.get(f"/review/leads/{CEE}")
        assert timeline.status_code == 200
        assert notes(timeline) == [
            "notify did not show /v1/deliveries: the role viewer does not show it"
        ]


async def test_marketing_ops_and_admins_see_rep_names_and_deliveries(services):
    for role in ("marketing_ops", "admin"):
        async with signed_in(services, role) as person:
            for path in ("/review", f"/review/leads/{CEE}", f"/review/leads/{ENTERPRISE}"):
                page = await person.get(path)
                assert page.status_code == 200, (role, path)
                assert notes(page) == [], (role, path)


async def test_a_sales_manager_opens_only_their_teams_leads(services):
    async with signed_in(services, "sales_manager") as manager:
        assert (await manager.get("/review")).status_code == 200
        own = await manager.get(f"/review/leads/{CEE}")
        assert own.status_code == 200 and "Lead of CEE" in own.text
        other = await manager.get(f"/review/leads/{ENTERPRISE}")
        unknown = await manager.get(f"/review/leads/{uuid.uuid4()}")
        assert other.status_code == unknown.status_code == 404
        assert "Lead of Enterprise" not in other.text

        def without_ids(response):
            return re.sub(r"[0-9a-f-]{36}", "<id>", response.json()["detail"])

        assert without_ids(other) == without_ids(unknown)


async def test_a_role_change_applies_at_the_next_page(services):
    async with signed_in(services, "viewer") as person:
        assert notes(await person.get("/review")) != []
        users = (await services.get("/v1/users", headers=ADMIN)).json()["items"]
        viewer_id = next(u["id"] for u in users if u["role"] == "viewer")
        await services.patch(
            f"/v1/users/{viewer_id}", json={"role": "marketing_ops"}, headers=ADMIN
        )
        assert notes(await person.get("/review")) == []
