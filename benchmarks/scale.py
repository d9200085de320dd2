"""A whole ``calibrate`` run at 500k to 100M answers, each step beside the physical bound it is chasing.

The data are made inside PostgreSQL (``generate_series`` and ``random()``,
no rows through Python), in a database of their own per size on the tests'
server (``mirt_scale_500k``, ``mirt_scale_3m``, ...), and kept there for the
next run (``--regenerate`` makes them again, ``--drop`` drops them after):

- students with a true theta ~ N(0, 1), items with a true a ~ lognormal(0, 0.3)
  and b ~ N(0, 1) (tables ``scale_student`` and ``scale_item``);
- each student answers ``answers`` distinct items (one at random in each of
  ``answers`` equal blocks of the bank, from a random start), correct with
  the 2PL probability; 2% of the answers are tried a second time later (the
  load keeps the first), all completed over the 30 days before the run;
- 50 items tagged anchors with their true parameters (linking should find
  slope about 1 and intercept about 0).

Then one ``consumer.run.calibrate`` in this process (the kernels loaded from
numba's cache first: a warm run, as a replica sees it), and a table of its
steps: wall time, CPU time of this process (which survives contention
better than wall time), the machine's load average when the step ended, and
beside each step the bound it is measured against, on the same machine in
the same run:

- load: PostgreSQL's own scan and sort of the window, ``COPY (the load's
  first-answer query) TO '/dev/null'`` on the server (and the bare scan);
- fit: per EM pass, answers x quadrature points multiply-adds at the
  machine's multiply-add rate measured here (numba, float32, every core);
- standard errors and item fit: against the fit (the goal is at most half);
- score: one pass of answers x quadrature points multiply-adds;
- write: a plain COPY of the same rows (students and items) into a
  temporary table, no upsert and no history.

    python benchmarks/scale.py --size 500k            # about 15 s once the data are there
    python benchmarks/scale.py --size 20M,100M         # see benchmarks/README.md for how long each takes
    python benchmarks/scale.py --size 500k --runs 3     # the run three times on the same data

Figures on a shared machine are upper bounds: the load average is printed
beside every one.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


@dataclass(frozen=True)
class Size:
    students: int
    items: int
    answers: int  # per student

    @property
    def n(self) -> int:
        return self.students * self.answers


SIZES = {
    "500k": Size(5_000, 1_500, 100),
    "3M": Size(50_000, 5_000, 60),
    "20M": Size(400_000, 20_000, 50),
    "100M": Size(2_000_000, 20_000, 50),
}
AS_OF = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)
FIRST_QUESTION_ID = 100_000
N_ANCHORS = 50
RETRIED = 0.02  # share of answers tried again later (the load keeps the first)
QUADRATURE = 61

_started = time.perf_counter()


def say(message: str) -> None:
    print(f"[{time.perf_counter() - _started:7.1f}s] {message}", file=sys.stderr, flush=True)


def load_average() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def _status(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024**2
    return float("nan")


def reset_peak_rss() -> None:
    """Start VmHWM again from the current RSS (Linux: writing 5 to clear_refs)."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


# --- the data, made by PostgreSQL ----------------------------------------------------------------

def server_url():
    import sqlalchemy as sa
    from consumer.db.engine import pg8000_url
    if os.environ.get("TEST_DATABASE_URL"):
        return pg8000_url(os.environ["TEST_DATABASE_URL"])[0]
    return sa.make_url("postgresql+pg8000://postgres@127.0.0.1:5432/postgres")


def database_name(size: str) -> str:
    return f"mirt_scale_{size.lower()}"


def database_ready(admin, name: str, size: Size) -> bool:
    import sqlalchemy as sa
    with admin.connect() as conn:
        if not conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).scalar():
            return False
    engine = sa.create_engine(admin.url.set(database=name))
    try:
        with engine.connect() as conn:
            if not conn.exec_driver_sql("SELECT to_regclass('scale_made') IS NOT NULL").scalar():
                return False  # made only in part (the marker is written last)
            made = conn.exec_driver_sql("SELECT value FROM scale_made WHERE key = 'size'").scalar()
        return made == json.dumps(size.__dict__)
    finally:
        engine.dispose()


_STUDENTS = """
CREATE TABLE scale_student AS
SELECT s, 's' || lpad(s::text, 7, '0') AS student_id,
       sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random()) AS theta,
       floor(random() * {items})::int AS start
  FROM generate_series(0, {students} - 1) s"""
_ITEMS = """
CREATE TABLE scale_item AS
SELECT j, {first} + j AS question_id,
       exp(0.3 * sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random())) AS a,
       sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random()) AS b
  FROM generate_series(0, {items} - 1) j"""
# One answer per (student, block): block k of the bank holds items k*width .. (k+1)*width - 1 after
# the student's random start, so each student's items are distinct. 2% are tried again later: drawn per
# answer in the lateral subquery (a random() in the WHERE clause that names only the VALUES list was
# evaluated once per VALUES row, so that the data held no retried answer, or every one retried).
_ATTEMPTS = """
INSERT INTO attempt (student_id, question_id, correct, completed_at)
SELECT st.student_id, it.question_id, random() < 1 / (1 + exp(-it.a * (st.theta - it.b))),
       at.t + (CASE WHEN again THEN random() * interval '1 day' ELSE interval '0' END)
  FROM scale_student st
 CROSS JOIN generate_series(0, {answers} - 1) k
 CROSS JOIN LATERAL (SELECT (st.start + k * {width} + floor(random() * {width})::int) % {items} AS j,
                            timestamptz '{until}' - interval '1 day' - random() * interval '29 days' AS t,
                            random() < {retried} AS retried) at
  JOIN scale_item it ON it.j = at.j
 CROSS JOIN (VALUES (false), (true)) again_(again)
 WHERE st.s % 2 = {half} AND (NOT again OR at.retried)"""


def make_data(admin, name: str, size: Size) -> float:
    """A fresh database ``name`` holding ``size``'s platform tables and truth; returns the seconds it took."""
    import sqlalchemy as sa
    from concurrent.futures import ThreadPoolExecutor
    from consumer.db import platform as plat
    from consumer.db.migrations import migrate
    started = time.perf_counter()
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    engine = sa.create_engine(admin.url.set(database=name))
    fmt = dict(students=size.students, items=size.items, answers=size.answers, first=FIRST_QUESTION_ID,
               width=size.items // size.answers, until=AS_OF.isoformat(), retried=RETRIED)
    with engine.begin() as conn:
        plat.create_platform_tables(conn, "text")
        conn.exec_driver_sql(_STUDENTS.format(**fmt))
        conn.exec_driver_sql(_ITEMS.format(**fmt))
        conn.exec_driver_sql(
            "INSERT INTO question (id, meta) SELECT question_id, CASE WHEN j % (:n / :k) = 0 AND j / (:n / :k) < :k "
            "THEN jsonb_build_object('tags', jsonb_build_array('anchor'), 'irt', jsonb_build_object("
            "'a', a, 'b', b, 'c', 0.0, 'model', '2PL', 'run_id', 'truth')) ELSE '{\"tags\": []}'::jsonb END "
            "FROM scale_item".replace(":n", str(size.items)).replace(":k", str(N_ANCHORS)))
    say(f"  {name}: students and items made; answers being drawn on two connections")

    def half(h: int) -> int:
        with engine.begin() as conn:
            conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
            return conn.exec_driver_sql(_ATTEMPTS.format(half=h, **fmt)).rowcount

    with ThreadPoolExecutor(2) as pool:
        rows = sum(pool.map(half, (0, 1)))
    say(f"  {name}: {rows:,} attempts drawn ({time.perf_counter() - started:.0f} s); vacuum, analyze, migrate")
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE attempt")
        conn.exec_driver_sql("ANALYZE question")
        conn.exec_driver_sql("ANALYZE scale_student")
        conn.exec_driver_sql("ANALYZE scale_item")
    migrate(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE scale_made (key text PRIMARY KEY, value text)")
        conn.execute(sa.text("INSERT INTO scale_made VALUES ('size', :v), ('seconds', :s)"),
                     {"v": json.dumps(size.__dict__), "s": str(time.perf_counter() - started)})
    engine.dispose()
    return time.perf_counter() - started


# --- the bounds ------------------------------------------------------------------------------------

def multiply_add_rate() -> float:
    """Multiply-adds a second on every core: float32 rows of a cached table, as the E-step's inner loop."""
    import numba
    from numba import prange

    @numba.njit(parallel=True, fastmath=True, cache=False)
    def sweep(x, table, out, rounds):
        chunks = out.shape[0]
        per = x.shape[0] // chunks
        for c in prange(chunks):
            acc = np.zeros(table.shape[1], np.float32)
            for _ in range(rounds):
                for i in range(c * per, (c + 1) * per):
                    w = x[i]
                    row = table[i & 63]
                    for q in range(table.shape[1]):
                        acc[q] += w * row[q]
            out[c] = acc.sum()

    threads = numba.get_num_threads()
    x = np.random.default_rng(1).random(1 << 16, dtype=np.float32)
    table = np.random.default_rng(2).random((64, QUADRATURE), dtype=np.float32)
    out = np.zeros(threads * 4, np.float32)
    sweep(x, table, out, 1)
    best = 0.0
    for _ in range(3):
        started = time.perf_counter()
        sweep(x, table, out, 40)
        best = max(best, 40 * x.size * QUADRATURE / (time.perf_counter() - started))
    return best


def timed(function) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def load_bound(engine, max_obs: int) -> dict:
    """PostgreSQL's own scan, and scan + first-answer sort, of the run's window, output to /dev/null."""
    from datetime import timedelta
    from consumer.db import queries
    window = queries._WINDOW.replace(":since", "'{}'".format((AS_OF - timedelta(days=60)).isoformat())) \
                            .replace(":until", f"'{AS_OF.isoformat()}'")
    firsts = queries._FIRSTS.format(window=window, student='student_id COLLATE "C"', extra="")
    scan = f"SELECT student_id, question_id, correct, completed_at FROM attempt WHERE {window}"
    out = {}
    with engine.begin() as conn:
        for statement in queries._LOAD_SETTINGS:
            conn.exec_driver_sql(statement)
        out["scan"] = timed(lambda: conn.exec_driver_sql(f"COPY ({scan}) TO '/dev/null'"))
        out["sort"] = timed(lambda: conn.exec_driver_sql(f"COPY ({firsts}) TO '/dev/null'"))
    return out


def write_bound(engine) -> float:
    """A plain COPY of the rows the run wrote (its students and items) into temporary tables, no upsert."""
    with engine.begin() as conn:
        cursor = conn.connection.driver_connection.cursor()
        users, items = io.BytesIO(), io.BytesIO()
        cursor.execute("COPY (SELECT user_id, theta, theta_se FROM mirt_ability) TO STDOUT WITH (FORMAT csv)",
                       stream=users)
        cursor.execute("COPY (SELECT item_id, params FROM mirt_item_params) TO STDOUT WITH (FORMAT csv)",
                       stream=items)
        started = time.perf_counter()
        conn.exec_driver_sql("CREATE TEMP TABLE bound_users (user_id text, theta float8, theta_se float8) "
                             "ON COMMIT DROP")
        conn.exec_driver_sql("CREATE TEMP TABLE bound_items (item_id bigint, params jsonb) ON COMMIT DROP")
        cursor.execute("COPY bound_users FROM STDIN WITH (FORMAT csv)", stream=io.BytesIO(users.getvalue()))
        cursor.execute("COPY bound_items FROM STDIN WITH (FORMAT csv)", stream=io.BytesIO(items.getvalue()))
        return time.perf_counter() - started


def recovery(engine) -> str:
    with engine.connect() as conn:
        a, b, slope, theta = conn.exec_driver_sql(
            "SELECT sqrt(avg(((p.params->>'a')::float8 - t.a) ^ 2)), sqrt(avg(((p.params->>'b')::float8 - t.b) ^ 2)), "
            "regr_slope((p.params->>'b')::float8, t.b), "
            "(SELECT sqrt(avg((m.theta - s.theta) ^ 2)) FROM mirt_ability m JOIN scale_student s "
            "   ON s.student_id = m.user_id) "
            "FROM mirt_item_params p JOIN scale_item t ON t.question_id = p.item_id").one()
    return f"RMSE a {a:.3f}, b {b:.3f}, theta {theta:.3f}; slope of b on the truth {slope:.3f}"


# --- the run ---------------------------------------------------------------------------------------

class StepClock:
    """CPU time and load average at the end of each step of the run (wrapping ``RunContext.step``)."""

    def __init__(self) -> None:
        self.cpu: dict[str, float] = {}
        self.load: dict[str, str] = {}
        self.rss: dict[str, float] = {}

    @contextlib.contextmanager
    def install(self):
        from consumer.steps import context
        original = context.RunContext.step
        clock = self

        @contextlib.contextmanager
        def step(run, name):
            cpu = time.process_time()
            try:
                with original(run, name) as span:
                    yield span
            finally:
                clock.cpu[name] = time.process_time() - cpu
                clock.load[name] = load_average()
                clock.rss[name] = _status("VmHWM")

        context.RunContext.step = step
        try:
            yield self
        finally:
            context.RunContext.step = original


def run_once(url, size: Size, standard_errors: str = "exact") -> tuple[dict, StepClock, float, float, str]:
    from consumer.db.engine import create_engine
    from consumer.db.migrations import migrate
    from consumer.run import CalibrationRequest, calibrate
    from consumer.settings import Settings
    settings = Settings.load({}).with_overrides(max_obs=max(500_000, 2 * size.n), standard_errors=standard_errors,
                                                database_url=url.render_as_string(hide_password=False))
    engine = create_engine(settings)
    migrate(engine)  # as `python -m consumer calibrate` does before its run (data made before a migration)
    reset_peak_rss()
    clock = StepClock()
    cpu = time.process_time()
    load_before = load_average()
    with clock.install():
        summary = calibrate(engine, settings, CalibrationRequest(request_id="scale", as_of=AS_OF))
    cpu = time.process_time() - cpu
    engine.dispose()
    return summary.as_dict(), clock, cpu, _status("VmHWM"), load_before


def row(step: str, wall: float | None, cpu: float | None, load: str, bound: str, ratio: float | None) -> str:
    def num(x):
        return "–" if x is None else f"{x:.2f}" if x < 10 else f"{x:.1f}"
    return (f"| {step} | {num(wall)} | {num(cpu)} | {load} | {bound} | "
            f"{'–' if ratio is None else f'{ratio:.1f}x'} |")


def measure(size_name: str, args) -> str:
    import sqlalchemy as sa
    size = SIZES[size_name]
    admin = sa.create_engine(server_url(), isolation_level="AUTOCOMMIT")
    name = database_name(size_name)
    if args.regenerate or not database_ready(admin, name, size):
        say(f"{size_name}: making {size.n:,} answers in database {name} (load average {load_average()})")
        seconds = make_data(admin, name, size)
        say(f"{size_name}: made in {seconds:.0f} s")
    url = admin.url.set(database=name)
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        made = float(conn.exec_driver_sql("SELECT value FROM scale_made WHERE key = 'seconds'").scalar())
    rate = multiply_add_rate()
    say(f"{size_name}: multiply-add rate {rate / 1e9:.1f} G/s (load average {load_average()})")
    tables = []
    for attempt in range(args.runs):
        say(f"{size_name}: calibrate run {attempt + 1} of {args.runs} (load average {load_average()})")
        summary, clock, cpu, peak, load_before = run_once(url, size, args.standard_errors)
        if summary["status"] != "succeeded":
            raise SystemExit(f"run {summary['status']}: {summary.get('error')}")
        d = summary["durations"]
        n_obs = summary["counts"]["observations"]
        passes = summary["fit"]["iterations"]
        say(f"{size_name}: run done in {d['total']:.1f} s; measuring the bounds (load average {load_average()})")
        load_b = load_bound(engine, max(500_000, 2 * size.n))
        write_b = write_bound(engine)
        pass_b = n_obs * QUADRATURE / rate
        fit_pass = d["fit"] / passes
        lines = [
            f"### {size_name}: {size.students:,} students x {size.items:,} items x {size.answers} answers "
            f"(run {attempt + 1}; {n_obs:,} first answers of {summary['counts'].get('attempts_in_window', n_obs):,} "
            f"attempts; data made in PostgreSQL in {made:.0f} s; standard errors {args.standard_errors})",
            "",
            "| step | wall (s) | CPU (s) | load average at its end | bound (s) | wall / bound |",
            "|---|---:|---:|---|---|---:|",
            row("load", d["load"], clock.cpu.get("load"), clock.load.get("load", "?"),
                f"{load_b['sort']:.2f} (PostgreSQL scan + first-answer sort to /dev/null; bare scan "
                f"{load_b['scan']:.2f})", d["load"] / load_b["sort"]),
            row(f"fit ({passes} EM passes)", d["fit"], clock.cpu.get("fit"), clock.load.get("fit", "?"),
                f"{pass_b * passes:.2f} ({pass_b * 1e3:.1f} ms a pass: {n_obs:,} x {QUADRATURE} multiply-adds "
                f"at {rate / 1e9:.1f} G/s; this run {fit_pass * 1e3:.0f} ms, "
                f"{fit_pass / n_obs * 1e9:.0f} ns an answer)", d["fit"] / (pass_b * passes)),
            row("standard errors + item fit", d.get("diagnostics"), clock.cpu.get("diagnostics"),
                clock.load.get("diagnostics", "?"), f"{d['fit'] / 2:.2f} (half the fit: the goal)",
                d.get("diagnostics", 0) / (d["fit"] / 2)),
            row("score", d.get("score"), clock.cpu.get("score"), clock.load.get("score", "?"),
                f"{pass_b:.3f} (one pass of multiply-adds)", d.get("score", 0) / pass_b),
            row("write", d["write"], clock.cpu.get("write"), clock.load.get("write", "?"),
                f"{write_b:.2f} (COPY of the same {summary['counts'].get('users', 0):,} students and "
                f"{summary['counts'].get('items_estimated', 0):,} items, no upsert)", d["write"] / write_b),
            row("whole run", d["total"], cpu, f"{load_before} before", "–", None),
            "",
            f"Peak RSS of the run {peak:.2f} GB ({peak * 1024**3 / max(n_obs, 1):.0f} bytes an answer); "
            f"other steps: " + ", ".join(f"{k} {v:.2f} s" for k, v in d.items()
                                         if k not in ("load", "fit", "diagnostics", "score", "write", "total")) +
            f"; {d['total'] * 1e6 / n_obs:.2f} µs an answer; {recovery(engine)}; "
            f"peak RSS by step end: " + ", ".join(f"{k} {v:.2f}" for k, v in clock.rss.items()) + " GB.",
            "",
        ]
        tables.append("\n".join(lines))
        print(tables[-1], flush=True)
    engine.dispose()
    if args.drop:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.dispose()
    return "\n".join(tables)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="500k", help=f"comma-separated, of {', '.join(SIZES)} (default 500k)")
    parser.add_argument("--runs", type=int, default=1, help="calibrate runs per size on the same data")
    parser.add_argument("--regenerate", action="store_true", help="make the data again even if kept")
    parser.add_argument("--drop", action="store_true", help="drop each size's database afterwards")
    parser.add_argument("--standard-errors", choices=("exact", "approximate"), default="exact",
                        help="MIRT_STANDARD_ERRORS for the run (default exact, the service's default)")
    parser.add_argument("--generate-only", action="store_true", help="only make the data")
    args = parser.parse_args(argv)
    sizes = [s.strip() for s in args.size.split(",") if s.strip()]
    unknown = [s for s in sizes if s not in SIZES]
    if unknown:
        parser.error(f"unknown size {', '.join(unknown)}; choose from {', '.join(SIZES)}")
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    from consumer.warmup import load_kernels
    load_kernels()
    for size in sizes:
        if args.generate_only:
            import sqlalchemy as sa
            admin = sa.create_engine(server_url(), isolation_level="AUTOCOMMIT")
            if args.regenerate or not database_ready(admin, database_name(size), SIZES[size]):
                say(f"{size}: made in {make_data(admin, database_name(size), SIZES[size]):.0f} s")
            continue
        measure(size, args)
    import numba
    print(f"Machine: {os.cpu_count()} cores, numba {numba.__version__} ({numba.get_num_threads()} threads), "
          f"load average {load_average()} at the end.")


if __name__ == "__main__":
    main()
