"""How the review page writes numbers, times and names: for a reader, never a repr.

Fixed decimals with thousands separators (no scientific notation, even for
a log-likelihood of -89,830.25 or a last EM change of 0.00009), "yes"/"no"
for flags, times in UTC to the second, settings by what they mean.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone

import numpy as np

from ..settings import SPECS

MISSING = "\u2013"  # an en dash where there is no value

#: A run's steps (summary.durations) as the page names them, in run order.
STEPS = {"load": "load the answers", "rapid_guesses": "leave out rapid guesses", "bank": "read the scope's bank",
         "anchors": "load the anchors", "fit": "fit (EM)", "diagnostics": "standard errors and item fit",
         "dif": "DIF screen", "link": "link to the anchors' scale", "score": "score the students",
         "plausible_values": "plausible values", "write": "write the results", "total": "whole run"}

#: Counts of summary.counts as the page names them.
COUNTS = {"observations": "answers calibrated (first answer per student and item)",
          "attempts_in_window": "attempts in the window", "rapid_guesses": "rapid guesses left out",
          "users": "students", "users_scored": "students scored",
          "items": "items answered", "items_estimated": "items estimated", "items_excluded": "items not estimated",
          "items_held_back": "items held back", "anchors_tagged": "anchors tagged", "anchors": "anchors linked on"}


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def number(value, decimals: int = 3) -> str:
    """``value`` to ``decimals`` places with thousands separators; a dash when missing or not finite."""
    if not is_number(value):
        return MISSING
    text = f"{value:,.{decimals}f}"
    return text.lstrip("-") if text.strip("-0.,") == "" else text  # never "-0.000"


def numbers(values, decimals: int = 3, signed: bool = False) -> list[str]:
    """Many numbers at once for a table column, as ``number`` writes them (empty where missing: blanks sort last)."""
    pattern = f"{{:{'+' if signed else ''},.{decimals}f}}"
    zero = f"{0:.{decimals}f}"
    out = []
    for value in np.asarray(values, dtype=float).tolist():
        if value != value or value in (float("inf"), float("-inf")):
            out.append("")
        else:
            text = pattern.format(value)
            out.append(zero if text.strip("+-0.,") == "" else text)
    return out


def amount(value) -> str:
    """A quantity that is often whole (a mean number of answers): "40", or "39.6" when it is not."""
    if not is_number(value):
        return MISSING
    return f"{round(value):,}" if abs(value - round(value)) < 0.05 else f"{value:,.1f}"


def plural(n: int, one: str, many: str) -> str:
    """ "1 run", "8 runs"."""
    return f"{n:,} {one if n == 1 else many}"


def full(values) -> list[str]:
    """Numbers at full precision, as Python writes them back exactly (empty where missing): for the CSV."""
    return ["" if value != value or value in (float("inf"), float("-inf"))
            else str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
            for value in np.asarray(values, dtype=float).tolist()]


def count(value) -> str:
    return f"{int(value):,}" if is_number(value) else MISSING


def small(value) -> str:
    """A small positive quantity (a tolerance, a last change) to two significant figures, in plain decimals."""
    if not is_number(value):
        return MISSING
    if value == 0:
        return "0"
    places = max(0, 1 - math.floor(math.log10(abs(value))))
    return f"{value:.{places}f}"


def signed(value, decimals: int = 2) -> str:
    """With its sign ("+0.25", "-1.30"); a value that rounds to zero has none."""
    if not is_number(value):
        return MISSING
    text = f"{value:+.{decimals}f}"
    return text[1:] if text.strip("+-0.") == "" else text


def seconds(value) -> str:
    if not is_number(value):
        return MISSING
    if value < 60:
        return f"{value:.2f} s"
    minutes, rest = divmod(value, 60)
    return f"{int(minutes)} min {rest:.0f} s"


def when(value) -> str:
    """A timestamp (datetime or ISO 8601 text) in UTC to the second."""
    if value is None or value == "":
        return MISSING
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def run_labels(times: list, run_ids: list[str]) -> list[str]:
    """Tick labels of runs, one each, by when they were fitted ("12-03 13:43"), never one label for two runs.

    Where two runs share the minute, each gets its seconds ("12-03 13:43:07"); where they share the second too,
    the first characters of its run id ("12-03 13:43:07 89b72b93").
    """
    def repeated(labels):
        return {label for label in labels if labels.count(label) > 1}

    stamps = [when(t) for t in times]
    labels = [stamp[5:16] for stamp in stamps]
    clash = repeated(labels)
    labels = [stamp[5:19] if label in clash else label for stamp, label in zip(stamps, labels)]
    clash = repeated(labels)
    return [f"{label} {run_id[:8]}" if label in clash else label for label, run_id in zip(labels, run_ids)]


def yes_no(value) -> str:
    return MISSING if value is None else ("yes" if value else "no")


def plain(value) -> str:
    """Any stored value as words: no braces, no quotes, no True/None."""
    if value is None or value == "" or value == {} or value == []:
        return MISSING
    if isinstance(value, bool):
        return yes_no(value)
    if isinstance(value, int):
        return count(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return MISSING
        return f"{value:,.10f}".rstrip("0").rstrip(".") if abs(value) < 1e6 else count(value)  # 0.0001, 0.12, 3
    if isinstance(value, dict):
        return "; ".join(f"{label(k)}: {plain(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(plain(v) for v in value)
    return str(value)


def label(key: str) -> str:
    """A stored key as words (``linking_method`` -> "linking method")."""
    return str(key).replace("_", " ")


def setting(name: str) -> tuple[str, str]:
    """(what the setting means, its environment variable) for a stored setting name."""
    spec = SPECS.get(name)
    if spec is None:
        return label(name), ""
    return spec.help[:1].upper() + spec.help[1:], spec.env


def setting_order(name: str) -> int:
    """Where a stored setting comes in the settings' own table (unknown ones last)."""
    names = list(SPECS)
    return names.index(name) if name in names else len(names)


def scope(column: str, stored: dict | None) -> str:
    """The run's scope for a reader: "whole bank", or the scope with the question.meta key it is read from."""
    if isinstance(stored, dict) and stored.get("value") not in (None, ""):
        key = f" (question.meta key {stored['key']})" if stored.get("key") else ""
        return f"{stored['value']}{key}"
    return column if column else "whole bank"
