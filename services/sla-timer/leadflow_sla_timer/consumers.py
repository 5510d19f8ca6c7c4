"""sla-timer's subscriptions: the clocks' events, the promotions its period commitments count,
and erasure."""

from __future__ import annotations

from functools import partial

from leadflow.consumer import Subscription
from leadflow.contracts.events import (
    LeadChurned,
    LeadContactAttempt,
    LeadErased,
    LeadMql,
    LeadOnboardingMilestone,
    LeadRouted,
    LeadStatusChanged,
)
from leadflow.service import Runtime

from leadflow_sla_timer import use_cases


def subscriptions(rt: Runtime) -> list[Subscription]:
    return [
        Subscription(
            "timers",
            takes=(
                LeadRouted,
                LeadContactAttempt,
                LeadStatusChanged,
                LeadOnboardingMilestone,
                LeadChurned,
            ),
            apply=partial(use_cases.apply_timers, rt),
            urgent=True,
        ),
        Subscription("commitments", takes=(LeadMql,), apply=partial(use_cases.apply_mqls, rt)),
        Subscription("erasure", takes=(LeadErased,), apply=use_cases.apply_erasures),
    ]
