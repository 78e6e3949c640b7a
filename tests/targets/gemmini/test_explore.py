"""Gemmini target: instruction selection read from the instrs, every plan rule sound (replayed
through Exo, bit-exact on the Gemmini model), the cost model equal to the simulator."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import pytest
from exo import proc
from exo.libs.externs import relu
from exo.platforms.gemmini import acc_scale, clamp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exo_egraph.extract.gemmini_cost import GemminiCost
from exo_egraph.extract.plan_extract import extract_plans, extract_timed, random_plan
from exo_egraph.lower import lower
from exo_egraph.rewrites.gemmini import accumulator_rules, gemmini_rules
from exo_egraph.saturate import Budget, Deadline, saturate
from exo_egraph.script import ReplayError
from exo_egraph.targets.gemmini.model import validate_gemmini
from exo_egraph.targets.gemmini.pattern import NotGemmini, find_gemm, first_step_ok, initial_plan
from exo_egraph.targets.gemmini.plans import PAcc, PLoop, PMac, PStage, chain, show, to_egg
from exo_egraph.targets.gemmini.replay import replay_plan
from exo_egraph.targets.gemmini.selection import Selection
from exo_egraph.targets.gemmini.target import GemminiTarget

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "benchmarks" / "kernels"))
import gemmini as kernels  # noqa: E402
from gemmini import (  # noqa: E402  (epilogue forms, also in benchmarks/gemmini_forms.py)
    matmul_i32_out,
    matmul_no_relu,
    matmul_unscaled,
    matmul_unscaled_bare,
    matmul_unscaled_no_act,
)

SMALL = {
    "matmul_32x48x64": kernels.gemm_i8.partial_eval(N=32, M=48, K=64),
    "matmul_32x32x16": kernels.gemm_i8.partial_eval(N=32, M=32, K=16),  # one reduction step
    "conv2d_2x16": kernels.conv3x3_i8.partial_eval(OH=2, OW=16, OC=64, IC=32),
    "matmul_8x64x8": kernels.gemm_i8.partial_eval(N=8, M=64, K=8),  # partial row and reduction tiles
    "matmul_32x32x40": kernels.gemm_i8.partial_eval(N=32, M=32, K=40),  # 16q + r: 4 reduction tiles of 10
    "matmul_bt_32x48x64": kernels.gemm_i8_bt.partial_eval(N=32, M=48, K=64),  # B stored transposed
    "matmul_at_32x48x64": kernels.gemm_i8_at.partial_eval(N=32, M=48, K=64),  # A stored transposed
}


@lru_cache(maxsize=None)
def prepared(name: str):
    return GemminiTarget().prepare(SMALL.get(name) or getattr(kernels, name))


@lru_cache(maxsize=None)
def explored(name: str, broken: bool = False, buffers: bool = False):
    proc = SMALL.get(name) or getattr(kernels, name)
    problem = prepared(name)
    # broken: the accumulator may move into any loop, a reduction too (drops partial sums)
    accumulator = accumulator_rules(lambda v: []) if broken else None
    rules = gemmini_rules(problem.pattern, problem.selection, accumulator, buffers=buffers)
    sat = saturate(to_egg(initial_plan(problem.pattern)), rules, Budget(seconds=60))
    return proc, problem.pattern, problem.model, sat


def sound(name: str, plan, hoisted, broken: bool = False) -> str | None:
    """None when ``plan`` replays through Exo and runs bit-exact, in the modeled cycles; else why not."""
    proc, pattern, model, _ = explored(name, broken)
    try:
        replayed = replay_plan(proc, pattern, plan, hoisted, model.selection, prepared(name).normal)
    except ReplayError as e:
        return f"Exo rejected a step: {e}"
    v = validate_gemmini(proc, replayed.proc, reference=kernels.REFERENCES.get(name))
    if not v.ok:
        return v.message
    if v.cycles != model.cycles(plan, hoisted):
        return f"simulated {v.cycles} cycles, modeled {model.cycles(plan, hoisted)}"
    if v.counters["cycles_serial"] != model.serial_cycles(plan, hoisted):
        return f"serial: simulated {v.counters['cycles_serial']} cycles, modeled {model.serial_cycles(plan, hoisted)}"
    return None


def features(name: str, plan) -> set[str]:
    """Which rules a plan needed: the initial plan has none of these."""
    _, pattern, model, _ = explored(name)
    links = chain(plan)
    loops = [x for x in links if isinstance(x, PLoop)]
    first = [x.var for x in chain(initial_plan(pattern)) if isinstance(x, PLoop)]
    out = {f"instr:{x.op}" for x in links if isinstance(x, PStage)} | {f"instr:{links[-1].op}"}
    out |= {f"instr:{o}" for x in links if isinstance(x, PAcc) for o in (x.zero, x.store)}
    if any(x.stride > 16 for x in loops):
        out.add("divide_loop")
    out |= {f"double_buffer:{type(x).__name__}" for x in links if isinstance(x, (PStage, PAcc)) and x.buffers == 2}
    out |= {"load_ahead" for x in links if isinstance(x, PStage) and x.ahead}
    if [x.var for x in loops if x.stride <= 16] != first:
        out.add("reorder_loops")
    for i, x in enumerate(links):
        if isinstance(x, PStage) and any(isinstance(y, PLoop) for y in links[i:]):
            out.add("stage_mem+lift")
        if isinstance(x, PAcc) and any(isinstance(y, PLoop) and y.var in pattern.reduction for y in links[:i]):
            out.add("acc_inside_reduction")  # never legal
        if isinstance(x, PAcc) and sum(isinstance(y, PLoop) for y in links[:i]) < len(pattern.parallel):
            out.add("acc_lift")
        if isinstance(x, PAcc) and model.overwrites(x.zero):
            out.add("first_step" if first_step_ok(pattern, x.body) else "first_step_misplaced")
    return out


def test_instruction_selection_is_read_from_the_instr_bodies():
    _, pattern, model, _ = explored("matmul_32x48x64")
    by_role = {r: {b.instr for b in model.selection.for_role(r)} for r in ("zero", "load_A", "load_B", "mac", "store")}
    assert by_role["mac"] == {"matmul_acc_i8", "do_matmul_acc_i8"}
    assert {"ld_i8", "ld_i8_id1", "do_ld_i8_id1", "do_ld_i8_id2", "do_ld_i8_block_id1"} <= by_role["load_A"]
    assert by_role["load_A"] == by_role["load_B"]
    assert by_role["zero"] == {"zero_acc_i32", "do_zero_acc_i32"}  # not zero_i8: its dst is an i8 scratchpad
    assert by_role["store"] == {"st_acc_i8", "do_st_acc_i8"}  # not st_acc_i32: it stores i32
    do_store = next(b for b in model.selection.for_role("store") if b.instr == "do_st_acc_i8")
    # it reads ConfigStore.scale / .act where the kernel reads scale / act: those become requirements
    assert {(c, f) for c, f, _ in do_store.requires} == {("ConfigStore", "scale"), ("ConfigStore", "act")}
    do_load = next(b for b in model.selection.for_role("load_A") if b.instr == "do_ld_i8_id1")
    assert do_load.requires[0][:2] == ("ConfigLoad_id1", "src_stride")  # the config assertion became a requirement
    assert dict(do_load.sizes) == {"m": 16, "n": 16}


@pytest.mark.parametrize("name", ["matmul_32x48x64", "matmul_32x32x16"])  # conv: by the random plans
def test_every_selected_instruction_is_sound(name):
    """The replace rule of each instruction: the cheapest plan using it replays and runs bit-exact."""
    _, _, model, sat = explored(name)
    # without the plain matmul, the zero role must be filled by a zero instruction
    no_first_step = GemminiCost(
        model.g, Selection(tuple(rb for rb in model.selection.bindings if rb[0] != "zero_mac"), model.selection.all_patterns),
        model.consts,
    )  # fmt: skip
    used = set()
    for role, binding in model.selection.bindings:
        if binding.instr in used:
            continue
        m = model if role in ("zero_mac", "load_A", "load_B", "store") else no_first_step
        with_it = [c for c in m.choices() if c.instr(role) == binding.instr]
        if not with_it:  # its hoisted config would clash with another role's (do_ld_i8 and the zero share id 0)
            assert binding.instr.startswith("do_")
            continue
        picks = extract_plans(sat.view, m, k=1, choices=with_it)
        if not picks:  # a block load needs two column tiles: a one-tile-deep reduction has one
            assert binding.instr in m.selection.blocks and model.g.extent(model.g.k) == 16
            continue
        x = picks[0]
        instrs = features(name, x.plan)
        used |= {i.split(":", 1)[1] for i in instrs if i.startswith("instr:")}
        assert f"instr:{binding.instr}" in instrs
        problem = sound(name, x.plan, x.choice.hoisted)
        assert problem is None, f"{binding.instr}: {problem}\n{show(x.plan)}"
    assert {"matmul_acc_i8", "do_matmul_acc_i8", "matmul_i8", "do_matmul_i8", "zero_acc_i32", "st_acc_i8", "do_st_acc_i8"} <= used
    assert {"ld_i8", "ld_i8_id1", "do_ld_i8_id1", "do_ld_i8_id2"} <= used
    if name != "matmul_32x32x16":
        assert {"ld_i8_block", "ld_i8_block_id1", "do_ld_i8_block_id1", "do_ld_i8_block_id2"} <= used


def test_a_bias_row_is_broadcast_by_the_vector_load_and_a_moving_point_never_unifies():
    """``res[i, j] = bias[0, j]`` is ld_acc_i32_vector's body (``dst[i, j] = src[0, j]``): the
    window is the bias row's innermost dims (``bias[0:1, j0:j0 + 16]``). A kernel whose other
    index moves with the tile's loops (``bias3[i, 0, j]``) reads a different row each time: no
    window of it is that body."""
    import importlib

    from exo_egraph import terms as t
    from exo_egraph.instrs import instr_patterns, unify
    from exo_egraph.targets.gemmini.selection import block_layout

    pattern = next(p for p in instr_patterns(importlib.import_module("exo.platforms.gemmini"),
                                             preconditions=block_layout) if p.name == "ld_acc_i32_vector")  # fmt: skip
    i, j = t.Aff.var("i"), t.Aff.var("j")

    def nest(read: t.Read) -> t.Block:
        body = (t.Assign("res", (i, j), read),)
        return (t.Loop("i", t.Aff(), t.Aff((), 16), "seq", (t.Loop("j", t.Aff(), t.Aff((), 16), "seq", body),)),)

    buffers = {"res": t.Buffer("i32", "GEMM_ACCUM", (16, 16)), "bias": t.Buffer("i32", "DRAM", (1, 64)),
               "bias3": t.Buffer("i32", "DRAM", (16, 1, 64))}  # fmt: skip
    row = unify(pattern, nest(t.Read("bias", (t.Aff(), j + t.Aff((), 32)))), buffers)
    assert row is not None and dict(row.sizes) == {"n": 16}
    src = dict(row.windows)["src"]
    assert src.buf == "bias" and src.access == (t.Interval(t.Aff(), t.Aff((), 1)), t.Interval(t.Aff((), 32), t.Aff((), 48)))
    assert unify(pattern, nest(t.Read("bias3", (i, t.Aff(), j))), buffers) is None


def test_a_kernel_gemmini_cannot_run_is_refused_with_its_reason():
    import matmul as cpu_kernels  # the f32 CPU kernels: no i32 accumulator

    with pytest.raises(NotGemmini, match="accumulator"):
        find_gemm(lower(cpu_kernels.matmul_f32_16))
    with pytest.raises(NotGemmini, match="not a constant"):
        find_gemm(lower(kernels.gemm_i8))  # sizes left symbolic
    # the pattern alone needs whole or partial reduction tiles; `prepare` divides such a reduction first
    with pytest.raises(NotGemmini, match="reduction loop 'k' runs 40 times, neither a multiple of 16 nor fewer"):
        find_gemm(lower(kernels.gemm_i8.partial_eval(N=16, M=16, K=40)))
    assert GemminiTarget().prepare(kernels.gemm_i8.partial_eval(N=16, M=16, K=40)).pattern.extent("k_i") == 10


@proc
def matmul_i8_temporaries(scale: f32, act: bool, A: i8[32, 32], B: i8[32, 32], C: i8[32, 32]):
    for i in seq(0, 32):
        for j in seq(0, 32):
            res: i32
            res = 0.0
            for k in seq(0, 32):
                a: i8
                a = A[i, k]
                b: i8
                b = B[k, j]
                a2: i32
                b2: i32
                a2 = a
                b2 = b
                res += a2 * b2
            src_tmp: i32
            src_tmp = res
            tmp: f32
            acc_scale(src_tmp, tmp, scale)
            tmp2: i8
            clamp(tmp, tmp2)
            if act == True:
                tmp2 = relu(tmp2)
            C[i, j] = tmp2


@proc
def conv_stride_2(scale: f32, act: bool, inp: i8[33, 33, 16], w: i8[3, 3, 16, 16], out: i8[16, 16, 16]):
    for oy in seq(0, 16):
        for ox in seq(0, 16):
            for oc in seq(0, 16):
                res: i32
                res = 0.0
                for ky in seq(0, 3):
                    for kx in seq(0, 3):
                        for ic in seq(0, 16):
                            a: i32
                            b: i32
                            a = inp[2 * oy + ky, 2 * ox + kx, ic]
                            b = w[ky, kx, ic, oc]
                            res += a * b
                src_tmp: i32
                src_tmp = res
                tmp: f32
                acc_scale(src_tmp, tmp, scale)
                tmp2: i8
                clamp(tmp, tmp2)
                if act == True:
                    tmp2 = relu(tmp2)
                out[oy, ox, oc] = tmp2


SMALL["conv_stride_2"] = conv_stride_2  # its input rows are two apart: exo's ld_i8_s2


@proc
def conv_channel_stride_2(scale: f32, act: bool, inp: i8[18, 18, 32], w: i8[3, 3, 16, 16], out: i8[16, 16, 16]):
    for oy in seq(0, 16):
        for ox in seq(0, 16):
            for oc in seq(0, 16):
                res: i32
                res = 0.0
                for ky in seq(0, 3):
                    for kx in seq(0, 3):
                        for ic in seq(0, 16):
                            a: i32
                            b: i32
                            a = inp[oy + ky, ox + kx, 2 * ic]
                            b = w[ky, kx, ic, oc]
                            res += a * b
                src_tmp: i32
                src_tmp = res
                tmp: f32
                acc_scale(src_tmp, tmp, scale)
                tmp2: i8
                clamp(tmp, tmp2)
                if act == True:
                    tmp2 = relu(tmp2)
                out[oy, ox, oc] = tmp2


@proc
def matmul_wrapping(A: i8[32, 32], B: i8[32, 32], C: i8[32, 32]):
    for i in seq(0, 32):
        for j in seq(0, 32):
            res: i32
            res = 0.0
            for k in seq(0, 32):
                a: i32
                b: i32
                a = A[i, k]
                b = B[k, j]
                res += a * b
            C[i, j] = res


@proc
def matmul_both_transposed(A: i8[48, 32], B: i8[32, 48], C: i32[32, 32]):
    for i in seq(0, 32):
        for j in seq(0, 32):
            res: i32
            res = 0.0
            for k in seq(0, 48):
                a: i32
                b: i32
                a = A[k, i]
                b = B[j, k]
                res += a * b
            C[i, j] = res


@proc
def matmul_no_act(scale: f32, A: i8[32, 32], B: i8[32, 32], C: i8[32, 32]):
    for i in seq(0, 32):
        for j in seq(0, 32):
            res: i32
            res = 0.0
            for k in seq(0, 32):
                a: i32
                b: i32
                a = A[i, k]
                b = B[k, j]
                res += a * b
            src_tmp: i32
            src_tmp = res
            tmp: f32
            acc_scale(src_tmp, tmp, scale)
            tmp2: i8
            clamp(tmp, tmp2)
            C[i, j] = tmp2


@proc
def matmul_bias_row(scale: f32, act: bool, A: i8[32, 48], B: i8[48, 32], bias: i32[1, 32], C: i8[32, 32]):
    for i in seq(0, 32):
        for j in seq(0, 32):
            res: i32
            res = bias[0, j]
            for k in seq(0, 48):
                a: i32
                b: i32
                a = A[i, k]
                b = B[k, j]
                res += a * b
            src_tmp: i32
            src_tmp = res
            tmp: f32
            acc_scale(src_tmp, tmp, scale)
            tmp2: i8
            clamp(tmp, tmp2)
            if act == True:
                tmp2 = relu(tmp2)
            C[i, j] = tmp2


@proc
def matmul_bias(scale: f32, act: bool, A: i8[32, 48], B: i8[48, 32], bias: i32[32, 32], C: i8[32, 32]):
    for i in seq(0, 32):
        for j in seq(0, 32):
            res: i32
            res = bias[i, j]
            for k in seq(0, 48):
                a: i32
                b: i32
                a = A[i, k]
                b = B[k, j]
                res += a * b
            src_tmp: i32
            src_tmp = res
            tmp: f32
            acc_scale(src_tmp, tmp, scale)
            tmp2: i8
            clamp(tmp, tmp2)
            if act == True:
                tmp2 = relu(tmp2)
            C[i, j] = tmp2


def test_an_accumulator_that_starts_from_a_bias_loads_it_and_runs_bit_exact():
    """``res = bias[i, j]``: the accumulator is loaded (ld_acc_i32), not zeroed. (exo's
    do_ld_acc_i32 would read a config its body does not declare: it is never selected.)"""
    import numpy as np

    from exo_egraph import explore

    def reference(v: dict) -> dict:
        acc = (v["bias"].astype(np.int64) + v["A"].astype(np.int64) @ v["B"].astype(np.int64)).astype(np.int32)
        return {"C": kernels._epilogue(acc, v["scale"][0], bool(v["act"]))}

    result = explore(matmul_bias, "gemmini", budget=Budget(seconds=60), reference=reference)
    assert result.validation.ok, result.validation.message
    plan = "\n".join(result.details[0]["plan"])
    assert "accumulate: ld_acc_i32" in plan and "do_ld_acc_i32" not in plan


def test_a_role_no_instruction_fills_is_named_with_its_statement():
    """Not a capacity problem: the message names the statement no instruction matched. A
    convolution reading every other input channel: no load steps columns; its loop and
    statement are named."""
    with pytest.raises(NotGemmini, match="loop 'ic' steps 2 elements per trip in `a = inp") as caught:
        GemminiTarget().prepare(conv_channel_stride_2)
    assert "(line" in str(caught.value)
    with pytest.raises(NotGemmini, match="no instruction of exo.platforms.gemmini matches") as caught:
        GemminiTarget().prepare(matmul_wrapping)  # i32 narrowed to i8 by C's wrap: no store clamps so
    assert "epilogue storing the output `C[i, j] = res` (line" in str(caught.value)
    with pytest.raises(NotGemmini, match="multiply-accumulate step `res \\+= a \\* b` \\(line \\d+\\): A and B are both stored transposed"):
        GemminiTarget().prepare(matmul_both_transposed)  # C = Aᵀ Bᵀ: config_ex transposes one
    assert "fits" not in str(caught.value)


def test_an_epilogue_without_relu_stores_by_an_instruction_without_activation():
    """No ``if act``: exo's st_acc_i8 always has one; `instructions.st_acc_i8_no_act` is the same
    mvout with the activation field 0, and the script imports it from there."""
    import numpy as np

    from exo_egraph import explore

    def reference(v: dict) -> dict:
        acc = (v["A"].astype(np.int64) @ v["B"].astype(np.int64)).astype(np.int32)
        return {"C": kernels._epilogue(acc, v["scale"][0], False)}

    result = explore(matmul_no_act, "gemmini", budget=Budget(seconds=30), top_k=1, reference=reference)
    v = result.validation
    assert v.ok and v.cycles == v.model_cycles, v.message
    assert "from exo_egraph.targets.gemmini.instructions import st_acc_i8_no_act" in result.script


@pytest.mark.parametrize("kernel, store", [(matmul_unscaled, "st_acc_i8_unscaled"),
                                           (matmul_unscaled_no_act, "st_acc_i8_unscaled_no_act")])  # fmt: skip
def test_an_epilogue_without_acc_scale_stores_at_scale_one_and_runs_bit_exact(kernel, store):
    """``tmp = src_tmp`` (i32 widened to f32) before the clamp: no exo store has that body;
    `instructions.st_acc_i8_unscaled` is the mvout with scale 1.0. The inputs' sums land both
    inside and outside i8, so rounding and clamping are both checked against numpy."""
    import numpy as np

    from exo_egraph import explore

    def reference(v: dict) -> dict:
        acc = v["A"].astype(np.int64) @ v["B"].astype(np.int64)
        y = np.clip(acc, -128, 127)
        inside = np.mean(np.abs(acc) < 127)
        assert 0.2 < inside < 0.9, inside  # both regimes are exercised
        return {"C": (np.maximum(y, 0) if v.get("act") else y).astype(np.int8)}

    result = explore(kernel, "gemmini", budget=Budget(seconds=60), reference=reference)
    v = result.validation
    assert v.ok and v.cycles == v.model_cycles, v.message
    script = result.candidates[0].replayed.script
    assert f"from exo_egraph.targets.gemmini.instructions import {store}" in script


def test_an_i32_output_is_stored_whole_from_the_accumulator():
    """``C[i, j] = res`` into an i32 output: st_acc_i32's full-width mvout, no epilogue, checked
    against numpy (sums far beyond i8)."""
    import numpy as np

    from exo_egraph import explore

    def reference(v: dict) -> dict:
        return {"C": (v["A"].astype(np.int64) @ v["B"].astype(np.int64)).astype(np.int32)}

    assert not GemminiTarget().prepare(matmul_i32_out).normal  # already the instructions' form
    result = explore(matmul_i32_out, "gemmini", budget=Budget(seconds=30), top_k=1, reference=reference)
    v = result.validation
    assert v.ok and v.cycles == v.model_cycles, v.message
    assert "st_acc_i32" in result.candidates[0].replayed.script


@pytest.mark.parametrize("kernel, store", [(matmul_no_relu, "st_acc_i8_no_act"),
                                           (matmul_unscaled_bare, "st_acc_i8_unscaled_no_act")])  # fmt: skip
def test_an_epilogue_reading_the_accumulator_directly_gets_its_copy_first(kernel, store):
    """``acc_scale(res, tmp, scale)`` or ``tmp = res``: every store's body copies the accumulator
    to an i32 first (``src_tmp = src[i, j]``, as Exo's kernels write it), so the replay binds
    that read (``bind_expr``) and moves the copy to the epilogue's top before anything else."""
    from exo_egraph import explore

    normal = [x.render() for x in GemminiTarget().prepare(kernel).normal]
    assert normal[0].startswith("bind_expr(") and all(x.startswith("reorder_stmts(") for x in normal[1:])
    result = explore(kernel, "gemmini", budget=Budget(seconds=30), top_k=1)
    v = result.validation
    assert v.ok and v.cycles == v.model_cycles, v.message
    assert f"import {store}" in result.candidates[0].replayed.script


def test_no_choice_lets_an_instructions_own_config_write_clobber_a_hoisted_one(monkeypatch):
    """ld_acc_i32_vector's C sets load config 0 to stride 0 (its body declares no config, so Exo
    cannot tell); do_ld_i8 reads load config 0 as the hoisted config_ld_i8 set it. Together, the
    operand loads after a bias load read with stride 0: such choices are dropped (`clobbers`),
    and one forced through is caught by the model (wrong output)."""
    import exo_egraph.extract.gemmini_cost as gemmini_cost

    SMALL["matmul_bias_row"] = matmul_bias_row
    proc, pattern, model, sat = explored("matmul_bias_row")
    kept = model.choices()
    monkeypatch.setattr(gemmini_cost, "clobbers", lambda *_: False)  # the guard broken
    dropped = [c for c in model.choices() if c not in kept]
    assert dropped and all("ld_acc_i32_vector" in c.instr("zero") for c in dropped)
    # config_ld_acc_i32_vector and config_ld_i8 both set load config 0, at the top: never together
    both = {"config_ld_acc_i32_vector", "config_ld_i8"}
    assert any(both <= {n for n, _ in c.hoisted} for c in dropped)
    assert not any(both <= {n for n, _ in c.hoisted} for c in kept)
    choice = next(c for c in dropped if c.instr("zero") == "ld_acc_i32_vector" and c.instr("load_A") == "do_ld_i8")
    plan = random_plan(sat.view, model, choice, lambda n: 0)
    v = validate_gemmini(proc, replay_plan(proc, pattern, plan, choice.hoisted, model.selection).proc)
    assert not v.ok and "differs" in v.message


def test_a_block_load_whose_block_stride_is_its_row_count_never_loads_a_partial_tile(monkeypatch):
    """exo's ld_i8_block_id2 configures its blocks ``n`` rows apart (gemmini_extended4_config_ld),
    the other block loads DIM rows apart; staged tiles keep DIM rows. So it may load B's whole
    tiles here but not A's 8-row ones (the ResNet convolution's 14-row tiles ran wrong so); forced
    through with the guard broken, the model catches it."""
    import exo_egraph.targets.gemmini.selection as selection
    from exo_egraph import terms as t

    proc = kernels.gemm_i8.partial_eval(N=8, M=32, K=64)
    problem = GemminiTarget().prepare(proc)
    by_role = {r: {b.instr for b in problem.selection.for_role(r)} for r in ("load_A", "load_B")}
    assert "ld_i8_block_id2" in by_role["load_B"] and "ld_i8_block_id2" not in by_role["load_A"]
    assert {"ld_i8_block_id1", "do_ld_i8_block_id2"} <= by_role["load_A"]  # blocks DIM rows apart

    monkeypatch.setattr(selection, "block_rows", lambda c: t.Aff((), 16))  # the guard broken
    SMALL["matmul_8x32x64_block_rows_unguarded"] = proc
    _, pattern, model, sat = explored("matmul_8x32x64_block_rows_unguarded")
    choices = [c for c in model.choices() if c.instr("load_A") == "ld_i8_block_id2"]
    x = extract_plans(sat.view, model, k=1, choices=choices)[0]
    assert "instr:ld_i8_block_id2" in {f"instr:{y.op}" for y in chain(x.plan) if isinstance(y, PStage) and y.operand == "A"}
    v = validate_gemmini(proc, replay_plan(proc, pattern, x.plan, x.choice.hoisted, model.selection).proc)
    assert not v.ok and "differs" in v.message


def test_exos_own_convolution_form_runs_bit_exact():
    """Exo's apps/gemmini convolution: a batch, ``res = bias[0, och]`` (a bias row, broadcast by
    ld_acc_i32_vector), i8 temporaries, and an output width (6) short of a tile."""
    from exo_egraph import explore

    proc = kernels.conv_bias_i8.partial_eval(batch=1, out_dim=6, out_ch=16, in_ch=16)
    result = explore(proc, "gemmini", budget=Budget(seconds=30), top_k=1, reference=kernels.conv_bias_reference)
    v = result.validation
    assert v.ok and v.cycles == v.model_cycles, v.message
    assert "ld_acc_i32_vector" in "\n".join(result.details[0]["plan"])


def test_a_stride_2_convolution_loads_every_other_input_row_and_runs_bit_exact():
    """ResNet's stride-2 3x3 convolution in Exo's own form (batch, bias row, i8 temporaries),
    with an output width (7) short of a tile: the input tile's rows are two apart, which no
    window can stage; exo's ld_i8_s2 loads them, and the pasted script makes the same proc."""
    from exo_egraph import explore

    proc = kernels.conv_bias_s2_i8.partial_eval(batch=1, out_dim=7, out_ch=16, in_ch=32)
    result = explore(proc, "gemmini", budget=Budget(seconds=30), top_k=1, reference=kernels.conv_bias_reference)
    v = result.validation
    assert v.ok and v.cycles == v.model_cycles, v.message
    replayed = result.candidates[0].replayed
    assert "ld_i8_s2" in replayed.script and "bind_expr" in replayed.script
    namespace: dict = {}
    exec(replayed.script, namespace)
    assert str(namespace["schedule"](proc)) == str(replayed.proc)


def test_a_reduction_of_16q_plus_r_trips_is_divided_into_equal_partial_tiles():
    """K = 40: the replay first divides the reduction by 10 (its largest divisor below 16), so
    every multiply is the instructions' partial ``K = 10``; bit-exact against numpy, and the
    pasted script makes the same proc. An Exo convolution over 24 input channels likewise."""
    from exo_egraph import explore

    result = explore(SMALL["matmul_32x32x40"], "gemmini", budget=Budget(seconds=30), top_k=1,
                     reference=kernels.matmul_reference)  # fmt: skip
    v = result.validation
    assert v.ok and v.cycles == v.model_cycles, v.message
    replayed = result.candidates[0].replayed
    body = replayed.script.split("def schedule")[1]
    assert 'divide_loop(p, "k", 10, ["k_o", "k_i"], perfect=True)' in body
    namespace: dict = {}
    exec(replayed.script, namespace)
    assert str(namespace["schedule"](SMALL["matmul_32x32x40"])) == str(replayed.proc)
    conv = kernels.conv_bias_i8.partial_eval(batch=1, out_dim=7, out_ch=16, in_ch=24)
    result = explore(conv, "gemmini", budget=Budget(seconds=30), top_k=1, reference=kernels.conv_bias_reference)
    assert result.validation.ok and 'divide_loop(p, "kch", 12' in result.candidates[0].replayed.script


@pytest.mark.parametrize("kernel, reference, bit, sizes", [
    (kernels.gemm_i8_bt, kernels.matmul_bt_reference, "bt", dict(N=32, M=48, K=64)),
    (kernels.gemm_i8_bt, kernels.matmul_bt_reference, "bt", dict(N=24, M=40, K=40)),  # rows, columns cut; K 4 x 10
    (kernels.gemm_i8_at, kernels.matmul_at_reference, "at", dict(N=24, M=40, K=40)),
])  # fmt: skip
def test_a_transposed_operand_multiplies_with_config_exs_transpose_bit(kernel, reference, bit, sizes):
    """``b = B[j, k]`` (C = A Bᵀ) or ``a = A[k, i]`` (C = Aᵀ B): the operand's tiles are loaded as
    stored and multiplied by `instructions.matmul_acc_i8_bt` / `_at` (config_ex's transpose bit);
    bit-exact against numpy, modeled = simulated, and the pasted script makes the same proc."""
    from exo_egraph import explore

    proc = kernel.partial_eval(**sizes)
    result = explore(proc, "gemmini", budget=Budget(seconds=30), top_k=1, reference=reference)
    v = result.validation
    assert v.ok and v.cycles == v.model_cycles, v.message
    replayed = result.candidates[0].replayed
    assert f"matmul_acc_i8_{bit}" in replayed.script  # do_matmul_acc_i8_{bit} or matmul_acc_i8_{bit}
    namespace: dict = {}
    exec(replayed.script, namespace)
    assert str(namespace["schedule"](proc)) == str(replayed.proc)


def test_exos_own_form_with_i8_temporaries_explores_and_runs_bit_exact():
    """``a: i8; a = A[i, k]; a2: i32; a2 = a``: the replay inlines the copies first."""
    from exo_egraph import explore

    result = explore(matmul_i8_temporaries, "gemmini", budget=Budget(seconds=60), reference=kernels.matmul_reference)
    assert result.validation.ok, result.validation.message
    steps = result.candidates[0].replayed.script.split("def schedule")[1].splitlines()
    assert "inline_assign" in steps[2] and "delete_buffer" in steps[3]


EVERY_RULE = {"divide_loop", "reorder_loops", "stage_mem+lift", "acc_lift", "first_step", "double_buffer:PStage",
              "double_buffer:PAcc", "load_ahead"}  # fmt: skip


RANDOM_PLANS = 6  # per kernel: each replay is seconds of Exo's checks; `exo-egraph check-rules` draws more


@pytest.mark.parametrize("name, rules", [
    ("matmul_32x48x64", EVERY_RULE),
    ("conv2d_2x16", EVERY_RULE),
    # partial tiles (the instructions' n, K < 16; m < 16 in the cut kernel below): one tile loop
    ("matmul_8x64x8", EVERY_RULE - {"reorder_loops"}),
    # input rows two apart (staged by bind_expr, loaded by ld_i8_s2); every loop is one tile
    ("conv_stride_2", EVERY_RULE - {"divide_loop"}),
    ("matmul_32x32x40", EVERY_RULE - {"divide_loop"}),  # the reduction divided by 10 first (`split_reduction`)
    # B^T, A^T: tiles loaded as stored, multiplied with config_ex's B- or A-transpose bit
    ("matmul_bt_32x48x64", EVERY_RULE),
    ("matmul_at_32x48x64", EVERY_RULE),
])  # fmt: skip
def test_every_plan_rule_is_sound_on_random_plans(name, rules):
    """Property: any plan of the saturated e-graph (double buffering included) replays through
    Exo and runs bit-exact on the model in exactly the modeled cycles (decoupled and serial).
    `RANDOM_PLANS` draws, then, for each rule they did not exercise, a random plan that does
    (found by its features, before any replay), checked the same way: every rule is exercised."""
    _, _, model, sat = explored(name, buffers=True)
    # block loads fit only some plans (their column tiles innermost): tested per instruction below
    choices = [c for c in model.choices() if not {i for _, i in c.instrs} & model.selection.blocks]
    seen: set[str] = set()

    def checked(plan, choice) -> None:
        seen.update(features(name, plan))
        problem = sound(name, plan, choice.hoisted)
        assert problem is None, f"{problem}\n{show(plan)}"

    @settings(max_examples=RANDOM_PLANS, deadline=None, suppress_health_check=list(HealthCheck), database=None, derandomize=True)
    @given(st.data())
    def check(data):
        choice = data.draw(st.sampled_from(choices))
        plan = random_plan(sat.view, model, choice, lambda n: data.draw(st.integers(0, n - 1)))
        assert plan is not None
        if model.footprint(plan).fits(model.consts):
            checked(plan, choice)

    check()
    for rule in sorted(rules - seen):
        rng = random.Random(rule)
        for _ in range(500):
            choice = rng.choice(choices)
            plan = random_plan(sat.view, model, choice, rng.randrange)
            if plan is not None and model.footprint(plan).fits(model.consts) and rule in features(name, plan):
                checked(plan, choice)
                break
    assert rules <= seen, rules - seen
    assert not {"acc_inside_reduction", "first_step_misplaced"} & seen


def test_the_explorer_runs_at_least_as_fast_as_an_expert_style_hand():
    """Ties in the serial cost go to the smallest accumulator (`_cheapest_first`), so the first
    phase keeps a per-tile accumulator under an operand row, both to be double-buffered, as an
    expert writes it; on 128^3 the explorer is at least as fast as the expert-style hand (C in
    2x4-tile blocks, rotating, each tile stored as its reduction ends). Before that tie-break it
    took 1.09x the hand's cycles."""
    from exo_egraph import explore

    import gemmini_hand as hand

    name = "gemmini_matmul_128"
    proc, reference = getattr(kernels, name), kernels.REFERENCES[name]
    expert = hand.tiled_matmul(proc, c_block=(2, 4), rotate=True, store_each_tile=True)
    expert_cycles = validate_gemmini(proc, expert, reference=reference).cycles
    result = explore(proc, "gemmini", budget=Budget(seconds=300), reference=reference, top_k=1)
    assert result.validation.ok and result.validation.cycles <= expert_cycles, (result.validation.cycles, expert_cycles)


def test_the_soundness_property_catches_a_broken_rule():
    """Without its guard the accumulator rule puts zero/store inside a reduction loop: caught."""
    name = "matmul_32x48x64"
    _, _, model, sat = explored(name, broken=True)
    choice = model.choices()[0]
    caught = []

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(st.data())
    def check(data):
        plan = random_plan(sat.view, model, choice, lambda n: data.draw(st.integers(0, n - 1)))
        if "acc_inside_reduction" in features(name, plan):
            problem = sound(name, plan, choice.hoisted, broken=True)
            caught.append(problem)
            assert problem is None

    with pytest.raises(AssertionError):
        check()
    assert caught and caught[-1] is not None


def test_plans_run_one_after_another_take_the_simulators_cycles():
    """Property: plans run one after another on one model, as the pieces of a cut kernel run,
    take the cycles `pieces_timing` gives them. A plan's loads and zeroes wait for the rows the
    plan before it still reads or writes, so the model must place every tile where the allocator
    does (block loads and double buffers included)."""
    from exo_egraph.extract.gemmini_timeline import pieces_timing
    from exo_egraph.targets.gemmini.model import run_gemmini_in_order
    from exo_egraph.validate.cpu import random_inputs

    name = "matmul_32x48x64"
    proc, pattern, model, sat = explored(name, buffers=True)
    inputs = random_inputs(proc, None, 0)
    replayed: dict = {}
    seen: set[str] = set()

    def draw(data):
        while True:
            choice = data.draw(st.sampled_from(model.choices()))
            plan = random_plan(sat.view, model, choice, lambda n: data.draw(st.integers(0, n - 1)))
            if plan is not None and model.footprint(plan).fits(model.consts):
                key = (plan, choice.hoisted)
                if key not in replayed:
                    replayed[key] = replay_plan(proc, pattern, plan, choice.hoisted, model.selection).proc
                seen.update(features(name, plan))
                return key

    @settings(max_examples=2, deadline=None, suppress_health_check=list(HealthCheck), database=None, derandomize=True)
    @given(st.data())
    def check(data):
        plans = [draw(data) for _ in range(3)]
        for order in (plans, plans[::-1]):
            run = run_gemmini_in_order([replayed[x] for x in order], inputs)
            joined = pieces_timing([(model, *x) for x in order])
            assert joined.exact and run.cycles == joined.cycles, "\nthen\n".join(show(x[0]) for x in order)

    check()
    assert {"double_buffer:PStage", "double_buffer:PAcc"} <= seen and any(x.startswith("instr:") and "block" in x for x in seen), seen


def test_both_timing_models_equal_the_simulator_on_extracted_candidates():
    """The decoupled cycles extraction ranks by, and the serial cycles its programme sums, are the
    simulator's own counters for every candidate; the timed shortlist is ranked by the former."""
    name = "matmul_32x48x64"
    proc, pattern, model, sat = explored(name)
    picks = extract_timed(sat.view, model, k=8, samples=16)  # each replays through Exo: seconds
    assert len(picks) == 8 and [x.cycles for x in picks] == sorted(x.cycles for x in picks)
    simulated, serial = [], []
    for x in picks:
        replayed = replay_plan(proc, pattern, x.plan, x.choice.hoisted, model.selection)
        v = validate_gemmini(proc, replayed.proc)
        assert v.ok, v.message
        simulated.append(v.cycles)
        serial.append(v.counters["cycles_serial"])
    assert simulated == [x.cycles for x in picks]
    assert serial == [x.serial for x in picks]
    assert len(set(simulated)) > 1 and any(s < t for s, t in zip(simulated, serial))  # overlap shows


def test_timing_finds_what_the_serial_order_misses():
    """Under overlap the serial programme's first plan is not the fastest: the timed shortlist
    returns a plan at least as fast, and faster on this kernel."""
    _, _, model, sat = explored("gemmini_matmul_64")
    serial_first = extract_plans(sat.view, model, k=1)[0]
    timed = extract_timed(sat.view, model, k=1)[0]
    assert timed.cycles < model.cycles(serial_first.plan, serial_first.choice.hoisted)


def test_capacity_is_a_hard_constraint_of_extraction():
    proc, pattern, model, sat = explored("gemmini_matmul_64")
    free = extract_plans(sat.view, model, k=1)[0]
    assert free.footprint.sp_rows > 128  # it keeps many operand tiles in the scratchpad
    tight = GemminiCost(pattern, model.selection, {**model.consts, "SP_ROWS": 128})
    best = extract_plans(sat.view, tight, k=5)
    assert best and all(x.footprint.sp_rows <= 128 for x in best)
    assert best[0].cycles > free.cycles


def test_a_plan_over_capacity_overflows_the_model_too():
    """The accumulator kept whole for a 256x256 output needs 4096 rows of 1024: the cost model
    refuses it, and the simulator stops with the overflow when it is forced through."""
    proc, pattern, model, _ = explored("gemmini_matmul_256")
    choice = next(c for c in model.choices() if c.instr("zero") == "zero_acc_i32" and c.instr("mac") == "matmul_acc_i8")
    inner = PStage("A", choice.instr("load_A"), PStage("B", choice.instr("load_B"), PMac(choice.instr("mac"))))
    for v in reversed(("i", "j", "k")):
        inner = PLoop(v, 16, 16, inner)
    plan = PAcc(choice.instr("zero"), choice.instr("store"), inner)
    assert model.footprint(plan).acc_rows == 4096 and not model.footprint(plan).fits(model.consts)
    replayed = replay_plan(proc, pattern, plan, choice.hoisted, model.selection)
    v = validate_gemmini(proc, replayed.proc)
    assert not v.ok and "accumulator" in v.message and "overflow" in v.message


def test_cli_explores_for_gemmini_and_reports_cycles(tmp_path):
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "exo_egraph.cli", "explore", "benchmarks/kernels/gemmini.py::gemmini_matmul_16",
         "--target", "gemmini", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rep = json.loads((out / "report.json").read_text())
    v = rep["validation"]
    assert v["ok"] and v["cycles"] == v["model_cycles"] == rep["best"]["cost"]
    assert v["cycles"] < v["cycles_serial"] and v["timing_model"].startswith("decoupled")
    assert 0 < v["utilization"] <= 1 and v["naive"]["host_cycles"] > v["cycles"]
    namespace: dict = {}
    exec((out / "schedule.py").read_text(), namespace)
    scheduled = namespace["schedule"](kernels.gemmini_matmul_16)
    assert validate_gemmini(kernels.gemmini_matmul_16, scheduled, reference=kernels.matmul_reference).ok


def test_cli_refuses_a_kernel_gemmini_cannot_run(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "exo_egraph.cli", "explore", "benchmarks/kernels/matmul.py::matmul_f32_16",
         "--target", "gemmini", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "accumulator" in done.stderr


def test_the_double_buffering_phase_never_loses_the_first_phases_best():
    """Staged saturation: the second phase's e-graph holds the first phase's kept plans, and its
    extraction times every instruction choice it holds, so the answer is at least as fast."""
    target = GemminiTarget()
    problem = target.prepare(kernels.gemmini_matmul_64)
    plans = saturate(to_egg(initial_plan(problem.pattern)), gemmini_rules(problem.pattern, problem.selection), Budget())
    first_best = extract_timed(plans.view, problem.model, k=1)[0].cycles
    deadline = Deadline.after(300)
    staged = target.saturate(problem, Budget(seconds=300), None, deadline)
    assert [s.name for s in staged.stats.stages] == ["plans", "buffers"]
    assert staged.stats.stages[0].bound is None  # a timed shortlist bounds nothing
    assert target.extract(problem, staged, 1, deadline)[0].cost <= first_best


def test_large_plans_are_timed_on_a_few_trips_and_extrapolated():
    """Past `EXACT_STEPS` a plan runs `TRIPS` trips of its outermost long loop; the estimate stays
    within 5 % of running every command, here forced on a small kernel (2,300-cycle plans, where
    the first trips weigh most; on a ResNet layer the shortlist measured within 0.01 %)."""
    from exo_egraph.extract.gemmini_timeline import plan_timing

    name = "matmul_256x32x32"
    SMALL[name] = kernels.gemm_i8.partial_eval(N=256, M=32, K=32)
    _, _, model, sat = explored(name)
    sampled = 0
    for x in extract_timed(sat.view, model, k=24, samples=32):
        exact = plan_timing(model, x.plan, x.choice.hoisted)
        estimate = plan_timing(model, x.plan, x.choice.hoisted, exact_steps=0)
        assert exact.exact and exact.cycles == x.cycles
        if not estimate.exact:
            sampled += 1
            assert abs(estimate.cycles - exact.cycles) <= 0.05 * exact.cycles, (estimate, exact, show(x.plan))
    assert sampled >= 3


def test_an_interrupt_before_every_piece_has_an_e_graph_hands_back_the_input_as_written():
    """A cut kernel's schedule needs every piece's plan: interrupted before the last piece is
    saturated, the run ends as interrupted (exit 130) with the input as written, not a traceback."""
    from exo_egraph import StopReason, explore
    from exo_egraph.api import exit_code

    firsts = []

    def progress(it) -> None:
        firsts.append(it.index == 1)
        if sum(firsts) == 2:  # the first piece's second phase, or the second piece: Ctrl-C
            raise KeyboardInterrupt

    proc = kernels.gemm_i8.partial_eval(N=24, M=40, K=32)
    result = explore(proc, "gemmini", budget=Budget(seconds=30), top_k=1, progress=progress)
    assert result.stop_reason is StopReason.INTERRUPTED and exit_code(result) == 130
    assert len(result.stats.stages) < 4  # not every piece
    assert result.candidates[0].pick.term is None  # the input as written


def test_a_kernel_cut_into_whole_and_partial_tiles_runs_bit_exact_and_its_script_too():
    """24 x 40 rows and columns: cut into four nests (whole tiles, partial rows, partial columns,
    both), each explored and scheduled as a proc of its own, put back with ``call_eqv``; the
    model times the pieces on one clock, as the simulator runs them."""
    from exo_egraph import explore
    from exo_egraph.measure import apply_script

    proc = kernels.gemm_i8.partial_eval(N=24, M=40, K=32)
    result = explore(proc, "gemmini", budget=Budget(seconds=30), top_k=1, reference=kernels.matmul_reference)
    v = result.validation
    assert v.ok and v.cycles == v.model_cycles, v.message
    assert [x for x in result.details[0]["plan"] if x.startswith("part")] == ["part 0:", "part 1:", "part 2:", "part 3:"]
    assert [s.name for s in result.stats.stages] == [f"gemm_i8_part{i}" for i in range(4)]
    script = result.script
    assert script.count("extract_subproc(") == 4 and "def schedule_gemm_i8_part3(p):" in script
    again = validate_gemmini(proc, apply_script(proc, script), reference=kernels.matmul_reference)
    assert again.ok and again.cycles == v.cycles


def test_with_no_time_left_the_first_phases_plans_stand_beside_a_quick_look_at_the_second():
    """Anytime extraction: when the search's deadline leaves no room for the wide shortlist (the
    first phase's extraction took that long), the second phase's small e-graph is still looked at
    (a few of its plans timed, at least one, the most double-buffered first), and the picks are
    never slower than the first phase's fastest plans, timed already."""
    target = GemminiTarget()
    problem = target.prepare(kernels.gemmini_matmul_64)
    staged = target.saturate(problem, Budget(seconds=300), None, Deadline.after(300))
    assert staged.kept and staged.kept_seconds > 0

    picks = target.extract(problem, staged, 2, Deadline.after(0))
    assert len(picks) == 2 and picks[0].cost <= picks[1].cost
    assert picks[0].cost <= min(x.cycles for x in staged.kept)
    assert all(x.cost == problem.model.cycles(x.term, x.detail["hoisted"]) for x in picks)  # as timed


def test_the_search_keeps_the_replay_and_validation_time_of_every_nest():
    """``after_search`` grows with the nests a kernel is cut into: Exo replays each on its own."""
    from exo_egraph.targets.gemmini.target import REPLAY_S_PER_NEST

    target = GemminiTarget()
    whole = target.prepare(kernels.gemmini_matmul_64)
    cut = target.prepare(kernels.gemm_i8.partial_eval(N=24, M=40, K=32))  # four nests
    assert target.after_search(cut) - target.after_search(whole) == pytest.approx(3 * REPLAY_S_PER_NEST)
