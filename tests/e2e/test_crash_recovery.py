"""kill -9 a service while leads flow, restart it: no event is lost, no lead routed or delivered twice."""

import asyncio
import json
from collections import Counter

import httpx
from leadflow_tools.receiver import WebhookReceiver
from support.harness import ADMIN, SOURCE, eventually, present_read_key
from support.harness import sample_lead as lead


async def test_killed_services_lose_no_event_and_double_nothing(services):
    urls = {name: proc.url for name, proc in services.items()}
    async with (
        WebhookReceiver() as receiver,
        httpx.AsyncClient(timeout=10, event_hooks={"request": [present_read_key]}) as http,
    ):
        for name in ("Rep A", "Rep B"):
            await http.post(f"{urls['routing']}/v1/reps", headers=ADMIN, json={"name": name})
        await http.post(
            f"{urls['notify']}/v1/webhook-endpoints", headers=ADMIN, json={"url": receiver.url}
        )
        lead_ids = []
        n = 0
        for victim in ("scoring", "routing", "notify", "ingest"):
            for _ in range(5):  # some leads before the crash, in flight when it comes
                n += 1
                lead_ids.append(
                    (
                        await http.post(f"{urls['ingest']}/v1/leads", headers=SOURCE, json=lead(n))
                    ).json()["lead_id"]
                )
            # Off the event loop: the receiver on it keeps taking deliveries meanwhile.
            await asyncio.to_thread(services[victim].kill)
            if victim != "ingest":
                for _ in range(10):  # arrive while the service is down
                    n += 1
                    lead_ids.append(
                        (
                            await http.post(
                                f"{urls['ingest']}/v1/leads", headers=SOURCE, json=lead(n)
                            )
                        ).json()["lead_id"]
                    )
            await asyncio.to_thread(services[victim].start, 90)

        async def all_delivered():
            return len(
                {json.loads(body)["data"]["lead"]["lead_id"] for _, body in receiver.received}
            ) >= len(lead_ids)

        await eventually(all_delivered, timeout=120)
        webhook_ids_per_lead: dict[str, set[str]] = {}
        for headers, body in receiver.received:
            lead_id = json.loads(body)["data"]["lead"]["lead_id"]
            webhook_ids_per_lead.setdefault(lead_id, set()).add(headers["webhook-id"])
        assert set(webhook_ids_per_lead) == set(lead_ids)
        assert all(len(ids) == 1 for ids in webhook_ids_per_lead.values()), webhook_ids_per_lead

        reps = Counter()
        for lead_id in lead_ids:
            assignment = (await http.get(f"{urls['routing']}/v1/leads/{lead_id}/assignment")).json()
            reps[assignment["rep_id"]] += 1
        assert sum(reps.values()) == len(lead_ids)
        assert sorted(reps.values()) == [len(lead_ids) // 2, len(lead_ids) - len(lead_ids) // 2]

        async def every_timer_open():
            opened = 0
            for lead_id in lead_ids:
                slas = (await http.get(f"{urls['sla-timer']}/v1/leads/{lead_id}/slas")).json()
                first = [t for t in slas["timers"] if t["sla"] == "first_response"]
                opened += len(first) == 1  # exactly one first-response clock per lead
            return opened == len(lead_ids)

        await eventually(every_timer_open, timeout=60)
