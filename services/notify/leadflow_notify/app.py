"""Composition root of notify."""

from leadflow.service import ServiceSpec

from leadflow_notify import api, consumers, use_cases
from leadflow_notify.models import metadata

service = ServiceSpec(
    name="notify",
    package="leadflow_notify",
    metadata=metadata,
    port=8006,
    routers=[api.router],
    subscriptions=consumers.subscriptions,
    on_start=use_cases.prepare_connectors,
    workers={
        "webhook-delivery": use_cases.run_deliveries,
        "messages-to-people": use_cases.run_notices,
    },
    description=(
        "Delivers what Leadflow decides to the people and tools who act on it: any event to any "
        "subscribed endpoint over signed webhooks, with the lead's context; each level of a "
        "lead's SLA clock to its rep, team lead or manager on e-mail, Slack and Teams; each "
        "routed lead to the CRMs it is connected to (HubSpot, Salesforce)."
    ),
)
