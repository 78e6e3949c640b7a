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

        # float sums keep their order unless the rules allow reassociation: then bit-exact is required
        verdict = validate_cpu(proc, candidates[0].replayed.proc, require_exact=not rules.reassociate)
    return Result(proc.name(), target, sat.stats, naive, candidates, verdict, sat.history)
