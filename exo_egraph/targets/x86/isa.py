"""The vector ISA the x86 target schedules for: detected from the host, its instructions selected by unification.

Which instruction fills which role (vector load, store, broadcast, fused multiply-add, zero) is found by
unifying every ``@instr`` of ``exo.platforms.x86`` with a small template nest per role
(`exo_egraph.instrs.unify`, as for Gemmini), so no instruction name appears in the rules.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from types import ModuleType

from exo_egraph import terms as t
from exo_egraph.instrs import instr_patterns, unify
from exo_egraph.lower import Unsupported


class Role(StrEnum):
    LOAD = "load"  # reg[l] = mem[l]
    STORE = "store"  # mem[l] = reg[l]
    BROADCAST = "broadcast"  # reg[l] = mem[0]
    FMA = "fma"  # acc[l] += a[l] * b[l]
    ZERO = "zero"  # reg[l] = 0 (a matrix-vector tile's partial sums start from it)


@dataclass(frozen=True)
class IsaFacts:
    """What the hardware offers, from the vendors' manuals: Exo's memory for its registers, how many."""

    memory: str  # the Exo memory of a vector register (`exo.platforms.x86`)
    registers: int  # architectural vector registers
    cpu_flag: str  # the /proc/cpuinfo flag that says the host has it
    gcc_macro: str  # defined by gcc -march=native when it does


ISAS = {
    "avx512": IsaFacts("AVX512", 32, "avx512f", "__AVX512F__"),
    "avx2": IsaFacts("AVX2", 16, "avx2", "__AVX2__"),  # with FMA3 (every AVX2 core has it)
}


@dataclass(frozen=True)
class Isa:
    """A vector ISA as the rules, the cost model and the replay see it."""

    name: str
    width: int  # f32 lanes per register
    registers: int
    memory: str
    instrs: tuple[tuple[Role, str], ...]  # role → instruction (a proc of `module`)
    module: str = "exo.platforms.x86"

    def instr(self, role: Role) -> str:
        return dict(self.instrs)[role]


def host_isas() -> tuple[str, ...]:
    """The ISAs this machine runs, best first: /proc/cpuinfo's flags, else gcc -march=native's macros."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        flags = []
    if flags:
        return tuple(name for name, facts in ISAS.items() if facts.cpu_flag in flags)
    try:
        macros = subprocess.run(
            ["gcc", "-march=native", "-dM", "-E", "-"], input="", capture_output=True, text=True, timeout=30
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    return tuple(name for name, facts in ISAS.items() if f"#define {facts.gcc_macro} " in macros)


def _templates(memory: str, width: int) -> dict[Role, tuple[t.Block, dict[str, t.Buffer]]]:
    """One template nest per role over ``width`` f32 lanes in ``memory``: what the replay leaves."""
    lane = t.Aff.of(l=1)
    reg, dram = t.Buffer("f32", memory, (width,)), t.Buffer("f32", "DRAM", (width,))

    def loop(s: t.Stmt) -> t.Block:
        return (t.Loop("l", t.Aff(), t.Aff((), width), "seq", (s,)),)

    fma = t.Reduce("acc", (lane,), t.BinOp("*", t.Read("a", (lane,)), t.Read("b", (lane,))))
    return {
        Role.LOAD: (loop(t.Assign("reg", (lane,), t.Read("src", (lane,)))), {"reg": reg, "src": dram}),
        Role.STORE: (loop(t.Assign("dst", (lane,), t.Read("reg", (lane,)))), {"reg": reg, "dst": dram}),
        Role.BROADCAST: (
            loop(t.Assign("reg", (lane,), t.Read("src", (t.Aff(),)))),
            {"reg": reg, "src": t.Buffer("f32", "DRAM", (1,))},
        ),
        Role.FMA: (loop(fma), {"acc": reg, "a": reg, "b": reg}),
        Role.ZERO: (loop(t.Assign("reg", (lane,), t.Const("0.0", "R"))), {"reg": reg}),
    }


@lru_cache(maxsize=None)
def select_isa(name: str, platform: ModuleType | None = None) -> Isa:
    """The ISA ``name`` (a key of `ISAS`) with an instruction for every role, unified from ``platform``."""
    if name not in ISAS:
        raise Unsupported(f"unknown ISA {name!r} (known: {', '.join(ISAS)})")
    if platform is None:
        import exo.platforms.x86 as platform
    facts = ISAS[name]
    patterns = instr_patterns(platform)
    widths = sorted(
        {a.shape[0].const for p in patterns for a in p.args if a.mem == facts.memory and a.typ == "f32" and len(a.shape) == 1}
    )
    for width in reversed(widths):  # the widest register of this memory that has every role
        chosen: dict[Role, str] = {}
        for role, (block, buffers) in _templates(facts.memory, width).items():
            found = sorted(p.name for p in patterns if unify(p, block, buffers) is not None)
            if found:
                chosen[role] = found[0]
        if len(chosen) == len(Role):
            return Isa(name, width, facts.registers, facts.memory, tuple(sorted(chosen.items())), platform.__name__)
    raise Unsupported(f"{platform.__name__} has no f32 load, store, broadcast, FMA and zero for {facts.memory}")


def default_isa() -> str:
    """The best ISA of this machine (``EXO_EGRAPH_ISA`` overrides); Unsupported when it has none."""
    forced = os.environ.get("EXO_EGRAPH_ISA")
    if forced:
        return forced
    found = host_isas()
    if not found:
        raise Unsupported(f"this machine has none of the x86 target's ISAs ({', '.join(ISAS)})")
    return found[0]
