"""Composition root of ingest."""

from leadflow.service import ServiceSpec

from leadflow_ingest import api, consumers, use_cases
from leadflow_ingest.models import metadata

service = ServiceSpec(
    name="ingest",
    package="leadflow_ingest",
    metadata=metadata,
    port=8001,
    routers=[api.router, api.sources],
    subscriptions=consumers.subscriptions,
    on_start=use_cases.prepare_hubspot_intake,
    description="Takes lead and activity events from marketing platforms (HTTP and Kafka).",
)
