"""The command line: ``python -m consumer COMMAND``. Parse, dispatch, exit codes.

Exit status: 0 for a succeeded or skipped run, 1 for a failed run or an
unexpected error, 2 for a bad setting (a scope no question has, and for
``publish --wait`` a request the consumer rejected), 3 when the database
cannot be reached, 75 when another run holds the lock.
"""

from __future__ import annotations

import argparse
import atexit
import json
import logging
import os
import sys
import threading
import uuid
from datetime import datetime, timezone

from .db.migrations import migrate
from .errors import ConfigError, ServiceError
from .irt import linking
from .irt.model import MODELS
from .irt.scoring_names import METHODS
from .settings import SPECS, Settings, parse_setting
from .telemetry import FitProgress, configure_logging, configure_opentelemetry, shutdown_opentelemetry

log = logging.getLogger("consumer")

#: Values shown for the flags that take one of a few (the settings check them, case-insensitively).
_METAVARS = {"model": "|".join(MODELS), "linking_method": "|".join(linking.RUN_METHODS),
             "lookback_days": "DAYS", "max_obs": "N", "min_responses": "N", "em_tolerance": "X",
             "em_max_iterations": "N", "quadrature_points": "N", "scoring": "|".join(METHODS),
             "standard_errors": "exact|approximate"}


class UsageError(SystemExit):
    """A mistake on the command line: the command, what is wrong, where the help is; exit status 2."""

    def __init__(self, prog: str, message: str) -> None:
        super().__init__(2)
        self.line = f"{prog}: {message}; see {prog} --help"


class _Parser(argparse.ArgumentParser):
    """argparse, except that a mistake is one line (logged like every other failure), not a usage text.

    The line names the command whose flags are wrong (``calibrate --bogus``
    is ``calibrate``'s mistake), and an unknown flag is reported as such even
    when no command was given.
    """

    def parse_known_args(self, args=None, namespace=None):
        parsed, extras = super().parse_known_args(args, namespace)
        if extras:
            flags = [e for e in extras if e.startswith("-")]
            self.error(f"unknown flag{'s' if len(flags) > 1 else ''} {' '.join(flags)}" if flags
                       else f"unexpected argument{'s' if len(extras) > 1 else ''} {' '.join(extras)}")
        return parsed, extras

    def error(self, message: str):
        raise UsageError(self.prog, message)


def _calibration_flags(parser: argparse.ArgumentParser) -> None:
    """Flags that override the calibration settings; help text comes from the settings table."""
    for name in ("model", "lookback_days", "max_obs", "min_responses", "linking_method", "scoring", "em_tolerance",
                 "em_max_iterations", "standard_errors", "quadrature_points"):
        spec = SPECS[name]
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, default=None, metavar=_METAVARS[name],
                            help=f"{spec.help}: {spec.allowed} ({spec.env}, default {spec.default})".replace("%", "%%"))


def _scope_flag(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--scope", metavar="NAME",
                        help=f"{what}: a value of the question.meta key MIRT_SCOPE_KEY names (needed when it is set)")


def _demo_database_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--demo", action="store_true",
                        help="use the demo's database (mirt_demo in the embedded PostgreSQL, in MIRT_DATA_DIR) "
                             "instead of DATABASE_URL or INSTANCE_CONNECTION_NAME")


def _timestamp(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r} (for example 2026-11-24T06:00:00+00:00)") \
            from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m consumer",
        description="Event-driven IRT item calibration. Settings come from the environment "
                    "(see README); flags override them.",
    )
    # Not required here: a missing command is reported after an unknown flag would have been.
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    calibrate = commands.add_parser(
        "calibrate", help="run one calibration now, with no broker",
        description="Load the window's answers, fit, link, score and write, once. "
                    "Exit 0 when the run succeeded or was skipped (no observations), non-zero otherwise.")
    _calibration_flags(calibrate)
    calibrate.add_argument("--request-id", help="id recorded with the run (default: none)")
    calibrate.add_argument("--requested-by", default="cli", help="who asked (default: cli)")
    calibrate.add_argument("--dry-run", action="store_true", help="fit and record the run, write no parameters")
    calibrate.add_argument("--as-of", type=_timestamp, metavar="TIME",
                           help="end of the look-back window, ISO 8601 (default: now)")
    calibrate.add_argument("--json", action="store_true", help="print the run's summary as one JSON object")
    calibrate.add_argument("--recalibrate", action="store_true",
                           help="for a scope with a bank: a full free calibration linked onto it, with its impact on "
                                "scores; the bank changes only when someone accepts it (bank accept RUN_ID)")
    _scope_flag(calibrate, "the item bank to calibrate")
    _demo_database_flag(calibrate)
    calibrate.set_defaults(handler=_calibrate)

    migrate_command = commands.add_parser("migrate", help="apply pending migrations of the service's tables",
                                          description="Create or update the service's own tables; idempotent.")
    migrate_command.set_defaults(handler=_migrate)

    serve = commands.add_parser(
        "serve", help="run the Pub/Sub consumer: calibration-requested in, calibration-completed out",
        description="Pull calibration requests from MIRT_REQUESTS_SUBSCRIPTION in GOOGLE_CLOUD_PROJECT (or the "
                    "emulator at PUBSUB_EMULATOR_HOST), run them one at a time, publish calibration-completed to "
                    "MIRT_COMPLETED_TOPIC, and serve /healthz and /readyz on PORT. Stops cleanly on SIGTERM/SIGINT.")
    serve.add_argument("--demo", action="store_true",
                       help="the whole loop on this machine: the bundled local Pub/Sub server (started, or reused), "
                            "its topics and subscriptions as infra/ makes them, and the demo's database")
    serve.set_defaults(handler=_serve)

    publish = commands.add_parser(
        "publish", help="publish a calibration request (and optionally wait for its completed event)",
        description="Publish one calibration-requested event to MIRT_REQUESTS_TOPIC, as Cloud Scheduler does "
                    "weekly. With --wait, print the matching calibration-completed event as JSON (one line per "
                    "scope for a fan-out) and exit 0 when every run succeeded or was skipped.")
    for name in ("model", "lookback_days", "max_obs", "linking_method", "scoring"):
        spec = SPECS[name]
        publish.add_argument(f"--{name.replace('_', '-')}", dest=name, default=None, metavar=_METAVARS[name],
                             help=f"override: {spec.help}: {spec.allowed} (default: the consumer's {spec.env})")
    publish.add_argument("--dry-run", action="store_true", help="ask for a run that writes no parameters")
    publish.add_argument("--recalibrate", action="store_true",
                         help="ask a scope with a bank for a recalibration linked onto it (accepted later by hand)")
    publish.add_argument("--request-id", help="idempotency key (default: a new id)")
    publish.add_argument("--requested-by", default="cli", help="who asks (default: cli)")
    publish.add_argument("--scope", metavar="NAME",
                         help="the item bank to calibrate, or '*' for every scope (the consumer fans it out; "
                              "what no scope means when the consumer has MIRT_SCOPE_KEY set)")
    publish.add_argument("--wait", action="store_true",
                         help="wait for the calibration-completed event (every scope's, for a fan-out) and print it")
    publish.add_argument("--timeout", type=float, default=900.0, metavar="SECONDS",
                         help="seconds to wait with --wait, > 0 (default 900)")
    publish.add_argument("--demo", action="store_true",
                         help="publish to the local Pub/Sub server that serve --demo runs")
    publish.set_defaults(handler=_publish)

    tag = commands.add_parser(
        "tag-anchors", help="tag well-measured items of the latest calibration as anchors",
        description="Pick up to --max-candidates items of the latest succeeded run (enough responses, moderate "
                    "discrimination, small standard errors, difficulties spread over the scale), tag them 'anchor' "
                    "in question.meta and store their parameters in meta->'irt', in one transaction. Existing "
                    "anchors are kept as they are.")
    tag.add_argument("--max-candidates", type=int, default=50, help="most items to tag (default 50)")
    tag.add_argument("--min-responses", type=int, default=200, help="fewest responses (default 200)")
    tag.add_argument("--min-a", type=float, default=0.5, help="lowest discrimination (default 0.5)")
    tag.add_argument("--max-a", type=float, default=2.5, help="highest discrimination (default 2.5)")
    tag.add_argument("--max-se", type=float, default=0.25, help="largest standard error of b (default 0.25)")
    tag.add_argument("--dry-run", action="store_true", help="show the choice, change nothing")
    tag.add_argument("--json", action="store_true", help="print the choice as one JSON object")
    _scope_flag(tag, "the item bank whose latest run the anchors come from, and which they anchor")
    _demo_database_flag(tag)
    tag.set_defaults(handler=_tag_anchors)

    bank = commands.add_parser(
        "bank", help="the item bank that holds a scope's scale: adopt it, accept a recalibration, show it",
        description="A scope with a bank holds its scale week after week: its operational items keep their bank "
                    "parameters, new items are calibrated onto them as pretest items and promoted by documented "
                    "gates, and drifting items are flagged and suspended (see docs/bank.md).")
    bank_commands = bank.add_subparsers(dest="bank_command", metavar="ACTION", parser_class=_Parser, required=True)
    adopt = bank_commands.add_parser("adopt", help="make the scope's current item parameters its bank",
                                     description="Every item of the scope's current parameters (mirt_item_params, "
                                                 "or one run's with --run) becomes an operational bank item.")
    adopt.add_argument("--run", metavar="RUN_ID", help="adopt this run's parameters instead of the current ones")
    accept = bank_commands.add_parser("accept", help="accept a recalibration run into the bank",
                                      description="Replace the operational and suspended items' bank parameters "
                                                  "with those of a recalibration run (calibrate --recalibrate).")
    accept.add_argument("run_id", metavar="RUN_ID", help="the recalibration run's id")
    show = bank_commands.add_parser("show", help="the bank's items by status, drift flags and latest changes")
    show.add_argument("--json", action="store_true", help="print it as one JSON object")
    for action in (adopt, accept, show):
        _scope_flag(action, "the item bank")
        _demo_database_flag(action)
    for action in (adopt, accept):
        action.add_argument("--by", metavar="NAME", default=os.environ.get("USER") or "cli",
                            help="who makes the change, recorded with it (default: $USER)")
    bank.set_defaults(handler=_bank)

    runs = commands.add_parser("runs", help="list the latest calibration runs (to review, accept or compare)",
                               description="The latest runs, newest first: when, scope, status, mode (linked, "
                                           "bank, recalibration), what each reported, and its id.")
    runs.add_argument("--limit", type=int, default=20, metavar="N", help="how many, at least 1 (default 20)")
    runs.add_argument("--status", choices=["running", "succeeded", "skipped", "failed", "abandoned"],
                      help="only runs that ended so")
    runs.add_argument("--since", type=_timestamp, metavar="TIME",
                      help="only runs started at or after this time, ISO 8601 (e.g. 2026-11-01)")
    runs.add_argument("--json", action="store_true", help="print them as one JSON array")
    runs.add_argument("--scope", metavar="NAME", help="only this scope's runs (default: every scope)")
    _demo_database_flag(runs)
    runs.set_defaults(handler=_runs)

    report = commands.add_parser(
        "report", help="write the review page of one calibration run (one self-contained HTML file)",
        description="What a psychometrician checks before accepting a calibration: the run's metadata, the fit "
                    "(convergence, items held back or on bounds, misfit with its observed proportions), the link "
                    "(constants with standard errors, the anchors' drift statistics and curves), test information, "
                    "reliability and the Wright map, the changes since the previous run of the same scope, and a "
                    "sortable, filterable table of every item with a CSV download. Opens offline.")
    report.add_argument("run_id", metavar="RUN_ID", nargs="?",
                        help="the run's id, or an unambiguous start of it (python -m consumer runs lists them)")
    report.add_argument("--latest", action="store_true", help="the latest run (of --scope when given) instead")
    report.add_argument("--scope", metavar="NAME", help="with --latest: the latest run of this scope")
    report.add_argument("--output", "-o", metavar="FILE",
                        help="file to write (default: calibration-report-RUN_ID.html)")
    _demo_database_flag(report)
    report.set_defaults(handler=_report)

    export = commands.add_parser(
        "export", help="write a scope's item bank for an adaptive test (CSV or JSON)",
        description="The scope's operational and pretest items (marked) with a, b, c on the logistic metric (D = 1), "
                    "their standard errors, answers, status, the run that set them and the scale they are on: the "
                    "adopted bank, or without one the current item parameters (the file says which). The format is "
                    "in docs/interfaces.md.")
    export.add_argument("--format", choices=("csv", "json"), default="json", help="csv or json (default json)")
    export.add_argument("--output", "-o", metavar="FILE", help="file to write (default: standard output)")
    _scope_flag(export, "the item bank to export")
    _demo_database_flag(export)
    export.set_defaults(handler=_export)

    demo = commands.add_parser(
        "demo", help="simulate a week of answers in the embedded database and calibrate them",
        description="Create the platform tables in an embedded PostgreSQL, fill them with simulated answers "
                    "(known true parameters, anchors on a known old scale), run a calibration and print what "
                    "it found next to the truth. Run again, it adds the next week (new students, later answers) "
                    "and its run to the ones before; --fresh starts over. Uses the embedded database even when "
                    "DATABASE_URL is set.")
    demo.add_argument("--students", type=int, default=4000, metavar="N", help="simulated students (default 4000)")
    demo.add_argument("--items", type=int, default=400, metavar="N",
                      help="items in the bank, at least 60: every tenth is an anchor (default 400)")
    demo.add_argument("--answers", type=int, default=40, metavar="N",
                      help="answers per student, at most --items (default 40)")
    demo.add_argument("--seed", type=int, default=2026, metavar="N", help="random seed, >= 0 (default 2026)")
    demo.add_argument("--fresh", action="store_true",
                      help="start over: drop the demo's database and its runs (by default each demo keeps them and "
                           "adds the next week's answers and run)")
    demo.set_defaults(handler=_demo)
    parser.set_defaults(command_names=list(commands.choices))
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {name: getattr(args, name, None) for name in SPECS}
    return Settings.load().with_overrides("flag", **overrides)


def _engine(settings: Settings, args: argparse.Namespace | None = None):
    from .db.engine import check_connection, create_engine
    demo = None
    if args is not None and getattr(args, "demo", False):
        from .db.embedded import DEMO_DATABASE
        demo = DEMO_DATABASE
    engine = create_engine(settings, embedded_database=demo)
    check_connection(engine)
    return engine


def _migrate_the_platforms_database(engine, only_questions: bool = False) -> None:
    """Apply the service's migrations, but never to a database that is not the platform's.

    A database that has none of the service's tables yet gets them only if it
    holds the platform's ``attempt`` and ``question`` (``question`` alone for
    ``only_questions``): a wrong DATABASE_URL stops here, having created
    nothing there.
    """
    import sqlalchemy as sa
    from .db import platform
    from .db.engine import describe, is_embedded, unavailable
    from .db.migrations import ever_migrated
    from .errors import PlatformSchemaError
    try:
        with engine.connect() as conn:
            if not ever_migrated(conn):
                if not only_questions:
                    platform.check_platform_schema(conn)
                elif not platform.has_table(conn, "question"):
                    raise PlatformSchemaError("the platform's tables are not as expected: table (or view) question "
                                              "is missing", "check that DATABASE_URL points at the platform's "
                                              "database; tag-anchors tags rows of question(id, meta)")
    except PlatformSchemaError as problem:
        hint = problem.hint + ("; the demo's data are used with --demo" if is_embedded(engine) else "")
        raise ConfigError(f"{problem.message} in {describe(engine)}; nothing was created there", hint) from None
    except sa.exc.DBAPIError as exc:
        raise unavailable(engine, exc) from exc
    migrate(engine)


def _calibrate(args: argparse.Namespace) -> int:
    from .calibration import CalibrationRequest
    from .warmup import KernelImport
    # The kernels loaded from numba's cache, then what the run imports besides them (the linking step's
    # scipy.optimize, which linking imports only when it runs), while this thread reaches and checks the
    # database; one thread imports them all, so that no two imports of one module meet.
    kernels = KernelImport(then=("scipy.optimize", "consumer.run"))
    settings = _settings(args)
    configure_opentelemetry()
    engine = _engine(settings, args)
    _migrate_the_platforms_database(engine)
    kernels.wait()
    from .run import calibrate
    progress = FitProgress()
    request = CalibrationRequest(request_id=args.request_id, requested_by=args.requested_by,
                                 dry_run=args.dry_run, as_of=args.as_of, scope=args.scope,
                                 mode="recalibration" if args.recalibrate else None)
    try:
        summary = calibrate(engine, settings, request, progress=progress)
    finally:
        progress.close()
        shutdown_opentelemetry()
    if args.json:
        print(json.dumps(summary.as_dict(), default=str))
    return 0 if summary.ok else 1


def _migrate(args: argparse.Namespace) -> int:
    settings = _settings(args)
    engine = _engine(settings)
    migrate(engine)
    log.info("the service's tables are up to date")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from .bus.publisher import require_reachable
    from .db.embedded import DEMO_DATABASE
    from .db.engine import READINESS_TIMEOUT_SECONDS, check_connection, create_engine
    from .errors import DatabaseUnavailable
    from .health import HealthServer
    from .warmup import load_kernels
    settings = _settings(args)
    if args.demo:
        from .bus.local_demo import serving
        settings = serving(settings)
    settings.require_project()
    configure_opentelemetry()
    engine = create_engine(settings, embedded_database=DEMO_DATABASE if args.demo else None)
    try:  # a refused login is a setting to fix (exit 2); an outage is waited out, /readyz answering 503
        check_connection(engine)
    except DatabaseUnavailable as problem:
        log.warning("%s; serving anyway: requests wait in the subscription until it answers", problem)
    with _google_credentials_explained():
        require_reachable()
        load_kernels()
        from .bus.subscriber import CalibrationConsumer  # (its runs import the kernels)
        consumer = CalibrationConsumer(settings, engine)
        consumer.check_subscription()

    def database_ok() -> bool:
        try:
            check_connection(engine, timeout=READINESS_TIMEOUT_SECONDS)
            return True
        except ServiceError:
            return False

    health = HealthServer(settings.health_port, consumer.alive,
                          {"database": database_ok, "subscription": consumer.subscription_reachable})
    health.start()
    consumer.install_signal_handlers()
    try:
        consumer.serve()
    finally:
        health.stop()
        shutdown_opentelemetry()
    return 0


def _publish(args: argparse.Namespace) -> int:
    from .bus.events import InvalidMessage, request_body
    from .bus.publisher import EventPublisher, pubsub_failure, require_reachable
    from .bus.waiter import CompletionWaiter
    settings = Settings.load()
    if args.demo:
        from .bus.local_demo import publishing
        settings = publishing(settings)
    settings.require_project()
    overrides = {name: parse_setting(name, getattr(args, name), source=f"--{name.replace('_', '-')}")
                 for name in ("model", "lookback_days", "max_obs", "linking_method", "scoring")
                 if getattr(args, name) is not None}
    if not args.timeout > 0:
        raise ConfigError(f"--timeout must be a number of seconds > 0, got {args.timeout:g}")
    request_id = args.request_id or f"cli-{uuid.uuid4()}"
    try:
        body = request_body(request_id, args.requested_by, scope=args.scope, dry_run=args.dry_run,
                            mode="recalibration" if args.recalibrate else None, **overrides)
    except InvalidMessage as problem:
        raise ConfigError(str(problem)) from None
    waiter = None
    with _google_credentials_explained(), pubsub_failure():
        require_reachable()
        publisher = EventPublisher(settings)
        waiter = CompletionWaiter(settings) if args.wait else None
        message_id = None
        try:
            message_id = publisher.request(body, timeout=30.0)
        finally:
            if message_id is None and waiter is not None:
                waiter.close()
    log.info("published calibration request %s as message %s to %s", request_id, message_id,
             publisher.topic(settings.requests_topic))
    if waiter is None:
        return 0
    try:
        answers = waiter.wait_for(request_id, args.timeout)
    finally:
        waiter.close()
    for event in answers:
        print(json.dumps(event))
    for event in answers:
        scope = f" (scope {event['scope']})" if event.get("scope") else ""
        if event.get("rejected"):
            log.error("request %s%s was rejected by the consumer, and nothing was run: %s", event["request_id"],
                      scope, event["error"])
        elif event["status"] == "failed":
            log.error("request %s%s: run %s failed: %s", event["request_id"], scope, event["run_id"], event["error"])
    if any(event.get("rejected") for event in answers):
        return ConfigError.exit_code  # a request the consumer cannot run as it stands: something to fix, not retry
    return 0 if all(event["status"] in ("succeeded", "skipped") for event in answers) else 1


class _google_credentials_explained:
    """Turn a missing Google credential into one clear line."""

    def __enter__(self):
        return self

    def __exit__(self, kind, value, tb):
        from google.auth.exceptions import DefaultCredentialsError
        if isinstance(value, DefaultCredentialsError):
            raise ConfigError("no Google Cloud credentials found",
                              "run on GCP with a service account, set GOOGLE_APPLICATION_CREDENTIALS, "
                              "or set PUBSUB_EMULATOR_HOST for a local emulator") from None
        return False


def _tag_anchors(args: argparse.Namespace) -> int:
    from dataclasses import asdict
    from .anchors import AnchorCriteria
    from .tagging import format_table, tag_anchors
    problems = [f"{flag} must be at least 1, got {value}"
                for flag, value in (("--max-candidates", args.max_candidates), ("--min-responses", args.min_responses))
                if value < 1]
    problems += [f"{flag} must be > 0, got {value:g}" for flag, value in (("--min-a", args.min_a),
                                                                          ("--max-se", args.max_se)) if not value > 0]
    if not args.max_a >= args.min_a:
        problems.append(f"--max-a must be at least --min-a ({args.min_a:g}), got {args.max_a:g}")
    if problems:
        raise ConfigError("; ".join(problems))
    settings = _settings(args)
    engine = _engine(settings, args)
    _migrate_the_platforms_database(engine, only_questions=True)
    criteria = AnchorCriteria(max_candidates=args.max_candidates, min_responses=args.min_responses,
                              min_a=args.min_a, max_a=args.max_a, max_b_se=args.max_se)
    from .scope import resolve
    result = tag_anchors(engine, criteria, resolve(settings.scope_key, args.scope), dry_run=args.dry_run)
    print(json.dumps(asdict(result)) if args.json else format_table(result))
    return 0


def _bank(args: argparse.Namespace) -> int:
    from dataclasses import asdict
    from . import bank_admin
    from .scope import resolve
    settings = _settings(args)
    engine = _engine(settings, args)
    _migrate_the_platforms_database(engine, only_questions=True)
    scope = resolve(settings.scope_key, args.scope)
    if args.bank_command == "adopt":
        change = bank_admin.adopt(engine, scope, args.by, run_id=args.run)
    elif args.bank_command == "accept":
        change = bank_admin.accept(engine, scope, args.run_id, args.by)
    else:
        shown = bank_admin.show(engine, scope)
        print(json.dumps(shown, default=str) if args.json else bank_admin.format_show(shown))
        return 0
    print(json.dumps(asdict(change)))
    return 0


def _runs(args: argparse.Namespace) -> int:
    from .runs import format_runs, latest_runs
    from .scope import resolve
    if args.limit < 1:
        raise ConfigError(f"--limit must be at least 1, got {args.limit}")
    settings = _settings(args)
    engine = _engine(settings, args)
    _migrate_the_platforms_database(engine, only_questions=True)
    scope = resolve(settings.scope_key, args.scope) if args.scope else None
    found = latest_runs(engine, scope, args.limit, args.status, args.since)
    filters = [f"of scope {scope.name!r}" if scope else "", f"that ended {args.status}" if args.status else "",
               f"started since {args.since.isoformat()}" if args.since else ""]
    print(json.dumps(found) if args.json else format_runs(found, " ".join(f for f in filters if f)))
    return 0


def _report(args: argparse.Namespace) -> int:
    from .review import find_run, load_review, render, writable_output
    from .scope import resolve
    if (args.run_id is None) == (not args.latest):
        raise ConfigError("report takes a RUN_ID or --latest, one of the two")
    settings = _settings(args)
    path = writable_output(args.output) if args.output else None  # a path that cannot be written fails first
    engine = _engine(settings, args)
    scope = resolve(settings.scope_key, args.scope).name if args.scope else None
    run_id = find_run(engine, None if args.latest else args.run_id, scope=scope)
    path = path or writable_output(f"calibration-report-{run_id}.html")
    review = load_review(engine, run_id)  # reads only: a database without runs is not given the service's tables
    path.write_text(render(review), encoding="utf-8")
    log.info("wrote the review of run %s to %s", review.run.run_id, path.resolve())
    print(path.resolve())
    return 0


def _export(args: argparse.Namespace) -> int:
    from .export import FORMATS, export_bank
    from .review import writable_output
    from .scope import resolve
    settings = _settings(args)
    path = writable_output(args.output) if args.output else None  # a path that cannot be written fails first
    engine = _engine(settings, args)
    _migrate_the_platforms_database(engine, only_questions=True)
    bank = export_bank(engine, resolve(settings.scope_key, args.scope))
    text = FORMATS[args.format](bank)
    if path is None:
        sys.stdout.write(text)
        return 0
    path.write_text(text, encoding="utf-8")
    log.info("wrote %d items (%d operational, %d pretest) from %s to %s", bank.meta["n_items"],
             bank.meta["operational"], bank.meta["pretest"], bank.meta["source"], path.resolve())
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo
    return run_demo(students=args.students, items=args.items, answers=args.answers, seed=args.seed,
                    fresh=args.fresh)


def _initial_log_format() -> str:
    """LOG_FORMAT before the settings are read (a bad value is reported once they are)."""
    value = os.environ.get("LOG_FORMAT", "auto").strip().lower()
    return value if value in ("auto", "json", "text") else "auto"


def main(argv: list[str] | None = None) -> int:
    configure_logging("info", _initial_log_format())
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            parser.error(f"a COMMAND is needed: one of {', '.join(args.command_names)}")
    except UsageError as mistake:
        log.error("%s", mistake.line)
        return 2
    try:
        settings = Settings.load()
        configure_logging(settings.log_level, settings.log_format, secrets=settings.secrets(),
                          project=settings.project)
        return args.handler(args)
    except ServiceError as problem:
        log.error("%s", problem)
        return problem.exit_code
    except KeyboardInterrupt:
        log.error("interrupted")
        return 130
    except Exception as exc:  # one line for the person on call; the traceback only on request
        if log.isEnabledFor(logging.DEBUG):
            log.error("unexpected failure: %s: %s (the traceback follows)", type(exc).__name__, exc)
        else:
            log.error("unexpected failure: %s: %s (set LOG_LEVEL=debug to see the traceback)",
                      type(exc).__name__, exc)
        log.debug("traceback", exc_info=exc)
        return 1


def _exit(code: int) -> None:
    """End the process as the interpreter would, less its teardown of every module and object.

    Python's own exit frees every object one by one, numba's compiled
    kernels among them: 0.3-0.5 s after a run has finished and said so.
    What that exit does first is done here the same way (the threads'
    exit hooks, which stop the kernels' thread pool, and joining the other
    threads; the atexit callbacks, which stop an embedded server; logging's
    and the standard streams' flush), then the process ends.
    """
    shutdown = getattr(threading, "_shutdown", None)  # what Py_FinalizeEx calls first (CPython 3.9+)
    if shutdown is not None:
        shutdown()
    atexit._run_exitfuncs()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


if __name__ == "__main__":
    _exit(main())
