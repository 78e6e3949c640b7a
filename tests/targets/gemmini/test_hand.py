"""The hand-written Gemmini schedules (benchmarks/kernels/gemmini_hand.py): each applies to its
kernel, leaves nothing but Gemmini instructions (configs once, at the top), compiles, and, on the
Gemmini model, computes the original's outputs bit for bit while moving every input byte once."""

from __future__ import annotations

import importlib.util
import sys
from functools import lru_cache
from pathlib import Path

import pytest
from exo import compile_procs_to_strings
from exo.stdlib.scheduling import AllocCursor, CallCursor, ForCursor

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "benchmarks" / "kernels"))
import gemmini as kernels  # noqa: E402
import gemmini_hand as hand  # noqa: E402

HAVE_MODEL = importlib.util.find_spec("exo_egraph.targets.gemmini.model") is not None
needs_model = pytest.mark.skipif(not HAVE_MODEL, reason="exo_egraph.targets.gemmini.model is not there yet")

CONFIGS = {"config_ld_i8_id1", "config_ld_i8_id2", "config_matmul", "config_st_acc_i8"}
LOADS = {"do_ld_i8_block_id1", "do_ld_i8_block_id2", "do_ld_i8_id1", "do_ld_i8_id2"}
STEPS = {"do_matmul_i8", "do_matmul_acc_i8"}


@lru_cache(maxsize=None)
def scheduled(name: str):
    return hand.HAND_SCHEDULES[name](getattr(kernels, name))


def instructions(block, depth=0, out=None):
    """(depth, instr name) of every call under ``block``; fails on any statement that is
    neither a loop, an allocation nor a call of an instruction (a leftover scalar loop body)."""
    out = [] if out is None else out
    for s in block:
        if isinstance(s, ForCursor):
            instructions(s.body(), depth + 1, out)
        elif isinstance(s, CallCursor):
            assert s.subproc().is_instr(), f"call of the non-instruction {s.subproc().name()}"
            out.append((depth, s.subproc().name()))
        else:
            assert isinstance(s, AllocCursor), f"left over in the scheduled proc: {s}"
    return out


def test_one_schedule_per_kernel():
    assert set(hand.HAND_SCHEDULES) == set(kernels.GEMMINI_KERNELS)
    assert set(hand.VARIANTS) == set(kernels.GEMMINI_KERNELS)


@pytest.mark.parametrize("name", kernels.GEMMINI_KERNELS)
def test_only_gemmini_instructions(name):
    p = scheduled(name)
    calls = instructions(p.body())
    names = [n for _, n in calls]
    # every config exactly once, at the top, before anything else
    assert sorted(n for n in names if n.startswith("config")) == sorted(CONFIGS)
    assert all(d == 0 for d, n in calls if n.startswith("config"))
    assert set(names[: len(CONFIGS)]) == CONFIGS
    # the rest: loads, 16x16x16 steps (the first without accumulate: no zero fill), stores
    rest = set(names[len(CONFIGS) :])
    assert rest <= LOADS | STEPS | {"do_st_acc_i8"}, rest
    assert rest & LOADS and "do_matmul_i8" in rest and "do_st_acc_i8" in rest
    # the C: instructions in loops, no scalar arithmetic left
    c = compile_procs_to_strings([p], f"{name}.h")[0]
    body = c[c.index(f"void {name}(") :]
    assert "+=" not in body and "gemmini_extended_preload" in body and "acc_scale" not in body.lower()


def _input_bytes(p) -> int:
    total = 0
    for a in p.args():
        if a.is_tensor() and a.name() in ("A", "B", "inp", "w"):
            n = 1
            for e in a.shape():
                n *= hand._const(e)
            total += n
    return total


@needs_model
@pytest.mark.parametrize("name", kernels.GEMMINI_KERNELS)
def test_bit_exact_on_the_model(name):
    from exo_egraph.targets.gemmini.model import timing_constants, validate_gemmini

    original = getattr(kernels, name)
    v = validate_gemmini(original, scheduled(name))
    assert v.ok and v.exact, v.message
    assert v.cycles > 0 and 0 < v.utilization <= 1
    c, t = v.counters, timing_constants()
    assert c["dma_bytes_in"] == _input_bytes(original)  # every input byte moves once
    assert c["mvins_zero"] == 0 and c["configs"] == len(CONFIGS)
    assert c["peak_spad_rows"] <= t["SP_ROWS"] and c["peak_acc_rows"] <= t["ACC_ROWS"]


@needs_model
def test_hand_beats_its_variants_under_the_serial_model_it_was_written_for():
    from exo_egraph.targets.gemmini.model import validate_gemmini

    name = "gemmini_matmul_64"
    original = getattr(kernels, name)
    best = validate_gemmini(original, scheduled(name)).counters["cycles_serial"]
    for label, variant in hand.VARIANTS[name].items():
        v = validate_gemmini(original, variant(original))
        assert v.ok, (label, v.message)
        assert best < v.counters["cycles_serial"], (label, best, v.counters["cycles_serial"])


@needs_model
def test_expert_style_blocks_are_bit_exact_and_storing_each_tile_overlaps():
    """`tiled_matmul` with C in 2-D blocks (either block loop outside), tiles stored one by one
    from alternating accumulator buffers: bit-exact, and faster on the decoupled model than the
    same blocks stored whole (the next block's steps wait on nothing)."""
    from exo_egraph.targets.gemmini.model import validate_gemmini

    original = kernels.gemmini_matmul_128
    reference = kernels.REFERENCES["gemmini_matmul_128"]
    cycles = {}
    for outer, each in (("j", True), ("i", True), ("j", False)):
        schedule = hand.tiled_matmul(original, c_block=(2, 4), outer=outer, rotate=each, store_each_tile=each)
        v = validate_gemmini(original, schedule, reference=reference)
        assert v.ok and v.exact, (outer, each, v.message)
        cycles[outer, each] = v.cycles
    assert cycles["j", True] < cycles["j", False], cycles
