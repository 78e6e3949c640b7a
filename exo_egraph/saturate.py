"""saturate: an egglog term + rules + budget → e-graph + stats, in egg's `Runner` vocabulary.

egglog has no node or time limit of its own, so saturation runs one iteration at a time and
checks the e-graph's size and the clock between iterations; each iteration leaves an `Iteration`
record (size, clock, matches per named rule) and the run a `StopReason`. Rules whose facts must be
closed before each iteration (the loop rules' guard relations) run first every time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Callable

import networkx as nx
from egglog import EGraph

from . import egg
from .rewrites import Rules

# e-nodes that are helpers, not program constructs: never counted, never extracted
HELPER_OPS = frozenset({"concat", "hconcat", "unroll_last"})


class StopReason(StrEnum):
    """Why saturation stopped (a budget stop is a success: the e-graph holds what it reached)."""

    SATURATED = "saturated"
    ITERATIONS = "iterations"
    NODE_LIMIT = "node-limit"
    TIME = "time"

    @property
    def budget_reached(self) -> bool:
        return self is not StopReason.SATURATED


@dataclass(frozen=True)
class Budget:
    """Limits on saturation: whichever is reached first stops it."""

    iterations: int = 40
    node_limit: int = 500_000  # e-nodes plus guard-relation rows
    seconds: float = 30.0


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
class SaturationStats:
    enodes: int
    eclasses: int
    seconds: float
    stop_reason: StopReason
    schedules: int  # exact number of distinct programs the root e-class holds
    cyclic_classes: int  # e-classes on a cycle (their e-nodes are left out of the count)
    history: tuple[Iteration, ...] = field(default=())

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


def saturate(
    expr: Any, rules: Rules, budget: Budget = Budget(), progress: Callable[[Iteration], None] | None = None
) -> Saturated:
    """Saturate the e-graph of ``expr`` (with ``rules.facts``) under ``rules`` within ``budget``."""
    start = time.perf_counter()
    egraph = EGraph()
    with egg.no_shared_lets():
        root = egraph.let("root", expr)
        egraph.register(*rules.facts)
    history: list[Iteration] = []
    stop = StopReason.ITERATIONS
    for index in range(1, budget.iterations + 1):
        if rules.before is not None:
            egraph.run(rules.before)
        report = egraph.run(rules.ruleset)
        it = Iteration(
            index,
            egg.table_rows(egraph),
            time.perf_counter() - start,
            tuple(sorted(egg.matches_per_rule(report, rules.names).items())),
        )
        history.append(it)
        if progress:
            progress(it)
        if not report.updated:
            stop = StopReason.SATURATED
            break
        if it.enodes >= budget.node_limit:
            stop = StopReason.NODE_LIMIT
            break
        if it.seconds >= budget.seconds:
            stop = StopReason.TIME
            break
    if rules.before is not None:
        egraph.run(rules.before)
    view = serialize(egraph)
    count, cyclic = count_terms(view)
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
