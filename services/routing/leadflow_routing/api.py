"""HTTP API of routing: teams, reps, rules, webhook endpoints, assignments and deliveries."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Response
from leadflow.auth import require_scope
from leadflow.service import RuntimeDep
from leadflow.settings import ApiKeySpec

from leadflow_routing import use_cases
from leadflow_routing.schemas import (
    AssignmentOut,
    DeliveryOut,
    DryRunIn,
    DryRunOut,
    EndpointIn,
    EndpointOut,
    RepIn,
    ReplayOut,
    RepOut,
    RepPatch,
    RoutingConfig,
    RoutingConfigOut,
    RuleIn,
    RuleOut,
    SecretIn,
    TeamIn,
    TeamOut,
)

router = APIRouter(prefix="/v1", tags=["routing"])
Admin = Annotated[ApiKeySpec, Depends(require_scope("admin"))]


@router.post("/teams", status_code=201, response_model=TeamOut)
async def create_team(body: TeamIn, rt: RuntimeDep, _: Admin) -> TeamOut:
    return await use_cases.create_team(rt, body)


@router.get("/teams", response_model=list[TeamOut])
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


@router.get("/rules", response_model=list[RuleOut])
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


@router.post("/routing:dry-run", response_model=DryRunOut)
async def dry_run(body: DryRunIn, rt: RuntimeDep) -> DryRunOut:
    """Where a lead like this would go now, and why, without assigning anything."""
    return await use_cases.dry_run(rt, body)


@router.post("/leads/{lead_id}/reassign", status_code=202, response_model=AssignmentOut)
async def reassign_lead(lead_id: uuid.UUID, rt: RuntimeDep, _: Admin) -> AssignmentOut:
    """Route the lead again, away from its current rep (emits lead.routed with reason manual)."""
    return await use_cases.reassign_on_request(rt, lead_id)


@router.get("/reps", response_model=list[RepOut])
async def list_reps(rt: RuntimeDep) -> list[RepOut]:
    return await use_cases.list_reps(rt)


@router.post("/webhook-endpoints", status_code=201, response_model=EndpointOut)
async def create_endpoint(body: EndpointIn, rt: RuntimeDep, _: Admin) -> EndpointOut:
    return await use_cases.create_endpoint(rt, body)


@router.post("/webhook-endpoints/{endpoint_id}/rotate-secret", response_model=EndpointOut)
async def rotate_secret(
    endpoint_id: uuid.UUID, rt: RuntimeDep, _: Admin, body: SecretIn | None = None
) -> EndpointOut:
    """Start a rotation: deliveries are signed with the new secret and the previous one (two
    signatures) until `DELETE …/previous-secret`, so the receiver can switch without downtime.
    Re-enables an endpoint disabled by a 410."""
    return await use_cases.rotate_secret(rt, endpoint_id, body.secret if body else None)


@router.delete("/webhook-endpoints/{endpoint_id}/previous-secret", status_code=204)
async def finish_rotation(endpoint_id: uuid.UUID, rt: RuntimeDep, _: Admin) -> Response:
    """End a rotation: only the newest secret signs from now on."""
    await use_cases.finish_rotation(rt, endpoint_id)
    return Response(status_code=204)


@router.get("/webhook-endpoints", response_model=list[EndpointOut])
async def list_endpoints(rt: RuntimeDep, _: Admin) -> list[EndpointOut]:
    return await use_cases.list_endpoints(rt)


@router.get("/leads/{lead_id}/assignment", response_model=AssignmentOut)
async def get_assignment(lead_id: uuid.UUID, rt: RuntimeDep) -> AssignmentOut:
    return await use_cases.current_assignment(rt, lead_id)


@router.get("/deliveries", response_model=list[DeliveryOut])
async def list_deliveries(
    rt: RuntimeDep, lead_id: uuid.UUID | None = None, state: str | None = None
) -> list[DeliveryOut]:
    return await use_cases.list_deliveries(rt, lead_id, state)


@router.post("/deliveries/{delivery_id}/replay", status_code=202, response_model=ReplayOut)
async def replay_delivery(delivery_id: uuid.UUID, rt: RuntimeDep, _: Admin) -> ReplayOut:
    """Send a delivery again (dead-lettered, or to repeat it); not for an erased lead."""
    return await use_cases.replay(rt, delivery_id)
