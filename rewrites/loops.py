"""Loop rules: each stands beside the Exo scheduling call it encodes, with its legality guard.

Headers act on loop nests without touching bodies (see :mod:`exo_egraph.terms`): splitting
and reordering rewrite only the ``Hdr`` list, so the e-graph shares every body.
"""

from __future__ import annotations

from dataclasses import dataclass

from egglog import String, StringLike, eq, ne, function, i64, i64Like, relation, rewrite, rule, ruleset, union, var, vars_

from exo_egraph import terms as t
from exo_egraph.ir import Aff, AffL, Block, Dim, Hdr, Stmt

from . import Rules, named
from .guards import (
    BlockStmt,
    Indep,
    LeafBlock,
    NoAlloc,
    NoCutNext,
    NotCut,
    StrictKey,
    Swappable,
    guard_rules,
    leaf_facts,
)


@dataclass(frozen=True)
class LoopRuleConfig:
    """Which loop rules fire and with which constants."""

    factors: tuple[int, ...] = ()  # divide_loop factors; empty: every divisor allowed by min_part
    min_part: int = 4  # neither loop of a split may run fewer trips than this
    cut_factors: tuple[int, ...] = (4, 8, 16)  # divide_loop factors tried with tail="cut" where they don't divide
    unroll_limit: int = 8  # unroll_loop only loops of at most this many trips
    unroll_copies: int = 8  # ... and only while a nest's unrolled code has at most this many body copies
    reorder: bool = True
    tiles_in_order: bool = False  # reorder_loops never swaps two dims of one loop: its tiles stay outer to inner
    divide: bool = True
    unroll: bool = True
    fission: bool = True
    fuse: bool = True
    lift_alloc: bool = True
    reassociate: bool = False  # let float += sums change order (not bit-exact, like -ffast-math)


@function
def concat(a: Block, b: Block) -> Block:
    """Helper for fuse: the statements of ``a`` then ``b``. Not a program construct (never extracted)."""


@function
def hconcat(a: Hdr, b: Hdr) -> Hdr:
    """Helper for nest merging: the dims of ``a`` then ``b``. Not a program construct (never extracted)."""


ConstShape = relation("ConstShape", AffL)
# every dim of the header is unrolled, making this many straight-line copies of the body
UnrolledCopies = relation("UnrolledCopies", Hdr, i64)

_v, _v2, _w, _m, _ty, _mem, _x = vars_("v v2 w m ty mem x", String)
_s, _s2, _inner = vars_("s s2 inner", Stmt)
_b, _b1, _b2, _r, _r2, _tail, _bl, _body, _bl_body = vars_("b b1 b2 r r2 tail bl body bl_body", Block)
_h, _hr, _h2, _hr2 = vars_("h hr h2 hr2", Hdr)
_d, _d2 = vars_("d d2", Dim)
_st, _st2, _e, _e2, _n, _k = vars_("st st2 e e2 n k", i64)
_lo, _hi = vars_("lo hi", Aff)
_shape, _l = vars_("shape l", AffL)


HEADER_CELLS = (Hdr.perm, Hdr.fixed)  # permutable and fixed-order header cells


def band_rules() -> list:
    """A constant-trip ``seq`` loop is a one-dim nest; a permutable perfect nest is one band.

    No Exo call: these are identities of the encoding. Guard of ``perm``: every pair of leaves
    in the body is independent across iterations of the loop (`rewrites.guards.Indep`), so any
    order and tiling of the band's loops is legal (what Exo's ``reorder_loops`` then re-checks).
    Guard of both: the body allocates nothing (``lift_alloc`` first), since unrolling would make
    Exo duplicate and rename the buffer.
    """
    loop = Stmt.loop(_v, Aff.c(0), Aff.c(_n), "seq", _b)
    return [
        rule(eq(_s).to(loop), _n > 0, NoAlloc(_b)).then(union(_s).with_(Stmt.nest(Hdr.fixed(Dim(_v, 1, _n), Hdr.nil()), _b))),
        *perm_band_rules(),
        # an unrolled nest that is a nest's whole body joins it: straight-line copies inside the
        # loops around them, so the cost model sees one band. Headers stay all-perm or all-fixed
        # (a term's nest has one permutability flag). Not before a cut tail: the tail keeps the
        # nest's body, which merging would change.
        *[
            rule(
                eq(_bl).to(Block.cons(_s, _tail)),
                eq(_s).to(Stmt.nest(_h, Block.cons(_inner, Block.nil()))),
                eq(_inner).to(Stmt.nest(_h2, _body)),
                eq(_h).to(cell(_d, _hr)),
                eq(_h2).to(cell(_d2, _hr2)),
                UnrolledCopies(_h2, _k),
                NoCutNext(_tail),
            ).then(union(_bl).with_(Block.cons(Stmt.nest(hconcat(_h, _h2), _body), _tail)))
            for cell in HEADER_CELLS
        ],
        rule(eq(_h).to(Hdr.nil())).then(UnrolledCopies(_h, i64(1))),
        *[
            rule(eq(_h).to(cell(Dim.unrolled(_v, _st, _e), _hr)), UnrolledCopies(_hr, _k)).then(
                UnrolledCopies(_h, _k * _e)
            )
            for cell in HEADER_CELLS
        ],
        rewrite(hconcat(Hdr.nil(), _h2)).to(_h2),
        *[rewrite(hconcat(cell(_d, _hr), _h2)).to(cell(_d, hconcat(_hr, _h2))) for cell in HEADER_CELLS],
    ]


def perm_band_rules(independent=lambda body, v: [Indep(body, body, v)]) -> list:
    """A loop is a permutable one-dim nest, and joins a permutable nest that is its whole body,
    when ``independent(body, v)`` holds: by default `Indep` (no dependence across iterations of
    ``v``). Tests pass a weaker guard to prove the soundness properties catch a broken rule."""
    return [
        rule(eq(_s).to(Stmt.loop(_v, Aff.c(0), Aff.c(_n), "seq", _b)), _n > 0, NoAlloc(_b), *independent(_b, _v)).then(
            union(_s).with_(Stmt.nest(Hdr.perm(Dim(_v, 1, _n), Hdr.nil()), _b))
        ),
        rule(
            eq(_s).to(Stmt.loop(_v, Aff.c(0), Aff.c(_n), "seq", Block.cons(_inner, Block.nil()))),
            eq(_inner).to(Stmt.nest(_h, _body)),
            eq(_h).to(Hdr.perm(_d, _hr)),
            _n > 0,
            NoAlloc(_body),
            *independent(_body, _v),
        ).then(union(_s).with_(Stmt.nest(Hdr.perm(Dim(_v, 1, _n), _h), _body))),
    ]


def reorder_loops_rules(tiles_in_order: bool = False) -> list:
    """Exo ``reorder_loops(p, outer)``: swap two adjacent loops of a permutable band.

    Guard: the header cell is ``perm`` (the band's permutability guard held), and the two dims
    are `Swappable` (not two loops along which float ``+=`` instances into one location differ:
    their order is its rounding). Unrolled dims are not loops and never move.
    """
    a, b = Dim(_v, _st, _e), Dim(_v2, _st2, _e2)
    in_order = (ne(_v).to(_v2),) if tiles_in_order else ()
    return [
        rule(eq(_h).to(Hdr.perm(a, Hdr.perm(b, _hr))), Swappable(_v, _v2), *in_order).then(
            union(_h).with_(Hdr.perm(b, Hdr.perm(a, _hr)))
        )
    ]


def divide_loop_rules(factors: tuple[int, ...], min_part: int) -> list:
    """Exo ``divide_loop(p, loop, k, [outer, inner], perfect=True)``.

    ``Dim(v, s, e)`` becomes ``Dim(v, s*k, e/k)`` over ``Dim(v, s, k)``: the canonical form, so
    every way of reaching the same tiling (split 8 then 4, or 4 then 2) meets in one e-class.
    Guard: ``k`` divides the trip count and both parts run at least ``min_part`` trips.
    Strip-mining never reorders iterations, so fixed-order nests may split too.
    """
    out = []
    for k in factors:
        if k < min_part:
            continue
        for cons in HEADER_CELLS:
            out.append(
                rule(eq(_h).to(cons(Dim(_v, _st, _e), _hr)), eq(_e % k).to(i64(0)), _e >= k * min_part).then(
                    union(_h).with_(cons(Dim(_v, _st * k, _e / k), cons(Dim(_v, _st, k), _hr)))
                )
            )
    return out


def divide_loop_cut_rules(factors: tuple[int, ...], min_part: int) -> list:
    """Exo ``divide_loop(p, loop, k, [outer, inner], tail="cut")`` where ``k`` does not divide the trips.

    ``for v < n`` becomes a nest over ``v < k·(n//k)`` — the same canonical dims as a perfect
    split, so it may be reordered (guard: the permutable-band guard) — followed by the `Cut`
    tail over ``k·(n//k) <= v < n``. Guard: the body allocates nothing, ``n//k >= min_part``.
    """
    out = []
    loop = Stmt.loop(_v, Aff.c(0), Aff.c(_n), "seq", _b)
    for k in factors:
        main = lambda cell: Stmt.nest(cell(Dim(_v, k, _n / k), cell(Dim(_v, 1, k), Hdr.nil())), _b)  # noqa: E731
        cut = Stmt.cut(_v, (_n / k) * k, _n, _b)
        guard = (eq(_bl).to(Block.cons(loop, _tail)), _n % k != i64(0), _n >= k * min_part, NoAlloc(_b))
        out.append(rule(*guard).then(union(_bl).with_(Block.cons(main(Hdr.fixed), Block.cons(cut, _tail)))))
        out.append(
            rule(*guard, Indep(_b, _b, _v)).then(union(_bl).with_(Block.cons(main(Hdr.perm), Block.cons(cut, _tail))))
        )
    return out


# the header's innermost loop dim (only unrolled dims inside it): its trips, and the copies inside
LastLoop = relation("LastLoop", Hdr, i64, i64)


@function
def unroll_last(h: Hdr, v: StringLike, st: i64Like, e: i64Like, k: i64Like) -> Hdr:
    """Helper for unroll: ``h`` with its innermost loop ``Dim(v, st, e)`` (``k`` unrolled copies
    inside it) unrolled. Not a program construct."""


# a representation of the header whose innermost loop dim is Dim(v, st, e), with k unrolled
# copies inside it. A header e-class holds every legal order of its dims, so the helper names
# the dim: only representations where *that* dim is innermost get it unrolled.
LastLoop = relation("LastLoop", Hdr, String, i64, i64, i64)


def unroll_loop_rules(limit: int, max_copies: int) -> list:
    """Exo ``unroll_loop(p, loop)`` of a nest's innermost loop (only unrolled dims inside it).

    Guard: constant trips ≤ ``limit``; the nest's body is straight-line statements; and the
    unrolled code stays within ``max_copies`` copies of it (unrolling loops around loops, or
    every loop of a nest, multiplies code, and Exo's passes recurse over it: a few thousand
    statements exceed Python's recursion limit).
    """
    x = var("x", Hdr)
    return [
        *[
            rule(eq(_h).to(cell(Dim(_v, _st, _e), _hr)), UnrolledCopies(_hr, _k)).then(LastLoop(_h, _v, _st, _e, _k))
            for cell in HEADER_CELLS
        ],
        *[
            rule(eq(_h).to(cell(_d, _hr)), LastLoop(_hr, _v, _st, _e, _k)).then(LastLoop(_h, _v, _st, _e, _k))
            for cell in HEADER_CELLS
        ],
        rule(
            eq(_s).to(Stmt.nest(_h, _b)), LeafBlock(_b), LastLoop(_h, _v, _st, _e, _k), _e <= limit, _e * _k <= max_copies
        ).then(union(_s).with_(Stmt.nest(unroll_last(_h, _v, _st, _e, _k), _b))),
        *[
            rule(eq(x).to(unroll_last(cell(Dim(_v, _st, _e), _hr), _v, _st, _e, _k)), UnrolledCopies(_hr, _k)).then(
                union(x).with_(cell(Dim.unrolled(_v, _st, _e), _hr))
            )
            for cell in HEADER_CELLS
        ],
        *[
            rule(eq(x).to(unroll_last(cell(_d, _hr), _v, _st, _e, _k)), LastLoop(_hr, _v, _st, _e, _k)).then(
                union(x).with_(cell(_d, unroll_last(_hr, _v, _st, _e, _k)))
            )
            for cell in HEADER_CELLS
        ],
    ]


def fission_rules() -> list:
    """Exo ``fission(p, gap_after_first_stmt, n_lifts=1)``: split a loop after its first statement.

    Guard: every leaf of the first statement is independent of every leaf of the rest across
    iterations of the loop, so running all of the first part before the rest reorders nothing
    that conflicts; and the rest does not start with a cut tail (Exo makes a tail together with
    its nest, so replay could not reach them apart); and the body allocates nothing (Exo's
    fission check refuses bodies with allocations more often than the dependence test would:
    ``lift_alloc`` first). Later gaps are reached by fission then fuse.
    """
    loop = Stmt.loop(_v, _lo, _hi, _m, Block.cons(_s, _r))
    return [
        rule(
            eq(_bl).to(Block.cons(loop, _tail)),
            eq(_bl_body).to(Block.cons(_s, _r)),
            eq(_r).to(Block.cons(_s2, _r2)),
            NotCut(_s2),
            StrictKey(_v, _x),
            BlockStmt(_r, _s, _x),
            NoAlloc(_bl_body),
        ).then(
            union(_bl).with_(
                Block.cons(
                    Stmt.loop(_v, _lo, _hi, _m, Block.cons(_s, Block.nil())),
                    Block.cons(Stmt.loop(_v, _lo, _hi, _m, _r), _tail),
                )
            )
        )
    ]


def fuse_rules() -> list:
    """Exo ``fuse(p, loop1, loop2)`` of adjacent loops with the same iterator and bounds.

    Guard: every leaf of the first body is independent of every leaf of the second across
    iterations (the same condition as fission, which fusion inverts), and neither allocates.
    """
    first = Stmt.loop(_v, _lo, _hi, _m, _b1)
    second = Stmt.loop(_v, _lo, _hi, _m, _b2)
    return [
        rule(
            eq(_bl).to(Block.cons(first, Block.cons(second, _tail))),
            StrictKey(_v, _x),
            Indep(_b1, _b2, _x),
            NoAlloc(_b1),
            NoAlloc(_b2),
        ).then(
            union(_bl).with_(Block.cons(Stmt.loop(_v, _lo, _hi, _m, concat(_b1, _b2)), _tail))
        ),
        rewrite(concat(Block.nil(), _b)).to(_b),
        rewrite(concat(Block.cons(_s, _r), _b)).to(Block.cons(_s, concat(_r, _b))),
    ]


def lift_alloc_rules() -> list:
    """Exo ``lift_alloc(p, alloc, n_lifts=1)`` of an allocation that opens a loop body.

    Guard: the shape does not depend on the loop (it is constant).
    """
    alloc = Stmt.alloc(_x, _ty, _shape, _mem)
    return [
        rule(eq(_l).to(AffL.nil())).then(ConstShape(_l)),
        rule(eq(_l).to(AffL.cons(Aff.c(_k), _shape)), ConstShape(_shape)).then(ConstShape(_l)),
        rule(
            eq(_bl).to(Block.cons(Stmt.loop(_v, _lo, _hi, _m, Block.cons(alloc, _r)), _tail)), ConstShape(_shape)
        ).then(union(_bl).with_(Block.cons(alloc, Block.cons(Stmt.loop(_v, _lo, _hi, _m, _r), _tail)))),
    ]


def split_factors(p: t.Proc, min_part: int) -> tuple[int, ...]:
    """Every factor that splits some constant trip count of ``p`` into parts of ≥ ``min_part``."""
    trips = {s.hi.const for s in t.walk(p.body) if isinstance(s, t.Loop) and s.lo == t.Aff() and s.hi.is_const}
    return tuple(sorted({k for n in trips for k in range(min_part, n // min_part + 1) if n % k == 0}))


def loop_rules(term: t.Proc, cfg: LoopRuleConfig = LoopRuleConfig(), extra: tuple = ()) -> Rules:
    """The loop rules ``cfg`` enables for ``term`` (plus ``extra`` rules, say a rule under test), named
    by the Exo call each stands for, with the guard facts of ``term``'s leaves."""
    factors = cfg.factors or split_factors(term, cfg.min_part)
    groups = [("band", band_rules()), ("extra", list(extra))]
    if cfg.reorder:
        groups.append(("reorder_loops", reorder_loops_rules(cfg.tiles_in_order)))
    if cfg.divide:
        groups.append(("divide_loop", divide_loop_rules(factors, cfg.min_part)))
        groups.append(("divide_loop(cut)", divide_loop_cut_rules(cfg.cut_factors, cfg.min_part)))
    if cfg.unroll:
        groups.append(("unroll_loop", unroll_loop_rules(cfg.unroll_limit, cfg.unroll_copies)))
    if cfg.fission:
        groups.append(("fission", fission_rules()))
    if cfg.fuse:
        groups.append(("fuse", fuse_rules()))
    if cfg.lift_alloc:
        groups.append(("lift_alloc", lift_alloc_rules()))
    rules, names = named(groups)
    loop_vars = (s.var for s in t.walk(term.body) if isinstance(s, t.Loop))
    facts = tuple(leaf_facts(term, loop_vars, cfg.reassociate))
    return Rules(ruleset(*rules, name="loops"), names, facts=facts, before=guard_rules.saturate())
