"""The ``gemmini`` target object: hands the Gemmini pieces to the line as one `GemminiTarget`."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from exo import Procedure

from exo_egraph.extract.gemmini_cost import GemminiCost, host_cycles
from exo_egraph.extract.plan_extract import extract_plans
from exo_egraph.lower import lower
from exo_egraph.rewrites.gemmini import gemmini_rules
from exo_egraph.saturate import Budget, Deadline, Iteration, Saturated, saturate
from exo_egraph.script import Replayed
from exo_egraph.target import Pick
from exo_egraph.terms import Proc

from .config import CONSTANTS, PLATFORM
from .model import validate_gemmini
from .pattern import GemmPattern, NotGemmini, find_gemm, initial_plan
from .plans import show, to_egg
from .replay import replay_plan
from .selection import Selection, select_instructions


@dataclass(frozen=True)
class GemminiProblem:
    proc: Procedure
    term: Proc
    pattern: GemmPattern
    selection: Selection
    model: GemminiCost


@dataclass(frozen=True)
class GemminiVerdict:
    """The best schedule on the Gemmini model, against the naive proc on the host CPU."""

    ok: bool  # bit-exact against the naive proc (and the numpy reference, when given)
    message: str
    cycles: int  # simulated
    utilization: float
    model_cycles: int  # what the cost model predicted: equal to ``cycles`` when model and simulator agree
    counters: Mapping[str, int]
    naive_host_cycles: int  # the naive proc, CPU only (one cycle per scalar statement)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "message": self.message,
            "cycles": self.cycles,
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
            ("simulated cycles", f"{self.cycles:,} (model agrees: {self.model_cycles == self.cycles})"),
            ("utilization", f"{self.utilization:.1%}"),
            ("naive (host CPU)", f"{self.naive_host_cycles:,} cycles"),
        ]


@dataclass(frozen=True)
class GemminiTarget:
    """Tile plans over the instructions of ``exo.platforms.gemmini``; cost = the model's cycles."""

    name: str = "gemmini"
    cost_unit: str = "cycles"

    def prepare(self, proc: Procedure) -> GemminiProblem:
        term = lower(proc)
        pattern = find_gemm(term)
        selection = select_instructions(pattern, importlib.import_module(PLATFORM))
        return GemminiProblem(proc, term, pattern, selection, GemminiCost(pattern, selection, dict(CONSTANTS)))

    def saturate(
        self, problem: GemminiProblem, budget: Budget, progress: Callable[[Iteration], None] | None, deadline: Deadline
    ) -> Saturated:
        expr = to_egg(initial_plan(problem.pattern))
        return saturate(expr, gemmini_rules(problem.pattern, problem.selection), budget, progress, deadline)

    def naive_cost(self, problem: GemminiProblem) -> float:
        """The input proc runs on the host CPU only: its modeled host cycles."""
        return host_cycles(problem.term)

    def extract(self, problem: GemminiProblem, saturated: Saturated, k: int, deadline: Deadline) -> list[Pick]:
        picks = extract_plans(saturated.view, problem.model, k=k, deadline=deadline)
        if not picks:
            raise NotGemmini(f"{problem.proc.name()}: no plan fits the scratchpad and accumulator")
        return [
            Pick(x.cycles, x.plan, {"hoisted": x.choice.hoisted, "counters": problem.model.counters(x.plan, x.choice.hoisted)})
            for x in picks
        ]

    def replay(self, problem: GemminiProblem, pick: Pick) -> Replayed:
        return replay_plan(problem.proc, problem.pattern, pick.term, pick.detail["hoisted"], problem.selection)

    def validate(
        self,
        problem: GemminiProblem,
        replayed: Replayed,
        pick: Pick,
        *,
        reference: Callable | None,
        sizes: Mapping[str, int] | None,
        deadline: Deadline,
    ) -> GemminiVerdict:
        # the model runs the kernel once (no timing loop), so the deadline does not change what runs
        v = validate_gemmini(problem.proc, replayed.proc, reference=reference, sizes=sizes)
        return GemminiVerdict(
            v.ok, v.message, v.cycles, v.utilization, int(pick.cost), v.counters, host_cycles(problem.term)
        )

    def describe(self, pick: Pick) -> dict[str, Any]:
        return {"plan": show(pick.term).splitlines()}

    def rule_checks(self) -> Mapping[str, Callable[..., Any]]:
        """The plan rules' soundness checks (`exo_egraph.targets.gemmini.checks`) for ``check-rules``."""
        from .checks import plan_rule_checks  # draws on hypothesis: loaded only to check rules

        return plan_rule_checks()


def create() -> GemminiTarget:
    return GemminiTarget()


__all__ = ["GemminiTarget", "GemminiVerdict", "NotGemmini", "create"]
