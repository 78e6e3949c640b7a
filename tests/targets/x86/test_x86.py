"""The x86 target: instructions selected by unification, the plan e-graph, sound replays, and the model's claim.

Runs on this machine's best vector ISA (`default_isa`); plans are built and timed with
`NATIVE_CFLAGS`, as users build Exo's C.
"""

from __future__ import annotations

import json
import random
from dataclasses import replace
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
from exo import DRAM, proc
from hypothesis import given, settings
from hypothesis import strategies as st

from exo_egraph import terms as t
from exo_egraph.cli import main
from exo_egraph.lower import Unsupported, lower
from exo_egraph.extract.x86_cost import X86Machine, cost_model
from exo_egraph.rewrites.x86 import MIN_KC, fits, initial_plan, reduction_blocks, tiles, to_egg, x86_rules
from exo_egraph.saturate import Budget, saturate
from exo_egraph.targets.x86.isa import Role, default_isa, select_isa
from exo_egraph.script import ReplayError
from exo_egraph.targets.x86.pattern import DotKernel, NotMicroKernel, Plan, find_kernel, find_micro_kernel, tail_rows
from exo_egraph.targets.x86.replay import replay_plan
from exo_egraph.targets.x86.target import plans_of
from exo_egraph.validate.cpu import NATIVE_CFLAGS, random_inputs, run_many

KERNELS = Path(__file__).resolve().parents[3] / "benchmarks" / "kernels"


@proc
def mm_32x48x32(A: f32[32, 32] @ DRAM, B: f32[32, 48] @ DRAM, C: f32[32, 48] @ DRAM):
    for i in seq(0, 32):
        for k in seq(0, 32):  # written in another order: the replay reorders into the plan's
            for j in seq(0, 48):
                C[i, j] += B[k, j] * A[i, k]  # factors in either order


@lru_cache(maxsize=None)
def _isa():
    return select_isa(default_isa())


def test_instructions_are_selected_by_unifying_their_bodies():
    for name, width, registers in (("avx512", 16, 32), ("avx2", 8, 16)):
        isa = select_isa(name)
        assert (isa.width, isa.registers) == (width, registers)
        assert {role for role, _ in isa.instrs} == set(Role)
        import exo.platforms.x86 as platform

        c = [getattr(platform, instr).INTERNAL_proc().instr.c_instr for _, instr in isa.instrs]
        assert all(("_mm512_" if width == 16 else "_mm256_") in text for text in c), c  # the ISA's intrinsics
    with pytest.raises(Unsupported):
        select_isa("neon")


def test_the_micro_kernel_is_found_in_any_loop_order_and_others_are_refused_with_a_reason():
    mk = find_micro_kernel(lower(mm_32x48x32))
    assert (mk.x, mk.y, mk.r, mk.out, mk.row, mk.col) == ("i", "j", "k", "C", "A", "B")
    from benchmarks.kernels.conv1d import conv1d_f32

    with pytest.raises(NotMicroKernel, match="conv1d_f32"):
        find_micro_kernel(lower(conv1d_f32))


@lru_cache(maxsize=None)
def _saturated():
    mk, isa = find_micro_kernel(lower(mm_32x48x32)), _isa()
    return mk, saturate(to_egg(initial_plan(mk, isa)), x86_rules(mk, isa), Budget())


def test_the_e_graph_holds_every_legal_plan_and_nothing_else():
    mk, sat = _saturated()
    isa = _isa()
    plans = plans_of(sat.view)
    legal = set(tiles(mk, isa))
    # each tile: two orders over the whole reduction, six with the reduction blocked by each kc
    assert sat.stats.schedules == len(plans) == len(legal) * (2 + 6 * len(reduction_blocks(mk)))
    for p in plans:
        assert (p.rows, p.vectors) in legal and p.rows * p.vectors + p.vectors + 1 <= isa.registers
        assert p.kc == mk.extent("k") or (mk.extent("k") % p.kc == 0 and p.kc >= MIN_KC)


@settings(max_examples=6, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**32 - 1))
def test_every_rule_is_sound_a_random_plan_replays_and_matches_the_input(seed: int):
    mk, sat = _saturated()
    plan = random.Random(seed).choice(plans_of(sat.view))
    done = replay_plan(mm_32x48x32, mk, _isa(), plan)
    assert any(isa_instr in done.script for _, isa_instr in _isa().instrs)
    want, got = run_many([mm_32x48x32, done.proc], random_inputs(mm_32x48x32, seed=seed), NATIVE_CFLAGS)
    # FMA rounds once where the input rounds twice; the sum order of every element is kept
    assert np.allclose(got["C"], want["C"], rtol=1e-5, atol=1e-5), plan.show()


def test_rows_whole_tiles_leave_are_cut_off_and_tiled_as_a_tile_of_their_own():
    """32 rows in tiles of 7 (or 5, or 3): ``divide_loop(..., tail="cut")`` leaves 4 (2, 2) rows,
    which are extracted and tiled with the plan's vectors, reduction blocks and order."""
    mk, isa = find_micro_kernel(lower(mm_32x48x32)), _isa()
    machine = X86Machine.host(isa.width)
    plans = [Plan(7, 1, 32, ("i", "j")), Plan(5, 3, 16, ("k", "j", "i")), Plan(3, 1, 32, ("j", "i"))]
    done = []
    for plan in plans:
        tail = 32 % plan.rows
        assert tail_rows(mk, plan.rows) == tail and fits(mk, isa, plan.rows, plan.vectors)
        done.append(replay_plan(mm_32x48x32, mk, isa, plan))
        assert f'divide_loop(p, "i", {plan.rows}, ["io", "ii"], tail="cut")' in done[-1].script
        assert f'divide_loop(p, "ii", {tail}, ["iio", "iii"], perfect=True)' in done[-1].script  # the tail's own tile
        # priced as the whole tiles' rows, and the tail's as a tile of its own rows
        whole = cost_model(mk.priced_at("i", 32 - tail), machine).plan(plan)
        rest = cost_model(mk.priced_at("i", tail), machine).plan(replace(plan, rows=tail))
        assert cost_model(mk, machine).plan(plan) == pytest.approx(whole + rest)
    want, *gots = run_many([mm_32x48x32] + [d.proc for d in done], random_inputs(mm_32x48x32, seed=7), NATIVE_CFLAGS)
    for plan, got in zip(plans, gots):
        assert np.allclose(got["C"], want["C"], rtol=1e-5, atol=1e-5), plan.show()


def test_rows_of_a_size_argument_are_never_tiled_as_a_tail_of_their_own():
    """A loop of a size argument's trips is cut at replay where the plan's tiles end, its tail left
    as written (`cut_tiles`): the guard allows only rows that divide the trips it is priced at."""

    @proc
    def mm_m(M: size, A: f32[M, 8] @ DRAM, B: f32[8, 32] @ DRAM, C: f32[M, 32] @ DRAM):
        for i in seq(0, M):
            for j in seq(0, 32):
                for k in seq(0, 8):
                    C[i, j] += A[i, k] * B[k, j]

    mk = find_micro_kernel(lower(mm_m))
    assert mk.cut == ("i",) and tail_rows(mk, 7) == 0 and not fits(mk, _isa(), 7, 1) and fits(mk, _isa(), 8, 1)


def test_explore_writes_an_avx_schedule_that_validates_and_the_report_says_how_it_was_built(tmp_path, capsys):
    code = main(["explore", f"{KERNELS}/matmul.py::matmul_f32_64", "--target", "x86", "--out", str(tmp_path)])
    assert code == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["validation"]["ok"] and report["validation"]["speedup"] > 1
    assert report["build"].startswith("gcc -O3 -march=native") and report["best"]["isa"] == _isa().name
    script = (tmp_path / "schedule.py").read_text()
    assert "replace_all" in script and _isa().instr(Role.FMA) in script
    # four reduction steps to an iteration (`STEPS_UNROLLED`): K = 64 trips, a constant they divide
    assert 'divide_loop(p, "k", 4, ["k", "k_u"], perfect=True)' in script and 'unroll_loop(p, "k_u")' in script


RANK_K = """from __future__ import annotations
from exo import *


@proc
def rank_k_6x16(K: size, A: f32[6, K] @ DRAM, B: f32[K, 16] @ DRAM, C: f32[6, 16] @ DRAM):
    for i in seq(0, 6):
        for j in seq(0, 16):
            for k in seq(0, K):
                C[i, j] += A[i, k] * B[k, j]
"""


def test_a_reduction_of_a_size_arguments_trips_is_tiled_in_registers_and_never_blocked(tmp_path, capsys):
    """The form of Exo's own AVX2 example (``rank_k_reduce_6x16``): a 6 x 16 output over ``K``
    steps. The register tile needs constant rows and lanes only; the reduction runs whole (no
    block can be known to divide ``K``), priced at `SYMBOLIC_STEPS`. Validated at K = 42, so that
    the steps after the last group of four (unrolled) run too."""
    from exo_egraph.targets.x86.pattern import SYMBOLIC_STEPS

    f = tmp_path / "rank_k.py"
    f.write_text(RANK_K)
    from exo_egraph.cli import load_proc

    mk = find_micro_kernel(lower(load_proc(f"{f}::rank_k_6x16")))
    assert mk.symbolic == ("k",) and mk.steps == SYMBOLIC_STEPS and not mk.blockable and not reduction_blocks(mk)
    assert main(["explore", f"{f}::rank_k_6x16", "--target", "x86", "--out", str(tmp_path / "o"), "--sizes", "K=42"]) == 0
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report["validation"]["ok"] and report["validation"]["sizes"] == {"K": 42}
    script = (tmp_path / "o" / "schedule.py").read_text()
    assert _isa().instr(Role.FMA) in script and '["ko", "ki"]' not in script  # never blocked
    # four steps to an iteration, the K % 4 steps after them cut off as a loop
    assert 'divide_loop(p, "k", 4, ["k", "k_u"], tail="cut")' in script and 'unroll_loop(p, "k_u")' in script


SGEMM_AS_WRITTEN = """from __future__ import annotations
from exo import *


@proc
def sgemm(M: size, N: size, K: size, A: f32[M, K] @ DRAM, B: f32[K, N] @ DRAM, C: f32[M, N] @ DRAM):
    assert M >= 1
    assert N >= 1
    for k in seq(0, K):
        for i in seq(0, M):
            for j in seq(0, N):
                C[i, j] += A[i, k] * B[k, j]
"""


def test_tile_loops_of_size_arguments_are_cut_where_whole_tiles_end_and_the_tails_left_as_written(tmp_path):
    """Exo's own sgemm, as written: every size an argument. The plan tiles rows and lanes as if
    they ran `SYMBOLIC_STEPS`; the replay cuts each where the plan's whole tiles end
    (``divide_loop(..., tail="cut")``, then ``fission`` of the tail out of the loops around it),
    tiles the whole tiles and leaves the tails as written. Validated where both run (M = N =
    `CUT_SIZE`, not a multiple of any tile), and the pasted script computes the same at other
    sizes, tails of every length included."""
    from exo_egraph.cli import load_proc
    from exo_egraph.targets.x86.pattern import SYMBOLIC_STEPS
    from exo_egraph.targets.x86.target import CUT_SIZE, X86Target

    f = tmp_path / "sgemm.py"
    f.write_text(SGEMM_AS_WRITTEN)
    original = load_proc(f"{f}::sgemm")
    problem = X86Target(_isa().name).prepare(original)
    assert problem.kernel.cut == ("i", "j") and problem.sizes(None) == {"M": CUT_SIZE, "N": CUT_SIZE}
    assert problem.sizes({"M": 7}) == {"M": 7, "N": CUT_SIZE}
    # what `tune` measures candidates at, as validation runs them
    assert X86Target(_isa().name).run_sizes(problem, None) == {"M": CUT_SIZE, "N": CUT_SIZE}
    assert problem.kernel.extent("i") == problem.kernel.extent("j") == SYMBOLIC_STEPS
    # at the sizes the user runs it at, plans are priced there: rows dividing M, the lanes' whole vectors
    at = X86Target(_isa().name).prepare(original, {"M": 100, "N": 100, "K": 40}).kernel
    assert (at.extent("i"), at.extent("j"), at.extent("k")) == (100, 100 - 100 % _isa().width, 40)
    assert at.symbolic == ("k", "i", "j") and not at.blockable  # K is still not divided: it may be any size
    assert main(["explore", f"{f}::sgemm", "--target", "x86", "--out", str(tmp_path / "o")]) == 0
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report["validation"]["ok"] and report["validation"]["sizes"] == {"M": CUT_SIZE, "N": CUT_SIZE, "K": 16}
    script = (tmp_path / "o" / "schedule.py").read_text()
    assert 'divide_loop(p, "i", ' in script and 'tail="cut"' in script and _isa().instr(Role.FMA) in script
    namespace: dict = {}
    exec(script, namespace)
    scheduled = namespace["schedule"](original)
    for sizes in ({"M": 1, "N": 1, "K": 1}, {"M": 37, "N": 45, "K": 9}, {"M": 64, "N": 64, "K": 3}):
        inputs = random_inputs(original, sizes)
        got, want = run_many([scheduled, original], inputs, NATIVE_CFLAGS)
        assert np.allclose(got["C"], want["C"], rtol=1e-5, atol=1e-5), sizes


GEMV_AS_WRITTEN = """from __future__ import annotations
from exo import *


@proc
def gemv(M: size, N: size, A: f32[M, N], x: f32[N], y: f32[M]):
    assert M % 8 == 0
    assert N % 8 == 0
    for i in seq(0, M):
        for j in seq(0, N):
            y[i] += A[i, j] * x[j]
"""


def test_a_matrix_vector_product_over_size_arguments_is_cut_and_tiled(tmp_path):
    """Exo's own gemv (its cursors example), as written: rows and reduction run to size arguments.
    Both are cut where the plan's whole tiles end; the reduction's tail adds into the outputs after
    the lanes' sums. Validated at the first sizes from `CUT_SIZE` that meet ``M % 8 == 0`` (104),
    and the pasted script computes the same at other sizes."""
    from exo_egraph.cli import load_proc

    f = tmp_path / "gemv.py"
    f.write_text(GEMV_AS_WRITTEN)
    assert main(["explore", f"{f}::gemv", "--target", "x86", "--out", str(tmp_path / "o")]) == 0
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report["validation"]["ok"] and report["validation"]["sizes"] == {"M": 104, "N": 104}, report["validation"]
    script = (tmp_path / "o" / "schedule.py").read_text()
    assert 'tail="cut"' in script and _isa().instr(Role.FMA) in script
    namespace: dict = {}
    exec(script, namespace)
    original = load_proc(f"{f}::gemv")
    scheduled = namespace["schedule"](original)
    for sizes in ({"M": 8, "N": 8}, {"M": 24, "N": 40}, {"M": 72, "N": 200}):
        got, want = run_many([scheduled, original], random_inputs(original, sizes), NATIVE_CFLAGS)
        assert np.allclose(got["y"], want["y"], rtol=1e-4, atol=1e-4), sizes


@proc
def lanes_outermost(M: size, N: size, A: f32[M, 12] @ DRAM, B: f32[12, N] @ DRAM, C: f32[M, N] @ DRAM):
    for j in seq(0, N):
        for i in seq(0, M):
            for k in seq(0, 12):
                C[i, j] += A[i, k] * B[k, j]


def test_tails_of_cut_tile_loops_run_their_lanes_innermost_where_gcc_vectorises_them():
    """Left as written, a tail of rows would end in the reduction: one scalar chain per output
    (at 100 rows in tiles of 16 that made Exo's conv 2.6x slower). Each tail nest is reordered
    so that its lanes loop is innermost; the kernel still computes the input's outputs."""
    from exo_egraph.targets.x86.pattern import perfect_nest
    from exo_egraph.targets.x86.tails import cut_tiles

    mk = find_micro_kernel(lower(lanes_outermost))
    split = cut_tiles(lanes_outermost, mk, {"i": 8, "j": 32})
    _, tail_rows, tail_lanes = lower(split.calls).body  # j is outermost: its tail was cut first
    orders = [[lp.var for lp in perfect_nest(t.Proc("nest", (), (), (nest,)))[0]] for nest in (tail_rows, tail_lanes)]
    assert orders == [["jo", "ii", "k", "ji"], ["i", "k", "ji"]]
    inputs = random_inputs(lanes_outermost, {"M": 13, "N": 45})
    want, got = run_many([lanes_outermost, split.calls], inputs, NATIVE_CFLAGS)
    assert np.allclose(got["C"], want["C"], rtol=1e-5, atol=1e-5)


ACCUMULATOR_CONV = """from __future__ import annotations
from exo import *
from exo.libs.externs import relu


@proc
def conv_relu(inp: f32[2, 6, 10, 8] @ DRAM, out: f32[2, 4, 8, 32] @ DRAM, w: f32[8, 3, 3, 32] @ DRAM, bias: f32[32] @ DRAM):
    for oc in seq(0, 32):
        for n in seq(0, 2):
            for oy in seq(0, 4):
                for ox in seq(0, 8):
                    res: f32
                    res = bias[oc]
                    for ky in seq(0, 3):
                        for kx in seq(0, 3):
                            for kc in seq(0, 8):
                                res += w[kc, ky, kx, oc] * inp[n, oy + ky, ox + kx, kc]
                    relu_v: f32
                    relu_v = relu(res)
                    out[n, oy, ox, oc] = relu_v
"""


def test_a_reduction_into_a_scalar_accumulator_is_split_and_its_reduction_tiled(tmp_path):
    """Exo's own x86 convolution's form: ``res = bias[oc]``, the reduction into ``res``, a ReLU and
    the store. The tile loops come outermost; under them ``res`` gets the tile's dimensions, is
    lifted out of the tile, and the loops split after its initial value and after its
    reduction; the reduction nest is tiled as a micro-kernel and put back (``extract_subproc``,
    ``call_eqv``). No buffer the output's size: ``res`` is one tile. Within float tolerance of
    the input, and the pasted script makes the same proc."""
    f = tmp_path / "conv_relu.py"
    f.write_text(ACCUMULATOR_CONV)
    assert main(["explore", f"{f}::conv_relu", "--target", "x86", "--out", str(tmp_path / "o")]) == 0
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report["validation"]["ok"] and report["validation"]["speedup"] > 1, report["validation"]
    assert any("scalar accumulator" in n for n in report["notes"])
    script = (tmp_path / "o" / "schedule.py").read_text()
    assert 'expand_dim(p, "res", ' in script and '"oci")' in script and "extract_subproc" in script
    assert _isa().instr(Role.FMA) in script
    from exo_egraph.cli import load_proc

    namespace: dict = {}
    exec(script, namespace)
    original = load_proc(f"{f}::conv_relu")
    scheduled = namespace["schedule"](original)
    got, want = run_many([scheduled, original], random_inputs(original), NATIVE_CFLAGS)
    assert np.allclose(got["out"], want["out"], rtol=1e-4, atol=1e-4)
    (res,) = [s for s in t.walk(lower(scheduled).body) if isinstance(s, t.Alloc) and s.name == "res"]
    rows, lanes = (a.const for a in res.shape)
    assert rows * lanes <= 32 * _isa().width, res.shape  # a register tile's worth, not the output's 2 x 4 x 8 x 32


def test_an_accumulator_under_loops_of_size_arguments_is_split_and_its_tiles_cut(tmp_path):
    """Exo's own x86 convolution as written: its output loops run to size arguments, the output
    width defined by the input's (``assert W == IW - 2``). ``res`` is expanded by those sizes, and
    the tile loops of its reduction are cut at replay. Validated with 100 columns and channels
    (whole tiles and tails): the width through the input width that defines it."""
    f = tmp_path / "conv_sizes.py"
    text = ACCUMULATOR_CONV.replace("def conv_relu(", "def conv_relu(W: size, IW: size, OC: size, ")
    text = text.replace("    for oc in seq(0, 32):", "    assert W == IW - 2\n    for oc in seq(0, 32):")
    text = text.replace("f32[2, 6, 10, 8]", "f32[2, 6, IW, 8]").replace("f32[2, 4, 8, 32]", "f32[2, 4, W, OC]")
    text = text.replace("f32[8, 3, 3, 32]", "f32[8, 3, 3, OC]").replace("bias: f32[32]", "bias: f32[OC]")
    text = text.replace("seq(0, 32)", "seq(0, OC)").replace("for ox in seq(0, 8)", "for ox in seq(0, W)")
    f.write_text(text)
    assert main(["explore", f"{f}::conv_relu", "--target", "x86", "--out", str(tmp_path / "o")]) == 0
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report["validation"]["ok"] and report["validation"]["sizes"] == {"W": 100, "IW": 102, "OC": 100}, report["validation"]
    script = (tmp_path / "o" / "schedule.py").read_text()
    assert 'expand_dim(p, "res", "OC", "oc")' in script and 'tail="cut"' in script and _isa().instr(Role.FMA) in script
    # a buffer the output's size (its tiles are cut at replay): the passes that write its initial
    # values and read it into the epilogue walk it in its layout, lanes innermost
    from exo_egraph.cli import load_proc
    from exo_egraph.targets.x86.pattern import perfect_nest

    namespace: dict = {}
    exec(script, namespace)
    alloc, init, _, epilogue = lower(namespace["schedule"](load_proc(f"{f}::conv_relu"))).body
    for nest in (init, epilogue):
        loops, _ = perfect_nest(t.Proc("nest", (), (), (nest,)))
        assert [lp.var for lp in loops] == ["n", "oy", "ox", "oc"]


def test_an_accumulator_whose_store_misses_a_loop_is_left_to_the_loop_rules_and_says_why(tmp_path):
    f = tmp_path / "bad_conv.py"
    f.write_text(ACCUMULATOR_CONV.replace("out[n, oy, ox, oc] = relu_v", "out[n, oy, 0, oc] = relu_v"))
    from exo_egraph.cli import load_proc
    from exo_egraph.targets.x86.target import Portable, X86Target

    problem = X86Target(_isa().name).prepare(load_proc(f"{f}::conv_relu"))
    assert isinstance(problem, Portable)
    assert "nor does it reduce into a scalar accumulator (the epilogue's last statement" in problem.notes[-1]


def test_a_kernel_that_is_not_a_micro_kernel_takes_the_loop_rules_at_native_flags(tmp_path, capsys):
    code = main(["explore", f"{KERNELS}/conv1d.py::conv1d_f32", "--target", "x86", "--out", str(tmp_path), "--budget-s", "30"])
    assert code == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["validation"]["ok"] and report["validation"]["exact"]
    assert any("cpu loop rules" in n for n in report["notes"])


def test_isa_is_an_option_and_a_bad_one_is_one_line(tmp_path, capsys):
    argv = ["explore", f"{KERNELS}/matmul.py::matmul_f32_16", "--target", "x86", "--out", str(tmp_path)]
    assert main([*argv, "--isa", "avx2"]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["best"]["isa"] == "avx2" and report["validation"]["ok"]
    assert "mm256_fmadd_ps" in (tmp_path / "schedule.py").read_text()
    capsys.readouterr()
    assert main([*argv, "--isa", "neon"]) == 2
    err = capsys.readouterr().err
    assert "unknown ISA 'neon'" in err and "Traceback" not in err


@pytest.mark.parametrize("rule", ["divide_loop(rows)", "divide_loop(vectors)", "divide_loop(reduction)", "reorder_loops"])
def test_check_rules_exercises_every_x86_rule(rule: str):
    from exo_egraph.targets.x86.checks import check_rule

    report = check_rule(rule, examples=2, seed=3)
    assert report.ok, report.problem
    assert report.applied == report.examples == 2 and report.counted == 2


def test_a_broken_guard_is_caught(monkeypatch):
    # a tile guard that forgets the lanes' divisibility admits plans whose perfect divides Exo rejects
    import exo_egraph.rewrites.x86 as rules
    from exo_egraph.targets.x86.checks import check_rule

    monkeypatch.setattr(rules, "fits", lambda mk, isa, r, v: rules.registers_needed(r, v) <= isa.registers and r <= 3)
    report = check_rule("divide_loop(rows)", examples=4, seed=0, shrink=False)
    assert report.failure is not None


def test_a_tail_guard_that_forgets_which_rows_are_cut_admits_a_plan_exo_rejects(monkeypatch):
    """Only a micro-kernel's rows are cut into whole tiles and a tail; a guard that lets a
    matrix-vector product's rows leave a tail admits a plan whose perfect divide Exo refuses."""
    import exo_egraph.rewrites.x86 as rules
    from exo_egraph.cli import load_proc

    monkeypatch.setattr(rules, "tail_rows", lambda k, rows: k.extent(k.x) % rows)
    gemv, isa = load_proc(f"{KERNELS}/gemv.py::gemv_f32_128"), _isa()
    dk = find_kernel(lower(gemv))
    plans = plans_of(saturate(to_egg(initial_plan(dk, isa)), x86_rules(dk, isa), Budget()).view)
    bad = next(p for p in plans if dk.extent(dk.x) % p.rows)
    with pytest.raises(ReplayError):
        replay_plan(gemv, dk, isa, bad)


@proc
def mm_at_48x32x16(A: f32[16, 48] @ DRAM, B: f32[16, 32] @ DRAM, C: f32[48, 32] @ DRAM):
    for i in seq(0, 48):
        for j in seq(0, 32):
            for k in seq(0, 16):
                C[i, j] += A[k, i] * B[k, j]  # A transposed: its element is broadcast all the same


def test_a_transposed_row_operand_and_a_non_square_shape_tile():
    from exo_egraph import explore

    result = explore(mm_at_48x32x16, "x86", budget=Budget(seconds=60))
    assert result.validation.ok and result.best.replayed.steps and result.details[0]["plan"]
    with pytest.raises(NotMicroKernel, match="contiguous along j"):

        @proc
        def mm_bt(A: f32[16, 16] @ DRAM, B: f32[16, 16] @ DRAM, C: f32[16, 16] @ DRAM):
            for i in seq(0, 16):
                for j in seq(0, 16):
                    for k in seq(0, 16):
                        C[i, j] += A[i, k] * B[j, k]

        find_micro_kernel(lower(mm_bt))


def test_tune_measures_x86_plans_and_returns_a_faster_one(tmp_path):
    from benchmarks.kernels.matmul import matmul_f32_64

    from exo_egraph import tune

    result = tune(
        matmul_f32_64, "x86", trials=3, workers=0, db=tmp_path / "r.db", budget=Budget(seconds=120), measure_seconds=1.0, top_k=1
    )
    trials = result.tuning.trials
    assert len(trials) == 3 and trials[0].origin == "input" and all(tr.measurement.ok for tr in trials)
    assert "replace_all" in result.best.replayed.script and result.validation.speedup > 2  # tiles beat the input by far


@proc
def conv2d_small(inp: f32[4, 6, 34] @ DRAM, w: f32[8, 4, 3, 3] @ DRAM, out: f32[8, 4, 32] @ DRAM):
    for k in seq(0, 8):
        for oy in seq(0, 4):
            for ox in seq(0, 32):
                for c in seq(0, 4):
                    for ry in seq(0, 3):
                        for rx in seq(0, 3):
                            out[k, oy, ox] += w[k, c, ry, rx] * inp[c, oy + ry, ox + rx]


def test_a_2d_convolution_is_a_micro_kernel_over_channels_and_its_window():
    from exo_egraph import explore

    mk = find_micro_kernel(lower(conv2d_small))
    assert (mk.x, mk.y, mk.reductions, mk.outer, mk.col, mk.row) == ("k", "ox", ("c", "ry", "rx"), ("oy",), "inp", "w")
    result = explore(conv2d_small, "x86", budget=Budget(seconds=60))
    assert result.validation.ok and result.validation.speedup > 1 and "stage_mem" in result.best.replayed.script


def test_a_native_build_compares_floats_within_tolerance_because_gcc_contracts_into_fma(tmp_path, capsys):
    from exo_egraph.validate.cpu import CFLAGS, contracts

    assert contracts(NATIVE_CFLAGS) and not contracts(CFLAGS) and not contracts((*NATIVE_CFLAGS, "-ffp-contract=off"))
    # a transposed gemv is neither kernel the x86 rules tile: the loop rules keep its sums' order,
    # yet gcc may fuse differently per schedule, so the comparison is within tolerance
    f = tmp_path / "gemv_t.py"
    f.write_text(
        "from __future__ import annotations\nfrom exo import proc, DRAM\n\n@proc\n"
        "def gemv_t(A: f32[64, 64] @ DRAM, x: f32[64] @ DRAM, y: f32[64] @ DRAM):\n"
        "    for i in seq(0, 64):\n        for j in seq(0, 64):\n            y[i] += A[j, i] * x[j]\n"
    )
    code = main(["explore", f"{f}::gemv_t", "--target", "x86", "--out", str(tmp_path / "out"), "--budget-s", "30"])
    assert code == 0
    tmp_path = tmp_path / "out"
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["validation"]["ok"] and any("cpu loop rules" in n for n in report["notes"])


GEMV_SOURCE = """from __future__ import annotations
from exo import proc, DRAM


@proc
def mm(A: f32[{m}, {n}] @ DRAM, x: f32[{n}] @ DRAM, y: f32[{m}] @ DRAM):
    for j in seq(0, {n}):
        for i in seq(0, {m}):
            y[i] += x[j] * A[i, j]
"""


def test_float_outputs_agree_within_the_rounding_of_their_terms_not_of_their_result():
    """An output whose sum cancels to near zero keeps its terms' rounding error: against the
    array's largest magnitude it is rounding (Exo's own x86 convolution, sizes fixed, differed by
    2e-5 at -march=native and was reported as a wrong schedule, exit 3); a missing term is not."""
    from exo_egraph.validate.cpu import floats_agree

    want = np.array([812.5, -3e-4, 40.0], np.float32)
    assert floats_agree(want + np.array([0.0, 2.3e-5, 0.0], np.float32), want)
    assert not floats_agree(want + np.array([0.0, 0.5, 0.0], np.float32), want)  # a term of this size missing
    assert not floats_agree(want * np.float32(1.01), want)


def test_a_matrix_vector_product_sums_in_vector_registers_and_beats_the_input(tmp_path):
    from benchmarks.kernels.gemv import gemv_f32_128

    dk = find_kernel(lower(gemv_f32_128))
    assert isinstance(dk, DotKernel) and (dk.x, dk.y, dk.mat, dk.vec, dk.out) == ("i", "j", "A", "x", "y")
    isa = _isa()
    sat = saturate(to_egg(initial_plan(dk, isa)), x86_rules(dk, isa), Budget())
    plans = plans_of(sat.view)
    assert sat.stats.schedules == len(plans) == len(tiles(dk, isa))  # one loop over tiles: nothing to reorder
    code = main(["explore", f"{KERNELS}/gemv.py::gemv_f32_128", "--target", "x86", "--out", str(tmp_path)])
    assert code == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["validation"]["ok"] and report["validation"]["speedup"] > 1.5  # the input: one FMA chain per row
    script = (tmp_path / "schedule.py").read_text()
    assert "accum=True" in script and isa.instr(Role.FMA) in script and isa.instr(Role.ZERO) in script
    assert not any("cpu loop rules" in n for n in report["notes"])


@pytest.mark.parametrize("rule", ["divide_loop(rows)", "divide_loop(vectors)"])
def test_the_tile_rules_are_sound_on_a_matrix_vector_product_and_a_broken_guard_is_caught(rule, monkeypatch):
    import exo_egraph.rewrites.x86 as rules
    from exo_egraph.checks import RuleViolation
    from exo_egraph.targets.x86.checks import check_example

    from exo_egraph.testing import KernelSpec

    w = _isa().width
    spec = KernelSpec("mm", GEMV_SOURCE.format(m=6, n=3 * w))  # 6 rows, 3 vectors: 2 and 3 divide them
    outcome = check_example(rule, spec, _isa().name, seed=1)
    assert outcome.applications >= 1 and outcome.counted
    # a guard that forgets that vectors of lanes must divide the reduction admits plans Exo rejects
    monkeypatch.setattr(rules, "fits", lambda mk, isa, r, v: rules.registers_needed(r, v) <= isa.registers and v <= 2)
    with pytest.raises((RuleViolation, ReplayError)):
        for seed in range(4):
            check_example("divide_loop(vectors)", spec, _isa().name, seed=seed)


TAIL_SOURCE = """from __future__ import annotations
from exo import proc, DRAM


@proc
def mm_tail(A: f32[16, 16] @ DRAM, B: f32[16, {n}] @ DRAM, C: f32[16, {n}] @ DRAM):
    for i in seq(0, 16):
        for j in seq(0, {n}):
            for k in seq(0, 16):
                C[i, j] += A[i, k] * B[k, j]


@proc
def gemv_tail(A: f32[12, {n}] @ DRAM, x: f32[{n}] @ DRAM, y: f32[12] @ DRAM):
    for i in seq(0, 12):
        for j in seq(0, {n}):
            y[i] += A[i, j] * x[j]


@proc
def gemv_short(A: f32[12, {short}] @ DRAM, x: f32[{short}] @ DRAM, y: f32[12] @ DRAM):
    for i in seq(0, 12):
        for j in seq(0, {short}):
            y[i] += A[i, j] * x[j]
"""


@pytest.mark.parametrize("kernel", ["mm_tail", "gemv_tail"])
def test_lanes_past_the_last_whole_vector_are_cut_off_and_the_rest_is_tiled(kernel, tmp_path):
    w = _isa().width
    f = tmp_path / "tails.py"
    f.write_text(TAIL_SOURCE.format(n=2 * w + 3, short=w - 1))
    code = main(["explore", f"{f}::{kernel}", "--target", "x86", "--out", str(tmp_path / "out")])
    assert code == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["validation"]["ok"] and any("the last 3 lanes are not a whole vector" in n for n in report["notes"])
    script = (tmp_path / "out" / "schedule.py").read_text()
    assert f'cut_loop(p, p.find_loop("j"), {2 * w})' in script and "extract_subproc" in script
    assert _isa().instr(Role.FMA) in script  # the whole vectors are tiled with the ISA's FMA


def test_fewer_lanes_than_a_vector_take_the_loop_rules_and_say_why(tmp_path):
    w = _isa().width
    f = tmp_path / "tails.py"
    f.write_text(TAIL_SOURCE.format(n=2 * w + 3, short=w - 1))
    code = main(["explore", f"{f}::gemv_short", "--target", "x86", "--out", str(tmp_path / "out"), "--budget-s", "20"])
    assert code == 0
    notes = json.loads((tmp_path / "out" / "report.json").read_text())["notes"]
    assert any(f"not a multiple of the {_isa().name} vector width" in n and "cpu loop rules" in n for n in notes)


def test_two_schedules_of_a_cut_kernel_run_side_by_side(tmp_path):
    """Each replay of a kernel with a tail calls a piece of its own named ``<kernel>_part0``; the
    rule checks run several in one call (`run_many`), which a single C unit cannot hold (the sweep
    found it: "multiple procs named mm_part0")."""
    from exo_egraph.cli import load_procs
    from exo_egraph.target import Pick
    from exo_egraph.targets.x86.target import X86Target

    f = tmp_path / "tails.py"
    f.write_text(TAIL_SOURCE.format(n=_isa().width + 3, short=_isa().width - 1))
    kernel = load_procs(f)["gemv_tail"]
    target = X86Target(_isa().name)
    problem = target.prepare(kernel)
    plans = plans_of(saturate(to_egg(initial_plan(problem.kernel, _isa())), x86_rules(problem.kernel, _isa()), Budget()).view)
    done = [target.replay(problem, Pick(0.0, p)) for p in plans[:2]]
    assert len(plans) >= 2 and all("extract_subproc" in d.script for d in done)
    inputs = random_inputs(kernel, seed=0)
    want, *gots = run_many([kernel] + [d.proc for d in done], inputs, NATIVE_CFLAGS)
    assert all(np.allclose(got["y"], want["y"], rtol=1e-5, atol=1e-5) for got in gots)
