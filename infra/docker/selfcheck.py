"""Check that the installed service is whole: every module imports, its data files are there.

The old system's weekly job once failed because its code was not in the image.
The image build runs this after installing the wheel, so such an image is never
produced: every module of the ``consumer`` package is imported, the event
schemas are loaded and their example messages checked against them, the SQL
migrations are listed, and the command line parses. ``tests/repository/test_infra.py``
runs it too.

Exit status 0 when all is there, 1 with one line per problem otherwise.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import sys
from importlib import resources


def problems() -> list[str]:
    found: list[str] = []
    try:
        import consumer
    except ImportError as missing:
        return [f"the consumer package is not installed: {missing}"]

    for module in pkgutil.walk_packages(consumer.__path__, prefix="consumer."):
        try:
            importlib.import_module(module.name)
        except Exception as problem:  # any failure to import is a broken image
            found.append(f"module {module.name} does not import: {type(problem).__name__}: {problem}")

    from consumer.bus import events
    for event in ("calibration-requested", "calibration-completed"):
        try:
            events.validator(event)
        except Exception as problem:
            found.append(f"schema of {event} cannot be loaded: {type(problem).__name__}: {problem}")
    examples = resources.files("consumer.schemas").joinpath(events.SCHEMA_VERSION, "examples")
    names = sorted(entry.name for entry in examples.iterdir() if entry.name.endswith(".json"))
    if not names:
        found.append("no example messages under consumer/schemas/*/examples: the schemas' data files are missing")
    for name in names:
        event = name.split(".", 1)[0]
        errors = list(events.validator(event).iter_errors(json.loads(examples.joinpath(name).read_text())))
        if errors:
            found.append(f"example {name} does not match its schema: {errors[0].message}")

    from consumer.db import migrations
    if not migrations.available():
        found.append("no SQL migrations found in consumer/db/migrations: the package data is missing")

    from consumer.__main__ import build_parser
    for command in ("serve", "calibrate", "migrate", "publish"):
        try:
            build_parser().parse_args([command])
        except SystemExit:
            found.append(f"the command line has no {command!r} command")
    return found


def main() -> int:
    found = problems()
    for line in found:
        print(f"selfcheck: {line}", file=sys.stderr)
    if not found:
        print("selfcheck: the consumer package, its schemas, examples and migrations are all installed",
              file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
