"""Differential item functioning (DIF) between groups of students: plain arrays in, plain results out.

Every estimated item is screened between a reference group and each focal
group, three ways (docs/psychometrics.md, "DIF by group", says why each):

1. Mantel-Haenszel (Holland & Thayer 1988; Zwick 2012, ETS Research Report
   RR-12-08): the 2 x 2 x K table of group by right/wrong within ``K`` strata
   of matched ability gives the common odds ratio alpha_MH, the MH
   chi-square, delta_MH = -2.35 ln(alpha_MH) and the ETS A/B/C class.
   Students answer different items, so no total score is comparable: they
   are matched on their EAP ability under the pooled calibration (with one
   prior for all), which for a given set of items is a monotone function of
   the weighted score sum a_j x_j, the 2PL's sufficient statistic for theta.
   The matching includes the studied item and is purified in two stages: the
   items classed B or C in the first stage leave the matching of the others.
2. A Wald test of a and b (Lord 1980's chi-square with each item's full 2 x 2
   covariance): each group is calibrated apart (N(0, 1) in its own
   metric), the focal group is put on the reference group's scale by
   Stocking-Lord over anchor items, and the anchors are purified
   iteratively (Candell & Drasgow 1988): they start as the items MH does not
   flag, and each round drops those the screen flags and links again, until
   the set stands still. The focal group's mean and SD on the reference
   scale are the linking constants (its impact, not DIF).
3. Effect sizes in probability units between the linked curves: the signed
   difference and RMSD_DIF weighted by the focal group's ability
   distribution, and Raju's (1988) signed and unsigned areas on [-4, 4].

Signs: every difference is focal minus reference, so a negative delta_MH,
signed difference or area means the item is harder for the focal group.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.special import chdtrc, ndtri  # not scipy.stats: its import alone takes 0.5-1.3 s of every run

from . import information, linking
from .estimate import estimate_items
from .model import ItemParameters
from .priors import NO_PRIORS, Priors
from .quadrature import Quadrature
from .responses import Responses
from .scoring import score_eap

#: Strata of matched ability for Mantel-Haenszel: equal-count bins of the matching EAP.
MH_STRATA = 20
#: delta_MH = MH_DELTA_SCALE * ln(alpha_MH): the ETS delta metric (4 x 1.7 / 2.89 ~ 2.35).
MH_DELTA_SCALE = -2.35
#: Level of every significance test of the screen.
ALPHA = 0.05
#: ETS class boundaries on |delta_MH| (Zwick 2012): A below 1, C from 1.5 when significantly above 1.
ETS_B, ETS_C = 1.0, 1.5
#: RMSD_DIF (probability units, focal-weighted) from which a significant Wald test flags an item.
RMSD_FLAG = 0.05
#: Fewest items the groups are linked on: fewer tested items skip the group; fewer purified anchors link on all.
MIN_LINK_ITEMS = 5
#: Rounds of anchor purification before the anchor set is taken as it is.
PURIFICATION_ROUNDS = 10
#: Points of the group curves kept for the review page (theta on the reference group's scale).
CURVE_GRID = np.linspace(-4.0, 4.0, 33)
_AREA_GRID = np.linspace(-4.0, 4.0, 161)


# --- Mantel-Haenszel ---------------------------------------------------------------------------

@dataclass(frozen=True)
class MantelHaenszel:
    """Per item: the common odds ratio, its delta, the chi-square test and the ETS class.

    ``ets`` is "A", "B" or "C", or "" for an item not tested (no stratum
    holds both groups, or the odds ratio is 0 or infinite).
    """

    alpha: np.ndarray
    delta: np.ndarray
    delta_se: np.ndarray
    chi2: np.ndarray
    p_value: np.ndarray
    ets: np.ndarray


def mantel_haenszel(item: np.ndarray, correct: np.ndarray, focal: np.ndarray, stratum: np.ndarray,
                    n_items: int, n_strata: int) -> MantelHaenszel:
    """Mantel-Haenszel statistics of every item from its answers (one entry per answer).

    ``focal`` is True for an answer of a focal-group student, False for a
    reference-group one; ``stratum`` in [0, n_strata) is the answer's stratum
    of matched ability. In stratum k of an item, A/B are the reference
    group's right/wrong answers, C/D the focal group's, N = A + B + C + D:

        alpha_MH = sum A D / N / sum B C / N
        chi2_MH = (|sum A - sum E(A)| - 1/2)^2 / sum Var(A)   (continuity-corrected, 1 df)
        E(A) = n_R m_1 / N,  Var(A) = n_R n_F m_1 m_0 / (N^2 (N - 1))

    and the variance of ln(alpha_MH) is Robins, Breslow & Greenland's (1986).
    """
    cell = (np.asarray(item, np.int64) * n_strata + np.asarray(stratum, np.int64)) * 4 \
        + np.asarray(focal, np.int64) * 2 + (1 - np.asarray(correct, np.int64))
    table = np.bincount(cell, minlength=n_items * n_strata * 4).reshape(n_items, n_strata, 4).astype(float)
    a, b, c, d = table[..., 0], table[..., 1], table[..., 2], table[..., 3]
    n = a + b + c + d
    n_ref, n_foc, right, wrong = a + b, c + d, a + c, b + d
    usable = (n_ref > 0) & (n_foc > 0) & (n > 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        n_safe = np.where(usable, n, 1.0)
        r = np.where(usable, a * d / n_safe, 0.0)
        s = np.where(usable, b * c / n_safe, 0.0)
        p = np.where(usable, (a + d) / n_safe, 0.0)
        q = np.where(usable, (b + c) / n_safe, 0.0)
        expected = np.where(usable, n_ref * right / n_safe, 0.0)
        variance = np.where(usable, n_ref * n_foc * right * wrong / (n_safe**2 * (n_safe - 1)), 0.0)
        sum_r, sum_s = r.sum(axis=1), s.sum(axis=1)
        alpha = sum_r / sum_s
        log_var = ((p * r).sum(axis=1) / (2 * sum_r**2) + (p * s + q * r).sum(axis=1) / (2 * sum_r * sum_s)
                   + (q * s).sum(axis=1) / (2 * sum_s**2))
        total_var = variance.sum(axis=1)
        chi2 = (np.abs(np.where(usable, a, 0.0).sum(axis=1) - expected.sum(axis=1)) - 0.5).clip(0) ** 2 / total_var
    tested = np.isfinite(alpha) & (alpha > 0) & (total_var > 0)
    alpha = np.where(tested, alpha, np.nan)
    delta = MH_DELTA_SCALE * np.log(alpha)
    delta_se = np.where(tested, abs(MH_DELTA_SCALE) * np.sqrt(log_var), np.nan)
    chi2 = np.where(tested, chi2, np.nan)
    p_value = chdtrc(1, chi2)
    return MantelHaenszel(alpha, delta, delta_se, chi2, p_value, ets_class(delta, delta_se, p_value))


def ets_class(delta: np.ndarray, delta_se: np.ndarray, p_value: np.ndarray) -> np.ndarray:
    """The ETS A/B/C class of each delta_MH (Zwick 2012, p. 3; "" where it is NaN).

    A: |delta| < 1, or the MH chi-square not significant at 0.05;
    C: |delta| >= 1.5 and |delta| significantly greater than 1 (one-sided
    z = (|delta| - 1) / SE > 1.645, at 0.05);
    B: the others.
    """
    size = np.abs(delta)
    with np.errstate(invalid="ignore"):
        above_one = (size - ETS_B) / delta_se > ndtri(1 - ALPHA)
        classes = np.where((size < ETS_B) | ~(p_value < ALPHA), "A",
                           np.where((size >= ETS_C) & above_one, "C", "B"))
    return np.where(np.isfinite(delta) & np.isfinite(p_value), classes, "")


# --- the Wald test and the effect sizes --------------------------------------------------------

def wald_ab(reference: ItemParameters, reference_cov: np.ndarray, focal: ItemParameters, focal_cov: np.ndarray,
            slope_only_common: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lord's chi-square of (a, b) per item: (chi2, df, p). Both groups on one scale, independent samples.

    chi2 = delta' (Sigma_R + Sigma_F)^-1 delta with delta = (a_F - a_R, b_F - b_R)
    and each Sigma the item's 2 x 2 covariance of (a, b); with
    ``slope_only_common`` (1PL: one slope for all items) only b is tested, 1 df.
    """
    diff = np.stack([focal.a - reference.a, focal.b - reference.b], axis=1)
    cov = reference_cov + focal_cov
    n = diff.shape[0]
    chi2 = np.full(n, np.nan)
    ok = np.isfinite(diff).all(axis=1) & np.isfinite(cov.reshape(n, 4)).all(axis=1)
    if slope_only_common:
        ok &= cov[:, 1, 1] > 0
        chi2[ok] = diff[ok, 1] ** 2 / cov[ok, 1, 1]
        df = np.where(ok, 1.0, np.nan)
    else:
        det = cov[:, 0, 0] * cov[:, 1, 1] - cov[:, 0, 1] ** 2
        ok &= (cov[:, 0, 0] > 0) & (det > 0)
        solved = np.linalg.solve(cov[ok], diff[ok][..., None])[..., 0]
        chi2[ok] = (diff[ok] * solved).sum(axis=1)
        df = np.where(ok, 2.0, np.nan)
    return chi2, df, chdtrc(df, chi2)


def benjamini_hochberg(p_values: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (NaN kept, and not counted)."""
    out = np.full(p_values.shape, np.nan)
    present = np.flatnonzero(np.isfinite(p_values))
    if present.size:
        order = present[np.argsort(p_values[present])]
        ranked = p_values[order] * present.size / np.arange(1, present.size + 1)
        out[order] = np.minimum(np.minimum.accumulate(ranked[::-1])[::-1], 1.0)
    return out


@dataclass(frozen=True)
class CurveDifferences:
    """Focal minus reference curves of each item, in probability units."""

    #: Mean of P_F - P_R over the focal group's ability distribution.
    signed: np.ndarray
    #: Root mean square of P_F - P_R over the focal group's ability distribution (RMSD_DIF).
    rmsd: np.ndarray
    #: Raju's signed and unsigned areas, integral of (P_F - P_R) and |P_F - P_R| over theta in [-4, 4].
    signed_area: np.ndarray
    unsigned_area: np.ndarray


def curve_differences(reference: ItemParameters, focal: ItemParameters, focal_mean: float, focal_sd: float,
                      quadrature: Quadrature) -> CurveDifferences:
    """Effect sizes between the two groups' curves (both on one scale; the focal group ~ N(mean, sd^2) there)."""
    weights = quadrature.with_population(focal_mean, focal_sd)
    gap = focal.probability(weights.nodes) - reference.probability(weights.nodes)
    area_gap = focal.probability(_AREA_GRID) - reference.probability(_AREA_GRID)
    return CurveDifferences(signed=weights.weights @ gap, rmsd=np.sqrt(weights.weights @ gap**2),
                            signed_area=np.trapezoid(area_gap, _AREA_GRID, axis=0),
                            unsigned_area=np.trapezoid(np.abs(area_gap), _AREA_GRID, axis=0))


# --- the screen --------------------------------------------------------------------------------

@dataclass(frozen=True)
class GroupFit:
    """One group calibrated on its own: its items (NaN where not estimated), their covariances, its students."""

    params: ItemParameters
    covariance_ab: np.ndarray
    answers: np.ndarray
    n_students: int
    converged: bool


@dataclass(frozen=True)
class Comparison:
    """The screen of every item between the reference group and one focal group (arrays: one entry per item).

    ``tested`` items were estimated in both groups with ``min_responses``
    answers in each; the others hold NaN. ``focal_params`` are on the
    reference group's scale, where the focal group is N(focal_mean, focal_sd^2).
    """

    focal: str
    n_focal: int
    answers_reference: np.ndarray
    answers_focal: np.ndarray
    tested: np.ndarray
    mh: MantelHaenszel
    wald_chi2: np.ndarray
    wald_df: np.ndarray
    wald_p: np.ndarray
    wald_p_adjusted: np.ndarray
    effect: CurveDifferences
    reference_params: ItemParameters
    focal_params: ItemParameters
    focal_mean: float
    focal_sd: float
    #: Items the focal group was linked on (after purification), and whether purification left enough of them.
    anchors: np.ndarray
    purified: bool
    flagged: np.ndarray
    why: dict[int, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DifScreen:
    """The DIF screen of one calibration: the groups, and one ``Comparison`` per focal group."""

    labels: list[str]
    reference: str
    group_sizes: dict[str, int]
    comparisons: list[Comparison]
    #: Focal groups not compared, with why (e.g. too few students to calibrate).
    skipped: dict[str, str] = field(default_factory=dict)
    #: Students without a group label (left out of the screen).
    unassigned: int = 0


def choose_reference(labels: list[str], group: np.ndarray, reference: str = "") -> int:
    """The reference group's index: ``reference`` if given (it must be a label), else the largest group."""
    if reference:
        if reference not in labels:
            raise ValueError(f"reference group {reference!r} is not among the groups {labels}")
        return labels.index(reference)
    sizes = np.bincount(group[group >= 0], minlength=len(labels))
    return int(np.argmax(sizes))


def select_persons(responses: Responses, keep: np.ndarray) -> Responses:
    """The answers of the persons where ``keep`` is True (persons renumbered in order, items kept)."""
    lengths = np.diff(responses.person_ptr)
    answer_mask = np.repeat(keep, lengths)
    ptr = np.zeros(int(keep.sum()) + 1, dtype=np.int64)
    np.cumsum(lengths[keep], out=ptr[1:])
    return Responses(ptr, responses.item[answer_mask], responses.correct[answer_mask], responses.n_items)


def calibrate_group(responses: Responses, keep_items: np.ndarray, model: str, quadrature: Quadrature,
                    min_responses: int, priors: Priors = NO_PRIORS, tolerance: float = 1e-4,
                    max_iterations: int = 500) -> GroupFit:
    """One group's items by marginal ML in its own N(0, 1) metric (only ``keep_items``), with their covariances."""
    data, kept = responses.restrict_items(keep_items)
    items = estimate_items(data, model, quadrature=quadrature, min_responses=min_responses, priors=priors,
                           tolerance=tolerance, max_iterations=max_iterations)
    n = responses.n_items
    a, b, c = (np.full(n, np.nan) for _ in range(3))
    cov = np.full((n, 2, 2), np.nan)
    a[kept], b[kept], c[kept] = items.params.a, items.params.b, items.params.c
    if items.estimated.any():
        # The approximation of the information (item blocks): a Wald test needs each item's own covariance,
        # which it gave to within 1e-4 (relative) of the whole matrix's, in a quarter of the time, on 40,000
        # students x 500 items.
        errors = information.standard_errors(data, items.params, model, quadrature, items.priors,
                                             method="approximate")
        cov[kept] = errors.covariance_ab
    answers = np.bincount(responses.item, minlength=n)
    return GroupFit(ItemParameters(a, b, np.nan_to_num(c)), cov, answers, responses.n_persons, items.converged)


def _flags(mh: MantelHaenszel, wald_p_adjusted: np.ndarray, rmsd: np.ndarray) -> np.ndarray:
    """Flagged: ETS class B or C, or a significant Wald test (BH-adjusted) with RMSD_DIF >= RMSD_FLAG."""
    with np.errstate(invalid="ignore"):
        return np.isin(mh.ets, ("B", "C")) | ((wald_p_adjusted < ALPHA) & (rmsd >= RMSD_FLAG))


def _reasons(mh: MantelHaenszel, wald_p_adjusted: np.ndarray, rmsd: np.ndarray, flagged: np.ndarray) -> dict:
    why = {}
    for j in np.flatnonzero(flagged):
        parts = []
        if mh.ets[j] in ("B", "C"):
            parts.append(f"ETS {mh.ets[j]} (delta_MH {mh.delta[j]:+.2f})")
        if wald_p_adjusted[j] < ALPHA and rmsd[j] >= RMSD_FLAG:
            parts.append(f"Wald p {wald_p_adjusted[j]:.2g}, RMSD_DIF {rmsd[j]:.3f}")
        why[int(j)] = "; ".join(parts)
    return why


def _matching_mh(responses: Responses, params: ItemParameters, in_pair: np.ndarray, is_focal: np.ndarray,
                 quadrature: Quadrature, purged: np.ndarray) -> MantelHaenszel:
    """MH over the persons ``in_pair``, matched on their EAP from the estimated items of ``params`` but the
    ``purged`` ones; a purged item is matched on the others plus itself (the studied item always counts)."""
    pair = select_persons(responses, in_pair)
    lengths = np.diff(pair.person_ptr)
    focal = np.repeat(is_focal[in_pair], lengths)
    theta = _eap(pair, params, purged, quadrature)
    edges = np.quantile(theta, np.linspace(0, 1, MH_STRATA + 1)[1:-1])
    strata = np.searchsorted(edges, theta, side="right")
    mh = mantel_haenszel(pair.item, pair.correct, focal, np.repeat(strata, lengths), responses.n_items, MH_STRATA)
    for j in np.flatnonzero(purged):
        answered = np.zeros(pair.n_persons, bool)
        answered[pair.person_index()[pair.item == j]] = True
        sub = select_persons(pair, answered)
        without_j = purged.copy()
        without_j[j] = False
        own = np.searchsorted(edges, _eap(sub, params, without_j, quadrature), side="right")
        on_item = sub.item == j
        sub_lengths = np.diff(sub.person_ptr)
        one = mantel_haenszel(sub.item[on_item], sub.correct[on_item],
                              np.repeat(is_focal[in_pair][answered], sub_lengths)[on_item],
                              np.repeat(own, sub_lengths)[on_item], responses.n_items, MH_STRATA)
        for values, value in zip((mh.alpha, mh.delta, mh.delta_se, mh.chi2, mh.p_value, mh.ets),
                                 (one.alpha, one.delta, one.delta_se, one.chi2, one.p_value, one.ets)):
            values[j] = value[j]
    return mh


def _eap(responses: Responses, params: ItemParameters, left_out: np.ndarray, quadrature: Quadrature) -> np.ndarray:
    """EAP abilities under N(0, 1) from the items of ``params`` but ``left_out`` (0 for a person with none)."""
    matching = ItemParameters(np.where(left_out, np.nan, params.a), params.b, params.c)
    theta = score_eap(responses, matching, quadrature=quadrature).theta
    return np.where(np.isfinite(theta), theta, 0.0)


def screen(responses: Responses, group: np.ndarray, labels: list[str], params: ItemParameters, model: str,
           *, quadrature: Quadrature | None = None, min_responses: int = 20, reference: str = "",
           priors: Priors = NO_PRIORS, tolerance: float = 1e-4, max_iterations: int = 500) -> DifScreen:
    """Screen every item of ``params`` (the pooled calibration; NaN = not estimated) for DIF between groups.

    ``group[i]`` is person i's index in ``labels``, or -1 for no group. The
    reference group is ``reference`` or the largest; every other group is a
    focal group compared with it (module docstring for the three screens).
    An item is tested in a comparison when both groups' own calibrations
    estimated it from at least ``min_responses`` answers each.
    """
    quadrature = quadrature or Quadrature.normal()
    group = np.asarray(group, dtype=np.int64)
    ref = choose_reference(labels, group, reference)
    sizes = np.bincount(group[group >= 0], minlength=len(labels))
    estimated = np.isfinite(params.a) & np.isfinite(params.b)
    fits: dict[int, GroupFit] = {}

    def fit_of(g: int) -> GroupFit:
        if g not in fits:
            fits[g] = calibrate_group(select_persons(responses, group == g), estimated, model, quadrature,
                                      min_responses, priors, tolerance, max_iterations)
        return fits[g]

    comparisons, skipped = [], {}
    for g in range(len(labels)):
        if g == ref:
            continue
        if sizes[g] == 0:
            skipped[labels[g]] = "no students"
            continue
        reference_fit, focal_fit = fit_of(ref), fit_of(g)
        tested = (estimated & np.isfinite(reference_fit.params.b) & np.isfinite(focal_fit.params.b)
                  & (reference_fit.answers >= min_responses) & (focal_fit.answers >= min_responses))
        if tested.sum() < MIN_LINK_ITEMS:
            skipped[labels[g]] = (f"only {int(tested.sum())} items estimated in both groups with {min_responses} "
                                  f"answers each (at least {MIN_LINK_ITEMS} are needed to link them)")
            continue
        try:
            comparisons.append(_compare(responses, group, ref, g, labels, params, tested, reference_fit, focal_fit,
                                        model, quadrature))
        except linking.LinkingError as exc:
            skipped[labels[g]] = f"the group could not be linked to the reference group: {exc}"
    return DifScreen(labels=list(labels), reference=labels[ref],
                     group_sizes={labels[g]: int(sizes[g]) for g in range(len(labels))},
                     comparisons=comparisons, skipped=skipped, unassigned=int((group < 0).sum()))


def _compare(responses, group, ref, g, labels, params, tested, reference_fit, focal_fit, model,
             quadrature) -> Comparison:
    in_pair = (group == ref) | (group == g)
    is_focal = group == g
    # MH, two stages: match on every estimated item, then without the items classed B or C.
    nothing = np.zeros(len(params), bool)
    mh = _matching_mh(responses, params, in_pair, is_focal, quadrature, nothing)
    first_flags = np.isin(mh.ets, ("B", "C")) & tested
    if first_flags.any():
        mh = _matching_mh(responses, params, in_pair, is_focal, quadrature, first_flags)
    mh = MantelHaenszel(*(np.where(tested, v, np.nan if v.dtype.kind == "f" else "") for v in
                          (mh.alpha, mh.delta, mh.delta_se, mh.chi2, mh.p_value, mh.ets)))

    # The Wald test: link the focal group on purified anchors, test, drop the flagged, again.
    anchors = tested & ~np.isin(mh.ets, ("B", "C"))
    common_slope = model == "1PL"
    result = None
    for _ in range(PURIFICATION_ROUNDS):
        purified = anchors.sum() >= MIN_LINK_ITEMS
        on = anchors if purified else tested
        constants = linking.stocking_lord(reference_fit.params.take(on), focal_fit.params.take(on))
        A, B = constants.slope, constants.intercept
        focal = focal_fit.params.on_scale(A, B)
        scale = np.array([1.0 / A, A])
        focal_cov = focal_fit.covariance_ab * scale[:, None] * scale[None, :]
        chi2, df, p = wald_ab(reference_fit.params, reference_fit.covariance_ab, focal, focal_cov, common_slope)
        chi2, df, p = (np.where(tested, v, np.nan) for v in (chi2, df, p))
        p_adjusted = benjamini_hochberg(p)
        effect = curve_differences(reference_fit.params, focal, B, A, quadrature)
        flagged = _flags(mh, p_adjusted, effect.rmsd) & tested
        result = (on, purified, A, B, focal, chi2, df, p, p_adjusted, effect, flagged)
        new_anchors = tested & ~flagged
        if np.array_equal(new_anchors, anchors):
            break
        anchors = new_anchors
    on, purified, A, B, focal, chi2, df, p, p_adjusted, effect, flagged = result
    masked = CurveDifferences(*(np.where(tested, v, np.nan) for v in
                                (effect.signed, effect.rmsd, effect.signed_area, effect.unsigned_area)))
    return Comparison(focal=labels[g], n_focal=int((group == g).sum()),
                      answers_reference=reference_fit.answers, answers_focal=focal_fit.answers, tested=tested,
                      mh=mh, wald_chi2=chi2, wald_df=df, wald_p=p, wald_p_adjusted=p_adjusted, effect=masked,
                      reference_params=reference_fit.params, focal_params=focal, focal_mean=B, focal_sd=A,
                      anchors=np.flatnonzero(on), purified=bool(purified), flagged=flagged,
                      why=_reasons(mh, p_adjusted, masked.rmsd, flagged))


def group_curves(comparison: Comparison, item: int, grid: np.ndarray = CURVE_GRID) -> dict:
    """The reference and focal curves of one item on the reference group's scale, for a chart."""
    one = np.array([item])
    return {"theta": grid.round(3).tolist(),
            "reference": comparison.reference_params.take(one).probability(grid)[:, 0].round(4).tolist(),
            "focal": comparison.focal_params.take(one).probability(grid)[:, 0].round(4).tolist()}
