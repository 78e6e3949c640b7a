"""The x86 cost model: cycles of a register-tiled micro-kernel plan, with what it assumes stated.

Assumptions (an out-of-order core, one thread; the numbers are from the vendors' optimization
manuals and uops.info, and are fields of `X86Machine` so a test or a calibration can hold them to
measurements):
- issue rates per vector width: Intel's server cores (Skylake-X and later) run two 512-bit FMAs
  and two loads a cycle; AMD's Zen 4 splits a 512-bit operation over its two 256-bit pipes, so
  one 512-bit FMA and one 512-bit load a cycle (two of each at 256 bits); Zen and Zen+ split a
  256-bit one over their 128-bit pipes, so one 256-bit FMA and load a cycle (`datapath_bits`);
- the build is ``gcc -O3 -march=native``: the tile's vector registers stay in registers (the
  replay unrolls the tile completely, and four reduction steps to a loop iteration, so loop
  counters are not priced), and the naive proc gets gcc's own vectorisation only where
  its innermost loop is contiguous and not a float reduction (gcc keeps a float sum's order);
- a reduction step of the tile issues ``rows × vectors`` FMAs, ``vectors`` loads and ``rows``
  broadcasts; it takes the longest of its FMA throughput, its load throughput and the FMA
  latency (each accumulator's FMAs form one chain), plus ``step_overhead`` cycles that no tile
  hides, so bigger tiles amortise them: fitted on an AVX-512 Xeon, where a 14x2 tile took 0.88-0.92x
  the time per FMA of an 8x2 one and 12x2 0.93-0.97x (f32, 112-128 rows, K = 128), which issue
  rates alone price the same;
- buffers begin on a cache line (64 bytes), as TVM's runtime allocates its tensors and as
  validation and timing place them (`validate.cpu.aligned_copy`), so a row's vector loads split no
  line; on numpy's own placement (16 bytes past a line) a 128³ matmul's tiles run ~15 % slower;
- rows that whole tiles do not divide are a tile of their own after them (`tail_rows`);
- operands come from L1 when the reused panel of the innermost loop over tiles fits in half of
  L1, else from L2 (or memory when the operand's block does not fit in L2); hardware prefetch
  overlaps that traffic with compute, so a visit costs the longer of the two, not their sum.

A matrix-vector tile (`DotCost`) is priced the same way per reduction step, plus adding its
partial sums' lanes into the output: one chain of scalar adds per output (``add_latency`` each),
the chains of a tile's rows overlapping; the matrix streams once from where it fits (L2 or
memory), which bounds the whole kernel from below.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

from exo_egraph.targets.x86.pattern import DotKernel, Kernel, MicroKernel, Plan, tail_rows

F32 = 4


def _cache_bytes(level: int, default: int) -> int:
    """A cache's size from sysfs (index1 = L1 data, index2 = L2), or ``default``."""
    path = f"/sys/devices/system/cpu/cpu0/cache/index{level}/size"
    try:
        text = open(path).read().strip()
    except OSError:
        return default
    scale = {"K": 1024, "M": 1024 * 1024}.get(text[-1:], 1)
    return int(text.rstrip("KM")) * scale if text.rstrip("KM").isdigit() else default


def _cpuinfo(field: str) -> str:
    """The first value of ``field`` in /proc/cpuinfo ("" when there is none)."""
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.split(":", 1)[0].strip() == field), "")
    except OSError:
        return ""


def datapath_bits(vendor: str, family: int, model: int) -> int:
    """The widest vector one FMA pipe executes as a single operation (wider ones are split): Zen
    and Zen+ (AMD family 23, models below 0x30) have 128-bit pipes, later AMD cores 256-bit (Zen 4
    double-pumps 512-bit operations), Intel's AVX-512 server cores 512-bit."""
    if vendor == "AuthenticAMD":
        return 128 if family == 23 and model < 0x30 else 256
    return 512


@dataclass(frozen=True)
class X86Machine:
    """What the model assumes of the core (see the module docstring)."""

    width: int  # f32 lanes per vector register
    fma_ports: float = 2.0  # FMAs issued per cycle
    fma_latency: float = 4.0  # cycles before an accumulator's next FMA can issue
    load_ports: float = 2.0  # vector loads or load-broadcasts per cycle
    l1_bytes: int = 32 * 1024
    l2_bytes: int = 1024 * 1024
    l2_bytes_per_cycle: float = 16.0  # L1 refills from L2, sustained (half the peak line rate)
    memory_bytes_per_cycle: float = 8.0  # one core's share from L3 / DRAM
    visit_overhead: float = 12.0  # cycles per tile visit: loop control and address arithmetic
    step_overhead: float = 2.0  # cycles per reduction step beyond its issue (fitted, see the module docstring)
    add_latency: float = 4.0  # a scalar f32 add's latency (Intel 4, AMD Zen 3 cycles): lanes summed in a chain

    @staticmethod
    def host(width: int) -> "X86Machine":
        """The model of this machine: its core's issue rates at ``width``, its cache sizes from sysfs."""
        number = lambda field: int(_cpuinfo(field)) if _cpuinfo(field).isdigit() else 0  # noqa: E731
        core = X86Machine.core(width, _cpuinfo("vendor_id"), number("cpu family"), number("model"))
        return replace(core, l1_bytes=_cache_bytes(1, 32 * 1024), l2_bytes=_cache_bytes(2, 1024 * 1024))

    @staticmethod
    def core(width: int, vendor: str, family: int, model: int) -> "X86Machine":
        """The issue rates of that core at ``width``: two pipes; an operation wider than a pipe takes both."""
        ports = 2.0 * min(1.0, datapath_bits(vendor, family, model) / (32 * width))
        return X86Machine(width, fma_ports=ports, load_ports=ports)


@dataclass(frozen=True)
class X86Cost:
    """Prices micro-kernel plans and the naive nest of one kernel, in cycles."""

    mk: MicroKernel
    machine: X86Machine

    def step(self, rows: int, vectors: int) -> float:
        """Cycles of one reduction step of a rows × vectors tile."""
        m = self.machine
        return max(rows * vectors / m.fma_ports, (rows + vectors) / m.load_ports, m.fma_latency) + m.step_overhead

    def plan(self, plan: Plan) -> float:
        """Cycles of the kernel scheduled by ``plan``."""
        mk, m = self.mk, self.machine
        M, N, K = mk.extent(mk.x), mk.extent(mk.y), mk.steps
        tail = tail_rows(mk, plan.rows)
        if tail:  # the whole tiles, and the rows after them as a tile of their own
            whole = replace(self, mk=mk.priced_at(mk.x, M - tail)).plan(plan)
            return whole + replace(self, mk=mk.priced_at(mk.x, tail)).plan(replace(plan, rows=tail))
        cols = plan.vectors * m.width
        visits = mk.repeats * (M // plan.rows) * (N // cols) * (K // plan.kc)
        tile_moves = 2 * plan.rows * plan.vectors / m.load_ports  # load and store the accumulators
        compute = plan.kc * self.step(plan.rows, plan.vectors) + tile_moves + m.visit_overhead
        col_panel, row_panel = plan.kc * cols * F32, plan.rows * plan.kc * F32
        innermost = plan.order[-1]
        # the panel the innermost loop over tiles keeps reusing stays in L1 when it fits in half of it
        col_from = 0.0 if innermost == mk.x and col_panel <= m.l1_bytes / 2 else col_panel
        row_from = 0.0 if innermost == mk.y and row_panel <= m.l1_bytes / 2 else row_panel
        operand_block = max(M, N) * plan.kc * F32  # a whole block of either operand between reuses
        bandwidth = m.l2_bytes_per_cycle if operand_block <= m.l2_bytes / 2 else m.memory_bytes_per_cycle
        memory = (col_from + row_from) / bandwidth
        return visits * max(compute, memory)

    def naive(self) -> float:
        """Cycles of the nest as written: vectorised by gcc when its innermost loop is the contiguous
        ``y`` (one vector FMA, a load and a store of the output per step), else one FMA chain."""
        mk, m = self.mk, self.machine
        steps = mk.repeats * mk.extent(mk.x) * mk.extent(mk.y) * mk.steps
        if mk.loops[-1] == mk.y:
            return steps / m.width  # the output's store limits it to a vector a cycle
        return steps * m.fma_latency


@dataclass(frozen=True)
class DotCost:
    """Prices matrix-vector plans (partial sums along the reduction) and the naive nest, in cycles."""

    dk: DotKernel
    machine: X86Machine

    def plan(self, plan: Plan) -> float:
        """Cycles of the kernel scheduled by ``plan``."""
        dk, m = self.dk, self.machine
        rows, vectors, lanes = plan.rows, plan.vectors, plan.vectors * m.width
        step = max(rows * vectors / m.fma_ports, (vectors + rows * vectors) / m.load_ports, m.fma_latency)
        add_back = max(lanes * m.add_latency, rows * lanes / m.fma_ports)  # the rows' chains overlap
        tile = (dk.steps // lanes) * step + add_back + m.visit_overhead
        tiles = dk.repeats * dk.extent(dk.x) // rows
        return max(tiles * tile, self._streaming())

    def _streaming(self) -> float:
        """Cycles to bring the matrix in once (from L2 when it fits in half of it, else from memory)."""
        dk, m = self.dk, self.machine
        matrix = dk.repeats * dk.extent(dk.x) * dk.steps * F32
        return matrix / (m.l2_bytes_per_cycle if matrix <= m.l2_bytes / 2 else m.memory_bytes_per_cycle)

    def naive(self) -> float:
        """Cycles of the nest as written: with the reduction innermost, one FMA chain per output
        (gcc keeps a float sum's order, so it does not vectorise it); otherwise the matrix read
        across its rows, an element per load."""
        dk, m = self.dk, self.machine
        steps = dk.repeats * dk.extent(dk.x) * dk.steps
        chains = steps * m.fma_latency if dk.loops[-1] == dk.y else steps / m.load_ports
        return max(chains, self._streaming())


def cost_model(kernel: Kernel, machine: X86Machine) -> X86Cost | DotCost:
    """The model that prices ``kernel``'s plans."""
    return DotCost(kernel, machine) if isinstance(kernel, DotKernel) else X86Cost(kernel, machine)
