"""Gemmini plan rules: each stands beside the Exo scheduling calls it encodes, with its legality guard.

The rules act on tile plans (:mod:`exo_egraph.targets.gemmini.plans`). Replay (`exo_egraph.targets.gemmini.replay`) turns
a plan into the Exo calls named here; Exo re-checks each of them.
"""

from __future__ import annotations

from typing import Any, Callable

from egglog import String, eq, i64, ne, relation, rewrite, rule, ruleset, union, vars_

from exo_egraph.targets.gemmini.config import DIM
from exo_egraph.targets.gemmini.pattern import GemmPattern
from exo_egraph.targets.gemmini.plans import G, Op, Role
from exo_egraph.targets.gemmini.selection import Selection

from . import Rules, named

Parallel = relation("Parallel", String)  # a loop over this iterator may leave the accumulator's scope

_v, _v2, _x, _y = vars_("v v2 x y", String)
_s, _s2, _e, _e2 = vars_("s s2 e e2", i64)
_b, _p = vars_("b p", G)
_o, _o2, _z, _st = vars_("o o2 z st", Op)


def replace_rules(selection: Selection) -> list:
    """Exo ``replace(p, <the role's loop>, instr)``: one rule per instruction whose body unified with a role.

    Guard: the unifier (`exo_egraph.instrs.unify`) bound every argument and every assertion held;
    a ``do_*`` instruction's config assertion is met by hoisting its config instruction
    (``write_config`` + ``replace`` at the top of the proc), checked again by Exo at replay.
    """
    return [rewrite(Op.role(str(role))).to(Op.instr(b.instr, str(role))) for role, b in selection.bindings]


def divide_tile_rules(g: GemmPattern) -> list:
    """Exo ``divide_loop(p, <loop over v's tiles>, f, [...], perfect=True)``: block v's tiles by f.

    Guard: f divides the tile count; a loop splits once (its parts are the block and the tile loop).
    """
    out = []
    for v in (g.n, g.m, g.k):
        tiles = g.extent(v) // DIM
        for f in range(2, tiles):
            if tiles % f == 0:
                out.append(rewrite(G.loop(v, DIM, tiles, _b)).to(G.loop(v, DIM * f, tiles // f, G.loop(v, DIM, f, _b))))
    return out


def reorder_tile_rules() -> list:
    """Exo ``reorder_loops(p, outer)`` on two adjacent tile loops of different iterators.

    Guard: none beyond distinct iterators — every tile loop is either parallel (distinct outputs)
    or an integer reduction into the accumulator (wrapping i32 sums commute, bit-exact).
    """
    return [
        rule(eq(_p).to(G.loop(_v, _s, _e, G.loop(_v2, _s2, _e2, _b))), ne(_v).to(_v2)).then(
            union(_p).with_(G.loop(_v2, _s2, _e2, G.loop(_v, _s, _e, _b)))
        )
    ]


def stage_rules() -> list:
    """Exo ``expand_dim`` + ``lift_alloc`` + ``fission`` (+ ``remove_loop`` when the data does not
    change with the loop): stage an operand one loop further out, keeping its tiles for reuse.

    Guard: none for ``A``/``B`` (loads copy read-only inputs); two stagings commute (different
    buffers), and a staging commutes with the accumulator's scope (different memories).
    """
    return [
        rewrite(G.loop(_v, _s, _e, G.stage(_x, _o, _b))).to(G.stage(_x, _o, G.loop(_v, _s, _e, _b))),
        rewrite(G.stage(_x, _o, G.loop(_v, _s, _e, _b))).to(G.loop(_v, _s, _e, G.stage(_x, _o, _b))),
        rule(eq(_p).to(G.stage(_x, _o, G.stage(_y, _o2, _b))), ne(_x).to(_y)).then(
            union(_p).with_(G.stage(_y, _o2, G.stage(_x, _o, _b)))
        ),
        rewrite(G.stage(_x, _o, G.acc(_z, _st, _b))).to(G.acc(_z, _st, G.stage(_x, _o, _b))),
        rewrite(G.acc(_z, _st, G.stage(_x, _o, _b))).to(G.stage(_x, _o, G.acc(_z, _st, _b))),
    ]


def parallel(v: Any) -> list:
    """The accumulator's guard: ``v`` is a parallel loop (a `Parallel` fact of the kernel)."""
    return [Parallel(v)]


def accumulator_rules(crosses: Callable[[Any], list] = parallel) -> list:
    """Exo ``expand_dim`` + ``lift_alloc`` + ``fission`` of the accumulator: its tiles are zeroed
    and stored one loop further out (or in), over all the tiles that loop covers.

    Guard (``crosses``): the loop is parallel. Zeroing and storing the accumulator inside a
    reduction loop would drop partial sums; the default guard is the only sound one (tests pass
    another to show the checks catch it).
    """
    return [
        rule(eq(_p).to(G.loop(_v, _s, _e, G.acc(_z, _st, _b))), *crosses(_v)).then(
            union(_p).with_(G.acc(_z, _st, G.loop(_v, _s, _e, _b)))
        ),
        rule(eq(_p).to(G.acc(_z, _st, G.loop(_v, _s, _e, _b))), *crosses(_v)).then(
            union(_p).with_(G.loop(_v, _s, _e, G.acc(_z, _st, _b)))
        ),
    ]


def double_buffer_rules(crosses: Callable[[Any], list] = parallel) -> list:
    """Exo ``expand_dim(p, buf, 2, "<loop> % 2")`` + ``lift_alloc``: the staged operand, or the
    accumulator, alternates between two buffers across the iterations of the loop right around
    it. Program order is unchanged; under Gemmini's decoupled controllers the next iteration's
    loads (or zeroes) no longer wait for this iteration's computes (or stores) to finish with the
    buffer, so they overlap.

    Guard: the loop is the one right around the buffer (its iterator indexes the buffer where
    it is allocated); the accumulator's loop is parallel (``crosses``, as for `accumulator_rules`).
    Twice the buffer must fit: capacity is checked on every extracted plan (`Footprint.fits`).
    """
    return [
        rewrite(G.loop(_v, _s, _e, G.stage(_x, _o, _b))).to(G.loop(_v, _s, _e, G.stage2(_x, _o, _b))),
        rule(eq(_p).to(G.loop(_v, _s, _e, G.acc(_z, _st, _b))), *crosses(_v)).then(
            union(_p).with_(G.loop(_v, _s, _e, G.acc2(_z, _st, _b)))
        ),
    ]


def load_ahead_rules() -> list:
    """Exo ``expand_dim`` (a buffer per trip) + ``lift_alloc``, ``fission``, ``cut_loop`` +
    ``shift_loop``, ``cut_loop`` + ``fuse``, ``divide_loop`` + ``reorder_loops`` + ``fuse`` and
    ``resize_dim(..., fold=True)`` (`exo_egraph.targets.gemmini.replay._load_ahead`): a
    double-buffered staging loads the next trip of the loop around it during this trip, in
    chunks spread over the loops below (`exo_egraph.targets.gemmini.plans.spread_loads`). Same
    tiles, same buffers; the decoupled model prices the order: Gemmini's load station runs its
    commands in order, and a trip's loads issued at once hold back the loads its steps wait for.

    Guard: the staging is double-buffered, so the next trip's loads go to the buffer this trip
    does not read (loads copy read-only inputs: any trip may load early). Any loop around it
    will do, whichever later rules put there (a loop of one trip leaves empty cuts); it is never
    one the replay peels for a first-step zero, which needs every staging above the reduction
    loops (`first_step_ok`, checked on every extracted plan).
    """
    return [rewrite(G.loop(_v, _s, _e, G.stage2(_x, _o, _b))).to(G.loop(_v, _s, _e, G.stage_ahead(_x, _o, _b)))]


def first_step_rules(selection: Selection) -> list:
    """Exo ``fuse`` (zero nest into the compute nest), ``cut_loop`` + ``unroll_loop`` (peel the
    first reduction step), ``fuse`` again and ``replace(p, <zero + first step>, matmul_i8)``: the
    accumulator's zero is done by a plain (overwriting) matmul on the first reduction step, so
    no zero instruction runs. The zero role is then filled by that plain matmul.

    Guard: an instruction unified with the zero-then-multiply nest (the zero_mac role), and
    `first_step_ok` on the accumulator's body. That guard is structural and the members of an
    e-class differ in structure, so extraction checks it on each plan it builds.
    """
    zero = str(Role.ZERO)
    return [rewrite(Op.role(zero)).to(Op.instr(b.instr, zero)) for b in selection.for_role(Role.ZERO_MAC)]


def gemmini_rules(g: GemmPattern, selection: Selection, accumulator: list | None = None, buffers: bool = False) -> Rules:
    """The Gemmini plan rules for kernel ``g`` with instructions ``selection``, and their facts
    (``accumulator``: other accumulator rules than `accumulator_rules`, for testing the checks;
    ``buffers``: with the double-buffering rules too, in one e-graph)."""
    rules, names = named(
        [
            ("replace", replace_rules(selection)),
            ("first_step", first_step_rules(selection)),
            ("divide_loop", divide_tile_rules(g)),
            ("reorder_loops", reorder_tile_rules()),
            ("stage_mem", stage_rules()),
            ("lift_alloc(acc)", accumulator_rules() if accumulator is None else accumulator),
            *([("double_buffer", double_buffer_rules()), ("load_ahead", load_ahead_rules())] if buffers else []),
        ]
    )
    return Rules(ruleset(*rules, name="gemmini"), names, facts=tuple(Parallel(v) for v in g.parallel))


def buffer_rules(g: GemmPattern) -> Rules:
    """The double-buffering rules (and loading ahead) alone: the second phase of the target's saturation, from the
    first phase's fastest plans (double buffering every plan of the first would multiply its
    e-graph by four)."""
    rules, names = named([("double_buffer", double_buffer_rules()), ("load_ahead", load_ahead_rules())])
    return Rules(ruleset(*rules, name="gemmini_buffers"), names, facts=tuple(Parallel(v) for v in g.parallel))
