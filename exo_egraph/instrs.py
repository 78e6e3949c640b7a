"""Instruction patterns read from the ``@instr`` procs themselves, and a unifier that matches them.

Each Exo ``@instr`` proc (e.g. ``exo.platforms.gemmini.ld_i8_id1``) is lowered like a kernel; its
body is the pattern. `unify` matches a pattern against a statement block of a kernel the way
Exo's ``replace`` does: instruction loops map to kernel loops (binding the size arguments to trip
counts), buffer arguments map to windows of kernel buffers (binding the window offsets, which
must not depend on the instruction's loops), value arguments map to kernel expressions. The
instruction's assertions are checked on the binding; a config assertion (``stride(src, 0) ==
ConfigLoad_id1.src_stride``) becomes a requirement that a config instruction must satisfy.

Nothing here is Gemmini-specific: a new instruction needs no new code.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Callable, Mapping

from exo import Procedure

from . import terms as t
from .lower import UnsupportedConstruct, lower
from .terms import Buffer


@dataclass(frozen=True)
class InstrPattern:
    name: str
    args: tuple[t.Arg, ...]
    preds: tuple[t.Expr, ...]
    body: t.Block
    c_template: str
    proc: Procedure

    @property
    def config_calls(self) -> tuple[t.Call, ...]:
        """Config instructions called first in the body (a ``*_v2`` instr: configs, then a ``do_*``)."""
        return tuple(s for s in self.body[:-1] if isinstance(s, t.Call))


@dataclass(frozen=True)
class Window:
    """A buffer argument bound to ``buf[access]``; ``dims`` maps argument dims to kernel dims."""

    buf: str
    access: tuple[t.Point | t.Interval, ...]
    dims: tuple[int, ...]


@dataclass(frozen=True)
class Binding:
    instr: str
    sizes: tuple[tuple[str, int], ...]
    windows: tuple[tuple[str, Window], ...]
    values: tuple[tuple[str, t.Expr], ...]
    requires: tuple[tuple[str, str, t.Expr], ...]  # (config, field, value over kernel names)

    def size(self, name: str) -> int:
        return dict(self.sizes)[name]


def instr_patterns(
    module: ModuleType,
    *,
    plain_procs: bool = False,
    preconditions: Callable[[tuple[t.Arg, ...], tuple[t.Expr, ...], str], tuple[t.Expr, ...]] | None = None,
) -> tuple[InstrPattern, ...]:
    """Every ``@instr`` proc defined in ``module``, lowered (those our terms cannot express are
    skipped); ``plain_procs``: the other procs too (a ``*_v2`` twin need not be an instr);
    ``preconditions(args, preds, c)``: a target's correction of an instruction's assertions, given
    the C it emits (what the hardware is told, which its body may not say)."""
    out, seen = [], set()
    for value in vars(module).values():
        if not isinstance(value, Procedure) or value.name() in seen:
            continue
        if value.INTERNAL_proc().instr is None and not plain_procs:
            continue
        seen.add(value.name())
        try:
            term = lower(value, instr_ok=True)
        except UnsupportedConstruct:
            continue
        body = tuple(s for s in term.body if not isinstance(s, t.Pass))
        instr = value.INTERNAL_proc().instr
        c_instr = instr.c_instr if instr else ""
        preds = preconditions(term.args, term.preds, c_instr) if preconditions else term.preds
        out.append(InstrPattern(value.name(), term.args, preds, body, c_instr, value))
    return tuple(out)


class _NoMatch(Exception):
    pass


@dataclass
class _State:
    pattern: InstrPattern
    kernel: Mapping[str, Buffer]
    loops: dict[str, str]  # instruction loop var → kernel loop var
    locals_: dict[str, str]  # instruction local buffer → kernel local buffer
    sizes: dict[str, int]
    windows: dict[str, Window]
    values: dict[str, t.Expr]
    reads: dict[tuple[str, str], t.Expr]  # config fields the instruction reads → what the kernel has there

    def arg(self, name: str) -> t.Arg | None:
        return next((a for a in self.pattern.args if a.name == name), None)


def unify(pattern: InstrPattern, block: t.Block, kernel: Mapping[str, Buffer]) -> Binding | None:
    """How ``block`` is a call of ``pattern``, or None. ``kernel`` describes the buffers ``block`` uses."""
    state = _State(pattern, kernel, {}, {}, {}, {}, {}, {})
    try:
        _block(state, pattern.body, block)
        requires = _check_preds(state) + tuple((c, f, v) for (c, f), v in state.reads.items())
    except _NoMatch:
        return None
    return Binding(
        pattern.name,
        tuple(sorted(state.sizes.items())),
        tuple(sorted(state.windows.items())),
        tuple(sorted(state.values.items(), key=lambda kv: kv[0])),
        requires,
    )


def _block(s: _State, want: t.Block, have: t.Block) -> None:
    if len(want) != len(have):
        raise _NoMatch
    for w, h in zip(want, have):
        _stmt(s, w, h)


def _stmt(s: _State, w: t.Stmt, h: t.Stmt) -> None:
    match w, h:
        case t.Loop(), t.Loop():
            if w.lo != t.Aff() or h.lo != t.Aff() or not h.hi.is_const:
                raise _NoMatch
            _bind_size(s, w.hi, h.hi.const)
            s.loops[w.var] = h.var
            _block(s, w.body, h.body)
        case t.Alloc(), t.Alloc():
            if w.typ != h.typ or w.shape or h.shape:
                raise _NoMatch
            s.locals_[w.name] = h.name
        case (t.Assign(), t.Assign()) | (t.Reduce(), t.Reduce()):
            _access(s, w.buf, w.idx, h.buf, h.idx)
            _expr(s, w.rhs, h.rhs)
        case t.Call(), t.Call():
            if w.proc != h.proc:
                raise _NoMatch
            _exprs(s, w.args, h.args)
        case t.If(), t.If():
            _expr(s, w.cond, h.cond)
            _block(s, w.body, h.body)
            _block(s, w.orelse, h.orelse)
        case _:
            raise _NoMatch


def _bind_size(s: _State, want: t.Aff, value: int) -> None:
    if want.is_const:
        if want.const != value:
            raise _NoMatch
        return
    if len(want.terms) != 1 or want.terms[0][1] != 1 or want.const != 0:
        raise _NoMatch
    name = want.terms[0][0]
    if s.sizes.setdefault(name, value) != value:
        raise _NoMatch


def _rename(s: _State, a: t.Aff) -> t.Aff:
    out = t.Aff((), a.const)
    for name, coef in a.terms:
        if name in s.loops:
            out = out + t.Aff.var(s.loops[name]).scale(coef)
        elif name in s.sizes:
            out = out + t.Aff((), s.sizes[name] * coef)
        else:
            raise _NoMatch  # an index over something unbound
    return out


def _access(s: _State, wbuf: str, widx: tuple[t.Aff, ...], hbuf: str, hidx: tuple[t.Aff, ...]) -> None:
    """Match ``wbuf[widx]`` (instruction) against ``hbuf[hidx]`` (kernel)."""
    if wbuf in s.locals_:
        if s.locals_[wbuf] != hbuf or widx or hidx:
            raise _NoMatch
        return
    arg = s.arg(wbuf)
    if arg is None or not arg.shape:
        if arg is not None and not hidx and not widx:  # a scalar argument bound to a kernel scalar
            _bind_value(s, wbuf, t.Read(hbuf, ()))
            return
        raise _NoMatch
    info = s.kernel.get(hbuf)
    if info is None or info.typ != arg.typ or (info.mem or "DRAM") != (arg.mem or "DRAM"):
        raise _NoMatch
    inner = set(s.loops.values())
    wanted = [_rename(s, a) for a in widx]
    window = _window(s, arg, hbuf, hidx, wanted, inner)
    if window is None:
        # the instruction reads fixed elements of some dims (a broadcast's ``src[0]``, a bias row's
        # ``src[0, j]``): the kernel's innermost dims become the window, as Exo's ``replace``
        # makes it (``A[i, k:k + 1]``, ``bias[0:1, 16 * j:16 * j + 16]``)
        window = _window(s, arg, hbuf, hidx, wanted, inner, innermost=True)
    if window is None:
        raise _NoMatch
    if s.windows.setdefault(wbuf, window) != window:
        raise _NoMatch


def _window(s: _State, arg: t.Arg, hbuf: str, hidx: tuple[t.Aff, ...], wanted: list[t.Aff], inner: set[str],
            innermost: bool = False) -> Window | None:  # fmt: skip
    """The window of ``hbuf`` the instruction's ``arg[wanted]`` is, at the kernel's ``hbuf[hidx]``
    (None: none). Each window dim is a kernel dim whose index is the instruction's plus an offset
    free of the instruction's loops; the other kernel dims are points. The window's dims are the
    kernel dims that vary with the instruction's loops, in order — or (``innermost``) its last
    ``len(wanted)`` dims, whether they vary or not."""
    if len(hidx) < len(wanted):
        return None
    first = len(hidx) - len(wanted)
    dims: list[int] = []
    access: list[t.Point | t.Interval] = []
    for kd, kidx in enumerate(hidx):
        in_window = kd >= first if innermost else bool(kidx.vars & inner)
        if not in_window:
            if kidx.vars & inner:
                return None  # a point must not move with the instruction's loops
            access.append(t.Point(kidx))
            continue
        if len(dims) >= len(wanted):
            return None
        d = len(dims)
        offset = kidx + wanted[d].scale(-1)
        if offset.vars & inner:
            return None
        access.append(t.Interval(offset, offset + t.Aff((), _extent(s, arg.shape[d]))))
        dims.append(kd)
    if len(dims) != len(wanted):
        return None
    return Window(hbuf, tuple(access), tuple(dims))


def _extent(s: _State, a: t.Aff) -> int:
    value = a.const
    for name, coef in a.terms:
        if name not in s.sizes:
            raise _NoMatch
        value += coef * s.sizes[name]
    return value


def _free_of(s: _State, e: t.Expr) -> bool:
    """Is ``e`` the same for every call (reads no loop variable or local of the matched nest)?"""
    match e:
        case t.Read(buf, idx):
            return buf not in s.locals_.values() and not any(a.vars & set(s.loops.values()) for a in idx)
        case t.Const():
            return True
    return False


def _bind_value(s: _State, name: str, value: t.Expr) -> None:
    if s.values.setdefault(name, value) != value:
        raise _NoMatch


def _expr(s: _State, w: t.Expr, h: t.Expr) -> None:
    match w, h:
        case t.ReadConfig(config, field), _:  # the instruction reads a config field: it must hold h
            if _free_of(s, h) and s.reads.setdefault((config, field), h) == h:
                return
            raise _NoMatch
        case t.Read(), t.Read():
            _access(s, w.buf, w.idx, h.buf, h.idx)
        case t.Const(), t.Const():
            if w != h:
                raise _NoMatch
        case t.BinOp(), t.BinOp():
            if w.op != h.op:
                raise _NoMatch
            _expr(s, w.lhs, h.lhs)
            _expr(s, w.rhs, h.rhs)
        case t.USub(), t.USub():
            _expr(s, w.arg, h.arg)
        case t.BuiltIn(), t.BuiltIn():
            if w.func != h.func:
                raise _NoMatch
            _exprs(s, w.args, h.args)
        case _:
            raise _NoMatch


def _exprs(s: _State, ws: tuple[t.Expr, ...], hs: tuple[t.Expr, ...]) -> None:
    if len(ws) != len(hs):
        raise _NoMatch
    for a, b in zip(ws, hs):
        _expr(s, a, b)


def _check_preds(s: _State) -> tuple[tuple[str, str, t.Expr], ...]:
    requires = []
    for pred in s.pattern.preds:
        if isinstance(pred, t.BinOp) and pred.op == "==" and isinstance(pred.rhs, t.ReadConfig):
            requires.append((pred.rhs.config, pred.rhs.field, _kernel_value(s, pred.lhs)))
            continue
        if not _holds(s, pred):
            raise _NoMatch
    return tuple(requires)


def _kernel_value(s: _State, e: t.Expr) -> t.Expr:
    value = kernel_expr(Binding(s.pattern.name, tuple(s.sizes.items()), tuple(s.windows.items()), tuple(s.values.items()), ()), e)
    if value is None:
        raise _NoMatch
    return value


def kernel_expr(binding: Binding, e: t.Expr) -> t.Expr | None:
    """An expression over the instruction's arguments, in the kernel's names (None if it cannot be)."""
    windows, values = dict(binding.windows), dict(binding.values)
    match e:
        case t.StrideExpr(buf, dim) if buf in windows:
            return t.StrideExpr(windows[buf].buf, windows[buf].dims[dim])
        case t.Read(name, ()) if name in values:
            return values[name]
        case t.IdxExpr(aff) if aff.vars <= set(dict(binding.sizes)):
            return t.IdxExpr(t.Aff((), aff.subst({k: t.Aff((), v) for k, v in binding.sizes}).const))
        case t.Const():
            return e
    return None


def _number(s: _State, e: t.Expr) -> int:
    match e:
        case t.IdxExpr(aff):
            return _extent(s, aff)
        case t.StrideExpr(buf, dim) if buf in s.windows:
            win = s.windows[buf]
            return s.kernel[win.buf].stride(win.dims[dim])
        case t.Const(val) if val.lstrip("-").isdigit():
            return int(val)
    raise _NoMatch


def _holds(s: _State, pred: t.Expr) -> bool:
    if not isinstance(pred, t.BinOp):
        raise _NoMatch
    if pred.op == "and":
        return _holds(s, pred.lhs) and _holds(s, pred.rhs)
    lhs, rhs = _number(s, pred.lhs), _number(s, pred.rhs)
    ops = {"<=": lhs <= rhs, "<": lhs < rhs, ">=": lhs >= rhs, ">": lhs > rhs, "==": lhs == rhs}
    if pred.op not in ops:
        raise _NoMatch
    return ops[pred.op]
