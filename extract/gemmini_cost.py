"""The Gemmini cost model: cycles of a tile plan, counted as the timing models count them.

Each instruction's cost is read from its own C template (the ``gemmini_*`` commands it emits and
their row/column arguments under the unifier's size binding) and priced with the constants of
``model/include/gemmini_timing.h``. Two models, as the simulator has them:

- ``cycles``: the decoupled model (loads, execution and stores overlap, waiting on reservation
  stations and tile hazards), by running the plan's commands in program order through
  `exo_egraph.extract.gemmini_timeline` — equal to the simulator's ``cycles`` for the replay
  (large plans: run for a few outer trips and extrapolated);
- ``serial_cycles`` and `counters`: the serial model, additive over the plan (what extraction's
  dynamic programme sums to shortlist plans), equal to the simulator's ``cycles_serial``.

Scratchpad and accumulator capacity are hard limits (`Footprint.fits`).

The naive proc runs on the host CPU only; `host_cycles` models it as one cycle per executed
scalar statement (an in-order core such as Rocket at CPI 1: a lower bound).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from itertools import product

from exo_egraph import terms as t
from exo_egraph.instrs import Binding, InstrPattern, kernel_expr
from exo_egraph.targets.gemmini.config import DIM, block_factor
from exo_egraph.targets.gemmini.pattern import ROLES, GemmPattern
from exo_egraph.targets.gemmini.plans import Operand, PAcc, Plan, PLoop, PMac, PStage, Role, chain
from exo_egraph.targets.gemmini.selection import Selection

from .gemmini_timeline import Command, Timing, commands, plan_timing, size_value, template_commands

COUNTERS = ("cycles_serial", "macs", "mvins", "mvouts", "preloads", "computes", "configs")


@dataclass(frozen=True)
class InstrCost:
    """What one call of an instruction adds to the model's counters."""

    counters: tuple[tuple[str, int], ...]

    def get(self, name: str) -> int:
        return dict(self.counters).get(name, 0)

    @property
    def cycles(self) -> int:
        """Under the serial model (the extraction DP's additive proxy)."""
        return self.get("cycles_serial")


def instr_cost(pattern: InstrPattern, binding: Binding, consts: dict[str, int]) -> InstrCost:
    """Counters one call adds, by the formulas documented in ``gemmini_timing.h``."""
    sizes = dict(binding.sizes)
    acc_params = {a.name for a in pattern.args if a.mem == "GEMM_ACCUM"}
    c: dict[str, int] = {k: 0 for k in COUNTERS}
    preload_cols = DIM

    def dma(cols: int, rows: int, elem: int) -> int:
        return consts["DMA_LATENCY"] + rows * -(-cols * elem // consts["BUS_BYTES"])

    for name, args in template_commands(pattern.c_template):
        if re.fullmatch(r"gemmini_extended_mvin[23]?", name):
            elem = 4 if any(f"{{{p}_data}}" in args[1] for p in acc_params) else 1
            c["cycles_serial"] += dma(size_value(args[2], sizes), size_value(args[3], sizes), elem)
            c["mvins"] += 1
        elif name == "gemmini_extended_mvout":
            elem = 4 if "0x20000000" in args[1] else 1
            c["cycles_serial"] += dma(size_value(args[2], sizes), size_value(args[3], sizes), elem)
            c["mvouts"] += 1
        elif name == "gemmini_extended_preload":
            preload_cols = size_value(args[2], sizes)
            c["cycles_serial"] += consts["PRELOAD"] + size_value(args[3], sizes)
            c["preloads"] += 1
        elif name in ("gemmini_extended_compute_preloaded", "gemmini_extended_compute_accumulated"):
            a_cols, a_rows = size_value(args[2], sizes), size_value(args[3], sizes)
            c["cycles_serial"] += consts["COMPUTE"] + a_rows
            c["macs"] += a_rows * a_cols * preload_cols
            c["computes"] += 1
        elif name in ("gemmini_extended3_config_ld", "gemmini_extended4_config_ld", "gemmini_extended_config_st"):
            c["cycles_serial"] += consts["CONFIG"]
            c["configs"] += 1
        elif name == "gemmini_extended_config_ex":
            c["cycles_serial"] += consts["CONFIG_EX"]
            c["configs"] += 1
        elif name == "gemmini_fence":
            c["cycles_serial"] += consts["FENCE"]
    return InstrCost(tuple(c.items()))


# ----------------------------------------------------------------------------- configs


@dataclass(frozen=True)
class ConfigWrite:
    """A config field an instruction sets: at its call (inline) or once at the top (hoisted)."""

    config: str
    field: str
    value: str
    instr: str  # the config instruction that writes it (a call of it is hoisted)
    args: tuple[str, ...]
    hoisted: bool


def config_writes(selection: Selection, binding: Binding) -> tuple[ConfigWrite, ...] | None:
    """Config writes of ``binding``'s instruction, read from its ``*_v2`` twin (configs, then
    ``do_*``); None when a config's value cannot be told."""
    name = binding.instr
    hoisted = name.startswith("do_")
    twin = selection.all_patterns.get((name[3:] if hoisted else name) + "_v2")
    if twin is None or not twin.body or not isinstance(twin.body[-1], t.Call):
        # a do_* instruction relies on a config its body does not declare: without the twin
        # that names it (exo 1.0 has none for do_ld_acc_i32), the config it reads is unknown
        return None if hoisted else ()
    required = {(c, f): v for c, f, v in binding.requires}
    out = []
    for call in twin.config_calls:
        cfg = selection.all_patterns.get(call.proc)
        if cfg is None:
            continue
        writes = [s for s in cfg.body if isinstance(s, t.WriteConfig)]
        # a config argument is the twin's own argument in the kernel's names, or else what the
        # instruction needs the field it sets to hold (a config the instruction reads)
        args = [kernel_expr(binding, a) for a in call.args]
        for s in writes:
            name = _param_of(s.rhs)
            i = next((i for i, p in enumerate(cfg.args) if p.name == name), None)
            if i is not None and (s.config, s.field) in required:
                args[i] = required[(s.config, s.field)]
        if any(a is None for a in args):
            return None  # what the config must hold is not known: the instruction cannot be used
        params = {p.name: a for p, a in zip(cfg.args, args)}
        for s in writes:
            value = params.get(_param_of(s.rhs), s.rhs)
            out.append(ConfigWrite(s.config, s.field, _show(value), call.proc, tuple(_show(a) for a in args), hoisted))
    return tuple(out)


def _param_of(e: t.Expr) -> str | None:
    match e:
        case t.Read(name, ()):
            return name
        case t.IdxExpr(aff) if len(aff.terms) == 1 and aff.terms[0][1] == 1 and aff.const == 0:
            return aff.terms[0][0]
    return None


def _show(e: t.Expr) -> str:
    match e:
        case t.Read(name, ()):
            return name
        case t.StrideExpr(buf, dim):
            return f"stride({buf}, {dim})"
        case t.IdxExpr(aff):
            return str(aff)
        case t.Const(val):
            return val
    return repr(e)


def consistent(writes: list[ConfigWrite]) -> bool:
    """Hoisted configs hold for the whole proc: no other write of the same field may differ or
    happen inline (an inline write would change what a hoisted ``do_*`` instruction relies on)."""
    by_field: dict[tuple[str, str], list[ConfigWrite]] = {}
    for w in writes:
        by_field.setdefault((w.config, w.field), []).append(w)
    for ws in by_field.values():
        if any(w.hoisted for w in ws) and (len({w.value for w in ws}) > 1 or not all(w.hoisted for w in ws)):
            return False
    return True


# Gemmini keeps one load config per mvin id, one store config and one execute config: a command
# writes the register, the data commands after it read it (the Gemmini ISA; the C model does the same)
_READS = {"gemmini_extended_mvin": ("ld", "0"), "gemmini_extended_mvin2": ("ld", "1"),
          "gemmini_extended_mvin3": ("ld", "2"), "gemmini_extended_mvout": ("st", ""),
          "gemmini_extended_preload": ("ex", ""), "gemmini_extended_compute_preloaded": ("ex", ""),
          "gemmini_extended_compute_accumulated": ("ex", "")}  # fmt: skip


def _register(name: str, args: list[str]) -> tuple[str, str] | None:
    """The config register a command writes (None: it writes none)."""
    if name in ("gemmini_extended3_config_ld", "gemmini_extended4_config_ld"):
        return ("ld", args[-1])  # the last argument is the load id
    return {"gemmini_extended_config_st": ("st", ""), "gemmini_extended_config_ex": ("ex", "")}.get(name)


def clobbers(templates: list[str], hoisted: list[str]) -> bool:
    """Does an instruction's own config write change a register that another instruction reads
    as the ``hoisted`` configs set it, or do two hoisted configs set one register differently?
    Exo cannot tell: ``ld_acc_i32_vector`` and ``zero_acc_i32`` write the load config of id 0
    (stride 0) in their C, while their bodies declare no config, or another config
    (ConfigLoadAcc, set by ``config_ld_acc_i32_vector``) than the one ``do_ld_i8`` reads
    (ConfigLoad, set by ``config_ld_i8``)."""
    set_at_top: dict[tuple[str, str], list[str]] = {}
    for template in hoisted:
        for name, args in template_commands(template):
            if (r := _register(name, args)) is not None:
                if set_at_top.setdefault(r, args) != args:
                    return True  # two hoisted configs (config_ld_acc_i32_vector, config_ld_i8) set one register
    inline: dict[tuple[str, str], list[list[str]]] = {}
    relied: set[tuple[str, str]] = set()
    for template in templates:
        own = set()
        for name, args in template_commands(template):
            if (r := _register(name, args)) is not None:
                own.add(r)
                inline.setdefault(r, []).append(args)
            elif name in _READS and _READS[name] not in own and args[0] != "0":  # "0": the zero writer reads no DRAM
                relied.add(_READS[name])
    return any(any(args != set_at_top.get(r) for args in inline.get(r, ())) for r in relied)


# ----------------------------------------------------------------------------- plans


@dataclass(frozen=True)
class OpChoice:
    """One instruction per role, with the configs the choice hoists to the top of the proc."""

    instrs: tuple[tuple[str, str], ...]  # role → instruction
    hoisted: tuple[tuple[str, tuple[str, ...]], ...]  # config instruction calls at the top

    def instr(self, role: str) -> str | None:
        return dict(self.instrs).get(role)


@dataclass(frozen=True)
class Footprint:
    sp_rows: int = 0
    acc_rows: int = 0

    def fits(self, consts: dict[str, int]) -> bool:
        return self.sp_rows <= consts["SP_ROWS"] and self.acc_rows <= consts["ACC_ROWS"]


@dataclass
class GemminiCost:
    """Cycles of plans for one kernel, under the timing model's constants."""

    g: GemmPattern
    selection: Selection
    consts: dict[str, int]
    _costs: dict[tuple[str, int | None, str | None], InstrCost] = field(default_factory=dict)
    _commands: dict[tuple[str, int | None, str | None], tuple[Command, ...]] = field(default_factory=dict)
    # a plan is timed once: extraction times its shortlist, then prices the picks it keeps
    _timings: dict[tuple[Plan, tuple], Timing] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # a load fills both load roles, with other sizes when an operand's tile is partial
        self._bindings: dict[tuple[str, str | None], Binding] = {}
        for role, b in self.selection.bindings:
            self._bindings.setdefault((b.instr, None), b)
            if Role(role).operand is not None:
                self._bindings[(b.instr, Role(role).operand)] = b

    def binding(self, instr: str, blocks: int | None = None, operand: str | None = None) -> Binding:
        """The sizes ``instr`` runs at: loading ``operand`` (when it is a load), moving ``blocks``
        column tiles (when it is a block load; the block count is its ``m``)."""
        b = self._bindings.get((instr, operand)) or self._bindings[(instr, None)]
        if blocks is not None and instr in self.selection.blocks:
            b = Binding(instr, tuple((k, blocks if k == "m" else v) for k, v in b.sizes), b.windows, b.values, ())
        return b

    def overwrites(self, zero: str) -> bool:
        """Is ``zero`` a plain matmul doing the first reduction step (no zero instruction)?"""
        return self.selection.first_step(zero)

    def zero_cycles(self, zero: str, mac: str) -> int:
        """Cycles the zero adds per accumulator tile (a first step's plain matmul replaces a multiply)."""
        if self.overwrites(zero):
            return self.cost_of(zero).cycles - self.cost_of(mac).cycles
        return self.cost_of(zero).cycles

    def cost_of(self, instr: str, blocks: int | None = None, operand: str | None = None) -> InstrCost:
        """One call of ``instr`` (a load of ``operand``; a block load moving ``blocks`` column tiles)."""
        key = (instr, blocks, operand)
        if key not in self._costs:
            self._costs[key] = instr_cost(self.selection.pattern(instr), self.binding(*key), self.consts)
        return self._costs[key]

    def column_tiles(self, operand: str, body: Plan) -> int | None:
        """Trips of the loop below a staging over single tiles of the operand's columns."""
        col = self.g.columns(operand)
        return next((x.extent for x in chain(body) if isinstance(x, PLoop) and x.var == col and x.stride == DIM), None)

    def config_cost(self, call: tuple[str, tuple[str, ...]]) -> InstrCost:
        pattern = self.selection.all_patterns[call[0]]
        sizes = Binding(call[0], (), (), (), ())
        return instr_cost(pattern, sizes, self.consts)

    def hoisted_cycles(self, hoisted: tuple[tuple[str, tuple[str, ...]], ...]) -> int:
        """Cycles of the config calls hoisted to the top of the proc (run once)."""
        return sum(self.config_cost(call).cycles for call in hoisted)

    def loads(self, operand: str, instr: str, tiles: int, column_tiles: int | None) -> tuple[int, int | None] | None:
        """(calls, column tiles per call) of ``instr`` staging ``tiles`` tiles of ``operand``: a
        block load moves several column tiles per call, and needs ``column_tiles`` ≥ 2 below
        it (None when it cannot apply)."""
        if instr not in self.selection.blocks:
            return tiles, None
        f = block_factor(column_tiles)
        return None if f is None else (tiles // f, f)

    def choices(self) -> list[OpChoice]:
        """Every config-consistent way to pick an instruction per role."""
        roles = [r for r in ROLES if self.selection.for_role(r)]
        out = []
        for combo in product(*(self.selection.for_role(r) for r in roles)):
            per_instr = [config_writes(self.selection, b) for b in combo]
            if any(ws is None for ws in per_instr):
                continue
            writes = [w for ws in per_instr for w in ws]
            if not consistent(writes):
                continue
            hoisted = tuple(sorted({(w.instr, w.args) for w in writes if w.hoisted}))
            templates = [self.selection.pattern(b.instr).c_template for b in combo]
            if clobbers(templates, [self.selection.pattern(name).c_template for name, _ in hoisted]):
                continue
            out.append(OpChoice(tuple(zip(roles, (b.instr for b in combo))), hoisted))
        return out

    def distinct_choices(self) -> list[OpChoice]:
        """`choices` without those that are never cheaper than another. X makes Y redundant when
        both block-load the same roles (block loads fit other plans than tile loads), X costs no
        more per call in any role, and X's one-off config calls cost no more than Y's plus what X
        saves on the roles every plan calls at least once (the loads and the store)."""
        always = {Role.LOAD_A, Role.LOAD_B, Role.STORE}
        priced = []
        for ch in self.choices():
            per_call = {r: self.cost_of(i, operand=Role(r).operand).cycles for r, i in ch.instrs}
            once = self.hoisted_cycles(ch.hoisted)
            kind = tuple(i in self.selection.blocks for _, i in ch.instrs)
            priced.append((per_call, once, kind, ch))

        def redundant(y, x) -> bool:
            (py, oy, ky, _), (px, ox, kx, _) = y, x
            if kx != ky or any(px[r] > py[r] for r in py):
                return False
            return ox <= oy + sum(py[r] - px[r] for r in py if r in always)

        keep: list = []
        for y in sorted(priced, key=lambda z: (sum(z[0].values()), z[1])):
            if not any(redundant(y, x) for x in keep):
                keep.append(y)
        return [ch for _, _, _, ch in keep]

    def kind_choices(self) -> list[OpChoice]:
        """Of `distinct_choices`, the first (cheapest per call) of each kind, which roles
        block-load: a plan's shape depends on the kind alone, and the rest (configs hoisted or
        inline) is a price per call that the double-buffering phase's extraction weighs again over
        every choice its e-graph holds. Ranking the first phase's plans so takes a quarter of the
        programme's passes."""
        firsts: dict[tuple[bool, ...], OpChoice] = {}
        for ch in self.distinct_choices():
            firsts.setdefault(tuple(i in self.selection.blocks for _, i in ch.instrs), ch)
        return list(firsts.values())

    def tiles(self, operand: str, loops: dict[str, int]) -> int:
        """Tiles of ``operand`` a staging covers when ``loops`` (iterator → total trips) run below it."""
        out = 1
        for v, trips in loops.items():
            if self.g.depends(operand, v):
                out *= trips
        return out

    def counters(self, plan: Plan, hoisted: tuple[tuple[str, tuple[str, ...]], ...] = ()) -> dict[str, int]:
        """Every counter of the timing model for ``plan`` (as the simulator counts its replay)."""
        total = {k: 0 for k in COUNTERS}
        for call in hoisted:
            for k, v in self.config_cost(call).counters:
                total[k] += v
        for (instr, blocks, operand), calls in self.calls(plan).items():
            for k, v in self.cost_of(instr, blocks, operand).counters:
                total[k] += v * calls
        return total

    def calls(self, plan: Plan) -> dict[tuple[str, int | None, str | None], int]:
        """How many times each instruction of ``plan`` runs: (instruction, column tiles of a block
        load, the operand of a load) → calls."""
        out: dict[tuple[str, int | None, str | None], int] = {}

        def add(instr: str, n: int, blocks: int | None = None, operand: str | None = None) -> None:
            out[(instr, blocks, operand)] = out.get((instr, blocks, operand), 0) + n

        def walk(p: Plan, mult: int) -> dict[str, int]:
            match p:
                case PLoop(var, _, extent, body):
                    inner = walk(body, mult * extent)
                    return {**inner, var: inner.get(var, 1) * extent}
                case PStage(operand, op, body):
                    inner = walk(body, mult)
                    loads = self.loads(operand, op, mult * self.tiles(operand, inner), self.column_tiles(operand, body))
                    if loads is None:
                        raise ValueError(f"{op} cannot load {operand} here: fewer than two column tiles below it")
                    add(op, *loads, operand)
                    return inner
                case PAcc(zero, store, body):
                    inner = walk(body, mult)
                    tiles = mult * self.tiles(Operand.C, inner)
                    add(zero, tiles)
                    add(store, tiles)
                    if self.overwrites(zero):  # the first step's multiply is the plain matmul
                        add(chain(body)[-1].op, -tiles)
                    return inner
                case PMac(op):
                    add(op, mult)
                    return {}
            raise TypeError(p)

        walk(plan, 1)
        return out

    def footprint(self, plan: Plan) -> Footprint:
        def walk(p: Plan) -> tuple[Footprint, dict[str, int]]:
            match p:
                case PLoop(var, _, extent, body):
                    fp, inner = walk(body)
                    return fp, {**inner, var: inner.get(var, 1) * extent}
                case PStage(operand, _, body, buffers):
                    fp, inner = walk(body)
                    return Footprint(fp.sp_rows + buffers * DIM * self.tiles(operand, inner), fp.acc_rows), inner
                case PAcc(_, _, body, buffers):
                    fp, inner = walk(body)
                    return Footprint(fp.sp_rows, fp.acc_rows + buffers * DIM * self.tiles(Operand.C, inner)), inner
            return Footprint(), {}

        return walk(plan)[0]

    def commands_of(self, instr: str, blocks: int | None = None, operand: str | None = None) -> tuple[Command, ...]:
        """The commands one call of ``instr`` issues (a load of ``operand``; a block load moving
        ``blocks`` column tiles)."""
        key = (instr, blocks, operand)
        if key not in self._commands:
            pattern = self.selection.all_patterns[instr]
            if (instr, None) in self._bindings:
                b = self.binding(*key)
            else:  # a hoisted config instruction: no sizes
                b = Binding(instr, (), (), (), ())
            self._commands[key] = commands(pattern, b, self.consts)
        return self._commands[key]

    def serial_cycles(self, plan: Plan, hoisted: tuple = ()) -> int:
        """Cycles under the serial model (counter ``cycles_serial``)."""
        return self.counters(plan, hoisted)["cycles_serial"]

    def timing(self, plan: Plan, hoisted: tuple = ()) -> Timing:
        """The plan through the decoupled model (`exo_egraph.extract.gemmini_timeline`)."""
        if (known := self._timings.get((plan, hoisted))) is None:
            known = self._timings[(plan, hoisted)] = plan_timing(self, plan, hoisted)
        return known

    def cycles(self, plan: Plan, hoisted: tuple = ()) -> int:
        """Cycles under the decoupled model: what the simulator's ``cycles`` counter reads (for a
        plan of more than `EXACT_STEPS` steps, extrapolated from its first outer trips)."""
        return self.timing(plan, hoisted).cycles


def host_cycles(term: t.Proc) -> int:
    """The naive proc on the host: one cycle per executed scalar statement (allocations are free)."""

    def block(b: t.Block) -> int:
        total = 0
        for s in b:
            if isinstance(s, t.Loop):
                total += (s.hi.const - s.lo.const) * block(s.body)
            elif isinstance(s, t.If):
                total += 1 + max(block(s.body), block(s.orelse))
            elif not isinstance(s, (t.Alloc, t.Pass)):
                total += 1
        return total

    return block(term.body)
