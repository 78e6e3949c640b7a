"""The ``cpu`` target: portable C. Loop rules over plain loop terms, the CPU cost model, Exo's C run
on this machine with gcc, compared byte for byte with the input proc."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Callable, Mapping

from exo import Procedure

from .. import ir
from .. import terms as t
from ..extract.cost import CpuCost, buffers_of, program_cost
from ..extract.extractors import extract
from ..lower import lower
from ..replay import replay
from ..rewrites.loops import LoopRuleConfig, loop_rules
from ..saturate import Budget, Deadline, Iteration, Saturated, saturate
from ..script import Replayed
from ..target import NotValidated, Pick
from ..validate.cpu import Validation, cannot_validate, validate_cpu

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
    """Schedules for portable C: loop rules (`rewrites.loops`), the CPU model (`extract.cost`)."""

    rules: LoopRuleConfig = LoopRuleConfig()
    name: str = "cpu"
    cost_unit: str = "model cost"

    def prepare(self, proc: Procedure) -> CpuProblem:
        term = lower(proc)
        return CpuProblem(proc, term, CpuCost(buffers_of(term)), symbolic_loops(term))

    def saturate(
        self, problem: CpuProblem, budget: Budget, progress: Callable[[Iteration], None] | None, deadline: Deadline
    ) -> Saturated:
        return saturate_term(problem.term, self.rules, budget, progress, deadline=deadline)

    def price(self, problem: CpuProblem, term: t.Proc) -> float:
        """The one price of a program: the model's cost of its plain-loop form."""
        return program_cost(problem.model, t.materialize(term))

    def naive_cost(self, problem: CpuProblem) -> float:
        return self.price(problem, problem.term)

    def extract(self, problem: CpuProblem, saturated: Saturated, k: int, deadline: Deadline) -> list[Pick]:
        picks = extract(saturated.view, problem.model, k=k, deadline=deadline)
        return [Pick(self.price(problem, x.proc), x.proc) for x in picks]

    def replay(self, problem: CpuProblem, pick: Pick) -> Replayed:
        return replay(problem.proc, pick.term)

    def validate(
        self,
        problem: CpuProblem,
        replayed: Replayed,
        pick: Pick,
        *,
        reference: Callable | None,
        sizes: Mapping[str, int] | None,
        deadline: Deadline,
    ) -> Validation | NotValidated:
        why = cannot_validate(problem.proc)
        if why:
            return NotValidated(why)
        # float sums keep their order unless the rules allow reassociation: then bit-exact is required
        return validate_cpu(
            problem.proc,
            replayed.proc,
            require_exact=not self.rules.reassociate,
            sizes=sizes,
            seconds=max(deadline.left(), 0.0),
        )

    def describe(self, pick: Pick) -> dict:
        return {}

    def rule_checks(self) -> Mapping[str, RuleCheck]:
        """The loop rules' soundness checks (`exo_egraph.checks.RULES`) for ``check-rules``."""
        from ..checks import loop_rule_checks  # draws on hypothesis: loaded only to check rules

        return loop_rule_checks()


def create(rules: LoopRuleConfig | None = None, reassociate: bool = False) -> CpuTarget:
    """The cpu target; ``reassociate`` lets float ``+=`` sums change order (validated within tolerance)."""
    if rules is not None and not isinstance(rules, LoopRuleConfig):
        raise TypeError(f"rules must be a LoopRuleConfig, not {type(rules).__name__}")
    rules = rules or LoopRuleConfig()
    return CpuTarget(replace(rules, reassociate=True) if reassociate else rules)
