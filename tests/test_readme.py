"""The README stays true: its commands are CI's, and it documents every setting."""

from pathlib import Path

from consumer.settings import SPECS

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def first_commands() -> list[str]:
    block = README.split("```bash", 1)[1].split("```", 1)[0]
    return [line.split("#")[0].strip() for line in block.strip().splitlines()]


def test_readme_opens_with_the_demo_and_the_test_command_that_ci_runs():
    demo, tests = first_commands()
    assert demo == 'pip install -e ".[local]" && python -m consumer demo'
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci == tests


def test_every_setting_is_documented_with_its_default():
    for spec in SPECS.values():
        assert f"`{spec.env}`" in README, spec.env
        if spec.default not in ("", False):
            assert f"`{spec.default}`" in README or f"`{str(spec.default).lower()}`" in README, spec.env
