"""Composition root of sla-timer."""

from leadflow.service import ServiceSpec

from leadflow_sla_timer import api, evaluation, firing, handlers
from leadflow_sla_timer.models import metadata

service = ServiceSpec(
    name="sla-timer",
    package="leadflow_sla_timer",
    metadata=metadata,
    port=8004,
    routers=[api.router],
    subscriptions=handlers.subscriptions,
    workers={
        "timer-firing": firing.run_firing,
        "open-timer-gauge": firing.count_open,
        "period-evaluation": evaluation.run_evaluation,
    },
    on_start=firing.reschedule_on_start,
    description=(
        "Runs durable SLA clocks on business calendars; emits warnings, breaches, escalations; "
        "judges both parties' period commitments."
    ),
)
