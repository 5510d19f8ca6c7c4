"""Routing over the real PostgreSQL and broker: rules, strategies, skips, account match, the
decision trace, dry runs and reassignment."""

import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
from leadflow.contracts.events import (
    TOPIC_SCORING,
    TOPIC_SLA,
    CloudEvent,
    SlaEscalated,
)
from leadflow.db import Database
from support.harness import (
    ADMIN,
    CONFIG_READER,
    emitted,
    eventually,
    publish_events,
    sample_mql,
    service_client,
)

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


async def routed(settings) -> list[CloudEvent]:
    return await emitted(settings, "lead.routed")


async def wait_routed(settings, count: int, timeout: float = 120) -> list[CloudEvent]:
    async def enough():
        found = await routed(settings)
        return found if len(found) >= count else None

    return await eventually(enough, timeout=timeout)


async def add_team(client, name, strategy="round_robin") -> str:
    response = await client.post(
        "/v1/teams", json={"name": name, "strategy": strategy}, headers=ADMIN
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]


async def add_rep(client, name, team_id=None, **fields) -> str:
    body = {"name": name, **fields}
    if team_id:
        body["team_id"] = team_id
    response = await client.post("/v1/reps", json=body, headers=ADMIN)
    assert response.status_code == 201, response.text
    return response.json()["id"]


async def test_round_robin_is_exact_across_two_routing_instances(stack):
    settings = await stack.isolated_settings()
    async with (
        service_client("routing", settings) as first,
        service_client("routing", settings) as second,
    ):
        reps = [await add_rep(first, f"Rep {i}", capacity=100) for i in range(3)]
        await publish_events(settings, TOPIC_SCORING, [sample_mql(n) for n in range(300)])
        events = await wait_routed(settings, 300)
        assert (
            second.app.state.runtime.consumers[0].processed
            + first.app.state.runtime.consumers[0].processed
            >= 300
        )
    counts = Counter(e.data["rep_id"] for e in events)
    assert counts == {rep: 100 for rep in reps}
    assert len({e.data["lead_id"] for e in events}) == 300


async def test_weighted_and_load_balanced_teams(stack):
    settings = await stack.isolated_settings()
    async with service_client("routing", settings) as routing:
        weighted = await add_team(routing, "Weighted", "weighted")
        heavy = await add_rep(routing, "Heavy", weighted, weight=3)
        light = await add_rep(routing, "Light", weighted, weight=1)
        balanced = await add_team(routing, "Balanced", "load_balanced")
        big = await add_rep(routing, "Big", balanced, capacity=6)
        small = await add_rep(routing, "Small", balanced, capacity=2)
        for name, team, channel in (("to weighted", weighted, "partner"),
                                    ("to balanced", balanced, "outbound")):  # fmt: skip
            response = await routing.post(
                "/v1/rules",
                json={"name": name, "conditions": {"channel": [channel]}, "team_id": team},
                headers=ADMIN,
            )
            assert response.status_code == 201, response.text
        await publish_events(
            settings, TOPIC_SCORING, [sample_mql(n, channel="partner") for n in range(40)]
        )
        events = await wait_routed(settings, 40)
        assert Counter(e.data["rep_id"] for e in events) == {heavy: 30, light: 10}
        await publish_events(
            settings, TOPIC_SCORING, [sample_mql(n, channel="outbound") for n in range(9)]
        )
        events = (await wait_routed(settings, 48))[40:]
        waiting = await eventually(lambda: _waiting(routing))
    counts = Counter(e.data["rep_id"] for e in events)
    # load follows capacity (6:2) until both are full; the ninth lead finds no one free and
    # waits for a place
    assert counts == {big: 6, small: 2}
    assert [(w["team"], w["reason"]) for w in waiting] == [("Balanced", "at_capacity")]


async def _waiting(routing) -> list[dict]:
    return (await routing.get("/v1/unassigned")).json()["items"]


async def test_skips_account_match_trace_and_dry_run(stack):
    settings = await stack.isolated_settings()
    tomorrow = DAYS[(datetime.now(UTC).weekday() + 1) % 7]
    async with service_client("routing", settings) as routing:
        away = await add_rep(routing, "Away")
        off_shift = await add_rep(
            routing, "Off shift", timezone="Europe/Warsaw",
            working_hours={tomorrow: [["09:00", "17:00"]]},
        )  # fmt: skip
        working = await add_rep(routing, "Working")
        patched = await routing.patch(
            f"/v1/reps/{away}", json={"out_of_office": True}, headers=ADMIN
        )
        assert patched.json()["out_of_office"] is True
        dry = await routing.post(
            "/v1/routing:dry-run", json={"channel": "inbound"}, headers=CONFIG_READER
        )
        assert dry.status_code == 200, dry.text
        assert dry.json()["rep_id"] == working
        first = sample_mql(1, domain="acme.example")
        await publish_events(settings, TOPIC_SCORING, [first])
        [event] = await wait_routed(settings, 1)
        assert event.data["rep_id"] == working
        assignment = (await routing.get(f"/v1/leads/{first.lead_id}/assignment")).json()
        skipped = {c["rep_id"]: c["skipped"] for c in assignment["trace"]["considered"]}
        assert skipped[away] == "out_of_office"
        assert skipped[off_shift] == "outside_working_hours"
        assert skipped[working] is None
        assert assignment["trace"]["rule"] is None  # no rules: the fallback queue
        # a second person at the same company goes to the account's owner
        another = await add_rep(routing, "Another")
        await publish_events(settings, TOPIC_SCORING, [sample_mql(2, domain="acme.example")])
        events = await wait_routed(settings, 2)
        assert events[1].data["rep_id"] == working
        owner_trace = (
            await routing.get(f"/v1/leads/{events[1].data['lead_id']}/assignment")
        ).json()
        assert owner_trace["trace"]["strategy"] == "account_owner"
        assert another != working


async def test_reassignment_on_request_and_on_escalation(stack):
    settings = await stack.isolated_settings()
    async with service_client("routing", settings) as routing:
        reps = {await add_rep(routing, "Ann"), await add_rep(routing, "Bob")}
        lead = sample_mql(1)
        await publish_events(settings, TOPIC_SCORING, [lead])
        [first] = await wait_routed(settings, 1)
        manual = await routing.post(f"/v1/leads/{lead.lead_id}/reassign", headers=ADMIN)
        assert manual.status_code == 202, manual.text
        assert manual.json()["rep_id"] != first.data["rep_id"]
        assert manual.json()["reason"] == "manual"
        escalation = SlaEscalated(
            lead_id=lead.lead_id,
            timer_id=uuid.uuid4(),
            sla="first_response",
            started_at=datetime.now(UTC) - timedelta(hours=3),
            due_at=datetime.now(UTC) - timedelta(minutes=1),
            level="breached",
            reassign=True,
        )
        await publish_events(settings, TOPIC_SLA, [escalation])
        events = await wait_routed(settings, 3)
    assert [e.data["reason"] for e in events] == ["mql", "manual", "sla_escalation"]
    assert {e.data["rep_id"] for e in events} <= reps
    assert events[2].data["rep_id"] != events[1].data["rep_id"]
    missing = await routing_missing(settings)
    assert missing == 404


async def routing_missing(settings) -> int:
    async with service_client("routing", settings) as routing:
        response = await routing.post(f"/v1/leads/{uuid.uuid4()}/reassign", headers=ADMIN)
        return response.status_code


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "r", "conditions": {}, "team_id": str(uuid.uuid4())}, "conditions"),
        ({"name": "r", "conditions": {"planet": ["mars"]}, "team_id": str(uuid.uuid4())},
         "conditions.planet.[key]"),
        ({"name": "r", "conditions": {"channel": ["inbound"]}, "team_id": str(uuid.uuid4())},
         "team_id"),
    ],
)  # fmt: skip
async def test_bad_rules_are_refused_naming_the_field(settings, body, field):
    async with service_client("routing", settings) as routing:
        response = await routing.post("/v1/rules", json=body, headers=ADMIN)
    assert response.status_code == 422, response.text
    problem = response.json()
    named = {e["field"] for e in problem.get("errors", [])} | {problem.get("field")}
    assert field in named


async def test_a_routing_file_loads_all_or_nothing_and_routes_by_its_rules(settings):
    import pathlib

    import yaml

    example = pathlib.Path(__file__).parents[2] / "deploy" / "examples" / "routing.yaml"
    document = yaml.safe_load(example.read_text(encoding="utf-8"))
    async with service_client("routing", settings) as routing:
        loaded = await routing.put("/v1/routing-config", json=document, headers=ADMIN)
        assert loaded.status_code == 200, loaded.text
        assert loaded.json() == {
            "teams": 3,
            "reps_created": 5,
            "reps_updated": 0,
            "rules": 4,
            "accounts": 1,
        }
        again = await routing.put("/v1/routing-config", json=document, headers=ADMIN)
        assert again.json()["reps_updated"] == 5  # loading twice changes nothing
        assert len((await routing.get("/v1/reps")).json()["items"]) == 5
        rules = (await routing.get("/v1/rules")).json()["items"]
        assert [r["name"] for r in rules] == [
            "partner channel",
            "enterprise accounts",
            "central europe inbound",
            "mid-market inbound outside the CEE",
        ]
        mid = {"channel": "inbound", "company": {"employees": 200, "country": "DE"}}
        mid_team = await routing.post("/v1/routing:dry-run", json=mid, headers=CONFIG_READER)
        assert mid_team.json()["team"] == "Enterprise"
        owned = {"channel": "inbound", "company": {"domain": "analytical-engines.example"}}
        owner = await routing.post("/v1/routing:dry-run", json=owned, headers=CONFIG_READER)
        assert owner.json()["trace"]["strategy"] == "account_owner"
        [barbara] = (await routing.get("/v1/reps", params={"email": "barbara@example.com"})).json()[
            "items"
        ]
        assert owner.json()["rep_id"] == barbara["id"]
        partner = await routing.post(
            "/v1/routing:dry-run", json={"channel": "partner"}, headers=CONFIG_READER
        )
        assert partner.json()["team"] == "Partners"
        big = await routing.post(
            "/v1/routing:dry-run",
            json={"channel": "inbound", "company": {"size_band": "5000+", "country": "PL"}},
            headers=CONFIG_READER,
        )
        assert big.json()["team"] == "Enterprise"
        assert big.json()["trace"]["rules_tried"][:2] == [
            {"rule": "partner channel", "matched": False},
            {"rule": "enterprise accounts", "matched": True},
        ]
        broken = {**document, "rules": [{**document["rules"][0], "team": "Nowhere"}]}
        refused = await routing.put("/v1/routing-config", json=broken, headers=ADMIN)
        assert refused.status_code == 422
        assert refused.json()["field"] == "rules.0.team"
        nobody = {**document, "accounts": [{"domain": "x.example", "rep": "nobody@example.com"}]}
        refused = await routing.put("/v1/routing-config", json=nobody, headers=ADMIN)
        assert refused.status_code == 422 and refused.json()["field"] == "accounts.0.rep"
        assert len((await routing.get("/v1/rules")).json()["items"]) == 4  # nothing half-applied


async def test_least_recently_assigned_gives_each_lead_to_the_rep_who_waited_longest(stack):
    settings = await stack.isolated_settings()
    async with service_client("routing", settings) as routing:
        team = await add_team(routing, "Waiting line", "least_recently_assigned")
        teams = (await routing.get("/v1/teams")).json()["items"]
        listed = {t["name"]: t["strategy"] for t in teams}
        assert listed["Waiting line"] == "least_recently_assigned"
        reps = [await add_rep(routing, f"Rep {i}", team) for i in range(3)]
        response = await routing.post(
            "/v1/rules",
            json={"name": "partners", "conditions": {"channel": ["partner"]}, "team_id": team},
            headers=ADMIN,
        )
        assert response.status_code == 201, response.text
        await publish_events(
            settings, TOPIC_SCORING, [sample_mql(n, channel="partner") for n in range(6)]
        )
        events = await wait_routed(settings, 6)
        last = (await routing.get(f"/v1/leads/{events[-1].data['lead_id']}/assignment")).json()
    # never assigned first (by id), then whoever has waited longest: the same order again
    assert [e.data["rep_id"] for e in events] == sorted(reps) * 2
    assert last["trace"]["strategy"] == "least_recently_assigned"
    assert [c["rep_id"] for c in last["trace"]["considered"]][0] == sorted(reps)[2]


async def test_an_unknown_strategy_is_refused_naming_the_field(settings):
    document = {"teams": [{"name": "Lucky", "strategy": "coin_flip"}]}
    async with service_client("routing", settings) as routing:
        team = await routing.post(
            "/v1/teams", json={"name": "Lucky", "strategy": "coin_flip"}, headers=ADMIN
        )
        loaded = await routing.put("/v1/routing-config", json=document, headers=ADMIN)
        teams = (await routing.get("/v1/teams")).json()["items"]
    for response, field in ((team, "strategy"), (loaded, "teams.0.strategy")):
        assert response.status_code == 422, response.text
        problem = response.json()
        assert field in {e["field"] for e in problem.get("errors", [])} | {problem.get("field")}
    assert [t["name"] for t in teams] == ["fallback"]  # nothing created


async def test_the_database_accepts_exactly_the_registered_strategies(settings):
    from leadflow_routing import store, use_cases
    from leadflow_routing.domain.strategies import UnknownStrategy, strategy_names

    db = Database(settings.database_url)
    rt = SimpleNamespace(db=db)
    try:
        # a team of a strategy this version does not know: the start is refused, naming it
        async with db.unit_of_work() as session:
            await session.execute(
                sa.text("INSERT INTO routing.teams (id, name, strategy) VALUES (:id, 'Old', 'x')"),
                {"id": uuid.uuid4()},
            )
        with pytest.raises(UnknownStrategy, match="team 'Old' uses 'x'"):
            await use_cases.keep_strategies_checked(rt)
        async with db.unit_of_work() as session:
            await session.execute(sa.text("DELETE FROM routing.teams WHERE name = 'Old'"))
        await use_cases.keep_strategies_checked(rt)
        await use_cases.keep_strategies_checked(rt)  # the same again: left as it is
        async with db.unit_of_work() as session:
            assert await store.checked_strategies(session) == set(strategy_names())
        with pytest.raises(sa.exc.IntegrityError, match="ck_teams_strategy_known"):
            async with db.unit_of_work() as session:
                await session.execute(
                    sa.text(
                        "INSERT INTO routing.teams (id, name, strategy) VALUES (:id, 'N', 'y')"
                    ),
                    {"id": uuid.uuid4()},
                )
    finally:
        await db.dispose()
