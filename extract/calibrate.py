"""Calibration: a cost model's weights fitted to measured times, so the model ranks as the machine does.

A target prices a program as a weighted sum of terms it computes from the program (for the CPU:
cache-line traffic, loop overhead, compute, allocations), under assumptions it cannot compute
(the SIMD width the build really gets, the cache level tiles are sized for). A target describes
each program by those terms under every assumption it considers (`Features`); calibration fits,
per assumption, the non-negative weights that minimise the relative error of ``weights · terms``
against the measured times, and keeps the assumption that fits best.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import Mapping, Sequence

import numpy as np

# an assumption's name → the program's terms under it
Features = Mapping[str, tuple[float, ...]]

MIN_ROWS = 5  # fewer measurements than this fit noise, not the machine


@dataclass(frozen=True)
class Calibration:
    """The fitted model: which assumption, the weight of each term (seconds per unit), the fit's
    root-mean-square relative error, and how many measurements it was fitted to."""

    assumption: str
    weights: tuple[float, ...]
    error: float
    rows: int

    def predict(self, features: Features) -> float:
        return float(np.dot(self.weights, features[self.assumption]))

    def to_json(self) -> dict:
        return {"assumption": self.assumption, "weights": list(self.weights), "error": self.error, "rows": self.rows}


def nonnegative_fit(terms: np.ndarray, measured: np.ndarray) -> tuple[np.ndarray, float]:
    """Weights ``w ≥ 0`` minimising the RMS of ``(terms @ w − measured) / measured``, and that error.

    Exact: with a handful of terms, every set of active terms is solved by least squares and the
    best feasible one kept (the non-negative optimum is the unconstrained optimum of its active set).
    """
    scaled = terms / measured[:, None]  # relative error: each row divided by its own time
    ones = np.ones(len(measured))
    best_w, best_err = np.zeros(terms.shape[1]), float(np.sqrt(np.mean(ones**2)))
    for size in range(1, terms.shape[1] + 1):
        for active in combinations(range(terms.shape[1]), size):
            sub = scaled[:, active]
            w, *_ = np.linalg.lstsq(sub, ones, rcond=None)
            if np.any(w < 0):
                continue
            err = float(np.sqrt(np.mean((sub @ w - ones) ** 2)))
            if err < best_err - 1e-12:
                best_w = np.zeros(terms.shape[1])
                best_w[list(active)] = w
                best_err = err
    return best_w, best_err


def fit(rows: Sequence[tuple[Features, float]]) -> Calibration | None:
    """The best-fitting assumption and its weights over ``rows`` of (features, measured time);
    None with fewer than `MIN_ROWS` usable rows (positive times, the same assumptions)."""
    usable = [(f, y) for f, y in rows if y > 0 and f]
    if len(usable) < MIN_ROWS:
        return None
    names = [a for a in usable[0][0] if all(a in f for f, _ in usable)]
    measured = np.array([y for _, y in usable])
    fits = []
    for name in names:
        terms = np.array([f[name] for f, _ in usable], dtype=float)
        w, err = nonnegative_fit(terms, measured)
        fits.append(Calibration(name, tuple(float(x) for x in w), err, len(usable)))
    return min(fits, key=lambda c: c.error) if fits else None


def kendall_tau(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Kendall's tau-b between two rankings (pairs tied in both are skipped)."""
    concordant = discordant = ties_x = ties_y = 0
    for i in range(len(xs)):
        for j in range(i + 1, len(xs)):
            dx, dy = xs[i] - xs[j], ys[i] - ys[j]
            if dx == 0 and dy == 0:
                continue
            if dx == 0:
                ties_x += 1
            elif dy == 0:
                ties_y += 1
            elif (dx > 0) == (dy > 0):
                concordant += 1
            else:
                discordant += 1
    denom = ((concordant + discordant + ties_x) * (concordant + discordant + ties_y)) ** 0.5
    return (concordant - discordant) / denom if denom else 0.0
