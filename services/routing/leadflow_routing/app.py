"""Composition root of routing."""

from leadflow.service import ServiceSpec

from leadflow_routing import api, delivery, handlers
from leadflow_routing.models import metadata

service = ServiceSpec(
    name="routing",
    package="leadflow_routing",
    metadata=metadata,
    port=8003,
    routers=[api.router],
    subscriptions=handlers.subscriptions,
    workers={"webhook-delivery": delivery.run_deliveries},
    description="Assigns MQLs to reps and delivers them to sales tools over signed webhooks.",
)
