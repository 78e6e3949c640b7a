"""The ``gemmini`` target object: hands the Gemmini pieces to the line as one `GemminiTarget`."""

from __future__ import annotations

import importlib
import math
import random
import time
from dataclasses import dataclass, replace
from typing import Any, Callable, Mapping

from exo import Procedure

from exo_egraph.extract.gemmini_cost import GemminiCost, host_cycles
from exo_egraph.extract.plan_extract import SHORTLIST, Extracted, extract_timed, held_choices, random_plan
from exo_egraph.lower import lower, source_of
from exo_egraph.rewrites.gemmini import buffer_rules, gemmini_rules
from exo_egraph.extract.gemmini_timeline import pieces_timing
from exo_egraph.saturate import (Budget, Deadline, Iteration, Pace, Saturated, SaturationStats, Stage, Staged,
                                 StopReason, saturate)
from exo_egraph.script import Replayed, Session, Step, extract_pieces, piece_name, replay_pieces
from exo_egraph.target import Pick
from exo_egraph.terms import Proc
from exo_egraph.validate.cpu import CFLAGS
from exo_egraph.validate.measurement import Measurement

from .config import CONSTANTS, INSTRUCTION_MODULES, PLATFORM
from .model import validate_gemmini
from .pattern import (
    GemmPattern,
    NotGemmini,
    find_gemm,
    initial_plan,
    role_statement,
    strided,
    transposed,
    unfilled_roles,
)
from .pieces import cut_nests, cuts
from .plans import Operand, Role, show, to_egg
from .replay import normalize, replay_plan
from .selection import Selection, select_instructions


@dataclass(frozen=True)
class GemminiProblem:
    proc: Procedure
    term: Proc  # the kernel as written
    pattern: GemmPattern  # of the kernel in its normal form (``normal`` below)
    selection: Selection
    model: GemminiCost
    normal: tuple[Step, ...] = ()  # Exo calls to the pattern's form, replayed first (`replay.normalize`)
    # a kernel cut into nests (`exo_egraph.targets.gemmini.pieces`): each nest's problem, the Exo
    # calls that cut it, and the cut kernel calling the nests' procs (pattern, selection and
    # model above are the first nest's)
    pieces: tuple["GemminiProblem", ...] = ()
    prelude: tuple[Step, ...] = ()
    calls: Procedure | None = None


@dataclass(frozen=True)
class SaturatedPieces(Saturated):
    """The e-graphs of a cut kernel's pieces (``egraph`` and ``view`` are the first one's)."""

    pieces: tuple[Saturated, ...] = ()


@dataclass(frozen=True)
class GemminiVerdict:
    """The best schedule on the Gemmini model, against the naive proc on the host CPU."""

    ok: bool  # bit-exact against the naive proc (and the numpy reference, when given)
    message: str
    cycles: int  # simulated, decoupled model
    utilization: float
    model_cycles: int  # what the cost model predicted: equal to ``cycles`` when model and simulator agree
    counters: Mapping[str, int]
    naive_host_cycles: int  # the naive proc, CPU only (one cycle per scalar statement)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "message": self.message,
            "cycles": self.cycles,
            "timing_model": "decoupled: load, execute and store controllers overlap (gemmini_timing.h)",
            "cycles_serial": self.counters.get("cycles_serial", 0),
            "utilization": round(self.utilization, 4),
            "model_cycles": self.model_cycles,
            "model_agrees": self.model_cycles == self.cycles,
            "counters": dict(self.counters),
            "naive": {
                "runs_on": "host CPU only (no Gemmini)",
                "host_cycles": self.naive_host_cycles,
                "speedup_vs_naive": round(self.naive_host_cycles / max(self.cycles, 1), 2),
            },
        }

    def summary(self) -> list[tuple[str, str]]:
        return [
            ("validation", f"{self.ok} ({self.message})"),
            ("simulated cycles", f"{self.cycles:,} decoupled (model agrees: {self.model_cycles == self.cycles}); "
                                 f"serial model {self.counters.get('cycles_serial', 0):,}"),
            ("utilization", f"{self.utilization:.1%}"),
            ("naive (host CPU)", f"{self.naive_host_cycles:,} cycles"),
        ]


def _instruction_modules() -> tuple:
    return tuple(importlib.import_module(m) for m in INSTRUCTION_MODULES)


def _check_strides(proc: Procedure, g: GemmPattern) -> None:
    """Decline, in one line naming the loop and the statement, a stride no tile load or store
    takes: only the first operand's rows may be more than one apart, loaded by an instruction
    that steps them (exo's ``ld_i8_s2``; the replay stages that operand by `_stage_strided`)."""
    steps = strided(g)
    filled = select_instructions(g, _instruction_modules()).for_role if steps else None
    for var, role, elements in steps:
        if not (role is Role.LOAD_A and filled(role)):
            where = source_of(proc, role_statement(g, role)) or "its statement"
            raise NotGemmini(f"{proc.name()}: loop '{var}' steps {elements} elements per trip in {where}: no Gemmini "
                             f"tile load or store of {PLATFORM} moves rows or columns that far apart")  # fmt: skip


def _why_unfilled(g: GemmPattern, role: Role) -> str:
    """What the kernel shows of why no instruction fills ``role`` ("" when nothing): an operand
    stored transposed that no load-and-multiply takes so (one at a time, through config_ex's
    A- or B-transpose bit), or both operands transposed."""
    flipped = [o for o in (Operand.A, Operand.B) if transposed(g, o)]
    if not flipped or role not in (Role.MAC, Role.LOAD_A, Role.LOAD_B):
        return ""
    if len(flipped) == 2:
        a, b = (g.operand(o)[0] for o in flipped)
        return (f": {a} and {b} are both stored transposed for this product, and config_ex transposes one "
                f"operand at a time (store one of them as multiplied)")
    (rows, cols), buf = g.rows(flipped[0]), g.operand(flipped[0])[0]
    return (f": {buf} is stored transposed for this product (its rows follow '{rows}', its columns '{cols}'), "
            f"and no instruction multiplies {buf} so")


WIDE_SHORTLIST = 64  # plans the second phase's (small) e-graph gives the timed shortlist
BUFFER_SEEDS = 8  # plans of the first saturation phase whose double-buffered variants are explored
PLAN_TRIES = 64  # random plans drawn, at most, to find one that fits the memories (a draw takes ~1 ms)
# What a run keeps past its search (`GemminiTarget.after_search`): replay is Exo re-checking some
# 70-90 scheduling calls a nest, whose analyses grow with the nest. Measured on this project's
# 2-core machine with the other core busy: 12.6 s for 512³'s one nest, 16.0 s for ResNet's
# 14x14x256 convolution (one nest), 20.3 and 21.0 s for the 28x28 and 56x56 ones (two nests each);
# the model's run of the schedule, 3-5 s.
REPLAY_S_PER_NEST = 10.0
VALIDATE_S = 4.0
# How the search spends its deadline past egglog (whose part is seconds at most): extraction's
# programme and timeline are what grow with a kernel, so each extraction is anytime within a share
# of the time left: the first phase's seed plans take a quarter of what is left after egglog,
# final extraction two thirds of what is left then (the rest is slack for an anytime step's
# overrun). Final extraction takes about as long as the seeds' did, and with a third the choice
# between it and the quick path sat on a knife-edge on 512^3 at 60 s (11.2 s needed, 11.4 s
# given): one run took the full path, the next the quick one, 1.8 % slower.
SEED_SHARE = 1 / 4
EXTRACT_SHARE = 2 / 3


@dataclass(frozen=True)
class GemminiTarget:
    """Tile plans over the instructions of ``exo.platforms.gemmini``; cost = the model's cycles."""

    name: str = "gemmini"
    cost_unit: str = "cycles"
    staged: bool = True  # double buffering explored around the first phase's best plans only

    def prepare(self, proc: Procedure, sizes: Mapping[str, int] | None = None) -> GemminiProblem:
        # ``sizes`` unused: the Gemmini plans need constant sizes, which the kernel states
        term = lower(proc)
        session = Session(proc)
        pattern = normalize(session)
        normal = tuple(session.steps)
        _check_strides(proc, pattern)
        if not cuts(pattern):
            return self._problem(proc, proc, term, pattern, normal)
        nests = cut_nests(session, pattern)
        calls, procs = extract_pieces(session.proc, proc.name(), nests)
        pieces = tuple(self._problem(proc, p, lower(p), find_gemm(lower(p))) for p in procs)
        first = pieces[0]
        return GemminiProblem(proc, term, first.pattern, first.selection, first.model, normal, pieces,
                              tuple(session.steps), calls)  # fmt: skip

    def _problem(self, user: Procedure, proc: Procedure, term: Proc, pattern: GemmPattern,
                 normal: tuple[Step, ...] = ()) -> GemminiProblem:  # fmt: skip
        """The problem of one nest ``proc`` (the kernel ``user`` wrote, or a piece of it)."""
        selection = select_instructions(pattern, _instruction_modules())
        missing = unfilled_roles(pattern, lambda role: bool(selection.for_role(role)))
        if missing:
            role, words = missing[0]
            where = source_of(user, role_statement(pattern, role)) or "its statement"
            raise NotGemmini(f"{user.name()}: no instruction of {PLATFORM} matches the {words} {where}"
                             f"{_why_unfilled(pattern, role)}")  # fmt: skip
        model = GemminiCost(pattern, selection, dict(CONSTANTS))
        return GemminiProblem(proc, term, pattern, selection, model, normal)

    def saturate(
        self, problem: GemminiProblem, budget: Budget, progress: Callable[[Iteration], None] | None, deadline: Deadline
    ) -> Saturated:
        """Two phases. *plans*: every rule but double buffering, from the initial plan; its
        `BUFFER_SEEDS` fastest plans under the decoupled model are kept (one instruction choice
        per kind of load: the second phase weighs every choice again). *buffers*: the
        double-buffering rules from those plans. Out of time (or interrupted) after the first,
        its e-graph is the answer's. Not ``staged``: every rule at once, one (larger) e-graph.
        A cut kernel's pieces are saturated one after the other, each with a share of the time left."""
        if problem.pieces:
            return self._saturate_pieces(problem, budget, progress, deadline)
        began = time.perf_counter()
        expr = to_egg(initial_plan(problem.pattern))
        rules = gemmini_rules(problem.pattern, problem.selection, buffers=not self.staged)
        plans = saturate(expr, rules, budget, progress, deadline)
        if not self.staged or plans.stats.stop_reason is StopReason.INTERRUPTED or deadline.passed():
            return plans
        seeding = Pace(None)
        try:
            with seeding.step():
                kept = tuple(extract_timed(plans.view, problem.model, k=BUFFER_SEEDS, deadline=deadline.part(SEED_SHARE),
                                          choices=problem.model.kind_choices()))  # fmt: skip
        except KeyboardInterrupt:
            return replace(plans, stats=replace(plans.stats, stop_reason=StopReason.INTERRUPTED))
        if not kept or deadline.passed():
            return Staged[Extracted](plans.egraph, plans.view, plans.stats, kept, seeding.last)
        p = plans.stats
        first = Stage("plans", p.enodes, p.schedules, time.perf_counter() - began, p.stop_reason,
                      kept=len(kept))  # fmt: skip
        began = time.perf_counter()
        seeds = [to_egg(x.plan) for x in kept]
        buffered = saturate(seeds[0], buffer_rules(problem.pattern), budget, progress, deadline, seeds=seeds[1:])
        b = buffered.stats
        last = Stage("buffers", b.enodes, b.schedules, time.perf_counter() - began, b.stop_reason)
        stop = b.stop_reason if b.stop_reason.budget_reached else p.stop_reason
        stats = replace(b, seconds=first.seconds + last.seconds, stop_reason=stop, history=p.history + b.history,
                        stages=(first, last))  # fmt: skip
        return Staged[Extracted](buffered.egraph, buffered.view, stats, kept, seeding.last)

    def _saturate_pieces(
        self, problem: GemminiProblem, budget: Budget, progress: Callable[[Iteration], None] | None, deadline: Deadline
    ) -> SaturatedPieces:
        done: list[Saturated] = []
        for i, piece in enumerate(problem.pieces):
            done.append(self.saturate(piece, budget, progress, deadline.part(1 / (len(problem.pieces) - i))))
            if done[-1].stats.stop_reason is StopReason.INTERRUPTED:
                break  # the pieces after it have no e-graph: extraction finds no schedule, the input stands
        stats = [x.stats for x in done]
        interrupted = stats[-1].stop_reason is StopReason.INTERRUPTED
        stop = StopReason.INTERRUPTED if interrupted else next(
            (x.stop_reason for x in stats if x.stop_reason.budget_reached), stats[0].stop_reason
        )
        stages = tuple(Stage(piece_name(problem.proc.name(), i), x.enodes, x.schedules, x.seconds, x.stop_reason)
                       for i, x in enumerate(stats))  # fmt: skip
        combined = SaturationStats(
            sum(x.enodes for x in stats), sum(x.eclasses for x in stats), sum(x.seconds for x in stats), stop,
            math.prod(x.schedules for x in stats), sum(x.cyclic_classes for x in stats),
            tuple(h for x in stats for h in x.history), stages,
        )
        return SaturatedPieces(done[0].egraph, done[0].view, combined, tuple(done))

    def naive_cost(self, problem: GemminiProblem) -> float:
        """The input proc runs on the host CPU only: its modeled host cycles."""
        return host_cycles(problem.term)

    def extract(self, problem: GemminiProblem, saturated: Saturated, k: int, deadline: Deadline) -> list[Pick]:
        """The ``k`` fastest plans the e-graph's timed shortlist holds, found within `EXTRACT_SHARE` of
        the time left (a cut kernel's pieces share that in turn)."""
        return self._extract(problem, saturated, k, deadline.part(EXTRACT_SHARE))

    def _extract(self, problem: GemminiProblem, saturated: Saturated, k: int, deadline: Deadline) -> list[Pick]:
        if problem.pieces:  # each piece's best; then the biggest piece's next best with the others' best
            n = len(problem.pieces)
            if len(saturated.pieces) < n:
                return []  # interrupted before every piece had an e-graph: no whole schedule
            # a share each, and one more for timing the joined pieces on one clock
            per = [self._extract(p, x, k, deadline.part(1 / (n + 1 - i)))
                   for i, (p, x) in enumerate(zip(problem.pieces, saturated.pieces))]  # fmt: skip
            vary = max(range(len(per)), key=lambda i: len(per[i]))
            combos = [[picks[0] for picks in per]] + [
                [alt if i == vary else picks[0] for i, picks in enumerate(per)] for alt in per[vary][1:k]
            ]
            joined, pace = [], Pace(deadline)
            for combo in combos:
                if joined and not pace.room():
                    break  # anytime: the combinations timed so far
                with pace.step():
                    joined.append(self._joined(problem, combo))
            return sorted(joined, key=lambda x: x.cost)
        if isinstance(saturated, Staged) and saturated.kept and not deadline.room_for(saturated.kept_seconds):
            # anytime: no time for the wide shortlist. The second phase's e-graph is small, so its
            # cheapest plans (the most double-buffered first) are timed while time is left, at least
            # one; the first phase's fastest plans, timed already, stand beside them
            quick = extract_timed(saturated.view, problem.model, k=k, deadline=deadline, shortlist=BUFFER_SEEDS,
                                  samples=0, buffered=True)  # fmt: skip
            best = {(x.plan, x.choice.hoisted): x for x in sorted([*saturated.kept, *quick], key=lambda x: x.cycles)}
            return [self._pick(problem, x.plan, x.choice.hoisted) for x in list(best.values())[:k]]
        # staged, the e-graph holds the first phase's best plans and their double buffers: a
        # small one, whose every plan the wide shortlist times (the kept plans among them)
        shortlist = WIDE_SHORTLIST if self.staged else SHORTLIST
        picks = extract_timed(saturated.view, problem.model, k=k, deadline=deadline, shortlist=shortlist,
                              buffered=True, choices=held_choices(saturated.view, problem.model) if self.staged else None)  # fmt: skip
        if not picks:
            raise NotGemmini(f"{problem.proc.name()}: no plan fits the scratchpad and accumulator")
        return [self._pick(problem, x.plan, x.choice.hoisted) for x in picks]

    def replay(self, problem: GemminiProblem, pick: Pick) -> Replayed:
        if not problem.pieces:
            return replay_plan(problem.proc, problem.pattern, pick.term, pick.detail["hoisted"], problem.selection,
                               problem.normal)  # fmt: skip
        # the cut, then each piece scheduled on its own and put back (`exo_egraph.script.Piece`)
        done = [(piece.proc, replay_plan(piece.proc, piece.pattern, plan, hoisted, piece.selection))
                for piece, plan, hoisted in zip(problem.pieces, pick.term, pick.detail["hoisted"])]  # fmt: skip
        return replay_pieces(problem.proc, problem.prelude, problem.calls, done, "Gemmini schedule")

    def after_search(self, problem: GemminiProblem) -> float:
        return REPLAY_S_PER_NEST * max(len(problem.pieces), 1) + VALIDATE_S

    def run_sizes(self, problem: GemminiProblem, given: Mapping[str, int] | None) -> Mapping[str, int] | None:
        return given

    def begin_validation(self, problem: GemminiProblem, *, sizes: Mapping[str, int] | None) -> None:
        """Nothing runs ahead: the model's run of the input is short beside the plan's."""
        return None

    def validate(
        self,
        problem: GemminiProblem,
        replayed: Replayed,
        pick: Pick,
        *,
        reference: Callable | None,
        sizes: Mapping[str, int] | None,
        deadline: Deadline,
        ahead: None = None,
    ) -> GemminiVerdict:
        # the model runs the kernel once (no timing loop), so the deadline does not change what runs
        v = validate_gemmini(problem.proc, replayed.proc, reference=reference, sizes=sizes)
        return GemminiVerdict(
            v.ok, v.message, v.cycles, v.utilization, int(pick.cost), v.counters, host_cycles(problem.term)
        )

    def describe(self, pick: Pick) -> dict[str, Any]:
        if isinstance(pick.term, tuple):  # a cut kernel: one plan per piece
            return {"plan": [line for i, plan in enumerate(pick.term)
                             for line in (f"part {i}:", *("  " + x for x in show(plan).splitlines()))]}  # fmt: skip
        return {"plan": show(pick.term).splitlines()}

    # --- measured tuning (`exo_egraph.tuning`): "measuring" runs the Gemmini model, in cycles

    @property
    def options(self) -> dict[str, Any]:
        return {}

    @property
    def build(self) -> str:
        return f"{' '.join(['gcc', *CFLAGS])}, Gemmini C model (DIM {CONSTANTS['DIM']})"

    def for_tuning(self) -> "GemminiTarget":
        """``tune`` samples one e-graph with every rule (double buffering around every plan)."""
        return replace(self, staged=False)

    def calibrated(self, calibration: Any) -> "GemminiTarget":
        """The model's cycles equal the simulator's (tested), so there is nothing to fit."""
        return self

    def priced(self, problem: GemminiProblem, pick: Pick | None) -> float:
        return pick.cost if pick is not None else self.naive_cost(problem)

    def features(self, problem: GemminiProblem, pick: Pick | None) -> dict[str, tuple[float, ...]]:
        return {"simulated": (self.priced(problem, pick),)}

    def program(self, problem: GemminiProblem, pick: Pick | None) -> Any:
        return (pick.term, pick.detail["hoisted"]) if pick is not None else problem.term

    def sample(self, problem: GemminiProblem, saturated: Saturated, rng: random.Random) -> Pick:
        """A plan drawn node by node from the e-graph with a random instruction choice, that fits the
        memories (the model's cheapest when no draw of `PLAN_TRIES` fits)."""
        if problem.pieces:
            return self._joined(problem, [self.sample(p, x, rng) for p, x in zip(problem.pieces, saturated.pieces)])
        model, choices = problem.model, problem.model.choices()
        for _ in range(PLAN_TRIES):
            choice = choices[rng.randrange(len(choices))]
            plan = random_plan(saturated.view, model, choice, rng.randrange)
            if plan is not None and model.footprint(plan).fits(model.consts):
                return self._pick(problem, plan, choice.hoisted)
        return self._extract(problem, saturated, 1, Deadline.after(math.inf))[0]

    def _pick(self, problem: GemminiProblem, plan: Any, hoisted: tuple) -> Pick:
        timing = problem.model.timing(plan, hoisted)
        counters = {**problem.model.counters(plan, hoisted), "busy_ld": timing.busy_ld,
                    "busy_ex": timing.busy_ex, "busy_st": timing.busy_st}  # fmt: skip
        return Pick(timing.cycles, plan, {"hoisted": hoisted, "counters": counters})

    def _joined(self, problem: GemminiProblem, picks: list[Pick]) -> Pick:
        """One pick of a cut kernel from a pick per piece: its pieces run one after the other."""
        parts = [(p.model, x.term, x.detail["hoisted"]) for p, x in zip(problem.pieces, picks)]
        timing = pieces_timing(parts)
        counters: dict[str, int] = {}
        for x in picks:
            for name, value in x.detail["counters"].items():
                counters[name] = counters.get(name, 0) + value
        counters.update(busy_ld=timing.busy_ld, busy_ex=timing.busy_ex, busy_st=timing.busy_st)
        return Pick(timing.cycles, tuple(x.term for x in picks),
                    {"hoisted": tuple(x.detail["hoisted"] for x in picks), "counters": counters})  # fmt: skip

    def measure(
        self, original: Procedure, scheduled: Procedure, *, sizes: Mapping[str, int] | None, seconds: float
    ) -> Measurement:
        """Simulated cycles of ``scheduled`` on the model against the input's host cycles (the input
        runs on the host only); outputs compared bit for bit. One run: the model is deterministic."""
        naive = host_cycles(lower(original))
        if scheduled is original:
            return Measurement(True, True, "cycles", naive, naive, runs=1)
        v = validate_gemmini(original, scheduled, sizes=sizes)
        return Measurement(v.ok, v.ok, "cycles", naive, v.cycles, runs=1, message=v.message)

    def rule_checks(self) -> Mapping[str, Callable[..., Any]]:
        """The plan rules' soundness checks (`exo_egraph.targets.gemmini.checks`) for ``check-rules``."""
        from .checks import plan_rule_checks  # draws on hypothesis: loaded only to check rules

        return plan_rule_checks()


def create() -> GemminiTarget:
    return GemminiTarget()


__all__ = ["GemminiTarget", "GemminiVerdict", "NotGemmini", "create"]
