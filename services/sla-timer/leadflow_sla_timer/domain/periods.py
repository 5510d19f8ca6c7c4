"""Pure rules of the parties' period commitments: how a promotion counts, what a period delivered
against the policy, which commitments it missed, and when a run of missed periods owes a
corrective plan.

The commitments judged are the one list of leadflow.contracts.commitments, the same feedback's
SLA report judges. Marketing (docs/domain.md, "Marketing's commitments"): MQL volume vs plan,
source mix vs plan, share of MQLs in the target segment / persona, share delivered with full
context. Sales ("Sales' commitments"): share of MQLs whose first contact attempt came within the
first-response limit, among those already decided (contacted, or overdue); contact attempts
per MQL (the contact cadence's); share of MQLs with a status.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from leadflow.contracts.commitments import (
    COMMITMENTS,
    MARKETING,
    PARTIES,
    SALES,
    Granularity,
    in_target,
    missed_commitments,
    mql_context_missing,
    planned_mql,
    share,
    source_group,
    source_mix,
)
from leadflow.contracts.events import LeadMql
from leadflow.contracts.policy import Policy

__all__ = ["MARKETING", "PARTIES", "SALES"]  # the parties, re-exported for the use cases

MQL_VOLUME, SOURCE_MIX, IN_TARGET_SHARE, FULL_CONTEXT_SHARE = COMMITMENTS[MARKETING]
CONTACTED_WITHIN_LIMIT_SHARE, ATTEMPTS_PER_MQL, STATUS_SHARE = COMMITMENTS[SALES]

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
    by_medium: dict[str | None, int] = field(default_factory=dict)  # MQLs per source medium


@dataclass(frozen=True)
class SalesCounts:
    decided: int  # first responses contacted, or overdue without contact
    within_limit: int
    mqls: int = 0
    attempts: int = 0  # the contact cadence's attempts on those MQLs
    with_status: int = 0


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
    groups: dict[str, int] = {}
    for medium, n in counts.by_medium.items():
        group = source_group({"medium": medium}, c.source_mix)
        groups[group] = groups.get(group, 0) + n
    mix = source_mix(groups, policy)
    # The mix as one figure: no drift planned, the tolerance as the most allowed, the drift of
    # the group furthest from its planned share as delivered.
    mix_figure = Figure(SOURCE_MIX, 0.0, c.source_mix_tolerance, mix.largest_drift, mix.met)
    return [
        volume,
        mix_figure,
        _share_figure(IN_TARGET_SHARE, counts.in_target, counts.mqls, c.min_in_target_share),
        _share_figure(
            FULL_CONTEXT_SHARE, counts.full_context, counts.mqls, c.min_full_context_share
        ),
    ]


def sales_figures(counts: SalesCounts, policy: Policy) -> list[Figure]:
    c = policy.commitments.sales
    attempts = round(counts.attempts / counts.mqls, 2) if counts.mqls else None
    return [
        _share_figure(
            CONTACTED_WITHIN_LIMIT_SHARE,
            counts.within_limit,
            counts.decided,
            c.min_contacted_within_limit_share,
        ),
        Figure(
            ATTEMPTS_PER_MQL,
            c.min_attempts_per_mql,
            c.min_attempts_per_mql,
            attempts,
            None if attempts is None else attempts >= c.min_attempts_per_mql,
        ),
        _share_figure(STATUS_SHARE, counts.with_status, counts.mqls, c.min_status_share),
    ]


def missed(party: str, figures: list[Figure]) -> list[str]:
    return missed_commitments(party, {f.commitment: f.met for f in figures})


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
        "medium": mql.source.medium,
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
