"""`leadflow policy versions|show|push|diff|publish|rollback`: the policy's versions kept by
feedback, from the command line. Reading needs a key with `config:read`, changing one with
`admin` (`--key`, else `$LEADFLOW_API_KEY`, else the development key)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from leadflow_tools.keys import add_feedback_arguments, call_feedback, print_table, read_list


def add_commands(policy_sub) -> None:
    """The subcommands of `leadflow policy` that work through feedback."""
    versions = policy_sub.add_parser("versions", help="the policy's versions and their states")
    versions.set_defaults(func=_versions)
    show = policy_sub.add_parser("show", help="print a version's text (default: the current)")
    show.add_argument("number", nargs="?", type=int, help="the version's number")
    show.set_defaults(func=_show)
    push = policy_sub.add_parser("push", help="keep a policy file as a new draft version")
    push.add_argument("file", help="the policy (YAML or JSON)")
    push.set_defaults(func=_push)
    diff = policy_sub.add_parser("diff", help="what changed from one version to another")
    diff.add_argument("before", type=int, help="the first version's number")
    diff.add_argument("after", type=int, help="the second version's number")
    diff.set_defaults(func=_diff)
    publish = policy_sub.add_parser(
        "publish", help="make a version the current policy (an older one: a rollback)"
    )
    publish.add_argument("number", type=int, help="the version's number")
    publish.set_defaults(func=_publish)
    rollback = policy_sub.add_parser(
        "rollback", help="publish again the version current before the current one"
    )
    rollback.set_defaults(func=_rollback)
    for command in (versions, show, push, diff, publish, rollback):
        add_feedback_arguments(command)


def _versions(args: argparse.Namespace) -> int:
    versions = read_list(args, "/v1/policy/versions")
    if versions is False:
        return 1
    print_table(
        ("number", "version", "state", "created_by", "created_at", "published_at"), versions
    )
    return 0


def _show(args: argparse.Namespace) -> int:
    path = "/v1/policy" if args.number is None else f"/v1/policy/versions/{args.number}"
    version = call_feedback(args, "GET", path)
    if version is False:
        return 1
    sys.stdout.write(version["text"])
    return 0


def _push(args: argparse.Namespace) -> int:
    try:
        text = Path(args.file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"{args.file}: cannot read it: {exc}", file=sys.stderr)
        return 1
    media_type = "application/json" if args.file.endswith(".json") else "application/yaml"
    made = call_feedback(args, "POST", "/v1/policy/versions", text=text, media_type=media_type)
    if made is False:
        return 1
    print(f"version {made['number']} ({made['version']}) kept as a draft")
    print(f"compare it: leadflow policy diff <current> {made['number']}")
    print(f"publish it: leadflow policy publish {made['number']}")
    return 0


def _diff(args: argparse.Namespace) -> int:
    diff = call_feedback(args, "GET", f"/v1/policy/versions/{args.before}/diff/{args.after}")
    if diff is False:
        return 1
    sys.stdout.write(diff["text"])
    if diff["changes"]:
        print(f"\n{len(diff['changes'])} value(s) changed:")
        for change in diff["changes"]:
            print(f"  {change['path']}: {change['before']!r} -> {change['after']!r}")
    else:
        print("the two versions decide alike")
    return 0


def _published(version: dict) -> None:
    print(
        f"version {version['number']} ({version['version']}) is the current policy "
        f"(publication {version['publication']}); every service applies it within seconds"
    )


def _publish(args: argparse.Namespace) -> int:
    version = call_feedback(args, "POST", f"/v1/policy/versions/{args.number}/publish")
    if version is False:
        return 1
    _published(version)
    return 0


def _rollback(args: argparse.Namespace) -> int:
    version = call_feedback(args, "POST", "/v1/policy/rollback")
    if version is False:
        return 1
    _published(version)
    return 0
