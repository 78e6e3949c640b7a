"""The ``x86`` target object: register-tiled micro-kernels with AVX2 / AVX-512 instructions, built as users build.

A matmul-like kernel (`pattern.find_micro_kernel`), or a matrix-vector product
(`pattern.find_dot_kernel`: partial sums along the reduction), becomes a plan e-graph under the micro-kernel
rules (`rewrites.x86`), priced in cycles by `extract.x86_cost`, replayed as Exo's own x86
scheduling calls (`replay`), and validated at ``-O3 -march=native`` (`NATIVE_CFLAGS`) against the
input within float tolerance (FMA rounds once where ``a * b + c`` rounds twice). Any other kernel
goes through the portable loop rules of the ``cpu`` target, still built and timed with the
native flags, and the report says so.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping

from exo import Procedure

from exo_egraph.extract.x86_cost import DotCost, X86Cost, X86Machine, cost_model
from exo_egraph.lower import lower
from exo_egraph.rewrites.x86 import initial_plan, to_egg, x86_rules
from exo_egraph.saturate import Budget, Deadline, EGraphView, Iteration, Saturated, saturate
from exo_egraph.script import Replayed, ReplayError, replay_pieces
from exo_egraph.target import REPLAY_AND_WAIT_S, NotValidated, Pick, Target, create as create_target
from exo_egraph.validate.cpu import (
    NATIVE_CFLAGS, ReferenceCall, Unfinished, Validation, ValidationError, begin_reference, cannot_validate, measure_cpu,
    sizes_reaching, validate_cpu,
)  # fmt: skip
from exo_egraph.validate.measurement import Measurement

from .isa import Isa, default_isa, select_isa
from .pattern import Kernel, MicroKernel, NotMicroKernel, Plan, find_kernel, iterator_of, perfect_nest
from .replay import replay_plan
from .accumulator import Accumulator, find_accumulator, in_tiles, replay_in_tiles, split_accumulator
from .tails import Split, cut_vector_tail, whole_lanes


@dataclass(frozen=True)
class Portable:
    """A kernel the micro-kernel rules do not tile: the portable ``cpu`` target's problem, and why."""

    problem: Any
    notes: tuple[str, ...]

    @property
    def proc(self) -> Procedure:
        return self.problem.proc


@dataclass(frozen=True)
class X86Problem:
    proc: Procedure
    kernel: Kernel
    isa: Isa
    model: X86Cost | DotCost
    notes: tuple[str, ...] = ()
    split: Split | None = None  # a tail of lanes cut off, or an accumulator's initial values and epilogue
    cut_sizes: tuple[str, ...] = ()  # the size arguments tile loops cut at replay run to
    accumulator: Accumulator | None = None  # the scalar accumulator split out: plans may keep it per tile

    @property
    def tiled(self) -> Procedure:
        """The proc the plans tile: the kernel, or the nest split out of it."""
        return self.split.piece if self.split else self.proc

    def priced(self, plan: Plan) -> float:
        """The plan's cycles, and the tail's as written."""
        return self.model.plan(plan) + self.rest_cycles

    def sizes(self, given: Mapping[str, int] | None) -> Mapping[str, int] | None:
        """The sizes to validate at: ``given``, and each size argument that a tile loop cut at replay
        (`MicroKernel.cut`) runs to and is not given at `CUT_SIZE` (set through the size that
        defines it, when a precondition does: `sizes_reaching`), so that whole tiles and a tail
        both run."""
        try:
            hint = sizes_reaching(self.proc, given, {name: CUT_SIZE for name in self.cut_sizes})
        except ValidationError:
            return given
        return hint if hint != dict(given or {}) and not cannot_validate(self.proc, hint) else given

    @property
    def rest_cycles(self) -> float:
        """What is left as written beside the piece, priced as its share of the piece's naive cost."""
        return self.model.naive() * self.split.share if self.split else 0.0


# The size a tile loop cut at replay is validated at when not given: whole tiles of every plan's
# width (at most 64 lanes or rows here) and a tail of lanes or rows after them.
CUT_SIZE = 100


def _cut_sizes(term: Any, kernel: Kernel) -> tuple[str, ...]:
    """The size arguments that tile loops cut at replay run to (``for i in seq(0, M)``: M)."""
    loops, _ = perfect_nest(term)
    sizes = (iterator_of(lp.hi) for lp in loops if lp.var in kernel.cut)  # the trips, when one size exactly
    return tuple(s for s in sizes if s is not None)


def _value(op: str) -> Any:
    return json.loads(op)  # a serialized primitive: "i j" (quoted) or 16


def plans_of(view: EGraphView) -> list[Plan]:
    """Every plan the root e-class holds (a plan e-graph is a few hundred plans: listed, not sampled)."""
    value = {c: _value(view.nodes[ids[0]][0]) for c, ids in view.classes.items() if not view.nodes[ids[0]][1]}
    tiles = {
        c: [tuple(value[k] for k in view.nodes[n][1]) for n in ids if view.nodes[n][0] == "XT.tile"]
        for c, ids in view.classes.items()
    }
    out = []
    for n in view.classes[view.root]:
        op, (order, tile) = view.nodes[n]
        if op == "XP.plan":
            out += [Plan(r, v, kc, tuple(value[order].split())) for r, v, kc in tiles[tile]]
    return out


def _accumulator_split(proc: Procedure, term: Any, whole: NotMicroKernel) -> tuple[Accumulator, Split]:
    """The kernel's scalar accumulator and `split_accumulator`, or `NotMicroKernel` saying why
    neither the kernel nor its split is one."""
    try:
        acc = find_accumulator(term)
        return acc, split_accumulator(proc, acc)
    except NotMicroKernel as acc:
        raise NotMicroKernel(f"{whole}; nor does it reduce into a scalar accumulator ({str(acc).split(': ', 1)[-1]})") from None
    except ReplayError as e:
        raise NotMicroKernel(f"{whole}; Exo refused to split its accumulator ({e})") from None


@dataclass(frozen=True)
class X86Target:
    """Schedules for this machine's vector ISA (``isa``: avx512 or avx2, default the host's best)."""

    isa_name: str
    cflags: tuple[str, ...] = NATIVE_CFLAGS
    name: str = "x86"
    cost_unit: str = "model cycles"
    tuning: bool = False  # the portable target as ``tune`` searches with it (`for_tuning`)

    @property
    def portable(self) -> Target:
        """The ``cpu`` target (from the registry) built with this target's flags: for kernels that are
        not micro-kernels."""
        cpu = create_target("cpu", cflags=self.cflags)
        return cpu.for_tuning() if self.tuning else cpu

    @property
    def build(self) -> str:
        return " ".join(["gcc", *self.cflags]) + f" ({self.isa_name})"

    def prepare(self, proc: Procedure, sizes: Mapping[str, int] | None = None) -> X86Problem | Portable:
        isa = select_isa(self.isa_name)
        term = lower(proc)
        split, acc, notes = None, None, ()
        try:
            try:
                mk = find_kernel(term, sizes)
            except NotMicroKernel as whole:
                acc, split = _accumulator_split(proc, term, whole)
                mk = find_kernel(lower(split.piece), sizes)
                if isinstance(mk, MicroKernel):  # its accumulator is kept per tile where whole tiles cover the rows
                    mk = replace(mk, row_tails=False)  # (`replay_in_tiles`)
                notes = (f"{mk.out}: the scalar accumulator's reduction is split out as the micro-kernel (expand_dim, "
                         "lift_alloc, fission, extract_subproc): with a register tile's dimensions under the tile loops, "
                         "or, where tiles are cut at replay, one per loop around it",)  # fmt: skip
            if mk.y in mk.cut and whole_lanes(mk, isa.width):  # its tail is cut at replay:
                mk = mk.priced_at(mk.y, whole_lanes(mk, isa.width))  # plans tile the whole vectors
            if split is None and mk.extent(mk.y) % isa.width and whole_lanes(mk, isa.width):
                split = cut_vector_tail(proc, mk, isa.width)
                mk = find_kernel(lower(split.piece))
                notes = (f"{mk.y}: the last {split.share * mk.extent(mk.y):.0f} lanes are not a whole vector: cut off "
                         "(cut_loop, fission) and left as written",)  # fmt: skip
            initial_plan(mk, isa)  # says why when the kernel's sizes do not tile
        except NotMicroKernel as e:
            problem = self.portable.prepare(proc)
            why = f"{e}: scheduled with the cpu loop rules, built with {' '.join(self.cflags)}"
            return Portable(problem, (*getattr(problem, "notes", ()), why))
        cut = _cut_sizes(lower(split.piece) if split else term, mk)
        model = cost_model(mk, X86Machine.host(isa.width))
        return X86Problem(proc, mk, isa, model, notes, split, cut, acc)

    def saturate(
        self, problem: Any, budget: Budget, progress: Callable[[Iteration], None] | None, deadline: Deadline
    ) -> Saturated:
        if isinstance(problem, Portable):
            return self.portable.saturate(problem.problem, budget, progress, deadline)
        start = to_egg(initial_plan(problem.kernel, problem.isa))
        return saturate(start, x86_rules(problem.kernel, problem.isa), budget, progress, deadline)

    def naive_cost(self, problem: Any) -> float:
        if isinstance(problem, Portable):
            return self.portable.naive_cost(problem.problem)
        return problem.model.naive() + problem.rest_cycles

    def extract(self, problem: Any, saturated: Saturated, k: int, deadline: Deadline) -> list[Pick]:
        if isinstance(problem, Portable):
            return self.portable.extract(problem.problem, saturated, k, deadline)
        # ties broken towards more rows: on the machines measured, 8 and 16 rows ran at the FMA peak
        # where tiles the model prices the same with 4 or fewer ran 1.3-2x slower (cause not modelled yet)
        priced = sorted(
            ((problem.priced(p), p) for p in plans_of(saturated.view)), key=lambda cp: (cp[0], -cp[1].rows, cp[1].show())
        )
        return [Pick(cost, plan) for cost, plan in priced[:k]]

    def replay(self, problem: Any, pick: Pick) -> Replayed:
        if isinstance(problem, Portable):
            return self.portable.replay(problem.problem, pick)
        if problem.accumulator and in_tiles(problem.kernel, pick.term):
            return replay_in_tiles(problem.proc, problem.accumulator, problem.kernel, problem.isa, pick.term)
        done = replay_plan(problem.tiled, problem.kernel, problem.isa, pick.term)
        if problem.split is None:
            return done
        split = problem.split
        return replay_pieces(problem.proc, split.prelude, split.calls, [(split.piece, done)], first=split.first)

    def after_search(self, problem: Any) -> float:
        return REPLAY_AND_WAIT_S

    def run_sizes(self, problem: Any, given: Mapping[str, int] | None) -> Mapping[str, int] | None:
        if isinstance(problem, Portable):
            return self.portable.run_sizes(problem.problem, given)
        return problem.sizes(given)

    def begin_validation(self, problem: Any, *, sizes: Mapping[str, int] | None) -> ReferenceCall | None:
        if isinstance(problem, Portable):
            return self.portable.begin_validation(problem.problem, sizes=sizes)
        sizes = problem.sizes(sizes)
        return None if cannot_validate(problem.proc, sizes) else begin_reference(problem.proc, sizes, cflags=self.cflags)

    def validate(
        self,
        problem: Any,
        replayed: Replayed,
        pick: Pick,
        *,
        reference: Callable | None,
        sizes: Mapping[str, int] | None,
        deadline: Deadline,
        ahead: ReferenceCall | None = None,
    ) -> Validation | NotValidated:
        if isinstance(problem, Portable):
            return self.portable.validate(
                problem.problem, replayed, pick, reference=reference, sizes=sizes, deadline=deadline, ahead=ahead
            )
        sizes = problem.sizes(sizes)
        why = cannot_validate(problem.proc, sizes)
        if why:
            return NotValidated(why)
        # the tile's FMA rounds a * b + c once: results match the input within tolerance, not bit for bit
        try:
            return validate_cpu(
                problem.proc, replayed.proc, require_exact=False, sizes=sizes, seconds=max(deadline.left(), 0.0),
                cflags=self.cflags, ahead=ahead,
            )  # fmt: skip
        except Unfinished as e:
            return NotValidated(f"{e}, when the budget ran out: a larger budget validates it")

    # ------------------------------------------------------------------ what ``tune`` needs (`Tunes`)

    @property
    def options(self) -> dict[str, Any]:
        return {"isa": self.isa_name} | ({"cflags": self.cflags} if self.cflags != NATIVE_CFLAGS else {})

    def for_tuning(self) -> "X86Target":
        """The plan e-graph is searched whole already; kernels that are not micro-kernels take the
        cpu target's wider search for tuning."""
        return replace(self, tuning=True)

    def calibrated(self, calibration: Any) -> "X86Target":
        """The cycle model is not fitted to measurements (yet): ``tune`` measures its picks as they are."""
        return self

    def priced(self, problem: Any, pick: Pick | None) -> float:
        if isinstance(problem, Portable):
            return self.portable.priced(problem.problem, pick)
        return pick.cost if pick is not None else self.naive_cost(problem)

    def features(self, problem: Any, pick: Pick | None) -> dict[str, tuple[float, ...]]:
        if isinstance(problem, Portable):
            return self.portable.features(problem.problem, pick)
        return {"cycles": (self.priced(problem, pick),)}

    def program(self, problem: Any, pick: Pick | None) -> Any:
        """A plan fixes the code (None: the input as written)."""
        if isinstance(problem, Portable):
            return self.portable.program(problem.problem, pick)
        return pick.term if pick is not None else "input"

    def sample(self, problem: Any, saturated: Saturated, rng: random.Random) -> Pick:
        if isinstance(problem, Portable):
            return self.portable.sample(problem.problem, saturated, rng)
        plan = rng.choice(plans_of(saturated.view))
        return Pick(problem.priced(plan), plan)

    def measure(
        self, original: Procedure, scheduled: Procedure, *, sizes: Mapping[str, int] | None, seconds: float
    ) -> Measurement:
        """``scheduled`` against ``original``, interleaved, at this target's flags (floats within tolerance)."""
        why = cannot_validate(original, sizes)
        if why:
            return Measurement(ok=None, exact=False, unit="seconds", naive=0, median=0, message=why)
        return measure_cpu(original, scheduled, require_exact=False, sizes=sizes, seconds=seconds, cflags=self.cflags)

    def describe(self, pick: Pick) -> dict:
        if isinstance(pick.term, Plan):
            return {"plan": pick.term.show(), "isa": self.isa_name}
        return {}


    def rule_checks(self) -> Mapping[str, Any]:
        """The micro-kernel rules' soundness checks (`exo_egraph.targets.x86.checks`) for ``check-rules``."""
        from .checks import x86_rule_checks  # draws on hypothesis: loaded only to check rules

        return x86_rule_checks(self.isa_name)


def create(isa: str | None = None, cflags: tuple[str, ...] | None = None) -> X86Target:
    """The x86 target for ``isa`` (avx512 or avx2; default: this machine's best), built with
    ``cflags`` (default `NATIVE_CFLAGS`, as users build Exo's C)."""
    name = isa or default_isa()
    select_isa(name)  # an unknown ISA, or a platform without its instructions, fails here
    return X86Target(name, tuple(cflags) if cflags else NATIVE_CFLAGS)
