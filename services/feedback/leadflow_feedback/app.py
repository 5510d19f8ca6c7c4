"""Composition root of feedback."""

from leadflow import sessions
from leadflow.service import ServiceSpec

from leadflow_feedback import api, consumers
from leadflow_feedback.console import api as console
from leadflow_feedback.models import metadata
from leadflow_feedback.people import api as people
from leadflow_feedback.plans import api as plans
from leadflow_feedback.policy_versions import api as policy_versions
from leadflow_feedback.policy_versions import use_cases as policy_use_cases
from leadflow_feedback.quarterly import api as quarterly
from leadflow_feedback.success import api as success

service = ServiceSpec(
    name="feedback",
    package="leadflow_feedback",
    metadata=metadata,
    port=8005,
    routers=[
        api.router,
        api.pages,
        people.users,
        people.sign_in,
        *policy_versions.routers,
        *plans.routers,
        *success.routers,
        quarterly.pages,
        console.console,
    ],
    subscriptions=consumers.subscriptions,
    on_start=policy_use_cases.publish_on_start,
    description="Takes contact attempts and status changes from sales tools; closes the loop.",
    extend_app=sessions.install,
)
