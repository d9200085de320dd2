"""Standard errors of item parameters from the observed information (Louis, 1982).

``standard_errors`` promises, for every estimated item, standard errors of
a, b (by the delta method), c and d from the observed information of the
marginal likelihood at the estimates (Bayes-modal priors' curvature
included), with the items it does not identify listed and given NaN; in a
fixed-parameter calibration also the population's mean and SD. The method
is chosen by memory, never by a size cut-off that changes the answer: the
whole matrix inverted exactly when it takes at most ``FULL_MAX_BYTES``
(``information_exact``), else an approximation within a percent or two
(``information_approximate``); both start from ``information_design``. The
derivation, the choice of budget and the benchmark against the exact
inverse: docs/psychometrics.md, "Standard errors".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .expected import FinalEStep
from .information_approximate import APPROXIMATE_FLOOR, approximate_covariance
from .information_design import BASIS, first_pass_blocks, make_design, singular_blocks
from .information_exact import diagonal_blocks, exact_covariance, full_matrix, null_items
from .model import ItemParameters, model_name
from .priors import Priors
from .quadrature import Quadrature
from .responses import Responses

#: Largest information matrix built whole and inverted, in bytes (8 per element): up to 5,792 parameters.
FULL_MAX_BYTES = 1 << 28
#: The whole matrix is never factorised past this many parameters, whatever the budget: OpenBLAS's threaded
#: Cholesky (0.3.31, as numpy and scipy ship it) crashes the process from about 16,000.
FULL_MAX_PARAMETERS = 15_000

FULL = "observed information (Louis), full"
APPROXIMATE = "observed information (Louis), item blocks + belief propagation + global deflation"


@dataclass(frozen=True)
class ItemStandardErrors:
    """Standard errors per item (NaN where an item was not estimated or is held fixed), and how they were computed."""

    a: np.ndarray
    b: np.ndarray
    c: np.ndarray
    d: np.ndarray
    method: str = FULL
    #: Items (positions in ``params``) whose parameters the information does not identify; their SEs are NaN.
    unidentified: tuple[int, ...] = ()
    #: Standard errors of the population's mean and SD when they were free (fixed-parameter calibration).
    population: tuple[float, float] | None = None
    #: Each item's 2 x 2 sampling covariance of (a, b) (NaN where there are no SEs), for Wald tests (``dif``).
    covariance_ab: np.ndarray | None = None


def standard_errors(responses: Responses, params: ItemParameters, model: str,
                    quadrature: Quadrature | None = None, priors=None,
                    final: FinalEStep | None = None, *, fixed: np.ndarray | None = None,
                    population: tuple[float, float] | None = None, method: str = "auto",
                    max_bytes: int | None = None) -> ItemStandardErrors:
    """Standard errors of a, b, c and d for every item, from the observed information.

    The whole matrix when it takes at most ``max_bytes`` (default
    ``FULL_MAX_BYTES``), else the approximation (``information_approximate``);
    ``method`` "full" or "approximate" forces one. The 1PL's common slope is
    one parameter shared by all items (its SE is the same for all).
    ``priors`` (``priors.Priors``) are those the estimates were found
    under (empirical ones centred where ``params`` put them); their curvature
    is added: log a ~ N and b ~ N when ``on_a_b`` (2PL
    and 3PL), and the 3PL's Beta prior on c always (the default ``Priors()``
    when none is given). ``final`` is the E-step at ``params`` when the
    caller has it (on ``quadrature``; recomputed if its weights differ).

    Fixed-parameter calibration: ``fixed`` holds the positions in ``params``
    of the items held at their values (SEs NaN; their answers still inform
    the posteriors), and ``population`` = (mean, sd) the population
    estimated with them, N(mean, sd^2) on ``quadrature``'s nodes (as
    ``Quadrature.with_population``): the mean and SD are then free
    parameters of the information, ``params`` and the SEs are on that
    (the anchors') scale, and the result's ``population`` holds the mean's
    and SD's SEs.

    Items whose own block is not positive definite (or, in the whole
    matrix, that carry a direction without information) get NaN and are
    listed in ``unidentified``; the others' SEs are computed with them held
    at their values.
    """
    model = model_name(model)
    if method not in ("auto", "full", "approximate"):
        raise ValueError(f"method must be 'auto', 'full' or 'approximate', not {method!r}")
    fixed_mask = np.zeros(len(params), dtype=bool)
    if fixed is not None:
        fixed_mask[np.asarray(fixed, dtype=np.int64)] = True
    if population is not None:
        mean, sd = float(population[0]), float(population[1])
        if not (np.isfinite(mean) and np.isfinite(sd) and sd > 0):
            raise ValueError(f"population must be a finite (mean, sd) with sd > 0, not {population!r}")
        if not fixed_mask.any():
            raise ValueError("a free population needs fixed items: without them its mean and SD are not identified")
        base = quadrature or (final.quadrature if final is not None else Quadrature.normal())
        quadrature, population = base.with_population(mean, sd), (mean, sd)
    if not (np.isfinite(params.a) & np.isfinite(params.b)).any():
        # Nothing was estimated (every item screened out or held back): nothing to have an error.
        nothing = np.full(len(params), np.nan)
        return ItemStandardErrors(nothing, nothing.copy(), nothing.copy(), nothing.copy(), FULL, (),
                                  None if population is None else (float("nan"), float("nan")))
    if final is not None and quadrature is not None and (
            final.quadrature.nodes.shape != quadrature.nodes.shape
            or not np.allclose(final.quadrature.log_weights, quadrature.log_weights)):
        final = None
    final = final or FinalEStep.at(responses, params, quadrature)
    priors = Priors(on_a_b=False) if priors is None else priors
    budget = FULL_MAX_BYTES if max_bytes is None else int(max_bytes)
    fixed_local = fixed_mask[final.kept]
    dropped = np.zeros(len(final.items), dtype=bool)
    covariance, used = None, FULL
    for _ in range(4):  # each round holds back the items found not identified, and tries again
        design = make_design(final, model, priors, fixed_local, population, dropped)
        if design.n_params == 0:
            break
        if method == "full" and design.n_params > FULL_MAX_PARAMETERS:
            raise ValueError(f"the full information is not factorised past {FULL_MAX_PARAMETERS:,} parameters "
                             f"(this calibration has {design.n_params:,}); use method='auto' or 'approximate'")
        full = method == "full" or (method == "auto" and design.n_params**2 * 8 <= budget
                                    and design.n_params <= FULL_MAX_PARAMETERS)
        used = FULL if full else APPROXIMATE
        if full:
            lower = full_matrix(design)
            blocks = diagonal_blocks(design, lower)
        else:
            cache = np.zeros((design.data.n_obs, design.comp.size, BASIS), dtype=np.float32)
            first = design.first_pass(cache, APPROXIMATE_FLOOR)
            blocks = first_pass_blocks(design, first)
        bad = singular_blocks(blocks.own)
        if bad.any():
            dropped[np.flatnonzero(design.free)[bad]] = True
            continue
        if blocks.globals.size and singular_blocks(blocks.globals[None])[0]:
            break
        if not full:
            covariance = approximate_covariance(design, cache, first)
            break
        covariance = exact_covariance(design, lower)
        if covariance is not None:
            break
        del lower
        found = null_items(design)
        if found is None or not found.any():
            break
        dropped |= found
    return _assemble(params, model, final, design, covariance, dropped, used, population is not None)


def _assemble(params, model, final, design, covariance, dropped, method, free_population) -> ItemStandardErrors:
    n = len(params)
    se_a, se_d, se_c, se_b = (np.full(n, np.nan) for _ in range(4))
    unidentified = {int(j) for j in final.kept[dropped]}
    population = (float("nan"), float("nan")) if free_population else None
    if covariance is None:
        unidentified |= {int(j) for j in final.kept[design.free]}
        return ItemStandardErrors(se_a, se_b, se_c, se_d, method, tuple(sorted(unidentified)), population)
    cov = covariance.items
    a, d = final.items.a, final.items.d
    with np.errstate(invalid="ignore", divide="ignore"):
        var_b = (d / a**2) ** 2 * cov[:, 0, 0] + cov[:, 1, 1] / a**2 - 2 * d / a**3 * cov[:, 0, 1]
        variances = np.stack([cov[:, u, u] for u in range(design.k)] + [var_b], axis=1)
        ok = design.free & np.isfinite(variances).all(axis=1) & (variances > 0).all(axis=1)
    unidentified |= {int(j) for j in final.kept[design.free & ~ok]}
    kept = final.kept[ok]
    se_a[kept] = np.sqrt(variances[ok, 0])
    se_d[kept] = np.sqrt(variances[ok, 1])
    se_b[kept] = np.sqrt(variances[ok, -1])
    if model == "3PL":
        se_c[kept] = np.sqrt(variances[ok, 2])
    if free_population:
        var = np.diag(covariance.globals)[-2:]
        population = tuple(float(np.sqrt(v)) if np.isfinite(v) and v > 0 else float("nan") for v in var)
    # (a, b) from (a, d) by the delta method: b = -d / a, so db/da = d / a^2 and db/dd = -1 / a.
    cov_ab = np.full((n, 2, 2), np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        jacobian = np.zeros((a.size, 2, 2))
        jacobian[:, 0, 0], jacobian[:, 1, 0], jacobian[:, 1, 1] = 1.0, d / a**2, -1.0 / a
        cov_ab[kept] = (jacobian @ cov[:, :2, :2] @ jacobian.transpose(0, 2, 1))[ok]
    return ItemStandardErrors(se_a, se_b, se_c, se_d, method, tuple(sorted(unidentified)), population, cov_ab)


def item_information(responses: Responses, params: ItemParameters, *, free_c: bool = False,
                     quadrature: Quadrature | None = None, final: FinalEStep | None = None) -> np.ndarray:
    """Each estimated item's own block of the observed information over (a, d[, c]), no priors; NaN for the others."""
    final = final or FinalEStep.at(responses, params, quadrature)
    none = np.zeros(len(final.items), dtype=bool)
    design = make_design(final, "3PL" if free_c else "2PL", None, none, None, none)
    out = np.full((len(params), design.k, design.k), np.nan)
    out[final.kept] = first_pass_blocks(design, design.first_pass()).own
    return out


def full_information(responses: Responses, params: ItemParameters, *, free_c: bool = False,
                     quadrature: Quadrature | None = None, final: FinalEStep | None = None) -> np.ndarray:
    """The whole observed information over (a_1, d_1[, c_1], a_2, ...) of the estimated items, no priors."""
    final = final or FinalEStep.at(responses, params, quadrature)
    none = np.zeros(len(final.items), dtype=bool)
    lower = full_matrix(make_design(final, "3PL" if free_c else "2PL", None, none, None, none))
    return np.tril(lower) + np.tril(lower, -1).T
