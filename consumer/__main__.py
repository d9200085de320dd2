"""The command line: ``python -m consumer COMMAND``. Parse, dispatch, exit codes.

Exit status: 0 for a succeeded or skipped run, 1 for a failed run or an
unexpected error, 2 for a bad setting, 3 when the database cannot be
reached, 75 when another run holds the lock.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import uuid
from datetime import datetime, timezone

from .db.migrations import migrate
from .errors import ConfigError, ServiceError
from .irt import linking
from .irt.model import MODELS
from .settings import SPECS, Settings, parse_setting
from .telemetry import FitProgress, configure_logging, configure_opentelemetry, shutdown_opentelemetry

log = logging.getLogger("consumer")


def _calibration_flags(parser: argparse.ArgumentParser) -> None:
    """Flags that override the calibration settings; help text comes from the settings table."""
    def flag(name, **kwargs):
        spec = SPECS[name]
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, default=None,
                            help=f"{spec.help} ({spec.env}, default {spec.default})", **kwargs)
    flag("model", metavar="|".join(MODELS))
    flag("lookback_days", metavar="DAYS")
    flag("max_obs", metavar="N")
    flag("min_responses", metavar="N")
    flag("linking_method", metavar="|".join(linking.METHODS))
    flag("em_tolerance", metavar="X")
    flag("em_max_iterations", metavar="N")
    flag("quadrature_points", metavar="N")


def _timestamp(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m consumer",
        description="Event-driven IRT item calibration. Settings come from the environment "
                    "(see README); flags override them.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

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
    calibrate.set_defaults(handler=_calibrate)

    migrate_command = commands.add_parser("migrate", help="apply pending migrations of the service's tables",
                                          description="Create or update the service's own tables; idempotent.")
    migrate_command.set_defaults(handler=_migrate)

    serve = commands.add_parser(
        "serve", help="run the Pub/Sub consumer: calibration-requested in, calibration-completed out",
        description="Pull calibration requests from MIRT_REQUESTS_SUBSCRIPTION in GOOGLE_CLOUD_PROJECT (or the "
                    "emulator at PUBSUB_EMULATOR_HOST), run them one at a time, publish calibration-completed to "
                    "MIRT_COMPLETED_TOPIC, and serve /healthz and /readyz on PORT. Stops cleanly on SIGTERM/SIGINT.")
    serve.set_defaults(handler=_serve)

    publish = commands.add_parser(
        "publish", help="publish a calibration request (and optionally wait for its completed event)",
        description="Publish one calibration-requested event to MIRT_REQUESTS_TOPIC, as Cloud Scheduler does "
                    "weekly. With --wait, print the matching calibration-completed event as JSON and exit 0 when "
                    "the run succeeded or was skipped.")
    for name in ("model", "lookback_days", "max_obs", "linking_method"):
        spec = SPECS[name]
        publish.add_argument(f"--{name.replace('_', '-')}", dest=name, default=None,
                             help=f"override: {spec.help} (default: the consumer's {spec.env})")
    publish.add_argument("--dry-run", action="store_true", help="ask for a run that writes no parameters")
    publish.add_argument("--request-id", help="idempotency key (default: a new id)")
    publish.add_argument("--requested-by", default="cli", help="who asks (default: cli)")
    publish.add_argument("--wait", action="store_true", help="wait for the calibration-completed event and print it")
    publish.add_argument("--timeout", type=float, default=900.0, help="seconds to wait with --wait (default 900)")
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
    tag.set_defaults(handler=_tag_anchors)

    report = commands.add_parser(
        "report", help="write a self-contained HTML report of one calibration run",
        description="Settings and counts, fit statistics, linking constants with standard errors, anchors' "
                    "reference against new parameters, the anchors' test characteristic curves before and after "
                    "linking, parameter and ability distributions, flagged items. Needs the report extra.")
    report.add_argument("run_id", metavar="RUN_ID", help="the run's id (mirt_fit_meta.run_id)")
    report.add_argument("--output", "-o", help="file to write (default: calibration-report-RUN_ID.html)")
    report.set_defaults(handler=_report)

    demo = commands.add_parser(
        "demo", help="simulate a week of answers in the embedded database and calibrate them",
        description="Create the platform tables in an embedded PostgreSQL, fill them with simulated answers "
                    "(known true parameters, anchors on a known old scale), run a calibration and print what "
                    "it found next to the truth. Uses the embedded database even when DATABASE_URL is set.")
    demo.add_argument("--students", type=int, default=4000, help="simulated students (default 4000)")
    demo.add_argument("--items", type=int, default=400, help="items in the bank (default 400)")
    demo.add_argument("--answers", type=int, default=40, help="answers per student (default 40)")
    demo.add_argument("--seed", type=int, default=2026, help="random seed (default 2026)")
    demo.set_defaults(handler=_demo)
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {name: getattr(args, name, None) for name in SPECS}
    return Settings.load().with_overrides("flag", **overrides)


def _engine(settings: Settings):
    from .db.engine import check_connection, create_engine
    engine = create_engine(settings)
    check_connection(engine)
    return engine


def _calibrate(args: argparse.Namespace) -> int:
    from .run import CalibrationRequest, calibrate
    settings = _settings(args)
    configure_opentelemetry()
    engine = _engine(settings)
    migrate(engine)
    progress = FitProgress()
    request = CalibrationRequest(request_id=args.request_id, requested_by=args.requested_by,
                                 dry_run=args.dry_run, as_of=args.as_of)
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
    from .bus.subscriber import CalibrationConsumer
    from .db.engine import check_connection, create_engine
    from .health import HealthServer
    settings = _settings(args)
    settings.require_project()
    configure_opentelemetry()
    engine = create_engine(settings)
    with _google_credentials_explained():
        consumer = CalibrationConsumer(settings, engine)
        consumer.check_subscription()

    def database_ok() -> bool:
        try:
            check_connection(engine)
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
    from .bus.publisher import EventPublisher
    from .bus.waiter import CompletionWaiter
    settings = Settings.load()
    settings.require_project()
    overrides = {name: parse_setting(name, getattr(args, name), source=f"--{name.replace('_', '-')}")
                 for name in ("model", "lookback_days", "max_obs", "linking_method")
                 if getattr(args, name) is not None}
    request_id = args.request_id or f"cli-{uuid.uuid4()}"
    try:
        body = request_body(request_id, args.requested_by, dry_run=args.dry_run, **overrides)
    except InvalidMessage as problem:
        raise ConfigError(str(problem)) from None
    with _google_credentials_explained():
        publisher = EventPublisher(settings)
        waiter = CompletionWaiter(settings) if args.wait else None
    try:
        message_id = publisher.request(body)
        log.info("published calibration request %s as message %s to %s", request_id, message_id,
                 publisher.topic(settings.requests_topic))
        if waiter is None:
            return 0
        event = waiter.wait_for(request_id, args.timeout)
    finally:
        if waiter is not None:
            waiter.close()
    print(json.dumps(event))
    return 0 if event["status"] in ("succeeded", "skipped") else 1


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
    if args.max_candidates < 1 or args.min_responses < 1 or not 0 < args.min_a <= args.max_a or args.max_se <= 0:
        raise ConfigError("tag-anchors needs --max-candidates and --min-responses >= 1, 0 < --min-a <= --max-a, "
                          "and --max-se > 0")
    settings = _settings(args)
    engine = _engine(settings)
    migrate(engine)
    criteria = AnchorCriteria(max_candidates=args.max_candidates, min_responses=args.min_responses,
                              min_a=args.min_a, max_a=args.max_a, max_b_se=args.max_se)
    result = tag_anchors(engine, criteria, dry_run=args.dry_run)
    print(json.dumps(asdict(result)) if args.json else format_table(result))
    return 0


def _report(args: argparse.Namespace) -> int:
    from pathlib import Path
    from .report import load_run, render
    settings = _settings(args)
    engine = _engine(settings)
    migrate(engine)
    record = load_run(engine, args.run_id)
    path = Path(args.output or f"calibration-report-{record.run_id}.html")
    path.write_text(render(record))
    log.info("wrote the report of run %s to %s", record.run_id, path)
    print(path)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo
    return run_demo(students=args.students, items=args.items, answers=args.answers, seed=args.seed)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging("info")
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
        log.error("unexpected failure: %s: %s (set LOG_LEVEL=debug to see the traceback)",
                  type(exc).__name__, exc)
        log.debug("traceback", exc_info=exc)
        return 1


if __name__ == "__main__":
    sys.exit(main())
