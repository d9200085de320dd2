"""Compare this service with other IRT engines on simulated sparse 2PL data.

For each size the script simulates one data set (fixed seed, so every engine
sees the same answers), then, one engine at a time and each in a fresh
subprocess (so that peak RSS belongs to that engine alone), measures:

- ``service``: ``estimate_items`` then EAP ``score_eap`` on the sparse
  response list, in memory;
- ``calibrate``: a whole ``consumer.run.calibrate`` run against a real
  PostgreSQL database holding the platform tables filled with the same
  answers (load + anchors + fit + link + score + write); the fill is not
  timed;
- ``mirt``: PyPI ``mirt`` 1.2.0 (Rust backend) on a dense matrix with NaN
  for missing, 61 quadrature points, no standard errors, EAP by ``fscores``;
- ``girth``: ``girth`` 0.8.0 ``twopl_mml`` and ``ability_eap`` on an
  items x persons matrix with its integer missing code, default options.

It prints progress on stderr and one markdown table on stdout: time, peak
RSS and recovery (RMSE of a, b and theta against the truth) per engine.

    python benchmarks/compare.py                    # T, S, M
    python benchmarks/compare.py --sizes L --engines service,calibrate
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import socket
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# persons, items, answers per person; and a fixed seed per size.
SIZES = {
    "T": (2_000, 300, 40),
    "S": (5_000, 1_500, 100),
    "M": (50_000, 5_000, 60),
    "L": (400_000, 20_000, 50),
}
SEEDS = {"T": 20261, "S": 20262, "M": 20263, "L": 20264}
ENGINES = ("service", "calibrate", "capped", "mirt", "girth")
LABELS = {
    "service": "this service: fit + EAP",
    "calibrate": "this service: whole calibrate run",
    "capped": "this service: whole calibrate run, default MIRT_MAX_OBS (thin data)",
    "mirt": "mirt 1.2.0 (PyPI, Rust backend)",
    "girth": "girth 0.8.0",
}
QUADRATURE_POINTS = 61
AS_OF = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)
SPREAD_DAYS = 30  # answers completed over the 30 days before AS_OF (inside the 60-day look-back)
FIRST_QUESTION_ID = 100_000
N_ANCHORS = 50
FILL_CHUNK = 2_000_000  # attempts per COPY while filling the database

_started = time.perf_counter()


def say(message: str) -> None:
    print(f"[{time.perf_counter() - _started:7.1f}s] {message}", file=sys.stderr, flush=True)


def peak_rss_gb() -> float:
    """This process's peak resident set size.

    VmHWM, not ``getrusage().ru_maxrss``: Linux carries the parent's peak at
    fork into the child's ru_maxrss across exec, so a worker started by a
    large parent would report the parent's size.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024**2
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # kB on Linux


def current_rss_gb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024**2
    return float("nan")


def rmse(estimate: np.ndarray, truth: np.ndarray) -> float:
    ok = np.isfinite(estimate)
    return float(np.sqrt(np.mean((estimate[ok] - truth[ok]) ** 2))) if ok.any() else float("nan")


# --- workers: one engine in a fresh process ---------------------------------------------------

def _load_responses(path: str):
    from consumer.irt.responses import Responses
    with np.load(path) as data:
        return Responses(data["person_ptr"], data["item"], data["correct"], int(data["n_items"]))


def _tiny():
    from consumer.irt.simulate import simulate
    return simulate(300, 30, 20, seed=1).responses


def _dense(responses, fill, dtype, items_by_persons=False):
    shape = (responses.n_items, responses.n_persons) if items_by_persons else (responses.n_persons, responses.n_items)
    out = np.full(shape, fill, dtype=dtype)
    rows, cols = responses.person_index(), responses.item
    if items_by_persons:
        rows, cols = cols, rows
    out[rows, cols] = responses.correct
    return out


def fit_service(responses) -> dict:
    from consumer.irt.estimate import estimate_items
    from consumer.irt.scoring import score_eap
    warm = _tiny()  # load the compiled kernels before the clock starts
    score_eap(warm, estimate_items(warm).params)
    started = time.perf_counter()
    fit = estimate_items(responses)
    fitted = time.perf_counter()
    abilities = score_eap(responses, fit.params)
    return dict(a=fit.params.a, b=fit.params.b, theta=abilities.theta, fit_s=fitted - started,
                eap_s=time.perf_counter() - fitted,
                note=f"{fit.iterations} EM cycles{'' if fit.converged else ', NOT converged'}")


def fit_mirt(responses) -> dict:
    import mirt
    options = dict(n_quadpts=QUADRATURE_POINTS, compute_standard_errors=False)
    warm = _dense(_tiny(), np.nan, float)
    mirt.fscores(mirt.fit_mirt(warm, "2PL", **options), warm, method="EAP", n_quadpts=QUADRATURE_POINTS)
    matrix = _dense(responses, np.nan, float)
    del responses
    started = time.perf_counter()
    fit = mirt.fit_mirt(matrix, "2PL", **options)
    fitted = time.perf_counter()
    scores = mirt.fscores(fit, matrix, method="EAP", n_quadpts=QUADRATURE_POINTS)
    eap_s = time.perf_counter() - fitted
    params = fit.model.parameters
    return dict(a=np.ravel(params["discrimination"]), b=np.ravel(params["difficulty"]),
                theta=np.ravel(scores.theta), fit_s=fitted - started, eap_s=eap_s,
                note=f"{fit.n_iterations} EM cycles{'' if fit.converged else ', NOT converged'}")


def fit_girth(responses) -> dict:
    import girth
    matrix = _dense(responses, girth.INVALID_RESPONSE, np.int64, items_by_persons=True)
    del responses
    started = time.perf_counter()
    result = girth.twopl_mml(matrix)
    fitted = time.perf_counter()
    a, b = np.ravel(result["Discrimination"]), np.ravel(result["Difficulty"])
    theta = girth.ability_eap(matrix, b, a)
    options = girth.default_options()
    return dict(a=a, b=b, theta=np.ravel(theta), fit_s=fitted - started, eap_s=time.perf_counter() - fitted,
                note=f"girth defaults: {options['quadrature_n']} points on "
                     f"[{options['quadrature_bounds'][0]}, {options['quadrature_bounds'][1]}]")


FITS = {"service": fit_service, "mirt": fit_mirt, "girth": fit_girth}


def run_calibrate(url: str, max_obs: int) -> dict:
    import logging
    from consumer.db.engine import create_engine
    from consumer.run import CalibrationRequest, calibrate
    from consumer.settings import Settings
    def memory(record: logging.LogRecord) -> bool:  # where in the run the memory peak comes
        record.memory = f"rss {current_rss_gb():.2f} GB, peak {peak_rss_gb():.2f} GB"
        return True

    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(memory)
    handler.setFormatter(logging.Formatter("    calibrate | %(memory)s | %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    settings = Settings.load({}).with_overrides(max_obs=max_obs, database_url=url)
    engine = create_engine(settings)
    summary = calibrate(engine, settings, CalibrationRequest(request_id="benchmark", as_of=AS_OF))
    engine.dispose()
    return summary.as_dict()


def worker(args: argparse.Namespace) -> None:
    if args.worker == "calibrate":
        result = {"summary": run_calibrate(args.url, args.max_obs)}
        result["rss_gb"] = peak_rss_gb()
        Path(args.out).write_text(json.dumps(result, default=str))
        return
    result = FITS[args.worker](_load_responses(args.data))
    rss = peak_rss_gb()
    np.savez(args.out, a=result.pop("a"), b=result.pop("b"), theta=result.pop("theta"),
             meta=json.dumps({**result, "rss_gb": rss}))


def spawn(args: list[str], timeout: float) -> str | None:
    """Run this script as a worker; None when it succeeded, else why not."""
    command = [sys.executable, str(Path(__file__).resolve()), *args]
    try:
        done = subprocess.run(command, timeout=timeout, stdout=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return f"timed out after {timeout:.0f} s"
    return None if done.returncode == 0 else f"failed (exit {done.returncode}, see stderr)"


# --- the database for the whole-run rows --------------------------------------------------------

def server_url():
    """As the tests find a server: TEST_DATABASE_URL, else 127.0.0.1:5432, else the embedded one."""
    import sqlalchemy as sa
    from consumer.db.engine import pg8000_url
    if os.environ.get("TEST_DATABASE_URL"):
        return pg8000_url(os.environ["TEST_DATABASE_URL"])[0]
    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=0.5).close()
        url = sa.make_url("postgresql+pg8000://postgres@127.0.0.1:5432/postgres")
        sa.create_engine(url).connect().close()
        return url
    except Exception:
        pass
    from consumer.db.embedded import embedded_url
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return sa.make_url(embedded_url(Path(tempfile.mkdtemp(prefix="mirt-bench-"))))


@contextlib.contextmanager
def fresh_database(prefix: str):
    """(URL, engine) of a new database on ``server_url()``, dropped on the way out."""
    import sqlalchemy as sa
    admin_url = server_url()
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    url = admin_url.set(database=name)
    engine = sa.create_engine(url)
    try:
        yield url, engine
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()
        say(f"dropped database {name}")


def student_ids(first: int, stop: int, student_type: str) -> np.ndarray:
    if student_type == "bigint":
        return np.arange(first, stop, dtype=np.int64) + 1
    return np.array([f"s{i:07d}" for i in range(first, stop)])


def person_of(user_ids: list, student_type: str) -> np.ndarray:
    if student_type == "bigint":
        return np.array([int(u) for u in user_ids], dtype=np.int64) - 1
    return np.array([int(u[1:]) for u in user_ids], dtype=np.int64)


def fill_database(engine, sim, seed: int, student_type: str) -> None:
    """The platform tables with the simulated answers, completed over the 30 days before AS_OF.

    ``N_ANCHORS`` random items are tagged anchors with their true parameters,
    so linking runs and should find slope ~1 and intercept ~0.
    """
    from consumer.db import platform as plat
    rng = np.random.default_rng(seed)
    r, truth = sim.responses, sim.params
    anchors = set(rng.choice(r.n_items, size=min(N_ANCHORS, r.n_items), replace=False).tolist())
    metas = [{"tags": ["anchor"], "irt": {"a": float(truth.a[j]), "b": float(truth.b[j]), "c": 0.0,
                                          "model": "2PL", "run_id": "truth"}}
             if j in anchors else {"tags": []} for j in range(r.n_items)]
    with engine.begin() as conn:
        plat.create_platform_tables(conn, student_type)
        plat.insert_questions(conn, FIRST_QUESTION_ID + np.arange(r.n_items), metas)
    until = plat.as_datetime64(AS_OF)
    spread = SPREAD_DAYS * 86_400_000_000
    first, started = 0, time.perf_counter()
    while first < r.n_persons:
        stop = int(np.searchsorted(r.person_ptr, r.person_ptr[first] + FILL_CHUNK, side="right")) - 1
        stop = min(max(stop, first + 1), r.n_persons)
        lo, hi = r.person_ptr[first], r.person_ptr[stop]
        persons = np.repeat(np.arange(stop - first), np.diff(r.person_ptr[first:stop + 1]))
        offsets = rng.integers(1_000_000, spread, size=hi - lo).astype("timedelta64[us]")
        with engine.begin() as conn:
            plat.insert_attempts(conn, student_ids(first, stop, student_type)[persons],
                                 FIRST_QUESTION_ID + r.item[lo:hi].astype(np.int64),
                                 r.correct[lo:hi].astype(bool), until - offsets)
        first = stop
        say(f"  filled {hi:,} / {r.n_obs:,} attempts ({time.perf_counter() - started:.0f} s)")
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE attempt")
        conn.exec_driver_sql("ANALYZE question")


def calibrate_row(size: str, sim, seed: int, args, row: dict, capped: bool = False) -> None:
    """A whole calibrate run on ``sim`` in a fresh database; ``capped``: with the default MIRT_MAX_OBS."""
    from consumer.db.migrations import migrate
    from consumer.settings import Settings
    with fresh_database(f"mirt_bench_{size.lower()}") as (url, engine):
        say(f"{size}: filling database {url.database} on {url.host or 'embedded server'} "
            f"({sim.responses.n_obs:,} attempts, student_id {args.student_type}; not timed)")
        started = time.perf_counter()
        fill_database(engine, sim, seed, args.student_type)
        migrate(engine)
        fill_s = time.perf_counter() - started
        say(f"{size}: database filled and migrated in {fill_s:.0f} s; calibrate run starts")
        out = Path(args.tmp) / f"{size}-calibrate.json"
        default_cap = Settings.load({}).max_obs
        max_obs = default_cap if capped else max(default_cap, sim.responses.n_obs)
        failure = spawn(["--worker", "calibrate", "--url", url.render_as_string(hide_password=False),
                         "--max-obs", str(max_obs), "--out", str(out)], args.timeout)
        if failure:
            row["note"] = failure
            return
        result = json.loads(out.read_text())
        s, d = result["summary"], result["summary"]["durations"]
        if s["status"] != "succeeded":
            row["note"] = f"run {s['status']}: {s.get('error')}"
            return
        with engine.connect() as conn:
            items = conn.exec_driver_sql(
                "SELECT item_id, (params->>'a')::float8, (params->>'b')::float8 FROM mirt_item_params").all()
            users = conn.exec_driver_sql("SELECT user_id, theta FROM mirt_ability").all()
        a, b = np.full(sim.responses.n_items, np.nan), np.full(sim.responses.n_items, np.nan)
        j = np.array([i for i, _, _ in items], dtype=np.int64) - FIRST_QUESTION_ID
        a[j], b[j] = [x for _, x, _ in items], [x for _, _, x in items]
        theta = np.full(sim.responses.n_persons, np.nan)
        theta[person_of([u for u, _ in users], args.student_type)] = [t for _, t in users]
        lc = s["linking_constants"]
        f = s["fit"]
        thin = (f"{s['counts']['observations']:,} of {sim.responses.n_obs:,} answers kept by the cap; "
                f"priors {'on' if f['item_priors']['used'] else 'off'} ({f['item_priors']['why']}); "
                f"{'converged' if f['converged'] else 'NOT converged'}; "
                f"{s['counts'].get('items_held_back', 0)} items held back; " if capped else "")
        row.update(fit_s=d["fit"], eap_s=d["score"], total_s=d["total"], rss_gb=result["rss_gb"],
                   rmse_a=rmse(a, sim.params.a), rmse_b=rmse(b, sim.params.b), rmse_theta=rmse(theta, sim.theta),
                   note=thin + (f"load {d['load']:.1f} + anchors {d['anchors']:.2f} + fit {d['fit']:.1f} + "
                         f"link {d['link']:.2f} + score {d['score']:.1f} + write {d['write']:.1f} s; "
                         f"{s['fit'].get('iterations')} EM cycles; {lc['method']} on {lc.get('n_anchors')} anchors: "
                         f"slope {lc['slope']:.3f}, intercept {lc['intercept']:+.3f}; "
                         f"{len(items):,} items, {len(users):,} users written; fill {fill_s:.0f} s (untimed)"))


# --- the comparison ---------------------------------------------------------------------------

def skip_reason(engine: str, size: str, args) -> str | None:
    if engine == "mirt" and size == "L":
        return "skipped: needs a dense 400,000 x 20,000 matrix (8e9 cells, 64 GB as float64)"
    if engine == "girth" and size in ("M", "L"):
        return "skipped: dense and far too slow (about 20 minutes already at S)"
    if engine == "girth" and size == "S" and not args.slow:
        return "skipped: about 20 minutes at S; run with --slow"
    return None


def run_size(size: str, args) -> list[dict]:
    from consumer.irt.simulate import simulate
    n_persons, n_items, per_person = SIZES[size]
    say(f"{size}: simulating {n_persons:,} persons x {n_items:,} items x {per_person} answers (seed {SEEDS[size]})")
    sim = simulate(n_persons, n_items, per_person, seed=SEEDS[size])
    data = Path(args.tmp) / f"{size}.npz"
    r = sim.responses
    np.savez(data, person_ptr=r.person_ptr, item=r.item, correct=r.correct, n_items=r.n_items)
    rows = []
    for engine in args.engines:
        if engine == "capped" and size != "M":
            continue  # the thin-data row: M's answers under the default cap
        row = dict(size=f"{size} ({r.n_obs / 1e6:g}M)" if r.n_obs >= 1e6 else f"{size} ({r.n_obs // 1000}k)",
                   engine=LABELS[engine])
        rows.append(row)
        reason = skip_reason(engine, size, args)
        if reason:
            row["note"] = reason
            say(f"{size}: {engine} {reason}")
            continue
        say(f"{size}: {engine} starts")
        if engine in ("calibrate", "capped"):
            calibrate_row(size, sim, SEEDS[size], args, row, capped=engine == "capped")
        else:
            out = Path(args.tmp) / f"{size}-{engine}.npz"
            failure = spawn(["--worker", engine, "--data", str(data), "--out", str(out)], args.timeout)
            if failure:
                row["note"] = failure
            else:
                with np.load(out) as res:
                    meta = json.loads(str(res["meta"]))
                    row.update(fit_s=meta["fit_s"], eap_s=meta["eap_s"], total_s=meta["fit_s"] + meta["eap_s"],
                               rss_gb=meta["rss_gb"], rmse_a=rmse(res["a"], sim.params.a),
                               rmse_b=rmse(res["b"], sim.params.b), rmse_theta=rmse(res["theta"], sim.theta),
                               note=meta["note"])
        say(f"{size}: {engine} done: " + ", ".join(f"{k} {v:.3g}" for k, v in row.items() if isinstance(v, float)))
    return rows


def code_fingerprint() -> str:
    """A digest of consumer/'s sources, to notice the code changing under a long benchmark."""
    import hashlib
    digest = hashlib.sha1()
    for path in sorted((ROOT / "consumer").rglob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:10]


def machine_line() -> str:
    import numba
    blas = np.__config__.CONFIG["Build Dependencies"]["blas"]
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    env = ", ".join(f"{k}={os.environ.get(k, 'unset')}"
                    for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "NUMBA_NUM_THREADS"))
    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "consumer"],
                               capture_output=True, text=True).stdout.strip()
        commit += f" (consumer/ has uncommitted changes, sources {code_fingerprint()})" if dirty else ""
    except OSError:
        commit = "?"
    return (f"Machine: {os.cpu_count()} cores, {ram:.0f} GB RAM, {platform.machine()} {platform.system()}; "
            f"Python {platform.python_version()}, numpy {np.__version__}, numba {numba.__version__} "
            f"({numba.get_num_threads()} threads); BLAS {blas.get('name')} {blas.get('version')} "
            f"[{blas.get('openblas configuration', '').strip()}]; {env}; code at {commit}.")


def server_line() -> str:
    import sqlalchemy as sa
    try:
        url = server_url()
        with sa.create_engine(url).connect() as conn:
            version = conn.exec_driver_sql("SHOW server_version").scalar()
            settings = {k: conn.exec_driver_sql(f"SHOW {k}").scalar() for k in ("work_mem", "shared_buffers")}
        return (f"PostgreSQL {version} at {url.host or 'embedded server'} "
                f"(work_mem {settings['work_mem']}, shared_buffers {settings['shared_buffers']}).")
    except Exception as exc:
        return f"PostgreSQL: not reachable ({type(exc).__name__})."


def fmt(value, digits: int) -> str:
    if not isinstance(value, float):
        return "–"
    if digits == 0:  # seconds: three significant figures, at most two decimals
        return f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 100 else f"{value:.0f}"
    return f"{value:.{digits}f}"


def table(rows: list[dict]) -> str:
    lines = ["| size (responses) | engine | fit (s) | EAP (s) | total (s) | peak RSS (GB) | RMSE a | RMSE b "
             "| RMSE θ | notes |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for row in rows:
        cells = [row["size"], row["engine"], fmt(row.get("fit_s"), 0), fmt(row.get("eap_s"), 0),
                 fmt(row.get("total_s"), 0), fmt(row.get("rss_gb"), 2), fmt(row.get("rmse_a"), 3),
                 fmt(row.get("rmse_b"), 3), fmt(row.get("rmse_theta"), 3), row.get("note", "")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="T,S,M", help="comma-separated among T,S,M,L (default T,S,M)")
    parser.add_argument("--engines", default=",".join(ENGINES), help=f"comma-separated among {','.join(ENGINES)}")
    parser.add_argument("--slow", action="store_true", help="also run girth at S (about 20 minutes)")
    parser.add_argument("--student-type", choices=("text", "bigint"), default="text",
                        help="type of attempt.student_id in the benchmark database (default text)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds allowed per engine run")
    parser.add_argument("--worker", choices=(*FITS, "calibrate"), help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--max-obs", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)
    sizes = [s.strip().upper() for s in args.sizes.split(",") if s.strip()]
    args.engines = [e.strip().lower() for e in args.engines.split(",") if e.strip()]
    unknown = [s for s in sizes if s not in SIZES] + [e for e in args.engines if e not in ENGINES]
    if unknown:
        parser.error(f"unknown size or engine: {', '.join(unknown)}")
    rows, fingerprint = [], code_fingerprint()
    with tempfile.TemporaryDirectory(prefix="irt-bench-") as tmp:
        args.tmp = tmp
        for size in sizes:
            rows += run_size(size, args)
    print(table(rows))
    print()
    print("Simulated 2PL, a ~ lognormal(0, 0.3), b ~ N(0, 1), theta ~ N(0, 1); sizes persons x items x answers: "
          + "; ".join(f"{s} = {p:,} x {j:,} x {k}" for s, (p, j, k) in SIZES.items() if s in sizes)
          + f". Each engine in its own process; peak RSS = that process's VmHWM (data, dense matrix if any, "
          f"fit and EAP; for the whole run the Python process only, not the PostgreSQL server). "
          f"Fit times exclude a warm-up on a tiny problem; the whole run is timed cold. "
          f"{QUADRATURE_POINTS} quadrature points, tolerance 1e-4, no standard errors.")
    print(machine_line())
    print(server_line())
    if code_fingerprint() != fingerprint:
        print("WARNING: the sources under consumer/ changed during the benchmark; rows may mix code versions.")


if __name__ == "__main__":
    main()
