"""Cost models, one per target, behind one interface (`CostModel`).

CPU model (cycles, roughly), for a band — loops ``d_1 … d_n`` (outer to inner) over leaf
statements ``L``:

    cost = MISS · T(d_1…d_n) + LOOP · O(d_1…d_n) + C(S, inner)

- ``T`` (cache-line traffic): the innermost loop levels whose footprint fits in the cache run
  from cache, so ``T(d::rest) = lines(S) if room(S) ≤ CACHE_LINES else e_d · T(rest)``, where
  ``S`` is the set of dims at and inside ``d`` and ``lines(S)`` sums, over distinct accesses,
  the elements the access touches over ``S`` divided by how many share a cache line
  (the contiguous run along unit-stride dims); ``room(S)`` is ``lines(S)`` unless an access
  crowds more lines into one cache set than it has ways (`CpuCost.footprint_room`).
- ``O`` (loop overhead): ``O(d::rest) = e_d · (1 + O(rest))`` for loops, ``e_d · O(rest)`` for unrolled dims.
- ``C`` (compute): iterations × (arithmetic ops + accesses, a store weighing two loads), where an
  address touched by several statements or unrolled copies of one iteration counts once, / the
  vector lanes where the build vectorizes the innermost loop (`CpuCost.lanes`), else / 1. Unrolled code
  longer than UNROLL_BODY_LIMIT statements pays an i-cache penalty. No access is assumed to stay
  in a register across loop iterations: Exo's C has no ``restrict``, so gcc must reload.

Everything outside bands (top-level statements, loops with symbolic bounds) costs its ops times
its trip count. Allocations of non-scalar DRAM buffers cost ALLOC each time they run (malloc).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from math import gcd, prod
from typing import Protocol

from exo_egraph import terms as t
from exo_egraph.rewrites.guards import accesses

ELEM_BYTES = {"i8": 1, "ui8": 1, "i16": 2, "ui16": 2, "i32": 4, "f16": 2, "f32": 4, "f64": 8, "R": 4}


@dataclass(frozen=True)
class Buffer:
    elem_bytes: int
    row_strides: tuple[int, ...]  # elements per step of each index dimension
    local: bool = False  # allocated by the proc (malloc'd or on the stack): no argument points into it


def buffers_of(p: t.Proc, default_size: int = 64) -> dict[str, Buffer]:
    """Element size and strides of every buffer the proc declares (symbolic sizes: ``default_size``)."""
    decls = [(a.name, a.typ, a.shape, False) for a in p.args if a.shape] + [
        (s.name, s.typ, s.shape, True) for s in t.leaves(p.body) if isinstance(s, t.Alloc)
    ]
    out = {}
    for name, typ, shape, local in decls:
        dims = [a.const if a.is_const else default_size for a in shape]
        strides = tuple(prod(dims[i + 1 :]) for i in range(len(dims)))
        out[name] = Buffer(ELEM_BYTES.get(typ, 4), strides, local)
    return out


class CostModel(Protocol):
    """What the extractor needs from a target."""

    name: str

    def leaf(self, s: t.Stmt) -> float: ...
    def loop_overhead(self) -> float: ...
    def traffic_weight(self) -> float: ...
    def lines(self, dims: frozenset[t.Dim], leaves: tuple[t.Stmt, ...]) -> float: ...
    def footprint_vars(self, leaves: tuple[t.Stmt, ...]) -> tuple[frozenset[str], ...]: ...
    def footprint_lines(self, index: int, dims: frozenset[t.Dim], leaves: tuple[t.Stmt, ...]) -> float: ...
    def footprint_room(self, index: int, dims: frozenset[t.Dim], leaves: tuple[t.Stmt, ...]) -> float: ...
    def room(self, dims: frozenset[t.Dim], leaves: tuple[t.Stmt, ...]) -> float: ...
    def fits(self, room: float) -> bool: ...
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
    """The CPU model above. Constants: a 32 KiB L1 of 64-byte lines; the build's vectorisation is
    ``simd_bytes`` wide, and ``alias_checks`` says whether it vectorises loops that need a runtime
    alias check. The defaults are the cpu target's build, gcc ≥ 12 at ``-O2`` on x86-64: SSE2's
    16 bytes, and no alias checks, so no loop storing into an argument while reading another
    vectorises — most of Exo's C stays scalar (`CpuCost.lanes`; a test holds this to gcc's own
    report of what it vectorised).

    ``miss``, ``loop``, ``compute_scale``, ``alloc`` and ``chain`` weigh the model's terms (traffic,
    loop overhead, compute, allocation, and store-to-load chains: Exo's C has no ``restrict``, so
    a ``+=`` into memory reloads what the last store wrote and waits for it). As written the chain
    weighs 0; a calibration fits all five to measurements (`extract.calibrate`). ``simd_bytes`` 0
    prices every loop as scalar."""

    buffers: dict[str, Buffer]
    name: str = "cpu"
    line_bytes: int = 64
    cache_lines: int = 512
    ways: int = 8  # lines per cache set: 512 lines of 8 ways are 64 sets, as a 32 KiB L1 has
    miss: float = 8.0
    loop: float = 1.0
    simd_bytes: int = 16
    alias_checks: bool = False
    alloc: float = 60.0
    compute_scale: float = 1.0
    chain: float = 0.0  # per reduction into memory that waits on a store (see `_chained`)
    unroll_body_limit: int = 64
    symbolic: int = 64
    # memo of per-access facts (pure functions of the terms): extraction asks the same questions
    # for every header of the e-graph
    _memo: dict = field(default_factory=dict, compare=False, repr=False)

    def loop_overhead(self) -> float:
        return self.loop

    def traffic_weight(self) -> float:
        return self.miss

    def symbolic_trips(self) -> int:
        return self.symbolic

    def leaf(self, s: t.Stmt) -> float:
        if isinstance(s, t.Alloc):
            return self.alloc if s.shape and s.mem in ("DRAM", "") else 0.0
        return self.compute_scale * float(arith_ops(s) + len(accesses(s)))

    def _distinct(self, leaves: tuple[t.Stmt, ...]) -> set[tuple[str, tuple[t.Aff, ...]]]:
        return {(b, idx) for s in leaves for b, idx, _ in accesses(s) if idx is not None and b in self.buffers}

    def _var_strides(self, buf: str, idx: tuple[t.Aff, ...]) -> dict[str, int]:
        """Elements moved per unit step of each variable."""
        out: dict[str, int] = {}
        for a, r in zip(idx, self.buffers[buf].row_strides):
            for var, coef in a.terms:
                out[var] = out.get(var, 0) + coef * r
        return out

    def lines(self, dims: frozenset[t.Dim], leaves: tuple[t.Stmt, ...]) -> float:
        return sum(self.footprint_lines(i, dims, leaves) for i in range(len(self._footprints(leaves))))

    def footprint_vars(self, leaves: tuple[t.Stmt, ...]) -> tuple[frozenset[str], ...]:
        """The loop variables each footprint moves along. `lines` is a sum of one term per
        footprint (`footprint_lines`), each a function of the dims over its variables only: an
        extractor can memoize the terms apart."""
        return tuple(frozenset(v for v, s in strides.items() if s) for _, strides, _ in self._footprints(leaves))

    def footprint_lines(self, index: int, dims: frozenset[t.Dim], leaves: tuple[t.Stmt, ...]) -> float:
        """Cache lines footprint ``index`` of ``leaves`` touches over ``dims``."""
        return self._lines_of(*self._layout(index, dims, leaves))

    def _lines_of(self, elem_bytes: int, moving: list[tuple[int, int]], run: int) -> float:
        elems = prod(e for _, e in moving)
        per_line = max(1, self.line_bytes // elem_bytes)
        return elems / min(per_line, run) if run > 1 else elems

    def footprint_room(self, index: int, dims: frozenset[t.Dim], leaves: tuple[t.Stmt, ...]) -> float:
        """The cache room footprint ``index`` needs over ``dims``: its lines, unless more of them
        fall into one cache set than the set has ways — rows a power of two apart (a column of a
        1024-wide f32 matrix: 4 KiB) share a set, and 64 of them thrash an 8-way cache that holds
        512 lines. Such a footprint needs more room than the cache has (`fits` fails)."""
        layout = self._layout(index, dims, leaves)
        lines, sets = self._lines_of(*layout), self.cache_lines // self.ways
        rows, touched = self._rows_and_sets(*layout, sets)
        return lines if rows <= touched * self.ways else lines * sets / touched

    def room(self, dims: frozenset[t.Dim], leaves: tuple[t.Stmt, ...]) -> float:
        """The cache room ``leaves`` need over ``dims``: `footprint_room` summed."""
        return sum(self.footprint_room(i, dims, leaves) for i in range(len(self._footprints(leaves))))

    def _layout(self, index: int, dims: frozenset[t.Dim], leaves: tuple[t.Stmt, ...]) -> tuple[int, list[tuple[int, int]], int]:
        """(element bytes, (stride, extent) of each dim moving footprint ``index``, smallest stride
        first, and the contiguous elements the densely tiling ones among them make)."""
        elem_bytes, strides, spans = self._footprints(leaves)[index]
        moving = [(abs(d.stride * strides[d.var]), d.extent) for d in dims if strides.get(d.var)]
        moving = sorted(moving + spans)
        run = 1  # contiguous elements: dims that tile memory densely from stride 1 up
        for stride, extent in moving:
            if stride != run:
                break
            run *= extent
        return elem_bytes, moving, run

    def _rows_and_sets(self, elem_bytes: int, moving: list[tuple[int, int]], run: int, sets: int) -> tuple[int, int]:
        """(distinct lines, cache sets they fall into) of a footprint laid out as `_layout` gives,
        its buffer starting on a set boundary (large buffers start on a page). Steps shorter than
        a line widen one dense span; a step of whole lines repeats the span that many lines on; a
        longer step that is not whole lines shifts each row across the sets: spread over all."""
        dense = run * elem_bytes
        line_steps = []
        for stride, extent in moving:
            step = stride * elem_bytes
            if stride < run:
                continue  # inside the contiguous run
            if step < self.line_bytes:
                dense += (extent - 1) * step
            else:
                line_steps.append((step, extent))
        rows = -(-dense // self.line_bytes)
        touched = set(range(min(sets, rows)))
        for step, extent in line_steps:
            rows *= extent
            lines, rest = divmod(step, self.line_bytes)
            if rest:
                return rows, sets
            period = sets // gcd(lines, sets)
            touched = {(r + k * lines) % sets for r in touched for k in range(min(extent, period))}
        return rows, len(touched)

    def _footprints(self, leaves: tuple[t.Stmt, ...]) -> list[tuple[int, dict[str, int], list[tuple[int, int]]]]:
        """(element bytes, per-variable strides, extra spans) of each distinct footprint, memoized."""
        key = ("footprints", leaves)
        if key not in self._memo:
            self._memo[key] = [
                (self.buffers[buf].elem_bytes, self._var_strides(buf, idx), spans)
                for buf, idx, spans in self._merged_footprints(leaves)
            ]
        return self._memo[key]

    def _merged_footprints(self, leaves: tuple[t.Stmt, ...]) -> list[tuple[str, tuple[t.Aff, ...], list[tuple[int, int]]]]:
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

    def fits(self, room: float) -> bool:
        return room <= self.cache_lines

    def _accesses(self, leaves: tuple[t.Stmt, ...]) -> tuple[float, list[tuple[float, int, dict[str, int]]]]:
        """(arithmetic and unmodelled-access weight, [(weight, element bytes, strides)] per distinct
        address): one address touched by several statements of one iteration is one access (a
        store weighing about two loads), as in the C, however the copies came about."""
        key = ("accesses", leaves)
        if key not in self._memo:
            flat, weights = 0.0, {}
            for s in leaves:
                flat += arith_ops(s)
                for buf, idx, kind in accesses(s):
                    weight = 2.0 if kind in ("write", "reduce") else 1.0
                    if idx is None or buf not in self.buffers:
                        flat += weight
                    else:
                        weights[buf, idx] = max(weight, weights.get((buf, idx), 0.0))
            per_access = [(w, self.buffers[b].elem_bytes, self._var_strides(b, idx)) for (b, idx), w in weights.items()]
            self._memo[key] = (flat, per_access)
        return self._memo[key]

    def compute(self, dims: frozenset[t.Dim], inner: t.Dim | None, leaves: tuple[t.Stmt, ...]) -> float:
        iters = prod(d.extent for d in dims)
        unrolled = [d for d in dims if d.unrolled]
        copies = prod(d.extent for d in unrolled)
        per_iter, per_access = self._accesses(leaves)
        for weight, _, strides in per_access:
            # unrolled copies that touch one address touch it once: an access counts once per
            # distinct address among the copies (those of the unrolled dims it moves along)
            distinct = prod(u.extent for u in unrolled if strides.get(u.var))
            per_iter += weight * distinct / copies
        lanes = self.lanes(inner, leaves)
        penalty = 4.0 if copies * len(leaves) > self.unroll_body_limit else 1.0
        chained = self._chained(inner, unrolled, leaves) * iters if self.chain else 0.0
        return self.compute_scale * iters * per_iter / lanes * penalty + self.chain * chained

    def lanes(self, inner: t.Dim | None, leaves: tuple[t.Stmt, ...]) -> int:
        """The vector lanes the build runs the innermost loop ``inner`` over ``leaves`` with (1: scalar).

        gcc vectorises a rolled loop of 4 or more trips whose every access is unit-stride or
        invariant in it, and which stores to no invariant address (a float reduction there would
        need reassociating; an integer one is priced scalar too). Without ``alias_checks`` (gcc ≥ 12's ``-O2`` cost model) it also
        emits no runtime alias check and no scalar epilogue: a loop that writes one argument and
        touches another stays scalar (a buffer the proc allocates aliases nothing), and the
        lanes shrink to a power of two dividing the trip count (62 trips of f32: 2 lanes)."""
        if inner is None or inner.unrolled or inner.extent < 4 or not self.simd_bytes:
            return 1
        touched = self._vector_accesses(leaves)
        if touched is None:
            return 1  # a call: gcc cannot see through it
        widest, written, arguments = 1, False, set()
        for buf, strides, store, elem_bytes, argument in touched:
            step = inner.stride * strides.get(inner.var, 0)
            if step not in (0, 1) or (store and step == 0):
                return 1
            widest = max(widest, elem_bytes)
            if argument:
                arguments.add(buf)
                written = written or store
        if written and len(arguments) > 1 and not self.alias_checks:
            return 1
        lanes = max(1, self.simd_bytes // widest)
        while not self.alias_checks and inner.extent % lanes:
            lanes //= 2
        return lanes

    def _vector_accesses(self, leaves: tuple[t.Stmt, ...]) -> list[tuple[str, dict[str, int], bool, int, bool]] | None:
        """(buffer, per-variable strides, is a store, element bytes, is an argument) of every access
        of ``leaves``; None if one is a call. A scalar argument (passed by pointer) moves with nothing."""
        key = ("vector", leaves)
        if key not in self._memo:
            out: list | None = []
            for s in leaves:
                for buf, idx, kind in accesses(s):
                    if idx is None:
                        out = None
                        break
                    known = self.buffers.get(buf)
                    strides = self._var_strides(buf, idx) if known else {}
                    out.append((buf, strides, kind in ("write", "reduce"), known.elem_bytes if known else 1, not (known and known.local)))
                if out is None:
                    break
            self._memo[key] = out
        return self._memo[key]

    def _chained(self, inner: t.Dim | None, unrolled: list[t.Dim], leaves: tuple[t.Stmt, ...]) -> float:
        """Per iteration, the reductions into memory that wait on a store: one whose address the
        innermost loop does not move waits for the previous iteration's (divided among the
        independent chains that unrolled copies into distinct addresses form); one into an address
        an earlier statement of the same iteration stored (a fused producer) waits for that store."""
        out, stored = 0.0, set()
        for s in leaves:
            for buf, idx, kind in accesses(s):
                if kind == "write" and idx is not None:
                    stored.add((buf, idx))
                if kind != "reduce" or idx is None or buf not in self.buffers or not self.buffers[buf].row_strides:
                    continue  # a scalar accumulator lives in a register
                strides = self._var_strides(buf, idx)
                if (buf, idx) in stored:
                    out += 1.0
                elif inner is None or not strides.get(inner.var):
                    out += 1.0 / prod(u.extent for u in unrolled if strides.get(u.var))
                stored.add((buf, idx))
        return out


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

    def footprint_vars(self, leaves: tuple[t.Stmt, ...]) -> tuple[frozenset[str], ...]:
        return self.model.footprint_vars(leaves)

    def footprint_lines(self, index: int, dims: frozenset[t.Dim], leaves: tuple[t.Stmt, ...]) -> float:
        return self.model.footprint_lines(index, dims, leaves)

    def footprint_room(self, index: int, dims: frozenset[t.Dim], leaves: tuple[t.Stmt, ...]) -> float:
        return self.model.footprint_room(index, dims, leaves)

    def room(self, dims: frozenset[t.Dim], leaves: tuple[t.Stmt, ...]) -> float:
        return self.model.room(dims, leaves)

    def fits(self, room: float) -> bool:
        return self.model.fits(room)

    def compute(self, dims: frozenset[t.Dim], inner: t.Dim | None, leaves: tuple[t.Stmt, ...]) -> float:
        return -self.model.compute(dims, inner, leaves)


def program_cost(model: CostModel, p: t.Proc) -> float:
    """The model's cost of a program written with plain loops (as lowered from Exo).

    Each perfect nest of constant-trip loops over leaf statements is priced as one band in
    its written order (traffic, overhead, compute, as above); other loops cost their trips
    times their body. Pricing two methods' schedules with this one function makes them
    comparable however each represents a schedule.
    """
    return _block_cost(model, p.body)


def _block_cost(model: CostModel, block: t.Block) -> float:
    total = 0.0
    for s in block:
        if isinstance(s, t.Loop):
            total += _loop_cost(model, s)
        elif isinstance(s, t.If):
            total += _block_cost(model, s.body) + _block_cost(model, s.orelse)
        elif isinstance(s, t.CONTROL_TYPES):
            raise TypeError(f"program_cost prices lowered programs; found {type(s).__name__}")
        else:
            total += model.leaf(s)
    return total


def _band(loop: t.Loop) -> tuple[list[t.Dim], t.Block]:
    """The perfect nest of constant-trip loops ``loop`` begins (no dims: its trips are symbolic),
    and the body inside it."""
    dims: list[t.Dim] = []
    s: t.Stmt = loop
    while isinstance(s, t.Loop) and (s.hi + s.lo.scale(-1)).is_const and (not dims or s.lo.is_const):
        dims.append(t.Dim(s.var, 1, (s.hi + s.lo.scale(-1)).const))
        if len(s.body) != 1 or not isinstance(s.body[0], t.Loop):
            break
        s = s.body[0]
    return dims, (s.body if dims else loop.body)


def vectorized_loops(model: CpuCost, p: t.Proc) -> int:
    """How many loops of a plain-loop program the model runs vectorised (`CpuCost.lanes`)."""
    def count(block: t.Block) -> int:
        n = 0
        for s in block:
            if isinstance(s, t.If):
                n += count(s.body) + count(s.orelse)
            elif isinstance(s, t.Loop):
                dims, body = _band(s)
                leaves = all(not isinstance(x, t.CONTROL_TYPES) for x in body)
                n += count(body) if not (dims and leaves) else int(model.lanes(dims[-1], body) > 1)
        return n

    return count(p.body)


def _loop_cost(model: CostModel, loop: t.Loop) -> float:
    dims, body = _band(loop)
    if not dims:  # symbolic trips
        return model.symbolic_trips() * (_block_cost(model, body) + model.loop_overhead())
    if any(isinstance(x, t.CONTROL_TYPES) for x in body):
        return model.loop_overhead() * _overhead(dims) + prod(d.extent for d in dims) * _block_cost(model, body)
    return band_cost(model, dims, body)


def _overhead(dims: list[t.Dim]) -> float:
    """Loop iterations started, outer to inner: ``O(d::rest) = e_d · (1 + O(rest))``."""
    overhead = 0.0
    for d in reversed(dims):
        overhead = d.extent * (1.0 + overhead)
    return overhead


def band_cost(model: CostModel, dims: list[t.Dim], body: t.Block) -> float:
    """The model's cost of loops ``dims`` (outer to inner) in this order over leaf statements."""
    traffic = model.lines(frozenset(), body)
    for k in range(len(dims) - 1, -1, -1):
        inside = frozenset(dims[k:])
        traffic = model.lines(inside, body) if model.fits(model.room(inside, body)) else dims[k].extent * traffic
    allocs = sum(model.leaf(x) for x in body if isinstance(x, t.Alloc))
    return (
        model.traffic_weight() * traffic
        + model.loop_overhead() * _overhead(dims)
        + model.compute(frozenset(dims), dims[-1], body)
        + prod(d.extent for d in dims) * allocs
    )


# What a CPU build may really get, which the model cannot tell from the program: the SIMD width of
# the loops gcc vectorises (which loops: the build's `alias_checks`, kept), and the cache level tiles
# should fit. Calibration measures which one the machine behaves like.
CPU_ASSUMPTIONS: dict[str, dict[str, int]] = {
    "scalar, L1": {"simd_bytes": 0, "cache_lines": 512},
    "scalar, L2": {"simd_bytes": 0, "cache_lines": 4096},
    "sse, L1": {"simd_bytes": 16, "cache_lines": 512},
    "sse, L2": {"simd_bytes": 16, "cache_lines": 4096},
    "avx2, L1": {"simd_bytes": 32, "cache_lines": 512},
    "avx2, L2": {"simd_bytes": 32, "cache_lines": 4096},
}
CPU_TERMS = ("miss", "loop", "compute_scale", "alloc", "chain")  # the weights calibration fits, in this order


def cpu_features(model: CpuCost, program: t.Proc) -> dict[str, tuple[float, ...]]:
    """Per assumption, the program's four terms (traffic, loop overhead, compute, allocations): its
    cost under a model is their dot product with that model's weights."""
    out = {}
    for name, assumed in CPU_ASSUMPTIONS.items():
        zero = replace(model, **assumed, **dict.fromkeys(CPU_TERMS, 0.0))  # the memo holds no weights: shared
        out[name] = tuple(program_cost(replace(zero, **{term: 1.0}), program) for term in CPU_TERMS)
    return out


def calibrated_cpu_cost(model: CpuCost, assumption: str, weights: tuple[float, ...]) -> CpuCost:
    """``model`` under a fitted ``assumption`` with fitted ``weights`` (see `cpu_features`)."""
    return replace(model, name="cpu (calibrated)", **CPU_ASSUMPTIONS[assumption], **dict(zip(CPU_TERMS, weights)))
