"""Pure rules of the parties' period commitments: how a promotion counts, what a period delivered
against the policy, which commitments it missed, and when a run of missed periods owes a
corrective plan.

Marketing (docs/domain.md, "Marketing's commitments"): MQL volume vs plan, share of MQLs in the
target segment / persona, share delivered with full context. Sales (the part of "Sales'
commitments" sla-timer measures itself): share of MQLs whose first contact attempt came within
the first-response limit, among those already decided (contacted, or overdue).
The figures follow the definitions of feedback's SLA report (leadflow.contracts.commitments).
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from leadflow.contracts.commitments import (
    Granularity,
    in_target,
    mql_context_missing,
    planned_mql,
    share,
)
from leadflow.contracts.events import LeadMql
from leadflow.contracts.policy import Policy

MARKETING = "marketing"
SALES = "sales"
PARTIES = (MARKETING, SALES)

MQL_VOLUME = "mql_volume"
IN_TARGET_SHARE = "in_target_share"
FULL_CONTEXT_SHARE = "full_context_share"
CONTACTED_WITHIN_LIMIT_SHARE = "contacted_within_limit_share"

# Period ids are derived, not drawn: the same party and period always get the same id.
PERIODS_NAMESPACE = uuid.UUID("6f1c2a4e-3d5b-4c7a-9e8f-0a1b2c3d4e5f")


@dataclass(frozen=True)
class Figure:
    """One commitment in one period: the plan, the pass mark, what was delivered, the verdict
    (None: nothing to judge, e.g. a share of zero MQLs)."""

    commitment: str
    planned: float
    target: float
    actual: float | None
    met: bool | None

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class MarketingCounts:
    mqls: int
    in_target: int
    full_context: int


@dataclass(frozen=True)
class SalesCounts:
    decided: int  # first responses contacted, or overdue without contact
    within_limit: int


def _share_figure(commitment: str, part: int, whole: int, target: float) -> Figure:
    actual = share(part, whole)
    return Figure(commitment, target, target, actual, None if actual is None else actual >= target)


def marketing_figures(
    counts: MarketingCounts, policy: Policy, granularity: Granularity
) -> list[Figure]:
    c = policy.commitments.marketing
    plan = planned_mql(policy, granularity)
    volume = Figure(
        MQL_VOLUME,
        plan,
        round(plan * c.mql_volume_min_share, 2),
        counts.mqls,
        counts.mqls >= plan * c.mql_volume_min_share,
    )
    return [
        volume,
        _share_figure(IN_TARGET_SHARE, counts.in_target, counts.mqls, c.min_in_target_share),
        _share_figure(
            FULL_CONTEXT_SHARE, counts.full_context, counts.mqls, c.min_full_context_share
        ),
    ]


def sales_figures(counts: SalesCounts, policy: Policy) -> list[Figure]:
    c = policy.commitments.sales
    return [
        _share_figure(
            CONTACTED_WITHIN_LIMIT_SHARE,
            counts.within_limit,
            counts.decided,
            c.min_contacted_within_limit_share,
        )
    ]


def missed(figures: list[Figure]) -> list[str]:
    return [f.commitment for f in figures if f.met is False]


def consecutive_misses(previous: int, missed_now: bool) -> int:
    """The length of the party's run of missed periods, this one included (0 if it kept them)."""
    return previous + 1 if missed_now else 0


def owes_corrective_plan(streak: int, policy: Policy) -> bool:
    return streak >= policy.commitments.corrective_plan_after_misses


def period_id(party: str, start: datetime) -> uuid.UUID:
    return uuid.uuid5(PERIODS_NAMESPACE, f"{party}/{start.isoformat()}")


def counted_promotion(policy: Policy, mql: LeadMql) -> dict[str, Any]:
    """A promotion as marketing's period commitments count it (a row of the mqls table)."""
    return {
        "lead_id": mql.lead_id,
        "promoted_at": mql.promoted_at,
        "kind": mql.kind,
        "channel": mql.channel,
        "in_target": in_target(policy, mql.company.model_dump(), mql.role),
        "context_missing": mql_context_missing(mql),
    }


def latest_promotions(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The latest promotion of each lead among `rows` (in arrival order), by lead id: a later
    promotion of the same lead (after a recycle) moves it to the later period."""
    latest: dict[uuid.UUID, dict[str, Any]] = {}
    for row in rows:
        known = latest.get(row["lead_id"])
        if known is None or known["promoted_at"] <= row["promoted_at"]:
            latest[row["lead_id"]] = row
    return [latest[i] for i in sorted(latest)]
