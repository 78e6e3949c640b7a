"""lower (x86): a kernel term → the matmul-like micro-kernel the x86 rules tile, and its plans.

The shape is that of Exo's own x86 sgemm example: three constant loops, in any order, around one
f32 reduction

    for x: for y: for r:   out[x, y] += row[x, r] * col[r, y]     (either factor order;
                                                                   row may be row[r, x])

``y`` is the vector dimension: the output's and ``col``'s last index, so both are contiguous
along it; ``row`` does not depend on ``y`` (its element is broadcast to every lane). A `Plan`
holds ``rows`` × ``vectors`` output registers across ``kc`` reduction steps (the register tile),
with the loops over tiles in ``order``.
"""

from __future__ import annotations

from dataclasses import dataclass

from exo_egraph import terms as t
from exo_egraph.lower import Unsupported


class NotMicroKernel(Unsupported):
    """The kernel is not a matmul-like nest the x86 micro-kernel rules tile (one line, says why)."""


@dataclass(frozen=True)
class MicroKernel:
    """The matmul in a kernel, in the kernel's own names."""

    proc: str
    loops: tuple[str, ...]  # as written, outermost first
    x: str  # output rows: the row operand's broadcast element moves with it
    y: str  # vector lanes: contiguous in the output and the column operand
    r: str  # the reduction
    extents: tuple[tuple[str, int], ...]
    out: str
    row: str
    col: str
    row_idx: tuple[t.Aff, ...]
    col_idx: tuple[t.Aff, ...]

    def extent(self, var: str) -> int:
        return dict(self.extents)[var]

    @property
    def flops(self) -> int:
        return 2 * self.extent(self.x) * self.extent(self.y) * self.extent(self.r)


@dataclass(frozen=True)
class Plan:
    """A register-tiled schedule: ``order`` names the loops over tiles outermost first, among
    ``x``, ``y`` and (when the reduction is blocked, ``kc`` < its extent) ``r``."""

    rows: int
    vectors: int
    kc: int
    order: tuple[str, ...]

    def show(self) -> str:
        return f"{self.rows}x{self.vectors} registers, kc={self.kc}, tiles by {' '.join(self.order)}"


def _var(a: t.Aff) -> str | None:
    """The iterator of an index that is exactly one iterator (coefficient 1, no offset)."""
    return a.terms[0][0] if len(a.terms) == 1 and a.terms[0][1] == 1 and a.const == 0 else None


def find_micro_kernel(p: t.Proc) -> MicroKernel:
    """The micro-kernel of ``p``, or `NotMicroKernel` naming what does not fit."""
    body = tuple(s for s in p.body if not isinstance(s, t.Pass))
    loops: list[t.Loop] = []
    while len(body) == 1 and isinstance(body[0], t.Loop):
        loops.append(body[0])
        body = body[0].body
    if len(loops) != 3 or len(body) != 1:
        raise NotMicroKernel(f"{p.name}: the x86 micro-kernel needs one statement under three loops (found {len(loops)} loops around {len(body)} statements)")
    for loop in loops:
        if loop.lo != t.Aff() or not loop.hi.is_const:
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
    out_vars = [_var(a) for a in s.idx]
    if len(out_vars) != 2 or None in out_vars:
        raise NotMicroKernel(f"{p.name}: the output {s.buf} must be indexed by two loop iterators")
    x, y = out_vars
    (r,) = [lp.var for lp in loops if lp.var not in (x, y)] or [None]
    if r is None or x == y:
        raise NotMicroKernel(f"{p.name}: {s.buf}[{x}, {y}] leaves no reduction loop")
    col = next((f for f in factors if [_var(a) for a in f.idx] == [r, y]), None)
    # the row operand is broadcast one element at a time, so it may be stored either way round
    row = next((f for f in factors if f is not col and [_var(a) for a in f.idx] in ([x, r], [r, x])), None)
    if col is None or row is None:
        raise NotMicroKernel(
            f"{p.name}: needs {s.buf}[{x}, {y}] += a[{x}, {r}] * b[{r}, {y}] (a may be transposed; b must be "
            f"contiguous along {y}, the vector lanes)"
        )
    return MicroKernel(
        p.name, tuple(lp.var for lp in loops), x, y, r, tuple((lp.var, lp.hi.const) for lp in loops),
        s.buf, row.buf, col.buf, row.idx, col.idx,
    )  # fmt: skip
