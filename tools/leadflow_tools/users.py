"""`leadflow users create|list|disable`: people who sign in to the review pages, from the command
line through feedback's API (`/v1/users`) with an admin key (`--key`, else `$LEADFLOW_API_KEY`,
else the development key). A password is read from standard input (`--password-stdin`) or asked
for at the terminal, never taken as an argument (it would stay in the shell's history)."""

from __future__ import annotations

import argparse
import getpass
import sys

from leadflow_tools.keys import add_feedback_arguments, call_feedback, print_table, read_list

ROLES = ("viewer", "sales_manager", "marketing_ops", "admin")


def add_parser(sub) -> None:
    users = sub.add_parser("users", help="people who sign in to the review pages")
    add_feedback_arguments(users)
    users_sub = users.add_subparsers(dest="users_command", required=True)
    create = users_sub.add_parser("create", help="give a person an account")
    create.add_argument("--email", required=True, help="how the person signs in")
    create.add_argument("--name", required=True, help="the person's name")
    create.add_argument("--role", required=True, choices=ROLES, help="what the person may see")
    create.add_argument(
        "--team", dest="teams", action="append", default=[],
        help="a sales manager's team, by name (repeat for several)",
    )  # fmt: skip
    create.add_argument(
        "--password-stdin", action="store_true",
        help="read the password from standard input (else asked at a terminal; none: the "
        "person signs in with the company's identity provider)",
    )  # fmt: skip
    create.set_defaults(func=_create)
    listing = users_sub.add_parser("list", help="everyone who may sign in, disabled included")
    listing.set_defaults(func=_list)
    disable = users_sub.add_parser("disable", help="stop a person signing in; sessions end")
    disable.add_argument("id", help="the person's id (from `leadflow users list`)")
    disable.set_defaults(func=_disable)


def _password(args: argparse.Namespace) -> str | None:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n") or None
    if not sys.stdin.isatty():
        return None
    first = getpass.getpass("Password (at least 12 characters; empty: none): ")
    if first and getpass.getpass("Again: ") != first:
        raise SystemExit("the two passwords differ")
    return first or None


def _create(args: argparse.Namespace) -> int:
    body = {"email": args.email, "name": args.name, "role": args.role, "teams": args.teams}
    password = _password(args)
    if password:
        body["password"] = password
    made = call_feedback(args, "POST", "/v1/users", body)
    if made is False:
        return 1
    print(f"id:    {made['id']}")
    print(f"email: {made['email']}")
    print(
        f"role:  {made['role']}{' (teams: ' + ', '.join(made['teams']) + ')' if made['teams'] else ''}"
    )
    how = "with the password given" if made["has_password"] else "with the identity provider"
    print(f"Signs in at {args.url.rstrip('/')}/login {how}.")
    return 0


def _list(args: argparse.Namespace) -> int:
    users = read_list(args, "/v1/users")
    if users is False:
        return 1
    print_table(("id", "email", "name", "role", "teams", "disabled_at", "last_signed_in_at"), users)
    return 0


def _disable(args: argparse.Namespace) -> int:
    if call_feedback(args, "PATCH", f"/v1/users/{args.id}", {"disabled": True}) is False:
        return 1
    print(f"disabled {args.id}: they can no longer sign in, and their sessions end")
    return 0
