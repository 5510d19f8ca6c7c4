"""The SLA policy: every number of the marketing–sales agreement, validated from one YAML file."""

from __future__ import annotations

import re
from datetime import time, timedelta
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays
import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from leadflow.contracts.events import Channel, ContactChannel

DEFAULT_POLICY_RESOURCE = "policy_default.yaml"

CHANNELS: tuple[Channel, ...] = ("inbound", "outbound", "partner", "plg")

Seniority = Literal["c_level", "vp", "director", "manager", "individual"]
Role = Literal["decision_maker", "influencer", "champion", "user", "other"]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

# What a lead did, as scoring counts it: ingest activity types, with page views split by
# page category. Listed here so a misspelt key in the policy file is refused, not ignored.
EngagementKind = Literal[
    "pricing_page",
    "docs_page",
    "blog_page",
    "careers_page",
    "other_page",
    "content_download",
    "webinar_attended",
    "event_attended",
    "demo_request",
    "email_open",
    "email_click",
    "form_submit",
    "product_usage",
]

# Which clock an SLA runs on (docs/domain.md's "clock" column):
# - business_hours: the limit is working time on the team's calendar ("2h" → 2 working hours);
# - business_days:  the limit counts whole working days ("5d" → 5 working days, whatever
#                   the length of a working day);
# - wall:           plain elapsed time, nights, weekends and holidays included ("calendar days"
#                   of the cadence are wall time too).
ClockKind = Literal["business_hours", "business_days", "wall"]


class PolicyError(Exception):
    """The policy file is missing, unreadable or invalid; `problems` lists (field, reason)."""

    def __init__(self, message: str, problems: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


# --- value types -------------------------------------------------------------------------

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _parse_duration(value: Any) -> Any:
    # A bare number is refused: "24" could be hours or days, and guessing wrong moves a deadline.
    if isinstance(value, bool | int | float):
        raise ValueError("give a unit, e.g. '2h', '24h', '5d' (a bare number is ambiguous)")
    if isinstance(value, str) and (match := _DURATION.match(value)):
        amount, unit = match.groups()
        return timedelta(seconds=float(amount) * _UNIT_SECONDS[unit])
    return value  # a timedelta, or an ISO 8601 duration that pydantic understands


def _format_duration(value: timedelta) -> str:
    # Up to three days read best in hours ("24h", "48h"), longer limits in days ("12d").
    seconds = int(value.total_seconds())
    if seconds != value.total_seconds():
        return f"{value.total_seconds():g}s"
    if seconds % 86400 == 0 and seconds >= 3 * 86400:
        return f"{seconds // 86400}d"
    for unit in ("h", "m"):
        if seconds % _UNIT_SECONDS[unit] == 0:
            return f"{seconds // _UNIT_SECONDS[unit]}{unit}"
    return f"{seconds}s"


def _positive_duration(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("must be longer than zero")
    return value


Duration = Annotated[
    timedelta,
    BeforeValidator(_parse_duration),
    AfterValidator(_positive_duration),
    PlainSerializer(_format_duration, return_type=str, when_used="json"),
]


def _refuse_yaml_sexagesimal(value: Any) -> Any:
    # YAML 1.1 reads an unquoted 17:00 as the number 1020; pydantic would take that as
    # 00:17:00, so opening hours would silently shift.
    if isinstance(value, bool | int | float):
        raise ValueError("write the time as a quoted string, e.g. '17:00'")
    return value


ClockTime = Annotated[time, BeforeValidator(_refuse_yaml_sexagesimal)]
Share = Annotated[float, Field(ge=0, le=1)]
Points = Annotated[int, Field(ge=0)]


class _Section(BaseModel):
    # Every section refuses unknown fields (a typo must not silently fall back) and is
    # frozen, because the default policy is cached and shared by the whole process.
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- scoring -------------------------------------------------------------------------------


class SizeBand(_Section):
    min_employees: int = Field(ge=0)
    max_employees: int = Field(ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> SizeBand:
        if self.min_employees > self.max_employees:
            raise ValueError("min_employees must not exceed max_employees")
        return self

    def contains(self, employees: int) -> bool:
        return self.min_employees <= employees <= self.max_employees


class FitRules(_Section):
    """ICP criteria and the points each earns; the fit score normalises them to 0–100."""

    priority_industries: tuple[str, ...]
    size_band: SizeBand
    industry_points: Points
    size_points: Points
    seniority_points: dict[Seniority, Points]

    @field_validator("priority_industries")
    @classmethod
    def _normalise_industries(cls, industries: tuple[str, ...]) -> tuple[str, ...]:
        # Leads carry normalised industries ("financial_services"); the file may be written
        # for humans ("Financial Services").
        return tuple(normalise_industry(name) for name in industries)

    @model_validator(mode="after")
    def _something_to_earn(self) -> FitRules:
        if self.max_points == 0:
            raise ValueError("at least one fit criterion must earn points")
        return self

    @property
    def max_points(self) -> int:
        """Points of the best possible lead: the denominator of the fit score."""
        best_seniority = max(self.seniority_points.values(), default=0)
        return self.industry_points + self.size_points + best_seniority


class EngagementRules(_Section):
    points: dict[EngagementKind, Points]
    cap: float = Field(gt=0)
    decay_factor: float = Field(gt=0, le=1)
    decay_every: Duration


class NegativeSignals(_Section):
    """Points subtracted from the fit score (floor 0) when a lead shows the signal."""

    invalid_email: Points
    competitor: Points
    student: Points
    job_seeker: Points
    competitor_domains: tuple[str, ...]
    # How intake recognises the signals: words in the job title, email domain suffixes,
    # and the page categories whose visit marks a job seeker.
    student_markers: tuple[str, ...] = ("student", "intern", "graduate", "phd candidate")
    student_domain_suffixes: tuple[str, ...] = (".edu", ".edu.pl", ".ac.uk")
    job_seeker_markers: tuple[str, ...] = ("job seeker", "looking for", "open to work", "seeking")
    job_seeker_pages: tuple[str, ...] = ("careers",)

    @field_validator(
        "competitor_domains",
        "student_markers",
        "student_domain_suffixes",
        "job_seeker_markers",
        "job_seeker_pages",
    )
    @classmethod
    def _lowercase(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(value.strip().lower() for value in values)


class RequiredBehaviour(_Section):
    """A behaviour the MQL rule asks for before a lead goes to sales: at least `min_count`
    activities of one kind within the last `within` (e.g. a content download)."""

    activity: EngagementKind
    min_count: int = Field(default=1, ge=1)
    within: Duration


class MqlRule(_Section):
    """fit ≥ fit_min AND (engagement ≥ engagement_min OR intent tier ≥ intent_tier_min)
    AND role ∈ roles AND every required behaviour shown."""

    fit_min: float = Field(ge=0, le=100)
    engagement_min: float = Field(ge=0)
    intent_tier_min: int = Field(ge=0, le=3)
    roles: tuple[Role, ...] = Field(min_length=1)
    # Empty by default: the thresholds alone make an MQL.
    required_behaviours: tuple[RequiredBehaviour, ...] = ()

    @field_validator("required_behaviours")
    @classmethod
    def _each_activity_once(
        cls, behaviours: tuple[RequiredBehaviour, ...]
    ) -> tuple[RequiredBehaviour, ...]:
        # Two entries for one activity would leave the reader guessing which one holds.
        seen: set[str] = set()
        for behaviour in behaviours:
            if behaviour.activity in seen:
                raise ValueError(f"activity {behaviour.activity!r} is listed more than once")
            seen.add(behaviour.activity)
        return behaviours


class RecycleRules(_Section):
    # A recycled lead comes back only on clearly renewed interest, hence a threshold above
    # the MQL one; a rise of the intent tier re-promotes it as well.
    reengagement_min: float = Field(ge=0)
    # The nurture window of a recycle reason the policy does not list (reasons[*].nurture_days
    # is the window of each listed one).
    default_nurture_days: int = Field(default=90, ge=0, le=365)


class PqlThresholds(_Section):
    """An account becomes a PQL when, within `window`, one feature was used at least
    `feature_uses_min` times or at least `active_users_min` distinct users were active."""

    feature_uses_min: int = Field(ge=1)
    active_users_min: int = Field(ge=1)
    window: Duration = timedelta(days=30)


class Scoring(_Section):
    fit: FitRules
    engagement: EngagementRules
    negative: NegativeSignals
    mql: MqlRule
    recycle: RecycleRules
    pql: PqlThresholds

    @model_validator(mode="after")
    def _reengagement_above_mql(self) -> Scoring:
        if self.recycle.reengagement_min <= self.mql.engagement_min:
            raise ValueError(
                f"recycle.reengagement_min ({self.recycle.reengagement_min:g}) must be above "
                f"mql.engagement_min ({self.mql.engagement_min:g})"
            )
        return self


# --- SLAs ------------------------------------------------------------------------------------


class SlaTerm(_Section):
    """One time commitment: how long, on which clock."""

    limit: Duration
    clock: ClockKind

    @model_validator(mode="after")
    def _whole_business_days(self) -> SlaTerm:
        if self.clock == "business_days" and self.limit % timedelta(days=1):
            raise ValueError("a business_days limit must be whole days, e.g. '5d'")
        return self

    @property
    def business_days(self) -> int:
        """The limit in working days; meaningful only when clock is business_days."""
        return self.limit.days


class Cadence(_Section):
    """Contact attempts sales owes an MQL before it may be marked unreachable (calendar days)."""

    attempts: int = Field(ge=1)
    within: Duration
    max_attempts: int | None = Field(default=None, ge=1)
    # A cadence that ends without its attempts marks the lead unreachable (to be recycled);
    # by default it warns and breaches but does not escalate or reassign.
    escalate_on_breach: bool = False
    # The channel mix the attempts must include (e.g. {call: 3, email: 2}) and the distinct
    # days they must fall on (in the team calendar's time zone); by default any mix, any day.
    min_per_channel: dict[ContactChannel, Annotated[int, Field(ge=1)]] = Field(default_factory=dict)
    min_distinct_days: int = Field(default=1, ge=1)

    @model_validator(mode="after")
    def _max_not_below_min(self) -> Cadence:
        if self.max_attempts is not None and self.max_attempts < self.attempts:
            raise ValueError("max_attempts must not be below attempts")
        return self

    # Field validators (not one model validator) so that a bad value is named by its field;
    # `attempts` and `within` come first in the class, so they are validated already.
    @field_validator("min_per_channel")
    @classmethod
    def _mix_fits_the_attempts(cls, mix: dict[str, int], info: ValidationInfo) -> dict[str, int]:
        attempts = info.data.get("attempts")
        if attempts is not None and sum(mix.values()) > attempts:
            raise ValueError(
                f"adds up to {sum(mix.values())} attempts, more than attempts ({attempts})"
            )
        return mix

    @field_validator("min_distinct_days")
    @classmethod
    def _spread_fits_the_attempts(cls, days: int, info: ValidationInfo) -> int:
        attempts, within = info.data.get("attempts"), info.data.get("within")
        if attempts is not None and days > attempts:
            raise ValueError(f"{days} days need at least {days} attempts, not {attempts}")
        if within is not None and timedelta(days=days - 1) > within:
            raise ValueError(f"{days} distinct days do not fit within {_format_duration(within)}")
        return days


class ChannelSlas(_Section):
    first_response: SlaTerm
    cadence: Cadence


class Escalation(_Section):
    """Fractions of an SLA limit at which each level fires; one event per level per timer."""

    warning_at: float = Field(gt=0)
    breach_at: float = Field(gt=0)
    team_lead_at: float = Field(gt=0)
    manager_at: float = Field(gt=0)
    reassign_on_breach: bool

    @model_validator(mode="after")
    def _ladder_climbs(self) -> Escalation:
        if not self.warning_at < self.breach_at <= self.team_lead_at <= self.manager_at:
            raise ValueError("need warning_at < breach_at <= team_lead_at <= manager_at")
        return self


class Slas(_Section):
    channels: dict[Channel, ChannelSlas]
    sal_acceptance: SlaTerm
    sql_to_sqo: SlaTerm
    pql_contact: SlaTerm
    cs_handoff: SlaTerm
    escalation: Escalation
    # Onboarding after the signature (the Slovak seed): kickoff within 5 days and the key feature
    # activated within 14 days of the won status. Optional, so older policy files still load.
    onboarding_kickoff: SlaTerm = Field(
        default_factory=lambda: SlaTerm(limit=timedelta(days=5), clock="wall")
    )
    key_feature_activation: SlaTerm = Field(
        default_factory=lambda: SlaTerm(limit=timedelta(days=14), clock="wall")
    )

    @field_validator("channels")
    @classmethod
    def _every_channel(cls, channels: dict[Channel, ChannelSlas]) -> dict[Channel, ChannelSlas]:
        # A lead from a channel without terms would have no first-response clock at all.
        missing = [name for name in CHANNELS if name not in channels]
        if missing:
            raise ValueError(f"missing channel(s): {', '.join(missing)}")
        return channels

    def for_channel(self, channel: Channel) -> ChannelSlas:
        return self.channels[channel]


# --- calendar, reasons, commitments ----------------------------------------------------------


class CalendarSpec(_Section):
    """The default business calendar; teams may name their own with the same fields."""

    time_zone: str
    working_days: tuple[Weekday, ...] = Field(min_length=1)
    opens_at: ClockTime
    closes_at: ClockTime
    holiday_country: str
    holiday_subdivision: str | None = None

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, name: str) -> str:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {name!r}") from None
        return name

    @field_validator("holiday_country")
    @classmethod
    def _known_country(cls, code: str) -> str:
        code = code.upper()
        if code not in holidays.list_supported_countries():
            raise ValueError(f"no public-holiday calendar for country {code!r}")
        return code

    @model_validator(mode="after")
    def _opens_before_closing(self) -> CalendarSpec:
        if self.opens_at >= self.closes_at:
            raise ValueError("opens_at must be before closes_at")
        return self

    @property
    def weekday_numbers(self) -> frozenset[int]:
        """Working days as `datetime.weekday()` numbers (Monday is 0)."""
        return frozenset(WEEKDAYS.index(day) for day in self.working_days)


class Reason(_Section):
    """A structured return / recycle / loss reason and how long the lead rests in nurture."""

    label: str = Field(min_length=1)
    nurture_days: int = Field(ge=0, le=365)


ReasonCode = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]


class ChurnReason(_Section):
    """A structured reason customer success gives for a customer lost after the signature."""

    label: str = Field(min_length=1)


def _default_churn_reasons() -> dict[str, ChurnReason]:
    return {
        code: ChurnReason(label=label)
        for code, label in (
            ("low_adoption", "Low adoption / no value seen"),
            ("onboarding_failed", "Onboarding failed"),
            ("missing_feature", "Missing feature"),
            ("price", "Price"),
            ("competitor", "Went to a competitor"),
            ("champion_left", "Champion left"),
            ("business_changed", "Business changed / closed"),
            ("support", "Support and service"),
        )
    }


class CustomerSuccessRules(_Section):
    """Customer success after the signature (docs/domain.md "Customer success"): the product
    usage event's feature whose first use after the won status activates the customer, and the
    structured reasons customer success reports a churn with."""

    # The `feature` a product usage activity (`activity_type: product_usage`) names.
    key_feature: str = Field(default="key_feature", min_length=1, max_length=200)
    churn_reasons: dict[ReasonCode, ChurnReason] = Field(
        default_factory=_default_churn_reasons, min_length=1
    )

    @field_validator("key_feature")
    @classmethod
    def _feature_named(cls, feature: str) -> str:
        if not feature.strip():
            raise ValueError("the key feature must name a feature")
        return feature.strip()


class MarketingCommitments(_Section):
    mql_plan_per_month: int = Field(ge=0)
    mql_volume_min_share: Share
    source_mix: dict[str, Share]
    source_mix_tolerance: Share
    min_in_target_share: Share
    min_full_context_share: Share

    @field_validator("source_mix")
    @classmethod
    def _mix_is_whole(cls, mix: dict[str, float]) -> dict[str, float]:
        if mix and abs(sum(mix.values()) - 1) > 1e-9:
            raise ValueError(f"shares must add up to 1 (they add up to {sum(mix.values()):g})")
        return mix


class SalesCommitments(_Section):
    min_contacted_within_limit_share: Share
    min_attempts_per_mql: float = Field(ge=0)
    min_status_share: Share


class CorrectivePlanRules(_Section):
    """Corrective plans (docs/domain.md "Corrective plans"): who answers for each party's plan
    and how many days the plan's actions are due after it opens (the Polish seed: a corrective
    plan within the next month)."""

    owners: dict[Literal["marketing", "sales"], str] = Field(
        default_factory=lambda: {"marketing": "head of marketing", "sales": "head of sales"}
    )
    due_days: int = Field(default=30, ge=1, le=366)

    @field_validator("owners")
    @classmethod
    def _owners_named(cls, owners: dict[str, str]) -> dict[str, str]:
        for party, owner in owners.items():
            if not owner.strip():
                raise ValueError(f"the owner of {party}'s corrective plans must not be empty")
        return owners


class Commitments(_Section):
    marketing: MarketingCommitments
    sales: SalesCommitments
    corrective_plan_after_misses: int = Field(ge=1)
    corrective_plans: CorrectivePlanRules = Field(default_factory=CorrectivePlanRules)
    # The period both parties are judged over (calendar weeks from Monday, or calendar months,
    # in the policy calendar's time zone), and how long after a period ends it is judged, so
    # that events still on their way count.
    period: Literal["week", "month"] = "month"
    evaluation_delay: Duration = timedelta(hours=1)


class PlanningRules(_Section):
    """Plans from history (docs/domain.md "Planning"): how far back the planner reads the
    funnel's observed conversion rates by default, and how many outcomes a rate must rest on
    before the plan stops warning that it is thin."""

    history_window_days: int = Field(default=90, ge=1, le=3650)
    min_outcomes: int = Field(default=30, ge=1)


def _currency_code(value: str) -> str:
    if not re.fullmatch(r"[A-Z]{3}", value):
        raise ValueError(f"'{value}' is not a currency code; give ISO 4217 in capitals, e.g. EUR")
    return value


Currency = Annotated[str, AfterValidator(_currency_code)]


class RevenueRules(_Section):
    """Revenue against the goal (docs/domain.md "Revenue against the goal"): the revenue goal of
    a month (a week's is 12/52 of it), the one currency amounts are summed in, and the pipeline
    coverage (open SQO value / the goal still to win) a period should have.

    The defaults are the Slovak seed's worked example: 1.2 M€ new ARR a year is 100,000 EUR a
    month, and at its 25 % win rate the open pipeline must be 4× what is still to win."""

    goal_per_month: float = Field(default=100_000, gt=0)
    currency: Currency = "EUR"
    coverage_target: float = Field(default=4.0, gt=0)


class Policy(_Section):
    version: str = Field(min_length=1)
    scoring: Scoring
    slas: Slas
    calendar: CalendarSpec
    reasons: dict[ReasonCode, Reason] = Field(min_length=1)
    commitments: Commitments
    # Optional, so that a policy written before it keeps loading with these defaults.
    planning: PlanningRules = Field(default_factory=PlanningRules)
    revenue: RevenueRules = Field(default_factory=RevenueRules)
    customer_success: CustomerSuccessRules = Field(default_factory=CustomerSuccessRules)

    def nurture_for(self, reason: str | None) -> timedelta:
        """How long a lead recycled for `reason` rests in nurture before it may come back."""
        known = self.reasons.get(reason) if reason else None
        days = known.nurture_days if known else self.scoring.recycle.default_nurture_days
        return timedelta(days=days)


# --- loading ---------------------------------------------------------------------------------


def normalise_industry(name: str) -> str:
    """'Financial Services' → 'financial_services', the form leads carry."""
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


def _dotted(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if part == "[key]":  # pydantic's marker for "the key itself is wrong"; the key is named
            continue
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "(policy)"


def _reason(error: dict[str, Any]) -> str:
    message = error["msg"]
    return message.removeprefix("Value error, ")


def load_policy(path: str | Path | None = None) -> Policy:
    """The policy in `path`, or the shipped default when `path` is None; raises PolicyError."""
    if path is None:
        source = f"default policy ({DEFAULT_POLICY_RESOURCE})"
        text = resources.files("leadflow.contracts").joinpath(DEFAULT_POLICY_RESOURCE).read_text("utf-8")
    else:
        source = f"policy file {str(path)!r}"
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise PolicyError(f"{source} does not exist") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise PolicyError(f"{source} cannot be read: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyError(f"{source} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise PolicyError(f"{source} must be a YAML mapping of policy sections")
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        problems = [(_dotted(error["loc"]), _reason(error)) for error in exc.errors()]
        listing = "\n".join(f"  {field}: {reason}" for field, reason in problems)
        raise PolicyError(f"{source} is invalid:\n{listing}", problems) from None


@cache
def default_policy() -> Policy:
    """The shipped default policy, loaded once per process."""
    return load_policy(None)
