"""Searching leads at ingest, where their identity lives, over the real PostgreSQL: by e-mail,
name, company or id, paged as every list, for keys that may see personal data only; merged and
erased leads are not found."""

from support.harness import (
    ADMIN,
    LEADS_READER,
    QUALIFIED_LEAD,
    REPORTS_READER,
    SOURCE,
    service_client,
)


def lead(n: int, first: str, last: str, company: str) -> dict:
    return {
        **QUALIFIED_LEAD,
        "email": f"{first.lower()}.{last.lower()}@{company.lower().replace(' ', '-')}.example",
        "external_id": f"crm-{n}",
        "first_name": first,
        "last_name": last,
        "company": {**QUALIFIED_LEAD["company"], "name": company},
    }


async def found(ingest, q: str, **params) -> list[str]:
    answer = await ingest.get("/v1/leads", params={"q": q, **params}, headers=LEADS_READER)
    assert answer.status_code == 200, answer.text
    return sorted(f"{item['first_name']} {item['last_name']}" for item in answer.json()["items"])


async def test_leads_are_found_by_email_name_company_or_id_by_whoever_may_see_them(settings):
    async with service_client("ingest", settings) as ingest:
        ids = {}
        for n, (first, last, company) in enumerate(
            [
                ("Ada", "Lovelace", "Analytical Engines"),
                ("Grace", "Hopper", "Compilers 100%"),
                ("Alan", "Turing", "Bletchley Park"),
            ]
        ):
            accepted = await ingest.post(
                "/v1/leads", json=lead(n, first, last, company), headers=SOURCE
            )
            assert accepted.status_code == 202, accepted.text
            ids[first] = accepted.json()["lead_id"]

        assert await found(ingest, "LOVELACE") == ["Ada Lovelace"]
        assert await found(ingest, "grace hopper") == ["Grace Hopper"]
        assert await found(ingest, "bletchley") == ["Alan Turing"]
        assert await found(ingest, "hopper@compilers") == ["Grace Hopper"]
        assert await found(ingest, ids["Alan"]) == ["Alan Turing"]
        assert await found(ingest, "crm-0") == ["Ada Lovelace"]
        assert await found(ingest, "100%") == ["Grace Hopper"]  # a wildcard is a character
        assert await found(ingest, "a_") == []

        first = await ingest.get(
            "/v1/leads", params={"q": ".example", "limit": 2}, headers=LEADS_READER
        )
        assert len(first.json()["items"]) == 2 and 'rel="next"' in first.headers["link"]
        rest = await ingest.get(
            "/v1/leads",
            params={"q": ".example", "limit": 2, "cursor": first.json()["next_cursor"]},
            headers=LEADS_READER,
        )
        names = [i["first_name"] for i in first.json()["items"] + rest.json()["items"]]
        assert sorted(names) == ["Ada", "Alan", "Grace"] and rest.json()["next_cursor"] is None

        short = await ingest.get("/v1/leads", params={"q": "a"}, headers=LEADS_READER)
        assert short.status_code == 422 and "q" in short.text
        refused = await ingest.get("/v1/leads", params={"q": "Ada"}, headers=REPORTS_READER)
        assert refused.status_code == 403 and refused.json()["scope"] == "leads:read"

        # a lead merged into another is found by its old e-mail as the one it went into
        other = lead(9, "Augusta", "King", "Analytical Engines")
        other["email"] = "countess@lovelace.example"
        await ingest.post("/v1/leads", json={**other, "external_id": "crm-9"}, headers=SOURCE)
        merged = await ingest.post(
            "/v1/leads",
            json={**lead(0, "Ada", "Lovelace", "Analytical Engines"), "external_id": "crm-9"},
            headers=SOURCE,
        )
        assert merged.json()["lead_id"] == ids["Ada"]
        assert await found(ingest, "countess@") == ["Ada Lovelace"]

        erased = await ingest.delete(f"/v1/leads/{ids['Ada']}", headers=ADMIN)
        assert erased.status_code == 202
        assert await found(ingest, "lovelace") == []
        assert await found(ingest, ids["Ada"]) == []
