"""Which identities (email, external id) a lead gains when an input names it or when another lead
of the same person is merged into it."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Identities:
    """What a lead gains: an external id of its own (when it had none) and aliases, (kind,
    value) pairs under which it is found as well."""

    external_id: str | None = None
    aliases: list[tuple[str, str]] = field(default_factory=list)


def merged_identities(
    survivor_external_id: str | None, other_email: str, other_external_id: str | None
) -> Identities:
    """The identities of a lead folded into the survivor: its email always as an alias; its
    external id becomes the survivor's own when the survivor has none, an alias otherwise."""
    aliases = [("email", other_email)]
    if other_external_id and survivor_external_id is not None:
        aliases.append(("external_id", other_external_id))
    own = other_external_id if other_external_id and survivor_external_id is None else None
    return Identities(external_id=own, aliases=aliases)


def new_identities(
    lead_external_id: str | None,
    email: str,
    external_id: str | None,
    *,
    known_by_email: bool,
    known_by_external_id: bool,
) -> Identities:
    """What an input teaches about a lead it updates: an external id the lead was not known by
    (its own when it had none, an alias otherwise), and an email it was not known by (an
    alias: a lead known by its external id under another address keeps both addresses)."""
    own = None
    aliases: list[tuple[str, str]] = []
    if external_id and not known_by_external_id:
        if lead_external_id is None:
            own = external_id
        else:
            aliases.append(("external_id", external_id))
    if not known_by_email:
        aliases.append(("email", email))
    return Identities(external_id=own, aliases=aliases)
