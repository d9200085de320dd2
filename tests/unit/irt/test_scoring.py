"""EAP scores and their standard errors, against a computation by brute force."""

import numpy as np
import pytest

from consumer.irt.model import ItemParameters
from consumer.irt.scoring import score_eap
from consumer.irt.simulate import simulate


def test_persons_with_no_estimated_items_are_not_scored():
    truth = simulate(100, 10, 3, seed=2)
    params = ItemParameters(truth.params.a.copy(), truth.params.b.copy(), truth.params.c)
    params.a[:] = np.nan  # nothing estimated
    abilities = score_eap(truth.responses, params)
    assert not abilities.scored.any() and np.isnan(abilities.theta).all()


def test_eap_by_brute_force_for_one_person():
    params = ItemParameters(np.array([1.0, 1.5, 0.7]), np.array([-0.5, 0.2, 1.0]), np.zeros(3))
    from consumer.irt.responses import Responses
    responses = Responses.from_triplets(np.zeros(3, int), np.arange(3), np.array([1, 0, 1]), 1, 3)
    abilities = score_eap(responses, params)
    grid = np.linspace(-6, 6, 20001)
    p = params.probability(grid)
    like = p[:, 0] * (1 - p[:, 1]) * p[:, 2] * np.exp(-grid**2 / 2)
    mean = (grid * like).sum() / like.sum()
    sd = np.sqrt(((grid - mean) ** 2 * like).sum() / like.sum())
    assert abilities.theta[0] == pytest.approx(mean, abs=1e-3)
    assert abilities.se[0] == pytest.approx(sd, abs=1e-3)
