"""Composition root of scoring."""

from leadflow.service import ServiceSpec

from leadflow_scoring import api, consumers, use_cases
from leadflow_scoring.models import metadata

service = ServiceSpec(
    name="scoring",
    package="leadflow_scoring",
    metadata=metadata,
    port=8002,
    routers=[api.router],
    subscriptions=consumers.subscriptions,
    workers={"decay-reviewer": use_cases.decay_reviewer},
    on_start=use_cases.on_start,
    description=(
        "Scores leads (fit, engagement, intent, negative signals), re-scores them as engagement "
        "decays, and promotes MQLs and PQLs (again after a recycle, on renewed interest)."
    ),
)
