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


@dataclass(frozen=True)
class Row:
    """One measurement to fit: the program's terms, its time relative to the input's in the same
    interleaved run (drift cancels), the input's time there, and which kernel it belongs to."""

    features: Features
    relative: float
    naive: float
    kernel: str
    predicted: float = 0.0  # the model's cost as written (to compare the calibration with)


def nonnegative_fit(terms: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, float]:
    """Weights ``w ≥ 0`` minimising the RMS of ``terms @ w − target``, and that error.

    Exact: with a handful of terms, every set of active terms is solved by least squares and the
    best feasible one kept (the non-negative optimum is the unconstrained optimum of its active set).
    """
    best_w, best_err = np.zeros(terms.shape[1]), float(np.sqrt(np.mean(target**2)))
    for size in range(1, terms.shape[1] + 1):
        for active in combinations(range(terms.shape[1]), size):
            sub = terms[:, active]
            w, *_ = np.linalg.lstsq(sub, target, rcond=None)
            if np.any(w < 0):
                continue
            err = float(np.sqrt(np.mean((sub @ w - target) ** 2)))
            if err < best_err - 1e-15:
                best_w = np.zeros(terms.shape[1])
                best_w[list(active)] = w
                best_err = err
    return best_w, best_err


def fit(rows: Sequence[Row]) -> Calibration | None:
    """The best-fitting assumption and its weights; None with fewer than `MIN_ROWS` usable rows.

    Only the order of one kernel's schedules matters, so each kernel gets its own intercept (what
    every schedule of it pays alike: the call, the harness, the machine's state that day), projected
    out by centring its rows; rows are in units of the kernel's input time, so a big kernel does not
    outweigh a small one and the error is relative. The time a row is fitted to is its relative time
    times its kernel's median input time: the drift between runs cancels in the ratio."""
    usable = [r for r in rows if r.relative > 0 and r.naive > 0 and r.features]
    if len(usable) < MIN_ROWS:
        return None
    names = [a for a in usable[0].features if all(a in r.features for r in usable)]
    kernels = sorted({r.kernel for r in usable})
    naive = {k: float(np.median([r.naive for r in usable if r.kernel == k])) for k in kernels}
    target = np.array([r.relative for r in usable])
    groups = [np.array([r.kernel == k for r in usable]) for k in kernels]
    target = _centred(target, groups)
    fits = []
    for name in names:
        terms = np.array([np.asarray(r.features[name], dtype=float) / naive[r.kernel] for r in usable])
        w, err = nonnegative_fit(_centred(terms, groups), target)
        fits.append(Calibration(name, tuple(float(x) for x in w), err, len(usable)))
    return min(fits, key=lambda c: c.error) if fits else None


def _centred(values: np.ndarray, groups: list[np.ndarray]) -> np.ndarray:
    out = values.astype(float).copy()
    for g in groups:
        out[g] -= out[g].mean(axis=0)
    return out


@dataclass(frozen=True)
class HeldOut:
    """A kernel's measured schedules ranked by the model as written and by a calibration fitted
    to the other kernels only (Kendall τ against the measured order)."""

    kernel: str
    rows: int
    model: float
    calibrated: float | None


def held_out(rows: Sequence[Row], y_tolerance: float = 0.1) -> list[HeldOut]:
    """Leave one kernel out, for each kernel: does a calibration carry to a kernel it never saw?"""
    out = []
    for kernel in sorted({r.kernel for r in rows}):
        mine = [r for r in rows if r.kernel == kernel]
        if len(mine) < MIN_ROWS:
            continue
        cal = fit([r for r in rows if r.kernel != kernel])
        measured = [r.relative for r in mine]
        model = kendall_tau([r.predicted for r in mine], measured, y_tolerance)
        calibrated = kendall_tau([cal.predict(r.features) for r in mine], measured, y_tolerance) if cal else None
        out.append(HeldOut(kernel, len(mine), model, calibrated))
    return out


def kendall_tau(xs: Sequence[float], ys: Sequence[float], y_tolerance: float = 0.0) -> float:
    """Kendall's tau-b between two rankings (pairs tied in both are skipped). ``ys`` closer than
    ``y_tolerance`` (relative) count as tied: measured times that differ by less than their noise
    do not order a pair."""
    concordant = discordant = ties_x = ties_y = 0
    for i in range(len(xs)):
        for j in range(i + 1, len(xs)):
            dx, dy = xs[i] - xs[j], ys[i] - ys[j]
            if abs(dy) <= y_tolerance * max(abs(ys[i]), abs(ys[j])):
                dy = 0
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
