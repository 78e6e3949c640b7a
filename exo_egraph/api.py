"""The Python API: ``explore(proc)`` runs lower → saturate → extract → replay → validate."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from exo import Procedure

from extract.cost import CpuCost, buffers_of
from extract.extractors import extract
from rewrites.loops import LoopRuleConfig

from . import terms as t
from .lower import lower
from .replay import Replayed, replay
from .saturate import Budget, SaturationStats, saturate

TARGETS = ("cpu", "gemmini")


@dataclass(frozen=True)
class Candidate:
    cost: float
    term: t.Proc
    replayed: Replayed


@dataclass(frozen=True)
class Result:
    """What exploring a proc found: the best schedule first, then the other top-k."""

    kernel: str
    target: str
    stats: SaturationStats
    naive_cost: float
    candidates: tuple[Candidate, ...]
    validation: object | None = None  # exo_egraph.validate.Validation when validated
    history: tuple[tuple[int, int, float], ...] = field(default=())

    @property
    def best(self) -> Candidate:
        return self.candidates[0]

    @property
    def proc(self) -> Procedure:
        return self.best.replayed.proc

    @property
    def script(self) -> str:
        return self.best.replayed.script

    @property
    def cost(self) -> float:
        return self.best.cost


def explore(
    proc: Procedure,
    target: str = "cpu",
    *,
    budget: Budget = Budget(),
    rules: LoopRuleConfig = LoopRuleConfig(),
    top_k: int = 1,
    validate: bool = True,
    progress: Callable[[int, int, float], None] | None = None,
) -> Result:
    """Saturate ``proc``'s e-graph, extract the ``top_k`` cheapest schedules, replay them through Exo,
    and (``validate``) run the best one against the original."""
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r} (known: {', '.join(TARGETS)})")
    if target == "gemmini":
        return explore_gemmini(proc, budget=budget, top_k=top_k, validate=validate, progress=progress)
    term = lower(proc)
    model = CpuCost(buffers_of(term))
    sat = saturate(term, rules, budget, progress)
    picks = extract(sat.view, model, k=top_k)
    naive = extract(saturate(term, rules, Budget(iterations=0)).view, model, k=1)[0].cost
    candidates = tuple(Candidate(x.cost, x.proc, replay(proc, x.proc)) for x in picks)
    verdict = None
    if validate:
        from .validate import validate_cpu

        # float sums keep their order unless the rules allow reassociation: then bit-exact is required
        verdict = validate_cpu(proc, candidates[0].replayed.proc, require_exact=not rules.reassociate)
    return Result(proc.name(), target, sat.stats, naive, candidates, verdict, sat.history)


# ----------------------------------------------------------------------------- Gemmini


@dataclass(frozen=True)
class GemminiCandidate:
    cost: int  # modeled cycles
    plan: object  # exo_egraph.plans.Plan
    hoisted: tuple  # config instruction calls at the top of the proc
    counters: dict  # every modeled counter (the simulator must count the same)
    replayed: object  # exo_egraph.replay_gemmini.GemminiReplayed


@dataclass(frozen=True)
class GemminiVerdict:
    """The best schedule on the Gemmini model, against the naive proc on the host CPU."""

    ok: bool  # bit-exact against the naive proc (and the numpy reference, when given)
    message: str
    cycles: int  # simulated
    utilization: float
    model_cycles: int  # what the cost model predicted: equal to ``cycles`` when model and simulator agree
    counters: dict
    naive_host_cycles: int  # the naive proc, CPU only (one cycle per scalar statement)


def explore_gemmini(
    proc: Procedure,
    *,
    budget: Budget = Budget(),
    top_k: int = 1,
    validate: bool = True,
    progress: Callable[[int, int, float], None] | None = None,
    reference: Callable | None = None,
) -> Result:
    """`explore` for the Gemmini target: plans saturated, extracted under capacity, replayed
    through Exo (every ``replace`` re-checked), and the best run on the Gemmini model."""
    import exo.platforms.gemmini as platform

    from extract.gemmini_cost import GemminiCost, host_cycles
    from extract.plan_extract import extract_plans
    from rewrites.gemmini import gemmini_facts, gemmini_ruleset, select_instructions

    from .lower_gemmini import NotGemmini, find_gemm, initial_plan
    from .plans import to_egg
    from .replay_gemmini import replay_plan
    from .saturate import saturate_plan
    from .validate.gemmini import timing_constants, validate_gemmini

    term = lower(proc)
    pattern = find_gemm(term)
    selection = select_instructions(pattern, platform)
    model = GemminiCost(pattern, selection, timing_constants())
    sat = saturate_plan(to_egg(initial_plan(pattern)), gemmini_facts(pattern), gemmini_ruleset(pattern, selection), budget, progress)
    picks = extract_plans(sat.view, model, k=top_k)
    if not picks:
        raise NotGemmini(f"{proc.name()}: no plan fits the scratchpad and accumulator")
    candidates = tuple(
        GemminiCandidate(
            x.cycles,
            x.plan,
            x.choice.hoisted,
            model.counters(x.plan, x.choice.hoisted),
            replay_plan(proc, pattern, x.plan, x.choice.hoisted, selection, platform),
        )
        for x in picks
    )
    naive = host_cycles(term)
    verdict = None
    if validate:
        best = candidates[0]
        v = validate_gemmini(proc, best.replayed.proc, reference=reference)
        verdict = GemminiVerdict(v.ok, v.message, v.cycles, v.utilization, best.cost, v.counters, naive)
    return Result(proc.name(), "gemmini", sat.stats, naive, candidates, verdict, sat.history)
