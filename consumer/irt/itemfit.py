"""Item fit with missing data: RMSD between observed and model curves on the quadrature grid.

For item j, the persons who answered it spread their posteriors over the
grid; at node q that gives n_jq answers of which r_jq correct (expected
counts of the E-step at the final estimates). The observed curve is
r_jq / n_jq, the model curve P_j(theta_q), and

    RMSD_j = sqrt( sum_q (n_jq / n_j) * (r_jq / n_jq - P_j(theta_q))^2 ),

the root mean squared deviation weighted by where the item's respondents
are. Only persons who answered the item enter it, so missing responses are
simply absent, which is what sparse data needs. This is the statistic used
to flag items in PISA and PIAAC (OECD, PISA 2015 Technical Report, ch. 9),
where RMSD above 0.12 marks an item whose curve the model does not follow.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .expected import FinalEStep
from .model import ItemParameters
from .quadrature import Quadrature
from .responses import Responses

#: RMSD past which an item is flagged (the PISA 2015 rule).
DEFAULT_RMSD_THRESHOLD = 0.12


def rmsd(responses: Responses, params: ItemParameters, quadrature: Quadrature | None = None,
         final: FinalEStep | None = None) -> np.ndarray:
    """RMSD of every item (NaN for items without parameters).

    ``final`` is the E-step at ``params`` when the caller has it already.
    """
    final = final or FinalEStep.at(responses, params, quadrature)
    answered, observed, model = _curves(final)
    weights = answered / answered.sum(axis=1, keepdims=True)
    out = np.full(len(params), np.nan)
    out[final.kept] = np.sqrt((weights * (observed - model) ** 2).sum(axis=1))
    return out


@dataclass(frozen=True)
class NodeProportions:
    """The evidence behind RMSD for some items: per quadrature node, rows in the order the items were asked for."""

    items: np.ndarray  # indices into the calibration's items
    nodes: np.ndarray  # theta at each node, on the calibration scale
    answered: np.ndarray  # [item, node] expected number of the item's answers from persons at the node (n_jq)
    observed: np.ndarray  # [item, node] expected proportion correct among them (r_jq / n_jq; 0 where n_jq = 0)
    expected: np.ndarray  # [item, node] the model's P_j(theta_q)


def node_proportions(final: FinalEStep, items: np.ndarray) -> NodeProportions:
    """Observed and expected proportions correct per quadrature node for ``items`` (estimated ones only)."""
    items = np.asarray(items, dtype=np.int64)
    row = np.full(int(final.kept.max()) + 1 if final.kept.size else 0, -1)
    row[final.kept] = np.arange(final.kept.size)
    rows = row[items] if items.size else np.zeros(0, np.int64)
    if (rows < 0).any():
        raise ValueError("node proportions exist only for estimated items")
    answered, observed, model = _curves(final)
    return NodeProportions(items, final.quadrature.nodes, answered[rows], observed[rows], model[rows])


#: Most misfitting items whose node proportions a run keeps (the worst first).
MISFIT_CURVES_KEPT = 50


def misfit_curves(final: FinalEStep, item_rmsd: np.ndarray, threshold: float,
                  limit: int = MISFIT_CURVES_KEPT) -> list[dict]:
    """The ``limit`` worst items past ``threshold``, each with its node proportions, as JSON-ready records.

    Nodes where the item has less than one answer's worth of respondents are
    left out (their proportions say nothing); ``item`` is the item's index in
    the calibration, ``theta`` on the calibration scale.
    """
    flagged = np.flatnonzero(np.nan_to_num(item_rmsd, nan=-np.inf) > threshold)
    worst = flagged[np.argsort(-item_rmsd[flagged], kind="stable")][:limit]
    curves = node_proportions(final, worst)
    records = []
    for k, j in enumerate(worst):
        shown = curves.answered[k] >= 1.0
        records.append({"item": int(j), "rmsd": round(float(item_rmsd[j]), 4),
                        "theta": np.round(curves.nodes[shown], 3).tolist(),
                        "answers": np.round(curves.answered[k][shown], 1).tolist(),
                        "observed": np.round(curves.observed[k][shown], 4).tolist(),
                        "expected": np.round(curves.expected[k][shown], 4).tolist()})
    return records


def _curves(final: FinalEStep) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(n_jq, r_jq / n_jq, P_j(theta_q)) for every estimated item, each [item, node]."""
    answered = final.counts.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        observed = np.where(answered > 0, final.counts[:, 1, :] / answered, 0.0)
    return answered, observed, final.items.probability(final.quadrature.nodes).T
