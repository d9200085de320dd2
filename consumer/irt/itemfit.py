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
    counts, items, nodes = final.counts, final.items, final.quadrature.nodes
    answered = counts.sum(axis=1)  # n_jq
    with np.errstate(invalid="ignore", divide="ignore"):
        observed = np.where(answered > 0, counts[:, 1, :] / answered, 0.0)
    model = items.probability(nodes).T  # (items, nodes)
    weights = answered / answered.sum(axis=1, keepdims=True)
    out = np.full(len(params), np.nan)
    out[final.kept] = np.sqrt((weights * (observed - model) ** 2).sum(axis=1))
    return out
