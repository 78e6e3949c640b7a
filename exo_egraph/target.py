"""Targets: one object supplies every step of the line for one kind of hardware, and the registry of them.

The line — lower → rewrites → saturate → extract → replay → validate — is the same for every
target; what differs is how a kernel is lowered (plain loop terms for the CPU; a tile plan over
selected instructions for Gemmini), which rules, which cost model, how a pick becomes Exo calls,
and what validation runs on. A `Target` supplies those steps over a `Problem` of its own making,
so `exo_egraph.api.explore` never asks which target it runs.

Targets are registered by name as entry points of the group ``exo_egraph.targets`` (the project's
``pyproject.toml`` registers ``cpu`` and ``gemmini``): a new target is a module and one line
there, or a package of its own that declares the entry point — with no edit here or in the CLI.
An object that implements `Target` can also be handed to ``explore`` directly.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol, runtime_checkable

from exo import Procedure

from .lower import Unsupported
from .saturate import Budget, Deadline, Iteration, Saturated
from .script import Replayed

if TYPE_CHECKING:
    from .checks import RuleCheck
    from .extract.calibrate import Calibration, Features
    from .validate.measurement import Measurement

ENTRY_POINT_GROUP = "exo_egraph.targets"
# What a loop schedule's replay (a few dozen Exo calls) and validation take past the search when
# the input's compared call ran ahead (`Target.begin_validation`): measured 1-2 s each on the
# matmuls of benchmarks/budget.py, validation up to its 2 s grace when that call is not done.
REPLAY_AND_WAIT_S = 2.0


@dataclass(frozen=True)
class Pick:
    """A candidate the extractor chose: its cost under the target's model and what the e-graph held."""

    cost: float
    term: Any  # a program term (`exo_egraph.terms.Proc`) or a target's own plan
    detail: Mapping[str, Any] = field(default_factory=dict)  # target-specific facts worth reporting


@dataclass(frozen=True)
class NotValidated:
    """Validation did not judge the schedule: skipped (with the reason), or it crashed."""

    reason: str
    crashed: bool = False
    ok: bool | None = None  # neither passed nor failed

    @property
    def message(self) -> str:
        return self.reason

    def to_json(self) -> dict[str, Any]:
        return {"ok": None, "error" if self.crashed else "skipped": self.reason}

    def summary(self) -> list[tuple[str, str]]:
        return [("validation", f"{'failed to run' if self.crashed else 'skipped'}: {self.reason}")]


@runtime_checkable
class Verdict(Protocol):
    """What validation found; ``to_json`` is the ``validation`` section of report.json."""

    ok: bool
    message: str

    def to_json(self) -> dict[str, Any]: ...

    def summary(self) -> list[tuple[str, str]]: ...


class Ahead(Protocol):
    """Validation work begun ahead of the schedule (a child process, its files): closed once."""

    def close(self) -> None: ...


@runtime_checkable
class Target(Protocol):
    """The steps of the line for one target. ``problem`` is whatever ``prepare`` returned."""

    name: str
    cost_unit: str  # what costs count, e.g. "model cost" or "cycles"
    build: str  # how validation builds and times code (compiler and flags), for the report

    def prepare(self, proc: Procedure, sizes: Mapping[str, int] | None = None) -> Any:
        """Lower ``proc`` (and select instructions); raises `Unsupported` naming what does not fit.
        ``sizes``: values of size arguments the user runs at (``--sizes``); a model may price loops
        of those sizes at them rather than at its default for a symbolic trip count."""
        ...

    def saturate(
        self, problem: Any, budget: Budget, progress: Callable[[Iteration], None] | None, deadline: Deadline
    ) -> Saturated: ...

    def naive_cost(self, problem: Any) -> float:
        """The input proc's cost, from the same function that prices candidates."""
        ...

    def extract(self, problem: Any, saturated: Saturated, k: int, deadline: Deadline) -> list[Pick]:
        """The ``k`` cheapest candidates; past the ``deadline``, the best found so far (or raise `TimeUp`)."""
        ...

    def replay(self, problem: Any, pick: Pick) -> Replayed: ...

    def after_search(self, problem: Any) -> float:
        """Seconds the run keeps for replay and validation: the search (saturate and extract) is
        given the run's deadline less this. An estimate; a step that cannot stop midway may overrun it."""
        ...

    def run_sizes(self, problem: Any, given: Mapping[str, int] | None) -> Mapping[str, int] | None:
        """The size arguments validation and measurement run the kernel at: ``given`` (``--sizes``),
        completed where the target needs more (x86: where cut tiles and their tails both run)."""
        ...

    def begin_validation(self, problem: Any, *, sizes: Mapping[str, int] | None) -> Ahead | None:
        """Begin what validation can do before there is a schedule — the input's own run, in the
        background while the schedule is searched — or None. ``explore`` closes it at the end."""
        ...

    def validate(
        self,
        problem: Any,
        replayed: Replayed,
        pick: Pick,
        *,
        reference: Callable | None,
        sizes: Mapping[str, int] | None,
        deadline: Deadline,
        ahead: Ahead | None = None,
    ) -> Verdict:
        """Run the schedule against the input (and ``reference``; size arguments from ``sizes``);
        time it within the ``deadline``; ``ahead`` is what `begin_validation` began. Returns
        `NotValidated` when it cannot judge."""
        ...

    def describe(self, pick: Pick) -> dict[str, Any]:
        """Target-specific facts of a candidate for report.json (say, the tile plan)."""
        ...


@runtime_checkable
class ChecksRules(Protocol):
    """Optional for a `Target` (a separate protocol, so a target without it is still a `Target`):
    property checks of its rewrite rules, which ``exo-egraph check-rules`` runs for every target."""

    def rule_checks(self) -> Mapping[str, RuleCheck]:
        """Each rule's check, by rule name: ``check(examples, seed, on_example)`` → `RuleReport`."""
        ...


@runtime_checkable
class Tunes(Protocol):
    """Optional for a `Target`: what ``tune`` needs to measure candidates and learn from them."""

    @property
    def options(self) -> Mapping[str, Any]:
        """The options `create` takes to make this target again, in a worker that measures."""
        ...

    def calibrated(self, calibration: Calibration | None) -> Any:
        """This target with its model fitted to measurements (None: the model as written)."""
        ...

    def for_tuning(self) -> Any:
        """This target as ``tune`` searches with it: an e-graph wide enough to measure samples of,
        where ``explore`` may keep only what its model favours."""
        ...

    def features(self, problem: Any, pick: Pick | None) -> Features:
        """The pick's cost terms under each assumption its model may be calibrated to (None: the input's)."""
        ...

    def program(self, problem: Any, pick: Pick | None) -> Any:
        """The pick's program (None: the input's), comparable: equal programs compile to the same code."""
        ...

    def priced(self, problem: Any, pick: Pick | None) -> float:
        """The model's cost of the pick (None: of the input)."""
        ...

    def sample(self, problem: Any, saturated: Saturated, rng: random.Random) -> Pick:
        """A random member of the e-graph, priced by the model."""
        ...

    def measure(
        self, original: Procedure, scheduled: Procedure, *, sizes: Mapping[str, int] | None, seconds: float
    ) -> Measurement:
        """``scheduled`` run against ``original`` (outputs compared) and timed, within ``seconds``."""
        ...


def names() -> tuple[str, ...]:
    """The registered target names."""
    return tuple(sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)))


def create(name: str, **options: Any) -> Target:
    """The target registered as ``name``, made with ``options`` (a `TypeError` names an unknown option)."""
    found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
    if not found:
        raise ValueError(f"unknown target {name!r} (known: {', '.join(names()) or 'none installed'})")
    factory = found[0].load()
    try:
        return factory(**options)
    except TypeError as e:
        raise TypeError(f"target {name}: {e}") from None
