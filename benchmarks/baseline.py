"""The seed notebook's search, as a baseline: depth-first, one Exo scheduling call at a time.

What users had before exo-egraph (../shared/seed/autoscheduler-notebook.txt): from each proc,
apply every scheduling call that the rules allow, deduplicate by the generated C, and recurse
into each new proc. Here it gets the explorer's rule set and limits, so the two search the same
space: ``reorder_loops`` of perfect nests, ``divide_loop`` (perfect, by the same factors, and
with a cut tail), ``unroll_loop`` of innermost loops up to the same limit, ``fission`` after a
loop body's first statement, ``fuse`` of adjacent loops over the same iterator and bounds,
``lift_alloc``, and ``simplify``. Exo checks every call; a call it rejects is skipped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

from exo import Procedure
from exo.API_cursors import AllocCursor, ForCursor, IfCursor, LiteralCursor
from exo.stdlib.scheduling import divide_loop, fission, fuse, lift_alloc, reorder_loops, simplify, unroll_loop

from exo_egraph.rewrites.loops import LoopRuleConfig

Call = Callable[[Procedure], Procedure]


@dataclass
class BaselineRun:
    """Every distinct proc found, in discovery order, with the second it was found."""

    procs: list[Procedure] = field(default_factory=list)
    found_at: list[float] = field(default_factory=list)
    calls: int = 0  # scheduling calls tried
    rejected: int = 0  # calls Exo refused
    completed: bool = False  # the whole space was enumerated within the budget
    seconds: float = 0.0


def _loops(block) -> Iterator[ForCursor]:
    for s in block:
        if isinstance(s, ForCursor):
            yield s
            yield from _loops(s.body())
        elif isinstance(s, IfCursor):
            yield from _loops(s.body())
            if s.orelse():
                yield from _loops(s.orelse())


def _trips(loop: ForCursor) -> int | None:
    lo, hi = loop.lo(), loop.hi()
    if isinstance(lo, LiteralCursor) and isinstance(hi, LiteralCursor) and lo.value() == 0:
        return int(hi.value())
    return None


def candidate_calls(p: Procedure, cfg: LoopRuleConfig, factors: tuple[int, ...]) -> Iterator[Call]:
    """Every scheduling call the rule set allows on ``p`` (Exo may still reject some)."""
    for loop in _loops(p.body()):
        body = list(loop.body())
        trips = _trips(loop)
        name = loop.name()
        if cfg.reorder and len(body) == 1 and isinstance(body[0], ForCursor):
            yield lambda q, c=loop: reorder_loops(q, c)
        if cfg.divide and trips is not None:
            for k in factors:
                if k >= cfg.min_part and trips % k == 0 and trips >= k * cfg.min_part:
                    yield lambda q, c=loop, k=k: divide_loop(q, c, k, [f"{name}o{k}", f"{name}i{k}"], perfect=True)
            for k in cfg.cut_factors:
                if trips % k != 0 and trips >= k * cfg.min_part:
                    yield lambda q, c=loop, k=k: divide_loop(q, c, k, [f"{name}o{k}", f"{name}i{k}"], tail="cut")
        if cfg.unroll and trips is not None and trips <= cfg.unroll_limit and not any(_loops(loop.body())):
            yield lambda q, c=loop: unroll_loop(q, c)
        if cfg.fission and len(body) > 1:
            yield lambda q, c=body[0]: fission(q, c.after())
        if cfg.lift_alloc and body and isinstance(body[0], AllocCursor):
            yield lambda q, c=body[0]: lift_alloc(q, c)
    if cfg.fuse:
        for block in [p.body()] + [loop.body() for loop in _loops(p.body())]:
            stmts = list(block)
            for a, b in zip(stmts, stmts[1:]):
                if isinstance(a, ForCursor) and isinstance(b, ForCursor) and a.name() == b.name():
                    if _trips(a) is not None and _trips(a) == _trips(b):
                        yield lambda q, a=a, b=b: fuse(q, a, b)
    yield simplify


def _c_code(p: Procedure) -> str:
    # the notebook's dedup key: the generated C, without the shared header
    return p.c_code_str().split("#include <stdlib.h>")[-1]


def enumerate_schedules(
    proc: Procedure, cfg: LoopRuleConfig, factors: tuple[int, ...], budget_s: float, max_procs: int = 1_000_000
) -> BaselineRun:
    """Depth-first search from ``proc`` until the space is exhausted or ``budget_s`` runs out."""
    start = time.perf_counter()
    run = BaselineRun()
    seen = {_c_code(proc)}
    run.procs.append(proc)
    run.found_at.append(0.0)
    stack = [proc]
    while stack:
        p = stack.pop()
        for call in candidate_calls(p, cfg, factors):
            if time.perf_counter() - start > budget_s or len(run.procs) >= max_procs:
                run.seconds = time.perf_counter() - start
                return run
            run.calls += 1
            try:
                q = call(p)
            except Exception:  # SchedulingError, or a call Exo cannot apply here
                run.rejected += 1
                continue
            code = _c_code(q)
            if code in seen:
                continue
            seen.add(code)
            run.procs.append(q)
            run.found_at.append(time.perf_counter() - start)
            stack.append(q)
    run.completed = True
    run.seconds = time.perf_counter() - start
    return run
