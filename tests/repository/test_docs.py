"""The documentation's links lead somewhere: every relative link to a file of the repository, and to a heading there.

Pages: the README, docs/*.md, benchmarks/README.md and infra/README.md.
Links to the web (papers, packages) are citations and are not followed; a
relative link that climbs out of the repository is a mistake, because a
reader of the repository cannot follow it.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md"),
                ROOT / "benchmarks" / "README.md", ROOT / "infra" / "README.md"])
#: [text](target) and ![alt](target); the target ends at the first space or closing parenthesis.
LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"`[^`\n]+`")


def prose(text: str) -> str:
    """The page without its code blocks and code spans, where brackets are not links."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def links(page: Path) -> list[str]:
    return LINK.findall(prose(page.read_text(encoding="utf-8")))


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"`|\*|_(?=\w)|(?<=\w)_", "", heading.strip().lower())
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


@lru_cache(maxsize=None)
def anchors(page: Path) -> frozenset[str]:
    found, seen = set(), {}
    for line in FENCE.sub("", page.read_text(encoding="utf-8")).splitlines():
        heading = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if heading:
            base = slug(heading.group(1))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return frozenset(found)


def test_the_pages_exist_and_link_to_each_other():
    assert all(page.is_file() for page in PAGES)
    assert len(PAGES) >= 8, [page.name for page in PAGES]
    assert sum(len(links(page)) for page in PAGES) > 20, "the pages should link to each other"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_relative_link_leads_to_a_file_of_the_repository_and_its_heading(page):
    broken = []
    for target in links(page):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ... a citation, not ours to check
            continue
        path, _, anchor = target.partition("#")
        destination = (page.parent / path).resolve() if path else page
        if not destination.is_relative_to(ROOT):
            broken.append(f"{target}: outside the repository")
        elif not destination.exists():
            broken.append(f"{target}: no such file")
        elif anchor and destination.suffix == ".md" and anchor not in anchors(destination):
            broken.append(f"{target}: no heading of {destination.relative_to(ROOT)} has that anchor")
    assert not broken, f"{page.relative_to(ROOT)} has broken links: " + "; ".join(broken)


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_no_page_names_a_file_outside_the_repository(page):
    text = page.read_text(encoding="utf-8")
    assert "../shared" not in text, f"{page.relative_to(ROOT)} names a file outside the repository"


def test_anchors_are_made_as_github_makes_them():
    assert slug("Trustworthy numbers on thin data") == "trustworthy-numbers-on-thin-data"
    assert slug("What was validated here, and what was not") == "what-was-validated-here-and-what-was-not"
    assert slug("3. Database user and grants") == "3-database-user-and-grants"
    assert slug("Pub/Sub") == "pubsub"
    assert slug("Fixed-parameter calibration (FIPC)") == "fixed-parameter-calibration-fipc"
