"""The CRM connectors a service applies: the connectors file at first, then the latest document
changed through notify's API (`PUT /v1/connectors`), taken without a restart.

Notify (`OWNER`) validates a document exactly as the file is validated, keeps it in its own
`current_connectors` table and publishes it as `connectors.published`; ingest keeps the latest
publication in its own `current_connectors` table (`leadflow.publications.CURRENT_CONNECTORS`:
the highest `publication` wins, so a late copy of an older one changes nothing). Each use of the
connectors reads that one row by its key and rebuilds what it derives from them only when the
publication changed."""

from __future__ import annotations

import sqlalchemy as sa

from leadflow.consumer import Subscription
from leadflow.contracts.events import ConnectorsPublished
from leadflow.publications import CURRENT_CONNECTORS

OWNER = "notify"  # the service whose API changes the connectors and publishes them


def subscription(metadata: sa.MetaData) -> Subscription:
    """The consumer keeping a service's copy of the connectors: the highest publication wins."""
    return Subscription(
        "connectors", (ConnectorsPublished,), CURRENT_CONNECTORS.keep_latest(metadata)
    )
