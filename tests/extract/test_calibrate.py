"""Calibration: the exact non-negative fit, the choice of assumption, and the CPU model's terms."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from exo_egraph.extract.calibrate import MIN_ROWS, Row, fit, kendall_tau, nonnegative_fit
from exo_egraph.extract.cost import CPU_ASSUMPTIONS, CPU_TERMS, CpuCost, buffers_of, calibrated_cpu_cost, cpu_features, program_cost
from exo_egraph.lower import lower

from tests import kernels as K


def test_kendall_tau():
    assert kendall_tau([1, 2, 3, 4], [10, 20, 30, 40]) == 1.0
    assert kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == -1.0
    assert abs(kendall_tau([1, 2, 3], [1, 3, 2]) - 1 / 3) < 1e-9
    assert kendall_tau([1, 2, 3], [1.0, 1.02, 2.0], y_tolerance=0.05) < kendall_tau([1, 2, 3], [1.0, 1.02, 2.0])
    assert kendall_tau([2, 1, 3], [1.0, 1.02, 2.0], y_tolerance=0.05) > kendall_tau([2, 1, 3], [1.0, 1.02, 2.0])


def test_the_fit_recovers_nonnegative_weights_and_never_goes_negative():
    rng = np.random.default_rng(0)
    terms = rng.uniform(1, 100, (40, 4))
    truth = np.array([2e-9, 0.0, 5e-10, 3e-8])
    w, err = nonnegative_fit(terms, terms @ truth)
    assert np.allclose(w, truth, rtol=1e-6, atol=1e-15) and err < 1e-12
    # a term that only hurts gets weight 0, not a negative one
    w, _ = nonnegative_fit(terms, terms @ np.array([1.0, 0, 0, 0]) - 0.5 * terms[:, 1] + 60)
    assert np.all(w >= 0)


def _rows(kernel: str, naive: float, offset: float, weights: tuple, rng, n: int = 8) -> list[Row]:
    """Measurements of ``kernel`` whose times follow ``weights`` under assumption B, plus an offset
    every schedule of the kernel pays (which the fit must not mistake for a term)."""
    out = []
    for _ in range(n):
        a, b = tuple(rng.uniform(1, 50, 2)), tuple(rng.uniform(1, 50, 2))
        out.append(Row({"A": a, "B": b}, (offset + np.dot(weights, b)) / naive, naive, kernel))
    return out


def test_fit_picks_the_assumption_and_the_weights_the_measurements_follow():
    rng = np.random.default_rng(1)
    truth = (3e-9, 1e-9)
    rows = _rows("k1", 1e-7, 5e-8, truth, rng) + _rows("k2", 4e-6, 2e-6, truth, rng)
    cal = fit(rows)
    assert cal is not None and cal.assumption == "B" and cal.error < 1e-9
    assert np.allclose(cal.weights, truth, rtol=1e-6)  # each kernel's own offset is not a weight
    assert fit(rows[: MIN_ROWS - 1]) is None  # too few measurements fit noise


@pytest.mark.parametrize("proc", [K.matmul16, K.inner_alloc, K.stencil_pair_i32, K.vadd18_i32])
def test_the_cpu_terms_give_the_model_cost_under_every_assumption(proc):
    program = lower(proc)
    model = CpuCost(buffers_of(program))
    features = cpu_features(model, program)
    assert set(features) == set(CPU_ASSUMPTIONS)
    for name, assumed in CPU_ASSUMPTIONS.items():
        weights = (2.5, 0.7, 1.3, 40.0, 3.0)
        want = program_cost(replace(model, **assumed, **dict(zip(CPU_TERMS, weights))), program)
        assert np.dot(weights, features[name]) == pytest.approx(want)
        assert program_cost(calibrated_cpu_cost(model, name, weights), program) == pytest.approx(want)


def test_the_chain_term_counts_sums_that_wait_on_their_own_store():
    from exo.stdlib.scheduling import reorder_loops

    def chain(proc) -> float:
        program = lower(proc)
        return cpu_features(CpuCost(buffers_of(program)), program)["scalar, L1"][CPU_TERMS.index("chain")]

    # C[i, j] += A[i, k] * B[k, j] with k innermost: every iteration waits for the last one's store
    assert chain(K.matmul16) == 16**3
    # with j innermost the address moves every iteration: no chain
    assert chain(reorder_loops(K.matmul16, "j k")) == 0
