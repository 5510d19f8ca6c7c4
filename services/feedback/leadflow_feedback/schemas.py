"""Request and response bodies of the feedback API: what sales tools send, and the shape of every
answer (lifecycle, reports, calibration, plan), so the OpenAPI document describes each one."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Literal

from fastapi import Query
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainSerializer

# A count or an amount: an integer stays an integer in the answer (1, not 1.0).
Number = int | float
# An instant as the answers have always written it (ISO 8601 with a numeric offset).
Instant = Annotated[datetime, PlainSerializer(lambda at: at.isoformat(), return_type=str)]


class AttemptIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    channel: Literal["call", "email", "linkedin", "meeting"]
    occurred_at: datetime | None = None
    rep_id: uuid.UUID | None = None
    outcome: str | None = Field(default=None, max_length=200)


class AttemptAccepted(BaseModel):
    attempt_id: uuid.UUID
    lead_id: uuid.UUID
    event_id: uuid.UUID | None
    status: str
    duplicate: bool = False


class Qualification(BaseModel):
    """The four qualification areas of an SQL; each is `true` or a note when confirmed."""

    model_config = ConfigDict(extra="forbid")
    problem: bool | str | None = Field(default=None, description="problem / urgency")
    impact: bool | str | None = Field(default=None, description="impact / value")
    authority: bool | str | None = Field(default=None, description="process / authority")
    budget: bool | str | None = Field(default=None, description="budget / timing")


class Opportunity(BaseModel):
    """The opportunity an SQO is: value, stage and close date are required for `sqo`."""

    model_config = ConfigDict(extra="forbid")
    value: float | None = Field(default=None, gt=0)
    currency: str | None = Field(default=None, max_length=3)
    stage: str | None = Field(default=None, max_length=100)
    close_date: date | None = None


class Handoff(BaseModel):
    """What customer success takes over with a won deal: `handed_off` needs all four, each a
    non-blank text (the 48 h hand-off clock is met only by such a hand-off)."""

    model_config = ConfigDict(extra="forbid")
    use_case: str | None = Field(default=None, max_length=4000)
    promised_outcomes: str | None = Field(default=None, max_length=4000)
    risks: str | None = Field(default=None, max_length=4000)
    plan: str | None = Field(default=None, max_length=4000, description="the project plan")


class StatusIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: Literal[
        "sal", "returned", "sql", "sqo", "won", "handed_off", "lost", "recycled", "unreachable"
    ]
    reason: str | None = Field(default=None, max_length=100)
    qualification: Qualification | None = None
    opportunity: Opportunity | None = None
    handoff: Handoff | None = None
    occurred_at: datetime | None = None
    rep_id: uuid.UUID | None = None


class StatusAccepted(BaseModel):
    lead_id: uuid.UUID
    event_id: uuid.UUID
    from_status: str
    status: str
    reason: str | None = None
    nurture_until: datetime | None = None
    allowed_next: list[str]


class PlanIn(BaseModel):
    """Reverse funnel inputs (docs/domain.md "Planning"); shares are fractions (0.25 = 25 %).

    With `rates: observed` the conversion rates come from what Leadflow observed over
    `window_days` (for one `channel` or `campaign` when named): a rate typed in as well is the
    plan's assumption, compared with history's; one left out takes history's."""

    model_config = ConfigDict(extra="forbid")
    revenue_goal: float = Field(gt=0)
    avg_deal_size: float = Field(gt=0)
    win_rate: float | None = Field(default=None, gt=0, le=1, description="SQO→won")
    sql_to_sqo: float | None = Field(default=None, gt=0, le=1)
    mql_to_sql: float | None = Field(default=None, gt=0, le=1)
    visit_to_mql: float | None = Field(default=None, gt=0, le=1)
    touches_per_mql: float = Field(gt=0)
    sdr_activities_per_week: float = Field(gt=0)
    sales_capacity_mql: float | None = Field(default=None, ge=0)
    lead_to_mql: float | None = Field(default=None, gt=0, le=1)
    rates: Literal["typed", "observed"] = Field(
        default="typed", description="typed: the rates given; observed: from history"
    )
    window_days: int | None = Field(
        default=None, ge=1, le=3650, description="history's window; policy planning's default"
    )
    channel: str | None = Field(default=None, max_length=100)
    campaign: str | None = Field(default=None, max_length=200)
    sales_capacity: Literal["typed", "routing"] = Field(
        default="typed",
        description="typed: `sales_capacity_mql`; routing: from the reps routing configured",
    )
    capacity_weeks: float | None = Field(
        default=None, gt=0, le=520, description="the weeks the reps' capacity is counted over"
    )
    team: str | None = Field(default=None, max_length=200, description="one team's reps")


FIRST_DAY, LAST_DAY = date(1900, 1, 1), date(2999, 12, 31)


def _report_day(value: date) -> date:
    if not FIRST_DAY <= value <= LAST_DAY:
        raise ValueError(f"must be between {FIRST_DAY} and {LAST_DAY}")
    return value


# A day in a report's or the review page's query: far enough from the calendar's ends that the
# weeks and months around it exist.
ReportDay = Annotated[date, AfterValidator(_report_day)]

# A team filter as a query parameter: a team name, never text PostgreSQL refuses (NUL).
TeamQuery = Annotated[
    str | None, Query(max_length=200, pattern=r"^[^\x00]*$", description="a team's name")
]


# --- lifecycle -----------------------------------------------------------------------------


class StatusHistoryEntry(BaseModel):
    from_status: str | None
    status: str
    reason: str | None
    changed_at: Instant


class Lifecycle(BaseModel):
    """A lead's status in feedback, its contact attempts and every status it had, in order."""

    lead_id: uuid.UUID
    status: str
    channel: str | None
    team: str | None
    attempts: int
    history: list[StatusHistoryEntry]


# --- the SLA report ------------------------------------------------------------------------


class Commitment(BaseModel):
    """One commitment's figure against its target; `met` is null when there is nothing to
    judge yet."""

    value: Number | None
    target: Number
    met: bool | None


class MqlVolume(BaseModel):
    value: int
    plan: Number
    target: Number
    met: bool


class SourceMix(BaseModel):
    value: dict[str, Number | None] = Field(description="share of the MQLs per source group")
    counts: dict[str, int]
    plan: dict[str, Number]
    tolerance: Number
    met: bool | None


class MarketingFigures(BaseModel):
    mql_volume: MqlVolume
    source_mix: SourceMix
    in_target_share: Commitment
    full_context_share: Commitment
    missed: list[str]
    met: bool


class ResponseTime(BaseModel):
    avg_seconds: Number | None
    p90_seconds: Number | None
    contacted: int
    routed: int


class ChannelAttempts(BaseModel):
    attempts: int = Field(description="contact attempts on the channel")
    per_mql: Number | None = Field(description="the same, per MQL of the period")


class SalesFigures(BaseModel):
    response_time: ResponseTime
    contacted_within_limit_share: Commitment
    attempts_per_mql: Commitment
    attempts_by_channel: dict[str, ChannelAttempts] = Field(
        description="attempts per channel (call, email, linkedin, meeting): the cadence's mix"
    )
    status_share: Commitment
    missed: list[str]
    met: bool


class PolicyChange(BaseModel):
    """A policy version published within the period (its last publication)."""

    number: int
    version: str
    state: str
    published_at: str
    published_by: str | None


class ReportPeriod(BaseModel):
    start: str
    end: str
    mql: int
    marketing: MarketingFigures
    sales: SalesFigures
    corrective_plan: dict[str, bool]
    # per quarter only: its label ('2026-Q4') and the policy versions published within it
    quarter: str | None = None
    policy_changes: list[PolicyChange] | None = None


class ConversionRow(BaseModel):
    key: str
    mql: int
    sal: int
    sql: int
    sqo: int
    won: int
    mql_to_sal: Number | None
    sal_to_sql: Number | None
    sql_to_sqo: Number | None
    sqo_to_won: Number | None
    mql_to_won: Number | None


class Conversion(BaseModel):
    by_source: list[ConversionRow]
    by_campaign: list[ConversionRow]


class FirstResponseBreach(BaseModel):
    lead_id: str
    team: str | None
    rep_id: str | None
    channel: str | None
    routed_at: str
    first_attempt_at: str | None
    response_seconds: Number | None


class CampaignWithoutSql(BaseModel):
    campaign: str
    mql: int


class ReturnedNotInTarget(BaseModel):
    lead_id: str
    status: str
    fit: int | None
    engagement: Number | None
    intent_tier: int | None
    in_target: bool | None
    source: str
    campaign: str


class ReportExceptions(BaseModel):
    first_response_breaches: list[FirstResponseBreach]
    campaigns_without_sql: list[CampaignWithoutSql]
    returned_not_in_target: list[ReturnedNotInTarget]


class Pipeline(BaseModel):
    """Every SQO still open when the report was made: its value in the report's currency."""

    value: Number
    deals: int


class PipelineAt(Pipeline):
    """The SQOs open at a quarter's end (`as_of`: the end, or now for the quarter under way,
    `ended` false)."""

    as_of: str
    ended: bool


class RevenuePeriod(BaseModel):
    start: str
    end: str
    goal: Number
    won: Number
    deals: int
    attainment: Number | None
    met: bool
    # per quarter only: its label and the open pipeline at its end (none for one not begun)
    quarter: str | None = None
    pipeline_at_end: PipelineAt | None = None


class Coverage(BaseModel):
    """Pipeline / the goal still to win in the last period, against the policy's target."""

    value: Number | None
    target: Number
    met: bool


class CycleTime(BaseModel):
    """Days from promotion to MQL to the won deal."""

    median: Number | None
    p90: Number | None
    deals: int


class AttributedRevenue(BaseModel):
    key: str
    value: Number
    deals: int


class Attribution(BaseModel):
    source: list[AttributedRevenue]
    channel: list[AttributedRevenue]
    campaign: list[AttributedRevenue]


class RevenueAttribution(BaseModel):
    """first_touch: the lead's original source; last_touch: the source it was last known
    under up to its promotion to MQL."""

    first_touch: Attribution
    last_touch: Attribution


class AmountApart(BaseModel):
    """A won deal or an open SQO in another currency than the report's: never summed."""

    lead_id: str
    kind: Literal["won", "pipeline"]
    value: Number
    currency: str


class Revenue(BaseModel):
    """Revenue against the goal (docs/domain.md), in the policy's one currency."""

    currency: str
    goal: Number
    won: Number
    deals: int
    attainment: Number | None
    periods: list[RevenuePeriod]
    pipeline: Pipeline
    remaining_goal: Number
    coverage: Coverage
    cycle_time_days: CycleTime
    attribution: RevenueAttribution
    other_currencies: list[AmountApart]
    without_value: list[str]
    # per quarter only: the policy's goal per month a quarter's goal is three of, and so said
    goal_per_month: Number | None = None
    goal_basis: str | None = None


class SlaReport(BaseModel):
    """Both parties' commitments per period, conversion, exceptions and corrective plans."""

    model_config = ConfigDict(populate_by_name=True)
    from_: str = Field(alias="from")
    to: str
    granularity: Literal["week", "month", "quarter"]
    team: str | None
    time_zone: str
    policy_version: str
    generated_at: str
    periods: list[ReportPeriod]
    conversion: Conversion
    exceptions: ReportExceptions
    corrective_plan: dict[str, bool]
    revenue: Revenue | None = None
    policy_changes: list[PolicyChange] | None = None  # per quarter only


# --- calibration ---------------------------------------------------------------------------


class ThresholdRow(BaseModel):
    threshold: int
    mql: int
    sql: int
    precision: Number | None
    recall: Number | None
    f1: Number | None
    expected_mql_volume: int
    expected_mql_per_month: Number | None


class RecommendedThreshold(BaseModel):
    threshold: int
    precision: Number | None
    recall: Number | None
    f1: Number | None
    expected_mql_volume: int
    expected_mql_per_month: Number | None


class Calibration(BaseModel):
    """Precision and recall of "score ≥ threshold" against SQL outcomes, per threshold."""

    model_config = ConfigDict(populate_by_name=True)
    score: Literal["fit", "engagement"]
    from_: str = Field(alias="from")
    to: str
    policy_version: str
    current_threshold: Number
    decided_mqls: int
    sql: int
    thresholds: list[ThresholdRow]
    recommended: RecommendedThreshold | None


# --- planning ------------------------------------------------------------------------------


class CapacityOption(BaseModel):
    """One way out of a capacity shortfall; each option carries the numbers of its own kind."""

    option: Literal["add_sales_capacity", "raise_mql_bar", "automated_nurture"]
    detail: str
    extra_mql_capacity: int | None = None
    extra_sdr_weeks: int | None = None
    mql: int | None = None
    mql_to_sql_needed: Number | None = None
    mql_to_sql_now: Number | None = None
    feasible: bool | None = None
    mql_to_nurture: int | None = None


class Capacity(BaseModel):
    verdict: Literal["within_capacity", "over_capacity"]
    mql_needed: int
    capacity_mql: int
    shortfall_mql: int
    headroom_mql: int
    options: list[CapacityOption]


class PlanHistory(BaseModel):
    """The history a plan's observed rates were read from."""

    window_days: int
    start: Instant
    end: Instant
    channel: str | None
    campaign: str | None
    min_outcomes: int


class PlanRate(BaseModel):
    """What one stage's rate rests on: typed in or observed; history's rate from `converted` of
    `outcomes` decided leads (`open`: still being worked there, not counted)."""

    stage: Literal["lead_to_mql", "mql_to_sql", "sql_to_sqo", "win_rate"]
    rate: Number | None
    source: Literal["observed", "typed"]
    observed: Number | None
    converted: int
    outcomes: int
    open: int


class PlanWarning(BaseModel):
    kind: Literal["better_than_history", "few_outcomes", "no_history"]
    stage: str
    message: str
    needed: Number | None = None
    observed: Number | None = None


class RepCapacity(BaseModel):
    rep_id: str
    team: str
    hours_per_week: Number
    by_hours: Number
    by_open_leads: Number | None
    mql: Number


class RoutingCapacity(BaseModel):
    """The MQLs routing's active reps can work in `weeks`: each rep the smaller of what its
    hours and its open leads allow."""

    mql: int
    weeks: Number
    reps: list[RepCapacity]


class PlanOut(BaseModel):
    """The reverse funnel: what the revenue goal needs at every stage, rounded up."""

    deals: int
    sqo: int
    sql: int
    mql: int
    visits: int | None = Field(default=None, description="when `visit_to_mql` is given")
    leads: int | None = Field(default=None, description="when a lead→MQL rate is known")
    activities: int
    sdr_weeks: int
    exact: dict[str, Number] = Field(description="the same volumes before rounding up")
    capacity: Capacity | None
    history: PlanHistory | None = Field(default=None, description="with `rates: observed`")
    rates: list[PlanRate] | None = Field(default=None, description="with `rates: observed`")
    warnings: list[PlanWarning] | None = Field(default=None, description="with `rates: observed`")
    sales_capacity: RoutingCapacity | None = Field(
        default=None, description="with `sales_capacity: routing`"
    )
