"""Composition root of feedback."""

from leadflow.service import ServiceSpec

from leadflow_feedback import api, handlers, review
from leadflow_feedback.models import metadata

service = ServiceSpec(
    name="feedback",
    package="leadflow_feedback",
    metadata=metadata,
    port=8005,
    routers=[api.router, review.router],
    subscriptions=handlers.subscriptions,
    description="Takes contact attempts and status changes from sales tools; closes the loop.",
)
