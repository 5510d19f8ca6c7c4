"""What HubSpot's contact properties mean to Leadflow beyond a plain copy: the buying role, the
analytics source as channel, medium and campaign, the conversion that is the lead magnet, and the
title rules for seniority. Shipped defaults, overridable entry by entry from a YAML file whose
every problem is named with its line."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, get_args

import yaml
from leadflow.contracts.events import Channel
from leadflow.contracts.policy import Role
from leadflow.contracts.yaml_lines import line_at, lines_by_path
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from leadflow_ingest.domain.titles import TITLE_RULES, Seniority, TitleRule, with_rules_first

# Several buying roles on one contact count as the one with the most say in the decision; the
# policy's MQL rule takes decision makers and influencers, so neither may lose to a champion.
ROLE_STRENGTH: tuple[Role, ...] = get_args(Role)

# HubSpot's internal values of `hs_buying_role` (a multiple-checkbox property: values joined by
# ";"). Budget holders and executive sponsors decide; legal and compliance can stop a deal but
# are not who marketing qualifies, nor is a blocker.
BUYING_ROLES: dict[str, Role] = {
    "DECISION_MAKER": "decision_maker",
    "BUDGET_HOLDER": "decision_maker",
    "EXECUTIVE_SPONSOR": "decision_maker",
    "INFLUENCER": "influencer",
    "CHAMPION": "champion",
    "END_USER": "user",
    "LEGAL_AND_COMPLIANCE": "other",
    "BLOCKER": "other",
    "OTHER": "other",
}


class _Strict(BaseModel):
    # A misspelt key must be refused, not silently ignored (as the policy file's sections).
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceRule(_Strict):
    """Where contacts of one HubSpot analytics source come from, in Leadflow's terms. `medium`
    is what the weekly review groups into the policy's source mix (`paid_search` and
    `paid_social` count as paid, `organic` as content; a group's own name counts as that
    group); `campaign_property` names the drill-down that holds the campaign, if one does."""

    channel: Channel = "inbound"
    medium: str | None = Field(default=None, min_length=1, max_length=100)
    campaign_property: str | None = Field(default=None, min_length=1)


# HubSpot's values of `hs_analytics_source` (Original Traffic Source) and its drill-downs.
SOURCES: dict[str, SourceRule] = {
    "ORGANIC_SEARCH": SourceRule(medium="organic"),
    "PAID_SEARCH": SourceRule(medium="paid_search", campaign_property="hs_analytics_source_data_1"),
    "PAID_SOCIAL": SourceRule(medium="paid_social", campaign_property="hs_analytics_source_data_1"),
    "SOCIAL_MEDIA": SourceRule(medium="social"),
    "EMAIL_MARKETING": SourceRule(medium="email", campaign_property="hs_analytics_source_data_1"),
    "OTHER_CAMPAIGNS": SourceRule(
        medium="campaign", campaign_property="hs_analytics_source_data_1"
    ),
    "REFERRALS": SourceRule(medium="referral"),
    "AI_REFERRALS": SourceRule(medium="ai_referral"),
    "DIRECT_TRAFFIC": SourceRule(medium="direct"),
    "OFFLINE": SourceRule(medium="offline"),
}
# Which property names the source: the original one, else the latest.
SOURCE_PROPERTIES = ("hs_analytics_source", "hs_latest_source")
# The form or content conversion that made the contact a lead, else its latest one.
LEAD_MAGNET_PROPERTIES = ("first_conversion_event_name", "recent_conversion_event_name")
BUYING_ROLE_PROPERTY = "hs_buying_role"
TITLE_PROPERTY = "jobtitle"


@dataclass(frozen=True)
class HubSpotMapping:
    """The mapping in force: the shipped defaults with a file's entries over them."""

    title_rules: tuple[TitleRule, ...] = TITLE_RULES
    buying_roles: Mapping[str, Role] = field(default_factory=lambda: dict(BUYING_ROLES))
    sources: Mapping[str, SourceRule] = field(default_factory=lambda: dict(SOURCES))
    source_properties: tuple[str, ...] = SOURCE_PROPERTIES
    lead_magnet_properties: tuple[str, ...] = LEAD_MAGNET_PROPERTIES
    lead_magnets: Mapping[str, str] = field(default_factory=dict)

    def role_of(self, buying_roles: str | None) -> Role | None:
        """The strongest Leadflow role among a contact's buying roles ("A;B"); None if none."""
        roles = {
            self.buying_roles.get(value.strip().upper(), "other")
            for value in (buying_roles or "").split(";")
            if value.strip()
        }
        return min(roles, key=ROLE_STRENGTH.index) if roles else None

    def source_of(self, values: Mapping[str, str | None]) -> dict[str, Any]:
        """channel, medium and campaign of a contact from its analytics source properties."""
        name = next((values[p] for p in self.source_properties if values.get(p)), None)
        if not name:
            return {}
        rule = self.sources.get(name.strip().upper(), SourceRule(medium=name.strip().lower()))
        source: dict[str, Any] = {"channel": rule.channel, "medium": rule.medium}
        campaign = values.get(rule.campaign_property) if rule.campaign_property else None
        if campaign:
            source["campaign"] = campaign
        return {k: v for k, v in source.items() if v is not None}

    def lead_magnet_of(self, values: Mapping[str, str | None]) -> str | None:
        conversion = next((values[p] for p in self.lead_magnet_properties if values.get(p)), None)
        if not conversion:
            return None
        return self.lead_magnets.get(conversion, conversion)

    def properties_read(self) -> frozenset[str]:
        """The contact properties this mapping reads (what a fetch from HubSpot asks for)."""
        campaigns = {r.campaign_property for r in self.sources.values() if r.campaign_property}
        return frozenset(
            {TITLE_PROPERTY, BUYING_ROLE_PROPERTY, *self.source_properties, *campaigns}
            | set(self.lead_magnet_properties)
        )


DEFAULT_MAPPING = HubSpotMapping()


# --- the mapping file ---------------------------------------------------------------------


class TitleRuleEntry(_Strict):
    pattern: str = Field(min_length=1)
    seniority: Seniority

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, pattern: str) -> str:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        return pattern


class MappingFile(_Strict):
    """The file's shape: every section optional; each entry replaces the shipped one of its
    key, title rules are tried before the shipped ones, property lists replace the shipped."""

    titles: list[TitleRuleEntry] = Field(default_factory=list)
    buying_roles: dict[str, Role] = Field(default_factory=dict)
    sources: dict[str, SourceRule] = Field(default_factory=dict)
    source_properties: list[str] | None = Field(default=None, min_length=1)
    lead_magnet_properties: list[str] | None = Field(default=None, min_length=1)
    lead_magnets: dict[str, str] = Field(default_factory=dict)

    def over(self, base: HubSpotMapping) -> HubSpotMapping:
        return HubSpotMapping(
            title_rules=with_rules_first(
                TitleRule.of(entry.pattern, entry.seniority, "mapping file")
                for entry in self.titles
            ),
            buying_roles={
                **base.buying_roles,
                **{k.upper(): v for k, v in self.buying_roles.items()},
            },
            sources={**base.sources, **{k.upper(): v for k, v in self.sources.items()}},
            source_properties=tuple(self.source_properties or base.source_properties),
            lead_magnet_properties=tuple(
                self.lead_magnet_properties or base.lead_magnet_properties
            ),
            lead_magnets={**base.lead_magnets, **self.lead_magnets},
        )


class MappingError(Exception):
    """The mapping file is unreadable or invalid; `problems` lists (line, field, reason)."""

    def __init__(self, message: str, problems: list[tuple[int | None, str, str]] | None = None):
        super().__init__(message)
        self.problems = problems or []


def _dotted(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "(mapping)"


def mapping_from_yaml(
    text: str, origin: str, base: HubSpotMapping = DEFAULT_MAPPING
) -> HubSpotMapping:
    """The mapping a file's text gives over `base`; raises MappingError naming each bad
    field with its line."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise MappingError(f"{origin} is not valid YAML: {exc}") from None
    if data is None:
        return base
    if not isinstance(data, dict):
        raise MappingError(
            f"{origin} must be a YAML mapping of sections", [(1, "(mapping)", "not a mapping")]
        )
    try:
        parsed = MappingFile.model_validate(data)
    except ValidationError as exc:
        lines = lines_by_path(root)
        problems = [
            (
                line_at(lines, error["loc"]),
                _dotted(error["loc"]),
                error["msg"].removeprefix("Value error, "),
            )
            for error in exc.errors()
        ]
        listing = "\n".join(
            f"  line {line}: {where}: {reason}" if line else f"  {where}: {reason}"
            for line, where, reason in problems
        )
        raise MappingError(f"{origin} is invalid:\n{listing}", problems) from None
    return parsed.over(base)
