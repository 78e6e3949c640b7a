"""Dependence guards shared by the loop rules, as egglog relations.

The one fact computed in Python is `leaf_independent(a, b, v)`: no instance of leaf statement
``a`` and of leaf ``b`` at *different* iterations of loop ``v`` touch the same location with a
write, except commuting ``+=`` reductions. Loop transforms never change leaf statements (the
body keeps its original iterators), so these facts, asserted once for every pair of leaves,
stay true for every term the e-graph builds. egglog rules lift them to blocks:
``Indep(X, Y, key)`` — every leaf of block ``X`` is independent of every leaf of block ``Y``.

Floating-point ``+=`` is not associative, so bit-exactness needs care (unless the user allows
reassociation). Two keys per loop variable ``v``:
- ``v``: float reductions commute. Band formation uses it; the order of a float reduction is then
  kept by `Swappable`: the reorder rule never swaps two loops along which two instances of float
  ``+=`` into one location may differ (`sum_order_pairs`), so each location still sums in the
  original order.
- ``v/ordered``: float reductions conflict unless pinned. Fission and fusion use it (they would
  interleave two reductions into one location differently).
"""

from __future__ import annotations

from fractions import Fraction
from itertools import product
from typing import Iterable

from egglog import String, eq, i64, relation, rule, ruleset, var, vars_

from exo_egraph import ir
from exo_egraph import terms as t

# ----------------------------------------------------------------------------- Python side


def accesses(s: t.Stmt) -> list[tuple[str, tuple[t.Aff, ...] | None, str]]:
    """(buffer, index or None when unknown, kind) for each access of a leaf; kind is read/write/reduce."""
    out: list[tuple[str, tuple[t.Aff, ...] | None, str]] = []

    def reads(e: t.Expr) -> None:
        match e:
            case t.Read(buf, idx):
                out.append((buf, idx, "read"))
            case t.BinOp(_, lhs, rhs):
                reads(lhs)
                reads(rhs)
            case t.USub(arg):
                reads(arg)
            case t.BuiltIn(_, args):
                for a in args:
                    reads(a)
            case t.ReadConfig(config, field):
                out.append((f"{config}.{field}", (), "read"))
            case t.WindowExpr(buf, _):
                out.append((buf, None, "read"))

    match s:
        case t.Assign(buf, idx, rhs):
            reads(rhs)
            out.append((buf, idx, "write"))
        case t.Reduce(buf, idx, rhs):
            reads(rhs)
            out.append((buf, idx, "reduce"))
        case t.WriteConfig(config, field, rhs):
            reads(rhs)
            out.append((f"{config}.{field}", (), "write"))
    return out


def _pins(idx: tuple[t.Aff, ...] | None, v: str, dim: int, const: int, coef: int) -> bool:
    return idx is not None and len(idx) > dim and idx[dim] == t.Aff(((v, coef),), const)


def _buffers_used(s: t.Stmt) -> set[str]:
    return {buf for buf, _, _ in accesses(s)}


def leaf_independent(a: t.Stmt, b: t.Stmt, v: str, ordered_bufs: frozenset[str] = frozenset()) -> bool:
    """True when instances of ``a`` and ``b`` at different values of ``v`` never conflict.

    ``+=`` reductions commute, except into ``ordered_bufs`` (float buffers whose sum order matters).
    """
    if isinstance(a, t.Pass) or isinstance(b, t.Pass):
        return True
    if isinstance(a, (t.Call, t.WindowStmt)) or isinstance(b, (t.Call, t.WindowStmt)):
        return False  # opaque: a call's effects are not summarised (yet)
    if isinstance(a, t.Alloc) or isinstance(b, t.Alloc):
        alloc, other = (a, b) if isinstance(a, t.Alloc) else (b, a)
        # An allocation may not be separated from its uses, nor shared across iterations.
        return alloc == other or (not isinstance(other, t.Alloc) and alloc.name not in _buffers_used(other))
    acc_a, acc_b = accesses(a), accesses(b)
    for buf in {x for x, _, _ in acc_a} & {x for x, _, _ in acc_b}:
        both = [x for x in acc_a + acc_b if x[0] == buf]
        kinds = {k for _, _, k in both}
        if kinds == {"read"} or (kinds == {"reduce"} and buf not in ordered_bufs):
            continue  # reads never conflict; += reductions commute
        # Some index dimension must be `coef*v + c`, the same for all accesses: then two
        # accesses to one location happen at the same value of v.
        first = both[0][1]
        if first is None:
            return False
        pinned = any(
            len(first[d].terms) == 1
            and first[d].terms[0][0] == v
            and all(_pins(idx, v, d, first[d].const, first[d].terms[0][1]) for _, idx, _ in both)
            for d in range(len(first))
        )
        if not pinned:
            return False
    return True


# ----------------------------------------------------------------------------- egglog side

LeafIndep = relation("LeafIndep", ir.Stmt, ir.Stmt, String)  # asserted from `leaf_independent`
IsLeaf = relation("IsLeaf", ir.Stmt)
LoopVar = relation("LoopVar", String)  # every key: v and v/ordered
StrictKey = relation("StrictKey", String, String)  # loop variable v → its key v/ordered
Swappable = relation("Swappable", String, String)  # dims of these variables may be swapped
BlockLeaf = relation("BlockLeaf", ir.Block, ir.Stmt, String)  # every leaf of block X vs leaf y
StmtLeaf = relation("StmtLeaf", ir.Stmt, ir.Stmt, String)  # every leaf of statement s vs leaf y
BlockStmt = relation("BlockStmt", ir.Block, ir.Stmt, String)  # every leaf of X vs every leaf of s
Indep = relation("Indep", ir.Block, ir.Block, String)  # every leaf of X vs every leaf of Y
# no allocation anywhere inside: unrolling or splitting such a body would make Exo duplicate
# and rename the buffer, which terms (names by string) cannot follow
NoAllocLeaf = relation("NoAllocLeaf", ir.Stmt)
# a statement other than a cut tail: a tail stays right after the nest it was cut from
NotCut = relation("NotCut", ir.Stmt)
# a block that does not start with a cut tail (so the statement before it has no tail to match)
NoCutNext = relation("NoCutNext", ir.Block)
NoAlloc = relation("NoAlloc", ir.Block)
LeafBlock = relation("LeafBlock", ir.Block)  # straight-line: leaf statements only
NoAllocStmt = relation("NoAllocStmt", ir.Stmt)


FLOAT_TYPES = frozenset({"f16", "f32", "f64", "R"})


def float_buffers(p: t.Proc) -> frozenset[str]:
    names = {a.name for a in p.args if a.typ in FLOAT_TYPES}
    return frozenset(names | {s.name for s in t.leaves(p.body) if isinstance(s, t.Alloc) and s.typ in FLOAT_TYPES})


def _rank(rows: list[list[Fraction]]) -> int:
    """Rank of a small rational matrix (Gaussian elimination)."""
    rows = [r[:] for r in rows]
    rank, cols = 0, len(rows[0]) if rows else 0
    for col in range(cols):
        pivot = next((r for r in range(rank, len(rows)) if rows[r][col] != 0), None)
        if pivot is None:
            continue
        rows[rank], rows[pivot] = rows[pivot], rows[rank]
        for r in range(len(rows)):
            if r != rank and rows[r][col] != 0:
                f = rows[r][col] / rows[rank][col]
                rows[r] = [x - f * y for x, y in zip(rows[r], rows[rank])]
        rank += 1
    return rank


def _unpinned(a: tuple[tuple[t.Aff, ...], tuple[str, ...]], b: tuple[tuple[t.Aff, ...], tuple[str, ...]]) -> set[str]:
    """Loop variables shared by two reductions that may differ between instances hitting one location.

    Unknowns: the iterators of ``a`` (x), of ``b`` (y), and any other symbol (a size, shared).
    ``v`` is pinned when ``idx_a(x) = idx_b(y)`` implies ``x_v = y_v`` over the rationals (so over
    the integers too), or when the equations have no solution at all.
    """
    (idx_a, vars_a), (idx_b, vars_b) = a, b
    shared = [v for v in vars_a if v in vars_b]
    symbols = sorted({n for aff in idx_a + idx_b for n, _ in aff.terms} - set(vars_a) - set(vars_b))
    columns = [("x", v) for v in vars_a] + [("y", v) for v in vars_b] + [("s", n) for n in symbols]
    col = {c: k for k, c in enumerate(columns)}

    def row(aff: t.Aff, side: str, own: tuple[str, ...], sign: int) -> list[Fraction]:
        out = [Fraction(0)] * (len(columns) + 1)
        for name, coef in aff.terms:
            out[col[(side, name) if name in own else ("s", name)]] += sign * coef
        out[-1] = Fraction(-sign * aff.const)  # right-hand side
        return out

    system = [[p + q for p, q in zip(row(ea, "x", vars_a, 1), row(eb, "y", vars_b, -1))] for ea, eb in zip(idx_a, idx_b)]
    if system and _rank([r[:-1] for r in system]) < _rank(system):
        return set()  # the two never touch one location
    base = _rank(system) if system else 0
    free = set()
    for v in shared:
        claim = [Fraction(0)] * (len(columns) + 1)
        claim[col[("x", v)]], claim[col[("y", v)]] = Fraction(1), Fraction(-1)
        if _rank(system + [claim]) > base:
            free.add(v)  # x_v = y_v is not implied
    return free


def sum_order_pairs(p: t.Proc) -> frozenset[tuple[str, str]]:
    """Pairs of loop variables whose relative order fixes the sum order of some float location.

    Two instances of float ``+=`` statements (one statement twice, or two into one buffer) that
    can hit the same location run in the lexicographic order of their iterations. A permutation
    of loops keeps that order as long as it keeps the relative order of the loops along which
    such instances may differ (`_unpinned`); so two of those loops — or two pieces of one split
    loop, the pair ``(v, v)`` — must never swap.
    """
    floats = float_buffers(p)
    reductions = [
        (s.buf, s.idx, around) for s, around in t.walk_scoped(p.body) if isinstance(s, t.Reduce) and s.buf in floats
    ]
    out: set[tuple[str, str]] = set()
    for (buf_a, idx_a, vars_a), (buf_b, idx_b, vars_b) in product(reductions, repeat=2):
        if buf_a != buf_b:
            continue
        free = _unpinned((idx_a, vars_a), (idx_b, vars_b))
        out.update(product(free, repeat=2))
    return frozenset(out)


def leaf_facts(p: t.Proc, loop_vars: Iterable[str], reassociate: bool = False) -> list:
    """egglog actions asserting the leaf facts of program ``p`` (see the module docstring)."""
    uniq = list(dict.fromkeys(t.leaves(p.body)))
    vs = sorted(set(loop_vars))
    ordered_pairs = frozenset() if reassociate else sum_order_pairs(p)
    ordered_bufs = frozenset() if reassociate else float_buffers(p)
    eggs = {s: ir.stmt(s) for s in uniq}
    acts: list = [IsLeaf(eggs[s]) for s in uniq]
    acts += [NoAllocLeaf(eggs[s]) for s in uniq if not isinstance(s, t.Alloc)]
    for v in vs:
        strict = f"{v}/ordered"
        acts += [LoopVar(v), LoopVar(strict), StrictKey(v, strict)]
        for a, b in product(uniq, repeat=2):
            if leaf_independent(a, b, v):
                acts.append(LeafIndep(eggs[a], eggs[b], v))
            if leaf_independent(a, b, v, ordered_bufs):
                acts.append(LeafIndep(eggs[a], eggs[b], strict))
    acts += [Swappable(v1, v2) for v1, v2 in product(vs, repeat=2) if (v1, v2) not in ordered_pairs]
    return acts


_v, _w, _m = vars_("v w m", String)
_s, _y = vars_("s y", ir.Stmt)
_b, _b1, _b2, _r, _x = vars_("b b1 b2 r x", ir.Block)
_h = var("h", ir.Hdr)
_c = var("c", ir.E)
_lo, _hi = vars_("lo hi", ir.Aff)
_st, _st2 = vars_("st st2", i64)


def _bodies(s):
    """The patterns under which statement ``s`` has body blocks (loop, nest, if)."""
    return [
        ([eq(s).to(ir.Stmt.loop(_w, _lo, _hi, _m, _b))], [_b]),
        ([eq(s).to(ir.Stmt.nest(_h, _b))], [_b]),
        ([eq(s).to(ir.Stmt.cut(_w, _st, _st2, _b))], [_b]),
        ([eq(s).to(ir.Stmt.if_(_c, _b1, _b2))], [_b1, _b2]),
    ]


guard_rules = ruleset(name="guards")
guard_rules.register(
    rule(eq(_b).to(ir.Block.nil()), IsLeaf(_y), LoopVar(_v)).then(BlockLeaf(_b, _y, _v)),
    rule(eq(_b).to(ir.Block.cons(_s, _r)), StmtLeaf(_s, _y, _v), BlockLeaf(_r, _y, _v)).then(BlockLeaf(_b, _y, _v)),
    rule(IsLeaf(_s), LeafIndep(_s, _y, _v)).then(StmtLeaf(_s, _y, _v)),
    rule(IsLeaf(_s), BlockLeaf(_x, _s, _v)).then(BlockStmt(_x, _s, _v)),
    rule(eq(_b).to(ir.Block.nil()), eq(_x).to(ir.Block.cons(_s, _r)), LoopVar(_v)).then(Indep(_x, _b, _v)),
    rule(eq(_b).to(ir.Block.nil()), eq(_x).to(ir.Block.nil()), LoopVar(_v)).then(Indep(_x, _b, _v)),
    rule(eq(_b).to(ir.Block.cons(_s, _r)), BlockStmt(_x, _s, _v), Indep(_x, _r, _v)).then(Indep(_x, _b, _v)),
)
guard_rules.register(
    rule(eq(_b).to(ir.Block.nil())).then(NoAlloc(_b)),
    rule(eq(_b).to(ir.Block.cons(_s, _r)), NoAllocStmt(_s), NoAlloc(_r)).then(NoAlloc(_b)),
    rule(NoAllocLeaf(_s)).then(NoAllocStmt(_s)),
    rule(IsLeaf(_s)).then(NotCut(_s)),
    rule(eq(_b).to(ir.Block.nil())).then(NoCutNext(_b)),
    rule(eq(_b).to(ir.Block.nil())).then(LeafBlock(_b)),
    rule(eq(_b).to(ir.Block.cons(_s, _r)), IsLeaf(_s), LeafBlock(_r)).then(LeafBlock(_b)),
    rule(eq(_b).to(ir.Block.cons(_s, _r)), NotCut(_s)).then(NoCutNext(_b)),
    rule(eq(_s).to(ir.Stmt.loop(_w, _lo, _hi, _m, _b))).then(NotCut(_s)),
    rule(eq(_s).to(ir.Stmt.nest(_h, _b))).then(NotCut(_s)),
    rule(eq(_s).to(ir.Stmt.if_(_c, _b1, _b2))).then(NotCut(_s)),
)
for _pattern, _blocks in _bodies(_s):
    guard_rules.register(
        rule(*_pattern, *[NoAlloc(b) for b in _blocks]).then(NoAllocStmt(_s)),
        rule(*_pattern, *[BlockLeaf(b, _y, _v) for b in _blocks]).then(StmtLeaf(_s, _y, _v)),
        rule(*_pattern, *[Indep(_x, b, _v) for b in _blocks]).then(BlockStmt(_x, _s, _v)),
    )
