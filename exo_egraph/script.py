"""Schedule scripts as data: Exo scheduling calls, applied to a proc one at a time, rendered to text once.

A `Step` is one call of an ``exo.stdlib.scheduling`` function with plain arguments: literals,
`Cursor` paths (``p.find_loop("i #0").body()[2].after()``) and `Ref` names of objects the script
imports (an instruction proc, a memory, a config). `Session` applies steps to the proc — Exo
re-checks each — and lowers the result again so the next step can be located by structure.
`script_text` renders the steps as the stand-alone script a user pastes into their Exo code.
Steps pickle and compare, so schedules can travel (to workers, into a database) as data.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Sequence

import exo.stdlib.scheduling as scheduling
from exo import Procedure

from . import terms as t
from .lower import Unsupported, lower

Path = tuple[tuple[int, int], ...]  # (statement index, 0 = body / 1 = orelse) from the proc body down


class ReplayError(Exception):
    """A step the e-graph allowed was rejected by Exo, or the replay did not reach the term: a soundness bug."""

    def __init__(self, step: str, reason: str) -> None:
        self.step, self.reason = step, reason
        super().__init__(f"replay failed at `{step}`: {reason}")


@dataclass(frozen=True)
class Ref:
    """An object the script imports by name: ``from module import name``."""

    module: str
    name: str

    def resolve(self) -> Any:
        return getattr(importlib.import_module(self.module), self.name)


@dataclass(frozen=True)
class Cursor:
    """A cursor reached from the proc by method calls; ``("[]", (i,))`` indexes a block."""

    calls: tuple[tuple[str, tuple[Any, ...]], ...]

    def then(self, method: str, *args: Any) -> "Cursor":
        return Cursor(self.calls + ((method, args),))

    def body(self, idx: int) -> "Cursor":
        """The ``idx``-th statement of this loop's body."""
        return self.then("body").then("[]", idx)

    def render(self) -> str:
        out = "p"
        for method, args in self.calls:
            out += f"[{args[0]}]" if method == "[]" else f".{method}({', '.join(_render(a) for a in args)})"
        return out

    def resolve(self, proc: Procedure) -> Any:
        obj: Any = proc
        for method, args in self.calls:
            obj = obj[args[0]] if method == "[]" else getattr(obj, method)(*args)
        return obj


def find_loop(pattern: str) -> Cursor:
    return Cursor((("find_loop", (pattern,)),))


def find(pattern: str) -> Cursor:
    return Cursor((("find", (pattern,)),))


def top(idx: int) -> Cursor:
    """The ``idx``-th statement of the proc body."""
    return Cursor((("body", ()), ("[]", (idx,))))


@dataclass(frozen=True)
class Step:
    """``p = call(p, *args, **kwargs)``: one Exo scheduling call."""

    call: str
    args: tuple[Any, ...] = ()
    kwargs: tuple[tuple[str, Any], ...] = ()

    def render(self) -> str:
        parts = ["p", *(_render(a) for a in self.args), *(f"{k}={_render(v)}" for k, v in self.kwargs)]
        return f"{self.call}({', '.join(parts)})"

    def run(self, proc: Procedure) -> Procedure:
        args = [_resolve(a, proc) for a in self.args]
        kwargs = {k: _resolve(v, proc) for k, v in self.kwargs}
        return getattr(scheduling, self.call)(proc, *args, **kwargs)

    def lines(self) -> list[str]:
        return [f"p = {self.render()}"]

    def calls(self) -> set[str]:
        return {self.call}

    def refs(self) -> set[Ref]:
        """The objects the step names, in lists too (``replace_all(p, [instr, ...])``)."""
        flat = [x for a in (*self.args, *(v for _, v in self.kwargs)) for x in (a if isinstance(a, tuple) else (a,))]
        return {a for a in flat if isinstance(a, Ref)}


@dataclass(frozen=True)
class Piece:
    """One statement of the proc scheduled on its own: ``extract_subproc`` makes it the proc
    ``name`` (the proc now calls it), ``steps`` schedule that proc, ``call_eqv`` puts the
    scheduled one in the call's place. The script gives it a function ``schedule_<name>``."""

    at: Cursor
    name: str
    steps: tuple[Step, ...]
    call = "extract_subproc"

    def render(self) -> str:
        return f"extract_subproc(p, {self.at.render()}, {_render(self.name)}) + {len(self.steps)} steps"

    def lines(self) -> list[str]:
        return [f"p, piece = extract_subproc(p, {self.at.render()}, {_render(self.name)})",
                f"p = call_eqv(p, {_render(self.name + '(_)')}, schedule_{self.name}(piece))"]  # fmt: skip

    def run(self, proc: Procedure) -> Procedure:
        proc, piece = scheduling.extract_subproc(proc, self.at.resolve(proc), self.name)
        for s in self.steps:
            piece = s.run(piece)
        return scheduling.call_eqv(proc, f"{self.name}(_)", piece)

    def refs(self) -> set[Ref]:
        return {r for s in self.steps for r in s.refs()}

    def calls(self) -> set[str]:
        return {"extract_subproc", "call_eqv"}.union(*(s.calls() for s in self.steps))


def piece_name(proc: str, i: int) -> str:
    """The name of the proc ``extract_pieces`` makes of the ``i``-th nest of ``proc``."""
    return f"{proc}_part{i}"


def extract_pieces(proc: Procedure, name: str, nests: int, first: int = 0) -> tuple[Procedure, tuple[Procedure, ...]]:
    """``nests`` top-level nests of ``proc`` from the ``first``-th made procs of their own
    (``extract_subproc``): (``proc`` calling them, the nests' procs)."""
    out = []
    for i in range(nests):
        proc, piece = scheduling.extract_subproc(proc, top(first + i).resolve(proc), piece_name(name, i))
        out.append(piece)
    return proc, tuple(out)


def replay_pieces(
    proc: Procedure, prelude: Sequence[Step], calls: Procedure, done: Sequence[tuple[Procedure, Replayed]], what: str = "",
    first: int = 0, at: Sequence[Cursor] = (),
) -> Replayed:
    """``proc`` cut by the ``prelude`` into ``calls`` (as `extract_pieces` made it, from the
    ``first``-th top-level statement, or from the statements ``at``) and pieces, each piece
    scheduled on its own (``done``: the piece and its replay) and put back by ``call_eqv``. The
    prelude is recorded, not run again: Exo checked it when ``calls`` was made."""
    s = Session(proc)
    for x in prelude:
        s.record(x, calls)
    main = calls
    for i, (piece, replayed) in enumerate(done):
        main = scheduling.call_eqv(main, f"{piece.name()}(_)", replayed.proc)
        s.record(Piece(at[i] if at else top(first + i), piece.name(), replayed.steps), main)
    return Replayed(s.proc, tuple(s.steps), script_text(proc.name(), s.steps, what))


def step(call: str, *args: Any, **kwargs: Any) -> Step:
    """`Step` from a call written as in the script (lists become tuples, so steps hash)."""

    def frozen(a: Any) -> Any:
        return tuple(a) if isinstance(a, list) else a

    return Step(call, tuple(frozen(a) for a in args), tuple((k, frozen(v)) for k, v in kwargs.items()))


def _render(a: Any) -> str:
    if isinstance(a, Cursor):
        return a.render()
    if isinstance(a, Ref):
        return a.name
    if isinstance(a, str):
        return '"' + a.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(a, (list, tuple)):
        return "[" + ", ".join(_render(x) for x in a) + "]"
    return repr(a)


def _resolve(a: Any, proc: Procedure) -> Any:
    if isinstance(a, Cursor):
        return a.resolve(proc)
    if isinstance(a, Ref):
        return a.resolve()
    if isinstance(a, tuple):
        return [_resolve(x, proc) for x in a]
    return a


@dataclass
class Session:
    """A proc being scheduled: the steps so far and the term of the proc they made."""

    proc: Procedure
    steps: list[Step] = field(default_factory=list)
    _term: t.Proc | None = field(default=None, init=False, repr=False)

    @property
    def term(self) -> t.Proc:
        """The proc as a term, lowered when asked (a step may pass through forms terms do not
        express, such as the ``/`` and ``%`` indices ``divide_dim`` leaves until ``simplify``)."""
        if self._term is None:
            try:
                self._term = lower(self.proc)
            except Unsupported as e:  # the steps made a proc the next one cannot be located in
                last = self.steps[-1].render() if self.steps else "(start)"
                raise ReplayError(last, f"the proc it made does not lower to a term: {e}") from e
        return self._term

    def apply(self, s: Step) -> None:
        try:
            self.proc = s.run(self.proc)
        except Exception as e:  # Exo's SchedulingError and friends: the guard let through an illegal step
            raise ReplayError(s.render(), f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from e
        self._term = None
        self.steps.append(s)

    def record(self, s: "Step | Piece", proc: Procedure) -> None:
        """``s`` applied elsewhere already: ``proc`` is what it made (a `Piece` scheduled on its own)."""
        self.proc, self._term = proc, None
        self.steps.append(s)

    def do(self, call: str, *args: Any, **kwargs: Any) -> None:
        self.apply(step(call, *args, **kwargs))


@dataclass(frozen=True)
class Replayed:
    """A schedule replayed through Exo: the scheduled proc and the steps that made it."""

    proc: Procedure
    steps: tuple[Step, ...]
    script: str
    roundtrip: bool | None = None  # lower(proc) is the extracted term (None: the target has no such check)

    @property
    def lines(self) -> list[str]:
        return [s.render() for s in self.steps]


def script_text(name: str, steps: list[Step | Piece] | tuple[Step | Piece, ...], what: str = "") -> str:
    """The stand-alone script of ``steps``: imports derived from the steps, one ``p = ...`` per step
    (a `Piece`'s steps in a function of their own)."""
    imports: dict[str, set[str]] = {"exo.stdlib.scheduling": {c for s in steps for c in s.calls()}}
    for s in steps:
        for r in s.refs():
            imports.setdefault(r.module, set()).add(r.name)
    lines = [f"from {m} import {', '.join(sorted(names))}" for m, names in sorted(imports.items()) if names]
    pieces = _pieces(steps)
    return (
        f'"""{what or "Schedule"} found by exo-egraph; paste into your Exo project."""\n\n'
        "from __future__ import annotations\n\n"
        + "\n".join(lines)
        + ("\n\n\n" if lines else "\n\n")
        + _function("schedule", f"Schedule {name}: apply to the original proc, returns the scheduled proc.", steps)
        + "".join("\n\n" + _function(f"schedule_{x.name}", f"Schedule {x.name}, the part of {name} it names.", x.steps)
                  for x in pieces)  # fmt: skip
    )


def _pieces(steps: Sequence[Step | Piece]) -> list[Piece]:
    """Every `Piece` among ``steps``, and the pieces cut inside each piece's steps, in script order."""
    return [x for s in steps if isinstance(s, Piece) for x in (s, *_pieces(s.steps))]


def _function(name: str, doc: str, steps: list[Step | Piece] | tuple[Step | Piece, ...]) -> str:
    body = "\n".join(f"    {line}" for s in steps for line in s.lines()) or "    pass"
    return f'def {name}(p):\n    """{doc}"""\n{body}\n    return p\n'


# ----------------------------------------------------------------------------- locating


def block_at(term: t.Proc, path: Path) -> t.Block:
    """The block reached from the proc body by ``path``."""
    block = term.body
    for idx, branch in path:
        s = block[idx]
        block = s.orelse if branch else s.body
    return block


def loop_cursor(term: t.Proc, path: Path, idx: int) -> Cursor:
    """The cursor of the loop at ``idx`` of the block at ``path``: Exo's ``"name #n"``, the n-th
    loop of that name in program order."""
    target = block_at(term, path)[idx]
    same = [s for s in t.walk(term.body) if isinstance(s, t.Loop) and s.var == target.var]
    n = next(i for i, s in enumerate(same) if s is target)
    return find_loop(f"{target.var} #{n}")


def stmt_cursor(term: t.Proc, path: Path, idx: int) -> Cursor:
    """The cursor of the statement at ``idx`` of the block at ``path`` (a loop body or the proc body)."""
    if not path:
        return top(idx)
    return loop_cursor(term, path[:-1], path[-1][0]).body(idx)
