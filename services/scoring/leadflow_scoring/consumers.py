"""Scoring's subscriptions: lead snapshots, activities and erasures from ingest, recycles from
feedback; each poll batch applied at once by `use_cases.apply_events`."""

from __future__ import annotations

from functools import partial

from leadflow.consumer import Subscription
from leadflow.contracts.events import (
    LeadActivity,
    LeadCreated,
    LeadErased,
    LeadStatusChanged,
    LeadUpdated,
)
from leadflow.service import Runtime

from leadflow_scoring import use_cases


def subscriptions(rt: Runtime) -> list[Subscription]:
    apply = partial(use_cases.apply_events, rt)
    return [
        Subscription(
            "leads",
            takes=(LeadCreated, LeadUpdated, LeadActivity, LeadErased),
            apply=apply,
            urgent=True,
        ),
        Subscription("feedback", takes=(LeadStatusChanged,), apply=apply),
    ]
