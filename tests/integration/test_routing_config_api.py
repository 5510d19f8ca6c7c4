"""Routing's configuration API over the real PostgreSQL and broker: teams, reps, rules and
account owners read, changed and deleted one by one (a deletion still in use answers 409 naming
what uses it), every change audited; lists paged the same way; a rep's out of office that ends
by itself; rules with ranges, lists and negations; and the worklists of reps and teams, their
SLA clocks following sla-timer's events."""

import uuid
from datetime import UTC, datetime, timedelta

from leadflow.contracts.events import TOPIC_SCORING, TOPIC_SLA, SlaBreached, SlaMet
from support.harness import (
    ADMIN,
    CONFIG_READER,
    REPORTS_READER,
    emitted,
    eventually,
    publish_events,
    sample_mql,
    service_client,
)


async def made(response, status: int = 201) -> dict:
    assert response.status_code == status, response.text
    return response.json()


async def routed(settings, count: int) -> list:
    async def enough():
        found = await emitted(settings, "lead.routed")
        return found if len(found) >= count else None

    return await eventually(enough, timeout=90)


async def audited(routing, entity: str, entity_id: str) -> list[str]:
    page = await routing.get(
        "/v1/audit", params={"entity": entity, "entity_id": entity_id}, headers=ADMIN
    )
    return [entry["action"] for entry in page.json()["items"]]


async def test_a_team_is_read_changed_and_deleted_once_nothing_uses_it(settings):
    async with service_client("routing", settings) as routing:
        team = await made(await routing.post("/v1/teams", json={"name": "Nordics"}, headers=ADMIN))
        calendar = {"timezone": "Europe/Stockholm", "hours": {"mon": ["08:00-16:00"]}}
        changed = await made(
            await routing.patch(
                f"/v1/teams/{team['id']}",
                json={"calendar": calendar, "manager": {"name": "Maja", "email": "m@x.example"}},
                headers=ADMIN,
            ),
            200,
        )
        assert changed["calendar"] == calendar and changed["manager"]["name"] == "Maja"
        read = await made(await routing.get(f"/v1/teams/{team['id']}", headers=CONFIG_READER), 200)
        assert read == changed
        bad_calendar = await routing.patch(
            f"/v1/teams/{team['id']}", json={"calendar": {"timezone": "Mars/Base"}}, headers=ADMIN
        )
        assert bad_calendar.status_code == 422, bad_calendar.text

        rep = await made(
            await routing.post(
                "/v1/reps", json={"name": "Ola", "team_id": team["id"]}, headers=ADMIN
            )
        )
        rule = await made(
            await routing.post(
                "/v1/rules",
                json={"name": "se", "conditions": {"country": ["SE"]}, "team_id": team["id"]},
                headers=ADMIN,
            )
        )
        in_use = await routing.delete(f"/v1/teams/{team['id']}", headers=ADMIN)
        assert in_use.status_code == 409
        assert in_use.headers["content-type"].startswith("application/problem+json")
        assert "1 rep" in in_use.json()["detail"] and "1 rule" in in_use.json()["detail"]
        assert in_use.json()["uses"] == {"reps": 1, "rules": 1}

        assert (await routing.delete(f"/v1/rules/{rule['id']}", headers=ADMIN)).status_code == 204
        assert (await routing.delete(f"/v1/reps/{rep['id']}", headers=ADMIN)).status_code == 204
        assert (await routing.delete(f"/v1/teams/{team['id']}", headers=ADMIN)).status_code == 204
        assert (await routing.get(f"/v1/teams/{team['id']}")).status_code == 404
        assert await audited(routing, "team", team["id"]) == ["deleted", "changed", "created"]
        assert await audited(routing, "rep", rep["id"]) == ["deleted", "created"]

        fallback = (await routing.get("/v1/teams", params={"is_fallback": True})).json()
        [fallback_team] = fallback["items"]
        refused = await routing.delete(f"/v1/teams/{fallback_team['id']}", headers=ADMIN)
        assert refused.status_code == 409
        assert (
            await routing.delete(f"/v1/teams/{team['id']}", headers=CONFIG_READER)
        ).status_code == 403


async def test_lists_page_sort_and_filter_the_same_way_with_a_link_to_the_next_page(settings):
    async with service_client("routing", settings) as routing:
        team = await made(await routing.post("/v1/teams", json={"name": "Paged"}, headers=ADMIN))
        for name in ("Eve", "Ada", "Dan", "Bob", "Cid"):
            await made(
                await routing.post(
                    "/v1/reps", json={"name": name, "team_id": team["id"]}, headers=ADMIN
                )
            )
        await made(await routing.post("/v1/reps", json={"name": "Other"}, headers=ADMIN))

        seen, params = [], {"team_id": team["id"], "sort": "name", "limit": 2}
        first = await routing.get("/v1/reps", params=params)
        assert 'rel="next"' in first.headers["link"]
        page = first.json()
        seen += [r["name"] for r in page["items"]]
        while page["next_cursor"]:
            more = await routing.get("/v1/reps", params={**params, "cursor": page["next_cursor"]})
            page = more.json()
            seen += [r["name"] for r in page["items"]]
        assert seen == ["Ada", "Bob", "Cid", "Dan", "Eve"]
        assert "link" not in more.headers  # the last page

        backwards = await routing.get("/v1/reps", params={**params, "sort": "-name", "limit": 10})
        assert [r["name"] for r in backwards.json()["items"]] == seen[::-1]
        assert backwards.json()["next_cursor"] is None

        for bad, name in (
            ({"sort": "capacity"}, "sort"),
            ({"limit": 0}, "limit"),
            ({"team_id": "not-a-uuid"}, "team_id"),
            ({"cursor": "forged"}, "cursor"),
        ):
            refused = await routing.get("/v1/reps", params=bad)
            assert refused.status_code == 422, (bad, refused.text)
            assert refused.headers["content-type"].startswith("application/problem+json")
            problem = refused.json()
            named = {e["field"] for e in problem.get("errors", [])} | {problem.get("field")}
            assert any(name in (field or "") for field in named), problem
        # a cursor of one sort is not taken for another
        by_name = (await routing.get("/v1/reps", params={"sort": "name", "limit": 1})).json()
        other = await routing.get(
            "/v1/reps", params={"sort": "-name", "cursor": by_name["next_cursor"]}
        )
        assert other.status_code == 422


async def test_a_rep_moves_team_and_cannot_be_deleted_while_it_has_open_leads(settings):
    async with service_client("routing", settings) as routing:
        north = await made(await routing.post("/v1/teams", json={"name": "North"}, headers=ADMIN))
        rep = await made(await routing.post("/v1/reps", json={"name": "Ada"}, headers=ADMIN))
        await publish_events(settings, TOPIC_SCORING, [sample_mql(1, domain="acme.example")])
        [event] = await routed(settings, 1)
        assert event.data["rep_id"] == rep["id"]

        busy = await routing.delete(f"/v1/reps/{rep['id']}", headers=ADMIN)
        assert busy.status_code == 409
        assert "1 open lead" in busy.json()["detail"] and "1 account" in busy.json()["detail"]
        assert busy.json()["uses"] == {"open_leads": 1, "accounts": 1}

        moved = await made(
            await routing.patch(
                f"/v1/reps/{rep['id']}",
                json={"team_id": north["id"], "name": "Ada L."},
                headers=ADMIN,
            ),
            200,
        )
        assert moved["team_id"] == north["id"] and moved["open_leads"] == 1
        account = await made(await routing.get("/v1/accounts/acme.example"), 200)
        assert account["team_id"] == north["id"]  # the rep took its account along
        unknown = await routing.patch(
            f"/v1/reps/{rep['id']}", json={"team_id": str(uuid.uuid4())}, headers=ADMIN
        )
        assert unknown.status_code == 422 and unknown.json()["field"] == "team_id"
        assert (await routing.delete(f"/v1/reps/{uuid.uuid4()}", headers=ADMIN)).status_code == 404

        hours = {"timezone": "Europe/Warsaw", "working_hours": {"mon": [["09:00", "17:00"]]}}
        await made(await routing.patch(f"/v1/reps/{rep['id']}", json=hours, headers=ADMIN), 200)
        cleared = await made(
            await routing.patch(
                f"/v1/reps/{rep['id']}",
                json={"timezone": None, "working_hours": None},
                headers=ADMIN,
            ),
            200,
        )
        assert cleared["timezone"] is None and cleared["working_hours"] is None
        kept = await routing.patch(f"/v1/reps/{rep['id']}", json={"capacity": None}, headers=ADMIN)
        assert kept.status_code == 422 and kept.json()["field"] == "capacity"


async def test_account_owners_are_created_changed_and_deleted(settings):
    async with service_client("routing", settings) as routing:
        ada = await made(await routing.post("/v1/reps", json={"name": "Ada"}, headers=ADMIN))
        bob = await made(await routing.post("/v1/reps", json={"name": "Bob"}, headers=ADMIN))
        owned = await made(
            await routing.post(
                "/v1/accounts", json={"domain": "Big.Example", "rep_id": ada["id"]}, headers=ADMIN
            )
        )
        assert owned["domain"] == "big.example" and owned["rep_id"] == ada["id"]
        twice = await routing.post(
            "/v1/accounts", json={"domain": "big.example", "rep_id": bob["id"]}, headers=ADMIN
        )
        assert twice.status_code == 409

        lead = {"channel": "inbound", "company": {"domain": "big.example"}}
        dry = await routing.post("/v1/routing:dry-run", json=lead, headers=CONFIG_READER)
        assert dry.json()["rep_id"] == ada["id"]
        await made(
            await routing.patch(
                "/v1/accounts/big.example", json={"rep_id": bob["id"]}, headers=ADMIN
            ),
            200,
        )
        dry = await routing.post("/v1/routing:dry-run", json=lead, headers=CONFIG_READER)
        assert dry.json()["trace"]["account"]["owner"] == bob["id"]
        listed = (await routing.get("/v1/accounts", params={"rep_id": bob["id"]})).json()
        assert [a["domain"] for a in listed["items"]] == ["big.example"]

        assert (await routing.delete(f"/v1/reps/{bob['id']}", headers=ADMIN)).status_code == 409
        assert (await routing.delete("/v1/accounts/big.example", headers=ADMIN)).status_code == 204
        assert (await routing.get("/v1/accounts/big.example")).status_code == 404
        assert await audited(routing, "account", "big.example") == [
            "deleted",
            "changed",
            "created",
        ]


async def test_rules_test_number_ranges_lists_and_negations_and_are_changed_in_place(settings):
    async with service_client("routing", settings) as routing:
        mid = await made(
            await routing.post("/v1/teams", json={"name": "Mid-market"}, headers=ADMIN)
        )
        rule = await made(
            await routing.post(
                "/v1/rules",
                json={
                    "name": "mid-market outside DACH",
                    "conditions": {
                        "employees": {"min": 50, "max": 1000},
                        "country": {"not": {"in": ["DE", "AT", "CH"]}},
                        "channel": ["inbound", "partner"],
                    },
                    "team_id": mid["id"],
                },
                headers=ADMIN,
            )
        )

        async def team_for(employees: int, country: str, channel: str = "inbound") -> str:
            lead = {"channel": channel, "company": {"employees": employees, "country": country}}
            dry = await routing.post("/v1/routing:dry-run", json=lead, headers=CONFIG_READER)
            return dry.json()["team"]

        assert await team_for(50, "PL") == "Mid-market"
        assert await team_for(1000, "PL", "partner") == "Mid-market"
        assert await team_for(1001, "PL") == "fallback"
        assert await team_for(250, "DE") == "fallback"
        assert await team_for(250, "PL", "outbound") == "fallback"

        changed = await made(
            await routing.patch(
                f"/v1/rules/{rule['id']}",
                json={"conditions": {"employees": {"min": 1001}}, "priority": 5},
                headers=ADMIN,
            ),
            200,
        )
        assert changed["priority"] == 5 and changed["name"] == rule["name"]
        assert await team_for(5000, "DE", "outbound") == "Mid-market"
        assert await audited(routing, "rule", rule["id"]) == ["changed", "created"]

        for conditions, named in (
            ({"country": {"min": 1}}, "country"),
            ({"employees": {"min": 10, "max": 5}}, "employees"),
            ({"employees": {"between": [1, 2]}}, "employees"),
            ({"channel": []}, "channel"),
        ):
            refused = await routing.post(
                "/v1/rules",
                json={"name": "bad", "conditions": conditions, "team_id": mid["id"]},
                headers=ADMIN,
            )
            assert refused.status_code == 422, refused.text
            assert named in refused.text


async def test_an_out_of_office_with_an_end_ends_by_itself_and_the_waiting_lead_goes_to_the_rep(
    stack,
):
    # The queue's periodic look is far off: only the out of office's own end can wake it.
    settings = await stack.isolated_settings(unassigned_recheck_seconds=600)
    async with service_client("routing", settings) as routing:
        rep = await made(await routing.post("/v1/reps", json={"name": "Ada"}, headers=ADMIN))
        back_at = datetime.now(UTC) + timedelta(seconds=4)
        away = await made(
            await routing.patch(
                f"/v1/reps/{rep['id']}",
                json={"out_of_office_until": back_at.isoformat()},
                headers=ADMIN,
            ),
            200,
        )
        assert away["out_of_office"] is True and away["away"] is True
        past = await routing.patch(
            f"/v1/reps/{rep['id']}",
            json={"out_of_office_until": "2020-01-01T00:00:00Z"},
            headers=ADMIN,
        )
        assert past.status_code == 422 and past.json()["field"] == "out_of_office_until"

        mql = sample_mql(7)
        await publish_events(settings, TOPIC_SCORING, [mql])
        [waiting] = (await eventually(lambda: _waiting(routing), timeout=60))["items"]
        assert waiting["reason"] == "all_out_of_office"
        by_reason = await routing.get("/v1/unassigned", params={"reason": "at_capacity"})
        assert by_reason.json() == {"items": [], "next_cursor": None}
        sorted_by_age = await routing.get("/v1/unassigned", params={"sort": "-queued_at"})
        assert [w["lead_id"] for w in sorted_by_age.json()["items"]] == [str(mql.lead_id)]

        [event] = await routed(settings, 1)
        assert event.data["lead_id"] == str(mql.lead_id) and event.data["rep_id"] == rep["id"]
        assert datetime.fromisoformat(event.data["routed_at"]) >= back_at
        assert (await routing.get("/v1/unassigned")).json()["items"] == []
        assert (await routing.get(f"/v1/reps/{rep['id']}")).json()["away"] is False


async def _waiting(routing) -> dict | None:
    page = (await routing.get("/v1/unassigned")).json()
    return page if page["items"] else None


async def test_worklists_show_open_leads_with_their_clocks_overdue_first(settings):
    async with service_client("routing", settings) as routing:
        team = await made(await routing.post("/v1/teams", json={"name": "Inbound"}, headers=ADMIN))
        await made(
            await routing.post(
                "/v1/rules",
                json={"name": "all", "conditions": {"channel": ["inbound"]}, "team_id": team["id"]},
                headers=ADMIN,
            )
        )
        rep = await made(
            await routing.post(
                "/v1/reps", json={"name": "Ada", "team_id": team["id"]}, headers=ADMIN
            )
        )
        mqls = [sample_mql(n) for n in range(3)]
        await publish_events(settings, TOPIC_SCORING, mqls)
        events = {e.data["lead_id"]: e for e in await routed(settings, 3)}

        work = await made(await routing.get(f"/v1/reps/{rep['id']}/worklist"), 200)
        assert {w["lead_id"] for w in work["items"]} == set(events)
        for item in work["items"]:
            assert item["state"] == "on_track" and item["sla"] and item["seconds_left"] > 0
        due = [w["due_at"] for w in work["items"]]
        assert due == sorted(due)

        late, done = mqls[2].lead_id, mqls[0].lead_id
        started = {
            lead: datetime.fromisoformat(events[str(lead)].data["routed_at"])
            for lead in (late, done)
        }
        breach = SlaBreached(
            lead_id=late,
            timer_id=uuid.uuid4(),
            sla="first_response",
            team="Inbound",
            started_at=started[late],
            due_at=datetime.now(UTC) - timedelta(minutes=5),
            level="breached",
        )
        met = [
            SlaMet(
                lead_id=done,
                timer_id=uuid.uuid4(),
                sla=sla,
                team="Inbound",
                started_at=started[done],
                due_at=datetime.now(UTC) + timedelta(hours=1),
                level="met",
                met_at=datetime.now(UTC),
                business_seconds=60,
            )
            for sla in {w["sla"] for w in work["items"]} | {"first_response", "contact_cadence",
                                                            "sal_acceptance"}
        ]  # fmt: skip
        await publish_events(settings, TOPIC_SLA, [breach, *met])

        async def settled():
            page = (await routing.get(f"/v1/teams/{team['id']}/worklist")).json()
            states = {w["lead_id"]: w["state"] for w in page["items"]}
            if states.get(str(late)) == "overdue" and states.get(str(done)) == "no_clock":
                return page
            return None

        page = await eventually(settled, timeout=60)
        assert page["items"][0]["lead_id"] == str(late)  # overdue first
        assert page["items"][0]["seconds_left"] < 0
        assert page["items"][-1]["lead_id"] == str(done)  # no open clock last

        refused = await routing.get(f"/v1/reps/{rep['id']}/worklist", headers=CONFIG_READER)
        assert refused.status_code == 403
        allowed = await routing.get(f"/v1/reps/{rep['id']}/worklist", headers=REPORTS_READER)
        assert allowed.status_code == 200
        gone = await routing.get(f"/v1/reps/{uuid.uuid4()}/worklist")
        assert gone.status_code == 404
