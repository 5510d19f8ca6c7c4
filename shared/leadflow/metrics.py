"""Every Prometheus metric Leadflow exports, defined once."""

from __future__ import annotations

import sqlalchemy as sa
from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase
from sqlalchemy.ext.asyncio import AsyncSession

# Minutes-to-days response times: 1 min … 5 days (in business-hours seconds).
RESPONSE_BUCKETS = (60, 300, 900, 1800, 3600, 7200, 14400, 28800, 57600, 86400, 172800, 432000)

http_requests = Histogram(
    "leadflow_http_request_duration_seconds",
    "HTTP request duration",
    ["service", "method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
events_consumed = Counter(
    "leadflow_events_consumed_total",
    "Events handled by a consumer, by outcome (processed, duplicate, skipped, dead_lettered)",
    ["service", "consumer", "type", "outcome"],
)
consumer_retries = Counter(
    "leadflow_consumer_retries_total",
    "Batch or event retries after a failure",
    ["service", "consumer"],
)
consumer_lag = Gauge(
    "leadflow_consumer_lag",
    "Events of a topic not yet processed by this consumer: partition end minus position, plus "
    "the fetched batch in hand, summed over the partitions assigned here (refreshed every 5 s)",
    ["service", "consumer", "topic"],
)
outbox_published = Counter(
    "leadflow_outbox_published_total", "Outbox rows published to Kafka", ["service", "topic"]
)
outbox_backlog = Gauge(
    "leadflow_outbox_backlog", "Outbox rows not yet published (at the last relay pass)", ["service"]
)
outbox_oldest_age = Gauge(
    "leadflow_outbox_oldest_unpublished_age_seconds",
    "Age of the oldest outbox row not yet published (at the last relay pass; 0 when none wait)",
    ["service"],
)
outbox_republished = Counter(
    "leadflow_outbox_republished_total",
    "Published outbox rows sent again because the broker lost its log",
    ["service", "topic"],
)
broker_resets = Counter(
    "leadflow_broker_resets_total",
    "Times a service found that the broker lost its log: a relay whose topic is shorter than "
    "what it published, or a consumer whose position lies beyond the log end or on another record",
    ["service", "detector"],
)
lead_response = Histogram(
    "leadflow_lead_response_seconds",
    "Business-hours seconds from MQL routed to first contact attempt",
    ["channel", "team"],
    buckets=RESPONSE_BUCKETS,
)
sla_breaches = Counter("leadflow_sla_breaches_total", "SLA breaches", ["sla", "channel", "team"])
sla_warnings = Counter("leadflow_sla_warnings_total", "SLA warnings", ["sla", "channel", "team"])
sla_open_timers = Gauge("leadflow_sla_open_timers", "Open SLA timers", ["sla"])
sla_timers_overdue = Gauge(
    "leadflow_sla_timers_overdue",
    "Open SLA timers whose next level came due more than 30 real seconds ago and has not fired",
    ["sla"],
)
sla_timers_started = Counter(
    "leadflow_sla_timers_started_total", "SLA timers started", ["sla", "channel", "team"]
)
sla_fire_lag = Histogram(
    "leadflow_sla_timer_fire_lag_seconds",
    "Real seconds between a timer level coming due and its event being written",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
)
contact_attempts = Counter(
    "leadflow_contact_attempts_total", "Contact attempts reported by sales tools", ["channel"]
)
leads_ingested = Counter("leadflow_leads_ingested_total", "Leads accepted by ingest", ["outcome"])
mql_promoted = Counter("leadflow_mql_total", "Leads promoted to MQL", ["kind"])
leads_routed = Counter("leadflow_leads_routed_total", "Leads routed", ["team", "reason"])
mql_unassigned = Counter(
    "leadflow_mql_unassigned_total",
    "MQLs no rep could take when they arrived; they wait in the unassigned queue",
    ["team", "reason"],
)
unassigned_waiting = Gauge(
    "leadflow_unassigned_mqls", "MQLs waiting in the unassigned queue for an eligible rep", ["team"]
)
unassigned_oldest_age = Gauge(
    "leadflow_unassigned_oldest_age_seconds",
    "Real seconds the oldest MQL of the unassigned queue has waited (0 when none waits)",
    ["team"],
)
unassigned_wait = Histogram(
    "leadflow_unassigned_wait_seconds",
    "Real seconds an MQL waited in the unassigned queue before a rep was assigned",
    ["team"],
    buckets=(1, 10, 60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400, 259200),
)
webhook_deliveries = Counter(
    "leadflow_webhook_deliveries_total",
    "Webhook delivery attempts by outcome (delivered, retry, dead_lettered, disabled)",
    ["outcome"],
)
notifications = Counter(
    "leadflow_notifications_total",
    "Messages to people and tools by channel (webhook, slack, teams, email), event type and "
    "outcome (sent, coalesced, retry, failed, dead_lettered)",
    ["channel", "event_type", "outcome"],
)
crm_calls = Counter(
    "leadflow_crm_calls_total",
    "Calls notify makes to a CRM's API (system hubspot | salesforce) by outcome (ok, "
    "rate_limited, unauthorized, refused, failed, unreachable)",
    ["system", "outcome"],
)
crm_writes = Counter(
    "leadflow_crm_writes_total",
    "A routed lead written to a CRM (system) by outcome (written, retry, rate_limited, "
    "dead_lettered)",
    ["system", "outcome"],
)
sales_reports = Counter(
    "leadflow_sales_reports_total",
    "What a sales tool reported back (system hubspot | salesforce | webhook:<name>), by outcome "
    "(reported, unmapped: a value the connectors file does not list, duplicate, unmatched, "
    "ignored)",
    ["system", "outcome"],
)


def count_on_commit(session: AsyncSession, counter: MetricWrapperBase, amount: float = 1) -> None:
    """Increment `counter` once `session`'s transaction commits: a unit of work that rolls back
    (and is retried) counts nothing, so a retried batch is not counted twice."""
    sa.event.listen(session.sync_session, "after_commit", lambda _: counter.inc(amount), once=True)


def observe_on_commit(
    session: AsyncSession, observations: list[tuple[MetricWrapperBase, float]]
) -> None:
    """Observe each `(histogram or summary, value)` once `session`'s transaction commits, like
    `count_on_commit`."""

    def observe(_: object) -> None:
        for metric, value in observations:
            metric.observe(value)

    sa.event.listen(session.sync_session, "after_commit", observe, once=True)
