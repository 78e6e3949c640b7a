"""replay (x86): a micro-kernel plan → the Exo calls that build it, applied one at a time (Exo re-checks each).

The calls are those of Exo's own x86 sgemm example, derived from the plan: divide the three loops
into tiles, order the loops over tiles, stage the output tile and a row of the column operand in
vector registers (``stage_mem``, ``divide_dim``, ``set_memory``), broadcast the row operand
(``bind_expr`` + ``expand_dim``), ``replace_all`` with the ISA's instructions, then unroll the
tile so its registers stay registers. A matrix-vector product's tile holds partial sums along the
reduction instead (``stage_mem(..., accum=True)``, ``expand_dim``, ``lift_alloc``, ``fission``),
zeroed, accumulated and stored to memory to be added into the output lane by lane.
"""

from __future__ import annotations

from dataclasses import replace

from exo import Procedure

from exo_egraph import terms as t
from exo_egraph.lower import lower
from exo_egraph.script import Ref, Replayed, Session, find, replay_pieces, script_text

from .isa import Isa, Role
from .pattern import DotKernel, Kernel, MicroKernel, Plan, find_micro_kernel, tail_rows
from .tails import cut_rows, cut_tiles

ACC, COL, ROW = "acc_reg", "col_reg", "row_reg"  # the register buffers the replay allocates
VEC, MAT, LANES = "vec_reg", "mat_reg", "lanes"  # a matrix-vector tile's (lanes: in memory, to add up)


def nest_order(term: t.Proc) -> list[str]:
    """The loop names of the proc's perfect nest, outermost first."""
    out, body = [], term.body
    while len(body) == 1 and isinstance(body[0], t.Loop):
        out.append(body[0].var)
        body = body[0].body
    return out


def _count(term: t.Proc, name: str) -> int:
    return sum(1 for s in t.walk(term.body) if isinstance(s, t.Loop) and s.var == name)


def _text(a: t.Aff, at: dict[str, str]) -> str:
    """An index in Exo's syntax, each iterator in ``at`` replaced by its expression there."""
    parts = [(f"{c} * " if c != 1 else "") + (f"({at[v]})" if v in at and c != 1 else at.get(v, v)) for v, c in a.terms]
    text = " + ".join(parts + ([str(a.const)] if a.const or not parts else []))
    return text.replace("+ -", "- ")


def _window(idx: tuple[t.Aff, ...], ranges: dict[int, tuple[str, int]], at: dict[str, str]) -> str:
    """``idx`` as a window: dimension ``d`` in ``ranges`` spans ``(start, extent)``, the others are points."""
    dims = []
    for d, a in enumerate(idx):
        if d in ranges:
            lo, extent = ranges[d]
            dims.append(f"{lo}:{lo} + {extent}")
        else:
            dims.append(_text(a, at))
    return ", ".join(dims)


def replay_plan(proc: Procedure, kernel: Kernel, isa: Isa, plan: Plan) -> Replayed:
    """Schedule ``proc`` as ``plan`` of its ``kernel``; raises `ReplayError` when Exo rejects a step.
    Tile loops of symbolic trips are cut first (`cut_tiles`): the plan tiles their whole tiles."""
    replay = _replay_dot if isinstance(kernel, DotKernel) else _replay_tile
    if tail_rows(kernel, plan.rows):
        return _replay_with_tail(proc, kernel, isa, plan)
    if not kernel.cut:
        return replay(proc, kernel, isa, plan)
    size = {kernel.x: plan.rows, kernel.y: plan.vectors * isa.width}
    split = cut_tiles(proc, kernel, {v: size[v] for v in kernel.cut})
    done = replay(split.piece, kernel, isa, plan, divided=kernel.cut)
    return replay_pieces(proc, split.prelude, split.calls, [(split.piece, done)], first=split.first)


def _replay_with_tail(proc: Procedure, mk: MicroKernel, isa: Isa, plan: Plan) -> Replayed:
    """``plan``'s whole tiles of rows, and the rows left after them tiled as one tile of their own
    (`cut_rows`): the same vectors and reduction blocks, in the same order."""
    cut = cut_rows(proc, mk, plan.rows)
    whole = _replay_tile(cut.whole, mk, isa, plan, divided=(mk.x,))
    tail_kernel = find_micro_kernel(lower(cut.tail))
    order = tuple(tail_kernel.x if v == mk.x else v for v in plan.order)  # its row loop: {x}i, as cut
    kc = tail_kernel.steps if plan.kc == mk.steps else plan.kc  # the whole reduction (of a size argument's trips)
    tail_plan = replace(plan, rows=tail_rows(mk, plan.rows), kc=kc, order=order)
    tail = _replay_tile(cut.tail, tail_kernel, isa, tail_plan)
    return replay_pieces(proc, cut.prelude, cut.calls, [(cut.whole, whole), (cut.tail, tail)])


def into_order(s: Session, want: list[str]) -> None:
    """Adjacent ``reorder_loops`` swaps until the perfect nest runs in the order ``want``."""
    while (have := nest_order(s.term)) != want:
        a, b = next((a, b) for a, b in zip(have, have[1:]) if want.index(a) > want.index(b))
        s.do("reorder_loops", f"{a} {b}")


def _unroll_all(s: Session, names: tuple[str, ...]) -> None:
    """Unroll every loop of these names: a tile's registers then are plain register variables."""
    for name in names:
        for _ in range(_count(s.term, name)):
            s.do("unroll_loop", name)


# Reduction steps unrolled into one loop iteration: four steps of an 8x2 or 12x2 tile took 5-8 %
# less time than one at 96-128 rows (f32, K = 128, AVX-512 Xeon), and none more or less at 64³;
# Exo's SGEMM as written (K a size argument, the last K % 4 steps cut off) 8-9 % less at 192³.
STEPS_UNROLLED = 4


def _constant_trips(term: t.Proc, name: str) -> int | None:
    """The trips of loop ``name`` when they are a constant (not a size argument's)."""
    loop = next(lp for lp in t.walk(term.body) if isinstance(lp, t.Loop) and lp.var == name)
    return None if loop.lo.terms or loop.hi.terms else loop.hi.const - loop.lo.const


def _unroll_steps(s: Session, name: str, trips: int | None) -> None:
    """Unroll ``STEPS_UNROLLED`` steps of the innermost reduction loop ``name`` into each of its
    iterations: where they divide its constant ``trips``, all of them; over a size argument's
    trips (``None``), the steps after the last whole group are cut off (``tail="cut"``) and stay a loop."""
    if trips is not None and (trips <= STEPS_UNROLLED or trips % STEPS_UNROLLED):
        return
    tail = {"perfect": True} if trips is not None else {"tail": "cut"}
    s.do("divide_loop", name, STEPS_UNROLLED, [name, f"{name}_u"], **tail)
    s.do("unroll_loop", f"{name}_u")


def _divide_tiles(s: Session, kernel: Kernel, rows: int, cols: int, divided: tuple[str, ...]) -> None:
    """``divide_loop`` of ``x`` by ``rows`` and ``y`` by ``cols`` into ``{var}o`` and ``{var}i``,
    but for the loops in ``divided``, which come divided already (`cut_tiles`)."""
    for var, size in ((kernel.x, rows), (kernel.y, cols)):
        if var not in divided:
            s.do("divide_loop", var, size, [f"{var}o", f"{var}i"], perfect=True)


def _replay_dot(proc: Procedure, dk: DotKernel, isa: Isa, plan: Plan, divided: tuple[str, ...] = ()) -> Replayed:
    """A matrix-vector tile: ``rows`` outputs, each summing ``vectors`` registers of partial sums
    along ``y`` (``stage_mem(..., accum=True)`` zeroes them, accumulates and adds them back),
    the vector's registers loaded once per step for every row, the lanes added into the output.
    The tile loops in ``divided`` come divided already (`cut_tiles`)."""
    s = Session(proc)
    w, rows, lanes = isa.width, plan.rows, plan.vectors * isa.width
    xo, xi, yo, yi = f"{dk.x}o", f"{dk.x}i", f"{dk.y}o", f"{dk.y}i"
    _divide_tiles(s, dk, rows, lanes, divided)
    into_order(s, [*dk.outer, xo, xi, yi, yo])
    at = {dk.x: f"{rows} * {xo} + {xi}"}
    s.do("stage_mem", f"for {yo} in _:_", f"{dk.out}[{', '.join(_text(a, at) for a in dk.out_idx)}]", ACC, accum=True)
    s.do("expand_dim", ACC, lanes, yi)
    s.do("expand_dim", ACC, rows, xi)
    s.do("lift_alloc", ACC, n_lifts=2)
    s.do("fission", find(f"{ACC}[_] = _").then("after"), n_lifts=2)  # zero | accumulate | add back
    s.do("fission", find(f"for {yo} in _:_").then("after"), n_lifts=2)
    s.do("reorder_loops", f"{yi} {yo}")
    s.do("reorder_loops", f"{xi} {yo}")
    for _ in range(3):  # each nest's lanes, a vector at a time
        s.do("divide_loop", yi, w, ["vo", "vi"], perfect=True)
    memory = Ref(isa.module, isa.memory)
    s.do("divide_dim", ACC, 1, w)
    s.do("simplify")
    s.do("set_memory", ACC, memory)
    # the vector's lanes of this step, for every row; then the matrix's, one register at a time
    y_lanes = len(dk.vec_idx) - 1
    vec_window = _window(dk.vec_idx, {y_lanes: (f"{lanes} * {yo}", lanes)}, at)
    s.do("stage_mem", find(f"for {yo} in _:_").body(0), f"{dk.vec}[{vec_window}]", VEC)
    s.do("divide_loop", find(f"{VEC}[_] = _").then("parent"), w, ["vo", "vi"], perfect=True)
    s.do("divide_dim", VEC, 0, w)
    s.do("simplify")
    s.do("set_memory", VEC, memory)
    mat_window = _window(dk.mat_idx, {len(dk.mat_idx) - 1: (f"{lanes} * {yo} + {w} * vo", w)}, at)
    s.do("stage_mem", find(f"{ACC}[_] += _").then("parent"), f"{dk.mat}[{mat_window}]", MAT)
    s.do("set_memory", MAT, memory)
    # the partial sums leave the registers through memory, lane by lane into the output
    s.do("stage_mem", find(f"{dk.out}[_] += _").then("parent"), f"{ACC}[{xi}, vo, 0:{w}]", LANES)
    s.do("set_memory", LANES, Ref("exo", "DRAM"))
    s.do("simplify")  # the staged sizes, as constants: an alloc lifts only past loops its size does not use
    for one in (MAT, LANES):  # one buffer each for every row and vector: unrolled, none is declared twice
        s.do("lift_alloc", one, n_lifts=2)
    s.do("replace_all", [Ref(isa.module, isa.instr(role)) for role in (Role.LOAD, Role.STORE, Role.ZERO, Role.FMA)])
    _unroll_all(s, ("vo", xi))
    s.do("simplify")
    return Replayed(s.proc, tuple(s.steps), script_text(proc.name(), s.steps), None)


def _replay_tile(proc: Procedure, mk: MicroKernel, isa: Isa, plan: Plan, divided: tuple[str, ...] = ()) -> Replayed:
    """A register tile of the output, broadcasting the row operand (Exo's x86 sgemm example).
    The tile loops in ``divided`` come divided already (`cut_tiles`)."""
    s = Session(proc)
    w, rows, cols = isa.width, plan.rows, plan.vectors * isa.width
    xo, xi, yo, yi = f"{mk.x}o", f"{mk.x}i", f"{mk.y}o", f"{mk.y}i"
    _divide_tiles(s, mk, rows, cols, divided)
    tiles = {mk.x: xo, mk.y: yo}
    reductions, at = list(mk.reductions), {mk.x: f"{rows} * {xo}", mk.y: f"{cols} * {yo}"}
    if plan.kc < mk.steps:
        ro, ri = f"{mk.r}o", f"{mk.r}i"
        s.do("divide_loop", mk.r, plan.kc, [ro, ri], perfect=True)
        tiles[mk.r], reductions, at[mk.r] = ro, [ri], f"{plan.kc} * {ro} + {ri}"
    into_order(s, [*mk.outer, *(tiles[v] for v in plan.order), *reductions, xi, yi])
    step_trips = _constant_trips(s.term, reductions[-1])
    # the output tile in registers across the reduction, and the column operand's lanes per step
    x_dim = next(d for d, a in enumerate(mk.out_idx) if a.vars == {mk.x})
    lanes = len(mk.out_idx) - 1
    x_start = _text(mk.out_idx[x_dim], at)  # at a constant offset, in a tail of rows
    out_window = _window(mk.out_idx, {x_dim: (x_start, rows), lanes: (at[mk.y], cols)}, at)
    s.do("stage_mem", f"for {reductions[0]} in _:_", f"{mk.out}[{out_window}]", ACC)
    col_lanes = len(mk.col_idx) - 1
    col_start = _text(mk.col_idx[col_lanes], at)
    col_window = _window(mk.col_idx, {col_lanes: (col_start, cols)}, at)
    s.do("stage_mem", f"for {xi} in _:_", f"{mk.col}[{col_window}]", COL)
    s.do("simplify")
    for _ in range(2):  # the tile's load and store loops, then the column row's load and the compute
        s.do("divide_loop", "i1", w, ["vo", "vi"], perfect=True)
    s.do("divide_loop", find(f"{COL}[_] = _").then("parent"), w, ["vo", "vi"], perfect=True)
    s.do("divide_loop", yi, w, ["vo", "vi"], perfect=True)
    memory = Ref(isa.module, isa.memory)
    s.do("divide_dim", ACC, 1, w)
    s.do("divide_dim", COL, 0, w)
    s.do("set_memory", ACC, memory)
    s.do("set_memory", COL, memory)
    s.do("simplify")
    # the row operand's element, broadcast to every lane once per row and step
    s.do("bind_expr", f"{mk.row}[_]", ROW)
    s.do("expand_dim", ROW, w, "vi")
    s.do("lift_alloc", ROW, n_lifts=2)
    s.do("fission", find(f"{ROW}[_] = _").then("after"), n_lifts=2)
    s.do("remove_loop", find(f"{ROW}[_] = _").then("parent").then("parent"))
    s.do("set_memory", ROW, memory)
    s.do("replace_all", [Ref(isa.module, isa.instr(role)) for role in (Role.LOAD, Role.STORE, Role.BROADCAST, Role.FMA)])
    _unroll_all(s, ("vo", "i0", xi))
    _unroll_steps(s, reductions[-1], step_trips)
    s.do("simplify")
    return Replayed(s.proc, tuple(s.steps), script_text(proc.name(), s.steps), None)
