"""Gemmini tile plans: immutable plan terms, their egglog sorts, and the two conversions.

A plan is the Gemmini-level shape of a tiled matmul-like kernel (see `exo_egraph.targets.gemmini.pattern`):
a chain from the root to one DIM×DIM×DIM compute, where each link is

- ``PLoop(var, stride, extent)``: a loop over tiles (``var`` advances by ``stride`` elements);
- ``PStage(operand, op)``: operand ``A`` or ``B`` is staged into the scratchpad here, for all the
  tiles the loops below it touch, by instruction ``op``;
- ``PAcc(zero, store)``: the accumulator tiles of the loops below are zeroed here (``zero``) and
  stored to DRAM after them (``store``);
- a staging or the accumulator with ``buffers=2`` alternates between two buffers across the
  iterations of the loop right around it (double buffering: under Gemmini's decoupled
  controllers, the next iteration's loads or zeroes need not wait for this one's reads);
- a double-buffered staging with ``ahead`` loads the next iteration's tiles during this one,
  spread in chunks over the loops below it (`spread_loads`): Gemmini's load station is in order
  and holds a few commands, so a whole row of loads issued at once holds back the loads this
  iteration's steps wait for (its accumulator's bias);
- ``PMac(op)``: one DIM³ multiply-accumulate by ``op``.

An op is a selected instruction name, or ``?role`` while no instruction has been selected.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Callable, Sequence, Union

from egglog import Expr as EggExpr
from egglog import StringLike, i64Like


class Operand(StrEnum):
    """What a staging or a tile count is about: the two operands, or ``C``, the accumulator."""

    A = "A"
    B = "B"
    C = "C"

    __hash__ = str.__hash__  # hashed as its value, at str speed (extraction looks roles up in hot loops)


OPERANDS = (Operand.A, Operand.B)  # the staged (loaded) operands


class Role(StrEnum):
    """A part of one tile's work that an instruction fills (`exo_egraph.targets.gemmini.pattern`)."""

    ZERO = "zero"
    LOAD_A = "load_A"
    LOAD_B = "load_B"
    MAC = "mac"
    STORE = "store"
    ZERO_MAC = "zero_mac"  # zero, then the first multiply: a plain (overwriting) matmul
    LOAD_A_BLOCK = "load_A_block"  # several column tiles of A at once: fills LOAD_A
    LOAD_B_BLOCK = "load_B_block"

    __hash__ = str.__hash__

    @staticmethod
    def load(operand: str) -> "Role":
        return _LOAD_ROLES[operand]

    @property
    def operand(self) -> "Operand | None":
        """The operand a load role loads (None for the other roles)."""
        return next((o for o, r in _LOAD_ROLES.items() if r == self), None)

    @property
    def filled(self) -> "Role":
        """The role an instruction for this one fills (a block load fills the load role)."""
        return Role(self.value.removesuffix("_block"))


_LOAD_ROLES = {Operand.A: Role.LOAD_A, Operand.B: Role.LOAD_B}


class _Link:
    """A plan link whose hash is computed once, from its fields and its body's (cached in turn):
    extraction keys tables by plans of every depth in its hot loops, where a dataclass's own hash
    would walk the whole chain each time. It pickles by its fields, so a hash made in one process
    (strings hash differently in each) never reaches another."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "_hash", hash((type(self), *vars(self).values())))

    def __hash__(self) -> int:
        return self._hash

    def __reduce__(self) -> tuple:
        return type(self), tuple(v for k, v in vars(self).items() if k != "_hash")


def _link(cls: type) -> type:
    """A frozen dataclass that keeps `_Link`'s cached hash (``dataclass`` would write its own)."""
    cls = dataclass(frozen=True)(cls)
    cls.__hash__ = _Link.__hash__
    return cls


@_link
class PLoop(_Link):
    var: str
    stride: int
    extent: int
    body: "Plan"


@_link
class PStage(_Link):
    operand: str
    op: str
    body: "Plan"
    buffers: int = 1  # 2: alternating across the iterations of the loop right around it
    ahead: bool = False  # (with 2 buffers) the next iteration's loads spread over this one's body


@_link
class PAcc(_Link):
    zero: str
    store: str
    body: "Plan"
    buffers: int = 1


@_link
class PMac(_Link):
    op: str


Plan = Union[PLoop, PStage, PAcc, PMac]


def loads_ahead(link: Plan) -> bool:
    """Is ``link`` a staging loaded ahead (``PStage.ahead``)?"""
    return isinstance(link, PStage) and link.ahead


def role(name: Role) -> str:
    """The op of a role no instruction has been selected for."""
    return f"?{name}"


def chain(plan: Plan) -> list[Plan]:
    """The links of ``plan`` from the root down to its `PMac`."""
    out = [plan]
    while not isinstance(out[-1], PMac):
        out.append(out[-1].body)
    return out


def show(plan: Plan) -> str:
    """One line per link, indented like the loops it stands for."""
    lines, depth = [], 0
    for link in chain(plan):
        pad = "  " * depth
        match link:
            case PLoop(var, stride, extent, _):
                lines.append(f"{pad}for {var} by {stride} x{extent}")
                depth += 1
            case PStage(operand, op, _, buffers, ahead):
                lines.append(f"{pad}stage {operand} via {op}" + (f" ({buffers} buffers)" if buffers > 1 else "")
                             + (", next loaded ahead" if ahead else ""))
            case PAcc(zero, store, _, buffers):
                lines.append(f"{pad}accumulate: {zero} ... {store}" + (f" ({buffers} buffers)" if buffers > 1 else ""))
            case PMac(op):
                lines.append(f"{pad}{op}")
    return "\n".join(lines)


@dataclass(frozen=True)
class Spread:
    """How a staging loaded ahead (``PStage.ahead``) cuts the next iteration's load nest into
    chunks: one per trip of the first ``depth`` loops below the staging (the *groups*), each
    placed right before what the innermost group runs (its loop or multiply). A group matched
    with a nest loop of fewer trips carries chunks on its first trips only (the replay cuts it)."""

    parts: tuple[tuple[int, ...], ...]  # per loop of the load nest, outermost first: (trips,), or (outer, inner) once split
    order: tuple[int, ...]  # positions in `extents`, in the new nest order: the groups' loops, then the rest
    depth: int

    @property
    def extents(self) -> tuple[int, ...]:
        """The split nest's loops' trips, in the nest's old order."""
        return tuple(e for part in self.parts for e in part)

    def place(self, index: Sequence[int]) -> tuple[int, ...]:
        """A load's position in the new nest order (a tuple, its first ``depth`` entries the
        group it belongs to), from its ``index`` in the old nest."""
        flat = []
        for part, i in zip(self.parts, index):
            flat += [i] if len(part) == 1 else [i // part[1], i % part[1]]
        return tuple(flat[j] for j in self.order)


def spread_over(links: Sequence["Plan"], staging: int, parallel: Sequence[str], first_step: bool) -> list[int]:
    """The loops (link indices) a staging loaded ahead may spread its loads over: those below it
    that stay one loop in the replayed code, so up to the first parallel loop below the
    accumulator (the replay fissions it into zero, compute and store nests) or, when the
    accumulator's zero is its first step, the first reduction loop (the replay peels its first trip)."""
    acc = next(i for i, x in enumerate(links) if isinstance(x, PAcc))
    out = []
    for j in range(staging + 1, len(links)):
        x = links[j]
        if not isinstance(x, PLoop):
            continue
        if (x.var in parallel and j > acc) or (x.var not in parallel and first_step):
            break
        out.append(j)
    return out


def spread_loads(nest: Sequence[int], groups: Sequence[int]) -> Spread:
    """Match the loops below a staging (``groups``: their trips, outermost first) with loops of
    its load nest (``nest``), as many as match in order: a nest loop of the same trips, else the
    first nest loop whose trips the group's divide (split, the group taking its outer part),
    else the nest loop of the most trips below the group's (the group's first trips take it)."""
    parts = [(e,) for e in nest]
    matched: list[tuple[int, int]] = []  # (nest loop, part of it) per group
    for trips in groups:
        free = [(i, j) for i, part in enumerate(parts) for j in range(len(part)) if (i, j) not in matched]
        match = next(((i, j) for i, j in free if parts[i][j] == trips), None)
        if match is None:
            whole = next((i for i, j in free if len(parts[i]) == 1 and parts[i][0] % trips == 0), None)
            if whole is not None:
                parts[whole] = (trips, parts[whole][0] // trips)
                match = (whole, 0)
        if match is None:
            fewer = [(parts[i][j], -n, (i, j)) for n, (i, j) in enumerate(free) if 1 < parts[i][j] < trips]
            if not fewer:
                break
            match = max(fewer)[2]
        matched.append(match)
    flat = {(i, j): n for n, (i, j) in enumerate((i, j) for i, part in enumerate(parts) for j in range(len(part)))}
    rest = [n for key, n in flat.items() if key not in matched]
    return Spread(tuple(parts), tuple(flat[m] for m in matched) + tuple(rest), len(matched))


# ----------------------------------------------------------------------------- egglog sorts


class Op(EggExpr):
    """An unfilled role, or an instruction filling it (the role stays in the node, so two roles
    that some instruction fills both never merge)."""

    @classmethod
    def role(cls, name: StringLike) -> Op: ...
    @classmethod
    def instr(cls, name: StringLike, role: StringLike) -> Op: ...


class G(EggExpr):
    @classmethod
    def loop(cls, var: StringLike, stride: i64Like, extent: i64Like, body: G) -> G: ...
    @classmethod
    def stage(cls, operand: StringLike, op: Op, body: G) -> G: ...
    @classmethod
    def stage2(cls, operand: StringLike, op: Op, body: G) -> G: ...  # double-buffered
    @classmethod
    def stage_ahead(cls, operand: StringLike, op: Op, body: G) -> G: ...  # double-buffered, loaded ahead
    @classmethod
    def acc(cls, zero: Op, store: Op, body: G) -> G: ...
    @classmethod
    def acc2(cls, zero: Op, store: Op, body: G) -> G: ...
    @classmethod
    def mac(cls, op: Op) -> G: ...


def to_egg_op(op: str, role_name: str) -> Op:
    return Op.role(op[1:]) if op.startswith("?") else Op.instr(op, str(role_name))


def to_egg(plan: Plan) -> G:
    match plan:
        case PLoop(var, stride, extent, body):
            return G.loop(var, stride, extent, to_egg(body))
        case PStage(operand, op, body, buffers, ahead):
            make = G.stage_ahead if ahead else G.stage2 if buffers == 2 else G.stage
            return make(str(operand), to_egg_op(op, Role.load(operand)), to_egg(body))
        case PAcc(zero, store, body, buffers):
            make = G.acc2 if buffers == 2 else G.acc
            return make(to_egg_op(zero, Role.ZERO), to_egg_op(store, Role.STORE), to_egg(body))
        case PMac(op):
            return G.mac(to_egg_op(op, Role.MAC))
    raise TypeError(plan)


# ----------------------------------------------------------------------------- e-node → plan

# children arrive decoded, in argument order (primitives as their values)
DECODERS: dict[str, Callable[..., object]] = {
    "Op.role": lambda name: role(name),
    "Op.instr": lambda name, _role: name,
    "G.loop": PLoop,
    "G.stage": PStage,
    "G.stage2": lambda operand, op, body: PStage(operand, op, body, 2),
    "G.stage_ahead": lambda operand, op, body: PStage(operand, op, body, 2, True),
    "G.acc": PAcc,
    "G.acc2": lambda zero, store, body: PAcc(zero, store, body, 2),
    "G.mac": PMac,
}


def decode(op: str, children: list[object]) -> object:
    """Rebuild a plan (or op, or primitive) from an e-node's op and its decoded children."""
    if op in DECODERS:
        return DECODERS[op](*children)
    return json.loads(op)
