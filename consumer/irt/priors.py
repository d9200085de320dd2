"""Bayes-modal item priors: what they are, where they sit, and when a run uses them.

A 2PL fit on thin data (the median item answered by fewer than
``THIN_DATA_ANSWERS``) keeps sparse items in a plausible range with
priors on the slope and difficulty, log a ~ N(mu_a, s_a^2) and
b ~ N(mu_b, s_b^2); the 3PL's lower asymptote always has a Beta prior.
Estimates are posterior modes: the EM maximises the log-likelihood plus
``log_prior``.

Where the priors sit matters more than how wide they are. The run's scale
is fixed by its own population, N(0, 1), and the bank's items sit on it
wherever this window's students put them: with a population 10% more
spread out on the bank's scale, every slope is 10% larger on the run's.
A prior fixed at a point of the run's scale pulls each item towards that
point, and the link through the anchors reads the pull as a change of
unit. The first priors here, R mirt's lognormal(0, 0.5) density in a, had
their mode at a = exp(-0.25) = 0.78, and linked through anchors that carried
their true parameters they gave Stocking-Lord slopes 3-9% low (issue 17;
``benchmarks/linking_priors.py``). So by default (``Priors.empirical``) the
locations mu_a and mu_b are not fixed but estimated from the items every EM
cycle (empirical Bayes, a hierarchical prior whose centre follows the run's
scale): the estimates are pulled towards the centre of their own items,
which moves with the items when the unit changes, and the pull cancels
over any set of anchors that is not chosen for its slopes. The spreads stay
fixed: that of log a does not change with the unit, and that of b is wide.

How the prior on a is written matters too. The penalty is
-(log a - mu_a)^2 / (2 s_a^2), a normal density in log a, whose mode is a =
exp(mu_a). The M-step kernels (``kernels.newton_2pl``, the 3PL's Fisher
scoring) and the curvature in ``information`` take the same penalty in
the lognormal-density form -log a - (log a - m)^2 / (2 s_a^2), whose mode
is exp(m - s_a^2): the two differ by a constant when m = mu_a + s_a^2,
which is ``Priors.a_meanlog``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from . import kernels
from .responses import Responses


@dataclass(frozen=True)
class Priors:
    """Bayes-modal item priors.

    The lower asymptote of the 3PL always has a Beta(c_alpha, c_beta) prior
    (5, 17: mean 0.23, the usual choice for four-option items; R mirt's
    documentation uses the same for its 3PL examples). With ``on_a_b``, the
    2PL and 3PL also get log a ~ N(log_a_mode, a_sdlog^2), mode a =
    exp(log_a_mode), and b ~ N(b_mean, b_sd^2). With ``empirical`` (on by
    default) ``log_a_mode`` and ``b_mean`` are starting values only: every
    EM cycle sets them to the mean log a and mean b of the items being
    estimated (``at``), and the fit reports where they ended
    (``ItemCalibration.priors``). Plain 2PL uses none, so that it reproduces
    R mirt's ML estimates.
    """

    on_a_b: bool = False
    log_a_mode: float = 0.0
    a_sdlog: float = 0.5
    b_mean: float = 0.0
    b_sd: float = 2.0
    c_alpha: float = 5.0
    c_beta: float = 17.0
    empirical: bool = True

    @property
    def a_meanlog(self) -> float:
        """The meanlog m of the lognormal density in a with the same mode (what the M-step kernels take)."""
        return self.log_a_mode + self.a_sdlog**2

    def kernel_arguments(self) -> tuple[float, float, float, float]:
        """(a_meanlog, a_sdlog, b_mean, b_sd) for ``kernels.newton_2pl``; zeros (no priors) without ``on_a_b``."""
        if not self.on_a_b:
            return 0.0, 0.0, 0.0, 0.0
        return self.a_meanlog, self.a_sdlog, self.b_mean, self.b_sd

    def at(self, a: np.ndarray, b: np.ndarray) -> "Priors":
        """These priors centred where the items (a, b) put them; fixed priors as they are.

        For ``empirical`` priors the locations (and the spread of b, which
        is in logits: ``b_sd`` / exp(log_a_mode) in units of theta) that
        maximise the items' log prior: b_mean the mean b, and log_a_mode
        mu the root of

            sum_j (log a_j - mu) / a_sdlog^2 = exp(2 mu) sum_j (b_j - b_mean)^2 / b_sd^2

        (a little below the mean log a). Taken together the items' log
        prior is then the same for every choice of the run's unit and
        origin (theta -> k theta + h moves each log a by -log k and each b to
        k b + h, and the locations with them), so it has no say in them:
        the population N(0, 1) alone fixes the scale, as without priors.
        And an EM cycle that sets the locations and then takes its M-step
        never lowers the log posterior. The result is not empirical.
        """
        if not (self.on_a_b and self.empirical):
            return self
        a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
        ok = np.isfinite(a) & np.isfinite(b) & (a > 0)
        if not ok.any():
            return dataclasses.replace(self, empirical=False)
        log_a, b = np.log(a[ok]), b[ok]
        b_mean = float(b.mean())
        spread = float(((b - b_mean) ** 2).sum()) / self.b_sd**2
        pull = log_a.size / self.a_sdlog**2
        mu = float(log_a.mean())
        for _ in range(50):  # Newton on a function decreasing in mu, concave: from the mean it only goes down
            excess = pull * (log_a.mean() - mu) - np.exp(2 * mu) * spread
            step = excess / (pull + 2 * np.exp(2 * mu) * spread)
            mu += step
            if abs(step) < 1e-12:
                break
        return dataclasses.replace(self, log_a_mode=mu, b_mean=b_mean, b_sd=self.b_sd * float(np.exp(-mu)),
                                   empirical=False)


#: No priors on a and b (the 3PL's c keeps its Beta prior).
NO_PRIORS = Priors()

#: Below this many answers to the median item, plain ML is not trusted (``thin_data``): about
#: 500 examinees for the 2PL and 1,000 for the 3PL (Hulin, Lissak & Drasgow 1982, Applied
#: Psychological Measurement 6, 249-260; de Ayala 2009, The Theory and Practice of IRT, ch. 5),
#: which benchmarks/thin_data.py bears out on sparse designs.
THIN_DATA_ANSWERS = {"2PL": 500, "3PL": 1000}


def thin_data(responses: Responses, model: str, min_responses: int) -> tuple[bool, int]:
    """Whether ``responses`` are too thin for plain ML of ``model``, and the median item's answers.

    The median is over the items with at least ``min_responses`` answers
    (those that will be estimated). The 1PL's one common slope needs no
    prior: it is never thin.
    """
    n, _ = kernels.count_by_item(responses.item, responses.correct, responses.n_items)
    n = n[n >= min_responses]
    median = int(np.median(n)) if n.size else 0
    return model in THIN_DATA_ANSWERS and median < THIN_DATA_ANSWERS[model], median


def log_prior(a: np.ndarray, d: np.ndarray, c: np.ndarray | None, priors: Priors) -> np.ndarray:
    """The log prior density of each item (constants dropped), at fixed locations (``Priors.at`` first).

    -(log a - log_a_mode)^2 / (2 a_sdlog^2) - (b - b_mean)^2 / (2 b_sd^2)
    with ``on_a_b``; (c_alpha - 1) log c + (c_beta - 1) log(1 - c) for a
    3PL's ``c``.
    """
    out = np.zeros(np.shape(a))
    if priors.on_a_b:
        log_a = np.log(np.maximum(a, 1e-300))
        out -= (log_a - priors.log_a_mode) ** 2 / (2 * priors.a_sdlog**2)
        out -= ((-d / a) - priors.b_mean) ** 2 / (2 * priors.b_sd**2)
    if c is not None:
        out += (priors.c_alpha - 1) * np.log(c) + (priors.c_beta - 1) * np.log1p(-c)
    return out


@dataclass(frozen=True)
class PriorChoice:
    """The priors a run fits with, whether they include a and b, and why (for the run's log and record)."""

    priors: Priors
    used: bool
    why: str


#: The values of ``MIRT_ITEM_PRIORS``.
SETTINGS = ("auto", "true", "false")


def choose(responses: Responses, model: str, setting: str, min_responses: int) -> PriorChoice:
    """The priors on a and b for a run of ``model`` on ``responses`` under ``MIRT_ITEM_PRIORS=setting``.

    ``auto`` uses them on thin data only (``thin_data``); ``true`` and
    ``false`` decide outright. The 1PL never uses them (its common slope
    needs none). When used, they are the default empirical priors.
    """
    if setting not in SETTINGS:
        raise ValueError(f"MIRT_ITEM_PRIORS must be one of {', '.join(SETTINGS)}, not {setting!r}")
    if setting == "auto":
        thin, median = thin_data(responses, model, min_responses)
        why = (f"auto: the median item has {median} answers, "
               f"{'fewer than' if thin else 'at least'} {THIN_DATA_ANSWERS[model]}"
               if model in THIN_DATA_ANSWERS else "auto: the 1PL's common slope needs none")
    else:
        thin, why = setting == "true", f"MIRT_ITEM_PRIORS={setting}"
    used = thin and model != "1PL"
    return PriorChoice(Priors(on_a_b=used), used, why)
