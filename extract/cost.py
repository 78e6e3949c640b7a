"""Cost models, one per target, behind one interface (`CostModel`).

CPU model (cycles, roughly), for a band — loops ``d_1 … d_n`` (outer to inner) over leaf
statements ``L``:

    cost = MISS · T(d_1…d_n) + LOOP · O(d_1…d_n) + C(S, inner)

- ``T`` (cache-line traffic): the innermost loop levels whose footprint fits in the cache run
  from cache, so ``T(d::rest) = lines(S) if lines(S) ≤ CACHE_LINES else e_d · T(rest)``, where
  ``S`` is the set of dims at and inside ``d`` and ``lines(S)`` sums, over distinct accesses,
  the elements the access touches over ``S`` divided by how many share a cache line
  (the contiguous run along unit-stride dims).
- ``O`` (loop overhead): ``O(d::rest) = e_d · (1 + O(rest))`` for loops, ``e_d · O(rest)`` for unrolled dims.
- ``C`` (compute): iterations × (arithmetic ops + distinct accesses, a store weighing two loads, an
  access that is the same in every unrolled copy counted once per copy group) / VEC when every access
  is invariant or unit-stride in the innermost loop (gcc vectorizes it), else / 1. Unrolled code
  longer than UNROLL_BODY_LIMIT statements pays an i-cache penalty. No access is assumed to stay
  in a register across loop iterations: Exo's C has no ``restrict``, so gcc must reload.

Everything outside bands (top-level statements, loops with symbolic bounds) costs its ops times
its trip count. Allocations of non-scalar DRAM buffers cost ALLOC each time they run (malloc).
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod
from typing import Protocol

from exo_egraph import terms as t
from rewrites.guards import accesses

ELEM_BYTES = {"i8": 1, "ui8": 1, "i16": 2, "ui16": 2, "i32": 4, "f16": 2, "f32": 4, "f64": 8, "R": 4}


@dataclass(frozen=True)
class Buffer:
    elem_bytes: int
    row_strides: tuple[int, ...]  # elements per step of each index dimension


def buffers_of(p: t.Proc, default_size: int = 64) -> dict[str, Buffer]:
    """Element size and strides of every buffer the proc declares (symbolic sizes: ``default_size``)."""
    decls = [(a.name, a.typ, a.shape) for a in p.args if a.shape] + [
        (s.name, s.typ, s.shape) for s in t.leaves(p.body) if isinstance(s, t.Alloc)
    ]
    out = {}
    for name, typ, shape in decls:
        dims = [a.const if a.is_const else default_size for a in shape]
        strides = tuple(prod(dims[i + 1 :]) for i in range(len(dims)))
        out[name] = Buffer(ELEM_BYTES.get(typ, 4), strides)
    return out


class CostModel(Protocol):
    """What the extractor needs from a target."""

    name: str

    def leaf(self, s: t.Stmt) -> float: ...
    def loop_overhead(self) -> float: ...
    def traffic_weight(self) -> float: ...
    def lines(self, dims: frozenset[t.Dim], leaves: tuple[t.Stmt, ...]) -> float: ...
    def fits(self, lines: float) -> bool: ...
    def compute(self, dims: frozenset[t.Dim], inner: t.Dim | None, leaves: tuple[t.Stmt, ...]) -> float: ...
    def symbolic_trips(self) -> int: ...


def _ops(e: t.Expr) -> int:
    match e:
        case t.BinOp(_, lhs, rhs):
            return 1 + _ops(lhs) + _ops(rhs)
        case t.USub(arg):
            return 1 + _ops(arg)
        case t.BuiltIn(_, args):
            return 4 + sum(_ops(a) for a in args)
        case _:
            return 0


def arith_ops(s: t.Stmt) -> int:
    match s:
        case t.Assign(_, _, rhs) | t.WriteConfig(_, _, rhs):
            return _ops(rhs)
        case t.Reduce(_, _, rhs):
            return 1 + _ops(rhs)
        case t.Call(_, args):
            return 16 + len(args)
        case _:
            return 0


@dataclass(frozen=True)
class CpuCost:
    """The CPU model above. Constants: a 32 KiB L1 of 64-byte lines, 16-byte SIMD (SSE at -O2)."""

    buffers: dict[str, Buffer]
    name: str = "cpu"
    line_bytes: int = 64
    cache_lines: int = 512
    miss: float = 8.0
    loop: float = 1.0
    simd_bytes: int = 16
    alloc: float = 60.0
    unroll_body_limit: int = 64
    symbolic: int = 64

    def loop_overhead(self) -> float:
        return self.loop

    def traffic_weight(self) -> float:
        return self.miss

    def symbolic_trips(self) -> int:
        return self.symbolic

    def leaf(self, s: t.Stmt) -> float:
        if isinstance(s, t.Alloc):
            return self.alloc if s.shape and s.mem in ("DRAM", "") else 0.0
        return float(arith_ops(s) + len(accesses(s)))

    def _distinct(self, leaves: tuple[t.Stmt, ...]) -> set[tuple[str, tuple[t.Aff, ...]]]:
        return {(b, idx) for s in leaves for b, idx, _ in accesses(s) if idx is not None and b in self.buffers}

    def _stride(self, buf: str, idx: tuple[t.Aff, ...], d: t.Dim) -> int:
        rows = self.buffers[buf].row_strides
        return sum(a.coef(d.var) * d.stride * r for a, r in zip(idx, rows))

    def lines(self, dims: frozenset[t.Dim], leaves: tuple[t.Stmt, ...]) -> float:
        total = 0.0
        for buf, idx, spread in self._footprints(leaves):
            moving = [(abs(self._stride(buf, idx, d)), d.extent) for d in dims if self._stride(buf, idx, d)]
            moving = sorted(moving + spread)
            elems = prod(e for _, e in moving)
            run = 1  # contiguous elements: dims that tile memory densely from stride 1 up
            for stride, extent in moving:
                if stride != run:
                    break
                run *= extent
            per_line = max(1, self.line_bytes // self.buffers[buf].elem_bytes)
            total += elems / min(per_line, run) if run > 1 else elems
        return total

    def _footprints(self, leaves: tuple[t.Stmt, ...]) -> list[tuple[str, tuple[t.Aff, ...], list[tuple[int, int]]]]:
        """Distinct accesses; those differing only by a regular grid of constant offsets merged.

        ``A[i, 4*k+0] … A[i, 4*k+3]`` written out (an unrolled loop in the C) touch what
        ``A[i, k]`` touches over the unrolled dim: one access with extra (stride, extent) spans,
        one per index whose offsets form an arithmetic progression (and all combinations occur).
        """
        groups: dict[tuple[str, tuple], list[tuple[t.Aff, ...]]] = {}
        for buf, idx in self._distinct(leaves):
            groups.setdefault((buf, tuple(a.terms for a in idx)), []).append(idx)
        out = []
        for (buf, _), idxs in groups.items():
            consts = {tuple(a.const for a in idx) for idx in idxs}
            rank = len(next(iter(consts)))
            spans, count = [], 1
            for d in range(rank):
                offsets = sorted({c[d] for c in consts})
                step = offsets[1] - offsets[0] if len(offsets) > 1 else 0
                if len(offsets) > 1 and offsets != list(range(offsets[0], offsets[-1] + 1, step)):
                    spans = None
                    break
                if len(offsets) > 1:
                    spans.append((self.buffers[buf].row_strides[d] * step, len(offsets)))
                    count *= len(offsets)
            if len(idxs) > 1 and spans is not None and count == len(consts):
                base = min(idxs, key=lambda idx: tuple(a.const for a in idx))
                out.append((buf, base, spans))
            else:
                out.extend((buf, idx, []) for idx in idxs)
        return out

    def fits(self, lines: float) -> bool:
        return lines <= self.cache_lines

    def compute(self, dims: frozenset[t.Dim], inner: t.Dim | None, leaves: tuple[t.Stmt, ...]) -> float:
        iters = prod(d.extent for d in dims)
        unrolled = [d for d in dims if d.unrolled]
        copies = prod(d.extent for d in unrolled)
        per_iter, vector, widest = 0.0, inner is not None and inner.extent >= 4, 1
        # one address touched by several statements of one iteration is one access (a store
        # weighing about two loads): the same count whether copies come from unrolled dims
        # or from statements written out, as in the C both give
        weights: dict[tuple[str, tuple[t.Aff, ...]], float] = {}
        for s in leaves:
            per_iter += arith_ops(s)
            for buf, idx, kind in accesses(s):
                weight = 2.0 if kind in ("write", "reduce") else 1.0
                if idx is None or buf not in self.buffers:
                    per_iter += weight
                else:
                    weights[buf, idx] = max(weight, weights.get((buf, idx), 0.0))
        for (buf, idx), weight in weights.items():
            widest = max(widest, self.buffers[buf].elem_bytes)
            # the same address in every unrolled copy: gcc loads/stores it once per group
            shared = unrolled and all(self._stride(buf, idx, u) == 0 for u in unrolled)
            per_iter += weight / copies if shared else weight
            stride = self._stride(buf, idx, inner) if inner is not None else 0
            vector = vector and stride in (0, 1)  # gcc vectorizes unit-stride and invariant accesses
        lanes = self.simd_bytes // widest if vector else 1
        penalty = 4.0 if copies * len(leaves) > self.unroll_body_limit else 1.0
        return iters * per_iter / lanes * penalty


@dataclass(frozen=True)
class Inverted:
    """A model with every cost negated: extraction under it finds expensive programs (for testing)."""

    model: CostModel
    name: str = "inverted"

    def leaf(self, s: t.Stmt) -> float:
        return -self.model.leaf(s)

    def loop_overhead(self) -> float:
        return -self.model.loop_overhead()

    def traffic_weight(self) -> float:
        return -self.model.traffic_weight()

    def symbolic_trips(self) -> int:
        return self.model.symbolic_trips()

    def lines(self, dims: frozenset[t.Dim], leaves: tuple[t.Stmt, ...]) -> float:
        return self.model.lines(dims, leaves)

    def fits(self, lines: float) -> bool:
        return self.model.fits(lines)

    def compute(self, dims: frozenset[t.Dim], inner: t.Dim | None, leaves: tuple[t.Stmt, ...]) -> float:
        return -self.model.compute(dims, inner, leaves)
