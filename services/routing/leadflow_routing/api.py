"""HTTP API of routing: teams, reps, rules, routing configuration, dry runs, assignments and the
leads waiting for a rep."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Response
from leadflow.auth import KEY_RESPONSES, require_scope
from leadflow.service import RuntimeDep
from leadflow.settings import ApiKeySpec

from leadflow_routing import use_cases
from leadflow_routing.schemas import (
    AssignmentOut,
    DryRunIn,
    DryRunOut,
    RepIn,
    RepOut,
    RepPatch,
    RoutingConfig,
    RoutingConfigOut,
    RuleIn,
    RuleOut,
    TeamIn,
    TeamOut,
    TeamPatch,
    WaitingOut,
)

router = APIRouter(prefix="/v1", tags=["routing"], responses=KEY_RESPONSES)
Admin = Annotated[ApiKeySpec, Depends(require_scope("admin"))]
# Teams, reps (how each is reached) and rules: what an operator configured.
ConfigRead = Depends(require_scope("config:read"))
# A lead's assignment, its decision trace and the waiting queue: no personal data of the lead.
ReportsRead = Depends(require_scope("reports:read"))


@router.post("/teams", status_code=201, response_model=TeamOut)
async def create_team(body: TeamIn, rt: RuntimeDep, _: Admin) -> TeamOut:
    return await use_cases.create_team(rt, body)


@router.patch("/teams/{team_id}", response_model=TeamOut)
async def patch_team(team_id: uuid.UUID, body: TeamPatch, rt: RuntimeDep, _: Admin) -> TeamOut:
    """Rename, change the strategy, set the team lead, the manager or the team channels."""
    return await use_cases.change_team(rt, team_id, body)


@router.get("/teams", response_model=list[TeamOut], dependencies=[ConfigRead])
async def list_teams(rt: RuntimeDep) -> list[TeamOut]:
    return await use_cases.list_teams(rt)


@router.post("/reps", status_code=201, response_model=RepOut)
async def create_rep(body: RepIn, rt: RuntimeDep, _: Admin) -> RepOut:
    return await use_cases.create_rep(rt, body)


@router.patch("/reps/{rep_id}", response_model=RepOut)
async def patch_rep(rep_id: uuid.UUID, body: RepPatch, rt: RuntimeDep, _: Admin) -> RepOut:
    """Out of office, inactive, capacity or weight changes take effect on the next lead."""
    return await use_cases.change_rep(rt, rep_id, body)


@router.post("/rules", status_code=201, response_model=RuleOut)
async def create_rule(body: RuleIn, rt: RuntimeDep, _: Admin) -> RuleOut:
    return await use_cases.create_rule(rt, body)


@router.get("/rules", response_model=list[RuleOut], dependencies=[ConfigRead])
async def list_rules(rt: RuntimeDep) -> list[RuleOut]:
    """In the order they are tried."""
    return await use_cases.list_rules(rt)


@router.delete("/rules/{rule_id}", status_code=204)
async def delete_rule(rule_id: uuid.UUID, rt: RuntimeDep, _: Admin) -> Response:
    await use_cases.delete_rule(rt, rule_id)
    return Response(status_code=204)


@router.put("/routing-config", response_model=RoutingConfigOut)
async def put_routing_config(body: RoutingConfig, rt: RuntimeDep, _: Admin) -> RoutingConfigOut:
    """Load teams, reps and rules from one document, all or nothing. Teams are matched by name,
    reps by email (else name); the document's rules replace the current ones."""
    return await use_cases.load_routing_config(rt, body)


@router.post("/routing:dry-run", response_model=DryRunOut, dependencies=[ConfigRead])
async def dry_run(body: DryRunIn, rt: RuntimeDep) -> DryRunOut:
    """Where a lead like this would go now, and why, without assigning anything."""
    return await use_cases.dry_run(rt, body)


@router.post("/leads/{lead_id}/reassign", status_code=202, response_model=AssignmentOut)
async def reassign_lead(lead_id: uuid.UUID, rt: RuntimeDep, _: Admin) -> AssignmentOut:
    """Route the lead again, away from its current rep (emits lead.routed with reason manual)."""
    return await use_cases.reassign_on_request(rt, lead_id)


@router.get("/reps", response_model=list[RepOut], dependencies=[ConfigRead])
async def list_reps(rt: RuntimeDep) -> list[RepOut]:
    return await use_cases.list_reps(rt)


@router.get("/leads/{lead_id}/assignment", response_model=AssignmentOut, dependencies=[ReportsRead])
async def get_assignment(lead_id: uuid.UUID, rt: RuntimeDep) -> AssignmentOut:
    return await use_cases.current_assignment(rt, lead_id)


@router.get("/unassigned", response_model=list[WaitingOut], dependencies=[ReportsRead])
async def list_unassigned(rt: RuntimeDep) -> list[WaitingOut]:
    """Leads no rep can take now, oldest first, each with what keeps it waiting; each is
    assigned (and `lead.routed` sent) as soon as a rep of its team becomes eligible."""
    return await use_cases.list_waiting(rt)
