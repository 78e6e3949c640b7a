"""The CPU cost model: one price for one program, however the e-graph encoded it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from exo import DRAM, compile_procs_to_strings, proc

from exo_egraph import Budget, explore
from exo_egraph import terms as t
from exo_egraph.cli import load_procs
from exo_egraph.extract.cost import CpuCost, buffers_of, program_cost, vectorized_loops
from exo_egraph.extract.extractors import extract
from exo_egraph.lower import lower
from exo_egraph.targets.cpu import CpuTarget, saturate_term
from exo_egraph.validate.cpu import CFLAGS, NATIVE_CFLAGS, vectorization

KERNELS = Path(__file__).resolve().parents[2] / "benchmarks" / "kernels"
KERNEL_FILES = {"blur2d_f32": "blur2d.py", "scale_add_f32": "blur2d.py", "matmul_i8_16": "matmul.py", "conv1d_i8": "conv1d.py"}


def test_program_cost_prices_an_extracted_schedule_as_the_extractor_did():
    proc = load_procs(KERNELS / "matmul.py")["matmul_i8_16"]
    original = lower(proc)
    model = CpuCost(buffers_of(original))
    best = extract(saturate_term(original).view, model, 3)
    for cand in best:
        assert program_cost(model, t.materialize(cand.proc)) == cand.cost
    assert program_cost(model, original) > best[0].cost


def _gcc_vectorised_loops(proc, cflags: tuple[str, ...], tmp_path: Path) -> int:
    """How many loops gcc reports it vectorised (``-fopt-info-vec``) in the C of ``proc``. One
    proc per compile: gcc folds identical functions (``-fipa-icf``) before it vectorises."""
    c_src, h_src = compile_procs_to_strings([proc], "kernels.h")
    (tmp_path / "kernels.h").write_text(h_src)
    (tmp_path / "kernels.c").write_text('#include "kernels.h"\n' + c_src)
    done = subprocess.run(
        ["gcc", *cflags, "-c", str(tmp_path / "kernels.c"), "-o", "/dev/null", "-fopt-info-vec-optimized"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return len(set(re.findall(r":(\d+):\d+: optimized: loop vectorized", done.stderr)))


@pytest.mark.parametrize("kernel", ["blur2d_f32", "scale_add_f32", "matmul_i8_16", "conv1d_i8"])
def test_the_model_vectorises_exactly_the_loops_gcc_does_in_the_cpu_build(kernel, tmp_path):
    """The cpu target's model assumes what its build (`CFLAGS`, gcc -O2) vectorises: a loop that
    stores into one argument and reads another stays scalar (no alias checks at -O2), one that
    stores into a buffer the proc allocated does not. Held to gcc's own report, loop by loop
    counted, on a kernel and its model's best schedules (tiled, reordered, unrolled, fused)."""
    proc = load_procs(KERNELS / KERNEL_FILES[kernel])[kernel]
    result = explore(proc, CpuTarget(), budget=Budget(seconds=20.0), top_k=6, validate=False)
    procs = [proc] + [c.proc for c in result.candidates if c.pick.term is not None]
    built = vectorization(CFLAGS)
    assert built.simd_bytes > 0 and not built.alias_checks  # gcc ≥ 12: -O2 vectorises, without alias checks
    model_says = [
        vectorized_loops(CpuCost(buffers_of(term), simd_bytes=built.simd_bytes, alias_checks=built.alias_checks), term)
        for term in map(lower, procs)
    ]
    assert model_says == [_gcc_vectorised_loops(p, CFLAGS, tmp_path) for p in procs]
    if kernel in ("blur2d_f32", "scale_add_f32"):
        assert all(model_says)  # their producers store into a buffer the proc allocated


@proc
def column_sum_1024(A: f32[64, 1024] @ DRAM, y: f32[1024] @ DRAM):
    for j in seq(0, 1024):
        for i in seq(0, 64):
            y[j] += A[i, j]


@proc
def column_sum_1000(A: f32[64, 1000] @ DRAM, y: f32[1000] @ DRAM):
    for j in seq(0, 1000):
        for i in seq(0, 64):
            y[j] += A[i, j]


@pytest.mark.parametrize("kernel, stays", [(column_sum_1024, False), (column_sum_1000, True)])
def test_a_column_of_rows_a_power_of_two_apart_needs_more_room_than_the_cache_has(kernel, stays):
    """64 rows 4 KiB apart fall into one set of a 64-set, 8-way cache: a walk down a column does
    not stay in cache, though its 64 lines are an eighth of it; rows 4000 bytes apart spread over
    the sets, and it does."""
    term = lower(kernel)
    model = CpuCost(buffers_of(term))
    column = frozenset({t.Dim("i", 1, 64)})
    band = term.body[0].body[0].body
    assert model.lines(column, band) == 64 + 1  # A's 64 lines and y's one
    assert model.fits(model.room(column, band)) is stays


def test_gcc_says_what_each_build_vectorises():
    """The probe behind the model's assumption: -O2 vectorises without alias checks, -O3 with
    them (at the host's width under -march=native), -O1 and -fno-tree-vectorize not at all."""
    portable, native = vectorization(CFLAGS), vectorization(NATIVE_CFLAGS)
    assert portable.simd_bytes == 16 and not portable.alias_checks
    assert native.simd_bytes >= 16 and native.alias_checks
    assert vectorization(("-O1",)).simd_bytes == 0
    assert vectorization(("-O2", "-fno-tree-vectorize")).simd_bytes == 0
