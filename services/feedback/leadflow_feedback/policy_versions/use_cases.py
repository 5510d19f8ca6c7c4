"""What happens to the policy's versions: a text validated and kept as a draft (nothing kept when
it is refused), two versions compared, one published as the current policy (a rollback publishes
the version current before it again), and the policy file recorded as version 1 on the first
start. Each change is audited, and each publication written with its `policy.published` event
in one transaction."""

from __future__ import annotations

import logging
from importlib import resources
from typing import Any

from leadflow import audit
from leadflow.contracts.events import POLICY_KEY, PolicyPublished
from leadflow.contracts.policy import DEFAULT_POLICY_RESOURCE
from leadflow.contracts.policy_document import (
    PolicyDocumentError,
    changed_paths,
    line_of,
    parse_policy,
    read_policy_file,
    text_diff,
)
from leadflow.errors import Conflict, NotFound, Unprocessable
from leadflow.paging import Page, PageRequest
from leadflow.service import Runtime
from sqlalchemy.ext.asyncio import AsyncSession

from leadflow_feedback.policy_versions import store
from leadflow_feedback.policy_versions.schemas import (
    DiffOut,
    PathChangeOut,
    VersionDetail,
    VersionOut,
)

log = logging.getLogger(__name__)
ENTITY = "policy-version"


def out(row: Any) -> VersionOut:
    return VersionOut.model_validate({f: getattr(row, f) for f in VersionOut.model_fields})


def detail(row: Any) -> VersionDetail:
    return VersionDetail.model_validate({f: getattr(row, f) for f in VersionDetail.model_fields})


def _summary(row: Any) -> dict[str, Any] | None:
    if row is None:
        return None
    return {"number": row.number, "version": row.version, "state": row.state}


async def _found(session: AsyncSession, number: int, field: str = "number") -> Any:
    row = await store.version(session, number)
    if row is None:
        raise NotFound(f"policy version {number} not found", field=field)
    return row


# --- reading ---------------------------------------------------------------------------------


async def versions(rt: Runtime, wanted: PageRequest) -> Page[VersionOut]:
    async with rt.db.unit_of_work() as session:
        rows = await store.page_versions(session, wanted)
    return wanted.page(rows, out)


async def version(rt: Runtime, number: int) -> VersionDetail:
    async with rt.db.unit_of_work() as session:
        return detail(await _found(session, number))


async def current(rt: Runtime) -> VersionDetail:
    async with rt.db.unit_of_work() as session:
        row = await store.current(session)
    if row is None:  # only before feedback's first start recorded version 1
        raise NotFound("no policy version is published yet")
    return detail(row)


async def diff(rt: Runtime, before: int, after: int) -> DiffOut:
    async with rt.db.unit_of_work() as session:
        a = await _found(session, before, "before")
        b = await _found(session, after, "after")
    changes = changed_paths(a.document, b.document)
    return DiffOut(
        before=before,
        after=after,
        changes=[PathChangeOut(path=c.path, before=c.before, after=c.after) for c in changes],
        text=text_diff(a.text, b.text, f"version {before}", f"version {after}"),
    )


# --- writing ---------------------------------------------------------------------------------


async def create_version(rt: Runtime, text: str) -> VersionDetail:
    """Keep a valid policy text as the next draft version; a refused one keeps nothing and
    names each problem's path and line, as `leadflow policy check` does."""
    try:
        parsed = parse_policy(text, "the policy")
    except PolicyDocumentError as exc:
        raise Unprocessable(
            f"the policy is invalid ({len(exc.located)} problem(s))",
            errors=[{"field": p.path, "message": p.message, "line": p.line} for p in exc.located],
        ) from None
    label = parsed.policy.version
    async with rt.db.unit_of_work() as session:
        await store.lock_versions(session)
        taken = await store.version_labelled(session, label)
        if taken is not None:
            message = f"{label!r} is already version {taken.number}'s: give this one its own"
            line = line_of(parsed.text, "version")
            raise Unprocessable(
                "the policy's version must name it alone",
                errors=[{"field": "version", "message": message, "line": line}],
            )
        row = await store.add_version(
            session, number=await store.next_number(session), version=label, text=parsed.text,
            document=parsed.document, state="draft", created_by=audit.actor.get(),
            created_at=rt.clock.now(),
        )  # fmt: skip
        await audit.record(
            session, rt.spec.metadata, action="created", entity=ENTITY, entity_id=row.number,
            after={**_summary(row), "document": row.document},
        )  # fmt: skip
    return detail(row)


async def _send(rt: Runtime, session: AsyncSession, published: Any) -> None:
    await rt.outbox.emit(
        session,
        PolicyPublished(
            lead_id=POLICY_KEY, number=published.number, version=published.version,
            publication=published.publication, published_at=published.published_at,
            published_by=published.published_by, document=published.document,
        ),
        policy_version=published.version,
    )  # fmt: skip


async def _publish(
    rt: Runtime, session: AsyncSession, row: Any, current: Any, *, audited: bool = True
) -> Any:
    """Make `row` the current version (with the lock of the versions held) and send it."""
    now = rt.clock.now()
    publication = await store.next_publication(session)
    if current is not None:
        await store.change_version(session, current.number, state="superseded")
    rollback = row.publication is not None  # published before: this publishes it again
    published = await store.change_version(
        session, row.number, state="published", publication=publication,
        published_by=audit.actor.get(), published_at=now,
    )  # fmt: skip
    await _send(rt, session, published)
    if audited:
        await audit.record(
            session, rt.spec.metadata, action="published", entity=ENTITY, entity_id=row.number,
            before=_summary(current), after={**_summary(published), "rollback": rollback},
        )  # fmt: skip
    log.info(
        "policy version published",
        extra={"number": published.number, "policy_version": published.version},
    )
    return published


async def publish(rt: Runtime, number: int) -> VersionDetail:
    """Publish a version as the current policy (a draft, or an older one again: a rollback).
    Publishing the current version again changes nothing and sends nothing."""
    async with rt.db.unit_of_work() as session:
        await store.lock_versions(session)
        row = await _found(session, number)
        now_current = await store.current(session)
        if now_current is not None and now_current.number == number:
            return detail(row)
        return detail(await _publish(rt, session, row, now_current))


async def rollback(rt: Runtime) -> VersionDetail:
    """Publish again the version that was current before the current one."""
    async with rt.db.unit_of_work() as session:
        await store.lock_versions(session)
        now_current = await store.current(session)
        previous = (
            await store.published_before(session, now_current.publication)
            if now_current is not None
            else None
        )
        if previous is None:
            raise Conflict("no version was published before the current one")
        return detail(await _publish(rt, session, previous, now_current))


async def publish_on_start(rt: Runtime) -> None:
    """On start: with no version yet, the policy file (or the shipped default) becomes version 1
    and is published, so every service records the same policy as the first (the installation's
    starting point, not a change: nothing is audited). Otherwise the current publication is sent
    again as it was: a service whose schema is new, or a topic whose retention dropped the
    event, still gets it, and every service that has it ignores the copy."""
    async with rt.db.unit_of_work() as session:
        await store.lock_versions(session)
        current = await store.current(session)
        if current is not None:
            await _send(rt, session, current)
            return
        if await store.next_number(session) > 1:  # versions, none published: nothing to send
            return
        if rt.settings.policy_file:
            parsed = read_policy_file(rt.settings.policy_file)
        else:
            text = resources.files("leadflow.contracts").joinpath(DEFAULT_POLICY_RESOURCE)
            parsed = parse_policy(text.read_text("utf-8"), "the default policy")
        row = await store.add_version(
            session, number=1, version=parsed.policy.version, text=parsed.text,
            document=parsed.document, state="draft", created_by=audit.actor.get(),
            created_at=rt.clock.now(),
        )  # fmt: skip
        await _publish(rt, session, row, None, audited=False)
