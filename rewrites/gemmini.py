"""Gemmini plan rules: each stands beside the Exo scheduling calls it encodes, with its legality guard.

The rules act on tile plans (:mod:`exo_egraph.plans`). Replay (`exo_egraph.replay_gemmini`) turns
a plan into the Exo calls named here; Exo re-checks each of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType, ModuleType
from typing import Mapping

from egglog import String, i64, ne, relation, rewrite, rule, ruleset, union, eq, vars_

from exo_egraph.lower_gemmini import BLOCK, DIM, GemmPattern
from exo_egraph.plans import G, Op, PAcc, Plan, PLoop, chain
from rewrites.instrs import Binding, InstrPattern, instr_patterns, unify

Parallel = relation("Parallel", String)  # a loop over this iterator may leave the accumulator's scope

_v, _v2, _x, _y = vars_("v v2 x y", String)
_s, _s2, _e, _e2 = vars_("s s2 e e2", i64)
_b, _p = vars_("b p", G)
_o, _o2, _z, _st = vars_("o o2 z st", Op)


@dataclass(frozen=True)
class Selection:
    """Instruction selection for one kernel: every (role, instruction) whose body unified."""

    bindings: tuple[tuple[str, Binding], ...]  # (role, binding)
    all_patterns: Mapping[str, InstrPattern]  # every proc of the platform (instructions and twins), by name
    blocks: frozenset[str] = frozenset()  # loads that move up to BLOCK column tiles at once

    def for_role(self, role: str) -> tuple[Binding, ...]:
        return tuple(b for r, b in self.bindings if r == role)

    def binding(self, role: str, instr: str) -> Binding:
        return next(b for r, b in self.bindings if r == role and b.instr == instr)

    def first_step(self, zero: str) -> bool:
        """Is ``zero`` a plain matmul that zeroes by doing the first reduction step (`first_step_rules`)?"""
        return any(b.instr == zero for b in self.for_role("zero_mac"))

    def pattern(self, name: str) -> InstrPattern:
        return self.all_patterns[name]


def select_instructions(g: GemmPattern, platform: ModuleType) -> Selection:
    """Unify every ``@instr`` of ``platform`` with every role of ``g`` (Exo's ``replace``)."""
    buffers = dict(g.buffers)
    patterns = instr_patterns(platform)
    found, blocks = [], set()
    for pattern in patterns:
        for role, nest in g.roles:
            binding = unify(pattern, nest, buffers)
            if binding is not None:
                if role.endswith("_block"):  # a block load fills the load role, for more tiles at once
                    role = role.removesuffix("_block")
                    blocks.add(binding.instr)
                found.append((role, binding))
    every = {p.name: p for p in instr_patterns(platform, plain_procs=True)}
    return Selection(tuple(found), MappingProxyType(every), frozenset(blocks))


def replace_rules(selection: Selection) -> list:
    """Exo ``replace(p, <the role's loop>, instr)``: one rule per instruction whose body unified with a role.

    Guard: the unifier (`rewrites.instrs.unify`) bound every argument and every assertion held;
    a ``do_*`` instruction's config assertion is met by hoisting its config instruction
    (``write_config`` + ``replace`` at the top of the proc), checked again by Exo at replay.
    """
    return [rewrite(Op.role(role)).to(Op.instr(b.instr, role)) for role, b in selection.bindings]


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

    Guard: none for ``A``/``B`` (loads copy read-only inputs). The accumulator (``acc``) may cross
    only a `Parallel` loop: zeroing and storing it inside a reduction loop would drop partial sums.
    Two stagings commute (different buffers).
    """
    return [
        rewrite(G.loop(_v, _s, _e, G.stage(_x, _o, _b))).to(G.stage(_x, _o, G.loop(_v, _s, _e, _b))),
        rewrite(G.stage(_x, _o, G.loop(_v, _s, _e, _b))).to(G.loop(_v, _s, _e, G.stage(_x, _o, _b))),
        rule(eq(_p).to(G.loop(_v, _s, _e, G.acc(_z, _st, _b))), Parallel(_v)).then(
            union(_p).with_(G.acc(_z, _st, G.loop(_v, _s, _e, _b)))
        ),
        rule(eq(_p).to(G.acc(_z, _st, G.loop(_v, _s, _e, _b))), Parallel(_v)).then(
            union(_p).with_(G.loop(_v, _s, _e, G.acc(_z, _st, _b)))
        ),
        rule(eq(_p).to(G.stage(_x, _o, G.stage(_y, _o2, _b))), ne(_x).to(_y)).then(
            union(_p).with_(G.stage(_y, _o2, G.stage(_x, _o, _b)))
        ),
        rewrite(G.stage(_x, _o, G.acc(_z, _st, _b))).to(G.acc(_z, _st, G.stage(_x, _o, _b))),
        rewrite(G.acc(_z, _st, G.stage(_x, _o, _b))).to(G.stage(_x, _o, G.acc(_z, _st, _b))),
    ]


def block_factor(column_tiles: int | None) -> int | None:
    """Column tiles one block load moves when a staging covers ``column_tiles`` consecutive ones:
    the largest count up to BLOCK that divides them; None below two (then a tile load does)."""
    if column_tiles is None:
        return None
    return next((f for f in range(BLOCK, 1, -1) if column_tiles % f == 0), None)


def first_step_rules(selection: Selection) -> list:
    """Exo ``fuse`` (zero nest into the compute nest), ``cut_loop`` + ``unroll_loop`` (peel the
    first reduction step), ``fuse`` again and ``replace(p, <zero + first step>, matmul_i8)``: the
    accumulator's zero is done by a plain (overwriting) matmul on the first reduction step, so
    no zero instruction runs. The zero role is then filled by that plain matmul.

    Guard: an instruction unified with the zero-then-multiply nest (the zero_mac role), and
    `first_step_ok` on the accumulator's body. That guard is structural and the members of an
    e-class differ in structure, so extraction checks it on each plan it builds.
    """
    return [rewrite(Op.role("zero")).to(Op.instr(b.instr, "zero")) for b in selection.for_role("zero_mac")]


def first_step_ok(g: GemmPattern, body: Plan) -> bool:
    """The accumulator's body is parallel loops (stagings among them) over reduction loops only,
    so the first reduction step is one region that can be peeled and fused with the zero."""
    links = chain(body)
    reducing = False
    for x in links[:-1]:
        if isinstance(x, PLoop) and x.var in g.reduction:
            reducing = True
        elif reducing or isinstance(x, PAcc) or (isinstance(x, PLoop) and x.var not in g.parallel):
            return False
    return True


def gemmini_facts(g: GemmPattern) -> list:
    return [Parallel(v) for v in g.parallel]


def gemmini_ruleset(g: GemmPattern, selection: Selection):
    return ruleset(
        *replace_rules(selection),
        *first_step_rules(selection),
        *divide_tile_rules(g),
        *reorder_tile_rules(),
        *stage_rules(),
        name="gemmini",
    )
