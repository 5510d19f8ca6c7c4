"""Feedback's review pages read routing's reps and decision trace and notify's deliveries over
their HTTP APIs with the key the page was opened with: a viewer sees there only what their own
key may read, and a page never opens another service's data to a key that could not read it.

Routing and notify run as real processes on their own ports (feedback reaches them over HTTP,
as in production); feedback runs in this process."""

import base64
import html
from contextlib import AsyncExitStack

import httpx
import pytest
from leadflow.settings import DEV_API_KEY
from leadflow_tools.supervisor import ServiceProcess, start_all
from support.harness import ADMIN, REPORTS_READER, service_client


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"reviewer:{key}".encode()).decode()}


@pytest.fixture
async def reading_services(stack, tmp_path):
    settings = await stack.isolated_settings()
    others = {
        name: ServiceProcess(name, settings, tmp_path / f"{name}.log")
        for name in ("routing", "notify")
    }
    try:
        await start_all(list(others.values()))
        wired = settings.model_copy(
            update={"routing_url": others["routing"].url, "notify_url": others["notify"].url}
        )
        async with AsyncExitStack() as clients:
            feedback = await clients.enter_async_context(service_client("feedback", wired))
            async with httpx.AsyncClient(timeout=10) as http:
                rep = await http.post(
                    f"{others['routing'].url}/v1/reps",
                    json={"name": "Rep Visible", "email": "rep.visible@vendor.example"},
                    headers=ADMIN,
                )
                assert rep.status_code == 201, rep.text
            yield feedback, others
    finally:
        for proc in others.values():
            proc.stop()


async def test_the_review_page_reads_routing_with_its_viewers_key(reading_services):
    feedback, _ = reading_services

    async def page_with(headers) -> str:
        page = await feedback.get("/review", headers=headers)
        assert page.status_code == 200, page.text
        return html.unescape(page.text)

    # the admin key, as a bearer token or as a browser's Basic password, reads the reps
    for headers in (ADMIN, basic(DEV_API_KEY)):
        full = await page_with(headers)
        assert "did not show" not in full and "did not answer" not in full
    # a reports:read key opens the page; routing refuses it the reps, and the page says why
    partial = await page_with(REPORTS_READER)
    assert "routing did not show /v1/reps" in partial
    assert "lacks the scope config:read" in partial
    # which is what routing answers that key directly
    routing = reading_services[1]["routing"].url
    async with httpx.AsyncClient(timeout=10) as http:
        direct = await http.get(f"{routing}/v1/reps", headers=REPORTS_READER)
    assert direct.status_code == 403 and direct.json()["scope"] == "config:read"
