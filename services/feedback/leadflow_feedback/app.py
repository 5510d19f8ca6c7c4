"""Composition root of feedback."""

from leadflow.service import ServiceSpec

from leadflow_feedback import api, consumers
from leadflow_feedback.models import metadata

service = ServiceSpec(
    name="feedback",
    package="leadflow_feedback",
    metadata=metadata,
    port=8005,
    routers=[api.router, api.pages],
    subscriptions=consumers.subscriptions,
    description="Takes contact attempts and status changes from sales tools; closes the loop.",
)
