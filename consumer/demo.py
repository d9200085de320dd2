"""``python -m consumer demo``: the whole loop on simulated answers, printed next to the truth.

The first demo makes the ``mirt_demo`` database in the embedded PostgreSQL,
creates the platform's tables there, fills them with a simulated week of
answers (known item parameters and abilities; some retakes, which must not
count, and some answers older than the look-back window, which must be
ignored), and tags anchors whose reference parameters sit on a known old
scale (one of them malformed, which must be skipped). Each later demo keeps
all that and the runs before it, and adds the next week: new students (the
population a little abler each week) answering the same bank after every
answer already there, so that its run is the scope's next run, compared on
the review page with the one before it. The weeks are noted in the demo's
own table ``demo_week``; ``--fresh`` starts over. Then it starts the local Pub/Sub
server, runs the consumer, publishes a calibration request, waits for the
calibration-completed event and prints it; reads the results back from the
database; and compares them with the truth. When the local Pub/Sub server
cannot be had (it is downloaded once), the run is started directly instead,
as ``calibrate`` does, and the demo says so. It ends with the command that
writes the run's review page (``report RUN_ID --demo``), with absolute paths.

The first demo after an install compiles the numerical kernels (see
``consumer.warmup``): in a background thread started first thing, while the
embedded PostgreSQL starts (in another) and the answers are simulated and
loaded; the run waits for them, the log saying so every few seconds, and
then takes about a second.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import os
import shlex
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import sqlalchemy as sa

from .db import platform, queries
from .db.embedded import DEMO_DATABASE, recreate_database
from .db.engine import embedded_engine
from .db.migrations import migrate
from .irt.simulate import simulate
from .calibration import CalibrationRequest, RunSummary
from .errors import ConfigError, ServiceError
from .settings import Settings
from .telemetry import FitProgress
from .warmup import KernelImport

log = logging.getLogger("consumer.demo")

#: The old scale the anchors' reference parameters sit on: theta_old = SLOPE * theta + INTERCEPT.
OLD_SCALE = (1.2, 0.35)
FIRST_QUESTION_ID = 1001
#: How much abler each week's new students are than the week before's, on the base scale (theta ~ N(0, 1) in week 1).
WEEKLY_GROWTH = 0.1
#: The demo's note of the weeks it simulated (not a platform or service table: the demo's database only).
WEEKS_DDL = ("CREATE TABLE demo_week (week integer PRIMARY KEY, students integer NOT NULL, items integer NOT NULL, "
             "answers integer NOT NULL, seed integer NOT NULL, first_student integer NOT NULL, "
             "answered_until timestamptz NOT NULL, added_at timestamptz NOT NULL DEFAULT now())")


def check_options(students: int, items: int, answers: int, seed: int, settings: Settings | None = None) -> None:
    """A ``ConfigError`` naming the flag when the demo cannot work with these numbers."""
    settings = settings or Settings.load()
    fewest_items = 10 * (settings.min_anchors + 1)  # every tenth an anchor, one of them broken
    problems = []
    if students < 1:
        problems.append(f"--students must be at least 1, got {students}")
    if items < fewest_items:
        problems.append(f"--items must be at least {fewest_items} (every tenth item is an anchor, one of them "
                        f"deliberately broken, and a run links on MIRT_MIN_ANCHORS={settings.min_anchors}), "
                        f"got {items}")
    if not 1 <= answers <= max(items, 1):
        problems.append(f"--answers must lie between 1 and --items ({items}): each student answers distinct "
                        f"items, got {answers}")
    if seed < 0:
        problems.append(f"--seed must be >= 0, got {seed}")
    if not problems and students * answers < settings.min_responses * items:
        problems.append(f"--students x --answers ({students} x {answers}) must be at least MIRT_MIN_RESPONSES x "
                        f"--items ({settings.min_responses} x {items}) for the average item to be estimated")
    if problems:
        raise ConfigError("; ".join(problems))


@dataclass(frozen=True)
class Week:
    """One simulated week of the demo's history: its number, its students' ids from ``first_student`` on."""

    number: int
    first_student: int
    #: The earlier weeks' last answer (None for the first week): this week's answers all come after it.
    after: datetime | None


def run_demo(students: int = 4000, items: int = 400, answers: int = 40, seed: int = 2026, fresh: bool = False) -> int:
    """The demo: the first week of its history, or the next one (``fresh``: start over)."""
    # The demo's bank is one scale: a MIRT_SCOPE_KEY meant for the platform's bank does not apply to it.
    settings = Settings.load().with_overrides("demo", scope_key="")
    check_options(students, items, answers, seed, settings)
    # The first run after an install compiles the numerical kernels: in the background, while the
    # database starts and fills, so that the calibration finds them compiled.
    kernels = KernelImport()
    # Meanwhile the database starts (a thread: the server is another process) while this one simulates.
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="database") as background:
        database = background.submit(_demo_database, settings, fresh)
        return _demo(settings, kernels, database, students, items, answers, seed)


def _demo(settings: Settings, kernels: KernelImport, database: concurrent.futures.Future, students: int,
          items: int, answers: int, seed: int) -> int:
    now = datetime.now(timezone.utc)
    engine = database.result()
    week = _next_week(engine, items, seed)
    log.info("demo: simulating week %d of answers: %d students, %d answers each, %d questions", week.number,
             students, answers, items)
    truth = _simulate_week(week, students, items, answers, seed)
    rng = np.random.default_rng([seed + 1, week.number - 1]) if week.number > 1 else np.random.default_rng(seed + 1)
    slope, intercept = OLD_SCALE
    question_ids = FIRST_QUESTION_ID + np.arange(items)
    student_ids = np.array([f"student-{week.first_student + i:06d}" for i in range(students)])
    anchor_positions = np.arange(0, items, 10)
    attempts = _attempts(truth, rng, now, week.after)

    with engine.begin() as conn:
        if week.number == 1:
            platform.create_platform_tables(conn)
            platform.insert_questions(conn, question_ids, _question_meta(truth, anchor_positions, OLD_SCALE))
            conn.exec_driver_sql("DROP TABLE IF EXISTS demo_week")
            conn.exec_driver_sql(WEEKS_DDL)
        platform.insert_attempts(conn, student_ids[attempts[0]], question_ids[attempts[1]], attempts[2],
                                 attempts[3])
        conn.execute(sa.text("INSERT INTO demo_week (week, students, items, answers, seed, first_student, "
                             "answered_until) VALUES (:week, :students, :items, :answers, :seed, :first, :until)"),
                     {"week": week.number, "students": students, "items": items, "answers": answers, "seed": seed,
                      "first": week.first_student, "until": _latest(attempts[3])})
    if week.number == 1:
        log.info("demo: %d students answered %d each of %d questions over the last week (%d attempts with "
                 "retakes and old answers); %d anchors on an old scale with slope %.2f, intercept %.2f",
                 students, answers, items, attempts[0].size, anchor_positions.size, slope, intercept)
    else:
        log.info("demo: week %d: %d new students (theta ~ N(%.1f, 1) on the base scale) answered %d each of the "
                 "same %d questions after every earlier answer (%d attempts with retakes and old answers), added to "
                 "the %d students of the weeks before; the anchors are as the first week tagged them", week.number,
                 students, WEEKLY_GROWTH * (week.number - 1), answers, items, attempts[0].size, week.first_student)

    migrate(engine)
    kernels.wait()
    from .run import calibrate  # (it imports the kernels: only now are they ready)
    request_id = f"demo-{seed}-week-{week.number}"
    try:
        summary = _through_pubsub(engine, settings, request_id)
    except ServiceError as problem:
        log.warning("demo: the local Pub/Sub server is not available (%s); running the calibration directly", problem)
        progress = FitProgress()
        try:
            summary = calibrate(engine, settings, CalibrationRequest(request_id=request_id, requested_by="demo",
                                                                     as_of=now), progress=progress)
        finally:
            progress.close()
    if not summary.ok:
        return 1
    _print_comparison(engine, summary, truth, question_ids, student_ids, _population(engine))
    _print_next_steps(engine, summary, week)
    return 0


def _demo_prefix() -> str:
    """``MIRT_DATA_DIR=/absolute/path `` when it is set, so that a printed command works from any directory."""
    data_dir = os.environ.get("MIRT_DATA_DIR", "").strip()
    return f"MIRT_DATA_DIR={shlex.quote(str(Path(data_dir).expanduser().resolve()))} " if data_dir else ""


def report_command(run_id: str, directory: Path | None = None) -> str:
    """The command that writes the report of a demo run, as the user can paste it: its output an absolute path
    (in ``directory``, default the current one), named after the run so that each week's page is kept."""
    output = (directory or Path.cwd()).resolve() / f"demo-report-{run_id[:8]}.html"
    return f"{_demo_prefix()}python -m consumer report {run_id} --demo -o {shlex.quote(str(output))}"


def _print_next_steps(engine: sa.Engine, summary: RunSummary, week: Week) -> None:
    lines = ["", "The run's review page (one HTML file that opens offline):", f"  {report_command(summary.run_id)}"]
    with engine.connect() as conn:
        runs = conn.execute(sa.text("SELECT count(*) FROM mirt_fit_meta")).scalar()
    if week.number == 1:
        lines += ["", "Run the demo again for the next week: it adds new students' answers and a run, and keeps "
                      "this one (--fresh starts over).",
                  f"  {_demo_prefix()}python -m consumer demo"]
    else:
        lines += ["", f"Week {week.number} of the demo's history; its page compares this run with the previous one "
                      f"(\"Since the previous run\"). The {runs} runs of the demo's database, newest first:",
                  f"  {_demo_prefix()}python -m consumer runs --demo"]
    print("\n".join(lines))


def _through_pubsub(engine: sa.Engine, settings: Settings, request_id: str) -> RunSummary:
    """Start the local Pub/Sub server and the consumer, publish a request, print its completed event."""
    import platformdirs
    from .bus import local_server
    server = local_server.start(Path(platformdirs.user_cache_dir("irt-calibration")))
    previous_host = os.environ.get("PUBSUB_EMULATOR_HOST")
    os.environ["PUBSUB_EMULATOR_HOST"] = server.host
    try:
        from google.cloud import pubsub_v1
        from .bus.events import request_body
        from .bus.publisher import EventPublisher
        from .bus.subscriber import CalibrationConsumer
        from .bus.waiter import CompletionWaiter
        settings = settings.with_overrides("demo", project="demo-project")
        publisher = EventPublisher(settings)
        subscriber = pubsub_v1.SubscriberClient()
        for topic in (settings.requests_topic, settings.completed_topic):
            publisher.client.create_topic(name=publisher.topic(topic))
        subscriber.create_subscription(request={
            "name": subscriber.subscription_path(settings.project, settings.requests_subscription),
            "topic": publisher.topic(settings.requests_topic)})
        consumer = CalibrationConsumer(settings, engine, subscriber=subscriber, publisher=publisher)
        thread = threading.Thread(target=consumer.serve, name="consumer", daemon=True)
        thread.start()
        waiter = CompletionWaiter(settings)
        try:
            publisher.request(request_body(request_id, "demo"))
            log.info("demo: published calibration request %s to %s; waiting for calibration-completed",
                     request_id, settings.requests_topic)
            [event] = waiter.wait_for(request_id, timeout=600)
        finally:
            waiter.close()
            consumer.stop("demo finished")
            thread.join(timeout=30)
        print("calibration-completed event, as subscribers receive it:")
        print(json.dumps(event, indent=2))
        with engine.connect() as conn:
            stored = queries.run_summary(conn, event["run_id"])
        return RunSummary.from_dict(stored)
    finally:
        if previous_host is None:
            os.environ.pop("PUBSUB_EMULATOR_HOST", None)
        else:
            os.environ["PUBSUB_EMULATOR_HOST"] = previous_host
        server.stop()


def _demo_database(settings: Settings, fresh: bool) -> sa.Engine:
    """The demo's database: made when there is none, or when ``fresh``; else the one the earlier demos filled."""
    admin = embedded_engine(settings.embedded_data_dir, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        exists = conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :name"),
                              {"name": DEMO_DATABASE}).first() is not None
        if fresh or not exists:
            if exists:
                log.info("demo: --fresh: dropping the demo's database %s and its runs, to start over", DEMO_DATABASE)
            recreate_database(conn, DEMO_DATABASE)
    admin.dispose()
    return embedded_engine(settings.embedded_data_dir, DEMO_DATABASE)


def _next_week(engine: sa.Engine, items: int, seed: int) -> Week:
    """The week this demo adds: the first in an empty database, else the one after the weeks noted in demo_week,
    which must have simulated the same bank (``--items``, ``--seed``)."""
    with engine.connect() as conn:
        if not platform.has_table(conn, "demo_week"):
            if platform.has_table(conn, "mirt_fit_meta"):
                raise ConfigError(f"the demo's database {DEMO_DATABASE} was made by an earlier version of the demo, "
                                  "which kept no note of its weeks", "start over with: python -m consumer demo --fresh")
            return Week(1, 0, None)
        first = conn.execute(sa.text("SELECT items, seed FROM demo_week ORDER BY week LIMIT 1")).first()
        last = conn.execute(sa.text("SELECT max(week), sum(students), max(answered_until) FROM demo_week")).first()
    if first is None:
        return Week(1, 0, None)
    if (first.items, first.seed) != (items, seed):
        raise ConfigError(f"the demo's database holds a bank of {first.items} items simulated with --seed "
                          f"{first.seed}, not --items {items} --seed {seed}: the next week must answer the same bank",
                          f"give --items {first.items} --seed {first.seed} (or leave them out if those are the "
                          f"defaults), or start over with --fresh")
    return Week(int(last[0]) + 1, int(last[1]), last[2])


def _simulate_week(week: Week, students: int, items: int, answers: int, seed: int):
    """The week's answers with their truth: week 1 is ``simulate``'s own draw for ``seed``; a later week keeps
    its items' true parameters (``simulate`` draws them first from ``seed``) and draws new students, a little
    abler each week, and their answers."""
    if week.number == 1:
        return simulate(students, items, answers, seed=seed)
    params = simulate(1, items, 1, seed=seed).params
    rng = np.random.default_rng([seed, week.number])
    theta = rng.normal(WEEKLY_GROWTH * (week.number - 1), 1.0, students)
    return simulate(students, items, answers, seed=int(rng.integers(2**31 - 1)), params=params, theta=theta)


def _latest(stamps: np.ndarray) -> datetime:
    return datetime.fromisoformat(str(stamps.max().astype("datetime64[us]"))).replace(tzinfo=timezone.utc)


def _question_meta(truth, anchor_positions, old_scale) -> list[dict]:
    on_old = truth.params.on_scale(*old_scale)
    metas = [{"tags": ["algebra"]} for _ in range(len(truth.params))]
    for j in anchor_positions:
        metas[j] = {"tags": ["algebra", "anchor"],
                    "irt": {"a": round(float(on_old.a[j]), 4), "b": round(float(on_old.b[j]), 4), "c": 0.0,
                            "model": "2PL", "run_id": "demo-reference"}}
    # One anchor whose stored parameters are broken: the run must skip it and say so.
    metas[anchor_positions[-1]]["irt"]["a"] = "high"
    return metas


def _attempts(truth, rng, now, after: datetime | None = None):
    """The simulated answers over the last week, or since ``after`` (the earlier weeks' last answer) when that is
    later, plus retakes after them and answers from before the window."""
    r = truth.responses
    person, item, correct = r.person_index(), r.item, r.correct.astype(bool)
    end = platform.as_datetime64(now) - np.timedelta64(60 * 10**6, "us")
    week = np.timedelta64(7 * 24 * 3600 * 10**6, "us")
    if after is not None:  # strictly after it, however soon the demo runs again
        week = min(week, end - platform.as_datetime64(after) - np.timedelta64(1, "us"))
        week = max(week, np.timedelta64(1, "us"))
    first = end - (rng.random(item.size) * week.astype(np.int64)).astype("timedelta64[us]")
    retake = rng.random(item.size) < 0.10  # answered again later, the other way round
    old = rng.random(item.size) < 0.05  # answered long before the look-back window too
    old_at = first[old] - np.timedelta64(120 * 24 * 3600 * 10**6, "us")
    retake_at = np.minimum(first[retake] + np.timedelta64(3600 * 10**6, "us"), end)
    return (np.concatenate([person, person[retake], person[old]]),
            np.concatenate([item, item[retake], item[old]]),
            np.concatenate([correct, ~correct[retake], ~correct[old]]),
            np.concatenate([first, retake_at, old_at]))


def _population(engine: sa.Engine) -> tuple[float, float, int]:
    """The true mean and SD, on the base scale, of every week's students together (the population the run's own
    scale is set on: the look-back window holds them all), and how many weeks."""
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT week, students FROM demo_week")).all()
    n = np.array([r.students for r in rows], float)
    means = WEEKLY_GROWTH * (np.array([r.week for r in rows], float) - 1)
    mean = float(np.sum(n * means) / n.sum())
    return mean, float(np.sqrt(np.sum(n * (1.0 + (means - mean) ** 2)) / n.sum())), len(rows)


def _print_comparison(engine, summary, truth, question_ids, student_ids, population) -> None:
    with engine.connect() as conn:
        items, people = queries.run_estimates(conn, summary.run_id)
    on_old = truth.params.on_scale(*OLD_SCALE)
    j = np.array([row[0] for row in items]) - FIRST_QUESTION_ID
    a = np.array([row[1] for row in items])
    b = np.array([row[2] for row in items])
    # This week's students: the earlier weeks' are scored too, but their truth was another week's draw.
    index = {sid: i for i, sid in enumerate(student_ids.tolist())}
    scored = len(people)
    people = [row for row in people if row[0] in index]
    i = np.array([index[row[0]] for row in people])
    theta = np.array([row[1] for row in people])
    se = np.array([row[2] for row in people])
    theta_old = OLD_SCALE[0] * truth.theta[i] + OLD_SCALE[1]
    who = "students" if theta.size == scored else "new students"
    constants = summary.linking_constants
    mean, sd, weeks = population
    true_slope, true_intercept = OLD_SCALE[0] * sd, OLD_SCALE[1] + OLD_SCALE[0] * mean

    def rmse(x, y):
        return float(np.sqrt(np.mean((x - y) ** 2)))

    lines = [
        "",
        f"Calibration run {summary.run_id}: {summary.status}, {summary.durations['total']:.2f} s "
        f"(fit {summary.durations['fit']:.2f} s, {summary.fit['iterations']} EM iterations)",
        f"  {summary.counts['observations']} observations (first attempts in the window) from "
        f"{summary.counts['users']} students on {summary.counts['items']} items; "
        f"{constants['n_anchors']} anchors used, {len(summary.counts['anchors_skipped'])} skipped",
        "",
        "What it found, next to the truth (all on the anchors' old scale):",
        f"  {'':28}{'found':>10}{'true':>10}",
        f"  {'linking slope':28}{constants['slope']:>10.3f}{true_slope:>10.3f}",
        f"  {'linking intercept':28}{constants['intercept']:>10.3f}{true_intercept:>10.3f}",
        *([] if weeks == 1 else [
            f"  (the run's new scale is set on its population, the {weeks} weeks' students together: N({mean:.3f}, "
            f"{sd:.3f}^2) on week 1's scale, so the true constants are {OLD_SCALE[0]:g} x {sd:.3f} and "
            f"{OLD_SCALE[1]:g} + {OLD_SCALE[0]:g} x {mean:.3f})"]),
        "",
        f"  {'recovery':28}{'RMSE':>10}{'corr':>10}",
        f"  {f'a ({a.size} items)':28}{rmse(a, on_old.a[j]):>10.3f}{np.corrcoef(a, on_old.a[j])[0, 1]:>10.3f}",
        f"  {f'b ({b.size} items)':28}{rmse(b, on_old.b[j]):>10.3f}{np.corrcoef(b, on_old.b[j])[0, 1]:>10.3f}",
        f"  {f'theta ({theta.size} {who})':28}{rmse(theta, theta_old):>10.3f}"
        f"{np.corrcoef(theta, theta_old)[0, 1]:>10.3f}   (mean reported SE {se.mean():.3f})",
        "",
        f"Rows written: {summary.rows_upserted['items']} item parameters, {summary.rows_upserted['abilities']} "
        f"abilities, and the run record in mirt_fit_meta (database {DEMO_DATABASE} of the embedded server).",
    ]
    print("\n".join(lines))
