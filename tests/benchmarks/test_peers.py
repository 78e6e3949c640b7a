"""The peers benchmark's own pieces that need neither Halide nor TVM: flop counts, the kernels'
shapes and semantics, the FMA peak, the report's ratios."""

from __future__ import annotations

import time

import numpy as np
import pytest

from benchmarks import peers
from exo_egraph.validate import random_inputs, run_proc


def test_flops_are_counted_per_kernel():
    flops = {k.name: k.flops for k in peers.KERNELS}
    assert flops == {
        "matmul_f32_64": 2 * 64**3,
        "matmul_f32_128": 2 * 128**3,
        "matmul_f32_256": 2 * 256**3,
        "matmul_f32_128x1024x64": 2 * 128 * 1024 * 64,
        "gemv_f32_128": 2 * 128 * 128,
        "blur2d_f32": 2 * 64 * 62 + 2 * 62 * 62,  # two adds a tmp element, two an output element
        "conv1d_f32": 2 * 124 * 5,
        "conv2d_f32": 2 * 32 * 32 * 32 * 16 * 9,  # out channels, rows, columns, in channels, window
    }


@pytest.mark.parametrize("k", peers.KERNELS, ids=lambda k: k.name)
def test_the_reference_computes_what_the_exo_kernel_does(k):
    proc = peers.load_original(peers.KERNEL_DIR / k.file, k.name)
    inputs = random_inputs(proc)
    assert tuple((name, v.shape) for name, v in inputs.items()) == k.shapes
    got = run_proc(proc, inputs)[k.output]
    want = peers.reference(k, inputs) + (inputs[k.output] if k.accumulates else 0)
    assert peers.check(got, want) is None
    assert peers.check(got + 1, want).startswith("wrong result")


def test_the_peak_kernel_compiles_and_reports_a_positive_rate():
    start = time.perf_counter()
    peak = peers.measure_peak(runs=3, run_s=0.02, timeout=10)
    assert time.perf_counter() - start < 10
    assert peak.gflops > 0 and peak.lanes in (8, 16) and peak.isa in ("avx512f", "avx2-fma")


def test_the_worker_environment_pins_one_thread():
    env = peers.pin_threads({"OPENBLAS_CORETYPE": "Haswell", "OPENBLAS_L2_SIZE": "1", "PATH": "/bin"})
    assert "OPENBLAS_CORETYPE" not in env and "OPENBLAS_L2_SIZE" not in env and env["PATH"] == "/bin"
    assert env["OPENBLAS_NUM_THREADS"] == env["OMP_NUM_THREADS"] == env["HL_NUM_THREADS"] == "1"


def test_time_calls_reports_a_median_per_call():
    seconds, spread, runs = peers.time_calls(lambda: time.sleep(0.001), run_s=0.005, runs=3)
    assert runs == 3 and 0.0009 < seconds < 0.01 and spread >= 0


def _row(peer: str, seconds: float | None, search_s: float | None = None, note: str = "") -> dict:
    return peers.Row(peer, seconds=seconds, search_s=search_s, ok=seconds is not None, note=note).to_json(1_000_000)


def test_the_report_renders_rates_and_ratios_from_a_result():
    result = {
        "command": "python benchmarks/peers.py --kernels k", "date": "2025-01-01T00:00:00+00:00",
        "machine": {"cpu": "Test CPU", "cores": 2, "simd": ["avx2"]}, "cflags": ["-O3"],
        "versions": {"gcc": "12"}, "peak": {"gflops": 100.0, "isa": "avx2-fma", "lanes": 8, "runs": 3},
        "settings": {"target": "cpu", "budget_s": 20.0, "tvm_trials": 8},
        "kernels": [{"name": "k", "flops": 1_000_000, "rows": [
            _row("naive", 1e-3),  # 1 GFLOP/s
            _row("exo-egraph", 2.5e-4, search_s=3.0),  # 4 GFLOP/s
            _row("Halide Li2018", 1e-4, search_s=0.01),  # 10 GFLOP/s
            _row("TVM MetaSchedule", None, note="worker died (signal 11): boom | x"),
        ]}],
    }  # fmt: skip
    assert result["kernels"][0]["rows"][1]["gflops"] == pytest.approx(4.0)
    md = peers.render_markdown(result)
    assert "python benchmarks/peers.py --kernels k" in md and "Test CPU" in md and "100.0 GFLOP/s" in md
    lines = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]] for line in md.splitlines() if line.startswith("| ")}
    # GFLOP/s, % of peak, search time, x naive, x exo-egraph, note
    assert lines["naive"][:5] == ["1.00", "1.0", "—", "1.00", "0.25"]
    assert lines["exo-egraph"][:5] == ["4.00", "4.0", "3.0", "4.00", "1.00"]
    assert lines["Halide Li2018"][:5] == ["10.00", "10.0", "0.01", "10.00", "2.50"]
    assert lines["TVM MetaSchedule"][:5] == ["—"] * 5
    assert "boom \\| x" in md  # a pipe in a note cannot break the table
