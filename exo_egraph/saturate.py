"""saturate: an egglog term + rules + budget → e-graph + stats, in egg's `Runner` vocabulary.

egglog has no node or time limit of its own, so saturation runs one iteration at a time and
checks the e-graph's size and the clock between iterations; each iteration leaves an `Iteration`
record (size, clock, matches per named rule) and the run a `StopReason`. Rules whose facts must be
closed before each iteration (the loop rules' guard relations) run first every time.
"""

from __future__ import annotations

import math
import os
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Callable, Generic, Iterator, Sequence, TypeVar

import networkx as nx
from egglog import EGraph, union

from . import egg
from .rewrites import Rules

# e-nodes that are helpers, not program constructs: never counted, never extracted
HELPER_OPS = frozenset({"concat", "hconcat", "unroll_last"})


class StopReason(StrEnum):
    """Why saturation (or the run) stopped. A budget stop is a success: the e-graph holds what it reached."""

    SATURATED = "saturated"
    ITERATIONS = "iterations"
    NODE_LIMIT = "node-limit"
    TIME = "time"
    MEMORY = "memory"
    INTERRUPTED = "interrupted"

    @property
    def budget_reached(self) -> bool:
        return self is not StopReason.SATURATED


# growth (of the e-graph, of an extraction) stops at this share of the memory cap: a check sees
# memory only after it is taken, and what follows the stop (unwinding, the report, validation's
# buffers) needs the rest; at 1.0 a 600 MB cap on 4096³ ended at 600.3 MB
MEMORY_KEPT = 0.9


def machine_memory_mb() -> int:
    """Half of this machine's memory: the default cap, so growth stops well before it swaps."""
    try:
        with open("/proc/meminfo") as f:
            total_kb = next(int(line.split()[1]) for line in f if line.startswith("MemTotal:"))
    except (OSError, StopIteration, ValueError):
        return 4096
    return total_kb // 2048


class BudgetError(ValueError):
    """A `Budget` limit that is not a positive number: ``limit`` names the field, ``reason`` says
    what is wrong with its value (a caller names the limit its own way: the CLI by its flag)."""

    def __init__(self, limit: str, reason: str) -> None:
        super().__init__(f"budget {limit} {reason}")
        self.limit, self.reason = limit, reason


@dataclass(frozen=True)
class Budget:
    """Limits on a run: whichever is reached first stops saturation early. ``seconds`` bounds the whole
    run (saturation, extraction, replay, validation), ``max_memory_mb`` its resident memory."""

    iterations: int = 40
    node_limit: int = 500_000  # e-nodes plus guard-relation rows
    seconds: float = 30.0
    max_memory_mb: int = field(default_factory=machine_memory_mb)

    def __post_init__(self) -> None:
        for name in ("iterations", "node_limit", "seconds", "max_memory_mb"):
            value = getattr(self, name)
            least = 0 if name == "iterations" else 1e-9  # no iterations: the e-graph of the term alone
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < least:
                raise BudgetError(name, f"must be a positive number, not {value!r}")


class TimeUp(Exception):
    """The run's deadline (or memory cap) was reached in a step that has no partial answer to give."""

    def __init__(self, step: str, reason: "StopReason | None" = None) -> None:
        super().__init__(step)
        self.reason = reason or StopReason.TIME


@dataclass(frozen=True)
class Deadline:
    """The moment a run must be done by (``time.monotonic`` clock), and the memory it may hold."""

    at: float
    max_memory_mb: float = math.inf

    @staticmethod
    def after(seconds: float, max_memory_mb: float = math.inf) -> "Deadline":
        return Deadline(time.monotonic() + seconds, max_memory_mb)

    def left(self) -> float:
        return self.at - time.monotonic()

    def passed(self) -> bool:
        return self.left() <= 0

    def room_for(self, seconds: float) -> bool:
        """Would a step of ``seconds`` (as long as the last one took) end before the deadline?"""
        return self.left() > seconds

    def less(self, seconds: float) -> "Deadline":
        """This deadline moved ``seconds`` earlier: the search's, keeping what follows it."""
        return Deadline(self.at - seconds, self.max_memory_mb)

    def part(self, fraction: float) -> "Deadline":
        """The deadline ``fraction`` of the time left from now: a step's share, leaving the rest to
        the steps after it."""
        return Deadline(time.monotonic() + max(self.left(), 0.0) * fraction, self.max_memory_mb)

    def check(self, step: str) -> None:
        """Raise `TimeUp` when the deadline has passed or the process holds more than its share
        (`MEMORY_KEPT`) of its memory cap."""
        if self.passed():
            raise TimeUp(step, StopReason.TIME)
        if resident_mb() > MEMORY_KEPT * self.max_memory_mb:
            raise TimeUp(step, StopReason.MEMORY)


@dataclass
class Pace:
    """The steps of an anytime loop against a deadline (None: no deadline): the next is begun only
    when one as long as the last would still end in time."""

    deadline: Deadline | None
    last: float = 0.0

    def room(self) -> bool:
        return self.deadline is None or self.deadline.room_for(self.last)

    @contextmanager
    def step(self) -> Iterator[None]:
        began = time.perf_counter()
        yield
        self.last = time.perf_counter() - began  # a step that raised is not a measure


# What extraction costs per e-graph row after saturation: serializing, counting and extracting
# run in Python over every row (about 5e-5 s per row on the f32 and i8 128³ matmuls on this project's
# earlier 2-core machines; 1.9e-4 on 4096³'s 37,799 rows on the slower Zen 1 one with the other
# core busy). Saturation stops early enough to leave that much of the deadline and of the memory
# cap, and a fixed margin for a loaded machine. (Replay and validation are kept out of the deadline
# it is given: `Target.after_search`.)
POST_SECONDS_PER_ROW = 2e-4
POST_SECONDS_FIXED = 2.0
POST_BYTES_PER_ROW = 4_000


def resident_mb() -> float:
    """This process's resident memory now (not the peak)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return 0.0


@dataclass(frozen=True)
class Iteration:
    """One saturation iteration: e-graph rows after it, seconds since the start, matches per rule."""

    index: int
    enodes: int
    seconds: float
    matches: tuple[tuple[str, int], ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"iteration": self.index, "enodes": self.enodes, "seconds": round(self.seconds, 3),
                "matches": dict(self.matches)}


@dataclass(frozen=True)
class Stage:
    """One phase of a staged saturation: its own e-graph's size and count, and what it passed on."""

    name: str
    enodes: int
    schedules: int  # exact count of the programs this phase's e-graph held
    seconds: float  # saturating, counting and (for a pruning phase) extracting what it keeps
    stop_reason: StopReason
    kept: int | None = None  # schedules passed to the next phase (None: the last phase)
    bound: float | None = None  # every schedule not passed on costs at least this (None: not known)

    def to_json(self) -> dict[str, Any]:
        out = {"name": self.name, "enodes": self.enodes, "schedules": self.schedules,
               "seconds": round(self.seconds, 3), "stop_reason": self.stop_reason.value}  # fmt: skip
        return out | ({"kept": self.kept, "pruned_at_cost": self.bound} if self.kept is not None else {})


@dataclass(frozen=True)
class SaturationStats:
    enodes: int
    eclasses: int
    seconds: float
    stop_reason: StopReason
    schedules: int  # exact number of distinct programs the root e-class holds
    cyclic_classes: int  # e-classes on a cycle (their e-nodes are left out of the count)
    history: tuple[Iteration, ...] = field(default=())
    stages: tuple[Stage, ...] = ()  # a staged saturation's phases, in order (the last is this e-graph)

    @property
    def iterations(self) -> int:
        return len(self.history)


@dataclass(frozen=True)
class EGraphView:
    """The serialized e-graph, restricted to program constructs."""

    nodes: dict[str, tuple[str, tuple[str, ...]]]  # node id → (op, child e-class ids)
    classes: dict[str, list[str]]  # e-class id → node ids
    root: str


@dataclass(frozen=True)
class Saturated:
    egraph: EGraph
    view: EGraphView
    stats: SaturationStats


Kept = TypeVar("Kept")


@dataclass(frozen=True)
class Staged(Saturated, Generic[Kept]):
    """The e-graph of a staged search's last phase, and the first phase's best picks, priced
    already: what extraction hands back when the deadline leaves no time to extract the last
    phase's e-graph (anytime extraction)."""

    kept: tuple[Kept, ...] = ()
    kept_seconds: float = 0.0  # what extracting them took: extracting the last phase takes about as long


def saturate(
    expr: Any,
    rules: Rules,
    budget: Budget = Budget(),
    progress: Callable[[Iteration], None] | None = None,
    deadline: Deadline | None = None,
    seeds: Sequence[Any] = (),
) -> Saturated:
    """Saturate the e-graph of ``expr`` (with ``rules.facts``) under ``rules`` within ``budget``.
    ``seeds`` are terms already known equal to ``expr`` (a previous phase's schedules of it): they
    join its e-class before the first iteration.

    An egglog iteration cannot be stopped once started, so each next iteration is predicted from
    the last (it grows the e-graph, and takes time, by about the last growth factor) and not
    started when it would cross the node limit, the memory cap, or leave too little of the
    ``deadline`` (default: ``budget.seconds`` from now) for what follows saturation. Ctrl-C stops
    saturation with `StopReason.INTERRUPTED`, keeping the e-graph it reached.
    """
    start = time.perf_counter()
    deadline = deadline or Deadline.after(budget.seconds)
    egraph = EGraph()
    with egg.no_shared_lets():
        root = egraph.let("root", expr)
        if seeds:
            egraph.register(*(union(root).with_(seed) for seed in seeds))
        if rules.facts:
            egraph.register(*rules.facts)
    history: list[Iteration] = []
    stop: StopReason | None = StopReason.ITERATIONS
    rows, took = egg.table_rows(egraph), 0.0
    try:
        for index in range(1, budget.iterations + 1):
            stop = _predicted_stop(history, rows, took, budget, deadline)
            if stop is not None:
                break
            began = time.perf_counter()
            if rules.before is not None:
                egraph.run(rules.before)
            report = egraph.run(rules.ruleset)
            took, rows = time.perf_counter() - began, egg.table_rows(egraph)
            it = Iteration(index, rows, time.perf_counter() - start, tuple(sorted(egg.matches_per_rule(report, rules.names).items())))
            history.append(it)
            if progress:
                progress(it)
            if not report.updated:
                stop = StopReason.SATURATED
                break
        else:
            stop = StopReason.ITERATIONS
        if rules.before is not None:
            egraph.run(rules.before)
    except KeyboardInterrupt:
        stop = StopReason.INTERRUPTED
    with _interrupts_noted() as noted:  # a Ctrl-C now would lose the e-graph: note it, finish, stop after
        view = serialize(egraph)
        count, cyclic = count_terms(view)
    if noted:
        stop = StopReason.INTERRUPTED
    stats = SaturationStats(
        enodes=sum(len(v) for v in view.classes.values()),
        eclasses=len(view.classes),
        seconds=time.perf_counter() - start,
        stop_reason=stop,
        schedules=count,
        cyclic_classes=cyclic,
        history=tuple(history),
    )
    return Saturated(egraph, view, stats)


@contextmanager
def _interrupts_noted() -> Iterator[list]:
    """While inside, Ctrl-C (or SIGTERM) is noted in the yielded list instead of raised (main thread only)."""
    noted: list = []
    if threading.current_thread() is not threading.main_thread():
        yield noted
        return
    previous = {sig: signal.signal(sig, lambda *_: noted.append(True)) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield noted
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _predicted_stop(
    history: list[Iteration], rows: int, took: float, budget: Budget, deadline: Deadline
) -> StopReason | None:
    """Why the next iteration must not start, or None: it would cross a limit, judging by the last."""
    growth = rows / history[-2].enodes if len(history) >= 2 and history[-2].enodes else 1.0
    next_rows = rows * growth
    if rows >= budget.node_limit or next_rows > budget.node_limit:
        return StopReason.NODE_LIMIT
    after = POST_SECONDS_FIXED + POST_SECONDS_PER_ROW * next_rows
    if history and took * growth + after > deadline.left():
        return StopReason.TIME
    if resident_mb() + POST_BYTES_PER_ROW * next_rows / 2**20 > MEMORY_KEPT * budget.max_memory_mb:
        return StopReason.MEMORY
    return None


def serialize(egraph: EGraph) -> EGraphView:
    """The e-graph as plain dicts, restricted to the classes reachable from the root."""
    data = egg.serialized(egraph)
    root_class = next(c for c, d in data["class_data"].items() if d.get("let") == "$root")
    raw = data["nodes"]
    nodes = {
        nid: (n["op"], tuple(raw[ch]["eclass"] for ch in n["children"]))
        for nid, n in raw.items()
        if n["op"] not in HELPER_OPS
    }
    by_class: dict[str, list[str]] = {}
    for nid in nodes:
        by_class.setdefault(raw[nid]["eclass"], []).append(nid)
    # a helper not yet rewritten away when the budget stopped saturation (say, `concat` of a
    # fuse made in the last iteration) leaves a class without program nodes: drop every node
    # that needs such a class, until none does
    changed = True
    while changed:
        changed = False
        for c in list(by_class):
            kept = [nid for nid in by_class[c] if all(k in by_class for k in nodes[nid][1])]
            if len(kept) != len(by_class[c]):
                changed = True
                if kept:
                    by_class[c] = kept
                else:
                    del by_class[c]
    nodes = {nid: nodes[nid] for ids in by_class.values() for nid in ids}
    reach, todo = set(), [root_class]
    while todo:
        c = todo.pop()
        if c in reach:
            continue
        reach.add(c)
        for nid in by_class.get(c, []):
            todo.extend(nodes[nid][1])
    classes = {c: by_class[c] for c in reach}
    return EGraphView({nid: nodes[nid] for ids in classes.values() for nid in ids}, classes, root_class)
def count_terms(view: EGraphView) -> tuple[int, int]:
    """Exact number of finite terms the root e-class holds, by dynamic programming.

    Classes on a cycle would hold infinitely many terms; the e-nodes that close a cycle are
    left out (so the count is that of the acyclic terms) and the cyclic classes are reported.
    """
    graph = nx.DiGraph()
    graph.add_nodes_from(view.classes)
    for c, ids in view.classes.items():
        for nid in ids:
            graph.add_edges_from((c, k) for k in view.nodes[nid][1])
    cyclic = {c for comp in nx.strongly_connected_components(graph) if len(comp) > 1 for c in comp}
    cyclic |= {c for c in graph if graph.has_edge(c, c)}
    counts: dict[str, int] = {}
    condensed = nx.condensation(graph)
    members = condensed.graph["mapping"]
    comp_classes: dict[int, list[str]] = {}
    for c, comp in members.items():
        comp_classes.setdefault(comp, []).append(c)
    for comp in reversed(list(nx.topological_sort(condensed))):
        for c in comp_classes[comp]:
            total = 0
            for nid in view.classes[c]:
                kids = view.nodes[nid][1]
                if any(k in cyclic and members[k] == comp for k in kids):
                    continue  # this e-node closes a cycle
                prod = 1
                for k in kids:
                    prod *= counts.get(k, 0)
                total += prod
            counts[c] = total
    return counts[view.root], len(cyclic)
