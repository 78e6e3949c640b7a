"""The Python API: ``explore(proc, target)`` runs lower → saturate → extract → replay → validate.

The line is the same for every target; the target object supplies each step (`exo_egraph.target`).
"""

from __future__ import annotations

import resource
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping

from exo import Procedure

from .report import html_table, markdown_table, plot_result, roundtrip, to_json
from .saturate import Budget, Deadline, Iteration, Pace, SaturationStats, StopReason, TimeUp
from .script import Replayed, ReplayError, script_text
from .target import Ahead, NotValidated, Pick, Target, Verdict, create

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
    stats: SaturationStats | None  # None when nothing was saturated (tune found every trial in its database)
    naive_cost: float
    candidates: tuple[Candidate, ...]
    validation: Verdict | None
    details: tuple[dict, ...]  # per candidate: what the target reports of it (say, a tile plan)
    stop_reason: StopReason = StopReason.SATURATED  # why the run stopped where it did
    replay_failures: tuple[str, ...] = ()  # candidates Exo rejected: soundness bugs, reported
    notes: tuple[str, ...] = ()  # what the target left alone, and why
    tuning: Any = None  # `exo_egraph.tuning.Tuning`: what ``tune`` measured (None from ``explore``)
    phases: Mapping[str, float] = field(default_factory=dict)  # seconds per phase of the run
    peak_rss_mb: float | None = None
    build: str | None = None  # how validation built and timed the code (compiler and flags)

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


@dataclass
class Phases:
    """Seconds spent per phase of the run (a run's own clock; not shared)."""

    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[phase] = self.seconds.get(phase, 0.0) + time.perf_counter() - start


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def explore(
    proc: Procedure,
    target: str | Target = "cpu",
    *,
    budget: Budget = Budget(),
    top_k: int = DEFAULT_TOP_K,
    validate: bool = True,
    reference: Callable | None = None,
    sizes: Mapping[str, int] | None = None,
    progress: Callable[[Iteration], None] | None = None,
    **options: Any,
) -> Result:
    """Saturate ``proc``'s e-graph for ``target``, extract the ``top_k`` cheapest schedules, replay them
    through Exo, and (``validate``) run the best one against the original (and ``reference``, a numpy
    function of the inputs; ``sizes`` for its size arguments). ``options`` go to the target
    (``rules=`` for ``cpu``). ``budget.seconds`` bounds the whole run; a budget stop, a Ctrl-C or a
    late failure still returns the best schedule found so far, with the reason in ``stop_reason``."""
    _check_args(proc, target, budget, top_k)
    tgt = create(target, **options) if isinstance(target, str) else target
    deadline = Deadline.after(budget.seconds, budget.max_memory_mb)
    phases = Phases()
    with phases("lower"):
        problem = tgt.prepare(proc, sizes)
    try:
        ahead = tgt.begin_validation(problem, sizes=sizes) if validate else None
    except KeyboardInterrupt:  # nothing searched yet: the best so far is the input as written
        naive = tgt.naive_cost(problem)
        return Result(proc.name(), tgt.name, tgt.cost_unit, None, naive, (unscheduled(proc, naive),),
                      NotValidated("interrupted"), ({},), StopReason.INTERRUPTED, (), (), phases=dict(phases.seconds),
                      peak_rss_mb=peak_rss_mb(), build=tgt.build)  # fmt: skip
    # the search ends early enough for replay and validation to end by the deadline, and has half
    # the budget at least: the targets' estimates are for large nests (a small one replays in seconds)
    expected = tgt.after_search(problem)
    after_search = min(expected, budget.seconds / 2)
    search = deadline.less(after_search)
    notes = _short_budget(expected, after_search, budget)
    with _closing(ahead):
        with phases("saturate"):
            saturated = tgt.saturate(problem, budget, progress, search)
        with phases("extract"):
            picks, stop = _until_stopped(lambda: tgt.extract(problem, saturated, top_k, search), [], saturated.stats.stop_reason)
        with phases("replay"):
            candidates, unsound, stop = _replay(tgt, problem, picks, deadline, stop)
        naive = tgt.naive_cost(problem)
        candidates = candidates or (unscheduled(proc, naive),)  # nothing replayed: the input as written
        verdict = None
        if validate and stop is not StopReason.INTERRUPTED:
            with phases("validate"):
                verdict, stop = _validate(tgt, problem, candidates[0], reference, sizes, deadline, stop, ahead)
    if deadline.passed() and not stop.budget_reached:
        stop = StopReason.TIME  # a step that cannot stop midway (one Exo replay, one call) ended past the budget
    notes = tuple(getattr(problem, "notes", ())) + notes
    measured = getattr(verdict, "speedup", None)  # a timed verdict's speed-up over the input
    if verdict is not None and verdict.ok and measured is not None and measured < 1.0:
        # never hand back a schedule slower than the input: the input as written goes first
        notes += (f"the model's best schedule ran at {measured:.2f}x the input's speed when validated: the input "
                  "is returned as written (that schedule stays second in top_k)",)  # fmt: skip
        candidates = (unscheduled(proc, naive), *candidates)
    details = tuple(tgt.describe(c.pick) if c.pick.term is not None else {} for c in candidates)
    return Result(proc.name(), tgt.name, tgt.cost_unit, saturated.stats, naive, candidates, verdict, details,
                  stop, unsound, notes, phases=dict(phases.seconds), peak_rss_mb=peak_rss_mb(),
                  build=tgt.build)  # fmt: skip


def _short_budget(expected: float, kept: float, budget: Budget) -> tuple[str, ...]:
    """A note when replay and validation are expected to take more of the budget than the run
    keeps for them (half of it at most): the run may end past the budget."""
    if expected <= kept:
        return ()
    return (f"replay and validation of this kernel are expected to take about {expected:.0f} s here; the budget "
            f"({budget.seconds:g} s) keeps {kept:.0f} s for them, so the run may end past it",)  # fmt: skip


@contextmanager
def _closing(ahead: Ahead | None) -> Iterator[None]:
    """What the target's validation began before the search (the input's own run, in the
    background), closed however the run ends."""
    try:
        yield
    finally:
        if ahead is not None:
            ahead.close()


def unscheduled(proc: Procedure, cost: float) -> Candidate:
    """The input as written, as a candidate: the empty schedule."""
    return Candidate(cost, Pick(cost, None), Replayed(proc, (), script_text(proc.name(), []), None))


def _until_stopped(step: Callable[[], Any], fallback: Any, stop: StopReason) -> tuple[Any, StopReason]:
    """``step()``; on Ctrl-C or the deadline, ``fallback`` and why it stopped."""
    try:
        return step(), stop
    except KeyboardInterrupt:
        return fallback, StopReason.INTERRUPTED
    except TimeUp as e:
        return fallback, e.reason


def _replay(
    tgt: Target, problem: Any, picks: list[Pick], deadline: Deadline, stop: StopReason
) -> tuple[tuple[Candidate, ...], tuple[str, ...], StopReason]:
    """Replay the picks in order; one Exo rejects is a soundness failure, recorded, and the next is
    tried. On Ctrl-C, or when the next would end past the deadline, the ones replayed so far."""
    done, unsound, pace = [], [], Pace(deadline)
    for pick in picks:
        if done and not pace.room():  # the next would end past the deadline, judging by the last
            stop = StopReason.TIME if not stop.budget_reached else stop
            break
        try:
            with pace.step():
                done.append(Candidate(pick.cost, pick, tgt.replay(problem, pick)))
        except ReplayError as e:
            unsound.append(str(e))
        except KeyboardInterrupt:
            stop = StopReason.INTERRUPTED
            break
    return tuple(done), tuple(unsound), stop


def _validate(
    tgt: Target, problem: Any, best: Candidate, reference: Callable | None, sizes: Mapping[str, int] | None,
    deadline: Deadline, stop: StopReason, ahead: Ahead | None,
) -> tuple[Verdict | None, StopReason]:
    """The target's verdict on ``best``; a crash is recorded as the verdict, not raised."""
    if best.pick.term is None:
        return NotValidated("the schedule is the input as written"), stop
    try:
        verdict = tgt.validate(
            problem, best.replayed, best.pick, reference=reference, sizes=sizes, deadline=deadline, ahead=ahead
        )
        return verdict, stop
    except KeyboardInterrupt:
        return NotValidated("interrupted"), StopReason.INTERRUPTED
    except Exception as e:  # a late failure keeps the exploration: the report says what broke
        return NotValidated(f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}", crashed=True), stop


def _check_args(proc: Any, target: Any, budget: Any, top_k: Any) -> None:
    if not isinstance(proc, Procedure):
        raise TypeError(f"explore: proc must be an exo Procedure, not {type(proc).__name__}")
    if not isinstance(target, (str, Target)):
        raise TypeError(f"explore: target must be a target name or a Target, not {type(target).__name__}")
    if not isinstance(budget, Budget):
        raise TypeError(f"explore: budget must be a Budget, not {type(budget).__name__}")
    if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
        raise TypeError(f"explore: top_k must be a positive int, not {top_k!r}")


def exit_code(result: Result) -> int:
    """The CLI's exit code for a run: 0 success (a budget stop included), 3 soundness failure (Exo
    rejected a step, a replayed schedule does not lower back to its term, or the schedule computed
    something else), 1 a late crash (results written), 130 interrupted."""
    if result.stop_reason is StopReason.INTERRUPTED:
        return 130
    v = result.validation
    wrong = v is not None and v.ok is False and not getattr(v, "crashed", False)
    if result.replay_failures or roundtrip(result) is False or wrong:
        return 3
    if v is not None and getattr(v, "crashed", False):
        return 1
    return 0
