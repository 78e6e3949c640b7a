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
- ``PMac(op)``: one DIM³ multiply-accumulate by ``op``.

An op is a selected instruction name, or ``?role`` while no instruction has been selected.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Callable, Union

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
            case PStage(operand, op, _, buffers):
                lines.append(f"{pad}stage {operand} via {op}" + (f" ({buffers} buffers)" if buffers > 1 else ""))
            case PAcc(zero, store, _, buffers):
                lines.append(f"{pad}accumulate: {zero} ... {store}" + (f" ({buffers} buffers)" if buffers > 1 else ""))
            case PMac(op):
                lines.append(f"{pad}{op}")
    return "\n".join(lines)


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
        case PStage(operand, op, body, buffers):
            make = G.stage2 if buffers == 2 else G.stage
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
    "G.acc": PAcc,
    "G.acc2": lambda zero, store, body: PAcc(zero, store, body, 2),
    "G.mac": PMac,
}


def decode(op: str, children: list[object]) -> object:
    """Rebuild a plan (or op, or primitive) from an e-node's op and its decoded children."""
    if op in DECODERS:
        return DECODERS[op](*children)
    return json.loads(op)
