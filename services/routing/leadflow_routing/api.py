"""HTTP API of routing: teams, reps, webhook endpoints, assignments and deliveries."""

from __future__ import annotations

import uuid
from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Response
from leadflow.auth import require_scope
from leadflow.errors import Conflict, LeadGone, NotFound, Unprocessable
from leadflow.service import RuntimeDep
from leadflow.settings import ApiKeySpec
from leadflow.webhooks import UnsafeTarget, check_target, new_secret
from sqlalchemy.exc import IntegrityError

from leadflow_routing import delivery
from leadflow_routing.erasure import is_erased
from leadflow_routing.handlers import FALLBACK_TEAM_ID, decide, reassign
from leadflow_routing.models import assignments, deliveries, reps, rules, teams, webhook_endpoints
from leadflow_routing.schemas import (
    AssignmentOut,
    DeliveryOut,
    DryRunIn,
    DryRunOut,
    EndpointIn,
    EndpointOut,
    RepIn,
    RepOut,
    RepPatch,
    RoutingConfig,
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
    team_id = uuid.uuid4()
    try:
        async with rt.db.unit_of_work() as session:
            await session.execute(sa.insert(teams).values(id=team_id, **body.model_dump()))
    except IntegrityError as exc:
        raise Conflict(f"a team named '{body.name}' exists", field="name") from exc
    return TeamOut(id=team_id, is_fallback=False, **body.model_dump())


@router.get("/teams", response_model=list[TeamOut])
async def list_teams(rt: RuntimeDep) -> list[TeamOut]:
    async with rt.db.unit_of_work() as session:
        rows = (await session.execute(sa.select(teams).order_by(teams.c.created_at))).all()
    return [
        TeamOut(
            id=r.id,
            name=r.name,
            calendar=r.calendar,
            is_fallback=r.is_fallback,
            strategy=r.strategy,
        )
        for r in rows
    ]


@router.post("/reps", status_code=201, response_model=RepOut)
async def create_rep(body: RepIn, rt: RuntimeDep, _: Admin) -> RepOut:
    rep_id = uuid.uuid4()
    values = body.model_dump()
    values["team_id"] = body.team_id or FALLBACK_TEAM_ID
    async with rt.db.unit_of_work() as session:
        if (
            await session.scalar(sa.select(teams.c.id).where(teams.c.id == values["team_id"]))
            is None
        ):
            raise Unprocessable(
                f"team {values['team_id']} does not exist",
                field="team_id",
                errors=[{"field": "team_id", "message": "unknown team"}],
            )
        await session.execute(sa.insert(reps).values(id=rep_id, **values))
    return RepOut(id=rep_id, **values)


@router.patch("/reps/{rep_id}", response_model=RepOut)
async def patch_rep(rep_id: uuid.UUID, body: RepPatch, rt: RuntimeDep, _: Admin) -> RepOut:
    """Out of office, inactive, capacity or weight changes take effect on the next lead."""
    changes = body.model_dump(exclude_unset=True, exclude_none=True)
    async with rt.db.unit_of_work() as session:
        if changes:
            query = sa.update(reps).where(reps.c.id == rep_id).values(**changes).returning(reps)
        else:
            query = sa.select(reps).where(reps.c.id == rep_id)
        row = (await session.execute(query)).first()
    if row is None:
        raise NotFound(f"rep {rep_id} not found")
    return RepOut.model_validate(row._asdict())


@router.post("/rules", status_code=201, response_model=RuleOut)
async def create_rule(body: RuleIn, rt: RuntimeDep, _: Admin) -> RuleOut:
    rule_id = uuid.uuid4()
    async with rt.db.unit_of_work() as session:
        if await session.scalar(sa.select(teams.c.id).where(teams.c.id == body.team_id)) is None:
            raise Unprocessable(f"team {body.team_id} does not exist", field="team_id")
        try:
            async with session.begin_nested():
                await session.execute(sa.insert(rules).values(id=rule_id, **body.model_dump()))
        except IntegrityError as exc:
            raise Conflict(f"a rule named '{body.name}' exists", field="name") from exc
    return RuleOut(id=rule_id, **body.model_dump())


@router.get("/rules", response_model=list[RuleOut])
async def list_rules(rt: RuntimeDep) -> list[RuleOut]:
    """In the order they are tried."""
    async with rt.db.unit_of_work() as session:
        rows = (
            await session.execute(sa.select(rules).order_by(rules.c.priority, rules.c.created_at))
        ).all()
    return [RuleOut.model_validate(r._asdict()) for r in rows]


@router.delete("/rules/{rule_id}", status_code=204)
async def delete_rule(rule_id: uuid.UUID, rt: RuntimeDep, _: Admin) -> Response:
    async with rt.db.unit_of_work() as session:
        deleted = await session.scalar(
            sa.delete(rules).where(rules.c.id == rule_id).returning(rules.c.id)
        )
    if deleted is None:
        raise NotFound(f"rule {rule_id} not found")
    return Response(status_code=204)


@router.put("/routing-config")
async def put_routing_config(body: RoutingConfig, rt: RuntimeDep, _: Admin) -> dict:
    """Load teams, reps and rules from one document, all or nothing. Teams are matched by name,
    reps by email (else name); the document's rules replace the current ones."""
    async with rt.db.unit_of_work() as session:
        team_ids = {
            r.name: r.id for r in (await session.execute(sa.select(teams.c.id, teams.c.name))).all()
        }
        for team in body.teams:
            values = team.model_dump()
            if team.name in team_ids:
                await session.execute(
                    sa.update(teams).where(teams.c.id == team_ids[team.name]).values(**values)
                )
            else:
                team_ids[team.name] = uuid.uuid4()
                await session.execute(sa.insert(teams).values(id=team_ids[team.name], **values))

        def team_of(name: str, field: str) -> uuid.UUID:
            if name not in team_ids:
                raise Unprocessable(f"no team named '{name}'", field=field)
            return team_ids[name]

        created = updated = 0
        for index, rep in enumerate(body.reps):
            values = rep.model_dump(exclude={"team", "team_id"})
            values["team_id"] = team_of(rep.team, f"reps.{index}.team")
            match = reps.c.email == rep.email if rep.email else reps.c.name == rep.name
            existing = await session.scalar(sa.select(reps.c.id).where(match).limit(1))
            if existing is None:
                await session.execute(sa.insert(reps).values(id=uuid.uuid4(), **values))
                created += 1
            else:
                await session.execute(sa.update(reps).where(reps.c.id == existing).values(**values))
                updated += 1
        await session.execute(sa.delete(rules))
        names: set[str] = set()
        for index, rule in enumerate(body.rules):
            if rule.name in names:
                raise Unprocessable(
                    f"rule '{rule.name}' appears twice", field=f"rules.{index}.name"
                )
            names.add(rule.name)
            values = rule.model_dump(exclude={"team", "team_id"})
            values["team_id"] = team_of(rule.team, f"rules.{index}.team")
            await session.execute(sa.insert(rules).values(id=uuid.uuid4(), **values))
    return {
        "teams": len(body.teams),
        "reps_created": created,
        "reps_updated": updated,
        "rules": len(body.rules),
    }


@router.post("/routing:dry-run", response_model=DryRunOut)
async def dry_run(body: DryRunIn, rt: RuntimeDep) -> DryRunOut:
    """Where a lead like this would go now, and why, without assigning anything."""
    async with rt.db.unit_of_work() as session:
        routing = await decide(session, body.model_dump(mode="json"), rt.clock.now(), dry_run=True)
    return DryRunOut(
        team_id=routing.team.id,
        team=routing.team.name,
        rep_id=routing.decision.rep_id,
        trace=routing.trace,
    )


@router.post("/leads/{lead_id}/reassign", status_code=202, response_model=AssignmentOut)
async def reassign_lead(lead_id: uuid.UUID, rt: RuntimeDep, _: Admin) -> AssignmentOut:
    """Route the lead again, away from its current rep (emits lead.routed with reason manual)."""
    async with rt.db.unit_of_work() as session:
        if await is_erased(session, lead_id):
            raise LeadGone(lead_id, field="lead_id")
        if not await reassign(rt, session, lead_id, "manual"):
            raise NotFound(f"lead {lead_id} has not been routed")
    return await get_assignment(lead_id, rt)


@router.get("/reps", response_model=list[RepOut])
async def list_reps(rt: RuntimeDep) -> list[RepOut]:
    async with rt.db.unit_of_work() as session:
        rows = (await session.execute(sa.select(reps).order_by(reps.c.created_at))).all()
    return [RepOut.model_validate(r._asdict()) for r in rows]


@router.post("/webhook-endpoints", status_code=201, response_model=EndpointOut)
async def create_endpoint(body: EndpointIn, rt: RuntimeDep, _: Admin) -> EndpointOut:
    url = str(body.url)
    try:
        await check_target(url, allow_private=rt.settings.webhook_allow_private)
    except UnsafeTarget as exc:
        raise Unprocessable(str(exc), errors=[{"field": "url", "message": str(exc)}]) from exc
    endpoint_id = uuid.uuid4()
    secret = body.secret or new_secret()
    async with rt.db.unit_of_work() as session:
        if (
            body.team_id is not None
            and await session.scalar(sa.select(teams.c.id).where(teams.c.id == body.team_id))
            is None
        ):
            raise Unprocessable(f"team {body.team_id} does not exist", field="team_id")
        await session.execute(
            sa.insert(webhook_endpoints).values(
                id=endpoint_id,
                url=url,
                secrets=[secret],
                event_types=body.event_types,
                team_id=body.team_id,
            )
        )
    return EndpointOut(
        id=endpoint_id,
        url=url,
        event_types=body.event_types,
        team_id=body.team_id,
        enabled=True,
        secret=secret,
    )


@router.post("/webhook-endpoints/{endpoint_id}/rotate-secret", response_model=EndpointOut)
async def rotate_secret(
    endpoint_id: uuid.UUID, rt: RuntimeDep, _: Admin, body: SecretIn | None = None
) -> EndpointOut:
    """Start a rotation: deliveries are signed with the new secret and the previous one (two
    signatures) until `DELETE …/previous-secret`, so the receiver can switch without downtime.
    Re-enables an endpoint disabled by a 410."""
    secret = (body.secret if body else None) or new_secret()
    e = webhook_endpoints.c
    async with rt.db.unit_of_work() as session:
        row = (
            await session.execute(
                sa.update(webhook_endpoints)
                .where(e.id == endpoint_id)
                .values(
                    secrets=sa.func.array_prepend(secret, e.secrets[1:1]),
                    enabled=True,
                    disabled_reason=None,
                )
                .returning(e.id, e.url, e.event_types, e.team_id, e.enabled)
            )
        ).first()
    if row is None:
        raise NotFound(f"webhook endpoint {endpoint_id} not found")
    return EndpointOut(**row._asdict(), secret=secret)


@router.delete("/webhook-endpoints/{endpoint_id}/previous-secret", status_code=204)
async def finish_rotation(endpoint_id: uuid.UUID, rt: RuntimeDep, _: Admin) -> Response:
    """End a rotation: only the newest secret signs from now on."""
    e = webhook_endpoints.c
    async with rt.db.unit_of_work() as session:
        found = await session.scalar(
            sa.update(webhook_endpoints)
            .where(e.id == endpoint_id)
            .values(secrets=e.secrets[1:1])
            .returning(e.id)
        )
    if found is None:
        raise NotFound(f"webhook endpoint {endpoint_id} not found")
    return Response(status_code=204)


@router.get("/webhook-endpoints", response_model=list[EndpointOut])
async def list_endpoints(rt: RuntimeDep, _: Admin) -> list[EndpointOut]:
    e = webhook_endpoints.c
    async with rt.db.unit_of_work() as session:
        rows = (
            await session.execute(sa.select(e.id, e.url, e.event_types, e.team_id, e.enabled))
        ).all()
    return [EndpointOut.model_validate(r._asdict()) for r in rows]


@router.get("/leads/{lead_id}/assignment", response_model=AssignmentOut)
async def get_assignment(lead_id: uuid.UUID, rt: RuntimeDep) -> AssignmentOut:
    a = assignments.c
    async with rt.db.unit_of_work() as session:
        row = (
            await session.execute(
                sa.select(
                    a.lead_id, a.id, a.team_id, a.rep_id, a.reason, a.trace, a.created_at
                ).where(a.lead_id == lead_id, a.current)
            )
        ).first()
    if row is None:
        raise NotFound(f"lead {lead_id} has not been routed")
    return AssignmentOut(
        lead_id=row.lead_id,
        assignment_id=row.id,
        team_id=row.team_id,
        rep_id=row.rep_id,
        reason=row.reason,
        trace=row.trace,
        created_at=row.created_at,
    )


@router.get("/deliveries", response_model=list[DeliveryOut])
async def list_deliveries(
    rt: RuntimeDep, lead_id: uuid.UUID | None = None, state: str | None = None
) -> list[DeliveryOut]:
    d = deliveries.c
    query = sa.select(
        d.id,
        d.endpoint_id,
        d.lead_id,
        d.event_type,
        d.state,
        d.attempts,
        d.last_status,
        d.last_error,
        d.next_attempt_at,
        d.delivered_at,
    )
    if lead_id is not None:
        query = query.where(d.lead_id == lead_id)
    if state is not None:
        query = query.where(d.state == state)
    async with rt.db.unit_of_work() as session:
        rows = (await session.execute(query.order_by(d.created_at).limit(1000))).all()
    return [DeliveryOut.model_validate(r._asdict()) for r in rows]


@router.post("/deliveries/{delivery_id}/replay", status_code=202)
async def replay_delivery(delivery_id: uuid.UUID, rt: RuntimeDep, _: Admin) -> dict:
    """Send a delivery again (dead-lettered, or to repeat it); not for an erased lead."""
    async with rt.db.unit_of_work() as session:
        lead_id = await session.scalar(
            sa.select(deliveries.c.lead_id).where(deliveries.c.id == delivery_id)
        )
        if lead_id is not None and await is_erased(session, lead_id):
            raise LeadGone(lead_id, field="delivery_id")
    if not await delivery.replay(rt, delivery_id):
        raise NotFound(f"delivery {delivery_id} not found")
    return {"delivery_id": str(delivery_id), "state": "pending"}
