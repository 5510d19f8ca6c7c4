"""The funnel's conversion rates as Leadflow observed them (docs/domain.md "Plans from
history"): lead→MQL, MQL→SQL, SQL→SQO and SQO→won over a window, for one channel or campaign
or for all, each with the outcomes it rests on, for the planner to use instead of typed-in
numbers.

Cohorts: lead→MQL counts the leads that arrived in the window (each is an outcome: promoted
or not yet); the later stages count the MQLs promoted in the window, and for each stage the
ones that entered it and were decided: reached the next stage (converted) or left the funnel
after entering it (returned, recycled, unreachable, lost). A lead still being worked at a
stage is `open` and says nothing yet, so it does not dilute the rate.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction

from leadflow_feedback.domain.lifecycle import stages_reached
from leadflow_feedback.domain.reports import DECIDED_WITHOUT_SQL, LeadFacts

# The planner's rate fields, each a stage of the funnel: (field, from stage, to stage).
STAGES: tuple[tuple[str, str, str], ...] = (
    ("lead_to_mql", "lead", "mql"),
    ("mql_to_sql", "mql", "sql"),
    ("sql_to_sqo", "sql", "sqo"),
    ("win_rate", "sqo", "won"),
)
STAGE_LABELS = {
    "lead_to_mql": "lead→MQL",
    "mql_to_sql": "MQL→SQL",
    "sql_to_sqo": "SQL→SQO",
    "win_rate": "SQO→won",
}
# Leaving the funnel after entering a stage decides that stage without its next one.
LEFT_FUNNEL = DECIDED_WITHOUT_SQL


@dataclass(frozen=True)
class Arrival:
    """A lead that arrived in the window, as lead→MQL needs it."""

    channel: str | None
    campaign: str | None
    promoted: bool


@dataclass(frozen=True)
class ObservedRate:
    """One stage's observed conversion: `converted` of `outcomes` decided leads; `open` more
    entered the stage and are still being worked."""

    stage: str
    converted: int
    outcomes: int
    open: int = 0

    @property
    def rate(self) -> Fraction | None:
        return Fraction(self.converted, self.outcomes) if self.outcomes else None


def stage_outcome(lead: LeadFacts, entered: str, reached: str) -> bool | None:
    """True: the lead entered `entered` and reached `reached`; False: it left the funnel after
    entering `entered` without reaching `reached`; None: it is still being worked there, or
    never entered it (`entered_stage` tells these apart)."""
    statuses = [step.status for step in lead.history] + [lead.status]
    if reached in stages_reached(set(statuses) | {"mql"}):
        return True
    since = _entered_at(statuses, entered)
    if since is None:
        return None
    return False if any(s in LEFT_FUNNEL for s in statuses[since:]) else None


def entered_stage(lead: LeadFacts, stage: str) -> bool:
    statuses = [step.status for step in lead.history] + [lead.status]
    return stage in stages_reached(set(statuses) | {"mql"})


def _entered_at(statuses: list[str], stage: str) -> int | None:
    """The index of the first status by which the lead had entered `stage` (an MQL's every
    status is past MQL)."""
    if stage == "mql":
        return 0
    for index, status in enumerate(statuses):
        if stage in stages_reached({status}):
            return index
    return None


def _matches(channel: str | None, campaign: str | None, want_channel, want_campaign) -> bool:
    return (want_channel is None or channel == want_channel) and (
        want_campaign is None or campaign == want_campaign
    )


def observed_rates(
    arrivals: Iterable[Arrival],
    mqls: Iterable[LeadFacts],
    *,
    channel: str | None = None,
    campaign: str | None = None,
) -> dict[str, ObservedRate]:
    """Each stage's observed rate from the leads that arrived and the MQLs promoted in the
    window, keeping those of `channel` and `campaign` when named."""
    arrived = [a for a in arrivals if _matches(a.channel, a.campaign, channel, campaign)]
    rates = {
        "lead_to_mql": ObservedRate(
            "lead_to_mql", sum(1 for a in arrived if a.promoted), len(arrived)
        )
    }
    cohort = [
        m for m in mqls if _matches(m.channel, (m.source or {}).get("campaign"), channel, campaign)
    ]
    for stage, entered, reached in STAGES[1:]:
        converted = outcomes = still_open = 0
        for lead in cohort:
            if not entered_stage(lead, entered):
                continue
            decided = stage_outcome(lead, entered, reached)
            if decided is None:
                still_open += 1
                continue
            outcomes += 1
            converted += decided
        rates[stage] = ObservedRate(stage, converted, outcomes, still_open)
    return rates
