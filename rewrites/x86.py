"""x86 micro-kernel rules: each stands beside the Exo scheduling calls it encodes, with its legality guard.

The rules act on plans of a matmul-like kernel (`exo_egraph.targets.x86.pattern`): a register tile
``XT.tile(rows, vectors, kc)`` under the loops over tiles, ``XP.plan(order, tile)``. Every plan the
e-graph holds is one schedule; `exo_egraph.targets.x86.replay` turns it into the Exo calls named
here, and Exo re-checks each of them. Guards are decided in Python from the kernel's sizes and the
ISA (divisibility, the register file), so a rule is emitted only where it is legal.
"""

from __future__ import annotations

from itertools import permutations

from egglog import Expr as EggExpr
from egglog import StringLike, i64Like, rewrite, ruleset, var

from exo_egraph.targets.x86.isa import Isa
from exo_egraph.targets.x86.pattern import Kernel, NotMicroKernel, Plan, tail_rows

from . import Rules, named

MIN_KC = 16  # a reduction block shorter than this reloads the register tile too often to pay


class XT(EggExpr):
    """The register tile: ``rows`` × ``vectors`` output vectors held across ``kc`` reduction steps."""

    @classmethod
    def tile(cls, rows: i64Like, vectors: i64Like, kc: i64Like) -> XT: ...


class XP(EggExpr):
    """A plan: the loops over tiles (``order``, names separated by spaces, outermost first) around a tile."""

    @classmethod
    def plan(cls, order: StringLike, tile: XT) -> XP: ...


def registers_needed(rows: int, vectors: int) -> int:
    """Vector registers a tile holds live: its accumulators, one row of the column operand, one
    broadcast (a matrix-vector tile: its partial sums, the vector's ``vectors``, one of the matrix)."""
    return rows * vectors + vectors + 1


def fits(mk: Kernel, isa: Isa, rows: int, vectors: int) -> bool:
    """Guard of the tile rules: whole tiles cover the output (``perfect`` divides), or the rows left
    after the whole tiles make a tile of their own (`tail_rows`), in the register file."""
    return (
        (mk.extent(mk.x) % rows == 0 or tail_rows(mk, rows) > 0)
        and mk.extent(mk.y) % (vectors * isa.width) == 0
        and registers_needed(rows, vectors) <= isa.registers
    )


def tiles(mk: Kernel, isa: Isa) -> list[tuple[int, int]]:
    """Every (rows, vectors) that `fits`."""
    return [
        (r, v)
        for r in range(1, mk.extent(mk.x) + 1)
        for v in range(1, mk.extent(mk.y) // isa.width + 1)
        if fits(mk, isa, r, v)
    ]


def reduction_blocks(mk: Kernel) -> list[int]:
    """Guard of `divide_reduction_rules`: one reduction loop (several, as in a convolution, stay
    whole), and the block divides it and is at least `MIN_KC`."""
    k = mk.steps
    return [kc for kc in range(MIN_KC, k) if k % kc == 0] if mk.blockable else []


def tile_rules(mk: Kernel, isa: Isa) -> tuple[list, list]:
    """Exo ``divide_loop(p, x, rows, perfect=True)`` / ``divide_loop(p, y, vectors * width, perfect=True)``,
    then the staging and ``unroll_loop`` of the register tile (`replay`; a matrix-vector product's
    tile holds partial sums along ``y``: ``stage_mem(..., accum=True)``): grow the tile by a factor
    along rows, or along vectors, or by one row (every legal tile is reached: rows that leave a tail,
    ``divide_loop(..., tail="cut")``, `tail_rows`, need not be a product of small factors). Guard:
    the grown tile `fits`."""
    legal = set(tiles(mk, isa))
    kcs = [mk.steps, *reduction_blocks(mk)]
    rows, vectors = [], []
    for r, v in legal:
        for kc in kcs:
            here = XT.tile(r, v, kc)
            rows += [rewrite(here).to(XT.tile(r * f, v, kc)) for f in (2, 3, 5, 7) if (r * f, v) in legal]
            rows += [rewrite(here).to(XT.tile(r + 1, v, kc))] if (r + 1, v) in legal else []
            vectors += [rewrite(here).to(XT.tile(r, v * f, kc)) for f in (2, 3, 5, 7) if (r, v * f) in legal]
    return rows, vectors


def divide_reduction_rules(mk: Kernel, isa: Isa) -> list:
    """Exo ``divide_loop(p, r, kc, perfect=True)`` and ``reorder_loops`` of its outer part out of the
    tile: the register tile is loaded and stored once per block of ``kc`` steps. Guard: `reduction_blocks`.
    Every output element still sums its reduction in order, so results stay as the input computes them."""
    k = mk.steps
    out = []
    for order in (f"{mk.x} {mk.y}", f"{mk.y} {mk.x}"):
        for r, v in tiles(mk, isa):
            out += [
                rewrite(XP.plan(order, XT.tile(r, v, k))).to(XP.plan(f"{mk.r} {order}", XT.tile(r, v, kc)))
                for kc in reduction_blocks(mk)
            ]
    return out


def reorder_rules(mk: Kernel) -> list:
    """Exo ``reorder_loops(p, "a b")`` of two adjacent loops over tiles. Guard: always legal here —
    the tile loops over ``x`` and ``y`` are parallel, and moving the loop over reduction blocks
    keeps each output element's blocks in order."""
    out = []
    for names in mk.orders:
        for order in permutations(names):
            for i in range(len(order) - 1):
                swapped = list(order)
                swapped[i], swapped[i + 1] = swapped[i + 1], swapped[i]
                out.append((" ".join(order), " ".join(swapped)))
    tile = var("tile", XT)
    return [rewrite(XP.plan(a, tile)).to(XP.plan(b, tile)) for a, b in out]


def initial_plan(mk: Kernel, isa: Isa) -> Plan:
    """The smallest tile (one row, one vector, the whole reduction), tiles in the order written."""
    if mk.extent(mk.y) % isa.width:
        raise NotMicroKernel(
            f"{mk.proc}: {mk.y} runs {mk.extent(mk.y)}, not a multiple of the {isa.name} vector width {isa.width} "
            "(the target cuts a tail off a loop of one vector or more)"
        )
    order = tuple(v for v in mk.loops if v in mk.orders[0])
    return Plan(1, 1, mk.steps, order)


def to_egg(plan: Plan) -> XP:
    return XP.plan(" ".join(plan.order), XT.tile(plan.rows, plan.vectors, plan.kc))


def x86_rules(mk: Kernel, isa: Isa) -> Rules:
    """The micro-kernel rules for ``mk`` on ``isa``, named by the Exo calls they stand for."""
    rows, vectors = tile_rules(mk, isa)
    groups = [
        ("divide_loop(rows)", rows),
        ("divide_loop(vectors)", vectors),
        ("divide_loop(reduction)", divide_reduction_rules(mk, isa)),
        ("reorder_loops", reorder_rules(mk)),
    ]
    rules, names = named(groups)
    return Rules(ruleset(*rules, name="x86"), names)
