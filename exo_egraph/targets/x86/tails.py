"""lower (x86): a kernel whose lanes do not fill whole vectors, cut into the whole vectors and a tail.

The lanes loop ``y`` of ``16 q + r`` trips (or ``8 q + r`` at AVX2's width) is cut where its
whole vectors end (``cut_loop``), and the loops around it split there (``fission``), so the
kernel becomes two nests: the whole vectors, which ``extract_subproc`` makes a proc of its own for
the plans to tile, and the tail of ``r`` lanes, left as written (gcc's code at the build's flags).
The replay puts the scheduled nest back with ``call_eqv`` (`exo_egraph.script.replay_pieces`).
Either nest covers disjoint lanes: outputs for a matmul, reduction steps for a matrix-vector
product (whose partial sums Exo lets be added in any order, as it reasons over the reals).

A tile loop of a size argument's trips (``for i in seq(0, M)``) is cut the same way, at replay,
where the plan's whole tiles end (`cut_tiles`): ``divide_loop(..., tail="cut")`` makes the whole
tiles' loops and a tail of ``M % rows`` trips, which ``fission`` moves out of every loop around it.
Rows of constant trips that a plan's tiles do not divide are cut the same way (`cut_rows`), and
their tail, extracted too, is tiled by a plan of its own rows.
"""

from __future__ import annotations

from dataclasses import dataclass

from exo import Procedure

from exo_egraph.script import ReplayError, Session, Step, extract_pieces, find_loop, top

from .pattern import Kernel


@dataclass(frozen=True)
class Split:
    """A kernel split by Exo calls into one nest the plans tile and the rest, left as written: a
    tail of lanes cut off here, or an accumulator's initial values and epilogue (`accumulator`)."""

    prelude: tuple[Step, ...]  # the calls that split it (cut_loop, fission, ...)
    calls: Procedure  # the kernel calling the piece, the rest inline as written
    piece: Procedure  # the nest the plans tile
    share: float  # the rest's work over the piece's (lanes r over 16 q; two passes over the outputs)
    first: int = 0  # the piece's place among the kernel's top-level statements


def extract_split(s: Session, name: str, first: int, share: float) -> Split:
    """The split ``s`` has made, its ``first``-th top-level nest extracted as the piece."""
    calls, (piece,) = extract_pieces(s.proc, name, 1, first)
    return Split(tuple(s.steps), calls, piece, share, first)


def whole_lanes(kernel: Kernel, width: int) -> int:
    """The lanes of ``kernel`` that fill whole vectors of ``width``."""
    return kernel.extent(kernel.y) - kernel.extent(kernel.y) % width


def cut_vector_tail(proc: Procedure, kernel: Kernel, width: int) -> Split:
    """``proc`` cut into its whole vectors of lanes and the tail (Exo calls, each checked)."""
    at = whole_lanes(kernel, width)
    s = Session(proc)
    s.do("cut_loop", find_loop(kernel.y), at)
    depth = kernel.loops.index(kernel.y)  # the loops around the lanes loop: each splits at the cut
    if depth:
        s.do("fission", find_loop(f"{kernel.y} #0").then("after"), n_lifts=depth)
    return extract_split(s, proc.name(), 0, (kernel.extent(kernel.y) - at) / at)


def _cut(s: Session, kernel: Kernel, tile: dict[str, int]) -> None:
    """Cut each loop in ``tile`` where its whole tiles of ``tile[var]`` end; each tail nest, moved out
    of every loop around it, runs its lanes innermost."""
    order, tails = list(kernel.loops), []  # the whole tiles' loops; the tails' (top-level nests 1, 2)
    for var in (v for v in kernel.loops if v in tile):  # outermost first
        depth = order.index(var)
        s.do("divide_loop", var, tile[var], [f"{var}o", f"{var}i"], tail="cut")
        if depth:
            s.do("fission", find_loop(f"{var}o").then("after"), n_lifts=depth)
        tails.insert(0, [f"{var}i" if v == var else v for v in order])  # right after the whole tiles
        order[depth : depth + 1] = [f"{var}o", f"{var}i"]
    for nest, loops in enumerate(tails, start=1):
        lanes = f"{kernel.y}i" if f"{kernel.y}i" in loops else kernel.y
        reorder_nest(s, nest, loops, [v for v in loops if v != lanes] + [lanes])


def cut_tiles(proc: Procedure, kernel: Kernel, tile: dict[str, int]) -> Split:
    """``proc`` cut where the whole tiles of each symbolic loop in ``tile`` end (its trips divided by
    ``tile[var]``, the tail after them); the piece is the nest of whole tiles, whose loops are
    already divided as a plan's replay divides them (``{var}o``, ``{var}i``). Each tail runs its
    lanes innermost, where gcc vectorises them (a reduction innermost would be one scalar chain)."""
    s = Session(proc)
    _cut(s, kernel, tile)
    return extract_split(s, proc.name(), 0, 0.0)


@dataclass(frozen=True)
class RowCut:
    """A kernel's rows cut into whole tiles and a tail of rows, both extracted to be tiled."""

    prelude: tuple[Step, ...]  # divide_loop(..., tail="cut"), fission, reorder_loops, simplify
    calls: Procedure  # the kernel calling the two pieces
    whole: Procedure  # the whole tiles, their row loop divided already (``{x}o``, ``{x}i``)
    tail: Procedure  # the tail's rows, from a constant offset (``C[xi + 120, j]``)


def cut_rows(proc: Procedure, kernel: Kernel, rows: int) -> RowCut:
    """``proc``'s row loop (constant trips) cut where its whole tiles of ``rows`` end, and both
    nests extracted (``extract_subproc``): the tail is a micro-kernel of its own, of fewer rows."""
    s = Session(proc)
    _cut(s, kernel, {kernel.x: rows})
    s.do("simplify")  # the tail's trips and offset as constants: seq(0, 128 % 12) runs seq(0, 8)
    calls, (whole, tail) = extract_pieces(s.proc, proc.name(), 2)
    return RowCut(tuple(s.steps), calls, whole, tail)


def reorder_nest(s: Session, nest: int, order: list[str], want: list[str]) -> None:
    """Adjacent ``reorder_loops`` swaps of the ``nest``-th top-level statement, a perfect nest of
    loops ``order``, until it runs in the order ``want``; where Exo refuses a swap, it stays there."""
    order = list(order)
    while order != want:
        d = next(d for d in range(len(order) - 1) if want.index(order[d]) > want.index(order[d + 1]))
        at = top(nest)
        for _ in range(d):
            at = at.body(0)
        try:
            s.do("reorder_loops", at)
        except ReplayError:
            return
        order[d], order[d + 1] = order[d + 1], order[d]
