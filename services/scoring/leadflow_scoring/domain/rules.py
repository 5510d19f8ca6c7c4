"""Scoring rules, all pure: fit, decaying engagement, negative signals, the MQL and PQL
decisions, promotion, and the facts they read from a stored lead."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from typing import Any

from leadflow.contracts.events import LeadActivity
from leadflow.contracts.policy import Policy, normalise_industry

# Ingest's page categories, each its own engagement kind; anything else is "other_page".
_PAGE_KINDS = {
    "pricing": "pricing_page",
    "docs": "docs_page",
    "blog": "blog_page",
    "careers": "careers_page",
    "other": "other_page",
}
# Ingest activity types that are engagement kinds under the same name.
_DIRECT_KINDS = frozenset(
    {
        "content_download",
        "webinar_attended",
        "event_attended",
        "demo_request",
        "email_open",
        "email_click",
        "form_submit",
        "product_usage",
    }
)
# A look-back window includes its first instant: a behaviour lapses just after it.
_INSTANT = timedelta(microseconds=1)


@dataclass(frozen=True)
class LeadFacts:
    """What scoring knows about a lead; industry is normalised ("financial_services")."""

    email_valid: bool = True
    email_domain: str | None = None
    industry: str | None = None
    employees: int | None = None
    seniority: str | None = None
    role: str | None = None
    intent_tier: int = 0
    is_student: bool = False
    is_job_seeker: bool = False
    is_competitor: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.intent_tier <= 3:
            raise ValueError(f"intent_tier must be 0–3, got {self.intent_tier}")


@dataclass(frozen=True)
class Interaction:
    """One engagement of the lead; `kind` is an engagement key of the policy (see activity_kind)."""

    kind: str
    occurred_at: datetime


@dataclass(frozen=True)
class BreakdownItem:
    """One line of the explanation a rep sees: which rule gave (or took) how many points."""

    rule: str
    points: float | int
    detail: str = ""


@dataclass(frozen=True)
class ScoreResult:
    fit: int
    engagement: float
    intent_tier: int
    negative_points: int  # total subtracted from the fit score, before the floor at 0
    is_mql: bool
    breakdown: tuple[BreakdownItem, ...] = ()
    mql_reasons: tuple[str, ...] = ()
    policy_version: str = ""


def round_half_up(value: float | Fraction, ndigits: int = 0) -> float:
    """Round halves away from zero (89.5 → 90), unlike Python's round(), which rounds halves to
    even (88.5 → 88): a score must not depend on whether its neighbour digit is even."""
    if isinstance(value, Fraction):
        exact = Decimal(value.numerator) / Decimal(value.denominator)
    else:
        # repr gives the shortest decimal that reads back as this float, the number a person sees.
        exact = Decimal(repr(value))
    return float(exact.quantize(Decimal(1).scaleb(-ndigits), rounding=ROUND_HALF_UP))


def activity_kind(activity_type: str, page_category: str | None) -> str | None:
    """The policy engagement key an ingest activity counts as, or None if scoring ignores it."""
    if activity_type == "page_view":
        return _PAGE_KINDS.get(page_category or "other", "other_page")
    if activity_type in _DIRECT_KINDS:
        return activity_type
    return None


def is_competitor_domain(email_domain: str | None, policy: Policy) -> bool:
    """True when the email domain is, or is a subdomain of, a competitor listed in the policy."""
    if not email_domain:
        return False
    domain = email_domain.strip().lower()
    # A subdomain of a competitor (eu.rival.com) is the competitor too.
    return any(
        domain == rival or domain.endswith("." + rival)
        for rival in policy.scoring.negative.competitor_domains
    )


def negative_signals(facts: LeadFacts, policy: Policy) -> list[BreakdownItem]:
    """The negative signals the lead shows, each with its (negative) points."""
    rules = policy.scoring.negative
    shown = [
        (not facts.email_valid, "invalid_email", rules.invalid_email, "email address is invalid"),
        (
            facts.is_competitor or is_competitor_domain(facts.email_domain, policy),
            "competitor",
            rules.competitor,
            "works for a competitor",
        ),
        (facts.is_student, "student", rules.student, "is a student"),
        (facts.is_job_seeker, "job_seeker", rules.job_seeker, "is a job seeker"),
    ]
    return [
        BreakdownItem(f"negative.{name}", -points, detail)
        for present, name, points, detail in shown
        if present
    ]


def fit_score(facts: LeadFacts, policy: Policy) -> tuple[int, list[BreakdownItem]]:
    """ICP fit 0–100: earned points normalised to the best possible lead, minus negative
    signals, floored at 0."""
    rules = policy.scoring.fit
    breakdown: list[BreakdownItem] = []

    industry = normalise_industry(facts.industry) if facts.industry else None
    in_priority = industry in rules.priority_industries
    breakdown.append(
        BreakdownItem(
            "fit.industry",
            rules.industry_points if in_priority else 0,
            f"{industry or 'unknown industry'} "
            + ("is a priority industry" if in_priority else "is not a priority industry"),
        )
    )

    band = rules.size_band
    in_band = facts.employees is not None and band.contains(facts.employees)
    size = "unknown size" if facts.employees is None else f"{facts.employees} employees"
    breakdown.append(
        BreakdownItem(
            "fit.size",
            rules.size_points if in_band else 0,
            f"{size} {'inside' if in_band else 'outside'} "
            f"{band.min_employees}–{band.max_employees}",
        )
    )

    seniority_points = rules.seniority_points.get(facts.seniority, 0) if facts.seniority else 0
    breakdown.append(
        BreakdownItem("fit.seniority", seniority_points, facts.seniority or "unknown seniority")
    )

    earned = sum(item.points for item in breakdown)
    # Exact fraction so the half-up rounding sees the true value, not a float neighbour.
    normalised = int(round_half_up(Fraction(100 * earned, rules.max_points)))

    negatives = negative_signals(facts, policy)
    breakdown.extend(negatives)
    penalty = -sum(item.points for item in negatives)
    return max(0, normalised - penalty), breakdown


def engagement_score(
    interactions: Iterable[Interaction], now: datetime, policy: Policy
) -> tuple[float, list[BreakdownItem]]:
    """Engagement: points per interaction summed, capped, then × decay_factor for every full
    decay period since the last interaction; rounded half-up to 2 decimals."""
    rules = policy.scoring.engagement
    interactions = list(interactions)
    if not interactions:
        return 0.0, []

    breakdown: list[BreakdownItem] = []
    counts = Counter(interaction.kind for interaction in interactions)
    raw = 0
    for kind, count in sorted(counts.items()):
        each = rules.points.get(kind, 0)
        raw += each * count
        breakdown.append(
            BreakdownItem(f"engagement.{kind}", each * count, f"{count} × {each} points")
        )

    capped = min(raw, rules.cap)
    if capped < raw:
        breakdown.append(BreakdownItem("engagement.cap", capped - raw, f"capped at {rules.cap:g}"))

    last = max(aware(interaction.occurred_at) for interaction in interactions)
    # An interaction stamped after `now` (clock skew between systems) counts as happening now.
    idle = max(aware(now) - last, timedelta(0))
    periods = math.floor(idle / rules.decay_every)
    decayed = round_half_up(capped * rules.decay_factor**periods, 2)
    if periods:
        period_days = rules.decay_every / timedelta(days=1)
        breakdown.append(
            BreakdownItem(
                "engagement.decay",
                round_half_up(decayed - capped, 2),
                f"{periods} full period(s) of {period_days:g} days without interaction: "
                f"× {rules.decay_factor:g}^{periods}",
            )
        )
    return decayed, breakdown


def _in_window(
    interactions: Iterable[Interaction], kind: str, now: datetime, within: timedelta
) -> list[datetime]:
    """When the lead showed `kind` within the last `within` before `now`, newest first."""
    since = aware(now) - within
    return sorted(
        (at for i in interactions if i.kind == kind and (at := aware(i.occurred_at)) >= since),
        reverse=True,
    )


def required_behaviours(
    interactions: Iterable[Interaction], now: datetime, policy: Policy
) -> tuple[list[str], list[str]]:
    """The MQL rule's required behaviours: (shown, missing), each reason starting with a stable
    code (`behaviour_met`, `behaviour_missing`) and naming the activity."""
    interactions = list(interactions)
    shown: list[str] = []
    missing: list[str] = []
    for required in policy.scoring.mql.required_behaviours:
        seen = len(_in_window(interactions, required.activity, now, required.within))
        window = f"{required.within / timedelta(days=1):g} days"
        if seen >= required.min_count:
            shown.append(
                f"behaviour_met: {required.activity} {seen}× ≥ {required.min_count} "
                f"in the last {window}"
            )
        else:
            missing.append(
                f"behaviour_missing: {required.activity} {seen}× < {required.min_count} "
                f"in the last {window}"
            )
    return shown, missing


def behaviours_lapse_at(
    interactions: Iterable[Interaction], now: datetime, policy: Policy
) -> datetime | None:
    """When the first required behaviour shown now falls out of its look-back window (its
    min_count-th newest occurrence ages past it), or None when none is shown or required."""
    interactions = list(interactions)
    lapses = []
    for required in policy.scoring.mql.required_behaviours:
        seen = _in_window(interactions, required.activity, now, required.within)
        if len(seen) >= required.min_count:
            lapses.append(seen[required.min_count - 1] + required.within + _INSTANT)
    return min(lapses, default=None)


def is_mql(
    fit: float,
    engagement: float,
    intent_tier: int,
    role: str | None,
    policy: Policy,
    behaviours: tuple[list[str], list[str]] = ([], []),
) -> tuple[bool, list[str]]:
    """The MQL rule. Reasons explain the decision: the conditions met when it is an MQL,
    the conditions failed when it is not; each starts with a stable code. `behaviours` is
    what `required_behaviours` found (shown, missing)."""
    rule = policy.scoring.mql
    met: list[str] = []
    failed: list[str] = []

    if fit >= rule.fit_min:
        met.append(f"fit_met: fit {fit:g} ≥ {rule.fit_min:g}")
    else:
        failed.append(f"fit_below_min: fit {fit:g} < {rule.fit_min:g}")

    if engagement >= rule.engagement_min:
        met.append(f"engagement_met: engagement {engagement:g} ≥ {rule.engagement_min:g}")
    elif intent_tier >= rule.intent_tier_min:
        met.append(f"intent_met: intent tier {intent_tier} ≥ {rule.intent_tier_min}")
    else:
        failed.append(
            f"interest_below_min: engagement {engagement:g} < {rule.engagement_min:g} "
            f"and intent tier {intent_tier} < {rule.intent_tier_min}"
        )

    roles = ", ".join(rule.roles)
    if role in rule.roles:
        met.append(f"role_eligible: {role} is one of {roles}")
    else:
        failed.append(f"role_not_eligible: {role or 'unknown role'} is not one of {roles}")

    shown, missing = behaviours
    met.extend(shown)
    failed.extend(missing)
    return (not failed), (failed or met)


def evaluate(
    facts: LeadFacts, interactions: Iterable[Interaction], now: datetime, policy: Policy
) -> ScoreResult:
    """The full score of a lead at `now` under `policy`."""
    interactions = list(interactions)
    fit, fit_breakdown = fit_score(facts, policy)
    engagement, engagement_breakdown = engagement_score(interactions, now, policy)
    behaviours = required_behaviours(interactions, now, policy)
    qualifies, reasons = is_mql(fit, engagement, facts.intent_tier, facts.role, policy, behaviours)
    negative_points = -sum(
        item.points for item in fit_breakdown if item.rule.startswith("negative.")
    )
    return ScoreResult(
        fit=fit,
        engagement=engagement,
        intent_tier=facts.intent_tier,
        negative_points=negative_points,
        is_mql=qualifies,
        breakdown=tuple(fit_breakdown + engagement_breakdown),
        mql_reasons=tuple(reasons),
        policy_version=policy.version,
    )


def next_decay_at(
    interactions: Iterable[Interaction], now: datetime, policy: Policy
) -> datetime | None:
    """When the engagement next loses a decay period, or None when decay cannot change it
    any more (nothing earned points, no decay, or it has already decayed to 0)."""
    rules = policy.scoring.engagement
    interactions = list(interactions)
    raw = sum(rules.points.get(interaction.kind, 0) for interaction in interactions)
    if raw <= 0 or rules.decay_factor >= 1:
        return None
    last = max(aware(interaction.occurred_at) for interaction in interactions)
    idle = max(aware(now) - last, timedelta(0))
    periods = math.floor(idle / rules.decay_every)
    if round_half_up(min(raw, rules.cap) * rules.decay_factor**periods, 2) == 0:
        return None
    return last + (periods + 1) * rules.decay_every


@dataclass(frozen=True)
class ProductUsage:
    """An account's product usage within the PQL window."""

    account: str
    feature_uses: Mapping[str, int] = field(default_factory=dict)  # uses per feature
    active_users: int = 0


def is_pql(usage: ProductUsage, policy: Policy) -> tuple[bool, list[str]]:
    """The PQL rule: one feature used ≥ feature_uses_min times OR ≥ active_users_min distinct
    active users, within the window. Reasons as in is_mql: met conditions, or failed ones."""
    rule = policy.scoring.pql
    window = f"{rule.window / timedelta(days=1):g} days"
    met: list[str] = []
    failed: list[str] = []

    feature, uses = max(
        sorted(usage.feature_uses.items()), key=lambda item: item[1], default=(None, 0)
    )
    if uses >= rule.feature_uses_min:
        met.append(
            f"feature_uses_met: {feature} used {uses}× ≥ {rule.feature_uses_min} "
            f"in account {usage.account} within {window}"
        )
    else:
        failed.append(
            f"feature_uses_below_min: most used feature {feature or 'none'} used {uses}× "
            f"< {rule.feature_uses_min} within {window}"
        )
    if usage.active_users >= rule.active_users_min:
        met.append(
            f"active_users_met: {usage.active_users} active users ≥ {rule.active_users_min} "
            f"in account {usage.account} within {window}"
        )
    else:
        failed.append(
            f"active_users_below_min: {usage.active_users} active users "
            f"< {rule.active_users_min} within {window}"
        )
    return bool(met), (met or failed)


@dataclass(frozen=True)
class PromotionState:
    """Where the lead stands: promoted before, recycled (resting in nurture until), contactable."""

    promoted: bool = False
    routable: bool = True
    nurture_until: datetime | None = None  # set while the lead is recycled
    recycle_intent_tier: int = 0  # its intent tier when it was recycled


def promotion(
    result: ScoreResult,
    pql: tuple[bool, list[str]] | None,
    state: PromotionState,
    now: datetime,
    policy: Policy,
) -> tuple[str | None, list[str]]:
    """Whether to hand the lead to sales now: "mql", "pql" or None, with the reasons.

    A lead is promoted once; losing the MQL rule later (decay) does not take it back. A
    recycled lead comes back only after the nurture window of its reason, and then only on
    renewed interest: the MQL rule with engagement ≥ recycle.reengagement_min, or with an
    intent tier above the one it had when recycled (or as a PQL).
    """
    if not state.routable:
        return None, ["not_routable: no lawful basis to contact the lead"]
    pql_met = pql is not None and pql[0]
    if state.nurture_until is not None:
        until = aware(state.nurture_until)
        if aware(now) < until:
            return None, [f"in_nurture: recycled, rests in nurture until {until.isoformat()}"]
        if result.is_mql:
            rule = policy.scoring.recycle
            if result.engagement >= rule.reengagement_min:
                return "mql", [
                    *result.mql_reasons,
                    f"reengaged: engagement {result.engagement:g} ≥ {rule.reengagement_min:g}",
                ]
            if result.intent_tier > state.recycle_intent_tier:
                return "mql", [
                    *result.mql_reasons,
                    f"intent_rose: intent tier {state.recycle_intent_tier} → {result.intent_tier}",
                ]
        if pql_met:
            return "pql", list(pql[1])
        if not result.is_mql:
            return None, list(result.mql_reasons)
        return None, [
            f"no_renewed_interest: engagement {result.engagement:g} < "
            f"{policy.scoring.recycle.reengagement_min:g} and intent tier "
            f"{result.intent_tier} not above {state.recycle_intent_tier}"
        ]
    if state.promoted:
        return None, ["already_promoted: sales has the lead"]
    if result.is_mql:
        return "mql", list(result.mql_reasons)
    if pql_met:
        return "pql", list(pql[1])
    return None, list(result.mql_reasons)


def aware(instant: datetime) -> datetime:
    """The instant with a time zone; naive instants are UTC, the convention of every event."""
    return instant if instant.tzinfo is not None else instant.replace(tzinfo=UTC)


# -- what the rules read from a stored lead ----------------------------------------------------


def facts_of(lead: Mapping[str, Any], policy: Policy) -> LeadFacts:
    """The facts the rules weigh, read from a lead snapshot as ingest published it."""
    flags = set(lead.get("flags") or [])
    company = lead.get("company") or {}
    domain = str(lead.get("email", "")).rpartition("@")[2]
    return LeadFacts(
        email_valid="invalid_email" not in flags,
        email_domain=domain,
        industry=company.get("industry"),
        employees=company.get("employees"),
        seniority=lead.get("seniority"),
        role=lead.get("role"),
        intent_tier=int(lead.get("intent_tier") or 0),
        is_student="student" in flags,
        is_job_seeker="job_seeker" in flags,
        is_competitor="competitor" in flags or is_competitor_domain(domain, policy),
    )


def interactions_of(stored: Iterable[Mapping[str, Any]]) -> list[Interaction]:
    """The interactions of a lead as they are stored ({kind, type, occurred_at in ISO 8601})."""
    return [Interaction(i["kind"], datetime.fromisoformat(i["occurred_at"])) for i in stored]


def account_of(activity: LeadActivity, lead: Mapping[str, Any]) -> str:
    """The product account a usage belongs to: as the product names it, else the company
    domain of the lead, else the lead itself."""
    props = activity.properties
    for key in ("account", "account_id"):
        if props.get(key) not in (None, ""):
            return str(props[key])
    company = lead.get("company") or {}
    domain = company.get("domain") or str(lead.get("email", "")).rpartition("@")[2]
    return domain or str(activity.lead_id)
