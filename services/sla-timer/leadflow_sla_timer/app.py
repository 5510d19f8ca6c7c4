"""Composition root of sla-timer."""

from leadflow.service import ServiceSpec

from leadflow_sla_timer import api, consumers, use_cases
from leadflow_sla_timer.models import metadata

service = ServiceSpec(
    name="sla-timer",
    package="leadflow_sla_timer",
    metadata=metadata,
    port=8004,
    routers=[api.router],
    subscriptions=consumers.subscriptions,
    workers={
        "timer-firing": use_cases.run_firing,
        "open-timer-gauge": use_cases.count_open,
        "period-evaluation": use_cases.run_evaluation,
    },
    description=(
        "Runs durable SLA clocks on business calendars; emits warnings, breaches, escalations; "
        "judges both parties' period commitments."
    ),
)
