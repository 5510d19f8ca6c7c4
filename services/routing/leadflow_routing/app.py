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
    workers={"unassigned-queue": use_cases.run_unassigned_queue},
    on_start=use_cases.keep_strategies_checked,
    description=(
        "Assigns MQLs to teams and reps, by account owner, rule and strategy, with a trace; "
        "MQLs no rep can take now wait in the unassigned queue until one can."
    ),
)
