"""Dichotomous logistic item models (1PL, 2PL, 3PL) on the D = 1 metric.

P(correct | theta) = c + (1 - c) / (1 + exp(-(a * theta + d))),  b = -d / a,

which is R mirt's slope-intercept form; ``b`` is the difficulty a
psychometrician reads and what SPEC's linking formulas act on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: The models the service fits, by the names settings and requests use.
MODELS = ("1PL", "2PL", "3PL")
_ALIASES = {"RASCH": "1PL", "1PL": "1PL", "2PL": "2PL", "3PL": "3PL"}


def model_name(name: str) -> str:
    """The canonical model name for ``name`` (case-insensitive; Rasch means 1PL)."""
    canonical = _ALIASES.get(str(name).strip().upper())
    if canonical is None:
        raise ValueError(f"unknown IRT model {name!r}; choose one of {', '.join(MODELS)} (or Rasch)")
    return canonical


def log_sigmoid(z: np.ndarray) -> np.ndarray:
    """log(1 / (1 + exp(-z))) without overflow."""
    return -np.logaddexp(0.0, -z)


@dataclass(frozen=True)
class ItemParameters:
    """Discrimination ``a``, difficulty ``b`` and lower asymptote ``c`` per item."""

    a: np.ndarray
    b: np.ndarray
    c: np.ndarray

    @classmethod
    def from_intercepts(cls, a: np.ndarray, d: np.ndarray, c: np.ndarray | None = None) -> "ItemParameters":
        a = np.asarray(a, dtype=float)
        d = np.asarray(d, dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            b = -d / a
        return cls(a=a, b=b, c=np.zeros_like(a) if c is None else np.asarray(c, dtype=float))

    @property
    def d(self) -> np.ndarray:
        return -self.a * self.b

    def __len__(self) -> int:
        return int(self.a.size)

    def take(self, index: np.ndarray) -> "ItemParameters":
        return ItemParameters(self.a[index], self.b[index], self.c[index])

    def on_scale(self, slope: float, intercept: float) -> "ItemParameters":
        """These items on the scale where theta_old = slope * theta + intercept."""
        return ItemParameters(self.a / slope, slope * self.b + intercept, self.c)

    def probability(self, theta: np.ndarray) -> np.ndarray:
        """P(correct) with shape (len(theta), n_items)."""
        z = self.a[None, :] * (np.asarray(theta, dtype=float)[:, None] - self.b[None, :])
        return self.c + (1.0 - self.c) / (1.0 + np.exp(-z))

    def log_curves(self, nodes: np.ndarray) -> np.ndarray:
        """``[j, y, q]`` = log P(response y to item j | theta = nodes[q])."""
        return log_curves(self.a, self.d, self.c, nodes)


def log_curves(a: np.ndarray, d: np.ndarray, c: np.ndarray | None, nodes: np.ndarray) -> np.ndarray:
    """``[j, y, q]`` = log P(response y | node q) for slopes ``a`` and intercepts ``d``."""
    z = a[:, None] * nodes[None, :] + d[:, None]
    out = np.empty((a.size, 2, nodes.size))
    if c is None or not np.any(c):
        out[:, 1, :] = log_sigmoid(z)
        out[:, 0, :] = log_sigmoid(-z)
    else:
        cc = c[:, None]
        out[:, 1, :] = np.log(cc + (1.0 - cc) * np.exp(log_sigmoid(z)))
        out[:, 0, :] = np.log1p(-cc) + log_sigmoid(-z)
    return out
