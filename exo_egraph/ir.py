"""The egglog language of programs, and the two conversions: term → egglog, serialized e-node → term.

Sorts mirror :mod:`exo_egraph.terms` one constructor each. Loop-nest headers come in two list
sorts: ``Hdr.perm`` cells for a permutable band (reorder rules fire on them) and ``Hdr.fixed``
cells for a band whose order is fixed (only split and unroll fire), so the permutability guard
is part of the term and holds for every tail of the list.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from egglog import Expr as EggExpr
from egglog import StringLike, i64Like

from . import terms as t


class Aff(EggExpr):
    """Canonical affine form: a sorted list of (var, coef) terms ending in the constant."""

    @classmethod
    def c(cls, k: i64Like) -> Aff: ...
    @classmethod
    def term(cls, var: StringLike, coef: i64Like, rest: Aff) -> Aff: ...


class AffL(EggExpr):
    @classmethod
    def nil(cls) -> AffL: ...
    @classmethod
    def cons(cls, a: Aff, rest: AffL) -> AffL: ...


class W(EggExpr):
    @classmethod
    def point(cls, pt: Aff) -> W: ...
    @classmethod
    def interval(cls, lo: Aff, hi: Aff) -> W: ...


class WL(EggExpr):
    @classmethod
    def nil(cls) -> WL: ...
    @classmethod
    def cons(cls, w: W, rest: WL) -> WL: ...


class E(EggExpr):
    @classmethod
    def read(cls, buf: StringLike, idx: AffL) -> E: ...
    @classmethod
    def const(cls, val: StringLike, typ: StringLike) -> E: ...
    @classmethod
    def binop(cls, op: StringLike, lhs: E, rhs: E) -> E: ...
    @classmethod
    def usub(cls, arg: E) -> E: ...
    @classmethod
    def builtin(cls, func: StringLike, args: EL) -> E: ...
    @classmethod
    def idx(cls, a: Aff) -> E: ...
    @classmethod
    def window(cls, buf: StringLike, acc: WL) -> E: ...
    @classmethod
    def stride(cls, buf: StringLike, dim: i64Like) -> E: ...
    @classmethod
    def read_config(cls, config: StringLike, field: StringLike) -> E: ...


class EL(EggExpr):
    @classmethod
    def nil(cls) -> EL: ...
    @classmethod
    def cons(cls, e: E, rest: EL) -> EL: ...


class Dim(EggExpr):
    """A loop over part of ``var``: ``var += stride`` per trip, ``extent`` trips."""

    def __init__(self, var: StringLike, stride: i64Like, extent: i64Like) -> None: ...
    @classmethod
    def unrolled(cls, var: StringLike, stride: i64Like, extent: i64Like) -> Dim: ...


class Hdr(EggExpr):
    @classmethod
    def nil(cls) -> Hdr: ...
    @classmethod
    def perm(cls, d: Dim, rest: Hdr) -> Hdr: ...
    @classmethod
    def fixed(cls, d: Dim, rest: Hdr) -> Hdr: ...


class Stmt(EggExpr):
    @classmethod
    def assign(cls, buf: StringLike, idx: AffL, rhs: E) -> Stmt: ...
    @classmethod
    def reduce(cls, buf: StringLike, idx: AffL, rhs: E) -> Stmt: ...
    @classmethod
    def alloc(cls, name: StringLike, typ: StringLike, shape: AffL, mem: StringLike) -> Stmt: ...
    @classmethod
    def if_(cls, cond: E, body: Block, orelse: Block) -> Stmt: ...
    @classmethod
    def call(cls, proc: StringLike, args: EL) -> Stmt: ...
    @classmethod
    def window(cls, name: StringLike, rhs: E) -> Stmt: ...
    @classmethod
    def write_config(cls, config: StringLike, field: StringLike, rhs: E) -> Stmt: ...
    @classmethod
    def pass_(cls) -> Stmt: ...
    @classmethod
    def loop(cls, var: StringLike, lo: Aff, hi: Aff, mode: StringLike, body: Block) -> Stmt: ...
    @classmethod
    def nest(cls, hdr: Hdr, body: Block) -> Stmt: ...
    @classmethod
    def cut(cls, var: StringLike, start: i64Like, stop: i64Like, body: Block) -> Stmt: ...


class Block(EggExpr):
    @classmethod
    def nil(cls) -> Block: ...
    @classmethod
    def cons(cls, s: Stmt, rest: Block) -> Block: ...


class ArgT(EggExpr):
    def __init__(self, name: StringLike, typ: StringLike, shape: AffL, mem: StringLike, window: i64Like) -> None: ...


class ArgL(EggExpr):
    @classmethod
    def nil(cls) -> ArgL: ...
    @classmethod
    def cons(cls, a: ArgT, rest: ArgL) -> ArgL: ...


class ProcT(EggExpr):
    def __init__(self, name: StringLike, args: ArgL, preds: EL, body: Block) -> None: ...


# ----------------------------------------------------------------------------- term → egglog


def _list(nil: Callable[[], Any], cons: Callable[[Any, Any], Any], items: Any) -> Any:
    out = nil()
    for x in reversed(list(items)):
        out = cons(x, out)
    return out


def aff(a: t.Aff) -> Aff:
    out = Aff.c(a.const)
    for var, coef in reversed(a.terms):
        out = Aff.term(var, coef, out)
    return out


def affs(xs: tuple[t.Aff, ...]) -> AffL:
    return _list(AffL.nil, AffL.cons, (aff(a) for a in xs))


def expr(e: t.Expr) -> E:
    match e:
        case t.Read(buf, idx):
            return E.read(buf, affs(idx))
        case t.Const(val, typ):
            return E.const(val, typ)
        case t.BinOp(op, lhs, rhs):
            return E.binop(op, expr(lhs), expr(rhs))
        case t.USub(arg):
            return E.usub(expr(arg))
        case t.BuiltIn(func, args):
            return E.builtin(func, exprs(args))
        case t.IdxExpr(a):
            return E.idx(aff(a))
        case t.WindowExpr(buf, acc):
            ws = (W.point(aff(w.pt)) if isinstance(w, t.Point) else W.interval(aff(w.lo), aff(w.hi)) for w in acc)
            return E.window(buf, _list(WL.nil, WL.cons, ws))
        case t.StrideExpr(buf, dim):
            return E.stride(buf, dim)
        case t.ReadConfig(config, field):
            return E.read_config(config, field)
    raise TypeError(e)


def exprs(xs: tuple[t.Expr, ...]) -> EL:
    return _list(EL.nil, EL.cons, (expr(e) for e in xs))


def dim(d: t.Dim) -> Dim:
    return (Dim.unrolled if d.unrolled else Dim)(d.var, d.stride, d.extent)


def header(dims: tuple[t.Dim, ...], permutable: bool) -> Hdr:
    return _list(Hdr.nil, Hdr.perm if permutable else Hdr.fixed, (dim(d) for d in dims))


def stmt(s: t.Stmt) -> Stmt:
    match s:
        case t.Assign(buf, idx, rhs):
            return Stmt.assign(buf, affs(idx), expr(rhs))
        case t.Reduce(buf, idx, rhs):
            return Stmt.reduce(buf, affs(idx), expr(rhs))
        case t.Alloc(name, typ, shape, mem):
            return Stmt.alloc(name, typ, affs(shape), mem)
        case t.If(cond, body, orelse):
            return Stmt.if_(expr(cond), block(body), block(orelse))
        case t.Call(p, args):
            return Stmt.call(p, exprs(args))
        case t.WindowStmt(name, rhs):
            return Stmt.window(name, expr(rhs))
        case t.WriteConfig(config, field, rhs):
            return Stmt.write_config(config, field, expr(rhs))
        case t.Pass():
            return Stmt.pass_()
        case t.Loop(var, lo, hi, mode, body):
            return Stmt.loop(var, aff(lo), aff(hi), mode, block(body))
        case t.Nest(dims, permutable, body):
            return Stmt.nest(header(dims, permutable), block(body))
        case t.Cut(var, start, stop, body):
            return Stmt.cut(var, start, stop, block(body))
    raise TypeError(s)


def block(b: t.Block) -> Block:
    return _list(Block.nil, Block.cons, (stmt(s) for s in b))


def proc(p: t.Proc) -> ProcT:
    args = (ArgT(a.name, a.typ, affs(a.shape), a.mem, int(a.is_window)) for a in p.args)
    return ProcT(p.name, _list(ArgL.nil, ArgL.cons, args), exprs(p.preds), block(p.body))


# ----------------------------------------------------------------------------- e-node → term


def primitive(op: str) -> Any:
    """The value of a serialized primitive e-node (an i64 or a String literal)."""
    return json.loads(op)


def _cons(head: Any, rest: tuple) -> tuple:
    return (head, *rest)


def _aff_term(var: str, coef: int, rest: t.Aff) -> t.Aff:
    return t.Aff.make(((var, coef),) + rest.terms, rest.const)


# One decoder per constructor: children arrive already decoded, in argument order.
# Header lists decode to (dims, permutable); list sorts decode to tuples.
DECODERS: dict[str, Callable[..., Any]] = {
    "Aff.c": lambda k: t.Aff((), k),
    "Aff.term": _aff_term,
    "AffL.nil": lambda: (),
    "AffL.cons": _cons,
    "W.point": t.Point,
    "W.interval": t.Interval,
    "WL.nil": lambda: (),
    "WL.cons": _cons,
    "E.read": t.Read,
    "E.const": t.Const,
    "E.binop": t.BinOp,
    "E.usub": t.USub,
    "E.builtin": t.BuiltIn,
    "E.idx": t.IdxExpr,
    "E.window": t.WindowExpr,
    "E.stride": t.StrideExpr,
    "E.read_config": t.ReadConfig,
    "EL.nil": lambda: (),
    "EL.cons": _cons,
    "Dim": lambda v, s, e: t.Dim(v, s, e, False),
    "Dim.unrolled": lambda v, s, e: t.Dim(v, s, e, True),
    "Hdr.nil": lambda: ((), True),
    "Hdr.perm": lambda d, rest: ((d, *rest[0]), True),
    "Hdr.fixed": lambda d, rest: ((d, *rest[0]), False),
    "Stmt.assign": t.Assign,
    "Stmt.reduce": t.Reduce,
    "Stmt.alloc": t.Alloc,
    "Stmt.if_": t.If,
    "Stmt.call": t.Call,
    "Stmt.window": t.WindowStmt,
    "Stmt.write_config": t.WriteConfig,
    "Stmt.pass_": lambda: t.Pass(),
    "Stmt.loop": t.Loop,
    "Stmt.nest": lambda hdr, body: t.Nest(hdr[0], hdr[1], body),
    "Stmt.cut": t.Cut,
    "Block.nil": lambda: (),
    "Block.cons": _cons,
    "ArgT": lambda n, typ, shape, mem, w: t.Arg(n, typ, shape, mem, bool(w)),
    "ArgL.nil": lambda: (),
    "ArgL.cons": _cons,
    "ProcT": t.Proc,
}


def decode(op: str, children: list[Any]) -> Any:
    """Rebuild a term from an e-node's op and its decoded children."""
    if op in DECODERS:
        return DECODERS[op](*children)
    return primitive(op)
