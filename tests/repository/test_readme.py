"""The README stays true: its commands are CI's, it documents every setting, and its layout is the package's."""

import re
from pathlib import Path

from consumer.settings import SPECS

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
#: Variables the table lists that libraries read rather than consumer/settings.py.
LIBRARY_VARIABLES = {"PUBSUB_EMULATOR_HOST"}


def first_commands() -> list[str]:
    block = README.split("```bash", 1)[1].split("```", 1)[0]
    return [line.split("#")[0].strip() for line in block.strip().splitlines()]


def section(heading: str) -> str:
    """The README's text under ``## heading``, up to the next heading of that level."""
    return README.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]


def configuration_rows() -> dict[str, str]:
    """The configuration table: each variable named in a row's first cell, and that row's default cell."""
    rows = {}
    for line in section("Configuration").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) >= 3 and cells[0].startswith("`"):
            for variable in re.findall(r"`([A-Z0-9_]+)`", cells[0]):
                rows[variable] = cells[1]
    return rows


def test_readme_opens_with_the_demo_and_the_test_command_that_ci_runs():
    demo, tests = first_commands()
    assert demo == 'pip install -e ".[local]" && python -m consumer demo'
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci == tests


def test_every_setting_is_documented_with_its_default():
    rows = configuration_rows()
    for spec in SPECS.values():
        assert spec.env in rows, f"{spec.env} has no row in the README's configuration table"
        if spec.default not in ("", False):
            assert rows[spec.env] in (f"`{spec.default}`", f"`{str(spec.default).lower()}`"), \
                f"the README gives {spec.env} the default {rows[spec.env]}, the service {spec.default!r}"


def test_the_configuration_table_names_no_setting_the_service_does_not_have():
    known = {spec.env for spec in SPECS.values()} | LIBRARY_VARIABLES
    unknown = set(configuration_rows()) - known
    assert not unknown, f"the README's configuration table names settings the service does not have: {unknown}"


def test_the_layout_names_every_module_of_the_package():
    layout = section("Layout")
    for module in sorted((ROOT / "consumer").rglob("*.py")):
        if module.name != "__init__.py":
            assert re.search(rf"^\s+{re.escape(module.name)}\s", layout, re.MULTILINE), \
                f"the README's layout does not name {module.relative_to(ROOT)}"
