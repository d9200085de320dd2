"""Plausible values: the population's mean and SD without the shrinkage or the noise of point estimates.

Mislevy (1991, Psychometrika 56, 177-196); Mislevy, Beaton, Kaplan &
Sheehan (1992, Journal of Educational Measurement 29, 133-161). The mean of
EAP scores is right but their SD is too small (each is pulled toward the
prior); the SD of ML or WLE scores is too large (it adds their error).
Plausible values are draws from each student's posterior, under a prior
that is the population's own distribution: the draws of all students then
scatter like the population itself, and a statistic computed on one set of
draws (one "imputation") is unbiased for the population's. Doing it over M
sets and combining by Rubin's rules (1987, Multiple Imputation for
Nonresponse in Surveys) adds the uncertainty about each student's theta to
the statistic's sampling variance:

    estimate  Q = mean over m of Q_m
    within    W = mean over m of the sampling variance U_m of Q_m
    between   B = variance over m of Q_m (ddof 1)
    total     T = W + (1 + 1/M) B,  standard error sqrt(T).

They are for group statistics only, never a student's score: a student's
plausible values differ from one draw to the next by design.

The draws here are nodes of the quadrature grid, each with its posterior
mass (as the Python mirt port's ``generate_plausible_values`` does with its
'posterior' method); the grid's spacing (0.2 by default, on [-6, 6]) is
far below any posterior SD of a test of a few dozen items, so the discrete
draws carry the posterior's mean and variance to the grid's accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import kernels, scoring_kernels
from .chunks import in_chunks
from .linking import IDENTITY, LinkingConstants
from .model import ItemParameters
from .quadrature import Quadrature
from .responses import Responses


def draw_plausible_values(
    responses: Responses,
    params: ItemParameters,
    draws: int,
    rng: np.random.Generator,
    *,
    population: tuple[float, float] | None = None,
    linking: LinkingConstants = IDENTITY,
    quadrature: Quadrature | None = None,
) -> np.ndarray:
    """``draws`` plausible values per person (rows of NaN for persons without a usable answer), reported on the
    linked scale.

    ``population`` (mean, SD) is the population's distribution on the scale
    of ``params``: the prior the draws need to be unbiased for group
    statistics (None: the quadrature's own weights, N(0, 1) for
    ``Quadrature.normal``). The uniforms are ``rng.random((draws, persons))``, as the
    Python mirt port takes them.
    """
    quadrature = quadrature or Quadrature.normal()
    usable = np.isfinite(params.a) & np.isfinite(params.b)
    data, kept = responses.restrict_items(usable)
    uniforms = np.ascontiguousarray(rng.random((draws, data.n_persons)).T)
    values = np.full((data.n_persons, draws), np.nan)
    weighted = quadrature if population is None else quadrature.with_population(*population)
    in_chunks(scoring_kernels._plausible_values, scoring_kernels.chunk_count(), data.person_ptr, data.item,
              data.correct, kernels.as_rows(params.take(kept).log_curves(quadrature.nodes)),
              np.ascontiguousarray(weighted.log_weights), np.ascontiguousarray(quadrature.nodes, dtype=np.float64),
              uniforms, values)
    return linking.slope * values + linking.intercept


@dataclass(frozen=True)
class PopulationEstimate:
    """The population's mean and SD from M sets of plausible values, combined by Rubin's rules."""

    n: int
    draw_means: np.ndarray
    draw_sds: np.ndarray
    mean: float
    sd: float
    #: Between-imputation standard deviations (sqrt B) of the mean and of the SD.
    mean_between: float
    sd_between: float
    #: Total standard errors sqrt(W + (1 + 1/M) B).
    mean_se: float
    sd_se: float

    def as_dict(self) -> dict:
        return {"draws": int(self.draw_means.size), "n": self.n, "mean": self.mean, "sd": self.sd,
                "mean_between": self.mean_between, "sd_between": self.sd_between, "mean_se": self.mean_se,
                "sd_se": self.sd_se, "draw_means": self.draw_means.tolist(), "draw_sds": self.draw_sds.tolist()}


def population_statistics(values: np.ndarray) -> PopulationEstimate:
    """The mean and SD of the persons' plausible values (rows of ``values``; NaN rows left out), over M >= 2 draws.

    Sampling variances: SD^2 / n for a mean, SD^2 / (2 (n - 1)) for an SD
    (normal theory).
    """
    values = values[np.isfinite(values).all(axis=1)]
    n, m = values.shape
    if n < 2 or m < 2:
        raise ValueError("population statistics need at least 2 persons and 2 plausible values each")
    means = values.mean(axis=0)
    sds = values.std(axis=0, ddof=1)
    mean, mean_between, mean_se = _rubin(means, sds**2 / n)
    sd, sd_between, sd_se = _rubin(sds, sds**2 / (2.0 * (n - 1)))
    return PopulationEstimate(n, means, sds, mean, sd, mean_between, sd_between, mean_se, sd_se)


def _rubin(estimates: np.ndarray, variances: np.ndarray) -> tuple[float, float, float]:
    """Rubin's rules: the combined estimate, the between-imputation SD, the total standard error."""
    m = estimates.size
    between = float(np.var(estimates, ddof=1))
    total = float(np.mean(variances)) + (1.0 + 1.0 / m) * between
    return float(np.mean(estimates)), float(np.sqrt(between)), float(np.sqrt(total))
