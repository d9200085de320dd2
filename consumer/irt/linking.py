"""Linking a new calibration onto the scale of earlier ones through anchor items.

Constants follow SPEC: theta_old = slope * theta_new + intercept, so that
b_old = slope * b_new + intercept and a_old = a_new / slope (``c`` is
unchanged). Four methods (Kolen & Brennan, 2014, *Test Equating, Scaling,
and Linking*, ch. 6):

- ``stocking-lord`` (Stocking & Lord, 1983, Applied Psychological
  Measurement 7, 201-210): the anchors' test characteristic curve, placed on
  the old scale, matches the one their reference parameters give, in least
  squares over a grid of old-scale abilities;
- ``haebara`` (Haebara, 1980, Japanese Psychological Research 22, 144-149):
  the same, item by item;
- ``mean-mean`` (Loyd & Hoover, 1980): slope from the mean discriminations,
  intercept from the mean difficulties;
- ``mean-sigma`` (Marco, 1977): slope from the spread of the difficulties.

The grid and weights of the curve methods are those of ``mirt.equating.link``
(61 points on [-4, 4], standard normal weights), which this module
reproduces. Standard errors of the constants are jackknife estimates over
the anchors (how much the constants depend on which anchors were tagged).

Anchor drift screening (``screen_drift``) compares each anchor's new
estimate, placed on the old scale, with its reference parameters, and drops
drifting anchors one at a time, relinking after each.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from .model import ItemParameters

STOCKING_LORD = "stocking-lord"
HAEBARA = "haebara"
MEAN_MEAN = "mean-mean"
MEAN_SIGMA = "mean-sigma"
FIXED = "fipc"
UNLINKED = "none"
METHODS = (STOCKING_LORD, HAEBARA, MEAN_MEAN, MEAN_SIGMA)
#: Every way a run can put its estimates on the anchors' scale (FIPC lives in ``fipc.py``).
RUN_METHODS = METHODS + (FIXED,)

#: Fewer anchors than this cannot fix both a slope and an intercept.
MIN_ANCHORS = 2
#: Robust z beyond which an anchor's difficulty or log discrimination counts as drifted.
DEFAULT_DRIFT_THRESHOLD = 3.0
# Floors of the robust spread: in logits for raw shifts (so that anchors that
# agree almost perfectly do not make tiny noise look like drift), and in
# standard errors for standardized shifts (a spread below the sampling error
# is luck, not precision).
_MIN_SPREAD = 0.05
_MIN_STANDARDIZED_SPREAD = 1.0
#: Drift must also matter in size, or a bank's many anchors make chance alarms:
#: a difficulty moved by at least this many logits, or a discrimination by this factor.
MIN_B_DRIFT = 0.3
MIN_A_DRIFT_RATIO = 1.5

_GRID = np.linspace(-4.0, 4.0, 61)
_GRID_WEIGHTS = np.exp(-0.5 * _GRID**2) / np.exp(-0.5 * _GRID**2).sum()


@dataclass(frozen=True)
class LinkingConstants:
    """theta_old = slope * theta_new + intercept, found by ``method`` on ``n_anchors`` anchors."""

    method: str
    slope: float
    intercept: float
    n_anchors: int = 0
    slope_se: float | None = None
    intercept_se: float | None = None

    def as_dict(self) -> dict:
        return {"method": self.method, "slope": self.slope, "intercept": self.intercept,
                "n_anchors": self.n_anchors, "slope_se": self.slope_se, "intercept_se": self.intercept_se}


IDENTITY = LinkingConstants(UNLINKED, 1.0, 0.0, 0)


class LinkingError(ValueError):
    """The anchors cannot determine linking constants."""


def _require_anchors(reference: ItemParameters, new: ItemParameters) -> None:
    if len(reference) != len(new):
        raise LinkingError("reference and new anchor parameters differ in length")
    if len(new) < MIN_ANCHORS:
        raise LinkingError(f"{len(new)} usable anchors; at least {MIN_ANCHORS} are needed")


def mean_sigma(reference: ItemParameters, new: ItemParameters) -> LinkingConstants:
    """Marco's mean/sigma constants from the anchors' difficulties."""
    _require_anchors(reference, new)
    spread_new, spread_ref = np.std(new.b, ddof=1), np.std(reference.b, ddof=1)
    if spread_new == 0 or spread_ref == 0:
        raise LinkingError("the anchors' difficulties have no spread")
    slope = float(spread_ref / spread_new)
    return LinkingConstants(MEAN_SIGMA, slope, float(reference.b.mean() - slope * new.b.mean()), len(new))


def mean_mean(reference: ItemParameters, new: ItemParameters) -> LinkingConstants:
    """Loyd and Hoover's mean/mean constants: a_old = a_new / slope on average."""
    _require_anchors(reference, new)
    slope = float(new.a.mean() / reference.a.mean())
    return LinkingConstants(MEAN_MEAN, slope, float(reference.b.mean() - slope * new.b.mean()), len(new))


def _curve_link(reference: ItemParameters, new: ItemParameters, item_level: bool) -> tuple[float, float]:
    """Least-squares curve matching in (log slope, intercept), from the mean/sigma (or mean/mean) start."""
    root_w = np.sqrt(_GRID_WEIGHTS)[:, None]
    target = reference.probability(_GRID)
    if not item_level:
        target = target.sum(axis=1, keepdims=True)

    def placed(params):
        return new.on_scale(float(np.exp(params[0])), float(params[1]))

    def residuals(params):
        curves = placed(params).probability(_GRID)
        if not item_level:
            curves = curves.sum(axis=1, keepdims=True)
        return (root_w * (target - curves)).ravel()

    def jacobian(params):
        # The placed curves depend on (slope, intercept) only through
        # u = (theta - intercept) / slope, so d/d intercept = -d/d theta and
        # d/d log slope = -(theta - intercept) d/d theta; residual = target -
        # placed flips both signs.
        items = placed(params)
        p_star = 1.0 / (1.0 + np.exp(-items.a * (_GRID[:, None] - items.b)))
        dtheta = (1.0 - items.c) * items.a * p_star * (1.0 - p_star)
        if not item_level:
            dtheta = dtheta.sum(axis=1, keepdims=True)
        shifted = (_GRID - params[1])[:, None]
        return np.column_stack(((root_w * dtheta * shifted).ravel(), (root_w * dtheta).ravel()))

    try:
        start = mean_sigma(reference, new)
    except LinkingError:
        start = mean_mean(reference, new)
    if not np.isfinite(start.slope) or start.slope <= 0:
        start = replace(start, slope=1.0, intercept=0.0)
    from scipy.optimize import least_squares  # here: its import takes half a second most commands need not wait

    fit = least_squares(residuals, x0=[np.log(start.slope), start.intercept], jac=jacobian,
                        method="lm", xtol=1e-12, ftol=1e-12)
    if not fit.success or not np.all(np.isfinite(fit.x)):
        raise LinkingError(f"curve matching did not converge: {fit.message}")
    return float(np.exp(fit.x[0])), float(fit.x[1])


def stocking_lord(reference: ItemParameters, new: ItemParameters) -> LinkingConstants:
    """Stocking-Lord constants (test characteristic curves)."""
    _require_anchors(reference, new)
    return LinkingConstants(STOCKING_LORD, *_curve_link(reference, new, item_level=False), len(new))


def haebara(reference: ItemParameters, new: ItemParameters) -> LinkingConstants:
    """Haebara constants (item characteristic curves, item by item)."""
    _require_anchors(reference, new)
    return LinkingConstants(HAEBARA, *_curve_link(reference, new, item_level=True), len(new))


_METHODS = {STOCKING_LORD: stocking_lord, HAEBARA: haebara, MEAN_MEAN: mean_mean, MEAN_SIGMA: mean_sigma}


def link(reference: ItemParameters, new: ItemParameters, method: str = STOCKING_LORD,
         *, standard_errors: bool = False) -> LinkingConstants:
    """Constants placing ``new`` anchor estimates on the scale of their ``reference`` values.

    With ``standard_errors``, the jackknife over anchors gives the constants'
    standard errors (one relinking per anchor; at least three anchors).
    """
    try:
        linker = _METHODS[method]
    except KeyError:
        raise ValueError(f"unknown linking method {method!r}; choose one of {', '.join(METHODS)}") from None
    constants = linker(reference, new)
    n = len(new)
    if not standard_errors or n < 3:
        return constants
    leave_one_out = []
    for j in range(n):
        keep = np.arange(n) != j
        try:
            c = linker(reference.take(keep), new.take(keep))
            leave_one_out.append((c.slope, c.intercept))
        except LinkingError:
            return constants
    values = np.array(leave_one_out)
    spread = np.sqrt((n - 1) / n * ((values - values.mean(axis=0)) ** 2).sum(axis=0))
    return replace(constants, slope_se=float(spread[0]), intercept_se=float(spread[1]))


@dataclass(frozen=True)
class DriftScreen:
    """Linking after drifting anchors were dropped; ``dropped`` maps anchor position to the reason."""

    constants: LinkingConstants
    kept: np.ndarray
    dropped: dict[int, str] = field(default_factory=dict)
    #: Per anchor, on the old scale: new b minus reference b, and log new a minus log reference a.
    b_shift: np.ndarray | None = None
    log_a_shift: np.ndarray | None = None
    #: Why the kept anchors, taken together, cannot be trusted (empty when they can).
    disagreement: str = ""


@dataclass(frozen=True)
class AnchorErrors:
    """Standard errors of the anchors' difficulty and discrimination, new (calibration scale) and reference."""

    new_b: np.ndarray
    new_a: np.ndarray
    reference_b: np.ndarray | None = None
    reference_a: np.ndarray | None = None


def screen_drift(reference: ItemParameters, new: ItemParameters, method: str = STOCKING_LORD,
                 threshold: float = DEFAULT_DRIFT_THRESHOLD, errors: AnchorErrors | None = None,
                 *, standard_errors: bool = True) -> DriftScreen:
    """Link, drop the most drifting anchor past ``threshold``, relink; repeat until none drifts.

    An anchor drifts when, with its new estimate placed on the old scale, the
    robust z (median and scaled MAD over the anchors still kept) of its
    difficulty shift exceeds ``threshold`` and the shift is at least
    ``MIN_B_DRIFT`` logits, or the same holds for its log-discrimination
    shift and a ratio of ``MIN_A_DRIFT_RATIO``. With ``errors``, each shift is first divided by its
    standard error (new and, when known, reference), so that an imprecisely
    estimated anchor is not mistaken for a drifting one. Screening stops at
    three anchors (below that a robust spread means nothing); whether what
    is left is enough to link on is the caller's decision. A ``threshold`` of
    0 turns screening off. ``standard_errors=False`` skips the final
    jackknife (one relinking per kept item: too many on a whole bank).
    """
    kept = np.ones(len(new), dtype=bool)
    dropped: dict[int, str] = {}
    while True:
        index = np.flatnonzero(kept)
        constants = link(reference.take(index), new.take(index), method)
        placed = new.on_scale(constants.slope, constants.intercept)
        b_shift = placed.b - reference.b
        log_a_shift = np.log(placed.a) - np.log(reference.a)
        if threshold <= 0 or index.size <= 3:
            break
        z_b, z_a = drift_z(reference, new, constants, errors, index)
        z_b, z_a = z_b[index], z_a[index]
        worst = np.maximum(np.abs(z_b), np.abs(z_a))
        position = int(np.argmax(worst))
        if worst[position] <= threshold:
            break
        anchor = int(index[position])
        which = "difficulty" if abs(z_b[position]) >= abs(z_a[position]) else "discrimination"
        dropped[anchor] = (
            f"{which} drifted: b {reference.b[anchor]:.3f} -> {placed.b[anchor]:.3f}, "
            f"a {reference.a[anchor]:.3f} -> {placed.a[anchor]:.3f} on the old scale "
            f"(robust z {z_b[position]:+.1f} on b, {z_a[position]:+.1f} on log a; threshold {threshold:g})")
        kept[anchor] = False
    index = np.flatnonzero(kept)
    final = link(reference.take(index), new.take(index), method, standard_errors=standard_errors)
    return DriftScreen(final, kept, dropped, b_shift, log_a_shift,
                       _disagreement(b_shift[index], final, new.take(index), errors, index, threshold))


def drift_z(reference: ItemParameters, new: ItemParameters, constants: LinkingConstants,
            errors: AnchorErrors | None, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every item's robust z of its difficulty and log-discrimination shift, with ``new`` placed by ``constants``.

    The centre and spread (median and scaled MAD) are those of the items at
    ``index``; with ``errors``, each shift is first divided by its standard
    error. A shift smaller than ``MIN_B_DRIFT`` logits (or a discrimination
    ratio under ``MIN_A_DRIFT_RATIO``) has z 0: drift must matter in size.
    """
    placed = new.on_scale(constants.slope, constants.intercept)
    b_shift = placed.b - reference.b
    log_a_shift = np.log(placed.a) - np.log(reference.a)
    if errors is None:
        x_b, x_a, floor = b_shift, log_a_shift, _MIN_SPREAD
    else:
        se_b = np.hypot(errors.new_b * constants.slope,
                        0.0 if errors.reference_b is None else np.nan_to_num(errors.reference_b))
        se_log_a = np.hypot(errors.new_a / new.a,
                            0.0 if errors.reference_a is None else np.nan_to_num(errors.reference_a / reference.a))
        x_b, x_a, floor = b_shift / se_b, log_a_shift / se_log_a, _MIN_STANDARDIZED_SPREAD
    z_b = robust_z(x_b, index, floor)
    z_a = robust_z(x_a, index, floor)
    return (np.where(np.abs(b_shift) >= MIN_B_DRIFT, z_b, 0.0),
            np.where(np.abs(log_a_shift) >= np.log(MIN_A_DRIFT_RATIO), z_a, 0.0))


def robust_z(values: np.ndarray, among, floor: float) -> np.ndarray:
    """(value - median) / max(1.4826 * MAD, floor), the median and MAD taken over ``values[among]``.

    A spread below ``floor`` is luck, not precision: in logits for raw
    shifts, in standard errors for standardized ones.
    """
    centre = np.median(values[among])
    # 1.4826 = 1 / Phi^-1(3/4): makes the median absolute deviation estimate a normal standard deviation.
    spread = max(1.4826 * float(np.median(np.abs(values[among] - centre))), floor)
    return (values - centre) / spread


def _disagreement(b_shift, constants, new, errors, index, threshold) -> str:
    """When most anchors drift, none looks like an outlier: the shifts are just wide. Say so."""
    if threshold <= 0 or b_shift.size < 3:
        return ""
    spread_logits = 1.4826 * np.median(np.abs(b_shift - np.median(b_shift)))
    if spread_logits < MIN_B_DRIFT:
        return ""
    if errors is not None:
        standardized = b_shift / (errors.new_b[index] * constants.slope)
        spread = 1.4826 * np.median(np.abs(standardized - np.median(standardized)))
        if spread <= threshold:
            return ""
        return (f"the anchors' difficulty shifts spread over {spread_logits:.2f} logits, {spread:.1f} standard "
                f"errors (robust), beyond the drift threshold {threshold:g}: the anchors disagree with their "
                "reference values as a whole")
    return (f"the anchors' difficulty shifts spread over {spread_logits:.2f} logits (robust): the anchors "
            "disagree with their reference values as a whole")
