"""lower and replay (x86): a reduction into a scalar accumulator, split so that its reduction is a micro-kernel.

Exo's own x86 convolution is written as users write reductions with an epilogue::

    for n, oy, ox, oc:                       (loops to constants or sizes, any order)
        res: f32
        res = bias[oc]                       (the initial value)
        for ky, kx, kc:
            res += w[kc, ky, kx, oc] * inp[n, oy + ky, ox + kx, kc]
        ...                                  (an epilogue reading res: relu, then the store)
        out[n, oy, ox, oc] = ...

No loop nest of it is a micro-kernel: the sum lives in a scalar. The split gives ``res`` one
dimension per loop around it, in the order of the output's indices (so its last dimension, the
vector lanes, is contiguous as the output's is: ``expand_dim``), lifts it out of them
(``lift_alloc``) and splits the loops after the initial value and after the reduction
(``fission``): three nests, of which the middle one, ``res[n, oy, ox, oc] += ...``, is a
micro-kernel; ``extract_subproc`` makes it a proc of its own for the plans to tile, and the replay
puts it back with ``call_eqv`` (`exo_egraph.script.replay_pieces`). Every element is still summed
from its initial value in its own order, so Exo accepts each step; the buffer is the output's
size, written and read once more each, by the other two nests reordered into its layout
(``reorder_loops``: a pass in the order written may stride by a row at every element).

That split, made once (`split_accumulator`), gives the plans their micro-kernel. A plan whose
tile loops divide whole is replayed without the big buffer (`replay_in_tiles`): the tile loops
come outermost, and the same split is made under them with ``res`` one register tile's size, as
Exo's own conv schedule keeps it.
"""

from __future__ import annotations

from dataclasses import dataclass

import exo.stdlib.scheduling as scheduling
from exo import Procedure

from exo_egraph import terms as t
from exo_egraph.lower import lower
from exo_egraph.script import Replayed, Session, find, find_loop, piece_name, replay_pieces, top

from .isa import Isa
from .pattern import SYMBOLIC_STEPS, MicroKernel, NotMicroKernel, Plan, find_micro_kernel, iterator_of, perfect_nest
from .replay import into_order, replay_plan
from .tails import Split, extract_split, reorder_nest


@dataclass(frozen=True)
class Accumulator:
    """A scalar accumulator under a nest of loops from 0 (to constants or sizes), as `find_accumulator` found it."""

    loops: tuple[t.Loop, ...]  # around the accumulator, outermost first
    name: str
    out_vars: tuple[str, ...]  # the loop iterators the output store indexes by, outermost dimension first
    reduction: t.Loop  # the nest reducing into it


def find_accumulator(p: t.Proc) -> Accumulator:
    """``p``'s scalar accumulator; `NotMicroKernel` naming what does not fit."""
    loops, body = perfect_nest(p)
    if len(body) < 4 or not isinstance(body[0], t.Alloc) or body[0].shape:
        raise NotMicroKernel(f"{p.name}: no scalar accumulator under its loops (a declaration, its initial value, the reduction, the store)")
    acc = body[0].name
    init, reduction, *epilogue = body[1:]
    if not (isinstance(init, t.Assign) and init.buf == acc and not init.idx):
        raise NotMicroKernel(f"{p.name}: {acc} is not given its initial value right after its declaration")
    inner = reduction
    while isinstance(inner, t.Loop) and len(inner.body) == 1:
        inner = inner.body[0]
    if not (isinstance(reduction, t.Loop) and isinstance(inner, t.Reduce) and inner.buf == acc and not inner.idx):
        raise NotMicroKernel(f"{p.name}: the statement after {acc}'s initial value is not a loop nest reducing into it")
    store = epilogue[-1]
    names = [lp.var for lp in loops]
    out_vars = tuple(iterator_of(a) for a in getattr(store, "idx", ()))
    if not isinstance(store, t.Assign) or None in out_vars or sorted(out_vars) != sorted(names):
        raise NotMicroKernel(f"{p.name}: the epilogue's last statement must store to an output indexed by each loop around {acc} once")
    for loop in loops:
        if loop.lo != t.Aff() or loop.hi.vars & set(names):
            raise NotMicroKernel(f"{p.name}: loop {loop.var} runs from {loop.lo} to {loop.hi}, not 0 to a constant or a size")
    return Accumulator(tuple(loops), acc, out_vars, reduction)


def split_accumulator(proc: Procedure, acc: Accumulator) -> Split:
    """``proc`` split into ``acc``'s initial values, its reduction (the piece) and the epilogue, by
    Exo's own calls (each checked): see the module's docstring."""
    depth, extent = len(acc.loops), {lp.var: lp.hi for lp in acc.loops}
    s = Session(proc)
    for var in reversed(acc.out_vars):  # expand_dim adds a leading dimension: the lanes first
        s.do("expand_dim", acc.name, extent[var].const if extent[var].is_const else str(extent[var]), var)
    s.do("lift_alloc", acc.name, n_lifts=depth)
    s.do("fission", find(f"{acc.name}[_] = _").then("after"), n_lifts=depth)
    s.do("fission", find_loop(acc.reduction.var).then("after"), n_lifts=depth)
    # after the buffer: its initial values and the epilogue, one pass each over it, in its layout (the
    # innermost loop walks contiguous memory, where the order written may stride by a row each element)
    for nest in (1, 3):
        reorder_nest(s, nest, [lp.var for lp in acc.loops], list(acc.out_vars))
    return extract_split(s, proc.name(), first=2, share=2 / _steps(acc.reduction))


def _steps(loop: t.Loop | None) -> int:
    """Multiply-adds per output element: the reduction nest's trips (`SYMBOLIC_STEPS` for a size's)."""
    trips = 1
    while isinstance(loop, t.Loop):
        trips *= loop.hi.const if loop.hi.is_const and loop.lo == t.Aff() else SYMBOLIC_STEPS
        loop = loop.body[0] if len(loop.body) == 1 else None
    return max(trips, 1)


def in_tiles(kernel: MicroKernel, plan: Plan) -> bool:
    """Can ``plan`` keep the accumulator per tile (`replay_in_tiles`)? Its tile loops must be
    divided whole (constant trips, not cut), and the reduction not blocked (the epilogue needs
    each sum complete)."""
    return not kernel.cut and plan.kc == kernel.steps


def replay_in_tiles(proc: Procedure, acc: Accumulator, kernel: MicroKernel, isa: Isa, plan: Plan) -> Replayed:
    """``proc`` scheduled as ``plan`` with its scalar accumulator kept per register tile, as Exo's
    own conv schedule keeps it (no buffer the output's size): the tile loops are divided and
    ordered outermost (``divide_loop``, ``reorder_loops``); under them ``res`` gets the tile's
    ``rows × cols`` dimensions (``expand_dim``, ``lift_alloc``) and the loops split after its
    initial value and after its reduction (``fission``); the reduction nest, a micro-kernel of
    the tile, is extracted and tiled in registers (`replay_plan`) and put back (``call_eqv``).
    The initial values and the epilogue run over the tile in L1, lanes innermost."""
    rows, cols = plan.rows, plan.vectors * isa.width
    x, y = kernel.x, kernel.y
    xo, xi, yo, yi = f"{x}o", f"{x}i", f"{y}o", f"{y}i"
    s = Session(proc)
    s.do("divide_loop", y, cols, [yo, yi], perfect=True)
    s.do("divide_loop", x, rows, [xo, xi], perfect=True)
    outer = [lp.var for lp in acc.loops if lp.var not in (x, y)]
    want = [*outer, *({x: xo, y: yo}[v] for v in plan.order), xi, yi]
    into_order(s, want)
    s.do("expand_dim", acc.name, cols, yi)
    s.do("expand_dim", acc.name, rows, xi)
    s.do("lift_alloc", acc.name, n_lifts=2)
    s.do("fission", find(f"{acc.name}[_] = _").then("after"), n_lifts=2)
    s.do("fission", find_loop(acc.reduction.var).then("after"), n_lifts=2)
    at = top(0)
    for _ in range(len(want) - 3):  # down to the innermost loop over tiles: [res, init, reduction, epilogue]
        at = at.body(0)
    at = at.body(2)
    name = piece_name(proc.name(), 0)
    calls, piece = scheduling.extract_subproc(s.proc, at.resolve(s.proc), name)
    tile = find_micro_kernel(lower(piece))
    done = replay_plan(piece, tile, isa, Plan(rows, plan.vectors, tile.steps, (tile.x, tile.y)))
    return replay_pieces(proc, s.steps, calls, [(piece, done)], at=(at,))

