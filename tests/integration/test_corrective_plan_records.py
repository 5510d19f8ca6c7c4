"""Corrective plans through the real broker and PostgreSQL: sla-timer's period judgement says a
party owes a plan (`sla.corrective_plan_required` on leadflow.sla), feedback opens its record,
owned by the party's owner and due 30 days on; actions are added, overdue ones are named, and
the plan moves to done; every change is audited. The quarterly review reads the commitments per
quarter with the policy versions published in each."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
import yaml
from leadflow.contracts.events import (
    TOPIC_ROUTING,
    TOPIC_SCORING,
    TOPIC_SLA,
    LeadCompany,
    LeadMql,
    LeadRouted,
    LeadSource,
    SlaCorrectivePlanRequired,
)
from leadflow_sla_timer import use_cases as sla_use_cases
from leadflow_sla_timer.models import mqls, period_evaluations
from support.harness import (
    ADMIN,
    REPORTS_READER,
    SALES,
    eventually,
    publish_events,
    service_client,
)

START = datetime(2026, 11, 10, 9, 0, tzinfo=UTC)
POLICY_TEXT = (
    Path(__file__).parents[2] / "shared/leadflow/contracts/policy_default.yaml"
).read_text()


def mql(lead: uuid.UUID, at: datetime) -> LeadMql:
    return LeadMql(
        lead_id=lead, fit=100, engagement=60, intent_tier=2,
        source=LeadSource(channel="inbound", campaign="q3-webinar", medium="webinar",
                          lead_magnet="roi-guide"),
        company=LeadCompany(name="Example Robotics", industry="software", employees=400),
        role="decision_maker", intent_note="wants a demo",
        key_activities=[{"type": "demo_request", "at": at.isoformat()}], promoted_at=at,
    )  # fmt: skip


def routed(lead: uuid.UUID, at: datetime) -> LeadRouted:
    return LeadRouted(lead_id=lead, assignment_id=uuid.uuid4(), team_id=None, team="emea",
                      rep_id=None, routed_at=at)  # fmt: skip


def owed(period_id: uuid.UUID, party: str, streak: int, missed: list[str]):
    return SlaCorrectivePlanRequired(
        lead_id=period_id,
        party=party,
        period_start=datetime(2026, 9 + streak - 2, 1, tzinfo=UTC),
        period_end=datetime(2026, 10 + streak - 2, 1, tzinfo=UTC),
        consecutive_misses=streak,
        missed=missed,
    )


async def test_a_missed_streak_opens_one_plan_that_is_worked_through_actions(stack):
    settings = await stack.isolated_settings(clock_start=START)
    october, november = uuid.uuid4(), uuid.uuid4()
    async with service_client("feedback", settings) as feedback:
        await publish_events(settings, TOPIC_SLA, [owed(october, "marketing", 2, ["source_mix"])])

        async def listed():
            r = await feedback.get("/v1/plans", headers=REPORTS_READER)
            return r.json()["items"] if r.status_code == 200 else None

        [plan] = await eventually(listed, timeout=60)
        assert plan["id"] == str(october)
        assert (plan["party"], plan["owner"], plan["status"]) == (
            "marketing",
            "head of marketing",
            "open",
        )
        opened = datetime.fromisoformat(plan["opened_at"])
        assert datetime.fromisoformat(plan["due_at"]) == opened + timedelta(days=30)
        assert plan["missed"] == ["source_mix"]

        # The streak goes on: the next period is linked to the same plan, with what it missed.
        await publish_events(settings, TOPIC_SLA, [owed(november, "marketing", 3, ["mql_volume"])])

        async def linked():
            r = await feedback.get(f"/v1/plans/{october}", headers=REPORTS_READER)
            body = r.json()
            return body if len(body["periods"]) == 2 else None

        body = await eventually(linked, timeout=60)
        assert body["missed"] == ["source_mix", "mql_volume"]
        assert [p["period_id"] for p in body["periods"]] == [str(october), str(november)]
        assert len((await feedback.get("/v1/plans", headers=REPORTS_READER)).json()["items"]) == 1

        # Actions: a reader may not add one; an admin adds one already overdue and one not.
        action = {"description": "raise the PPC budget for the webinar series"}
        refused = await feedback.post(f"/v1/plans/{october}/actions", json=action,
                                      headers=REPORTS_READER)  # fmt: skip
        assert refused.status_code == 403
        late = await feedback.post(
            f"/v1/plans/{october}/actions",
            json={**action, "due_at": (START - timedelta(days=1)).isoformat()},
            headers=ADMIN,
        )
        assert late.status_code == 201, late.text
        assert late.json()["overdue"] is True
        assert late.json()["owner"] == "head of marketing"
        later = await feedback.post(
            f"/v1/plans/{october}/actions",
            json={"description": "review channel efficiency", "owner": "demand generation"},
            headers=ADMIN,
        )
        assert later.json()["overdue"] is False
        assert later.json()["due_at"] == plan["due_at"]

        done = await feedback.patch(
            f"/v1/plans/{october}/actions/{late.json()['id']}", json={"done": True}, headers=ADMIN
        )
        assert (done.json()["done"], done.json()["overdue"]) == (True, False)
        bad = await feedback.patch(f"/v1/plans/{october}", json={"status": "closed"},
                                   headers=ADMIN)  # fmt: skip
        assert bad.status_code == 422
        closed = await feedback.patch(f"/v1/plans/{october}", json={"status": "done"},
                                      headers=ADMIN)  # fmt: skip
        assert closed.json()["status"] == "done"
        reopened = await feedback.patch(f"/v1/plans/{october}", json={"status": "open"},
                                        headers=ADMIN)  # fmt: skip
        assert reopened.status_code == 422

        audit = await feedback.get("/v1/audit", params={"entity": "corrective-plan"}, headers=ADMIN)
        assert audit.status_code == 200, audit.text
        assert sorted(e["action"] for e in audit.json()["items"]) == ["changed", "created"]
        changes = await feedback.get(
            "/v1/audit", params={"entity": "corrective-plan-action"}, headers=ADMIN
        )
        assert sorted(e["action"] for e in changes.json()["items"]) == [
            "changed", "created", "created",
        ]  # fmt: skip


QUALIFIED = {"problem": True, "impact": True, "authority": True}


async def opportunity(feedback, settings, *, sqo_at: datetime, value: int, won=None) -> uuid.UUID:
    """A lead promoted and routed on 1 September, an SQO of `value` EUR at `sqo_at`, and won
    (`won`: the instant and the won value) when given."""
    lead, september = uuid.uuid4(), datetime(2026, 9, 1, 9, tzinfo=UTC)
    await publish_events(settings, TOPIC_SCORING, [mql(lead, september)])
    await publish_events(settings, TOPIC_ROUTING, [routed(lead, september + timedelta(hours=1))])

    async def routed_here() -> bool:
        answer = await feedback.get(f"/v1/leads/{lead}/lifecycle", headers=REPORTS_READER)
        return answer.status_code == 200 and answer.json()["status"] == "routed"

    await eventually(routed_here)
    deal = {"value": value, "currency": "EUR", "stage": "proposal", "close_date": "2026-12-31"}
    steps = [("sal", september + timedelta(days=1), {}),
             ("sql", september + timedelta(days=2), {"qualification": QUALIFIED}),
             ("sqo", sqo_at, {"opportunity": deal})]  # fmt: skip
    if won is not None:
        steps.append(("won", won[0], {"opportunity": {"value": won[1], "currency": "EUR"}}))
    for status, at, extra in steps:
        body = {"status": status, "occurred_at": at.isoformat(), **extra}
        answer = await feedback.post(f"/v1/leads/{lead}/status", json=body, headers=SALES)
        assert answer.status_code == 200, answer.text
    return lead


async def test_the_quarter_view_lists_each_quarter_and_the_policy_published_in_it(stack):
    settings = await stack.isolated_settings(clock_start=START)
    text = (Path(__file__).parents[2] / "shared/leadflow/contracts/policy_default.yaml").read_text()
    default_version = yaml.safe_load(text)["version"]
    owners = text.replace(f'version: "{default_version}"', 'version: "2026.11-owners"', 1)
    owners = owners.replace("marketing: head of marketing", "marketing: CMO", 1)
    async with service_client("feedback", settings) as feedback:
        draft = await feedback.post("/v1/policy/versions", content=owners,
                                    headers={**ADMIN, "Content-Type": "application/yaml"})  # fmt: skip
        assert draft.status_code == 201, draft.text
        number = draft.json()["number"]
        published = await feedback.post(f"/v1/policy/versions/{number}/publish", headers=ADMIN)
        assert published.status_code == 200, published.text
        # Q3: an SQO of 50,000 EUR still open, one of 30,000 won on 5 October for 120,000 EUR
        await opportunity(feedback, settings, sqo_at=datetime(2026, 9, 10, tzinfo=UTC),
                          value=50_000)  # fmt: skip
        await opportunity(feedback, settings, sqo_at=datetime(2026, 9, 20, tzinfo=UTC),
                          value=30_000, won=(datetime(2026, 10, 5, tzinfo=UTC), 120_000))  # fmt: skip

        report = await feedback.get(
            "/v1/reports/sla", params={"period": "quarter"}, headers=REPORTS_READER
        )
        assert report.status_code == 200, report.text
        body = report.json()
        assert body["granularity"] == "quarter"
        assert [p["quarter"] for p in body["periods"]] == [
            "2026-Q1", "2026-Q2", "2026-Q3", "2026-Q4",
        ]  # fmt: skip
        q4 = body["periods"][-1]
        assert q4["marketing"]["mql_volume"]["plan"] == 1500
        assert "2026.11-owners" in [c["version"] for c in q4["policy_changes"]]
        assert all(p["policy_changes"] == [] for p in body["periods"][:3])
        # revenue: a quarter's goal is 3 × 100,000 EUR; Q4 won one deal of 120,000 (40 %); at
        # Q3's end both SQOs were open (80,000), in Q4 so far the one still open (50,000)
        money = {p["quarter"]: p for p in body["revenue"]["periods"]}
        assert body["revenue"]["goal_per_month"] == 100_000
        q3, q4 = money["2026-Q3"], money["2026-Q4"]
        assert (q4["won"], q4["deals"], q4["goal"], q4["attainment"]) == (120_000, 1, 300_000, 0.4)
        assert (q3["won"], q3["deals"]) == (0, 0)
        assert (q3["pipeline_at_end"]["value"], q3["pipeline_at_end"]["deals"]) == (80_000, 2)
        assert q3["pipeline_at_end"]["ended"] is True
        assert (q4["pipeline_at_end"]["value"], q4["pipeline_at_end"]["ended"]) == (50_000, False)
        assert money["2026-Q1"]["pipeline_at_end"] == {
            "value": 0, "deals": 0, "as_of": money["2026-Q1"]["end"], "ended": True,
        }  # fmt: skip

        as_csv = await feedback.get(
            "/v1/reports/sla", params={"period": "quarter", "format": "csv"}, headers=REPORTS_READER
        )
        assert "policy_change," in as_csv.text and "2026.11-owners" in as_csv.text
        assert f"{q4['start']},{q4['end']},,revenue_won,EUR,120000" in as_csv.text
        assert f"{q4['start']},{q4['end']},,won_deals,,1," in as_csv.text
        assert f"{q3['start']},{q3['end']},,pipeline_at_end,EUR,80000" in as_csv.text

        page = await feedback.get("/review/quarter")
        assert page.status_code == 200, page.text
        assert 'data-quarter="2026-Q4"' in page.text and "2026.11-owners" in page.text
        revenue_table = page.text[page.text.index('id="quarter-revenue"') :]
        assert 'data-figure="won_deals" data-value="1"' in revenue_table
        assert 'data-figure="pipeline_at_end" data-value="80000' in revenue_table
        assert "3 × the policy&#39;s goal per month" in page.text


async def test_sla_timer_and_the_report_judge_the_same_commitments_and_the_plan_opens(
    stack, tmp_path
):
    """Two months of marketing below plan, judged by sla-timer on simulated time: feedback opens
    marketing's plan from the broker, and its monthly report judges the same commitments of the
    same month, with the same ones missed."""
    data = yaml.safe_load(POLICY_TEXT)
    data["version"] = "2026.09-small-plan"
    data["commitments"]["marketing"]["mql_plan_per_month"] = 4
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump(data))
    september = datetime(2026, 9, 10, 12, tzinfo=UTC)
    november = datetime(2026, 11, 10, 12, tzinfo=UTC)
    settings = await stack.isolated_settings(
        clock_start=september, clock_speed=1.0, clock_anchor=time.time(), policy_file=str(policy)
    )
    leads = {uuid.uuid4(): september, uuid.uuid4(): datetime(2026, 10, 7, 8, tzinfo=UTC)}
    async with service_client("sla-timer", settings) as sla:
        rt = sla.app.state.runtime
        await publish_events(settings, TOPIC_SCORING, [mql(i, at) for i, at in leads.items()])
        await publish_events(settings, TOPIC_ROUTING, [routed(i, at) for i, at in leads.items()])

        async def recorded() -> bool:
            async with rt.db.unit_of_work() as session:
                return await session.scalar(sa.select(sa.func.count()).select_from(mqls)) == 2

        await eventually(recorded, timeout=60)

    later = settings.model_copy(
        update={"clock_anchor": settings.clock_anchor - (november - september).total_seconds()}
    )
    async with (
        service_client("sla-timer", later) as sla,
        service_client("feedback", later) as feedback,
    ):
        assert await sla_use_cases.evaluate_due(sla.app.state.runtime) == 4

        async def opened():
            r = await feedback.get("/v1/plans", params={"party": "marketing"},
                                   headers=REPORTS_READER)  # fmt: skip
            return r.json()["items"] or None

        [plan] = await eventually(opened, timeout=60)
        async with sla.app.state.runtime.db.unit_of_work() as session:
            judged = {
                (row.party, row.period_start.date().isoformat()): row
                for row in (await session.execute(sa.select(period_evaluations))).all()
            }
        october = judged[("marketing", "2026-09-30")]  # local midnight of 1 October, in UTC
        assert plan["id"] == str(october.id)
        assert plan["missed"] == october.missed

        async def monthly():
            r = await feedback.get("/v1/reports/sla", params={"granularity": "month",
                                   "from": "2026-10-01", "to": "2026-10-31"},
                                   headers=REPORTS_READER)  # fmt: skip
            body = r.json()
            return body if body["periods"][-1]["mql"] == 1 else None

        period = (await eventually(monthly, timeout=60))["periods"][-1]
        for party in ("marketing", "sales"):
            names = [f["commitment"] for f in judged[(party, "2026-09-30")].figures]
            assert names == [
                k for k, v in period[party].items() if isinstance(v, dict) and "met" in v
            ]
        # one MQL of 4 planned, all from webinars against 40/30/30: volume and mix missed in both
        assert october.missed == ["mql_volume", "source_mix"]
        assert period["marketing"]["missed"] == october.missed
