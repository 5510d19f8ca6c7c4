"""`leadflow keys create|list|rotate|revoke`: API keys issued through feedback's API, from the
command line. Every command needs an admin key (`--key`, else `$LEADFLOW_API_KEY`, else the
development key); a new key is printed once and never again."""

from __future__ import annotations

import argparse
import os
import sys
from urllib.parse import urlencode

import httpx

DEFAULT_URL = "http://127.0.0.1:8005"  # feedback, the service that issues keys


def add_feedback_arguments(parser) -> None:
    """`--url` (feedback) and `--key` (an admin key) of a command that works through feedback."""
    parser.add_argument(
        "--url", default=os.environ.get("LEADFLOW_FEEDBACK_URL", DEFAULT_URL),
        help=f"the feedback service (default: $LEADFLOW_FEEDBACK_URL, else {DEFAULT_URL})",
    )  # fmt: skip
    parser.add_argument(
        "--key", default=os.environ.get("LEADFLOW_API_KEY", "lf_dev_key"),
        help="an admin API key (default: $LEADFLOW_API_KEY, else the development key)",
    )  # fmt: skip


def add_parser(sub) -> None:
    keys = sub.add_parser("keys", help="issue, list, rotate and revoke API keys")
    add_feedback_arguments(keys)
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="issue a key (printed once)")
    create.add_argument("name", help="who or what holds the key")
    create.add_argument(
        "--scope", dest="scopes", action="append", required=True,
        help="a scope of the key (repeat for several): leads:read, reports:read, config:read, "
        "leads:write, sales:write, alerts:write, admin",
    )  # fmt: skip
    create.add_argument("--source", help="the source system whose leads a leads:write key writes")
    create.add_argument("--expires", help="when the key stops working (ISO 8601)")
    create.set_defaults(func=_create)
    listing = keys_sub.add_parser("list", help="the keys issued, revoked ones included")
    listing.set_defaults(func=_list)
    rotate = keys_sub.add_parser("rotate", help="a new key; the old one works for --grace more")
    rotate.add_argument("id", help="the key's id (from `leadflow keys list`)")
    rotate.add_argument(
        "--grace", type=int, default=86_400, help="seconds the old key keeps working (86400)"
    )
    rotate.set_defaults(func=_rotate)
    revoke = keys_sub.add_parser("revoke", help="stop a key in every service within seconds")
    revoke.add_argument("id", help="the key's id (from `leadflow keys list`)")
    revoke.set_defaults(func=_revoke)


def call_feedback(
    args: argparse.Namespace,
    method: str,
    path: str,
    body: dict | None = None,
    *,
    text: str | None = None,
    media_type: str = "application/yaml",
):
    """The answer's JSON (None for 204), for a JSON `body` or a `text` of `media_type`; prints
    what went wrong and returns False otherwise."""
    url = args.url.rstrip("/") + path
    headers = {"Authorization": f"Bearer {args.key}"}
    if text is not None:
        headers["Content-Type"] = media_type
    try:
        response = httpx.request(method, url, json=body, content=text, headers=headers, timeout=30)
    except httpx.HTTPError as exc:
        print(f"cannot reach feedback at {args.url}: {exc}", file=sys.stderr)
        return False
    if response.status_code >= 400:
        try:
            problem = response.json()
        except ValueError:
            problem = {"detail": response.text}
        print(f"refused ({response.status_code}): {problem.get('detail')}", file=sys.stderr)
        for error in problem.get("errors") or []:
            line = f" (line {error['line']})" if error.get("line") else ""
            print(f"  {error.get('field')}: {error.get('message')}{line}", file=sys.stderr)
        return False
    return None if response.status_code == 204 else response.json()


def read_list(args: argparse.Namespace, path: str) -> list[dict] | bool:
    """Every item of one of feedback's lists, page after page (`next_cursor`, the most items a
    page holds); False when a page was refused (what went wrong is printed)."""
    items: list[dict] = []
    query: dict[str, str | int] = {"limit": 500}
    while True:
        page = call_feedback(args, "GET", f"{path}?{urlencode(query)}")
        if page is False:
            return False
        items.extend(page["items"])
        if not page.get("next_cursor"):
            return items
        query["cursor"] = page["next_cursor"]


def print_table(columns: tuple[str, ...], items: list[dict]) -> None:
    """`items` as aligned columns under their names: lists joined by commas, nothing as `-`."""
    rows = [
        [", ".join(v) if isinstance(v := item[c], list) else str(v or "-") for c in columns]
        for item in items
    ]
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row in rows:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))


def _print_new(key: dict) -> None:
    print(f"id:     {key['id']}")
    print(f"name:   {key['name']}")
    print(f"scopes: {', '.join(key['scopes'])}")
    print(f"key:    {key['key']}")
    print("The key is shown this once: store it now. Every service accepts it within seconds.")


def _create(args: argparse.Namespace) -> int:
    body = {"name": args.name, "scopes": args.scopes, "source": args.source}
    if args.expires:
        body["expires_at"] = args.expires
    made = call_feedback(args, "POST", "/v1/keys", body)
    if made is False:
        return 1
    _print_new(made)
    return 0


def _list(args: argparse.Namespace) -> int:
    keys = read_list(args, "/v1/keys")
    if keys is False:
        return 1
    print_table(
        ("id", "name", "scopes", "created_by", "created_at", "expires_at", "revoked_at"), keys
    )
    if not keys:
        print("(no key issued through the API yet; LEADFLOW_API_KEYS are not listed)")
    return 0


def _rotate(args: argparse.Namespace) -> int:
    made = call_feedback(args, "POST", f"/v1/keys/{args.id}/rotate", {"grace_seconds": args.grace})
    if made is False:
        return 1
    _print_new(made)
    print(f"The old key keeps working for {args.grace} s.")
    return 0


def _revoke(args: argparse.Namespace) -> int:
    if call_feedback(args, "DELETE", f"/v1/keys/{args.id}") is False:
        return 1
    print(f"revoked {args.id}: every service refuses it within seconds")
    return 0
