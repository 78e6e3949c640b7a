"""Instruction selection for Gemmini: every ``@instr`` of the platform unified with each role's tile nest.

This is what the Gemmini rules, cost model, extraction and replay know of the instructions: which
instruction can fill which role, under which binding of its arguments (`exo_egraph.instrs`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from types import MappingProxyType, ModuleType
from typing import Mapping

from exo_egraph import terms as t
from exo_egraph.instrs import Binding, InstrPattern, instr_patterns, unify

from .config import BLOCK, DIM
from .pattern import GemmPattern
from .plans import Role


def block_layout(args: tuple[t.Arg, ...], preds: tuple[t.Expr, ...], c_instr: str = "") -> tuple[t.Expr, ...]:
    """The stride preconditions of a scratchpad block ``[m, n, DIM]`` argument, as the hardware needs them.

    An mvin wider than DIM columns writes its j-th DIM-column block a *block stride* of rows after
    the previous one (Gemmini ISA; the model in ``validate/gemmini`` does the same): DIM rows as
    ``gemmini_extended3_config_ld`` configures it, the stride given to
    ``gemmini_extended4_config_ld`` otherwise (`block_rows`: exo 1.0's ``ld_i8_block_id2`` passes
    its ``n``). exo 1.0's block loads declare ``stride(dst, 0) == 16`` and ``stride(dst, 1) == 1``,
    copied from the 2-D loads: no tiled buffer meets them, and Exo does not check them. The block
    loads' own bodies (``dst[j, i, k] = src[i, 16 * j + k]``) and the hardware agree exactly when
    blocks are a block stride of rows apart and rows DIM elements apart, so those are the
    preconditions checked here. Staged tiles keep DIM rows, so a block stride of ``n`` holds
    only for whole tiles: a partial tile loaded that way would land its blocks ``n`` rows apart
    and be read DIM rows apart (the ResNet convolution's 14-row tiles ran wrong so).

    Two more of exo 1.0's declarations cannot hold for any use, and Exo does not check them:
    ``ld_acc_i32_vector`` (a bias row broadcast to the accumulator: ``dst[i, j] = src[0, j]``,
    the mvin's DRAM stride configured 0) declares ``stride(dst, 0) == 1`` of a ``[n, 16]``
    accumulator tile, whose rows the hardware writes DIM elements apart as every 2-D load does
    (``stride(dst, 0) == 16``: checked instead), and ``stride(src, 0) == 1`` of a one-row
    ``[1, 16]`` source, whose row stride nothing reads (dropped).
    """
    gemm = {a.name for a in args if a.mem in ("GEMM_SCRATCH", "GEMM_ACCUM")}
    blocks = {a.name for a in args if a.name in gemm and len(a.shape) == 3 and a.shape[2] == t.Aff((), DIM)}
    tiles = {a.name for a in args if a.name in gemm and len(a.shape) == 2 and a.shape[1] == t.Aff((), DIM)}
    one_row = {a.name for a in args if a.name not in gemm and len(a.shape) == 2 and a.shape[0] == t.Aff((), 1)}
    rows = block_rows(c_instr)
    fixed = {0: rows.scale(DIM) if rows is not None else t.Aff((), -1), 1: t.Aff((), DIM)}  # -1: never holds
    out = []
    for p in preds:
        if isinstance(p, t.BinOp) and isinstance(p.lhs, t.StrideExpr):
            buf, dim = p.lhs.buf, p.lhs.dim
            if buf in one_row and dim == 0:
                continue
            if buf in blocks and dim in fixed:
                p = t.BinOp(p.op, p.lhs, t.IdxExpr(fixed[dim]))
            elif buf in tiles and dim == 0:
                p = t.BinOp(p.op, p.lhs, t.IdxExpr(t.Aff((), DIM)))
        out.append(p)
    return tuple(out)


def block_rows(c_instr: str) -> t.Aff | None:
    """Rows between the DIM-column blocks of the wide mvin ``c_instr`` configures: the block stride
    argument of ``gemmini_extended4_config_ld`` (a number, or one of the instruction's size
    arguments, ``{n}``), else DIM; None when that argument is anything else (the load is then
    never selected)."""
    call = re.search(r"gemmini_extended4_config_ld\(([^;]*)\)\s*;", c_instr)
    if call is None:
        return t.Aff((), DIM)
    stride = call.group(1).split(",")[3].strip()
    if stride.isdigit():
        return t.Aff((), int(stride))
    if (name := re.fullmatch(r"\{(\w+)\}", stride)) is not None:
        return t.Aff(((name.group(1), 1),), 0)
    return None


@dataclass(frozen=True)
class Selection:
    """Instruction selection for one kernel: every (role, instruction) whose body unified."""

    bindings: tuple[tuple[str, Binding], ...]  # (role, binding)
    all_patterns: Mapping[str, InstrPattern]  # every proc of the platform (instructions and twins), by name
    blocks: frozenset[str] = frozenset()  # loads that move up to BLOCK column tiles at once

    def for_role(self, role: str) -> tuple[Binding, ...]:
        return tuple(b for r, b in self.bindings if r == role)

    def binding(self, role: str, instr: str) -> Binding:
        return next(b for r, b in self.bindings if r == role and b.instr == instr)

    def first_step(self, zero: str) -> bool:
        """Is ``zero`` a plain matmul that zeroes by doing the first reduction step (`first_step_rules`)?"""
        return any(b.instr == zero for b in self.for_role(Role.ZERO_MAC))

    def pattern(self, name: str) -> InstrPattern:
        return self.all_patterns[name]


def _patterns(modules: tuple[ModuleType, ...], plain_procs: bool = False) -> dict[str, InstrPattern]:
    out: dict[str, InstrPattern] = {}
    for module in modules:
        for p in instr_patterns(module, plain_procs=plain_procs, preconditions=block_layout):
            out.setdefault(p.name, p)  # a module re-exporting another's procs (ours, exo's) adds nothing
    return out


def select_instructions(g: GemmPattern, modules: tuple[ModuleType, ...]) -> Selection:
    """Unify every ``@instr`` of ``modules`` with every role of ``g`` (Exo's ``replace``)."""
    buffers = dict(g.buffers)
    patterns = _patterns(modules).values()
    found, blocks = [], set()
    for pattern in patterns:
        for role, nest in g.roles:
            binding = unify(pattern, nest, buffers)
            if binding is not None:
                if role.filled != role:  # a block load fills the load role, for more tiles at once
                    blocks.add(binding.instr)
                    role = role.filled
                found.append((role, binding))
    every = _patterns(modules, plain_procs=True)
    return Selection(tuple(found), MappingProxyType(every), frozenset(blocks))
