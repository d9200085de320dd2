"""Review pages of real runs, read as a test reads them: a filled platform, a run's page, its sections and rows."""

from __future__ import annotations

import html
import re

import sqlalchemy as sa

from consumer.irt.simulate import simulate
from consumer.review import load_review, render

from .platform_data import load_simulation

ANCHORS = list(range(0, 100, 4))


def fill(engine, seed: int = 8) -> None:
    with engine.begin() as conn:
        load_simulation(conn, simulate(4000, 100, 40, seed=seed), anchors=ANCHORS, old_scale=(1.1, 0.4))


def page_of(engine, run_id: str) -> str:
    return render(load_review(engine, run_id))


def section(page: str, anchor: str) -> str:
    start = page.index(f'<section id="{anchor}">')
    return page[start:page.index("</section>", start)]


def rows_of(engine, sql: str, **params) -> list:
    with engine.connect() as conn:
        return conn.execute(sa.text(sql), params).all()


def item_rows(page: str) -> dict[int, list[str]]:
    """The item table's rows by item id, each as its cells' text."""
    table = page[page.index('id="item-table"'):]
    table = table[table.index("<tbody>"):table.index("</tbody>")]
    rows = {}
    for row in table.split("<tr>")[1:]:
        cells = [html.unescape(re.sub(r"<[^>]+>", "", c)) for c in re.split(r"<td[^>]*>", row)[1:]]
        rows[int(cells[0])] = cells
    return rows
