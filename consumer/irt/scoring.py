"""Abilities by the method a run asks for: EAP (the default), MAP, ML, WLE or summed-score EAP, with standard errors.

- EAP (Bock & Mislevy 1982, Applied Psychological Measurement 6, 431-444):
  the mean of the posterior over the quadrature grid; its standard error the
  posterior standard deviation.
- MAP: the posterior's mode; its standard error from the posterior's
  curvature there, 1 / sqrt(-d^2 log L / d theta^2 + 1 / sigma^2).
- ML: the likelihood's maximum; standard error 1 / sqrt(I(theta)), the test
  information. All correct or all wrong (with the 3PL, any pattern whose
  likelihood still rises at the end of the range), the maximum is infinite:
  the estimate is then the end of the search range (theta = +-6 on the
  calibration scale, as the Python mirt port returns), reported as lying at
  the bound, with no standard error (NaN here, NULL in ``mirt_ability``).
- WLE (Warm 1989, Psychometrika 54, 427-450): the root of Warm's equation
  d log L / d theta + J / (2 I) = 0, with J = sum P' P'' / (P Q); finite for
  all-correct and all-wrong patterns. Standard error 1 / sqrt(I(theta)), as
  R mirt and the Python port give it. (For the 1PL and 2PL, J = dI/dtheta and
  WLE maximises L sqrt(I); for the 3PL, Warm's J differs from dI/dtheta.)
- EAP-sum (Thissen, Pommerich, Billeaud & Williams 1995, Applied
  Psychological Measurement 19, 39-49): the posterior mean and SD of theta
  given the summed score, with P(score | theta) by the Lord-Wingersky (1984)
  recursion. It is meant for students who took one fixed form. Students who
  answered different items are scored per form: the set of (usable) items a
  student answered is their form, and two students share a score when they
  share form and summed score. With every student on a different form this
  costs one recursion per student.

Scale. Scoring is done on the scale of ``params`` and carried to the
reported scale by the linking constants (theta' = A theta + B, SE' = A SE).
ML and WLE are equivariant under that map, so this is the same as scoring
with the linked items. MAP and EAP depend on the prior: a N(0, 1) prior on
the calibration scale is a N(B, A^2) prior on the linked scale, so scoring
the linked items with that prior gives the same numbers; the modes are
equivariant because the Jacobian of an affine map is constant. The search
range of the modes is the quadrature grid's, on the scale of ``params``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import kernels, scoring_kernels
from .chunks import in_chunks
from .linking import IDENTITY, LinkingConstants
from .model import ItemParameters
from .quadrature import Quadrature
from .responses import Responses
from .scoring_names import EAP, EAP_SUM, MAP, METHODS, ML, WLE, method_name

__all__ = ["EAP", "EAP_SUM", "MAP", "METHODS", "ML", "WLE", "Abilities", "forms", "item_information_tables",
           "method_name", "score", "score_eap"]

_MODE_CODES = {ML: scoring_kernels.ML_CODE, MAP: scoring_kernels.MAP_CODE, WLE: scoring_kernels.WLE_CODE}
#: The prior of MAP when none is given, on the scale of the parameters scored with.
STANDARD_NORMAL = (0.0, 1.0)


@dataclass(frozen=True)
class Abilities:
    """One estimate per person; ``scored`` is False (and theta NaN) for a person none of whose answers fell on an
    estimated item.

    ``bound`` is -1 or +1 where a mode (ML, MAP, WLE) is the end of the
    search range because its objective still rises there; for ML, those
    estimates are infinite and their ``se`` is NaN.
    """

    theta: np.ndarray
    se: np.ndarray
    scored: np.ndarray
    method: str = EAP
    bound: np.ndarray = field(default=None)

    def __post_init__(self) -> None:
        if self.bound is None:
            object.__setattr__(self, "bound", np.zeros(self.theta.size, dtype=np.int8))

    def at_bound(self) -> dict[str, int]:
        """How many estimates lie at the lower and at the upper end of the search range."""
        return {"lower": int((self.bound < 0).sum()), "upper": int((self.bound > 0).sum())}


def score(
    responses: Responses,
    params: ItemParameters,
    method: str = EAP,
    *,
    linking: LinkingConstants = IDENTITY,
    quadrature: Quadrature | None = None,
    prior: tuple[float, float] | None = None,
) -> Abilities:
    """Abilities by ``method`` from ``params``, reported on the linked scale.

    ``prior`` (mean, SD) is the population the Bayesian methods assume, on
    the scale of ``params``; None: the quadrature's own weights for EAP and
    EAP-sum (N(0, 1) for ``Quadrature.normal``), N(0, 1) for MAP. Responses
    to items whose parameters are NaN (not estimated) are ignored.
    """
    method = method_name(method)
    if len(params) != responses.n_items:
        raise ValueError("params must hold one entry per item of responses")
    quadrature = quadrature or Quadrature.normal()
    usable = np.isfinite(params.a) & np.isfinite(params.b)
    data, kept = responses.restrict_items(usable)
    items = params.take(kept)
    log_curves = items.log_curves(quadrature.nodes)
    bound = np.zeros(responses.n_persons, dtype=np.int8)
    weighted = quadrature if prior is None else quadrature.with_population(*prior)
    if method == EAP:
        theta, se = kernels.posterior_moments(data, log_curves, weighted.log_weights, quadrature.nodes)
    elif method == EAP_SUM:
        theta, se = _summed_score_eap(data, log_curves, weighted)
    else:
        theta, se, bound = _modes(data, items, log_curves, quadrature.nodes, _MODE_CODES[method],
                                  prior or STANDARD_NORMAL)
    return Abilities(theta=linking.slope * theta + linking.intercept, se=linking.slope * se,
                     scored=np.diff(data.person_ptr) > 0, method=method, bound=bound)


def score_eap(responses: Responses, params: ItemParameters, *, linking: LinkingConstants = IDENTITY,
              quadrature: Quadrature | None = None) -> Abilities:
    """EAP abilities with a N(0, 1) prior on the scale of ``params``, reported on the linked scale."""
    return score(responses, params, EAP, linking=linking, quadrature=quadrature)


def item_information_tables(items: ItemParameters, nodes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``[j, q]`` tables of each item's information I_j and Warm's J_j = P' P'' / (P Q) at the nodes."""
    z = items.a[:, None] * nodes[None, :] + items.d[:, None]
    s = 0.5 * (1.0 + np.tanh(0.5 * z))  # the logistic, without overflow
    t = 0.5 * (1.0 - np.tanh(0.5 * z))
    g = items.c[:, None]
    p = g + (1.0 - g) * s
    information = (1.0 - g) * items.a[:, None] ** 2 * s * s * t / p
    return np.ascontiguousarray(information), np.ascontiguousarray(information * items.a[:, None] * (1.0 - 2.0 * s))


def _modes(data: Responses, items: ItemParameters, log_curves: np.ndarray, nodes: np.ndarray, code: int,
           prior: tuple[float, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = data.n_persons
    theta, se, bound = np.full(n, np.nan), np.full(n, np.nan), np.zeros(n, dtype=np.int8)
    if code == scoring_kernels.WLE_CODE:
        information, warm = item_information_tables(items, nodes)
    else:
        information = warm = np.zeros((0, nodes.size))
    in_chunks(scoring_kernels._modes, scoring_kernels.chunk_count(), data.person_ptr, data.item, data.correct,
              np.ascontiguousarray(items.a, dtype=np.float64), np.ascontiguousarray(items.d, dtype=np.float64),
              np.ascontiguousarray(items.c, dtype=np.float64), kernels.as_rows(log_curves), information, warm,
              np.ascontiguousarray(nodes, dtype=np.float64), int(code), float(prior[0]), float(prior[1]) ** 2,
              theta, se, bound)
    return theta, se, bound


def forms(data: Responses) -> tuple[np.ndarray, np.ndarray]:
    """Each answering person's form (the set of items they answered) as an index, and one person per form.

    Returns ``form`` (-1 for persons without answers) and ``representative``
    (a person of each form).
    """
    salts = np.random.default_rng(20_240_611).integers(0, 2**63, size=(2, max(data.n_items, 1)), dtype=np.uint64)
    key_a, key_b = np.empty(data.n_persons, np.uint64), np.empty(data.n_persons, np.uint64)
    scoring_kernels.form_keys(data.person_ptr, data.item, salts[0].copy(), salts[1].copy(), key_a, key_b)
    answering = np.flatnonzero(np.diff(data.person_ptr) > 0)
    form = np.full(data.n_persons, -1, dtype=np.int64)
    if answering.size == 0:
        return form, np.zeros(0, dtype=np.int64)
    keys = np.stack([key_a[answering], key_b[answering]], axis=1)
    _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    form[answering] = inverse.ravel()
    return form, answering[first]


def _summed_score_eap(data: Responses, log_curves: np.ndarray, quadrature: Quadrature) -> tuple[np.ndarray,
                                                                                                  np.ndarray]:
    """EAP and posterior SD given (form, summed score) for every person (NaN without answers)."""
    form, representative = forms(data)
    lengths = np.diff(data.person_ptr)
    table_ptr = np.zeros(representative.size + 1, dtype=np.int64)
    np.cumsum(lengths[representative] + 1, out=table_ptr[1:])
    mean, sd = np.empty(int(table_ptr[-1])), np.empty(int(table_ptr[-1]))
    in_chunks(scoring_kernels._sum_score_tables, scoring_kernels.chunk_count(), data.person_ptr, data.item,
              representative.astype(np.int64), table_ptr, np.exp(kernels.as_rows(log_curves)),
              np.ascontiguousarray(quadrature.log_weights), np.ascontiguousarray(quadrature.nodes), mean, sd)
    answered = form >= 0
    summed = np.add.reduceat(data.correct.astype(np.int64), data.person_ptr[:-1][answered]) if answered.any() \
        else np.zeros(0, np.int64)
    theta, se = np.full(data.n_persons, np.nan), np.full(data.n_persons, np.nan)
    at = table_ptr[form[answered]] + summed
    theta[answered], se[answered] = mean[at], sd[at]
    return theta, se
