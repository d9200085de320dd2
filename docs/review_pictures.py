"""The pictures of the review page in docs/review.md: ``python docs/review_pictures.py PAGE.html [NAME.png ...]``.

Headless chromium takes them of PAGE.html, a page written by ``python -m consumer report RUN_ID``; the
pictures land next to this script; names after the page take only those. The ones in docs/review.md are of
a run of 4,000 students on 100 items with a planted drifting anchor and three
planted misfitting items, calibrated a week after a first run; ``review-bank.png``
is of the third weekly run of a bank (``tests/support/bank_data.py``'s weeks, ``MIRT_DRIFT_RUNS=3``)
whose item 5007 drifted a logit after the bank was adopted.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.browser import Page  # noqa: E402

HERE = Path(__file__).resolve().parent
#: (what to show: from the top of one element to the bottom of another, or at most so many pixels; the file)
PICTURES = (("body", "#summary", 1400, "review-page.png"),
            ("#misfit", "#misfit", 900, "review-item-fit.png"),
            ("#link h3", "#link", 1500, "review-link.png"),
            ("#measurement", "#measurement", 1250, "review-measurement.png"),
            ("#bank", "#bank", 1800, "review-bank.png"))


async def take(page_file: Path, names: list[str]) -> None:
    async with Page.open(page_file, width=1200, height=900) as page:
        for top, bottom, most, name in PICTURES:
            if names and name not in names or not await page.evaluate(f"!!document.querySelector({top!r})"):
                continue
            box = await page.evaluate(f"""(() => {{
                const a = document.querySelector({top!r}).getBoundingClientRect();
                const b = document.querySelector({bottom!r}).getBoundingClientRect();
                return {{x: 0, y: a.top + window.scrollY, width: document.documentElement.clientWidth,
                         height: b.bottom - a.top}}; }})()""")
            box["height"] = min(box["height"], most)
            await page.screenshot(HERE / name, clip=box)
            print(HERE / name)


if __name__ == "__main__":
    asyncio.run(take(Path(sys.argv[1]), sys.argv[2:]))
