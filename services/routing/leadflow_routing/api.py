"""HTTP API of routing: teams, reps, rules, account owners, routing configuration, dry runs,
assignments, worklists and the leads waiting for a rep. Every list pages the same way
(leadflow.paging)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response
from leadflow import paging
from leadflow.auth import KEY_RESPONSES, require_scope
from leadflow.paging import Page, PageRequest
from leadflow.service import RuntimeDep
from leadflow.settings import ApiKeySpec

from leadflow_routing import store, use_cases
from leadflow_routing.schemas import (
    AccountIn,
    AccountOut,
    AccountPatch,
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
    RulePatch,
    TeamIn,
    TeamOut,
    TeamPatch,
    WaitingOut,
    WorkItem,
)

router = APIRouter(prefix="/v1", tags=["routing"], responses=KEY_RESPONSES)
Admin = Annotated[ApiKeySpec, Depends(require_scope("admin"))]
# Teams, reps (how each is reached), rules and account owners: what an operator configured.
ConfigRead = Depends(require_scope("config:read"))
# A lead's assignment, its decision trace, the worklists and the waiting queue: no personal
# data of the lead.
ReportsRead = Depends(require_scope("reports:read"))
# 409 of a deletion: what still uses the thing, named.
IN_USE = {
    409: {"description": "still in use: `detail` names what uses it, `uses` counts each kind"}
}
Domain = Annotated[str, Path(min_length=3, max_length=253, description="the account's domain")]

TeamPage = Annotated[PageRequest, Depends(paging.query(store.TEAMS))]
RepPage = Annotated[PageRequest, Depends(paging.query(store.REPS))]
RulePage = Annotated[PageRequest, Depends(paging.query(store.RULES))]
AccountPage = Annotated[PageRequest, Depends(paging.query(store.ACCOUNTS))]
WaitingPage = Annotated[PageRequest, Depends(paging.query(store.WAITING))]
WorkPage = Annotated[PageRequest, Depends(paging.query(store.WORKLIST))]

# --- teams ----------------------------------------------------------------------------------


@router.post("/teams", status_code=201, response_model=TeamOut)
async def create_team(body: TeamIn, rt: RuntimeDep, _: Admin) -> TeamOut:
    return await use_cases.create_team(rt, body)


@router.get("/teams", response_model=Page[TeamOut], dependencies=[ConfigRead])
async def list_teams(rt: RuntimeDep, wanted: TeamPage) -> Page[TeamOut]:
    return await use_cases.list_teams(rt, wanted)


@router.get("/teams/{team_id}", response_model=TeamOut, dependencies=[ConfigRead])
async def get_team(team_id: uuid.UUID, rt: RuntimeDep) -> TeamOut:
    return await use_cases.get_team(rt, team_id)


@router.patch("/teams/{team_id}", response_model=TeamOut)
async def patch_team(team_id: uuid.UUID, body: TeamPatch, rt: RuntimeDep, _: Admin) -> TeamOut:
    """Rename, change the strategy or the calendar, set the team lead, the manager or the team
    channels."""
    return await use_cases.change_team(rt, team_id, body)


@router.delete("/teams/{team_id}", status_code=204, responses=IN_USE)
async def delete_team(team_id: uuid.UUID, rt: RuntimeDep, _: Admin) -> Response:
    """Only a team without reps, rules, accounts, open or waiting leads (409 names them); the
    fallback team stays."""
    await use_cases.delete_team(rt, team_id)
    return Response(status_code=204)


@router.get("/teams/{team_id}/worklist", response_model=Page[WorkItem], dependencies=[ReportsRead])
async def team_worklist(team_id: uuid.UUID, rt: RuntimeDep, wanted: WorkPage) -> Page[WorkItem]:
    """The team's leads in open work with their SLA clock due first: overdue first, then by
    time left (`sort=due_at`, the default), leads with no open clock last."""
    return await use_cases.worklist(rt, wanted, team_id=team_id)


# --- reps -----------------------------------------------------------------------------------


@router.post("/reps", status_code=201, response_model=RepOut)
async def create_rep(body: RepIn, rt: RuntimeDep, _: Admin) -> RepOut:
    return await use_cases.create_rep(rt, body)


@router.get("/reps", response_model=Page[RepOut], dependencies=[ConfigRead])
async def list_reps(rt: RuntimeDep, wanted: RepPage) -> Page[RepOut]:
    return await use_cases.list_reps(rt, wanted)


@router.get("/reps/{rep_id}", response_model=RepOut, dependencies=[ConfigRead])
async def get_rep(rep_id: uuid.UUID, rt: RuntimeDep) -> RepOut:
    return await use_cases.get_rep(rt, rep_id)


@router.patch("/reps/{rep_id}", response_model=RepOut)
async def patch_rep(rep_id: uuid.UUID, body: RepPatch, rt: RuntimeDep, _: Admin) -> RepOut:
    """Out of office (until when: it ends by itself), inactive, capacity, weight, hours or team
    changes take effect on the next lead."""
    return await use_cases.change_rep(rt, rep_id, body)


@router.delete("/reps/{rep_id}", status_code=204, responses=IN_USE)
async def delete_rep(rep_id: uuid.UUID, rt: RuntimeDep, _: Admin) -> Response:
    """Only a rep without leads in open work or accounts (409 names them)."""
    await use_cases.delete_rep(rt, rep_id)
    return Response(status_code=204)


@router.get("/reps/{rep_id}/worklist", response_model=Page[WorkItem], dependencies=[ReportsRead])
async def rep_worklist(rep_id: uuid.UUID, rt: RuntimeDep, wanted: WorkPage) -> Page[WorkItem]:
    """The rep's leads in open work with their SLA clock due first: overdue first, then by time
    left (`sort=due_at`, the default), leads with no open clock last."""
    return await use_cases.worklist(rt, wanted, rep_id=rep_id)


# --- rules ----------------------------------------------------------------------------------


@router.post("/rules", status_code=201, response_model=RuleOut)
async def create_rule(body: RuleIn, rt: RuntimeDep, _: Admin) -> RuleOut:
    return await use_cases.create_rule(rt, body)


@router.get("/rules", response_model=Page[RuleOut], dependencies=[ConfigRead])
async def list_rules(rt: RuntimeDep, wanted: RulePage) -> Page[RuleOut]:
    """In the order they are tried by default (`sort=priority`)."""
    return await use_cases.list_rules(rt, wanted)


@router.get("/rules/{rule_id}", response_model=RuleOut, dependencies=[ConfigRead])
async def get_rule(rule_id: uuid.UUID, rt: RuntimeDep) -> RuleOut:
    return await use_cases.get_rule(rt, rule_id)


@router.patch("/rules/{rule_id}", response_model=RuleOut)
async def patch_rule(rule_id: uuid.UUID, body: RulePatch, rt: RuntimeDep, _: Admin) -> RuleOut:
    return await use_cases.change_rule(rt, rule_id, body)


@router.delete("/rules/{rule_id}", status_code=204)
async def delete_rule(rule_id: uuid.UUID, rt: RuntimeDep, _: Admin) -> Response:
    await use_cases.delete_rule(rt, rule_id)
    return Response(status_code=204)


# --- account owners -------------------------------------------------------------------------


@router.post("/accounts", status_code=201, response_model=AccountOut, responses=IN_USE)
async def create_account(body: AccountIn, rt: RuntimeDep, _: Admin) -> AccountOut:
    """Give an account (a company domain) an owner: its leads go to that rep first."""
    return await use_cases.create_account(rt, body)


@router.get("/accounts", response_model=Page[AccountOut], dependencies=[ConfigRead])
async def list_accounts(rt: RuntimeDep, wanted: AccountPage) -> Page[AccountOut]:
    return await use_cases.list_accounts(rt, wanted)


@router.get("/accounts/{domain}", response_model=AccountOut, dependencies=[ConfigRead])
async def get_account(domain: Domain, rt: RuntimeDep) -> AccountOut:
    return await use_cases.get_account(rt, domain)


@router.patch("/accounts/{domain}", response_model=AccountOut)
async def patch_account(domain: Domain, body: AccountPatch, rt: RuntimeDep, _: Admin) -> AccountOut:
    return await use_cases.change_account(rt, domain, body)


@router.delete("/accounts/{domain}", status_code=204)
async def delete_account(domain: Domain, rt: RuntimeDep, _: Admin) -> Response:
    """The account's next lead is routed by rule, and its rep becomes the owner."""
    await use_cases.delete_account(rt, domain)
    return Response(status_code=204)


# --- the routing file, dry runs, assignments, the waiting queue ----------------------------


@router.put("/routing-config", response_model=RoutingConfigOut)
async def put_routing_config(body: RoutingConfig, rt: RuntimeDep, _: Admin) -> RoutingConfigOut:
    """Load teams, reps, rules and account owners from one document, all or nothing. Teams are
    matched by name, reps by email (else name); the document's rules replace the current ones;
    each account listed gets the owner named."""
    return await use_cases.load_routing_config(rt, body)


@router.post("/routing:dry-run", response_model=DryRunOut, dependencies=[ConfigRead])
async def dry_run(body: DryRunIn, rt: RuntimeDep) -> DryRunOut:
    """Where a lead like this would go now, and why, without assigning anything."""
    return await use_cases.dry_run(rt, body)


@router.post("/leads/{lead_id}/reassign", status_code=202, response_model=AssignmentOut)
async def reassign_lead(lead_id: uuid.UUID, rt: RuntimeDep, _: Admin) -> AssignmentOut:
    """Route the lead again, away from its current rep (emits lead.routed with reason manual)."""
    return await use_cases.reassign_on_request(rt, lead_id)


@router.get("/leads/{lead_id}/assignment", response_model=AssignmentOut, dependencies=[ReportsRead])
async def get_assignment(lead_id: uuid.UUID, rt: RuntimeDep) -> AssignmentOut:
    return await use_cases.current_assignment(rt, lead_id)


@router.get("/unassigned", response_model=Page[WaitingOut], dependencies=[ReportsRead])
async def list_unassigned(rt: RuntimeDep, wanted: WaitingPage) -> Page[WaitingOut]:
    """Leads no rep can take now, oldest first (`sort=queue`), each with what keeps it waiting;
    each is assigned (and `lead.routed` sent) as soon as a rep of its team becomes eligible."""
    return await use_cases.list_waiting(rt, wanted)
