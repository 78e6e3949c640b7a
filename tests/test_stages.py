"""Staged saturation (`exo_egraph.targets.cpu.staged_saturate`): its pruning against the unstaged search.

The sketch phase drops the loop orders that put a loop's inner tile outside its outer one, and
keeps only its cheapest schedules for the refining phase. That is an approximation; these tests
measure it where both searches finish: the staged best must equal the unstaged best.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from exo import DRAM, proc

from exo_egraph.cli import load_proc
from exo_egraph.extract.extractors import extract
from exo_egraph.rewrites.loops import LoopRuleConfig
from exo_egraph.saturate import Budget, Deadline
from exo_egraph.lower import lower
from exo_egraph.targets.cpu import SKETCH_SEEDS, create, sketch_min_part, staged_saturate

KERNELS = Path(__file__).resolve().parent.parent / "benchmarks" / "kernels"
# every shipped cpu kernel whose unstaged search saturates in a few seconds
SHIPPED = [
    "blur2d.py::blur2d_f32",
    "conv1d.py::conv1d_f32",
    "conv1d.py::conv1d_i8",
    "gemv.py::gemv_f32_128",
    "blur2d.py::scale_add_f32",
    "matmul.py::matmul_f32_16",
    "matmul.py::matmul_f32_64",
    "matmul.py::matmul_i8_64",
    "gemmini.py::gemm_i8",
    "gemmini.py::conv3x3_i8",
]


# kernels with loops of 512 and 1024 trips (the sketch splits them into parts of 8 or more) whose
# unstaged search still saturates in seconds


@proc
def gemv_f32_512(A: f32[512, 512] @ DRAM, x: f32[512] @ DRAM, y: f32[512] @ DRAM):
    for i in seq(0, 512):
        for j in seq(0, 512):
            y[i] += A[i, j] * x[j]


@proc
def scale_add_f32_1024(a: f32[1024, 16] @ DRAM, b: f32[1024, 16] @ DRAM, out: f32[1024, 16] @ DRAM):
    for i in seq(0, 1024):
        for j in seq(0, 16):
            out[i, j] = a[i, j] * 2.0 + b[i, j]


@proc
def matmul_f32_512x32x32(A: f32[512, 32] @ DRAM, B: f32[32, 32] @ DRAM, C: f32[512, 32] @ DRAM):
    for i in seq(0, 512):
        for j in seq(0, 32):
            for k in seq(0, 32):
                C[i, j] += A[i, k] * B[k, j]


LONG = {p.name(): p for p in (gemv_f32_512, scale_add_f32_1024, matmul_f32_512x32x32)}


def _best_costs(spec: str, staged: bool) -> tuple[float, object]:
    target = create()
    problem = target.prepare(LONG[spec] if spec in LONG else load_proc(str(KERNELS / spec)))
    budget = Budget(seconds=300)
    if staged:
        sat = staged_saturate(problem, target.rules, budget, None, Deadline.after(300))
    else:
        sat = replace(target, staged=False).saturate(problem, budget, None, Deadline.after(300))
    return extract(sat.view, problem.model, k=1)[0].cost, sat.stats


@pytest.mark.parametrize("spec", SHIPPED + list(LONG), ids=lambda s: s.split("::")[-1])
def test_staging_finds_the_unstaged_best(spec: str):
    staged, stats = _best_costs(spec, staged=True)
    unstaged, full = _best_costs(spec, staged=False)
    assert full.stop_reason.value == "saturated"
    assert staged == unstaged
    sketch, refine = stats.stages
    assert sketch.kept <= SKETCH_SEEDS and sketch.enodes <= full.enodes


def test_the_sketch_splits_long_loops_coarser():
    assert [sketch_min_part(lower(p), 4) for p in LONG.values()] == [8, 8, 8]
    assert sketch_min_part(lower(load_proc(str(KERNELS / "matmul.py::matmul_f32_128"))), 4) == 4


def test_the_sketch_alone_misses_blur2ds_best_and_refining_recovers_it():
    # what the refine phase is for: blur2d's best puts a tile out of order
    target = create(LoopRuleConfig(tiles_in_order=True))
    problem = target.prepare(load_proc(str(KERNELS / "blur2d.py::blur2d_f32")))
    sketch = target.saturate(problem, Budget(), None, Deadline.after(60))
    sketch_best = extract(sketch.view, problem.model, k=1)[0].cost
    staged, stats = _best_costs("blur2d.py::blur2d_f32", staged=True)
    assert staged < sketch_best
    assert stats.stages[0].bound >= sketch_best


def test_the_report_gives_each_stage(tmp_path):
    from exo_egraph import explore
    from exo_egraph.report import to_json

    result = explore(load_proc(str(KERNELS / "matmul.py::matmul_f32_64")), "cpu", validate=False)
    stages = to_json(result)["egraph"]["stages"]
    assert [s["name"] for s in stages] == ["sketch", "refine"]
    assert stages[0]["kept"] == SKETCH_SEEDS and stages[0]["pruned_at_cost"] >= result.cost
    assert stages[1]["schedules"] == result.stats.schedules and "extract" in result.phases


def test_tuning_refines_from_the_input_too():
    # refined from the sketch's few best schedules alone, conv1d's e-graph holds a few dozen
    # programs: a tenth of the space or less, too few for `tune` to sample; from the input as well, it
    # holds the whole space again
    target = create()
    problem = target.prepare(load_proc(str(KERNELS / "conv1d.py::conv1d_i8")))
    narrow = target.saturate(problem, Budget(), None, Deadline.after(60))
    wide = target.for_tuning().saturate(problem, Budget(), None, Deadline.after(60))
    unstaged = replace(target, staged=False).saturate(problem, Budget(), None, Deadline.after(60))
    assert 10 * narrow.stats.schedules <= wide.stats.schedules
    assert wide.stats.schedules >= unstaged.stats.schedules
    assert extract(wide.view, problem.model, k=1)[0].cost == extract(narrow.view, problem.model, k=1)[0].cost
