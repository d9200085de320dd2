"""Response data the way the literature prints it: a dense matrix, one row per student, -1 for not answered."""

from __future__ import annotations

import numpy as np

from consumer.irt.responses import Responses


def dense_to_responses(matrix: np.ndarray) -> Responses:
    """The sparse response list of a dense 0/1 matrix, cells of -1 left out."""
    persons, items = np.nonzero(matrix >= 0)
    return Responses.from_triplets(persons, items, matrix[persons, items], *matrix.shape)
