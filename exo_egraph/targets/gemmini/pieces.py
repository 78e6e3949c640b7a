"""lower (Gemmini): a kernel whose output rows or columns do not split into DIM tiles, cut into nests that do.

A tile takes DIM rows (or columns), or fewer once: the instructions' ``n, m <= 16`` arguments. An
output loop of ``16 q + r`` trips (``q >= 1``, ``0 < r < 16``) is cut where its whole tiles end —
``cut_loop`` at ``16 q``, ``shift_loop`` of the rest to start at 0, ``fission`` of the loops
around it — so the kernel becomes up to four nests: whole tiles, and partial rows, columns or
both. Each nest is then a kernel of its own (``extract_subproc``), explored, scheduled and put
back (``call_eqv``): the replay's `exo_egraph.script.Piece`. The reduction is never cut (its
steps share one accumulator).
"""

from __future__ import annotations

from exo_egraph import terms as t
from exo_egraph.script import Session, loop_cursor, top

from .config import DIM
from .pattern import GemmPattern


def cuts(g: GemmPattern) -> tuple[tuple[str, int], ...]:
    """(output loop, trips of its whole tiles) of each loop the kernel must be cut at."""
    return tuple((v, g.extent(v) - g.extent(v) % DIM) for v in (g.n, g.m) if g.extent(v) > DIM and g.extent(v) % DIM)


def cut_nests(s: Session, g: GemmPattern) -> int:
    """Cut every top-level nest of ``s`` at `cuts` (Exo calls on ``s``); the number of nests."""
    for var, at in cuts(g):
        i = 0
        while i < len(s.term.body):
            path = _loop_path(s.term.body[i], var)
            if path is None:
                i += 1
                continue
            full = ((i, 0),) + path
            where = full[:-1], full[-1][0]
            s.do("cut_loop", loop_cursor(s.term, *where), at)
            s.do("shift_loop", loop_cursor(s.term, where[0], where[1] + 1), 0)
            if len(full) > 1:  # the loops around it: one nest each side of the cut
                s.do("fission", loop_cursor(s.term, *where).then("after"), n_lifts=len(full) - 1)
            i += 2
    s.do("simplify")
    return len(s.term.body)


def _loop_path(x: t.Stmt, var: str) -> tuple[tuple[int, int], ...] | None:
    """Path from the nest ``x`` to its loop over ``var``, down the perfect chain of loops (() for ``x``)."""
    path: tuple[tuple[int, int], ...] = ()
    while isinstance(x, t.Loop):
        if x.var == var:
            return path
        if len(x.body) != 1:
            return None
        path, x = path + ((0, 0),), x.body[0]
    return None


__all__ = ["cut_nests", "cuts"]
