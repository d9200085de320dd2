"""``python -m consumer report RUN_ID``: the run review, one self-contained HTML page.

- ``load``: the run, its results, the previous run of its scope, the last
  runs' history and a bank run's, assembled from ``db.review``'s reads (the
  SQL, and it only reads);
- ``view``: the view model, what each section shows as plain data;
- ``statistics``: test information, reliability, the anchors' drift, item
  movement: numbers from arrays, no I/O;
- ``figures`` and ``svg``: the plots, as inline SVG;
- ``page``, ``markup``, ``formats`` and ``assets``: the HTML laid out from the
  view model, how numbers and names are written, the style sheet and the few
  lines of JavaScript.

The page opens offline (nothing is fetched) and reads with JavaScript off.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import ConfigError
from .load import Review, RunNotFound, find_run, load_review
from .page import render

__all__ = ["Review", "RunNotFound", "find_run", "load_review", "render", "writable_output"]


def writable_output(name: str) -> Path:
    """``name`` as the page's path, or a ``ConfigError`` now, before any work, if it cannot be written."""
    path = Path(name).expanduser()
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise ConfigError(f"--output {name} is a directory", "name a file, for example review.html")
    if not folder.is_dir():
        raise ConfigError(f"--output {name}: directory {folder} does not exist", "create it or write elsewhere")
    if not os.access(folder, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ConfigError(f"--output {name}: no permission to write there", "choose another file with -o")
    return path
