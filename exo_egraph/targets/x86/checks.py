"""Soundness checks of the x86 micro-kernel rules, for ``exo-egraph check-rules`` (as ``x86:<rule>``).

An example is a random kernel the x86 rules tile: a matmul, a 2-D convolution or a matrix-vector
product, with random sizes (some with lanes past the last whole vector, which the target cuts off), the
order its loops are written in and the order of the product's factors. Its plan e-graph is saturated, and for each rule:
- counting: the e-graph holds exactly the plans the guards allow (counted independently);
- soundness: plans that show the rule's effect (and a random one) replay through Exo and compute
  the input's outputs at `NATIVE_CFLAGS`, within float tolerance (FMA rounds once).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from functools import partial
from typing import Callable

import numpy as np
from hypothesis import strategies as st

from exo_egraph.checks import Outcome, RuleCheck, RuleReport, RuleViolation, run_examples
from exo_egraph.target import Pick
from exo_egraph.rewrites.x86 import initial_plan, reduction_blocks, tiles, to_egg, x86_rules
from exo_egraph.saturate import Budget, saturate
from exo_egraph.testing import KernelSpec
from exo_egraph.validate.cpu import NATIVE_CFLAGS, floats_agree, random_inputs, run_many

from .isa import default_isa, select_isa
from .pattern import Kernel, Plan, tail_rows

PLANS_CHECKED = 2  # plans replayed per example: one that shows the rule, one at random
TAILS = st.sampled_from((0, 0, 3))  # lanes past the last whole vector: the target cuts them off


def _shows(rule: str, mk: Kernel, plan: Plan) -> bool:
    """Whether ``plan`` shows ``rule``'s effect on the initial plan."""
    match rule:
        case "divide_loop(rows)":
            return plan.rows > 1
        case "divide_loop(vectors)":
            return plan.vectors > 1
        case "divide_loop(reduction)":
            return plan.kc < mk.steps
        case "reorder_loops":
            written = tuple(v for v in mk.loops if v in plan.order)
            return plan.order != written
    raise KeyError(rule)


RULES = ("divide_loop(rows)", "divide_loop(vectors)", "divide_loop(reduction)", "reorder_loops")


def micro_kernel_specs(width: int, rule: str = "") -> st.SearchStrategy:
    """Random matmuls, 2-D convolutions and matrix-vector products (`matmul_specs`,
    `conv2d_specs`, `gemv_specs`); the reduction-block rule needs one reduction loop, so its
    examples are matmuls; a matrix-vector plan has one loop over tiles, so nothing to reorder."""
    if rule == "divide_loop(reduction)":
        return matmul_specs(width, rule)
    if rule == "reorder_loops":
        return st.one_of(matmul_specs(width, rule), conv2d_specs(width, rule))
    return st.one_of(matmul_specs(width, rule), conv2d_specs(width, rule), gemv_specs(width, rule))


def _source(args: str, loops: list[str], extent: dict[str, int], statement: str) -> str:
    lines = ["from __future__ import annotations", "from exo import proc, DRAM", "", "", "@proc", f"def mm({args}):"]
    for depth, v in enumerate(loops):
        lines.append("    " * (depth + 1) + f"for {v} in seq(0, {extent[v]}):")
    return "\n".join(lines + ["    " * (len(loops) + 1) + statement]) + "\n"


@st.composite
def conv2d_specs(draw: Callable, width: int, rule: str = "") -> KernelSpec:
    """A random f32 2-D convolution ``out[k, oy, ox] += w[k, c, ry, rx] * inp[c, oy + ry, ox + rx]``
    with its six loops in a random order; half of them in Exo's own form instead, summed in a
    scalar accumulator (`_accumulator_source`)."""
    ext = {
        "k": draw(st.sampled_from((2, 3, 4) if rule == "divide_loop(rows)" else (1, 2, 4))),
        "oy": draw(st.sampled_from((1, 2))),
        "ox": width * draw(st.sampled_from((2, 3) if rule == "divide_loop(vectors)" else (1, 2))),
        "c": draw(st.sampled_from((1, 2))),
        "ry": draw(st.sampled_from((1, 3))),
        "rx": draw(st.sampled_from((1, 2, 3))),
    }
    loops = draw(st.permutations(list(ext)))
    e = ext
    args = (f"inp: f32[{e['c']}, {e['oy'] + e['ry'] - 1}, {e['ox'] + e['rx'] - 1}] @ DRAM, "
            f"w: f32[{e['k']}, {e['c']}, {e['ry']}, {e['rx']}] @ DRAM, out: f32[{e['k']}, {e['oy']}, {e['ox']}] @ DRAM")  # fmt: skip
    statement = "out[k, oy, ox] += w[k, c, ry, rx] * inp[c, oy + ry, ox + rx]"
    if draw(st.booleans()):  # Exo's own form: a scalar accumulator, started from
        return KernelSpec("mm", _accumulator_source(args, loops, ext))  # a bias, with a ReLU on the way out
    return KernelSpec("mm", _source(args, loops, ext, statement))


def _accumulator_source(args: str, loops: list[str], extent: dict[str, int]) -> str:
    """The convolution as Exo's x86 example writes it: its output loops in the order drawn around
    ``res = bias[k]``, the reduction loops (in the order drawn) into ``res``, ``relu``, the store."""
    outer = [v for v in loops if v in ("k", "oy", "ox")]
    inner = [v for v in loops if v not in outer]
    lines = ["from __future__ import annotations", "from exo import proc, DRAM", "from exo.libs.externs import relu", "",
             "", "@proc", f"def mm({args}, bias: f32[{extent['k']}] @ DRAM):"]  # fmt: skip
    depth = 1
    for v in outer:
        lines.append("    " * depth + f"for {v} in seq(0, {extent[v]}):")
        depth += 1
    pad = "    " * depth
    lines += [f"{pad}res: f32", f"{pad}res = bias[k]"]
    for i, v in enumerate(inner):
        lines.append(pad + "    " * i + f"for {v} in seq(0, {extent[v]}):")
    lines.append(pad + "    " * len(inner) + "res += w[k, c, ry, rx] * inp[c, oy + ry, ox + rx]")
    lines += [f"{pad}r: f32", f"{pad}r = relu(res)", f"{pad}out[k, oy, ox] = r"]
    return "\n".join(lines) + "\n"


@st.composite
def matmul_specs(draw: Callable, width: int, rule: str = "") -> KernelSpec:
    """A random f32 ``out[x, y] += row[x, r] * col[r, y]`` with its loops in a random order, sized
    so that ``rule`` applies (more than one row, vector or reduction block). Any of its sizes may be
    a size argument instead, as users write Exo's sgemm (one in five rows ``M``, lanes ``N``; one
    in five reductions ``K``, except for the reduction-block rule, which needs a constant one):
    tile loops of such sizes are cut at replay, validated at `CUT_SIZE`, whole tiles and a tail."""
    m = draw(st.sampled_from((2, 3, 4, 6, 8, "M") if rule == "divide_loop(rows)" else (1, 2, 3, 4, 6, 8, "M")))
    vectors = draw(st.sampled_from((2, 3, 4, "N") if rule == "divide_loop(vectors)" else (1, 2, 3, 4, "N")))
    n = vectors if vectors == "N" else width * vectors + draw(TAILS)
    k = draw(st.sampled_from((32, 48, 64) if rule == "divide_loop(reduction)" else (3, 16, 32, 48, "K")))
    loops = draw(st.permutations(["i", "j", "k"]))
    product = "A[i, k] * B[k, j]" if draw(st.booleans()) else "B[k, j] * A[i, k]"
    size = "".join(f"{v}: size, " for v in (m, n, k) if isinstance(v, str))
    args = f"{size}A: f32[{m}, {k}] @ DRAM, B: f32[{k}, {n}] @ DRAM, C: f32[{m}, {n}] @ DRAM"
    return KernelSpec("mm", _source(args, loops, {"i": m, "j": n, "k": k}, f"C[i, j] += {product}"))


@st.composite
def gemv_specs(draw: Callable, width: int, rule: str = "") -> KernelSpec:
    """A random f32 matrix-vector product ``y[i] += A[i, j] * x[j]`` (sometimes batched over
    ``b``), its loops in a random order and its factors either way round, sized so that ``rule``
    applies (more than one row, or vector of partial sums); rows ``M`` or the reduction ``N`` may
    be size arguments (Exo's own gemv example), cut where whole tiles end at replay."""
    m = draw(st.sampled_from((2, 3, 4, 6, 8, "M") if rule == "divide_loop(rows)" else (1, 2, 3, 4, 8, "M")))
    vectors = draw(st.sampled_from((2, 3, 4, "N") if rule == "divide_loop(vectors)" else (1, 2, 3, 4, "N")))
    n = vectors if vectors == "N" else width * vectors + draw(TAILS)
    batch = draw(st.sampled_from((0, 2)))
    b, bi = ("b, ", "b, ") if batch else ("", "")
    ext = {"i": m, "j": n} | ({"b": batch} if batch else {})
    loops = (["b"] if batch else []) + draw(st.permutations(["i", "j"]))
    product = f"A[{bi}i, j] * x[{bi}j]" if draw(st.booleans()) else f"x[{bi}j] * A[{bi}i, j]"
    shape = f"{batch}, " if batch else ""
    size = "".join(f"{v}: size, " for v in (m, n) if isinstance(v, str))
    args = f"{size}A: f32[{shape}{m}, {n}] @ DRAM, x: f32[{shape}{n}] @ DRAM, y: f32[{shape}{m}] @ DRAM"
    return KernelSpec("mm", _source(args, loops, ext, f"y[{b}i] += {product}"))


def check_example(rule: str, spec: KernelSpec, isa_name: str, seed: int) -> Outcome:
    """The properties of ``rule`` on one kernel; raises `RuleViolation` on the first that fails."""
    isa = select_isa(isa_name)
    kernel = spec.proc()
    from .target import Portable, X86Target, plans_of  # the target: its kernel, tail cut, reader and replay

    target = X86Target(isa_name)
    problem = target.prepare(kernel)
    if isinstance(problem, Portable):
        raise RuleViolation(f"the target did not tile the example: {problem.notes[-1]}")
    mk = problem.kernel
    sat = saturate(to_egg(initial_plan(mk, isa)), x86_rules(mk, isa), Budget(seconds=60))
    plans = plans_of(sat.view)
    orders = math.factorial(len(mk.orders[0])) + math.factorial(3) * len(reduction_blocks(mk))  # x y, then r x y per block
    expected = len(tiles(mk, isa)) * orders
    if not (sat.stats.schedules == len(plans) == len(set(plans)) == expected):
        raise RuleViolation(f"counting: {sat.stats.schedules} counted, {len(plans)} listed, {expected} allowed by the guards")
    rng = random.Random(seed)
    showing = [p for p in plans if _shows(rule, mk, p)]
    if rule == "divide_loop(rows)" and rng.random() < 0.5:  # every other example, rows that leave a tail when any do
        showing = [p for p in showing if tail_rows(mk, p.rows)] or showing
    picks = list(dict.fromkeys(([rng.choice(showing)] if showing else []) + [rng.choice(plans)]))[:PLANS_CHECKED]
    done = [target.replay(problem, Pick(0.0, p)) for p in picks]  # an Exo rejection raises: a guard let it through
    inputs = random_inputs(kernel, problem.sizes(None), seed=seed)  # tiles cut at replay: whole ones and a tail
    want, *gots = run_many([kernel] + [d.proc for d in done], inputs, NATIVE_CFLAGS)
    for plan, got in zip(picks, gots):  # every output (a split kernel's piece writes a buffer of its own)
        for name, value in want.items():
            if not floats_agree(got[name], value, rtol=1e-5):
                raise RuleViolation(f"soundness: output {name} differs under plan {plan.show()}")
    return Outcome(len(picks), sum(_shows(rule, mk, p) for p in picks), counted=True)


def check_rule(
    rule: str,
    examples: int,
    seed: int,
    on_example: Callable[[int], None] | None = None,
    isa: str | None = None,
    shrink: bool = True,
) -> RuleReport:
    """`check_example` on ``examples`` random kernels for ``rule`` on ``isa`` (default: the host's
    best); a failure is shrunk to a smallest kernel unless ``shrink`` is off."""
    name = isa or default_isa()
    width = select_isa(name).width
    return run_examples(
        f"x86:{rule}", micro_kernel_specs(width, rule), partial(check_example, rule, isa_name=name, seed=seed), examples, seed,
        shrink=shrink, on_example=on_example,
    )  # fmt: skip


def x86_rule_checks(isa: str | None = None) -> dict[str, RuleCheck]:
    """Every x86 rule's check on ``isa``, by name: what the x86 target offers ``check-rules``."""
    return {rule: partial(check_rule, rule, isa=isa) for rule in RULES}
