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

TARGETS = ("cpu",)


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
    term = lower(proc)
    model = CpuCost(buffers_of(term))
    sat = saturate(term, rules, budget, progress)
    picks = extract(sat.view, model, k=top_k)
    naive = extract(saturate(term, rules, Budget(iterations=0)).view, model, k=1)[0].cost
    candidates = tuple(Candidate(x.cost, x.proc, replay(proc, x.proc)) for x in picks)
    verdict = None
    if validate:
        from .validate import validate_cpu

        verdict = validate_cpu(proc, candidates[0].replayed.proc, require_exact=not _reassociates(candidates[0].term))
    return Result(proc.name(), target, sat.stats, naive, candidates, verdict, sat.history)


def _reassociates(term: t.Proc) -> bool:
    """Whether a schedule may change the order of floating-point ``+=`` into one location.

    Integer arithmetic wraps, so any order is bit-exact; float sums are exact only when every
    reduction keeps its original order (conservatively: the term's program differs from the
    original only by loops whose iterations run in the original order).
    """
    floats = {"f16", "f32", "f64", "R"}
    reduces_float = any(isinstance(s, t.Reduce) for s in t.leaves(term.body)) and any(
        a.typ in floats for a in term.args
    )
    return reduces_float and any(_reorders(s) for s in term.body)


def _reorders(s: t.Stmt) -> bool:
    match s:
        case t.Nest(dims, _, body):
            loops = [d for d in dims if not d.unrolled]
            lexicographic = all(
                [d.stride for d in loops if d.var == v] == sorted((d.stride for d in loops if d.var == v), reverse=True)
                for v in {d.var for d in loops}
            )
            original = [d.var for d in loops] == list(dict.fromkeys(d.var for d in loops)) and lexicographic
            return not original or any(_reorders(x) for x in body)
        case t.Loop(_, _, _, _, body):
            return any(_reorders(x) for x in body)
        case t.If(_, body, orelse):
            return any(_reorders(x) for x in body + orelse)
        case _:
            return False
