"""The review page in a real browser: Debian's chromium, headless, driven over the DevTools Protocol.

Sorting, finding and the CSV download are the page's only JavaScript; with
JavaScript off the page must still hold everything, the controls hidden.
"""

from __future__ import annotations

import asyncio
import csv
import io
import re

import pytest

from consumer.review import render

from tests.support.browser import Page, chromium_path
from tests.support.review_data import FIRST_ID, HELD_BACK, MISFITTING, MOVED, synthetic_review

ROWS = "Array.from(document.querySelectorAll('#item-table tbody tr'))"


@pytest.fixture(scope="module")
def page_file(tmp_path_factory):
    chromium_path()  # installs it once, or skips these tests saying why
    review = synthetic_review(n_items=300, n_students=5000)
    path = tmp_path_factory.mktemp("review") / "review.html"
    path.write_text(render(review), encoding="utf-8")
    return path


def visible_ids(page: Page):
    return page.evaluate(f"{ROWS}.filter(r => !r.hidden).map(r => Number(r.cells[0].textContent))")


HEADINGS = "Array.from(document.querySelectorAll('#item-table thead th')).map(h => h.textContent)"


async def column(page: Page, name: str):
    k = (await page.evaluate(HEADINGS)).index(name)
    return await page.evaluate(f"{ROWS}.map(r => r.cells[{k}].textContent)")


async def click_heading(page: Page, name: str) -> str:
    return await page.evaluate(f"""(() => {{
        const th = Array.from(document.querySelectorAll('#item-table thead th')).find(h => h.textContent === {name!r});
        th.querySelector('button').click();
        return th.getAttribute('aria-sort');
    }})()""")


async def find(page: Page, text: str = "", flagged_only: bool = False) -> str:
    return await page.evaluate(f"""(() => {{
        const box = document.getElementById('item-filter'), only = document.getElementById('item-flagged');
        box.value = {text!r};
        box.dispatchEvent(new Event('input'));
        if (only.checked !== {str(flagged_only).lower()}) only.click();
        return document.getElementById('item-shown').textContent;
    }})()""")


def test_sorting_finding_and_downloading_the_item_table_in_chromium(page_file):
    async def scenario():
        async with Page.open(page_file) as page:
            assert await page.evaluate("!document.getElementById('item-controls').hidden")
            # A page of 250 rows at a time (laying out 20,000 at every sort would take seconds), then more.
            assert len(await visible_ids(page)) == 250
            assert await page.evaluate("document.getElementById('item-shown').textContent") == \
                "300 of 300 items match; the first 250 shown"
            assert await page.evaluate("document.getElementById('item-more').textContent") == "Show 50 more"
            await page.evaluate("document.getElementById('item-more').click()")
            assert len(await visible_ids(page)) == 300
            assert await page.evaluate("document.getElementById('item-more').hidden")
            # Sort by difficulty, both ways; blanks (items held back) stay last either way.
            assert await click_heading(page, "b") == "ascending"
            b = await column(page, "b")
            numbers = [float(x) for x in b if x]
            assert numbers == sorted(numbers) and b[-len(HELD_BACK):] == [""] * len(HELD_BACK)
            assert await click_heading(page, "b") == "descending"
            numbers = [float(x) for x in await column(page, "b") if x]
            assert numbers == sorted(numbers, reverse=True)
            # Sort by the number of answers, written with thousands separators.
            await click_heading(page, "answers")
            answers = [int(x.replace(",", "")) for x in await column(page, "answers") if x]
            assert answers == sorted(answers)
            # Find one item by its id, then the misfitting ones by their flag.
            assert await find(page, str(FIRST_ID + 123)) == "1 of 300 items match"
            assert await visible_ids(page) == [FIRST_ID + 123]
            await find(page, "misfit")
            assert sorted(await visible_ids(page)) == [FIRST_ID + j for j in MISFITTING]
            await find(page, "moved")
            assert FIRST_ID + MOVED[0] in await visible_ids(page)
            # Flagged only: every row shown has a flag other than "anchor", and every such row is shown.
            await find(page, "", flagged_only=True)
            flags = await page.evaluate(f"{ROWS}.map(r => [r.hidden, r.cells[1].textContent])")
            assert flags and all(hidden == (text in ("", "anchor")) for hidden, text in flags)  # a kept anchor is fine
            # The CSV of the rows shown: the misfitting items, numbers as a spreadsheet reads them.
            await find(page, "misfit", flagged_only=False)
            await page.evaluate("document.getElementById('item-csv').click()")
            done = await page.wait_for_event("Browser.downloadProgress", state="completed")
            saved = list(page.downloads.iterdir())
            assert len(saved) == 1 and saved[0].name.startswith("items-"), (done, saved)
            rows = list(csv.reader(io.StringIO(saved[0].read_text())))
            assert rows[0][:6] == ["item", "flags", "a", "SE a", "b", "SE b"]
            assert sorted(int(r[0]) for r in rows[1:]) == [FIRST_ID + j for j in MISFITTING]
            answers = rows[0].index("answers")
            assert all(r[1] == "misfit" and float(r[2]) > 0 and int(r[answers]) >= 150 for r in rows[1:])

    asyncio.run(scenario())


def test_with_javascript_off_the_page_holds_every_item_and_hides_the_controls(page_file):
    async def scenario():
        async with Page.open(page_file, javascript=False) as page:
            controls_shown = await page.evaluate("getComputedStyle(document.getElementById('item-controls')).display")
            rows_shown = await page.evaluate(f"{ROWS}.filter(r => getComputedStyle(r).display !== 'none').length")
            return await page.html(), controls_shown, rows_shown

    dom, controls_shown, rows_shown = asyncio.run(scenario())
    assert controls_shown == "none", "the controls must stay hidden without JavaScript"
    assert rows_shown == 300, "without JavaScript every row is shown, not a page of them"
    table = dom[dom.index('id="item-table"'):]
    ids = re.findall(r'<tr><td class="n">(\d+)</td>', table)
    assert len(ids) == 300 and ids[:3] == [str(FIRST_ID), str(FIRST_ID + 1), str(FIRST_ID + 2)]  # by id
    assert re.search(r'<div id="item-controls" hidden="">', dom), "the controls must stay hidden without JavaScript"
    assert "<button" not in table[:table.index("</thead>")], "no sort buttons without JavaScript"
    assert "the table below holds every item all the same" in dom
    # Every plot is drawn by the page itself, JavaScript or not.
    assert dom.count("<svg") >= 10 and "Wright map" in dom


def test_the_page_lays_out_at_a_laptop_width_without_a_horizontal_scrollbar(page_file, tmp_path):
    async def scenario():
        async with Page.open(page_file, width=1280, height=800) as page:
            overflow = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            await page.screenshot(tmp_path / "top.png")
            return overflow

    assert asyncio.run(scenario()) <= 0
    assert (tmp_path / "top.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
