"""HTTP of customer success: what customer success tools report after the signature (the
kickoff, churns, success stories; `sales:write`, as sales tools), and what is read back
(`reports:read`). The hand-off itself is the status `handed_off` on `/v1/leads/{id}/status`."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Query
from leadflow.auth import scoped_router
from leadflow.service import RuntimeDep

from leadflow_feedback.schemas import ReportDay, TeamQuery
from leadflow_feedback.success import use_cases
from leadflow_feedback.success.schemas import (
    ChurnIn,
    ChurnOut,
    CustomerSuccessOut,
    CustomerSuccessReport,
    KickoffIn,
    StoryIn,
    StoryOut,
)

reads = scoped_router("reports:read", "customer success")
writes = scoped_router("sales:write", "customer success")
routers = [reads, writes]


@writes.post("/leads/{lead_id}/onboarding/kickoff", response_model=CustomerSuccessOut)
async def post_kickoff(lead_id: uuid.UUID, body: KickoffIn, rt: RuntimeDep) -> CustomerSuccessOut:
    """The onboarding kickoff with a won customer was held (meets the 5-day kickoff clock);
    recorded once, a second report changes nothing. 409 for a lead that is not a won customer
    or churned."""
    return await use_cases.record_kickoff(rt, lead_id, body)


@writes.post("/leads/{lead_id}/churn", status_code=201, response_model=ChurnOut)
async def post_churn(lead_id: uuid.UUID, body: ChurnIn, rt: RuntimeDep) -> ChurnOut:
    """The customer left, with a `reason` from the policy's churn reasons (422 naming `reason`
    and listing them otherwise); its open onboarding clocks end. 409 when already churned."""
    return await use_cases.report_churn(rt, lead_id, body)


@writes.post("/leads/{lead_id}/success-stories", status_code=201, response_model=StoryOut)
async def post_story(lead_id: uuid.UUID, body: StoryIn, rt: RuntimeDep) -> StoryOut:
    """A won customer's success story: its title, the business outcome and the topics."""
    return await use_cases.add_story(rt, lead_id, body)


@reads.get("/leads/{lead_id}/customer-success", response_model=CustomerSuccessOut)
async def get_customer(lead_id: uuid.UUID, rt: RuntimeDep) -> CustomerSuccessOut:
    """A customer after the signature: hand-off, clocks, milestones, churn and stories."""
    return await use_cases.customer(rt, lead_id)


@reads.get("/reports/customer-success", response_model=CustomerSuccessReport)
async def get_report(
    rt: RuntimeDep,
    from_: Annotated[ReportDay | None, Query(alias="from")] = None,
    to: ReportDay | None = None,
    team: TeamQuery = None,
) -> CustomerSuccessReport:
    """What customer success feeds back over `from`..`to` (inclusive dates, the last 90 days by
    default): the hand-off, kickoff and activation clocks of the deals won in it, churn by
    reason, source and channel, the low-usage segments, and the success stories; of the
    customers routed to `team` when given."""
    return CustomerSuccessReport.model_validate(await use_cases.report(rt, from_, to, team))
