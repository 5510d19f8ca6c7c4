"""Composition root of routing."""

from leadflow.service import ServiceSpec

from leadflow_routing import api, consumers, use_cases
from leadflow_routing.models import metadata

service = ServiceSpec(
    name="routing",
    package="leadflow_routing",
    metadata=metadata,
    port=8003,
    routers=[api.router],
    subscriptions=consumers.subscriptions,
    workers={"webhook-delivery": use_cases.run_deliveries},
    on_start=use_cases.keep_strategies_checked,
    description="Assigns MQLs to reps and delivers them to sales tools over signed webhooks.",
)
