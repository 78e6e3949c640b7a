"""lower (x86): a reduction into a scalar accumulator, split so that its reduction is a micro-kernel.

Exo's own x86 convolution is written as users write reductions with an epilogue::

    for n, oy, ox, oc:                       (constant loops, any order)
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
size, written and read once more each.
"""

from __future__ import annotations

from exo import Procedure

from exo_egraph import terms as t
from exo_egraph.script import Session, find, find_loop

from .pattern import NotMicroKernel
from .tails import Split, extract_split


def find_accumulator(p: t.Proc) -> tuple[list[t.Loop], str, tuple[str, ...]]:
    """The loops around ``p``'s scalar accumulator, its name, and the loop iterators the output
    store indexes by (outermost dimension first); `NotMicroKernel` naming what does not fit."""
    loops, body = [], tuple(s for s in p.body if not isinstance(s, t.Pass))
    while len(body) == 1 and isinstance(body[0], t.Loop):
        loops.append(body[0])
        body = tuple(s for s in body[0].body if not isinstance(s, t.Pass))
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
    out_vars = tuple(a.terms[0][0] if len(a.terms) == 1 and a.terms[0][1] == 1 and not a.const else None
                     for a in getattr(store, "idx", ()))  # fmt: skip
    if not isinstance(store, t.Assign) or sorted(v for v in out_vars if v) != sorted(names) or None in out_vars:
        raise NotMicroKernel(f"{p.name}: the epilogue's last statement must store to an output indexed by each loop around {acc} once")
    for loop in loops:
        if loop.lo != t.Aff() or not loop.hi.is_const:
            raise NotMicroKernel(f"{p.name}: loop {loop.var} runs from {loop.lo} to {loop.hi}, not 0 to a constant")
    return loops, acc, out_vars


def split_accumulator(proc: Procedure, term: t.Proc) -> Split:
    """``proc`` split into its initial values, the reduction (the piece) and the epilogue, by Exo's
    own calls (each checked): see the module's docstring."""
    loops, acc, out_vars = find_accumulator(term)
    extent = {lp.var: lp.hi.const for lp in loops}
    s = Session(proc)
    for var in reversed(out_vars):  # expand_dim adds a leading dimension: the lanes first
        s.do("expand_dim", acc, extent[var], var)
    s.do("lift_alloc", acc, n_lifts=len(loops))
    s.do("fission", find(f"{acc}[_] = _").then("after"), n_lifts=len(loops))
    s.do("fission", find_loop(_reduction_nest(term, len(loops)).var).then("after"), n_lifts=len(loops))
    return extract_split(s, proc.name(), first=2, share=2 / _steps(term, len(loops)))


def _reduction_nest(p: t.Proc, depth: int) -> t.Loop:
    """The first loop ``depth`` loops down: the reduction nest under the accumulator's loops."""
    body = p.body
    for _ in range(depth):
        body = next(s for s in body if isinstance(s, t.Loop)).body
    return next(s for s in body if isinstance(s, t.Loop))


def _steps(p: t.Proc, depth: int) -> int:
    """Multiply-adds per output element: the reduction nest's trips (1 if any is not constant)."""
    loop, trips = _reduction_nest(p, depth), 1
    while isinstance(loop, t.Loop):
        trips *= loop.hi.const if loop.hi.is_const and loop.lo == t.Aff() else 1
        loop = loop.body[0] if len(loop.body) == 1 else None
    return max(trips, 1)
