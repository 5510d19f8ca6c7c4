"""What each person's role may see: the scopes it holds (as an API key would) and which leads'
timelines it opens. Pure: roles are plain names, leads are their team's name.

- `viewer`: the reports (the review page, every lead's timeline without rep names or
  deliveries).
- `sales_manager`: the reports, and the timelines of their teams' leads only.
- `marketing_ops`: the reports and the configuration (rep names, deliveries).
- `admin`: everything.
"""

from __future__ import annotations

from typing import Literal, get_args

Role = Literal["viewer", "sales_manager", "marketing_ops", "admin"]
ROLES: tuple[str, ...] = get_args(Role)

SCOPES: dict[str, frozenset[str]] = {
    "viewer": frozenset({"reports:read"}),
    "sales_manager": frozenset({"reports:read"}),
    "marketing_ops": frozenset({"reports:read", "config:read"}),
    "admin": frozenset({"admin"}),
}


def scopes_of(role: str) -> frozenset[str]:
    return SCOPES.get(role, frozenset())


def allows(role: str, scope: str) -> bool:
    held = scopes_of(role)
    return scope in held or "admin" in held


def may_see_lead(role: str, teams: tuple[str, ...], lead_team: str | None) -> bool:
    """A sales manager sees their teams' leads (a lead not routed yet belongs to no team);
    every other role that reads reports sees every lead's timeline."""
    if role == "sales_manager":
        return lead_team is not None and lead_team in teams
    return allows(role, "reports:read")


def role_from_claims(
    claims: dict,
    *,
    role_claim: str | None,
    groups_claim: str,
    group_roles: dict[str, str],
    default: str | None,
) -> str | None:
    """The role an identity provider's claims give: the role claim if it names a role, else
    the most powerful role any of the person's groups maps to, else `default` (None: refused)."""
    if role_claim:
        named = claims.get(role_claim)
        if isinstance(named, str) and named in ROLES:
            return named
    groups = claims.get(groups_claim) or []
    if isinstance(groups, str):
        groups = [groups]
    mapped = [group_roles[g] for g in groups if isinstance(g, str) and g in group_roles]
    mapped = [r for r in mapped if r in ROLES]
    if mapped:
        return max(mapped, key=ROLES.index)  # ROLES runs from least to most powerful
    return default if default in ROLES else None


# The console (`/console`): who changes what. Marketing ops and admins change the configuration
# and the policy (the console makes the change with feedback's pages key, for them); a sales
# manager reads their teams' reps and worklists and may mark their reps out of office.
CONFIGURES: frozenset[str] = frozenset({"marketing_ops", "admin"})


def may_configure(role: str) -> bool:
    return role in CONFIGURES


def may_see_team(role: str, teams: tuple[str, ...], team: str) -> bool:
    """A sales manager sees their own teams in the console; those who configure see all."""
    if role == "sales_manager":
        return team in teams
    return may_configure(role)


def may_set_away(role: str, teams: tuple[str, ...], rep_team: str) -> bool:
    """Who may mark a rep out of office (and back): those who configure, and the manager of
    the rep's team."""
    return may_configure(role) or (role == "sales_manager" and rep_team in teams)
