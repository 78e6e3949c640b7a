"""Soundness checks of the Gemmini plan rules (`exo_egraph.rewrites.gemmini`): what
``exo-egraph check-rules`` runs as ``gemmini:<rule>``.

An example is a random Gemmini kernel (`gemmini_kernels`: an i8 matmul or 3×3 convolution whose
sizes are 1–6 tiles of 16, or one partial tile) and a plan drawn node by node (`random_plan`) from the e-graph that the
rule under check saturates, with ``replace`` and ``first_step``, which fill the plan's roles with
instructions (the ``replace`` and ``all`` checks saturate every rule). The draw is repeated, up to
`PLAN_TRIES` times, until the plan fits the scratchpad and accumulator and shows the rule's effect
(`effects`); for ``replace`` the example names one selected instruction the plan must use. The
properties are those of the loop rules (`exo_egraph.checks`), through the target's own steps:

1. guard precision: the plan replays through Exo, which re-checks every step;
2. round trip: the script the replay writes (what a user pastes), applied to the kernel as text,
   makes the same proc (a plan is not a program, so this is its round trip: plan → script → proc);
3. soundness: the scheduled proc runs on the Gemmini C model bit for bit like the naive proc;
4. cost model: the simulated cycles equal the modeled cycles.

(The steps the target's `explore` runs — `replay_plan`, `validate_gemmini`, the cost model —
called directly, with the plan's instruction choice.)

Failures are not shrunk: a plan is a few lines already, and each replay takes seconds.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache, partial
from typing import Callable

from egglog import ruleset
from hypothesis import strategies as st

from exo_egraph.checks import Outcome, RuleCheck, RuleReport, RuleViolation, run_examples
from exo_egraph.extract.gemmini_cost import GemminiCost, OpChoice
from exo_egraph.extract.plan_extract import random_plan
from exo_egraph.measure import apply_script
from exo_egraph.rewrites import Rules, named
from exo_egraph.rewrites.gemmini import (
    Parallel,
    accumulator_rules,
    divide_tile_rules,
    double_buffer_rules,
    first_step_rules,
    load_ahead_rules,
    reorder_tile_rules,
    replace_rules,
    stage_rules,
)
from exo_egraph.saturate import Budget, Saturated, saturate
from exo_egraph.script import ReplayError
from exo_egraph.testing import KernelSpec

from .config import DIM
from .model import validate_gemmini
from .pattern import GemmPattern, initial_plan
from .plans import PAcc, PLoop, PMac, Plan, PStage, chain, show, to_egg
from .replay import replay_plan
from .target import PLAN_TRIES, GemminiProblem, GemminiTarget

PLAN_RULES = ("replace", "first_step", "divide_loop", "reorder_loops", "stage_mem", "lift_alloc(acc)", "double_buffer",
              "load_ahead")
CHECKS = PLAN_RULES + ("all",)
ROLE_FILLERS = ("replace", "first_step")  # without them no role has an instruction: no plan runs
# rules a check needs besides its own: the zero folds into the first reduction step only where the
# operands are staged above the reduction loops (`first_step_ok`)
NEEDS = {"first_step": ("stage_mem",), "load_ahead": ("stage_mem", "reorder_loops", "lift_alloc(acc)", "double_buffer")}
BUDGET = Budget(seconds=30.0)


def _epilogue(indent: str, store: str) -> str:
    """Exo's Gemmini examples' epilogue: scale the accumulator, clamp to i8, optional ReLU, store."""
    lines = ("src_tmp: i32", "src_tmp = res", "tmp: f32", "acc_scale(src_tmp, tmp, scale)", "tmp2: i8",
             "clamp(tmp, tmp2)", "if act == True:", "    tmp2 = relu(tmp2)", f"{store} = tmp2")  # fmt: skip
    return "".join(f"{indent}{line}\n" for line in lines)


MATMUL = """\
from __future__ import annotations
from exo import DRAM, proc
from exo.platforms.gemmini import acc_scale, clamp
from exo.libs.externs import relu


@proc
def {name}(scale: f32, act: bool, A: i8[{A_shape}] @ DRAM, B: i8[{B_shape}] @ DRAM, C: i8[{N}, {M}] @ DRAM):
    for i in seq(0, {N}):
        for j in seq(0, {M}):
            res: i32
            res = 0.0
            for k in seq(0, {K}):
                a: i32
                b: i32
                a = A[{A_idx}]
                b = B[{B_idx}]
                res += a * b
"""

MATMUL += _epilogue(" " * 12, "C[i, j]")
# (A's shape and index, B's): both as multiplied, B stored transposed (C = A Bᵀ) or A (C = Aᵀ B)
LAYOUTS = {
    "": ("{N}, {K}", "i, k", "{K}, {M}", "k, j"),
    "_bt": ("{N}, {K}", "i, k", "{M}, {K}", "j, k"),
    "_at": ("{K}, {N}", "k, i", "{K}, {M}", "k, j"),
}


def matmul_source(name: str, N: int, M: int, K: int, layout: str = "") -> str:
    """The i8 matmul kernel ``name`` in Exo's Gemmini form; ``layout`` one of `LAYOUTS`."""
    a_shape, a_idx, b_shape, b_idx = LAYOUTS[layout]
    dims = dict(N=N, M=M, K=K)
    return MATMUL.format(name=name, A_shape=a_shape.format(**dims), A_idx=a_idx, B_shape=b_shape.format(**dims),
                         B_idx=b_idx, **dims)  # fmt: skip

CONV = """\
from __future__ import annotations
from exo import DRAM, proc
from exo.platforms.gemmini import acc_scale, clamp
from exo.libs.externs import relu


@proc
def {name}(scale: f32, act: bool, inp: i8[{S} * {OH} + 3 - {S}, {S} * {OW} + 3 - {S}, {IC}] @ DRAM,
        w: i8[3, 3, {IC}, {OC}] @ DRAM, out: i8[{OH}, {OW}, {OC}] @ DRAM):
    for oy in seq(0, {OH}):
        for ox in seq(0, {OW}):
            for oc in seq(0, {OC}):
                res: i32
                res = 0.0
                for ky in seq(0, 3):
                    for kx in seq(0, 3):
                        for ic in seq(0, {IC}):
                            a: i32
                            b: i32
                            a = inp[{S} * oy + ky, {S} * ox + kx, ic]
                            b = w[ky, kx, ic, oc]
                            res += a * b
"""

CONV += _epilogue(" " * 16, "out[oy, ox, oc]")

# 1–4 tiles of 16, or one partial tile (the instructions' n, m, K < 16 arguments; staged tiles keep
# 16 rows, which a load must agree with); shrinking tends to the first
TILES = (32, 16, 48, 64, 8, 12)
REDUCTIONS = TILES + (40,)  # 40 = 16q + r: divided into 4 partial tiles of 10 first
LOOPED = (32, 48, 64)  # at least two tiles: a loop over tiles
SPLITTABLE = (64, 96)  # 4 and 6 tiles: a tile loop that divide_loop splits
# per check, the sizes a dimension is drawn from (others: TILES): what lets the rule apply
MATMUL_SIZES: dict[str, dict[str, tuple[int, ...]]] = {
    "reorder_loops": {"N": LOOPED, "M": LOOPED},  # two parallel tile loops, adjacent
    "lift_alloc(acc)": {"N": LOOPED, "M": LOOPED, "K": LOOPED},  # parallel loops to cross
    "stage_mem": {"K": LOOPED},
    "replace": {"M": LOOPED, "K": LOOPED},  # block loads need two column tiles of A and of B
    "double_buffer": {"N": LOOPED, "K": LOOPED},  # loops right around the accumulator and the stagings
    "load_ahead": {"N": LOOPED, "M": LOOPED, "K": LOOPED},  # a parallel loop around a staging, loops below
}


@st.composite
def gemmini_kernels(draw, for_rule: str | None = None) -> KernelSpec:
    """A random kernel the Gemmini target takes: an i8 matmul (three times in four; its second
    operand as multiplied, or one of the two stored transposed) or a 3×3 convolution (stride 1 or 2), sized in
    whole tiles or one partial tile (a reduction also in 16q + r), and shaped so that the plan
    rule ``for_rule`` applies."""
    sizes = MATMUL_SIZES.get(for_rule or "", {})
    if draw(st.integers(0, 3)) < 3:
        dims = {d: draw(st.sampled_from(sizes.get(d, TILES if d != "K" else REDUCTIONS))) for d in ("N", "M", "K")}
        if for_rule == "divide_loop":
            dims[draw(st.sampled_from(("N", "M", "K")))] = draw(st.sampled_from(SPLITTABLE))
        layout = draw(st.sampled_from(tuple(LAYOUTS)))
        name = "matmul_{N}x{M}x{K}".format(**dims) + layout
        return KernelSpec(name, matmul_source(name, layout=layout, **dims))
    dims = {
        "OH": draw(st.sampled_from((2, 1, 3))),  # a loop of single rows (not tiled)
        "OW": draw(st.sampled_from((16, 14))),  # 14: ResNet's last 3x3 layers, partial row tiles
        "OC": draw(st.sampled_from(SPLITTABLE if for_rule == "divide_loop" else (32, 16, 64))),
        "IC": draw(st.sampled_from((16, 32))),
        "S": draw(st.sampled_from((1, 2))),  # stride 2: input rows two apart (ld_i8_s2)
    }
    name = "conv_{OH}x{OW}x{OC}x{IC}_s{S}".format(**dims)
    return KernelSpec(name, CONV.format(name=name, **dims))


@dataclass(frozen=True)
class PlanExample:
    """One example of a plan rule's check: a kernel, and seeds for what is drawn from its e-graph."""

    kernel: KernelSpec
    instr: int  # for ``replace``: which usable instruction (an index, modulo their number)
    draw: int  # seeds the plan's node-by-node draw

    @property
    def source(self) -> str:
        return self.kernel.source


def plan_examples(for_rule: str | None = None) -> st.SearchStrategy[PlanExample]:
    return st.builds(PlanExample, gemmini_kernels(for_rule), st.integers(0, 1 << 16), st.integers(0, (1 << 32) - 1))


UNGUARDED = {"lift_alloc(acc)": accumulator_rules}  # rule → its rules, given a guard


def rules_for(rule: str, problem: GemminiProblem, unguarded: bool = False) -> Rules:
    """The plan rules the check of ``rule`` saturates: ``rule``, the role fillers and what it
    `NEEDS` (every rule for ``replace`` and ``all``); ``unguarded``: ``rule`` (one of `UNGUARDED`)
    without its guard (to show the checks catch a broken rule)."""
    g = problem.pattern
    groups = {
        "replace": lambda: replace_rules(problem.selection),
        "first_step": lambda: first_step_rules(problem.selection),
        "divide_loop": lambda: divide_tile_rules(g),
        "reorder_loops": reorder_tile_rules,
        "stage_mem": stage_rules,
        "lift_alloc(acc)": accumulator_rules,
        "double_buffer": double_buffer_rules,
        "load_ahead": load_ahead_rules,
    }
    if unguarded:
        groups[rule] = lambda: UNGUARDED[rule](lambda v: [])
    wanted = PLAN_RULES if rule in ("replace", "all") else (*ROLE_FILLERS, rule, *NEEDS.get(rule, ()))
    rules, names = named((name, groups[name]()) for name in wanted)
    return Rules(ruleset(*rules, name="gemmini"), names, facts=tuple(Parallel(v) for v in g.parallel))


@dataclass(frozen=True)
class Explored:
    """A kernel prepared for the Gemmini target and saturated under one check's rules."""

    problem: GemminiProblem
    saturated: Saturated
    choices: tuple[OpChoice, ...]


@lru_cache(maxsize=64)
def _explored(rule: str, kernel: KernelSpec, broken: bool) -> Explored:
    problem = GemminiTarget().prepare(kernel.proc())
    rules = rules_for(rule, problem, unguarded=broken)
    sat = saturate(to_egg(initial_plan(problem.pattern)), rules, BUDGET)
    return Explored(problem, sat, tuple(problem.model.choices()))


def effects(g: GemmPattern, model: GemminiCost, plan: Plan) -> set[str]:
    """The rules whose effect ``plan`` shows (the initial plan shows none), and ``replace:<instr>``
    for each instruction it uses."""
    links = chain(plan)
    loops = [x for x in links if isinstance(x, PLoop)]
    initial = [x.var for x in chain(initial_plan(g)) if isinstance(x, PLoop)]
    out = {f"replace:{x.op}" for x in links if isinstance(x, (PStage, PMac))}
    out |= {f"replace:{op}" for x in links if isinstance(x, PAcc) for op in (x.zero, x.store)}
    if any(x.stride > DIM for x in loops):  # an outer part of a split tile loop
        out.add("divide_loop")
    if [x.var for x in loops if x.stride <= DIM] != initial:
        out.add("reorder_loops")
    if any(isinstance(x, (PStage, PAcc)) and x.buffers == 2 for x in links):
        out.add("double_buffer")
    if any(isinstance(x, PStage) and x.ahead for x in links):
        out.add("load_ahead")
    for i, x in enumerate(links):
        if isinstance(x, PStage) and any(isinstance(y, PLoop) for y in links[i:]):
            out.add("stage_mem")  # staged for the tiles of the loops below it
        if isinstance(x, PAcc):
            below, above = links[i:], links[:i]
            # moved: it covers the tiles of a parallel loop below, or sits in a reduction loop
            if any(isinstance(y, PLoop) and y.var in g.parallel for y in below) or any(
                isinstance(y, PLoop) and y.var in g.reduction for y in above
            ):
                out.add("lift_alloc(acc)")
            if model.overwrites(x.zero):
                out.add("first_step")
    return out


def _wanted(rule: str, instr: str | None) -> Callable[[set[str]], bool]:
    """Whether a plan's `effects` show what the check of ``rule`` wants (``instr``, for replace)."""
    if rule == "replace":
        return lambda fx: f"replace:{instr}" in fx
    if rule == "all":
        return lambda fx: bool(fx & set(PLAN_RULES))
    return lambda fx: rule in fx


def draw_plan(explored: Explored, shows: Callable[[set[str]], bool], rng: random.Random, instr: str | None):
    """A plan of the e-graph that fits the memories, with its instruction choice; one that
    ``shows`` its effects when `PLAN_TRIES` draws find one. None when no draw fits."""
    model = explored.problem.model
    choices = [c for c in explored.choices if instr is None or instr in dict(c.instrs).values()] or explored.choices
    fallback = None
    for _ in range(PLAN_TRIES):
        choice = choices[rng.randrange(len(choices))]
        plan = random_plan(explored.saturated.view, model, choice, rng.randrange)
        if plan is None or not model.footprint(plan).fits(model.consts):
            continue
        if shows(effects(model.g, model, plan)):
            return plan, choice
        fallback = fallback or (plan, choice)
    return fallback


def check_plan(explored: Explored, plan: Plan, choice: OpChoice, round_trip: bool = True) -> None:
    """Properties 1–4 for one plan (2 only with ``round_trip``); raise `RuleViolation` on the first failure."""
    problem = explored.problem
    try:
        replayed = replay_plan(problem.proc, problem.pattern, plan, choice.hoisted, problem.selection,
                               problem.normal)
    except ReplayError as e:
        raise RuleViolation(f"guard precision: Exo rejected a step the rules allowed: {e}\nplan:\n{show(plan)}") from e
    if round_trip and str(apply_script(problem.proc, replayed.script)) != str(replayed.proc):
        raise RuleViolation(f"round trip: the pasted script makes another proc\nplan:\n{show(plan)}\n{replayed.script}")
    verdict = validate_gemmini(problem.proc, replayed.proc)
    if not verdict.ok:
        raise RuleViolation(f"soundness: {verdict.message}\nplan:\n{show(plan)}\n{replayed.script}")
    modeled = problem.model.cycles(plan, choice.hoisted)
    if verdict.cycles != modeled:
        raise RuleViolation(f"cost model: simulated {verdict.cycles} cycles, modeled {modeled}\nplan:\n{show(plan)}")


def check_example(rule: str, example: PlanExample, broken: bool = False) -> Outcome:
    """Draw a plan for ``example`` from the e-graph of ``rule``'s check and check it."""
    explored = _explored(rule, example.kernel, broken)
    # every instruction some config-consistent choice uses (``do_ld_i8``'s hoisted config clashes
    # with the zero's, which shares its id: no plan can use it)
    instrs = sorted({i for c in explored.choices for _, i in c.instrs})
    instr = instrs[example.instr % len(instrs)] if rule == "replace" else None
    shows = _wanted(rule, instr)
    drawn = draw_plan(explored, shows, random.Random(example.draw), instr)
    if drawn is None:
        return Outcome(0, 0)
    plan, choice = drawn
    # a rule run without its guard is checked for what the guard keeps (soundness); its scripts
    # are the replay's own, which the guarded checks round-trip already (an Exo pass a plan saved)
    check_plan(explored, plan, choice, round_trip=not broken)
    model = explored.problem.model
    return Outcome(1, int(shows(effects(model.g, model, plan))))


def check_plan_rule(
    rule: str,
    examples: int = 20,
    seed: int = 0,
    *,
    on_example: Callable[[int], None] | None = None,
    unguarded: bool = False,
) -> RuleReport:
    """Check the Gemmini plan rule ``rule`` (a name of `CHECKS`) on ``examples`` random kernels.

    ``unguarded``: the rule (one of `UNGUARDED`) without its guard, to show the check catches it:
    the accumulator rule may then move the accumulator into a reduction loop.
    """
    if rule not in CHECKS or (unguarded and rule not in UNGUARDED):
        raise KeyError(rule)
    check = partial(check_example, rule, broken=unguarded)
    return run_examples(rule, plan_examples(rule), check, examples, seed, shrink=False, on_example=on_example)


def plan_rule_checks() -> dict[str, RuleCheck]:
    """Every plan rule's check, by name: what the gemmini target offers ``check-rules``."""
    return {rule: partial(_check_named, rule) for rule in CHECKS}


def _check_named(rule: str, examples: int, seed: int, on_example: Callable[[int], None] | None = None) -> RuleReport:
    return check_plan_rule(rule, examples, seed, on_example=on_example)


__all__ = ["CHECKS", "check_plan_rule", "effects", "gemmini_kernels", "plan_rule_checks", "rules_for"]
