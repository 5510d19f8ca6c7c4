"""The policy every service applies, published as numbered versions and taken without a restart.

One service keeps the versions (`OWNER`, feedback) and publishes one as the current policy with a
`policy.published` event carrying the whole validated document. Every service, the owner included,
keeps the latest publication in its own `current_policy` table (the kernel's `policies`
subscription over `leadflow.publications`: the highest `publication` wins, so a late copy of an
older one changes nothing), and each of its processes reads that row again every `REFRESH_SECONDS`
and swaps the policy its decisions read (`rt.policy`). At start a service takes its stored
publication if it has one, else the policy file (`LEADFLOW_POLICY_FILE`, or the shipped default). A
decision records the `version` of the policy it used, as before; what was decided under an older
version (an open SLA clock's limit and ladder) stays as it was decided."""

from __future__ import annotations

import logging
from collections.abc import Callable

import sqlalchemy as sa
from pydantic import ValidationError

from leadflow.consumer import Subscription
from leadflow.contracts.events import PolicyPublished
from leadflow.contracts.policy import Policy
from leadflow.db import Database, is_transient
from leadflow.loops import Stop
from leadflow.publications import CURRENT_POLICY
from leadflow.retry import exponential_backoff

log = logging.getLogger(__name__)

OWNER = "feedback"  # the service that keeps the versions and publishes them
REFRESH_SECONDS = 1.0  # how often a process reads its service's current policy again


def subscription(metadata: sa.MetaData) -> Subscription:
    """The consumer keeping this service's current policy: the highest publication wins."""
    return Subscription("policies", (PolicyPublished,), CURRENT_POLICY.keep_latest(metadata))


class CurrentPolicy:
    """The policy this process decides with: its service's stored publication, read again every
    `REFRESH_SECONDS`; `on_change` gets each newly published policy."""

    def __init__(
        self,
        db: Database,
        metadata: sa.MetaData,
        fallback: Policy,
        on_change: Callable[[Policy], None],
    ) -> None:
        self.db = db
        self.metadata = metadata
        self.policy = fallback
        self.number: int | None = None  # the version number, once one was published
        self.publication = 0
        self._on_change = on_change

    async def refresh(self) -> bool:
        """Read the stored publication; True when it changed the policy. A document this
        process cannot validate (a rolling upgrade that changed the policy's fields) is logged
        and the policy in force kept."""
        async with self.db.unit_of_work() as session:
            row = await CURRENT_POLICY.stored(session, self.metadata)
        if row is None or row.publication == self.publication:
            return False
        try:
            policy = Policy.model_validate(row.document)
        except ValidationError as exc:
            log.error(
                "published policy not applied: this process cannot validate it",
                extra={"number": row.number, "policy_version": row.version, "error": str(exc)},
            )
            self.publication = row.publication  # logged once, not every second
            return False
        self.policy, self.number, self.publication = policy, row.number, row.publication
        self._on_change(policy)
        log.info(
            "policy applied",
            extra={"number": row.number, "policy_version": policy.version},
        )
        return True

    async def load(self, stop: Stop) -> None:
        """The first read, at start: retried while the database is away, so that the service
        decides with its stored policy from its first event on."""
        attempt = 0
        while True:
            try:
                await self.refresh()
                return
            except Exception as exc:
                if not is_transient(exc) or stop:
                    raise
                attempt += 1
                log.warning("current policy not read yet", extra={"error": repr(exc)})
                await stop.pause(exponential_backoff(attempt))

    async def run(self, stop: Stop) -> None:
        """Read the stored publication again every `REFRESH_SECONDS` until `stop`; a failed read
        keeps the policy in force."""
        await stop.every(REFRESH_SECONDS, self.refresh, failed="current policy not read")
