"""Quadrature grid for the latent trait, as R mirt uses for one dimension."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: R mirt's default for unidimensional models: 61 points on [-6, 6].
DEFAULT_POINTS = 61
DEFAULT_BOUND = 6.0


@dataclass(frozen=True)
class Quadrature:
    """Equally spaced nodes with standard normal weights that sum to one."""

    nodes: np.ndarray
    weights: np.ndarray

    @property
    def log_weights(self) -> np.ndarray:
        return np.log(self.weights)

    def with_population(self, mean: float, sd: float) -> "Quadrature":
        """The same nodes weighted by a N(mean, sd^2) population."""
        density = np.exp(-0.5 * ((self.nodes - mean) / sd) ** 2)
        return Quadrature(nodes=self.nodes, weights=density / density.sum())

    @classmethod
    def normal(cls, points: int = DEFAULT_POINTS, bound: float = DEFAULT_BOUND) -> "Quadrature":
        """The N(0, 1) population on ``points`` nodes spread over [-bound, bound]."""
        if points < 5:
            raise ValueError(f"quadrature needs at least 5 points, got {points}")
        nodes = np.linspace(-bound, bound, points)
        density = np.exp(-0.5 * nodes**2)
        return cls(nodes=nodes, weights=density / density.sum())
