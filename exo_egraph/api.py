"""The Python API: ``explore(proc, target)`` runs lower → saturate → extract → replay → validate.

The line is the same for every target; the target object supplies each step (`exo_egraph.target`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from exo import Procedure

from .report import html_table, markdown_table, plot_result, to_json
from .saturate import Budget, Iteration, SaturationStats
from .script import Replayed
from .target import Pick, Target, Verdict, create

DEFAULT_TOP_K = 3


@dataclass(frozen=True)
class Candidate:
    """One extracted schedule: its cost, the term the e-graph held, and its replay through Exo."""

    cost: float
    pick: Pick
    replayed: Replayed

    @property
    def proc(self) -> Procedure:
        return self.replayed.proc

    @property
    def script(self) -> str:
        return self.replayed.script


@dataclass(frozen=True)
class Result:
    """What exploring a proc found: the best schedule first, then the other top-k.

    ``to_json()`` is report.json; in Jupyter a `Result` shows as a summary table; ``plot()``
    draws e-graph growth and cost by rank (needs matplotlib)."""

    kernel: str
    target: str
    cost_unit: str
    stats: SaturationStats
    naive_cost: float
    candidates: tuple[Candidate, ...]
    validation: Verdict | None
    details: tuple[dict, ...]  # per candidate: what the target reports of it (say, a tile plan)

    @property
    def best(self) -> Candidate:
        return self.candidates[0]

    @property
    def proc(self) -> Procedure:
        """The scheduled proc (the best schedule replayed on the input)."""
        return self.best.proc

    @property
    def script(self) -> str:
        """The best schedule as a script of Exo calls (``def schedule(p): ...``)."""
        return self.best.script

    @property
    def cost(self) -> float:
        return self.best.cost

    def to_json(self) -> dict[str, Any]:
        return to_json(self)

    def _repr_markdown_(self) -> str:
        return markdown_table(self)

    def _repr_html_(self) -> str:
        return html_table(self)

    def plot(self, ax: Any = None) -> Any:
        return plot_result(self, ax)


def explore(
    proc: Procedure,
    target: str | Target = "cpu",
    *,
    budget: Budget = Budget(),
    top_k: int = DEFAULT_TOP_K,
    validate: bool = True,
    reference: Callable | None = None,
    progress: Callable[[Iteration], None] | None = None,
    **options: Any,
) -> Result:
    """Saturate ``proc``'s e-graph for ``target``, extract the ``top_k`` cheapest schedules, replay them
    through Exo, and (``validate``) run the best one against the original (and ``reference``, a numpy
    function of the inputs, when given). ``options`` go to the target (``rules=`` for ``cpu``)."""
    _check_args(proc, target, budget, top_k)
    tgt = create(target, **options) if isinstance(target, str) else target
    problem = tgt.prepare(proc)
    saturated = tgt.saturate(problem, budget, progress)
    picks = tgt.extract(problem, saturated, top_k)
    candidates = tuple(Candidate(p.cost, p, tgt.replay(problem, p)) for p in picks)
    verdict = tgt.validate(problem, candidates[0].replayed, picks[0], reference) if validate else None
    details = tuple(tgt.describe(p) for p in picks)
    return Result(proc.name(), tgt.name, tgt.cost_unit, saturated.stats, tgt.naive_cost(problem), candidates, verdict, details)


def _check_args(proc: Any, target: Any, budget: Any, top_k: Any) -> None:
    if not isinstance(proc, Procedure):
        raise TypeError(f"explore: proc must be an exo Procedure, not {type(proc).__name__}")
    if not isinstance(target, (str, Target)):
        raise TypeError(f"explore: target must be a target name or a Target, not {type(target).__name__}")
    if not isinstance(budget, Budget):
        raise TypeError(f"explore: budget must be a Budget, not {type(budget).__name__}")
    if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
        raise TypeError(f"explore: top_k must be a positive int, not {top_k!r}")
