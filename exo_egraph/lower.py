"""lower: an ``exo.Procedure`` (exo-lang 1.0) → a `Proc` term.

Reads Exo's LoopIR (``proc.INTERNAL_proc()``), which keeps source lines and types. Index
expressions become canonical affine forms; anything that cannot be lowered faithfully raises
`UnsupportedConstruct` naming the construct and its source line — never a wrong term.
"""

from __future__ import annotations

from ast import literal_eval

from typing import Any, Callable, Iterator

from exo import Procedure
from exo.core.LoopIR import LoopIR

from .terms import (
    Aff,
    Alloc,
    Arg,
    Assign,
    BinOp,
    Block,
    BuiltIn,
    Call,
    Const,
    Expr,
    If,
    IdxExpr,
    Interval,
    Loop,
    Pass,
    Point,
    Proc,
    Read,
    ReadConfig,
    Reduce,
    Stmt,
    StrideExpr,
    USub,
    WindowExpr,
    WindowStmt,
    WriteConfig,
)

_INDEX_TYPES = (LoopIR.Index, LoopIR.Size, LoopIR.Int, LoopIR.Stride)
_COMPARISONS = {"<", ">", "<=", ">=", "==", "and", "or"}


class Unsupported(Exception):
    """This kernel cannot go to this target: one line naming the statement or shape and why."""


class UnsupportedConstruct(Unsupported):
    """An Exo construct exo-egraph does not lower (yet); names it and its source line."""

    def __init__(self, construct: str, srcinfo: Any, detail: str = "") -> None:
        self.construct = construct
        self.line = getattr(srcinfo, "lineno", None)
        self.filename = getattr(srcinfo, "filename", None)
        where = f"{self.filename}:{self.line}" if self.line is not None else "unknown line"
        super().__init__(f"unsupported Exo construct {construct} at {where}" + (f": {detail}" if detail else ""))


def type_name(t: Any) -> str:
    """Exo's spelling of a scalar type or a tensor's element type ('f32', 'i8', 'size', ...)."""
    if isinstance(t, LoopIR.Tensor):
        return str(t.type)
    return str(t)


def mem_name(mem: Any) -> str:
    return "" if mem is None else mem.name()


def lower(proc: Procedure, *, instr_ok: bool = False) -> Proc:
    """The term of ``proc``. Raises `UnsupportedConstruct` for what cannot be lowered faithfully.

    ``instr_ok``: also lower an ``@instr`` procedure's body (instruction selection reads it)."""
    ir = proc.INTERNAL_proc()
    if ir.instr is not None and not instr_ok:
        raise UnsupportedConstruct("@instr procedure", ir.srcinfo, f"{ir.name} is an instruction, not a kernel")
    args = tuple(_arg(a) for a in ir.args)
    scope = frozenset(a.name for a in args)
    preds = tuple(x for x in (_precondition(p, strict=instr_ok) for p in ir.preds) if x is not None)
    return Proc(str(ir.name), args, preds, _block(ir.body, scope))


def _precondition(p: Any, *, strict: bool) -> Expr | None:
    """An assertion's term. A kernel's that has no term (``assert H % 32 == 0``) is left out: no
    rule reads a kernel's preconditions (a fact left out can only hold a rewrite back), and Exo
    keeps it in the proc every schedule is replayed on. An instruction's is its unifier's guard:
    ``strict``, it must lower."""
    try:
        return _value(p)
    except UnsupportedConstruct:
        if strict:
            raise
        return None


def source_of(proc: Procedure, match: Callable[[Stmt], bool]) -> str | None:
    """The first assignment or reduction of ``proc`` whose term ``match`` accepts, as Exo prints
    it with its source line (for messages that name a statement); None when none does."""

    def walk(stmts: Any) -> Iterator[Any]:
        for s in stmts:
            yield s
            for block in (getattr(s, "body", None), getattr(s, "orelse", None)):
                if block:
                    yield from walk(block)

    for s in walk(proc.INTERNAL_proc().body):
        if isinstance(s, (LoopIR.Assign, LoopIR.Reduce)) and match(_stmt(s, frozenset())):
            return f"`{str(s).strip()}` (line {s.srcinfo.lineno})"
    return None


def _arg(a: Any) -> Arg:
    t = a.type
    if isinstance(t, LoopIR.Tensor):
        return Arg(a.name.name(), type_name(t), tuple(_aff(h) for h in t.hi), mem_name(a.mem), bool(t.is_window))
    return Arg(a.name.name(), type_name(t), (), mem_name(a.mem))


def _block(stmts: Any, scope: frozenset[str]) -> Block:
    out = []
    for s in stmts:
        out.append(_stmt(s, scope))
        if isinstance(s, (LoopIR.Alloc, LoopIR.WindowStmt)):
            scope = scope | {s.name.name()}
    return tuple(out)


def _fresh(name: str, scope: frozenset[str], srcinfo: Any) -> str:
    # Terms name variables by string: a shadowed name would make two variables one.
    if name in scope:
        raise UnsupportedConstruct("shadowed name", srcinfo, f"'{name}' is already bound in this scope")
    return name


def _stmt(s: Any, scope: frozenset[str]) -> Any:
    match s:
        case LoopIR.For():
            var = _fresh(s.iter.name(), scope, s.srcinfo)
            mode = "par" if isinstance(s.loop_mode, LoopIR.Par) else "seq"
            if not isinstance(s.loop_mode, (LoopIR.Seq, LoopIR.Par)):
                raise UnsupportedConstruct(f"loop mode {type(s.loop_mode).__name__}", s.srcinfo)
            return Loop(var, _aff(s.lo), _aff(s.hi), mode, _block(s.body, scope | {var}))
        case LoopIR.Assign():
            return Assign(s.name.name(), tuple(_aff(i) for i in s.idx), _value(s.rhs))
        case LoopIR.Reduce():
            return Reduce(s.name.name(), tuple(_aff(i) for i in s.idx), _value(s.rhs))
        case LoopIR.Alloc():
            name = _fresh(s.name.name(), scope, s.srcinfo)
            shape = tuple(_aff(h) for h in s.type.hi) if isinstance(s.type, LoopIR.Tensor) else ()
            return Alloc(name, type_name(s.type), shape, mem_name(s.mem))
        case LoopIR.If():
            return If(_value(s.cond), _block(s.body, scope), _block(s.orelse, scope))
        case LoopIR.Call():
            return Call(str(s.f.name), tuple(_value(a) for a in s.args))
        case LoopIR.WindowStmt():
            return WindowStmt(_fresh(s.name.name(), scope, s.srcinfo), _value(s.rhs))
        case LoopIR.WriteConfig():
            return WriteConfig(s.config.name(), s.field, _value(s.rhs))
        case LoopIR.Pass():
            return Pass()
        case _:
            raise UnsupportedConstruct(type(s).__name__, s.srcinfo)


def _value(e: Any) -> Expr:
    """A value expression; index-typed subexpressions become affine `IdxExpr` leaves."""
    if isinstance(e, LoopIR.StrideExpr):
        return StrideExpr(e.name.name(), int(e.dim))
    if isinstance(e, LoopIR.ReadConfig):
        return ReadConfig(e.config.name(), e.field)
    if isinstance(e.type, _INDEX_TYPES):
        return IdxExpr(_aff(e))
    match e:
        case LoopIR.Read():
            return Read(e.name.name(), tuple(_aff(i) for i in e.idx))
        case LoopIR.Const():
            return Const(repr(e.val), type_name(e.type))
        case LoopIR.USub():
            return USub(_value(e.arg))
        case LoopIR.BinOp():
            return _fold(BinOp(str(e.op), _value(e.lhs), _value(e.rhs)))
        case LoopIR.Extern():
            return BuiltIn(e.f.name(), tuple(_value(a) for a in e.args))
        case LoopIR.WindowExpr():
            acc = tuple(
                Point(_aff(w.pt)) if isinstance(w, LoopIR.Point) else Interval(_aff(w.lo), _aff(w.hi)) for w in e.idx
            )
            return WindowExpr(e.name.name(), acc)
        case LoopIR.StrideExpr():
            return StrideExpr(e.name.name(), int(e.dim))
        case LoopIR.ReadConfig():
            return ReadConfig(e.config.name(), e.field)
        case _:
            raise UnsupportedConstruct(type(e).__name__, e.srcinfo)


def _fold(e: BinOp) -> BinOp | Const:
    """``c1 op c2`` of two constants as one constant, computed as Exo's ``simplify`` does (Python
    arithmetic): Exo folds constants as it schedules, and the term must not change under it."""
    if isinstance(e.lhs, Const) and isinstance(e.rhs, Const) and e.op in ("+", "-", "*") and e.lhs.typ == e.rhs.typ:
        a, b = literal_eval(e.lhs.val), literal_eval(e.rhs.val)
        if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
            value = a + b if e.op == "+" else a - b if e.op == "-" else a * b
            return Const(repr(value), e.lhs.typ)
    return e


def _sizes_only(e: Any) -> bool:
    """Does index expression ``e`` read size arguments only (no loop iterator)? An expression of
    them is fixed for the whole call, so it may stand as one opaque symbol in an `Aff`."""
    match e:
        case LoopIR.Read():
            return isinstance(e.type, LoopIR.Size)
        case LoopIR.Const():
            return True
        case LoopIR.USub():
            return _sizes_only(e.arg)
        case LoopIR.BinOp():
            return _sizes_only(e.lhs) and _sizes_only(e.rhs)
        case _:
            return False


def _aff(e: Any) -> Aff:
    """An index expression as an affine form; non-affine index arithmetic is unsupported."""
    match e:
        case LoopIR.Const() if isinstance(e.val, int) and not isinstance(e.val, bool):
            return Aff((), e.val)
        case LoopIR.Read() if not e.idx:
            return Aff.var(e.name.name())
        case LoopIR.USub():
            return _aff(e.arg).scale(-1)
        case LoopIR.BinOp() if e.op == "+":
            return _aff(e.lhs) + _aff(e.rhs)
        case LoopIR.BinOp() if e.op == "-":
            return _aff(e.lhs) + _aff(e.rhs).scale(-1)
        case LoopIR.BinOp() if e.op == "*":
            lhs, rhs = _aff(e.lhs), _aff(e.rhs)
            if lhs.is_const:
                return rhs.scale(lhs.const)
            if rhs.is_const:
                return lhs.scale(rhs.const)
            raise UnsupportedConstruct("non-affine index expression", e.srcinfo, str(e))
        case LoopIR.BinOp() if e.op in ("/", "%"):
            lhs, rhs = _aff(e.lhs), _aff(e.rhs)
            if lhs.is_const and rhs.is_const and rhs.const > 0:  # Exo leaves `18 / 4` after a cut divide
                return Aff((), lhs.const // rhs.const if e.op == "/" else lhs.const % rhs.const)
            if rhs.is_const and rhs.const > 0 and _sizes_only(e.lhs):  # `M / 8` after cutting a loop of M trips
                return Aff.var(f"({lhs} {e.op} {rhs.const})")  # a symbol of its own: it is fixed, as M is
            raise UnsupportedConstruct(f"index operator '{e.op}'", e.srcinfo, str(e))
        case LoopIR.BinOp():
            raise UnsupportedConstruct(f"index operator '{e.op}'", e.srcinfo, str(e))
        case _:
            raise UnsupportedConstruct(f"index expression {type(e).__name__}", e.srcinfo, str(e))
