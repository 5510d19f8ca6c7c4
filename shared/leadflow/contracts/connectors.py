"""The CRM connectors of one installation, validated from the `connectors` file.

One YAML file under version control (`LEADFLOW_CONNECTORS_FILE`) says which CRMs Leadflow
works with and how their records map to Leadflow's: what goes out to them on `lead.routed`
(notify) and what comes back from them as contact attempts and status changes (ingest, then
feedback). Credentials are never in this file: only the names of the settings or files that
hold them.
"""

from __future__ import annotations

import re
from pathlib import Path
from string import Formatter
from typing import Annotated, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from leadflow.contracts.events import ContactChannel
from leadflow.contracts.yaml_lines import Lines, line_at, lines_of_text


class ConnectorsError(ValueError):
    """The connectors file is missing, not YAML or invalid; `problems` lists (path, reason),
    `lines` the line of each in the file (None where not known)."""

    def __init__(
        self,
        message: str,
        problems: list[tuple[str, str]] | None = None,
        lines: list[int | None] | None = None,
    ) -> None:
        super().__init__(message)
        self.problems = problems or []
        self.lines = lines or [None] * len(self.problems)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- HubSpot ---------------------------------------------------------------------------


# What a task's subject and body may name (`{lead_name}`, …); anything else is refused.
TASK_FIELDS = frozenset(
    {"lead_name", "company", "email", "title", "rep_name", "team", "due_at", "lead_id", "source"}
)


def _task_template(template: str) -> str:
    """A task text naming only TASK_FIELDS, as plain `{name}` (no attribute or index access)."""
    try:
        names = [name for _, name, _, _ in Formatter().parse(template) if name is not None]
    except ValueError as exc:
        raise ValueError(f"not a valid template: {exc}") from None
    unknown = sorted({n for n in names if n not in TASK_FIELDS})
    if unknown:
        raise ValueError(f"unknown fields {unknown}; known: {sorted(TASK_FIELDS)}")
    return template


TaskText = Annotated[str, Field(min_length=1, max_length=2000), AfterValidator(_task_template)]


def _owner_keys(owners: dict[str, str]) -> dict[str, str]:
    """Rep ids as given, rep e-mails in lower case."""
    return {(k.lower() if "@" in k else k): v for k, v in owners.items()}


class HubSpotOutbound(_Strict):
    """What notify does in HubSpot when a lead is routed: the contact (known from HubSpot
    intake, else found or created by e-mail) gets the rep's owner (`hubspot_owner_id`) and the
    lead status, and the rep a task due at the lead's first-response deadline."""

    enabled: bool = False
    # Rep id or rep e-mail -> HubSpot owner id; a rep not listed is looked up by e-mail in
    # HubSpot's owners when `owners_by_email` is on.
    owners: Annotated[
        dict[str, Annotated[str, Field(pattern=r"^[0-9]{1,20}$")]], AfterValidator(_owner_keys)
    ] = Field(default_factory=dict)
    owners_by_email: bool = True
    lead_status: str | None = Field(default="OPEN", min_length=1)  # hs_lead_status; None: kept
    create_contacts: bool = True  # a lead HubSpot lacks becomes a contact (else dead-lettered)
    task_subject: TaskText = "Follow up with {lead_name} ({company})"
    task_body: TaskText = "Routed by Leadflow to {rep_name} ({team}); first response due {due_at}."
    task_priority: Literal["HIGH", "MEDIUM", "LOW", "NONE"] = "HIGH"
    task_type: Literal["TODO", "CALL", "EMAIL"] = "TODO"
    # HubSpot's per-10-second limit for the account's private app (100; 190 on Professional
    # and Enterprise): this process sends at most this many calls in any 10 seconds.
    requests_per_10s: int = Field(default=100, ge=1, le=1000)


# The statuses a CRM may report: what sales sets through feedback's API, and `working` (which a
# first contact attempt sets otherwise).
ReportedStatus = Literal[
    "working", "sal", "returned", "sql", "sqo", "won", "handed_off", "lost", "recycled",
    "unreachable",
]  # fmt: skip
# A field path into a JSON body: `data.person.email`, `$.current.status`, `items[0].id`.
FIELD_PATH = r"^(\$\.)?[A-Za-z_][\w-]*(\[\d+\])*(\.[A-Za-z_][\w-]*(\[\d+\])*|\.\d+)*$"


class Reported(_Strict):
    """What one value of a CRM's field means in Leadflow: a contact attempt on `channel`, or a
    move to `status` (with a structured `reason` from the policy where the status needs one)."""

    kind: Literal["attempt", "status"]
    channel: ContactChannel = "call"
    outcome: str | None = Field(default=None, max_length=200)
    status: ReportedStatus | None = None
    reason: str | None = Field(default=None, max_length=100)

    @model_validator(mode="after")
    def _status_named(self) -> Reported:
        if self.kind == "status" and self.status is None:
            raise ValueError("a status report needs `status`")
        if self.kind == "attempt" and (self.status or self.reason):
            raise ValueError("an attempt takes `channel` and `outcome`, not `status` or `reason`")
        return self


def _attempt(channel: str = "call", outcome: str | None = None) -> Reported:
    return Reported(kind="attempt", channel=channel, outcome=outcome)  # type: ignore[arg-type]


def _status(status: str, reason: str | None = None) -> Reported:
    return Reported(kind="status", status=status, reason=reason)  # type: ignore[arg-type]


# HubSpot's default lead statuses (contact property `hs_lead_status`). A value listed as None
# is known and says nothing sales did (NEW, and OPEN, which notify writes on a routed lead); a
# value not listed at all is reported as unmapped.
HUBSPOT_LEAD_STATUS: dict[str, Reported | None] = {
    "NEW": None,
    "OPEN": None,
    "ATTEMPTED_TO_CONTACT": _attempt("call", "attempted"),
    "CONNECTED": _status("working"),
    "IN_PROGRESS": _status("working"),
    "OPEN_DEAL": _status("sal"),
    "UNQUALIFIED": _status("returned", "not_in_target"),
    "BAD_TIMING": _status("returned", "timing_next_quarter"),
}
# Marketing's own stages say nothing sales did.
HUBSPOT_LIFECYCLE_STAGE: dict[str, Reported | None] = {
    "subscriber": None,
    "lead": None,
    "marketingqualifiedlead": None,
    "salesqualifiedlead": _status("sal"),
}
# The call dispositions every HubSpot account starts with (property `hs_call_disposition`
# holds their ids); a disposition added in the portal keeps its id as the outcome.
HUBSPOT_CALL_DISPOSITIONS = {
    "9d9162e7-6cf3-4944-bf63-4dff82258764": "busy",
    "f240bbac-87c9-4f6e-bf70-924b57d47db7": "connected",
    "a4c4c377-d246-4b32-a13b-75a56a4cd0ff": "left_live_message",
    "b2cf5968-551e-4856-9783-52b3da59a7d0": "left_voicemail",
    "73a0d17f-1163-4015-bdd5-ec830791da20": "no_answer",
    "17b47fee-58de-441e-a44c-c6300d46f273": "wrong_number",
}


class HubSpotInbound(_Strict):
    """How HubSpot's property changes and logged engagements become feedback.

    `properties`: contact property → value → what it means (None: known, says nothing; a value
    not listed is reported as unmapped);
    `engagements`: which logged activities on a contact are contact attempts (read through the
    CRM API with the private app's token, `LEADFLOW_HUBSPOT_PRIVATE_APP_TOKEN`); the webhook is
    checked with the app's client secret (`LEADFLOW_HUBSPOT_CLIENT_SECRET`)."""

    enabled: bool = False
    properties: dict[str, dict[str, Reported | None]] = Field(
        default_factory=lambda: {
            "hs_lead_status": dict(HUBSPOT_LEAD_STATUS),
            "lifecyclestage": dict(HUBSPOT_LIFECYCLE_STAGE),
        }
    )
    engagements: list[Literal["calls", "emails", "meetings"]] = Field(
        default_factory=lambda: ["calls", "emails", "meetings"]
    )
    call_dispositions: dict[str, str] = Field(
        default_factory=lambda: dict(HUBSPOT_CALL_DISPOSITIONS)
    )


class HubSpotConnector(_Strict):
    outbound: HubSpotOutbound = Field(default_factory=HubSpotOutbound)
    inbound: HubSpotInbound = Field(default_factory=HubSpotInbound)


# --- Salesforce ------------------------------------------------------------------------


class SalesforceOutbound(_Strict):
    """What notify does in Salesforce when a lead is routed, through the REST API with an
    OAuth 2.0 client-credentials token: the Lead, upserted by its Leadflow id in an external id
    field, gets the rep's user as `OwnerId` (and the status), and the rep a Task upserted by the
    assignment's id, due at the lead's first-response deadline."""

    enabled: bool = False
    # The org's My Domain URL (the client-credentials flow needs it; not login.salesforce.com).
    login_url: str = Field(default="https://login.salesforce.com", pattern=r"^https?://[^\s/]+/?$")
    api_version: str = Field(default="62.0", pattern=r"^[0-9]{2,3}\.0$")
    # Rep id or rep e-mail -> Salesforce user id (005…).
    owners: Annotated[
        dict[str, Annotated[str, Field(pattern=r"^005[A-Za-z0-9]{12}([A-Za-z0-9]{3})?$")]],
        AfterValidator(_owner_keys),
    ] = Field(default_factory=dict)
    lead_external_id_field: str = Field(
        default="Leadflow_Lead_Id__c", pattern=r"^[A-Za-z][A-Za-z0-9_]*__c$"
    )
    task_external_id_field: str = Field(
        default="Leadflow_Task_Id__c", pattern=r"^[A-Za-z][A-Za-z0-9_]*__c$"
    )
    lead_status: str | None = Field(default="Open - Not Contacted", min_length=1)
    lead_source: str | None = None  # LeadSource of a Lead Leadflow creates; None: the lead's source
    task_subject: TaskText = "Follow up with {lead_name} ({company})"
    task_body: TaskText = "Routed by Leadflow to {rep_name} ({team}); first response due {due_at}."
    task_priority: str = "High"
    # The org's session timeout: a client-credentials answer carries no expiry, so the token is
    # taken again a tenth of this before it ends (and at once after a 401).
    token_lifetime_seconds: int = Field(default=7200, ge=300, le=86_400)


# Salesforce's default Lead Status picklist; "Open - Not Contacted" (what notify writes on a
# routed Lead) says nothing sales did.
SALESFORCE_LEAD_STATUS: dict[str, Reported | None] = {
    "Open - Not Contacted": None,
    "Working - Contacted": _status("working"),
    "Closed - Converted": _status("sal"),
    "Closed - Not Converted": _status("returned", "not_in_target"),
}
# Task subtypes (`TaskSubtype`) and types (`Type`) that are contact attempts, on which channel.
SALESFORCE_TASK_CHANNELS: dict[str, str] = {
    "Call": "call",
    "Email": "email",
    "ListEmail": "email",
    "LinkedIn": "linkedin",
    "Meeting": "meeting",
}


class SalesforceInbound(_Strict):
    """How Salesforce Outbound Messages become feedback: a Lead's status field (`status_field`,
    values in `lead_statuses`) and Tasks logged on a Lead or Contact (`task_channels`, the
    outcome from `task_outcome_field`). Only messages of `organization_id` are taken. A Lead is
    matched by its id as notify linked it, or by `lead_id_field`, a field on the Lead carrying
    Leadflow's lead id."""

    enabled: bool = False
    organization_id: str | None = Field(
        default=None, pattern=r"^00D[A-Za-z0-9]{12}([A-Za-z0-9]{3})?$"
    )
    status_field: str = Field(default="Status", pattern=r"^[A-Za-z][A-Za-z0-9_]*$")
    lead_statuses: dict[str, Reported | None] = Field(
        default_factory=lambda: dict(SALESFORCE_LEAD_STATUS)
    )
    lead_id_field: str | None = Field(default=None, pattern=r"^[A-Za-z][A-Za-z0-9_]*$")
    task_channels: dict[str, ContactChannel] = Field(
        default_factory=lambda: dict(SALESFORCE_TASK_CHANNELS)  # type: ignore[arg-type]
    )
    task_outcome_field: str = Field(default="CallDisposition", pattern=r"^[A-Za-z][A-Za-z0-9_]*$")

    @model_validator(mode="after")
    def _organisation_named(self) -> SalesforceInbound:
        if self.enabled and not self.organization_id:
            raise ValueError("an enabled Salesforce inbound needs `organization_id`")
        return self


class SalesforceConnector(_Strict):
    outbound: SalesforceOutbound = Field(default_factory=SalesforceOutbound)
    inbound: SalesforceInbound = Field(default_factory=SalesforceInbound)


# --- Any other sales tool --------------------------------------------------------------


def _field_path(path: str) -> str:
    if len(path) > 300 or not re.fullmatch(FIELD_PATH, path):
        raise ValueError(
            f"{path!r} is not a field path (names joined by dots, list items as [0]: "
            "`data.person.email`, `$.current.status`, `items[0].id`)"
        )
    return path


FieldPath = Annotated[str, AfterValidator(_field_path)]


class WebhookSignature(_Strict):
    """The HMAC the tool signs each body with: `header` holds it, `encoding` hex or base64,
    after `prefix` (e.g. `sha256=`). The secret is read from the environment variable
    `secret_env` or the file `secret_file`, never from this file."""

    header: str = Field(default="X-Signature", pattern=r"^[A-Za-z0-9-]{1,100}$")
    algorithm: Literal["sha256", "sha1", "sha512"] = "sha256"
    encoding: Literal["hex", "base64"] = "hex"
    prefix: str = Field(default="", max_length=40)
    secret_env: str | None = Field(default=None, pattern=r"^[A-Z_][A-Z0-9_]*$")
    secret_file: str | None = None

    @model_validator(mode="after")
    def _secret_named(self) -> WebhookSignature:
        if (self.secret_env is None) == (self.secret_file is None):
            raise ValueError("name exactly one of `secret_env` and `secret_file`")
        return self


class WebhookLead(_Strict):
    """How a body names its lead: Leadflow's lead id, an e-mail or an external id, at `path`."""

    by: Literal["lead_id", "email", "external_id"]
    path: FieldPath


class WebhookMapping(_Strict):
    """The value at `value` looked up in `values`; the outcome of an attempt, optionally, at
    `outcome`. The first mapping of a webhook whose value is in its table decides (None: known,
    says nothing); a value no table lists is reported as unmapped."""

    value: FieldPath
    values: dict[str, Reported | None] = Field(min_length=1)
    outcome: FieldPath | None = None


class GenericWebhook(_Strict):
    """An inbound webhook of another sales tool (`POST /v1/sources/webhooks/{name}` on ingest),
    mapped to attempts and status changes by field paths and value tables."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    signature: WebhookSignature
    record_id: FieldPath
    lead: WebhookLead
    occurred_at: FieldPath | None = None
    mappings: list[WebhookMapping] = Field(min_length=1)


class Connectors(_Strict):
    hubspot: HubSpotConnector = Field(default_factory=HubSpotConnector)
    salesforce: SalesforceConnector = Field(default_factory=SalesforceConnector)
    webhooks: list[GenericWebhook] = Field(default_factory=list)

    @model_validator(mode="after")
    def _webhook_names_unique(self) -> Connectors:
        names = [w.name for w in self.webhooks]
        if len(names) != len(set(names)):
            raise ValueError("each webhook needs a name of its own")
        return self

    def webhook(self, name: str) -> GenericWebhook | None:
        return next((w for w in self.webhooks if w.name == name), None)


def _dotted(loc: tuple[object, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(root)"


def parse_connectors(
    data: object, source: str = "connectors", lines: Lines | None = None
) -> Connectors:
    """Validate a connectors document already read; raises ConnectorsError naming each path
    (and its line, given the `lines` of the text it was read from)."""
    if data is None:
        return Connectors()
    if not isinstance(data, dict):
        raise ConnectorsError(f"{source} must be a mapping with a `connectors` section")
    nested = "connectors" in data
    section = data.get("connectors", data)
    try:
        return Connectors.model_validate(section or {})
    except ValidationError as exc:
        problems = [(_dotted(e["loc"]), e["msg"]) for e in exc.errors()]
        at = [
            line_at(lines, ("connectors", *e["loc"]) if nested else e["loc"]) if lines else None
            for e in exc.errors()
        ]
        listing = "\n".join(
            f"  {f'line {line}: ' if line else ''}connectors.{path}: {reason}"
            for (path, reason), line in zip(problems, at, strict=True)
        )
        raise ConnectorsError(f"{source} is invalid:\n{listing}", problems, at) from None


def load_connectors(path: str | Path | None) -> Connectors:
    """The connectors in `path` (none configured when `path` is None); raises ConnectorsError
    naming the file and the line of each problem."""
    if path is None:
        return Connectors()
    source = f"connectors file {str(path)!r}"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConnectorsError(f"{source} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConnectorsError(f"{source} cannot be read: {exc}") from None
    return parse_connectors_text(text, source)


def parse_connectors_text(text: str, source: str = "connectors") -> Connectors:
    """The connectors in a YAML (or JSON, a subset of it) text, validated as the file is;
    raises ConnectorsError naming the path and line of each problem."""
    try:
        data = yaml.safe_load(text)
        lines = lines_of_text(text)
    except yaml.YAMLError as exc:
        raise ConnectorsError(f"{source} is not valid YAML: {exc}") from None
    except RecursionError:
        raise ConnectorsError(f"{source} is nested too deeply") from None
    return parse_connectors(data, source, lines)
