"""How big and how fast the run review page is for a large bank: ``python benchmarks/review_page.py``.

Writes two runs of a bank of ``--items`` items and ``--students`` students
(default 20,000 and 400,000: the largest design of benchmarks/compare.py)
into a fresh database, as a run writes them (made up, not fitted: the fit is
not what is measured), then times what a reviewer waits for: reading the
run, the previous run and the last runs' history from PostgreSQL; writing
the page; and, in headless chromium (Debian's; installed by
tests/support/browser.py when missing), opening it, sorting the 20,000-row
item table, finding items and downloading the CSV. Prints one table (markdown).

The database: ``--server`` (a PostgreSQL URL to create a scratch database
on), default the server on 127.0.0.1:5432, else an embedded one.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import os
import platform
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

from consumer.db.migrations import migrate  # noqa: E402
from consumer.review import load_review, render  # noqa: E402
from tests.support.browser import Page  # noqa: E402
from tests.support.review_data import store, synthetic_review  # noqa: E402


def _server(url: str | None) -> sa.URL:
    if url:
        return sa.make_url(url).set(drivername="postgresql+pg8000")
    local = sa.make_url("postgresql+pg8000://postgres@127.0.0.1:5432/postgres")
    try:
        sa.create_engine(local).connect().close()
        return local
    except Exception:
        from consumer.db.embedded import embedded_url
        return sa.make_url(embedded_url(Path(tempfile.mkdtemp(prefix="review-bench-"))))


async def _in_browser(path: Path, rows: int) -> dict[str, float]:
    timings = {}
    started = time.perf_counter()
    async with Page.open(path, width=1280, height=900) as page:
        timings["open in chromium (to the load event)"] = time.perf_counter() - started
        # Each action timed inside the page, up to the layout it causes.
        timings["sort the item table by b"] = await page.evaluate("""(() => {
            const t0 = performance.now();
            const th = Array.from(document.querySelectorAll('#item-table thead th')).find(h => h.textContent === 'b');
            th.querySelector('button').click();
            document.body.offsetHeight;
            return (performance.now() - t0) / 1000; })()""")
        timings["find one item by id"] = await page.evaluate(f"""(() => {{
            const t0 = performance.now(), box = document.getElementById('item-filter');
            box.value = '{rows // 2 + 10000}';
            box.dispatchEvent(new Event('input'));
            document.body.offsetHeight;
            return (performance.now() - t0) / 1000; }})()""")
        timings["show every row again"] = await page.evaluate("""(() => {
            const t0 = performance.now(), box = document.getElementById('item-filter');
            box.value = '';
            box.dispatchEvent(new Event('input'));
            document.body.offsetHeight;
            return (performance.now() - t0) / 1000; })()""")
        started = time.perf_counter()
        await page.evaluate("document.getElementById('item-csv').click()")
        await page.wait_for_event("Browser.downloadProgress", state="completed", timeout=120)
        timings["download the CSV of every row"] = time.perf_counter() - started
    started = time.perf_counter()
    async with Page.open(path, javascript=False):
        timings["open with JavaScript off"] = time.perf_counter() - started
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--students", type=int, default=400_000)
    parser.add_argument("--server", help="PostgreSQL URL to create the scratch database on")
    parser.add_argument("--keep", metavar="FILE", help="keep the page here")
    args = parser.parse_args()

    server = _server(args.server)
    name = f"review_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    engine = sa.create_engine(server.set(database=name))
    try:
        migrate(engine)
        review = synthetic_review(args.items, args.students)
        started = time.perf_counter()
        store(engine, review)
        fill = time.perf_counter() - started
        rows = []
        started = time.perf_counter()
        loaded = load_review(engine, review.run.run_id)
        rows.append(("read the run, the previous run and the history from PostgreSQL", time.perf_counter() - started))
        started = time.perf_counter()
        page = render(loaded)
        rows.append(("write the page (statistics, plots, HTML)", time.perf_counter() - started))
        path = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="review-page-")) / "review.html"
        path.write_text(page, encoding="utf-8")
        size, packed = path.stat().st_size, len(gzip.compress(page.encode(), 6))
        rows += list(asyncio.run(_in_browser(path, args.items)).items())
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    print(f"{args.items:,} items, {args.students:,} students, two runs and a history of "
          f"{len(loaded.history)}; {os.cpu_count()} cores ({platform.processor() or platform.machine()}); "
          f"database filled in {fill:.1f} s (untimed)\n")
    print(f"page: {size / 1e6:.2f} MB ({packed / 1e6:.2f} MB gzipped), "
          f"{page.count('<tr>'):,} table rows, {page.count('<svg'):,} plots\n")
    print("| step | seconds |\n|---|---:|")
    for what, seconds in rows:
        print(f"| {what} | {seconds:.2f} |")


if __name__ == "__main__":
    main()
