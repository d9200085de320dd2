"""The steps of a calibration run, in SPEC's order; each takes what it needs and returns what it made.

``consumer.run`` calls them in order; read it first.
"""

from .context import RunContext
from .fit import Calibration, Diagnostics, diagnose, fit, report_fit
from .link import Link, link_scale
from .load import Anchors, load_anchors, load_observations
from .write import population, score, write

__all__ = ["Anchors", "Calibration", "Diagnostics", "Link", "RunContext", "diagnose", "fit", "link_scale",
           "load_anchors", "load_observations", "population", "report_fit", "score", "write"]
