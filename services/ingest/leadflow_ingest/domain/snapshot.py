"""The lead after an input: the known snapshot with the given fields applied and normalised, and
the parts derived from them (company domain, size band, negative-signal flags, missing context)."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from datetime import datetime
from typing import Any, TypeVar

from leadflow.contracts.events import LeadSnapshot
from leadflow.contracts.policy import Policy

from leadflow_ingest.domain import normalise
from leadflow_ingest.schemas import LeadIn

Snapshot = TypeVar("Snapshot", bound=LeadSnapshot)

# What marketing owes with every lead beyond who it is (docs/domain.md, "Context").
CONTEXT_FIELDS = ("source.campaign", "source.lead_magnet", "intent_note")
JOB_SEEKER = "job_seeker"


def _deep_merge(base: dict, changes: dict) -> dict:
    merged = dict(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _given_fields(body: LeadIn) -> dict[str, Any]:
    """Only what the sender set: an update that omits a field keeps what is known."""
    given = body.model_dump(mode="json", exclude_unset=True)
    extras = body.properties
    for name in extras:
        given.pop(name, None)
    given.pop("email", None)  # identity, handled by the caller
    company = given.get("company")
    if company is not None:
        if "name" in company:
            company["name"] = normalise.clean_name(company["name"])
        if "industry" in company:
            raw = company["industry"]
            company["industry"] = normalise.industry(raw)
            if company["industry"] == "other":
                company["industry_raw"] = raw
        if "country" in company:
            raw = company["country"]
            company["country"] = normalise.country_code(raw)
            if raw and company["country"] is None:
                company["country_raw"] = raw
        if company.get("domain"):
            company["domain"] = normalise.company_domain("", company["domain"])
    source = given.get("source")
    if source is not None and source.get("system"):
        source["system"] = source["system"].strip().lower()
    for name in ("first_name", "last_name", "title"):
        if name in given:
            given[name] = normalise.clean_name(given[name])
    consent = given.pop("consent", None)
    if consent is not None:
        given["consent_basis"] = consent["basis"]
    if extras:
        given["properties"] = extras
    return given


def lead_snapshot(
    lead_id: uuid.UUID,
    email: str,
    body: LeadIn,
    previous: dict | None,
    policy: Policy,
    *,
    now: datetime,
    activity_flags: Collection[str] = frozenset(),
    kind: type[Snapshot] = LeadSnapshot,
) -> Snapshot:
    """The lead after this input, as the payload `kind` (LeadCreated, …): the previous
    snapshot with the given fields applied, normalised, with the derived parts (domain, size
    band, flags, context) recomputed."""
    base = dict(previous or {})
    base.pop("merged_lead_ids", None)
    snapshot = _deep_merge(base, _given_fields(body))
    snapshot["lead_id"] = str(lead_id)
    snapshot["email"] = email
    snapshot["occurred_at"] = (body.occurred_at or now).isoformat()
    company = dict(snapshot.get("company") or {})
    if not company.get("domain"):
        company["domain"] = normalise.company_domain(email, None)
    company["size_band"] = normalise.size_band(company.get("employees"))
    snapshot["company"] = company
    snapshot.setdefault("consent_basis", "consent")
    snapshot["routable"] = snapshot["consent_basis"] != "none"
    negative = policy.scoring.negative
    _, email_valid = normalise.normalise_email(email)
    flags = normalise.intake_flags(
        email_valid=email_valid,
        title=snapshot.get("title"),
        email=email,
        competitor_domains=negative.competitor_domains,
        student_markers=negative.student_markers,
        job_seeker_markers=negative.job_seeker_markers,
        student_domain_suffixes=negative.student_domain_suffixes,
    )
    snapshot["flags"] = sorted(set(flags) | set(activity_flags))
    source = snapshot.get("source") or {}
    present = {
        "source.campaign": source.get("campaign"),
        "source.lead_magnet": source.get("lead_magnet"),
        "intent_note": snapshot.get("intent_note"),
    }
    snapshot["context_missing"] = [name for name in CONTEXT_FIELDS if not present[name]]
    return kind.model_validate(snapshot)


def marks_job_seeker(
    activity_type: str, page_category: str | None, flags: Collection[str], policy: Policy
) -> bool:
    """A visit to a page the policy names (careers) marks a job seeker, once."""
    return (
        activity_type == "page_view"
        and page_category in policy.scoring.negative.job_seeker_pages
        and JOB_SEEKER not in flags
    )


def with_job_seeker(snapshot: dict, *, now: datetime) -> LeadSnapshot:
    """The lead's snapshot once an activity marked it a job seeker."""
    flags = snapshot.get("flags") or []
    return LeadSnapshot.model_validate(
        {**snapshot, "flags": sorted({*flags, JOB_SEEKER}), "occurred_at": now}
    )
