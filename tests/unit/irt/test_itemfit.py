"""RMSD item fit: misfitting items stand out, fitting ones do not."""

import numpy as np

from consumer.irt.estimate import estimate_items
from consumer.irt.itemfit import rmsd

from tests.support.misfit import with_a_misfitting_item


def test_a_curve_no_logistic_follows_has_a_large_rmsd_and_the_rest_small():
    _, responses = with_a_misfitting_item()
    fit = estimate_items(responses)
    values = rmsd(responses, fit.params)
    assert values[7] > 0.15
    assert np.all(np.delete(values, 7) < 0.05)
