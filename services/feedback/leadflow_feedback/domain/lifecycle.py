"""The lead lifecycle as an explicit state machine: which status may follow which, and what
each status change must carry (a structured reason, qualification, opportunity data).

MQL → routed → working → SAL or returned → SQL → SQO → won/lost; recycled; unreachable.
The rules are pure: `check_change` raises `TransitionRefused` (the HTTP layer's 409) or
`ChangeInvalid` (422, naming the field) and never touches a database.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from leadflow.contracts.policy import Policy

TRANSITIONS: dict[str, frozenset[str]] = {
    "lead": frozenset({"mql"}),
    "mql": frozenset({"routed", "recycled"}),
    # routed → routed is a re-assignment (e.g. after an escalation), not a new stage
    "routed": frozenset({"working", "sal", "returned", "unreachable", "recycled", "routed"}),
    "working": frozenset({"sal", "returned", "unreachable", "recycled"}),
    "sal": frozenset({"sql", "recycled", "lost"}),
    "returned": frozenset({"recycled"}),
    "sql": frozenset({"sqo", "recycled", "lost"}),
    "sqo": frozenset({"won", "lost"}),
    # Won hands over to customer success with its context (docs/domain.md, within 48 h).
    "won": frozenset({"handed_off"}),
    "handed_off": frozenset(),
    "lost": frozenset({"recycled"}),
    "unreachable": frozenset({"recycled"}),
    "recycled": frozenset({"mql"}),
}
STATUSES = frozenset(TRANSITIONS)
# The statuses a sales tool may set through the API; the others follow from events
# (mql, routed) or from contact attempts (working).
SALES_STATUSES = frozenset(
    {"sal", "returned", "sql", "sqo", "won", "handed_off", "lost", "recycled", "unreachable"}
)
REASON_REQUIRED = frozenset({"returned", "recycled", "lost"})
# The four qualification areas of docs/domain.md's SQL rule (BANT / MEDDICC); 3 of 4 must be confirmed.
QUALIFICATION_FIELDS = ("problem", "impact", "authority", "budget")
QUALIFICATION_MIN = 3
OPPORTUNITY_FIELDS = ("value", "stage", "close_date")
# What a hand-off to customer success must carry (the Slovak seed's "Closed-Won to CS" ticket):
# each a non-blank text, or the hand-off is refused and the 48 h clock stays open.
HANDOFF_FIELDS = ("use_case", "promised_outcomes", "risks", "plan")
# Funnel stages in order; reaching a later one implies the earlier ones were passed.
FUNNEL = ("mql", "sal", "sql", "sqo", "won")
# The statuses the pipeline's events (lead.mql, then lead.routed) move a lead through, from
# each status they may move it out of; any other status belongs to sales and stays.
PIPELINE_PATHS: dict[str, tuple[str, ...]] = {
    "lead": ("mql", "routed"),
    "mql": ("routed",),
    "recycled": ("mql", "routed"),
}


class TransitionRefused(Exception):
    """The lead's current status does not allow the requested one."""

    def __init__(self, current: str, target: str) -> None:
        self.current = current
        self.target = target
        self.allowed = allowed_next(current, sales_only=True)
        allowed = ", ".join(self.allowed) or "none (final status)"
        super().__init__(
            f"a lead in status '{current}' cannot move to '{target}'; allowed: {allowed}"
        )


class ChangeInvalid(Exception):
    """The change is possible but misses data it must carry; `field` names what is wrong."""

    def __init__(self, field: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.field = field
        self.message = message
        self.extra = extra


@dataclass(frozen=True)
class StatusChange:
    status: str
    reason: str | None = None
    qualification: Mapping[str, Any] = field(default_factory=dict)
    opportunity: Mapping[str, Any] = field(default_factory=dict)
    handoff: Mapping[str, Any] = field(default_factory=dict)


def allowed_next(status: str, *, sales_only: bool = False) -> list[str]:
    nexts = TRANSITIONS.get(status, frozenset())
    if sales_only:
        nexts = nexts & SALES_STATUSES
    return sorted(nexts)


def can_move(current: str, target: str) -> bool:
    return target in TRANSITIONS.get(current, frozenset())


def pipeline_steps(
    current: str,
    *,
    mql_at: datetime | None,
    routed_at: datetime | None,
    reopened_at: datetime | None = None,
) -> list[str]:
    """The statuses a lead in `current` moves through, in order, given the latest promotion
    (`mql_at`) and routing (`routed_at`) known for it, whatever order they arrived in.

    Routing implies the promotion, so a lead routed before its `lead.mql` arrived still passes
    through `mql` (the history stays an unbroken chain). Facts from before `reopened_at`, the
    lead's last recycle, are spent: only a new promotion or routing re-opens a recycled lead.
    A late fact never moves a lead backwards, nor out of a status set by sales."""

    def fresh(at: datetime | None) -> bool:
        return at is not None and (reopened_at is None or at > reopened_at)

    if fresh(routed_at):
        target = "routed"
    elif fresh(mql_at):
        target = "mql"
    else:
        return []
    path = PIPELINE_PATHS.get(current, ())
    return list(path[: path.index(target) + 1]) if target in path else []


def nurture_end(policy: Policy, status: str, reason: str | None, at: datetime) -> datetime | None:
    """When a recycled lead's nurture ends: the policy's days for its reason."""
    if status != "recycled" or not reason or reason not in policy.reasons:
        return None
    return at + timedelta(days=policy.reasons[reason].nurture_days)


def after_contact_attempt(current: str) -> str:
    """A first contact attempt on a routed lead means sales is working it."""
    return "working" if current == "routed" else current


def confirmed(value: Any) -> bool:
    """A qualification area counts when it is `true` or a non-blank note."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return bool(value.strip())
    return False


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def check_change(current: str, change: StatusChange, reasons: Collection[str]) -> None:
    """Refuse an impossible transition or a change without the data its status requires.

    Checked in this order: the transition itself, the structured reason (from `reasons`,
    the policy's codes), the SQL qualification rule (at least 3 of 4 areas confirmed), the
    SQO opportunity (value, stage and close date), the amount an SQO or a won deal
    carries (a value above zero, an ISO 4217 currency), and the hand-off's use case,
    promised outcomes, risks and plan.
    """
    if not can_move(current, change.status):
        raise TransitionRefused(current, change.status)
    known = sorted(reasons)
    if change.reason is not None and change.reason not in reasons:
        raise ChangeInvalid(
            "reason",
            f"unknown reason '{change.reason}'; use one of: {', '.join(known)}",
            allowed_reasons=known,
        )
    if change.status in REASON_REQUIRED and change.reason is None:
        raise ChangeInvalid(
            "reason",
            f"status '{change.status}' requires a structured reason; use one of: "
            f"{', '.join(known)}",
            allowed_reasons=known,
        )
    if change.status == "sql":
        unknown = sorted(set(change.qualification) - set(QUALIFICATION_FIELDS))
        if unknown:
            raise ChangeInvalid(
                f"qualification.{unknown[0]}",
                f"unknown qualification area '{unknown[0]}'; the areas are "
                f"{', '.join(QUALIFICATION_FIELDS)}",
            )
        got = [name for name in QUALIFICATION_FIELDS if confirmed(change.qualification.get(name))]
        if len(got) < QUALIFICATION_MIN:
            raise ChangeInvalid(
                "qualification",
                f"an SQL needs at least {QUALIFICATION_MIN} of the {len(QUALIFICATION_FIELDS)} "
                f"qualification areas confirmed ({', '.join(QUALIFICATION_FIELDS)}); "
                f"confirmed: {', '.join(got) or 'none'}",
            )
    if change.status == "sqo":
        _require_parts(
            change.opportunity,
            "opportunity",
            OPPORTUNITY_FIELDS,
            "an SQO needs the opportunity's value, stage and close date",
        )
        value = change.opportunity["value"]
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ChangeInvalid("opportunity.value", "the opportunity value must be above zero")
        if not isinstance(change.opportunity["close_date"], date):
            raise ChangeInvalid("opportunity.close_date", "the close date must be a date")
    if change.status in ("sqo", "won"):
        _check_amount(change.opportunity)
    if change.status == "handed_off":
        _require_parts(
            change.handoff,
            "handoff",
            HANDOFF_FIELDS,
            "a hand-off to customer success needs the use case, promised outcomes, risks and plan",
            required=list(HANDOFF_FIELDS),
        )


def _require_parts(
    given: Mapping[str, Any], prefix: str, parts: Sequence[str], needs: str, **extra: Any
) -> None:
    """ChangeInvalid naming the first of `parts` missing from `given` (`<prefix>.<part>`)."""
    for name in parts:
        if _missing(given.get(name)):
            raise ChangeInvalid(f"{prefix}.{name}", f"{needs}; '{name}' is missing", **extra)


def _check_amount(opportunity: Mapping[str, Any]) -> None:
    """A value, where given, above zero; a currency, where given, an ISO 4217 code in capitals
    (amounts in different currencies are never summed, so the code must be exact)."""
    value = opportunity.get("value")
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int | float) or value <= 0
    ):
        raise ChangeInvalid("opportunity.value", "the opportunity value must be above zero")
    currency = opportunity.get("currency")
    if currency is not None and not (
        isinstance(currency, str) and re.fullmatch(r"[A-Z]{3}", currency)
    ):
        raise ChangeInvalid(
            "opportunity.currency",
            f"'{currency}' is not a currency code; give ISO 4217 in capitals, e.g. EUR",
        )


def stages_reached(statuses: Collection[str]) -> set[str]:
    """Funnel stages a lead passed, given every status it ever had (won implies SQO, …)."""
    reached: set[str] = set()
    if set(statuses) - {"lead"}:
        reached.add("mql")  # routed, working, returned … happen only to MQLs
    statuses = set(statuses) | ({"won"} if "handed_off" in statuses else set())
    for index, stage in enumerate(FUNNEL):
        if stage in statuses:
            reached.update(FUNNEL[: index + 1])
    return reached
