"""The ``cpu`` target: portable C. Loop rules over plain loop terms, the CPU cost model, Exo's C run
on this machine with gcc, compared byte for byte with the input proc."""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Callable, Mapping

from exo import Procedure

from .. import ir
from .. import terms as t
from ..extract.calibrate import Calibration, Features
from ..extract.cost import CpuCost, buffers_of, calibrated_cpu_cost, cpu_features, program_cost
from ..extract.extractors import Extracted, extract, sample
from ..lower import lower
from ..replay import replay
from ..rewrites.loops import LoopRuleConfig, loop_rules
from ..saturate import Budget, Deadline, Iteration, Saturated, Stage, Staged, StopReason, TimeUp, saturate
from ..script import Replayed
from ..target import REPLAY_AND_WAIT_S, NotValidated, Pick
from ..validate.measurement import Measurement
from ..validate.cpu import (
    CFLAGS, ReferenceCall, Unfinished, Validation, begin_reference, cannot_validate, contracts, measure_cpu, validate_cpu,
    vectorization,
)  # fmt: skip

if TYPE_CHECKING:
    from ..checks import RuleCheck


def saturate_term(
    term: t.Proc,
    rules: LoopRuleConfig = LoopRuleConfig(),
    budget: Budget = Budget(),
    progress: Callable[[Iteration], None] | None = None,
    extra: tuple = (),
    deadline: Deadline | None = None,
) -> Saturated:
    """Saturate a program term under the loop rules ``rules`` enables (plus ``extra`` rules)."""
    return saturate(ir.proc(term), loop_rules(term, rules, extra), budget, progress, deadline)


# schedules of the sketch phase that seed the refining phase: enough that every shipped kernel's
# refined best equals the unstaged search's (tests/test_stages.py)
SKETCH_SEEDS = 8


def sketch_min_part(term: t.Proc, min_part: int) -> int:
    """The sketch's least trips per part of a split: the largest power of two at most the cube root
    of the kernel's longest constant loop (a loop tiled into about three levels), and at least
    ``min_part``. At 512 and 1024 trips it is 8: the sketch's e-graph is then 8x (512³) to 7x
    (1024³) smaller and its extraction 100x faster, and the refine phase splits its seeds finer."""
    trips = [s.hi.const for s in t.walk(term.body) if isinstance(s, t.Loop) and s.lo == t.Aff() and s.hi.is_const]
    cube_root = round(max(trips, default=1) ** (1 / 3), 9)
    return max(min_part, 2 ** max(0, math.floor(math.log2(cube_root))) if cube_root >= 1 else 1)


def staged_saturate(
    problem: "CpuProblem",
    rules: LoopRuleConfig,
    budget: Budget,
    progress: Callable[[Iteration], None] | None,
    deadline: Deadline,
    seeds: int = SKETCH_SEEDS,
    from_input: bool = False,
) -> Saturated:
    """Saturation in two phases, as sketch-guided equality saturation does (Koehler et al., POPL'24).

    *sketch*: the loop rules with each loop's tiles kept outer to inner (`tiles_in_order`): every
    tiling and every interleaving of the tiles, without the orders that put a loop's inner tile
    outside its outer one, which multiply the e-graph (10x at 128³) and rarely pay; on long loops,
    only splits into parts of `sketch_min_part` trips or more. Its ``seeds``
    cheapest schedules under the model are kept; the rest cost at least the last kept one.
    *refine*: the unrestricted loop rules from those schedules (not from the input), which finds
    what the sketch left out around them (blur2d's best is there); ``from_input``: from the input
    too, so the refined e-graph is as wide as the budget lets it grow (what ``tune`` samples
    from), and still holds the sketch's best. Approximate: a schedule the
    sketch did not hold, reached only from a pruned one, is not found; the tests measure the gap on
    every shipped kernel (none). Out of time after the sketch, its e-graph is the answer's;
    interrupted while pricing it, the input's alone.
    """
    began = time.perf_counter()
    coarse = replace(rules, tiles_in_order=True, min_part=sketch_min_part(problem.term, rules.min_part))
    sketch = saturate_term(problem.term, coarse, budget, progress, deadline=deadline)
    if sketch.stats.stop_reason is StopReason.INTERRUPTED:
        return sketch
    try:
        kept = extract(sketch.view, problem.model, k=seeds, deadline=deadline)
    except TimeUp:
        return sketch
    except KeyboardInterrupt:
        # nothing priced yet, and pricing the sketch again would keep the user waiting as long:
        # the best so far is the input as written (the e-graph of the term alone)
        alone = saturate_term(problem.term, rules, Budget(iterations=0))
        return replace(alone, stats=replace(alone.stats, stop_reason=StopReason.INTERRUPTED))
    first = Stage("sketch", sketch.stats.enodes, sketch.stats.schedules, time.perf_counter() - began,
                  sketch.stats.stop_reason, kept=len(kept), bound=kept[-1].cost)  # fmt: skip
    began = time.perf_counter()
    roots = [problem.term] * from_input + [x.proc for x in kept]
    refined = saturate(
        ir.proc(roots[0]), loop_rules(problem.term, rules), budget, progress, deadline,
        seeds=[ir.proc(term) for term in roots[1:]],
    )  # fmt: skip
    s = refined.stats
    last = Stage("refine", s.enodes, s.schedules, time.perf_counter() - began, s.stop_reason)
    stop = s.stop_reason if s.stop_reason.budget_reached else sketch.stats.stop_reason
    stats = replace(s, seconds=first.seconds + last.seconds, stop_reason=stop, history=sketch.stats.history + s.history,
                    stages=(first, last))  # fmt: skip
    return Staged[Extracted](refined.egraph, refined.view, stats, tuple(kept))


@dataclass(frozen=True)
class CpuProblem:
    proc: Procedure
    term: t.Proc
    model: CpuCost
    notes: tuple[str, ...] = ()  # what the rules leave alone, and why


def symbolic_loops(term: t.Proc) -> tuple[str, ...]:
    """A note for each loop whose trip count is not a constant: the loop rules leave it as written."""
    return tuple(
        f"loop {s.var} runs from {s.lo} to {s.hi}, not a constant trip count: left as written "
        "(divide_loop, reorder_loops and unroll_loop need constant trips; fix sizes with partial_eval "
        "to explore it)"
        for s in t.walk(term.body)
        if isinstance(s, t.Loop) and not (s.hi + s.lo.scale(-1)).is_const
    )


@dataclass(frozen=True)
class CpuTarget:
    """Schedules for portable C: loop rules (`rewrites.loops`), the CPU model (`extract.cost`),
    with its weights fitted to this machine's measurements when a ``calibration`` is given."""

    rules: LoopRuleConfig = LoopRuleConfig()
    calibration: Calibration | None = None
    name: str = "cpu"
    cflags: tuple[str, ...] = CFLAGS  # how validation and timing build Exo's C
    staged: bool = True  # saturate in phases (`staged_saturate`); False: one unrestricted run
    refine_from_input: bool = False  # the refine phase starts from the input too (`for_tuning`)

    @property
    def cost_unit(self) -> str:
        return "model cost" if self.calibration is None else "predicted seconds"

    @property
    def options(self) -> dict[str, Any]:
        """The options that `create` takes to make this target again (in a measuring worker)."""
        options: dict[str, Any] = {"reassociate": True} if self.rules.reassociate else {}
        return options | ({"cflags": self.cflags} if self.cflags != CFLAGS else {})

    @property
    def build(self) -> str:
        """How measured code is built: the compiler and flags validation uses."""
        return " ".join(["gcc", *self.cflags])

    @property
    def exact(self) -> bool:
        """Must a schedule match the input bit for bit? Float sums keep their order unless the rules
        reassociate, and a build that fuses into FMA (`contracts`) rounds per loop structure."""
        return not self.rules.reassociate and not contracts(self.cflags)

    def prepare(self, proc: Procedure, sizes: Mapping[str, int] | None = None) -> CpuProblem:
        # ``sizes`` unused: the loop model prices any symbolic trip count at its ``symbolic`` default
        term = lower(proc)
        buffers = buffers_of(term)
        built = vectorization(self.cflags)  # the model assumes what this build vectorises
        model = CpuCost(buffers, simd_bytes=built.simd_bytes, alias_checks=built.alias_checks)
        if self.calibration is not None:
            model = calibrated_cpu_cost(model, self.calibration.assumption, self.calibration.weights)
        return CpuProblem(proc, term, model, symbolic_loops(term))

    def for_tuning(self) -> "CpuTarget":
        """Refining from the input as well as the sketch's best: ``tune`` samples and measures the
        wider e-graph (refined from the sketch's best schedules alone, conv1d's holds few programs)."""
        return replace(self, refine_from_input=True)

    def calibrated(self, calibration: Calibration | None) -> "CpuTarget":
        """This target with its model's weights fitted to measurements (`extract.calibrate.fit`)."""
        return replace(self, calibration=calibration)

    def features(self, problem: CpuProblem, pick: Pick | None) -> Features:
        """The program's cost terms under every assumption calibration chooses among (None: the input)."""
        return cpu_features(problem.model, self.program(problem, pick))

    def program(self, problem: CpuProblem, pick: Pick | None) -> t.Proc:
        """The program a pick compiles to (None: the input): equal programs give the same C."""
        return t.materialize(pick.term) if pick is not None else problem.term

    def priced(self, problem: CpuProblem, pick: Pick | None) -> float:
        """The model's cost of a pick (None: of the input)."""
        return self.price(problem, pick.term if pick is not None else problem.term)

    def sample(self, problem: CpuProblem, saturated: Saturated, rng: random.Random) -> Pick:
        """A random member of the e-graph (a random e-node in every e-class), priced."""
        term = sample(saturated.view, rng)
        return Pick(self.price(problem, term), term)

    def saturate(
        self, problem: CpuProblem, budget: Budget, progress: Callable[[Iteration], None] | None, deadline: Deadline
    ) -> Saturated:
        if self.staged and self.rules.reorder and not self.rules.tiles_in_order:
            return staged_saturate(problem, self.rules, budget, progress, deadline, from_input=self.refine_from_input)
        return saturate_term(problem.term, self.rules, budget, progress, deadline=deadline)

    def price(self, problem: CpuProblem, term: t.Proc) -> float:
        """The one price of a program: the model's cost of its plain-loop form."""
        return program_cost(problem.model, t.materialize(term))

    def naive_cost(self, problem: CpuProblem) -> float:
        return self.price(problem, problem.term)

    def extract(self, problem: CpuProblem, saturated: Saturated, k: int, deadline: Deadline) -> list[Pick]:
        """The ``k`` cheapest schedules; past the deadline, the sketch's cheapest (`Staged`),
        else `TimeUp`."""
        try:
            picks = extract(saturated.view, problem.model, k=k, deadline=deadline)
        except TimeUp:
            picks = list(saturated.kept[:k]) if isinstance(saturated, Staged) else []
            if not picks:
                raise
        return [Pick(self.price(problem, x.proc), x.proc) for x in picks]

    def replay(self, problem: CpuProblem, pick: Pick) -> Replayed:
        return replay(problem.proc, pick.term)

    def after_search(self, problem: CpuProblem) -> float:
        return REPLAY_AND_WAIT_S

    def run_sizes(self, problem: CpuProblem, given: Mapping[str, int] | None) -> Mapping[str, int] | None:
        return given

    def begin_validation(self, problem: CpuProblem, *, sizes: Mapping[str, int] | None) -> ReferenceCall | None:
        """The input's compared call, begun in a child process (a naive 1024³ matmul's takes 10 s)."""
        return None if cannot_validate(problem.proc, sizes) else begin_reference(problem.proc, sizes, cflags=self.cflags)

    def validate(
        self,
        problem: CpuProblem,
        replayed: Replayed,
        pick: Pick,
        *,
        reference: Callable | None,
        sizes: Mapping[str, int] | None,
        deadline: Deadline,
        ahead: ReferenceCall | None = None,
    ) -> Validation | NotValidated:
        why = cannot_validate(problem.proc, sizes)
        if why:
            return NotValidated(why)
        try:
            return validate_cpu(
                problem.proc,
                replayed.proc,
                require_exact=self.exact,
                sizes=sizes,
                seconds=max(deadline.left(), 0.0),
                cflags=self.cflags,
                ahead=ahead,
            )
        except Unfinished as e:
            return NotValidated(f"{e}, when the budget ran out: a larger budget validates it")

    def measure(
        self, original: Procedure, scheduled: Procedure, *, sizes: Mapping[str, int] | None, seconds: float
    ) -> Measurement:
        """``scheduled`` compared with ``original`` and timed against it, interleaved, for ``tune``."""
        why = cannot_validate(original, sizes)
        if why:
            return Measurement(ok=None, exact=False, unit="seconds", naive=0, median=0, message=why)
        return measure_cpu(original, scheduled, require_exact=self.exact, sizes=sizes, seconds=seconds, cflags=self.cflags)

    def describe(self, pick: Pick) -> dict:
        return {}

    def rule_checks(self) -> Mapping[str, RuleCheck]:
        """The loop rules' soundness checks (`exo_egraph.checks.RULES`) for ``check-rules``."""
        from ..checks import loop_rule_checks  # draws on hypothesis: loaded only to check rules

        return loop_rule_checks()


def create(
    rules: LoopRuleConfig | None = None,
    reassociate: bool = False,
    calibration: Calibration | None = None,
    cflags: tuple[str, ...] | None = None,
    staged: bool = True,
) -> CpuTarget:
    """The cpu target; ``reassociate`` lets float ``+=`` sums change order (validated within
    tolerance); ``calibration`` fits the model's weights to measurements (see ``tune``); ``cflags``
    replace the portable gcc flags validation builds with (`CFLAGS`); ``staged`` False saturates in
    one unrestricted run instead of `staged_saturate`'s phases."""
    if rules is not None and not isinstance(rules, LoopRuleConfig):
        raise TypeError(f"rules must be a LoopRuleConfig, not {type(rules).__name__}")
    if calibration is not None and not isinstance(calibration, Calibration):
        raise TypeError(f"calibration must be a Calibration, not {type(calibration).__name__}")
    rules = rules or LoopRuleConfig()
    rules = replace(rules, reassociate=True) if reassociate else rules
    return CpuTarget(rules, calibration, cflags=tuple(cflags) if cflags else CFLAGS, staged=staged)
