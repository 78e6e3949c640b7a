"""extract: e-graph → the k cheapest programs it holds under a target's cost model.

A bottom-up dynamic program over e-classes keeps the k cheapest (cost, term) of each class.
A band's cost depends on the whole order of its loops, not on each header cell alone, so
header classes are solved by their own dynamic program, innermost loop first, whose state is
(the set of dims inside, the innermost loop): what the cost model's traffic and compute terms
depend on. Per state it keeps the cheapest tail and the one with least loop overhead (the
overhead is what matters once the tail's footprint fits in cache), so the best term is exact
under the model; the runner-ups are the best of other states.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, replace
from itertools import product
from typing import Any

from exo_egraph import ir
from exo_egraph import terms as t
from exo_egraph.saturate import Deadline, EGraphView, TimeUp

from .cost import CostModel, band_cost

Cand = tuple[float, Any]  # (cost, term)
_BODY_STMTS = t.CONTROL_TYPES


@dataclass(frozen=True)
class Extracted:
    cost: float
    proc: t.Proc


def extract(view: EGraphView, model: CostModel, k: int = 1, deadline: Deadline | None = None) -> list[Extracted]:
    """The ``k`` cheapest distinct programs of the root e-class, cheapest first; raises `TimeUp` when
    the ``deadline`` passes first (the programme has no best until it reaches the root)."""
    ex = _Extractor(view, model, k, deadline)
    return [Extracted(c, replace(p, body=t.share_cut_bodies(p.body))) for c, p in ex.cls(view.root)]


def _best(cands: list[Cand], k: int) -> list[Cand]:
    seen, out = set(), []
    for c, term in sorted(cands, key=lambda x: x[0]):
        if term not in seen:
            seen.add(term)
            out.append((c, term))
            if len(out) == k:
                break
    return out


class _Extractor:
    def __init__(self, view: EGraphView, model: CostModel, k: int, deadline: Deadline | None = None) -> None:
        self.view, self.model, self.k, self.deadline = view, model, k, deadline
        self.steps = 0
        self.memo: dict[str, list[Cand]] = {}
        self.headers: dict[tuple[str, Any], dict] = {}
        self.lines_memo: dict[int, dict[int, tuple[float, float]]] = {}  # band id → dims mask → (cache lines, room)
        self.band_ids: dict[Any, int] = {}  # leaf-only band bodies (None: a body with loops)
        self.band_list: list[Any] = []
        self.dim_ids: dict[t.Dim, int] = {}  # dims as bit positions, so DP states hash fast
        self.dim_list: list[t.Dim] = []
        self.masks: dict[int, frozenset[t.Dim]] = {}
        self.var_masks: dict[str, int] = {}  # loop variable → bits of the dims over it
        self.part_memo: dict[tuple[int, int, int], float] = {}
        self.band_vars: dict[int, tuple[frozenset[str], ...]] = {}

    def cls(self, c: str) -> list[Cand]:
        if c in self.memo:
            return self.memo[c]
        self._check()
        self.memo[c] = []  # a class reached again while being solved is on a cycle: no terms
        cands: list[Cand] = []
        for nid in self.view.classes[c]:
            op, kids = self.view.nodes[nid]
            cands.extend(self.node(op, kids))
        self.memo[c] = _best(cands, self.k)
        return self.memo[c]

    def _check(self, steps: int = 1) -> None:
        """Every 64 steps: stop (`TimeUp`) past the deadline or the memory cap."""
        before, self.steps = self.steps, self.steps + steps
        if self.deadline is not None and self.steps // 64 != before // 64:
            self.deadline.check("extraction")

    def value(self, c: str) -> Any:
        """The term of a class that is not a statement (expressions, indices, names): cost-free."""
        cands = self.cls(c)
        return cands[0][1] if cands else None

    def node(self, op: str, kids: tuple[str, ...]) -> list[Cand]:
        if op == "Stmt.nest":
            return self.nest(kids[0], kids[1])
        if op == "Stmt.loop":
            var, lo, hi, mode = (self.value(x) for x in kids[:4])
            span = hi + lo.scale(-1)
            trips = span.const if span.is_const else None
            return [
                (self.loop(var, trips, cost, body), t.Loop(var, lo, hi, mode, body)) for cost, body in self.cls(kids[4])
            ]
        if op == "Stmt.cut":
            var, start, stop = (self.value(x) for x in kids[:3])
            return [(self.loop(var, stop - start, cost, body), t.Cut(var, start, stop, body)) for cost, body in self.cls(kids[3])]
        if op in ("Block.cons", "Stmt.if_", "ProcT"):
            return self.combine(op, kids)
        if op.startswith("Stmt."):
            args = [self.value(x) for x in kids]
            if any(a is None for a in args):
                return []
            term = ir.decode(op, args)
            return [(self.model.leaf(term), term)]
        args = [self.value(x) for x in kids]
        if any(a is None for a in args):
            return []
        return [(0.0, ir.decode(op, args))]

    def loop(self, var: str, trips: int | None, body_cost: float, body: t.Block) -> float:
        """A loop outside any nest: over leaves only it costs what the one-dim band would
        (traffic included), so the model gives the same C the same cost however it is encoded."""
        if trips is None:
            return self.model.symbolic_trips() * (body_cost + self.model.loop_overhead())
        if any(isinstance(s, _BODY_STMTS) for s in body) or trips <= 0:
            return trips * (body_cost + self.model.loop_overhead())
        return band_cost(self.model, [t.Dim(var, 1, trips)], body)

    def combine(self, op: str, kids: tuple[str, ...]) -> list[Cand]:
        """k cheapest combinations of the children's candidates (costs add)."""
        options = [self.cls(x) for x in kids]
        if any(not o for o in options):
            return []
        options = [o[: self.k] for o in options]
        combos = heapq.nsmallest(self.k, product(*options), key=lambda cs: sum(c for c, _ in cs))
        return [(sum(c for c, _ in cs), ir.decode(op, [x for _, x in cs])) for cs in combos]

    # --------------------------------------------------------------------------- bands

    def nest(self, hdr: str, body_class: str) -> list[Cand]:
        scored: list[tuple[float, tuple[int, ...], Any]] = []  # terms are built for the k best only
        perm = self.view.nodes[self.view.classes[hdr][0]][0] != "Hdr.fixed"
        for body_cost, body in self.cls(body_class):
            band = _Leaves(body) if not any(isinstance(s, _BODY_STMTS) for s in body) else None
            if band not in self.band_ids:
                self.band_ids[band] = len(self.band_list)
                self.band_list.append(band)
            band_id = self.band_ids[band]
            allocs = sum(self.model.leaf(s) for s in band if isinstance(s, t.Alloc)) if band else 0.0
            for (mask, inner), cands in self.header(hdr, band_id).items():
                dims_set = self._dims(mask)
                iters = 1
                for d in dims_set:
                    iters *= d.extent
                inner_dim = self.dim_list[inner] if inner >= 0 else None
                for c, _, _, dims in cands:
                    if band is not None:
                        cost = c + self.model.compute(dims_set, inner_dim, band) + iters * allocs
                    else:
                        cost = c + iters * body_cost
                    scored.append((cost, dims, body))
        out: list[Cand] = []
        for cost, dims, body in sorted(scored, key=lambda x: x[0]):
            out.append((cost, t.Nest(tuple(self.dim_list[i] for i in _unconsed(dims)), perm, body)))
            if len(_best(out, self.k)) == self.k:
                break
        return _best(out, self.k)

    def _dims(self, mask: int) -> frozenset[t.Dim]:
        """The dims whose bits ``mask`` sets (memoized: the header DP asks for each mask many times)."""
        dims = self.masks.get(mask)
        if dims is None:
            found, rest = [], mask
            while rest:
                low = rest & -rest
                found.append(self.dim_list[low.bit_length() - 1])
                rest ^= low
            dims = self.masks[mask] = frozenset(found)
        return dims

    def _dim_id(self, d: t.Dim) -> int:
        if d not in self.dim_ids:
            self.dim_ids[d] = len(self.dim_list)
            self.var_masks[d.var] = self.var_masks.get(d.var, 0) | 1 << len(self.dim_list)
            self.dim_list.append(d)
        return self.dim_ids[d]

    def _lines(self, mask: int, band_id: int) -> tuple[float, float]:
        """(cache lines, cache room) of the band's footprints over the dims in ``mask``."""
        memo = self.lines_memo.setdefault(band_id, {})
        total = memo.get(mask)
        if total is None:
            band = self.band_list[band_id]
            lines = room = 0.0
            if band is not None:
                # one term per footprint, each memoized on the dims it moves along only
                if band_id not in self.band_vars:
                    self.band_vars[band_id] = self.model.footprint_vars(band)
                for index, names in enumerate(self.band_vars[band_id]):
                    sub = 0
                    for name in names:
                        sub |= self.var_masks.get(name, 0)
                    sub &= mask
                    part_key = (band_id, index, sub)
                    part = self.part_memo.get(part_key)
                    if part is None:
                        dims = self._dims(sub)
                        part = self.part_memo[part_key] = (
                            self.model.footprint_lines(index, dims, band), self.model.footprint_room(index, dims, band))
                    lines += part[0]
                    room += part[1]
            total = memo[mask] = (lines, room)
        return total

    def header(self, h: str, band_id: int) -> dict:
        """(dims-inside bitmask, innermost loop id) → candidates (c, overhead, traffic, dim ids as a cons list, outermost first) of class h."""
        key = (h, band_id)
        if key in self.headers:
            return self.headers[key]
        self._check()
        self.headers[key] = {}
        miss, loop = self.model.traffic_weight(), self.model.loop_overhead()
        fits = self.model.fits
        band_lines = self.lines_memo.setdefault(band_id, {})
        # per state: [the cheapest candidate, the one with least loop overhead] (maybe the same)
        kept: dict[tuple[int, int], list] = {}
        for nid in self.view.classes[h]:
            op, kids = self.view.nodes[nid]
            if op == "Hdr.nil":
                traffic = self._lines(0, band_id)[0]
                cand = (miss * traffic, 0.0, traffic, ())
                kept[0, -1] = [cand, cand]
                continue
            d = self.value(kids[0])
            did = self._dim_id(d)
            bit, extent, unrolled = 1 << did, d.extent, d.unrolled
            child = self.header(kids[1], band_id)
            self._check(len(child))
            fit_of: dict[int, bool] = {}
            for (inside, inner), cands in child.items():
                now = inside | bit
                state = (now, inner if (inner >= 0 or unrolled) else did)
                lines, room = band_lines.get(now) or self._lines(now, band_id)
                fit = fit_of.get(now)
                if fit is None:
                    fit = fit_of[now] = fits(room)
                pair = kept.get(state)
                # the hot loop of extraction, inlined: keep the cheapest and the least overhead
                for _, overhead, traffic, dims in cands:
                    # an unrolled dim adds no loop of its own, but repeats the loops inside it
                    o2 = extent * overhead + (0.0 if unrolled else extent)
                    t2 = lines if fit else extent * traffic
                    cost = miss * t2 + loop * o2
                    if pair is None:
                        cand = (cost, o2, t2, (did, dims))  # dims as a cons list: shared tails
                        pair = kept[state] = [cand, cand]
                    elif cost < pair[0][0] or o2 < pair[1][1]:
                        cand = (cost, o2, t2, (did, dims))
                        if cost < pair[0][0]:
                            pair[0] = cand
                        if o2 < pair[1][1]:
                            pair[1] = cand
        result = {state: [best] if best is least else [best, least] for state, (best, least) in kept.items()}
        self.headers[key] = result
        return result


class _Leaves(tuple):
    """A band's leaf statements, hashed once: the cost model memoizes per band, and hashing the
    statements afresh for each of a million header states costs more than the pricing."""

    def __hash__(self) -> int:
        h = self.__dict__.get("_hash")
        if h is None:
            h = self.__dict__["_hash"] = tuple.__hash__(self)
        return h


def _unconsed(cells: tuple) -> list[int]:
    """The items of a cons list ``(head, (head2, (... ())))``."""
    out = []
    while cells:
        out.append(cells[0])
        cells = cells[1]
    return out


def sample(view: EGraphView, rng: Any) -> t.Proc:
    """A term of the root e-class chosen by picking a random e-node in every e-class on the way.

    Used to test soundness on arbitrary members of the e-graph, not only the cheapest.
    """
    memo: dict[str, Any] = {}

    def pick(c: str, active: frozenset[str]) -> Any:
        if c in memo:
            return memo[c]
        options = [nid for nid in view.classes[c] if not any(k in active for k in view.nodes[nid][1])]
        op, kids = view.nodes[rng.choice(sorted(options))]
        term = ir.decode(op, [pick(k, active | {c}) for k in kids])
        if op.startswith(("Aff", "E.", "EL", "AffL", "W", "Dim", "ArgT", "ArgL")) or not kids:
            memo[c] = term  # value classes hold one term; statements are drawn afresh each time
        return term

    term = pick(view.root, frozenset())
    return replace(term, body=t.share_cut_bodies(term.body))
