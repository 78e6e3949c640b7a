"""lower (x86): a kernel term → the matmul-like micro-kernel the x86 rules tile, and its plans.

The shape is that of Exo's own x86 sgemm example, and of the convolutions written the same way:
loops from 0, in any order, around one f32 reduction

    out[..., x, y] += row[...] * col[..., y + d]        (either factor order)

- ``y``, the vector lanes: the output's last index, and ``col``'s last index up to an offset ``d``
  made of reduction iterators (a convolution's window), so both are contiguous along it;
- ``x``, the register tile's rows: an output index that ``row`` depends on and ``col`` does not
  (``row``'s element is broadcast to every lane);
- the reduction loops: the iterators the output does not use (one for a matmul, three for a 2-D
  convolution over channels and a window);
- any other output index is a parallel loop kept outermost, as written.

A loop may run to a size argument (``for i in seq(0, M)``, as users write Exo's sgemm). Plans price
it at the size the user runs it at (``--sizes``) when given, else at `SYMBOLIC_STEPS` trips; a
symbolic reduction is never blocked, and a symbolic ``x`` or ``y`` is cut where the plan's whole
tiles end, its tail left as written (`tails.cut_tiles`).

A `Plan` holds ``rows`` × ``vectors`` output registers across ``kc`` steps of the reduction (the
register tile), with the loops over tiles in ``order``.

A matrix-vector product has no output index to put in the lanes, so its lanes go along the
reduction instead (`DotKernel`, `find_dot_kernel`):

    out[..., x] += mat[..., x, y] * vec[y]        (either factor order)

Each of ``rows`` outputs keeps ``vectors`` registers of partial sums along ``y`` (Exo's
``stage_mem(..., accum=True)``: zeroed, accumulated, added back), and adds their lanes into the
output at the end. That sums in another order than the input: Exo allows it (it reasons over the
reals) and validation compares within float tolerance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Mapping

from exo_egraph import terms as t
from exo_egraph.lower import Unsupported


class NotMicroKernel(Unsupported):
    """The kernel is not a matmul-like nest the x86 micro-kernel rules tile (one line, says why)."""


@dataclass(frozen=True)
class MicroKernel:
    """The matmul in a kernel, in the kernel's own names."""

    proc: str
    loops: tuple[str, ...]  # as written, outermost first
    x: str  # the register tile's rows: the row operand's broadcast element moves with it
    y: str  # vector lanes: contiguous in the output and the column operand
    reductions: tuple[str, ...]  # as written
    outer: tuple[str, ...]  # the other output iterators: parallel loops kept outermost, as written
    extents: tuple[tuple[str, int], ...]
    out: str
    out_idx: tuple[t.Aff, ...]
    row: str
    col: str
    col_idx: tuple[t.Aff, ...]
    symbolic: tuple[str, ...] = ()  # loops of a size argument's trips, priced at `SYMBOLIC_STEPS`
    row_tails: bool = True  # may rows that whole tiles leave be a tile of their own (`tail_rows`)

    def extent(self, var: str) -> int:
        return dict(self.extents)[var]

    def priced_at(self, var: str, trips: int) -> "MicroKernel":
        """This kernel with loop ``var`` priced at ``trips``."""
        return replace(self, extents=tuple((v, trips if v == var else e) for v, e in self.extents))

    @property
    def r(self) -> str:
        """The reduction loop a plan may block (the only one, when ``blockable``)."""
        return self.reductions[0]

    @property
    def blockable(self) -> bool:
        """One reduction, of constant trips (a block must divide it)."""
        return len(self.reductions) == 1 and self.r not in self.symbolic

    @property
    def cut(self) -> tuple[str, ...]:
        """The tile loops (``x``, ``y``) of a size argument's trips: a plan's whole tiles are cut
        from their tails at replay (`exo_egraph.targets.x86.tails.cut_tiles`)."""
        return tuple(v for v in (self.x, self.y) if v in self.symbolic)

    @property
    def orders(self) -> tuple[tuple[str, ...], ...]:
        """The loops over tiles a plan may order: ``x`` and ``y``, and the reduction's blocks when blockable."""
        return ((self.x, self.y), (self.r, self.x, self.y)) if self.blockable else ((self.x, self.y),)

    @property
    def steps(self) -> int:
        """Reduction steps per output element."""
        return math.prod(self.extent(r) for r in self.reductions)

    @property
    def repeats(self) -> int:
        """Iterations of the outer parallel loops: each runs the whole x-by-y tiling."""
        return math.prod(self.extent(v) for v in self.outer)

    @property
    def flops(self) -> int:
        return 2 * self.repeats * self.extent(self.x) * self.extent(self.y) * self.steps


@dataclass(frozen=True)
class Plan:
    """A register-tiled schedule: ``order`` names the loops over tiles outermost first, among
    ``x``, ``y`` and (when the reduction is blocked, ``kc`` below its extent) ``r``."""

    rows: int
    vectors: int
    kc: int
    order: tuple[str, ...]

    def show(self) -> str:
        return f"{self.rows}x{self.vectors} registers, kc={self.kc}, tiles by {' '.join(self.order)}"


def iterator_of(a: t.Aff) -> str | None:
    """The iterator of an index that is exactly one iterator (coefficient 1, no offset)."""
    return a.terms[0][0] if len(a.terms) == 1 and a.terms[0][1] == 1 and a.const == 0 else None


def tail_rows(kernel: "Kernel", rows: int) -> int:
    """The rows of ``kernel`` left after its whole tiles of ``rows``, when they are tiled as a tile of
    their own (a micro-kernel's rows of constant trips, cut with ``divide_loop(..., tail="cut")``:
    `exo_egraph.targets.x86.tails.cut_rows`); 0 when the tiles divide the rows or the tail is not tiled."""
    if not isinstance(kernel, MicroKernel) or not kernel.row_tails or kernel.cut:  # symbolic rows are cut
        return 0
    return kernel.extent(kernel.x) % rows


def offset_iterator_of(a: t.Aff) -> str | None:
    """The iterator of an index that is one iterator plus a constant (a tail's rows: ``ii + 120``)."""
    return a.terms[0][0] if len(a.terms) == 1 and a.terms[0][1] == 1 else None


def perfect_nest(p: t.Proc) -> tuple[list[t.Loop], tuple[t.Stmt, ...]]:
    """The loops of ``p``'s body while each holds one statement (outermost first), and what the
    innermost holds (``pass`` statements at the top level left out)."""
    body = tuple(s for s in p.body if not isinstance(s, t.Pass))
    loops: list[t.Loop] = []
    while len(body) == 1 and isinstance(body[0], t.Loop):
        loops.append(body[0])
        body = body[0].body
    return loops, body


def _uses(e: t.Read, var: str) -> bool:
    return any(var in a.vars for a in e.idx)


def _nest(p: t.Proc, least: int = 2) -> tuple[list[t.Loop], t.Reduce]:
    """The perfect nest of loops from 0 (``least`` or more) around ``out[...] += a[...] * b[...]``
    over f32 arguments; `NotMicroKernel` naming what does not fit. Their trips: `_extents`."""
    loops, body = perfect_nest(p)
    if len(loops) < least or len(body) != 1:
        raise NotMicroKernel(f"{p.name}: the x86 micro-kernel needs one statement under {least} or more loops (found {len(loops)} loops around {len(body)} statements)")
    for loop in loops:
        if loop.lo != t.Aff() or loop.hi.vars & {lp.var for lp in loops}:
            raise NotMicroKernel(f"{p.name}: loop {loop.var} runs from {loop.lo} to {loop.hi}, not 0 to a constant")
    s = body[0]
    if not (isinstance(s, t.Reduce) and isinstance(s.rhs, t.BinOp) and s.rhs.op == "*"):
        raise NotMicroKernel(f"{p.name}: the statement is not `out[...] += a[...] * b[...]`")
    factors = (s.rhs.lhs, s.rhs.rhs)
    if not all(isinstance(f, t.Read) for f in factors):
        raise NotMicroKernel(f"{p.name}: both factors of the product must be buffer reads")
    types = {a.name: a.typ for a in p.args}
    if any(types.get(b) != "f32" for b in (s.buf, factors[0].buf, factors[1].buf)):
        raise NotMicroKernel(f"{p.name}: the x86 micro-kernel is f32 (out, and both factors, must be f32 arguments)")
    return loops, s


# What a loop of a size argument's trips is priced at (as `extract.cost` prices any loop of
# symbolic trips): every plan of a kernel shares it, so it ranks them and does not decide them.
# A power of two, so plans tile it whole as they would the common sizes.
SYMBOLIC_STEPS = 64


def _extents(
    p: t.Proc, loops: list[t.Loop], symbolic_ok: tuple[str, ...], sizes: Mapping[str, int] | None = None
) -> tuple[tuple[tuple[str, int], ...], tuple[str, ...]]:
    """Each loop's trips, and which of ``symbolic_ok`` run a size argument's (``for k in seq(0, K)``,
    priced at its value in ``sizes``, else at `SYMBOLIC_STEPS`). Any other loop must run a constant."""
    extents, symbolic = [], []
    for loop in loops:
        if loop.hi.is_const:
            extents.append((loop.var, loop.hi.const))
        elif loop.var in symbolic_ok:
            given = sizes is not None and loop.hi.vars <= set(sizes)
            trips = sum(c * sizes[v] for v, c in loop.hi.terms) + loop.hi.const if given else SYMBOLIC_STEPS
            extents.append((loop.var, trips if trips > 0 else SYMBOLIC_STEPS))
            symbolic.append(loop.var)
        else:
            raise NotMicroKernel(f"{p.name}: loop {loop.var} runs from {loop.lo} to {loop.hi}, not 0 to a constant")
    return tuple(extents), tuple(symbolic)


def find_micro_kernel(p: t.Proc, sizes: Mapping[str, int] | None = None) -> MicroKernel:
    """The micro-kernel of ``p`` (its symbolic loops priced at ``sizes``: `_extents`), or
    `NotMicroKernel` naming what does not fit."""
    loops, s = _nest(p, least=3)
    factors = (s.rhs.lhs, s.rhs.rhs)
    *tile_idx, lane_idx = s.idx  # lanes from a vector's start; rows may start further on (a tail of rows)
    out_vars = [offset_iterator_of(a) for a in tile_idx] + [iterator_of(lane_idx)]
    names = [lp.var for lp in loops]
    if len(out_vars) < 2 or None in out_vars or len(set(out_vars)) != len(out_vars):
        raise NotMicroKernel(f"{p.name}: the output {s.buf} must be indexed by two or more distinct loop iterators")
    y = out_vars[-1]
    reductions = tuple(v for v in names if v not in out_vars)
    if not reductions:
        raise NotMicroKernel(f"{p.name}: {s.buf} is indexed by every loop, so nothing is reduced")

    def lane_index(f: t.Read) -> bool:  # contiguous along y: last index y + reduction iterators (+ a fixed
        *rest, last = f.idx  # offset of the proc's index arguments, a piece's tile), y nowhere else
        offset = {v for v in last.vars if v != y and v in names}
        return dict(last.terms).get(y) == 1 and offset <= set(reductions) and not any(y in a.vars for a in rest)

    col = next((f for f in factors if lane_index(f)), None)
    row = next((f for f in factors if f is not col), None)
    if col is None or row is None or _uses(row, y):
        raise NotMicroKernel(
            f"{p.name}: needs {s.buf}[..., {y}] += a[...] * b[..., {y} + ...] with a not using {y} "
            f"(b must be contiguous along {y}, the vector lanes)"
        )
    rows = [v for v in out_vars[:-1] if _uses(row, v) and not _uses(col, v)]
    if not rows:
        raise NotMicroKernel(f"{p.name}: no output index that only {row.buf} uses, to hold rows of registers")
    x = rows[-1]
    outer = tuple(v for v in names if v in out_vars and v not in (x, y))
    extents, symbolic = _extents(p, loops, tuple(names), sizes)
    return MicroKernel(
        p.name, tuple(names), x, y, reductions, outer, extents, s.buf, s.idx, row.buf, col.buf, col.idx, symbolic,
    )  # fmt: skip


@dataclass(frozen=True)
class DotKernel:
    """A matrix-vector product in a kernel, in the kernel's own names: ``x`` the outputs a tile
    holds rows of, ``y`` the reduction whose lanes fill the vectors (contiguous in both factors).
    It answers the rules as `MicroKernel` does: tiles of ``rows`` × ``vectors`` over ``x`` and ``y``."""

    proc: str
    loops: tuple[str, ...]
    x: str
    y: str
    outer: tuple[str, ...]
    extents: tuple[tuple[str, int], ...]
    out: str
    out_idx: tuple[t.Aff, ...]
    mat: str  # the factor indexed by x and y
    mat_idx: tuple[t.Aff, ...]
    vec: str  # the factor indexed by y alone
    vec_idx: tuple[t.Aff, ...]
    symbolic: tuple[str, ...] = ()  # loops of a size argument's trips (`MicroKernel.symbolic`)

    blockable = False  # the whole reduction is one tile's: nothing to block

    @property
    def cut(self) -> tuple[str, ...]:
        """The tile loops of symbolic trips, cut where whole tiles end at replay (`MicroKernel.cut`):
        the rows, and the reduction (its tail adds into the outputs after the lanes' sums)."""
        return tuple(v for v in (self.x, self.y) if v in self.symbolic)

    def priced_at(self, var: str, trips: int) -> "DotKernel":
        return replace(self, extents=tuple((v, trips if v == var else e) for v, e in self.extents))

    @property
    def reductions(self) -> tuple[str, ...]:
        return (self.y,)

    def extent(self, var: str) -> int:
        return dict(self.extents)[var]

    @property
    def steps(self) -> int:
        return self.extent(self.y)

    @property
    def repeats(self) -> int:
        return math.prod(self.extent(v) for v in self.outer)

    @property
    def orders(self) -> tuple[tuple[str, ...], ...]:
        """One loop over tiles (the rows): a tile runs the whole reduction."""
        return ((self.x,),)

    @property
    def flops(self) -> int:
        return 2 * self.repeats * self.extent(self.x) * self.steps


def find_dot_kernel(p: t.Proc, sizes: Mapping[str, int] | None = None) -> DotKernel:
    """The matrix-vector product of ``p`` (symbolic loops priced at ``sizes``: `_extents`), or
    `NotMicroKernel` naming what does not fit."""
    loops, s = _nest(p)
    factors = (s.rhs.lhs, s.rhs.rhs)
    out_vars = [iterator_of(a) for a in s.idx]
    names = [lp.var for lp in loops]
    reductions = [v for v in names if v not in out_vars]
    if None in out_vars or len(reductions) != 1:
        raise NotMicroKernel(f"{p.name}: a matrix-vector product reduces one loop into an output indexed by loop iterators")
    y = reductions[0]

    def along_y(f: t.Read) -> bool:  # contiguous along y: last index exactly y, y nowhere else
        *rest, last = f.idx
        return iterator_of(last) == y and not any(y in a.vars for a in rest)

    if not out_vars:
        raise NotMicroKernel(f"{p.name}: the output {s.buf} has no index to hold rows of")
    x = out_vars[-1]
    vec = next((f for f in factors if along_y(f) and not _uses(f, x)), None)
    mat = next((f for f in factors if f is not vec), None)
    if vec is None or mat is None or not along_y(mat) or not _uses(mat, x):
        raise NotMicroKernel(f"{p.name}: needs {s.buf}[..., {x}] += a[..., {x}, {y}] * b[..., {y}] (both contiguous along {y}, b not using {x})")
    outer = tuple(v for v in names if v in out_vars and v != x)
    extents, symbolic = _extents(p, loops, tuple(names), sizes)
    return DotKernel(
        p.name, tuple(names), x, y, outer, extents, s.buf, s.idx, mat.buf, mat.idx, vec.buf, vec.idx, symbolic,
    )  # fmt: skip


Kernel = MicroKernel | DotKernel  # what the x86 rules tile


def find_kernel(p: t.Proc, sizes: Mapping[str, int] | None = None) -> Kernel:
    """The kernel the x86 rules tile: a matmul-like micro-kernel (symbolic loops priced at
    ``sizes``), else a matrix-vector product; `NotMicroKernel` says why it is neither."""
    try:
        return find_micro_kernel(p, sizes)
    except NotMicroKernel as tile:
        try:
            return find_dot_kernel(p, sizes)
        except NotMicroKernel as dot:
            raise NotMicroKernel(f"{tile}; nor is it a matrix-vector product ({str(dot).split(': ', 1)[-1]})") from None
