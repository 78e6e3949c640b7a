"""Gemmini tile plans: immutable plan terms, their egglog sorts, and the two conversions.

A plan is the Gemmini-level shape of a tiled matmul-like kernel (see `exo_egraph.targets.gemmini.pattern`):
a chain from the root to one DIM×DIM×DIM compute, where each link is

- ``PLoop(var, stride, extent)``: a loop over tiles (``var`` advances by ``stride`` elements);
- ``PStage(operand, op)``: operand ``A`` or ``B`` is staged into the scratchpad here, for all the
  tiles the loops below it touch, by instruction ``op``;
- ``PAcc(zero, store)``: the accumulator tiles of the loops below are zeroed here (``zero``) and
  stored to DRAM after them (``store``);
- ``PMac(op)``: one DIM³ multiply-accumulate by ``op``.

An op is a selected instruction name, or ``?role`` while no instruction has been selected.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Callable, Union

from egglog import Expr as EggExpr
from egglog import StringLike, i64Like


@dataclass(frozen=True)
class PLoop:
    var: str
    stride: int
    extent: int
    body: "Plan"


@dataclass(frozen=True)
class PStage:
    operand: str
    op: str
    body: "Plan"


@dataclass(frozen=True)
class PAcc:
    zero: str
    store: str
    body: "Plan"


@dataclass(frozen=True)
class PMac:
    op: str


Plan = Union[PLoop, PStage, PAcc, PMac]


def role(name: str) -> str:
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
            case PStage(operand, op, _):
                lines.append(f"{pad}stage {operand} via {op}")
            case PAcc(zero, store, _):
                lines.append(f"{pad}accumulate: {zero} ... {store}")
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
    def acc(cls, zero: Op, store: Op, body: G) -> G: ...
    @classmethod
    def mac(cls, op: Op) -> G: ...


def to_egg_op(op: str, role_name: str) -> Op:
    return Op.role(op[1:]) if op.startswith("?") else Op.instr(op, role_name)


def to_egg(plan: Plan) -> G:
    match plan:
        case PLoop(var, stride, extent, body):
            return G.loop(var, stride, extent, to_egg(body))
        case PStage(operand, op, body):
            return G.stage(operand, to_egg_op(op, f"load_{operand}"), to_egg(body))
        case PAcc(zero, store, body):
            return G.acc(to_egg_op(zero, "zero"), to_egg_op(store, "store"), to_egg(body))
        case PMac(op):
            return G.mac(to_egg_op(op, "mac"))
    raise TypeError(plan)


# ----------------------------------------------------------------------------- e-node → plan

# children arrive decoded, in argument order (primitives as their values)
DECODERS: dict[str, Callable[..., object]] = {
    "Op.role": lambda name: role(name),
    "Op.instr": lambda name, _role: name,
    "G.loop": PLoop,
    "G.stage": PStage,
    "G.acc": PAcc,
    "G.mac": PMac,
}


def decode(op: str, children: list[object]) -> object:
    """Rebuild a plan (or op, or primitive) from an e-node's op and its decoded children."""
    if op in DECODERS:
        return DECODERS[op](*children)
    return json.loads(op)
