"""Immutable program terms: the Python mirror of the egglog language in :mod:`exo_egraph.ir`.

Lowering produces these terms, the e-graph stores them as egglog expressions, extraction
rebuilds them, and replay reads them. Index expressions are canonical affine forms, so two
index expressions are equal exactly when they denote the same affine function.

A `Nest` is a loop-nest *header* over a body that keeps its original iterators: each `Dim`
stands for a loop over one part of an original iterator ``var`` (``var = sum(stride * dim)``),
so splitting and reordering never copy or rewrite the body. `materialize` turns a term back
into plain loops, the form `lower` produces from an Exo proc.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from itertools import product
from typing import Callable, Iterator, Union


@dataclass(frozen=True, order=True)
class Aff:
    """``const + sum(coef * var)``; terms sorted by name, no zero coefficients."""

    terms: tuple[tuple[str, int], ...] = ()
    const: int = 0

    @staticmethod
    def of(const: int = 0, **coefs: int) -> "Aff":
        return Aff.make(coefs.items(), const)

    @staticmethod
    def var(name: str) -> "Aff":
        return Aff(((name, 1),), 0)

    @staticmethod
    def make(terms, const: int = 0) -> "Aff":
        acc: dict[str, int] = {}
        for name, coef in terms:
            acc[name] = acc.get(name, 0) + coef
        return Aff(tuple(sorted((n, c) for n, c in acc.items() if c != 0)), const)

    def __add__(self, other: "Aff") -> "Aff":
        return Aff.make(self.terms + other.terms, self.const + other.const)

    def scale(self, k: int) -> "Aff":
        return Aff.make(((n, c * k) for n, c in self.terms), self.const * k)

    def coef(self, name: str) -> int:
        return dict(self.terms).get(name, 0)

    @property
    def vars(self) -> frozenset[str]:
        return frozenset(n for n, _ in self.terms)

    @property
    def is_const(self) -> bool:
        return not self.terms

    def subst(self, env: dict[str, "Aff"]) -> "Aff":
        out = Aff((), self.const)
        for name, coef in self.terms:
            out = out + (env[name].scale(coef) if name in env else Aff(((name, coef),)))
        return out

    def __str__(self) -> str:
        parts = [n if c == 1 else f"{c} * {n}" for n, c in self.terms]
        if self.const or not parts:
            parts.append(str(self.const))
        return " + ".join(parts)


# ----------------------------------------------------------------------------- expressions


@dataclass(frozen=True)
class Read:
    buf: str
    idx: tuple[Aff, ...]


@dataclass(frozen=True)
class Const:
    val: str  # repr of the literal, exact
    typ: str


@dataclass(frozen=True)
class BinOp:
    op: str
    lhs: "Expr"
    rhs: "Expr"


@dataclass(frozen=True)
class USub:
    arg: "Expr"


@dataclass(frozen=True)
class BuiltIn:
    func: str
    args: tuple["Expr", ...]


@dataclass(frozen=True)
class IdxExpr:
    """An index or size expression used as a value (in conditions, or as a call argument)."""

    aff: Aff


@dataclass(frozen=True)
class Point:
    pt: Aff


@dataclass(frozen=True)
class Interval:
    lo: Aff
    hi: Aff


@dataclass(frozen=True)
class WindowExpr:
    buf: str
    access: tuple[Union[Point, Interval], ...]


@dataclass(frozen=True)
class StrideExpr:
    buf: str
    dim: int


@dataclass(frozen=True)
class ReadConfig:
    config: str
    field: str


Expr = Union[Read, Const, BinOp, USub, BuiltIn, IdxExpr, WindowExpr, StrideExpr, ReadConfig]


# ----------------------------------------------------------------------------- statements


@dataclass(frozen=True)
class Assign:
    buf: str
    idx: tuple[Aff, ...]
    rhs: Expr


@dataclass(frozen=True)
class Reduce:
    buf: str
    idx: tuple[Aff, ...]
    rhs: Expr


@dataclass(frozen=True)
class Alloc:
    name: str
    typ: str
    shape: tuple[Aff, ...]
    mem: str


@dataclass(frozen=True)
class If:
    cond: Expr
    body: "Block"
    orelse: "Block"


@dataclass(frozen=True)
class Call:
    proc: str
    args: tuple[Expr, ...]


@dataclass(frozen=True)
class WindowStmt:
    name: str
    rhs: Expr


@dataclass(frozen=True)
class WriteConfig:
    config: str
    field: str
    rhs: Expr


@dataclass(frozen=True)
class Pass:
    pass


@dataclass(frozen=True)
class Loop:
    """A plain Exo loop ``for var in seq(lo, hi)`` (``mode`` is 'seq' or 'par')."""

    var: str
    lo: Aff
    hi: Aff
    mode: str
    body: "Block"


@dataclass(frozen=True)
class Cut:
    """The tail ``start <= var < stop`` that ``divide_loop(..., tail="cut")`` leaves after a nest.

    In Exo it is a loop named like the split's inner loop, from 0, with ``var`` shifted.
    """

    var: str
    start: int
    stop: int
    body: "Block"


@dataclass(frozen=True)
class Dim:
    """One loop of a nest header: ``var`` advances by ``stride`` for ``extent`` trips."""

    var: str
    stride: int
    extent: int
    unrolled: bool = False


@dataclass(frozen=True)
class Nest:
    """Loops ``dims`` (outer to inner) over ``body``, which still speaks of the original iterators.

    ``permutable``: the dims may be put in any order (the legality guard held when the band was
    formed); otherwise their order is fixed and only splitting and unrolling apply.
    """

    dims: tuple[Dim, ...]
    permutable: bool
    body: "Block"


Stmt = Union[Assign, Reduce, Alloc, If, Call, WindowStmt, WriteConfig, Pass, Loop, Nest, Cut]
CONTROL_TYPES = (Loop, Nest, Cut, If)
Block = tuple[Stmt, ...]
LEAF_TYPES = (Assign, Reduce, Alloc, Call, WindowStmt, WriteConfig, Pass)


@dataclass(frozen=True)
class Arg:
    name: str
    typ: str  # 'size', 'index', 'bool', or a precision such as 'f32'
    shape: tuple[Aff, ...]  # () for scalars
    mem: str
    is_window: bool = False


@dataclass(frozen=True)
class Buffer:
    """A buffer as instruction selection sees it: element type, memory, dense row-major shape."""

    typ: str
    mem: str
    shape: tuple[int, ...]  # () for scalars

    def stride(self, dim: int) -> int:
        out = 1
        for extent in self.shape[dim + 1 :]:
            out *= extent
        return out


@dataclass(frozen=True)
class Proc:
    name: str
    args: tuple[Arg, ...]
    preds: tuple[Expr, ...]
    body: Block


# ----------------------------------------------------------------------------- the one walker
# Every query and rewrite over statements is built on these three (as Exo's LoopIR_Do and
# LoopIR_Rewrite are): `blocks_of` says where a statement's blocks are, `walk` visits, `map_block` rebuilds.


def blocks_of(s: Stmt) -> tuple[Block, ...]:
    """The blocks directly inside ``s``: a loop's body, an if's body and else; none for a leaf."""
    if isinstance(s, If):
        return (s.body, s.orelse)
    if isinstance(s, (Loop, Nest, Cut)):
        return (s.body,)
    return ()


def with_blocks(s: Stmt, blocks: tuple[Block, ...]) -> Stmt:
    """``s`` with the blocks `blocks_of` gives replaced by ``blocks`` (same count, same order)."""
    if isinstance(s, If):
        return If(s.cond, blocks[0], blocks[1])
    if isinstance(s, (Loop, Nest, Cut)):
        return replace(s, body=blocks[0])
    return s


def walk(block: Block) -> Iterator[Stmt]:
    """Every statement of ``block``, in program order, each before the statements inside it."""
    for s in block:
        yield s
        for inner in blocks_of(s):
            yield from walk(inner)


def bound_by(s: Stmt) -> tuple[str, ...]:
    """The iterators a statement binds for the blocks inside it (none for an if or a leaf)."""
    if isinstance(s, (Loop, Cut)):
        return (s.var,)
    if isinstance(s, Nest):
        return loop_vars_of(s)
    return ()


def walk_scoped(block: Block, around: tuple[str, ...] = ()) -> Iterator[tuple[Stmt, tuple[str, ...]]]:
    """`walk`, with the iterators of the loops around each statement (outer first)."""
    for s in block:
        yield s, around
        for inner in blocks_of(s):
            yield from walk_scoped(inner, around + bound_by(s))


def map_block(block: Block, f: Callable[[Stmt], Block]) -> Block:
    """Rebuild ``block`` bottom-up: each statement, its own blocks already rebuilt, becomes ``f`` of it
    (a block: none, one or several statements in its place)."""
    out: list[Stmt] = []
    for s in block:
        out.extend(f(with_blocks(s, tuple(map_block(b, f) for b in blocks_of(s)))))
    return tuple(out)


# ----------------------------------------------------------------------------- queries


def leaves(block: Block) -> Iterator[Stmt]:
    """The non-control statements of ``block`` in program order."""
    return (s for s in walk(block) if not isinstance(s, CONTROL_TYPES))


def count_leaves(block: Block) -> int:
    return sum(1 for _ in leaves(block))


def loop_vars_of(nest: Nest) -> tuple[str, ...]:
    """Original iterators a nest covers, in order of first appearance."""
    return tuple(dict.fromkeys(d.var for d in nest.dims))


def var_trip(nest: Nest, var: str) -> int:
    trip = 1
    for d in nest.dims:
        if d.var == var:
            trip *= d.extent
    return trip


def dim_name(nest: Nest, d: Dim) -> str:
    """The Exo loop name replay gives ``d``: the original name when ``var`` is not split."""
    if sum(1 for e in nest.dims if e.var == d.var) == 1:
        return d.var
    return f"{d.var}_{d.stride}"


def split_name(var: str, stride: int) -> str:
    """Name of the loop over ``var`` at ``stride`` while ``var`` is split (see `dim_name`)."""
    return f"{var}_{stride}"


# ----------------------------------------------------------------------------- substitution


def subst_expr(e: Expr, env: dict[str, Aff]) -> Expr:
    match e:
        case Read(buf, idx):
            return Read(buf, tuple(a.subst(env) for a in idx))
        case BinOp(op, lhs, rhs):
            return BinOp(op, subst_expr(lhs, env), subst_expr(rhs, env))
        case USub(arg):
            return USub(subst_expr(arg, env))
        case BuiltIn(func, args):
            return BuiltIn(func, tuple(subst_expr(a, env) for a in args))
        case IdxExpr(aff):
            return IdxExpr(aff.subst(env))
        case WindowExpr(buf, access):
            return WindowExpr(
                buf,
                tuple(
                    Point(w.pt.subst(env)) if isinstance(w, Point) else Interval(w.lo.subst(env), w.hi.subst(env))
                    for w in access
                ),
            )
        case _:
            return e


def subst_block(block: Block, env: dict[str, Aff]) -> Block:
    return tuple(subst_stmt(s, env) for s in block)


def subst_stmt(s: Stmt, env: dict[str, Aff]) -> Stmt:
    match s:
        case Assign(buf, idx, rhs):
            return Assign(buf, tuple(a.subst(env) for a in idx), subst_expr(rhs, env))
        case Reduce(buf, idx, rhs):
            return Reduce(buf, tuple(a.subst(env) for a in idx), subst_expr(rhs, env))
        case Alloc(name, typ, shape, mem):
            return Alloc(name, typ, tuple(a.subst(env) for a in shape), mem)
        case If(cond, body, orelse):
            return If(subst_expr(cond, env), subst_block(body, env), subst_block(orelse, env))
        case Call(p, args):
            return Call(p, tuple(subst_expr(a, env) for a in args))
        case WindowStmt(name, rhs):
            return WindowStmt(name, subst_expr(rhs, env))
        case WriteConfig(c, f, rhs):
            return WriteConfig(c, f, subst_expr(rhs, env))
        case Loop(var, lo, hi, mode, body):
            inner = {k: v for k, v in env.items() if k != var}
            return Loop(var, lo.subst(env), hi.subst(env), mode, subst_block(body, inner))
        case Nest(dims, perm, body):
            bound = {d.var for d in dims}
            return Nest(dims, perm, subst_block(body, {k: v for k, v in env.items() if k not in bound}))
        case Cut(var, start, stop, body):
            return Cut(var, start, stop, subst_block(body, {k: v for k, v in env.items() if k != var}))
        case _:
            return s


# ----------------------------------------------------------------------------- materialize


def materialize_block(block: Block) -> Block:
    return map_block(block, _materialize_stmt)


def _materialize_stmt(s: Stmt) -> Block:
    """``s`` (its own blocks already materialized) as plain loops."""
    if isinstance(s, Nest):
        return _materialize_nest(s)
    if isinstance(s, Cut):
        name = split_name(s.var, 1)
        shifted = subst_block(s.body, {s.var: Aff.var(name) + Aff((), s.start)})
        return (Loop(name, Aff(), Aff((), s.stop - s.start), "seq", shifted),)
    return (s,)


def _materialize_nest(nest: Nest) -> Block:
    env: dict[str, Aff] = {}
    for d in nest.dims:
        if not d.unrolled:
            env[d.var] = env.get(d.var, Aff()) + Aff.var(dim_name(nest, d)).scale(d.stride)
    body = nest.body

    def build(k: int, offsets: dict[str, int]) -> Block:
        if k == len(nest.dims):
            local = dict(env)
            for var, c in offsets.items():
                local[var] = local.get(var, Aff()) + Aff((), c)
            return subst_block(body, local)
        d = nest.dims[k]
        if d.unrolled:  # copies of everything inside, in order, as Exo's unroll_loop leaves them
            return tuple(
                s for c in range(d.extent) for s in build(k + 1, {**offsets, d.var: offsets.get(d.var, 0) + d.stride * c})
            )
        return (Loop(dim_name(nest, d), Aff(), Aff((), d.extent), "seq", build(k + 1, offsets)),)

    return build(0, {})


def materialize(p: Proc) -> Proc:
    """The plain-loop program a term stands for (what `lower` gives for the replayed proc)."""
    return replace(p, body=materialize_block(p.body))


def share_cut_bodies(block: Block) -> Block:
    """Give every `Cut` the body of the nest just before it.

    Both bodies come from one e-class, so the result is still a term of the e-graph; Exo's cut
    divide copies the nest's body into the tail, so this is the only choice replay can reach.
    """
    out: list[Stmt] = []
    for s in block:
        s = with_blocks(s, tuple(share_cut_bodies(b) for b in blocks_of(s)))
        if isinstance(s, Cut) and out and isinstance(out[-1], Nest):
            s = Cut(s.var, s.start, s.stop, out[-1].body)
        out.append(s)
    return tuple(out)
