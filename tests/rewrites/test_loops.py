"""Every loop rule, alone: terms the e-graph holds replay through Exo and compute the same outputs.

Integer kernels, so equal means bit-exact. Hypothesis draws which term of the saturated
e-graph to check (a random e-node in every e-class); a failure names the seed, which
reproduces the term.
"""

from __future__ import annotations

import random
from functools import lru_cache

import numpy as np
from exo.stdlib.scheduling import fission, fuse
from hypothesis import given, settings
from hypothesis import strategies as st

from exo_egraph import terms as t
from exo_egraph.lower import lower
from exo_egraph.replay import replay
from exo_egraph.saturate import Saturated
from exo_egraph.targets.cpu import saturate_term
from exo_egraph.validate import random_inputs, run_proc
from exo_egraph.extract.extractors import sample
from exo_egraph.rewrites.loops import LoopRuleConfig

from tests import kernels as K

NONE = dict(reorder=False, divide=False, unroll=False, fission=False, fuse=False, lift_alloc=False)
# rule → (kernel it applies to, config enabling only it)
CASES = {
    "reorder_loops": (K.matmul16_i8, LoopRuleConfig(**{**NONE, "reorder": True})),
    "divide_loop": (K.matmul16_i8, LoopRuleConfig(**{**NONE, "divide": True})),
    "divide_loop_cut": (K.vadd18_i32, LoopRuleConfig(**{**NONE, "divide": True}, cut_factors=(4, 8))),
    "unroll_loop": (K.matmul16_i8, LoopRuleConfig(**{**NONE, "unroll": True}, unroll_limit=16, unroll_copies=16)),
    "fission": (K.fused_pair_i32, LoopRuleConfig(**{**NONE, "fission": True})),
    "fuse": (K.split_pair_i32, LoopRuleConfig(**{**NONE, "fuse": True})),
    "lift_alloc": (K.inner_alloc, LoopRuleConfig(**{**NONE, "lift_alloc": True})),
}


@lru_cache(maxsize=None)
def saturated(rule: str) -> Saturated:
    kernel, cfg = CASES[rule]
    return saturate_term(lower(kernel), cfg)


@lru_cache(maxsize=None)
def reference(rule: str) -> dict[str, np.ndarray]:
    kernel, _ = CASES[rule]
    return run_proc(kernel, random_inputs(kernel, seed=1))


def check_sound(rule: str, seed: int) -> t.Proc:
    kernel, _ = CASES[rule]
    term = sample(saturated(rule).view, random.Random(seed))
    done = replay(kernel, term)
    assert done.roundtrip, f"{rule}: replayed proc does not lower to the extracted term (seed {seed})"
    got = run_proc(done.proc, random_inputs(kernel, seed=1))
    for name, want in reference(rule).items():
        assert np.array_equal(got[name], want), f"{rule}: output {name} differs (seed {seed}):\n{done.script}"
    return term


def _rule_used(rule: str, original: t.Proc, term: t.Proc) -> bool:
    """Whether ``term`` shows the rule's effect (so the property really exercised it)."""
    nests = [s for s in t.walk(term.body) if isinstance(s, t.Nest)]
    top_loops = lambda p: sum(isinstance(s, (t.Loop, t.Nest)) for s in p.body)  # noqa: E731
    match rule:
        case "reorder_loops":
            order = [[d.var for d in n.dims] for n in nests]  # matmul: i, j, k as written
            return any(o != sorted(o, key="ijk".index) for o in order)
        case "divide_loop":
            return any(len(n.dims) > len(t.loop_vars_of(n)) for n in nests)
        case "divide_loop_cut":
            return any(isinstance(s, t.Cut) for s in term.body)
        case "unroll_loop":
            return any(d.unrolled for n in nests for d in n.dims)
        case "fission" | "fuse":
            return top_loops(term) != top_loops(original)
        case "lift_alloc":
            return any(isinstance(s, t.Alloc) for s in term.body)
    raise KeyError(rule)


def _property(rule: str):
    @settings(max_examples=15, deadline=None, derandomize=True)
    @given(seed=st.integers(0, 2**32 - 1))
    def prop(seed: int) -> None:
        check_sound(rule, seed)

    return prop


test_reorder_loops_is_sound = _property("reorder_loops")
test_divide_loop_is_sound = _property("divide_loop")
test_divide_loop_cut_is_sound = _property("divide_loop_cut")
test_unroll_loop_is_sound = _property("unroll_loop")
test_fission_is_sound = _property("fission")
test_fuse_is_sound = _property("fuse")
test_lift_alloc_is_sound = _property("lift_alloc")


def test_every_rule_fires_and_is_exercised():
    for rule, (kernel, _) in CASES.items():
        original = lower(kernel)
        used = [_rule_used(rule, original, sample(saturated(rule).view, random.Random(s))) for s in range(40)]
        assert any(used), f"{rule}: no sampled term shows the rule's effect"


def test_fuse_guard_blocks_a_stencil_consumer():
    fuse_only = LoopRuleConfig(**{**NONE, "fuse": True})
    with_fuse = saturate_term(lower(K.stencil_pair_i32), fuse_only).stats.schedules
    without = saturate_term(lower(K.stencil_pair_i32), LoopRuleConfig(**NONE)).stats.schedules
    assert with_fuse == without  # reading tmp[i + 1] in the consumer forbids fusing the i loops


def test_replay_fissions_before_fusing_only_the_head_of_a_loop():
    # Found by the check-rules sweep: the target fuses the producer with the first statement of
    # the consumer only; fusing first and fissioning after is illegal (the tail reads tmp[i + 1]).
    kernel = K.fuse_after_fission_i32
    by_hand = fission(kernel, kernel.find("o[_] = _").after())
    by_hand = fuse(by_hand, by_hand.find_loop("i #0"), by_hand.find_loop("i #1"))
    done = replay(kernel, lower(by_hand))
    assert done.roundtrip
    assert [s.call for s in done.steps] == ["fission", "fuse"]
    want = run_proc(kernel, random_inputs(kernel, seed=1))
    sat = saturate_term(lower(kernel), LoopRuleConfig(**{**NONE, "fission": True, "fuse": True}))
    for seed in range(30):
        term = sample(sat.view, random.Random(seed))
        got = run_proc(replay(kernel, term).proc, random_inputs(kernel, seed=1))
        assert all(np.array_equal(got[n], w) for n, w in want.items()), f"seed {seed}"


def test_reorder_guard_blocks_a_loop_carried_dependence():
    s = saturate_term(lower(K.prefix_sum))
    assert s.stats.schedules == 2  # the loop as written, or as a fixed-order one-dim nest


@lru_cache(maxsize=None)
def _float_matmul() -> Saturated:
    return saturate_term(lower(K.matmul16), LoopRuleConfig())


@settings(max_examples=20, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**32 - 1))
def test_float_sums_keep_their_order_so_every_schedule_is_bit_exact(seed: int):
    term = sample(_float_matmul().view, random.Random(seed))
    done = replay(K.matmul16, term)
    assert done.roundtrip
    inputs = random_inputs(K.matmul16, seed=3)
    want, got = run_proc(K.matmul16, inputs), run_proc(done.proc, inputs)
    assert all(np.array_equal(got[n], want[n]) for n in want), done.script


def test_reassociation_is_opt_in_and_admits_more_schedules():
    strict = _float_matmul().stats.schedules
    loose = saturate_term(lower(K.matmul16), LoopRuleConfig(reassociate=True)).stats.schedules
    assert loose > strict > 6
