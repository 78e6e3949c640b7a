"""saturate: term + rules + budget → e-graph + stats.

egglog has no node or time limit of its own, so saturation runs one iteration at a time and
checks the e-graph's size and the clock between iterations. Each iteration first closes the
guard relations (cheap Datalog over leaf facts) so every transform sees complete guards.
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable

import networkx as nx
from egglog import EGraph
from egglog import egraph_state

from rewrites.guards import guard_rules, leaf_facts
from rewrites.loops import LoopRuleConfig, loop_ruleset

from . import ir
from . import terms as t

# e-nodes that are helpers, not program constructs: never counted, never extracted
HELPER_OPS = frozenset({"concat", "hconcat", "unroll_last"})


@dataclass(frozen=True)
class Budget:
    """Limits on saturation: whichever is reached first stops it."""

    iterations: int = 40
    node_limit: int = 500_000  # e-nodes plus guard-relation rows
    seconds: float = 30.0


@dataclass(frozen=True)
class SaturationStats:
    enodes: int
    eclasses: int
    iterations: int
    seconds: float
    stop_reason: str  # 'saturated', 'iterations', 'node-limit' or 'time'
    schedules: int  # exact number of distinct programs the root e-class holds
    cyclic_classes: int  # e-classes on a cycle (their e-nodes are left out of the count)


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
    history: tuple[tuple[int, int, float], ...] = field(default=())  # (iteration, e-nodes, seconds)


def split_factors(p: t.Proc, min_part: int) -> tuple[int, ...]:
    """Every factor that splits some constant trip count of ``p`` into parts of ≥ ``min_part``."""
    trips = {s.hi.const for s in _loops(p.body) if s.lo == t.Aff() and s.hi.is_const}
    return tuple(sorted({k for n in trips for k in range(min_part, n // min_part + 1) if n % k == 0}))


def _loops(block: t.Block):
    for s in block:
        if isinstance(s, t.Loop):
            yield s
            yield from _loops(s.body)
        elif isinstance(s, t.If):
            yield from _loops(s.body)
            yield from _loops(s.orelse)


def saturate(
    term: t.Proc,
    cfg: LoopRuleConfig = LoopRuleConfig(),
    budget: Budget = Budget(),
    progress: Callable[[int, int, float], None] | None = None,
    extra_rules: tuple = (),
) -> Saturated:
    """Saturate ``term`` under the loop rules (and ``extra_rules``, e.g. a rule under test) within ``budget``."""
    start = time.perf_counter()
    egraph = EGraph()
    with _no_shared_lets():
        root = egraph.let("root", ir.proc(term))
        egraph.register(*leaf_facts(term, (s.var for s in _loops(term.body)), cfg.reassociate))
    rules = loop_ruleset(cfg, split_factors(term, cfg.min_part), extra_rules)
    return _run(egraph, root, rules, budget, progress, start, before=guard_rules.saturate())


def _run(egraph: EGraph, root: Any, rules: Any, budget: Budget, progress, start: float, before: Any = None) -> Saturated:
    """Run ``rules`` one iteration at a time (``before`` first each time) until saturated or over budget."""
    history = []
    stop, iterations = "iterations", 0
    for iterations in range(1, budget.iterations + 1):
        if before is not None:
            egraph.run(before)
        report = egraph.run(rules)
        nodes = _enode_count(egraph)
        elapsed = time.perf_counter() - start
        history.append((iterations, nodes, elapsed))
        if progress:
            progress(iterations, nodes, elapsed)
        if not report.updated:
            stop = "saturated"
            break
        if nodes >= budget.node_limit:
            stop = "node-limit"
            break
        if elapsed >= budget.seconds:
            stop = "time"
            break
    if before is not None:
        egraph.run(before)
    view = serialize(egraph, root)
    count, cyclic = count_terms(view)
    stats = SaturationStats(
        enodes=sum(len(v) for v in view.classes.values()),
        eclasses=len(view.classes),
        iterations=iterations,
        seconds=time.perf_counter() - start,
        stop_reason=stop,
        schedules=count,
        cyclic_classes=cyclic,
    )
    return Saturated(egraph, view, stats, tuple(history))


def saturate_plan(
    expr: Any, facts: list, rules: Any, budget: Budget = Budget(), progress: Callable[[int, int, float], None] | None = None
) -> Saturated:
    """Saturate a Gemmini tile plan (`exo_egraph.plans`) under ``rules`` (`rewrites.gemmini`)."""
    start = time.perf_counter()
    egraph = EGraph()
    with _no_shared_lets():
        root = egraph.let("root", expr)
        egraph.register(*facts)
    return _run(egraph, root, rules, budget, progress, start)


@contextmanager
def _no_shared_lets():
    """Insert terms as plain trees, without egglog-python's shared global ``let`` bindings.

    egglog 13.2 can resolve a global binding to the value of another one when one action refers
    to several of them: inserting a lowered kernel then occasionally put ``i + 1`` where the
    program has ``0`` (found by the soundness properties; reproduced on the plain egglog text).
    Without shared bindings each command refers to no global, which sidesteps it; the inserted
    terms are small, so the lost sharing costs nothing that matters.
    """
    shared = egraph_state._exprs_multiple_parents
    egraph_state._exprs_multiple_parents = lambda typed_expr: []
    try:
        yield
    finally:
        egraph_state._exprs_multiple_parents = shared


def _enode_count(egraph: EGraph) -> int:
    return sum(n for _, n in egraph.all_function_sizes())


def serialize(egraph: EGraph, root_expr: Any) -> EGraphView:
    """The e-graph as plain dicts, restricted to the classes reachable from the root."""
    data = json.loads(egraph._serialize(max_functions=None, max_calls_per_function=None).to_json())
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
