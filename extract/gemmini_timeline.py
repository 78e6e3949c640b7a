"""The decoupled Gemmini timing model, in Python: a plan's commands, in the order its replay issues
them, through the model's three controllers.

It mirrors ``model/include/gemmini.h`` (the decoupled model documented in ``gemmini_timing.h``)
command for command, with tiles where the C model has rows: every command of the Gemmini roles
touches DIM-row tiles from their first row, and a staged buffer or accumulator keeps its rows from
one iteration to the next (Exo allocates it at the same place each time), so a tile is named by
its place in its memory, as the allocator lays the buffers out (`_first_tiles`): the pieces of a
cut kernel, run one after another, share rows as the simulator's do. The cycles it returns equal the simulator's for the replayed proc (tested on random
plans, and by ``check-rules``).

Each instruction's commands are read from its C template (`commands`), as the serial cost model
reads them; what a command reads or writes follows from the role the instruction fills (a load
writes its staged tiles, the multiply reads the A and B tiles and writes the accumulator tile, a
store reads it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import product
from math import prod
from typing import TYPE_CHECKING, Iterator

from exo_egraph.instrs import Binding, InstrPattern
from exo_egraph.targets.gemmini.config import DIM, block_factor
from exo_egraph.targets.gemmini.plans import (
    OPERANDS,
    Operand,
    PAcc,
    Plan,
    PLoop,
    PMac,
    PStage,
    Role,
    chain,
    loads_ahead,
    spread_loads,
    spread_over,
)

if TYPE_CHECKING:
    from .gemmini_cost import GemminiCost

LD, EX, ST = 0, 1, 2  # the controllers, as the C model numbers them
_OTHERS = ((EX, ST), (LD, ST), (LD, EX))  # per controller, the two it waits on


def template_commands(template: str) -> list[tuple[str, list[str]]]:
    """``gemmini_*(args)`` commands of a C template, with their top-level arguments."""
    out = []
    for m in re.finditer(r"(gemmini_\w+)\s*\(", template):
        depth, i, start = 1, m.end(), m.end()
        args, arg_start = [], start
        while depth:
            c = template[i]
            if c == "(":
                depth += 1
            elif c == ")":
                depth -= 1
            elif c == "," and depth == 1:
                args.append(template[arg_start:i].strip())
                arg_start = i + 1
            i += 1
        args.append(template[arg_start : i - 1].strip())
        out.append((m.group(1), args))
    return out


def size_value(text: str, sizes: dict[str, int]) -> int:
    """A template's size argument (``16*{m}``) under the unifier's size binding."""
    expr = re.sub(r"\{(\w+)\}", lambda m: str(sizes[m.group(1)]), text)
    if not re.fullmatch(r"[\d\s*+()-]+", expr):
        raise ValueError(f"not a size expression: {text}")
    return int(eval(expr, {"__builtins__": {}}))  # digits and + - * ( ) only


@dataclass(frozen=True)
class Command:
    """One command as the decoupled model times it (cycles counted from its start)."""

    queue: int
    occupancy: int
    read_end: int  # its reads are done
    done_end: int  # its writes, and the command, are done
    drains: bool = False  # config_ex: starts after every earlier execute command is done
    reads: str = ""  # which tiles of the call it reads: "A", "B", "C", "dest" or none
    writes: str = ""


def commands(pattern: InstrPattern, binding: Binding, consts: dict[str, int]) -> tuple[Command, ...]:
    """The commands one call of ``pattern`` issues, timed by ``gemmini_timing.h``'s decoupled table."""
    sizes = dict(binding.sizes)
    acc_params = {a.name for a in pattern.args if a.mem == "GEMM_ACCUM"}
    out = []
    for name, args in template_commands(pattern.c_template):
        if re.fullmatch(r"gemmini_extended_mvin[23]?", name):
            cols, rows = size_value(args[2], sizes), size_value(args[3], sizes)
            if args[0].strip() == "0":  # the zero writer
                busy = rows * consts["ZERO_ROW"]
                out.append(Command(LD, busy, 0, busy, writes="dest"))
            else:
                elem = 4 if any(f"{{{p}_data}}" in args[1] for p in acc_params) else 1
                beats = rows * -(-cols * elem // consts["BUS_BYTES"])
                out.append(Command(LD, beats, 0, beats + consts["DMA_LATENCY"], writes="dest"))
        elif name == "gemmini_extended_mvout":
            elem = 4 if "0x20000000" in args[1] else 1
            beats = size_value(args[3], sizes) * -(-size_value(args[2], sizes) * elem // consts["BUS_BYTES"])
            out.append(Command(ST, beats, beats, beats + consts["DMA_LATENCY"], reads="C"))
        elif name == "gemmini_extended_preload":
            shift = consts["PRELOAD"] + size_value(args[3], sizes)
            out.append(Command(EX, consts["PRELOAD"], shift, shift, reads="B"))
        elif name in ("gemmini_extended_compute_preloaded", "gemmini_extended_compute_accumulated"):
            busy = consts["COMPUTE"] + size_value(args[3], sizes)
            out.append(Command(EX, busy, busy, busy + consts["MESH_LATENCY"], reads="A", writes="C"))
        elif name in ("gemmini_extended3_config_ld", "gemmini_extended4_config_ld"):
            out.append(Command(LD, consts["CONFIG"], 0, consts["CONFIG"]))
        elif name == "gemmini_extended_config_st":
            out.append(Command(ST, consts["CONFIG"], 0, consts["CONFIG"]))
        elif name == "gemmini_extended_config_ex":
            out.append(Command(EX, consts["CONFIG"], 0, consts["CONFIG"], drains=True))
        elif name == "gemmini_fence":
            raise ValueError("fence inside an instruction is not modelled by the plan timeline")
    return tuple(out)


class Timeline:
    """The C model's clocks (``gemmini_timeline``), with tiles for rows."""

    def __init__(self, consts: dict[str, int]):
        self.issue = consts["ISSUE"]
        self.entries = (consts["RS_LD"], consts["RS_EX"], consts["RS_ST"])
        self.host = 0
        self.free_at = [0, 0, 0]
        self.drained = [0, 0, 0]
        self.ring = [[0] * n for n in self.entries]
        self.issued = [0, 0, 0]
        self.end = 0
        self.busy = [0, 0, 0]
        self.written: list[dict] = [{}, {}, {}]  # per controller: tile → when its last write is done
        self.read: list[dict] = [{}, {}, {}]

    def run(self, cmd: Command, reads: tuple = (), writes: tuple = ()) -> None:
        # the hot loop of extraction's timed shortlist (hundreds of thousands of commands a plan):
        # plain comparisons on locals, the other two controllers named once
        q = cmd.queue
        slot = self.issued[q] % self.entries[q]
        dispatch = self.host + self.issue
        if self.ring[q][slot] > dispatch:
            dispatch = self.ring[q][slot]
        self.host = dispatch
        start = max(dispatch, self.free_at[q], self.drained[EX] if cmd.drains else 0)
        o1, o2 = _OTHERS[q]
        w1, w2 = self.written[o1], self.written[o2]
        for tile in reads:
            start = max(start, w1.get(tile, 0), w2.get(tile, 0))
        if writes:
            r1, r2 = self.read[o1], self.read[o2]
            for tile in writes:
                start = max(start, w1.get(tile, 0), w2.get(tile, 0), r1.get(tile, 0), r2.get(tile, 0))
        done = start + max(cmd.occupancy, cmd.read_end, cmd.done_end)
        if reads:
            mine_r, read_at = self.read[q], start + cmd.read_end
            for tile in reads:
                if mine_r.get(tile, 0) < read_at:
                    mine_r[tile] = read_at
        if writes:
            mine_w = self.written[q]
            for tile in writes:
                if mine_w.get(tile, 0) < done:
                    mine_w[tile] = done
        self.free_at[q] = start + cmd.occupancy
        self.ring[q][slot] = done
        self.issued[q] += 1
        if done > self.drained[q]:
            self.drained[q] = done
        if done > self.end:
            self.end = done
        self.busy[q] += cmd.occupancy

    def call(self, cmds: tuple[Command, ...], tiles: dict[str, tuple]) -> None:
        """One instruction call: its commands in order, ``tiles`` naming what each touches."""
        for cmd in cmds:
            self.run(cmd, tiles.get(cmd.reads, ()), tiles.get(cmd.writes, ()))

    @property
    def cycles(self) -> int:
        return max(self.end, self.host)


@dataclass(frozen=True)
class Timing:
    """A plan's cycles under the decoupled model, and how busy each controller was (``exact``:
    every command was run; else the cycles are extrapolated from the first trips of the
    outermost loop, and the busy counts are of those trips only)."""

    cycles: int
    busy_ld: int
    busy_ex: int
    busy_st: int
    exact: bool = True


EXACT_STEPS = 16384  # plans with more 16x16x16 steps are timed on their first trips, then extrapolated
TRIPS = 4  # trips of the sampled loop run before extrapolating (the last one gives the period)


def plan_timing(model: "GemminiCost", plan: Plan, hoisted: tuple = (), exact_steps: int = EXACT_STEPS) -> Timing:
    """Run ``plan`` (configs ``hoisted`` to the top) through the decoupled model.

    A plan of more than ``exact_steps`` steps whose outermost loop has more than `TRIPS` + 1
    trips (and no accumulator above it, whose stores would come after) is sampled: `TRIPS` of
    its trips are run, and the trips left are priced at the last one's cycles (they repeat the
    same commands on their own tiles, so the pipeline settles into a period). Other plans run
    whole (a loop sampled inside others was measured 11 % off: the outer trips differ)."""
    clock = Timeline(model.consts)
    links = chain(plan)
    sampled = _sampled_loop(links, exact_steps)
    if sampled is None:
        _run_whole(clock, model, plan, hoisted)
        return Timing(clock.cycles, *clock.busy)
    for call in hoisted:
        clock.call(model.commands_of(call[0]), {})
    marks: list[int] = []
    for call in plan_calls(model, plan, trips_of=sampled):
        if call is None:  # the sampled loop starts a trip, or ends one
            marks.append(clock.cycles)
            if len(marks) == TRIPS + 1:
                start, period = marks[0], marks[-1] - marks[-2]
                one = marks[-1] - start + (links[sampled].extent - TRIPS) * period
                return Timing(start + one, *clock.busy, exact=False)
            continue
        instr, blocks, tiles, operand = call
        clock.call(model.commands_of(instr, blocks, operand), tiles)
    return Timing(clock.cycles, *clock.busy)


def _sampled_loop(links: list[Plan], exact_steps: int) -> int | None:
    """The link of the loop `plan_timing` samples trips of (None: the plan runs whole)."""
    steps = 1
    for x in links:
        steps *= x.extent if isinstance(x, PLoop) else 1
    first = next((i for i, x in enumerate(links) if isinstance(x, PLoop)), None)  # none: one tile
    if (first is not None and steps > exact_steps and links[first].extent > TRIPS + 1
            and not any(isinstance(x, PAcc) for x in links[:first])):  # fmt: skip
        return first
    return None


def _run_whole(clock: Timeline, model: "GemminiCost", plan: Plan, hoisted: tuple) -> None:
    for call in hoisted:
        clock.call(model.commands_of(call[0]), {})
    for instr, blocks, tiles, operand in plan_calls(model, plan):
        clock.call(model.commands_of(instr, blocks, operand), tiles)


def pieces_timing(parts: list[tuple["GemminiCost", Plan, tuple]], exact_steps: int = EXACT_STEPS) -> Timing:
    """Plans run one after the other, each (model, plan, hoisted configs) — the pieces of a cut
    kernel (`exo_egraph.targets.gemmini.pieces`): on one clock when every one runs whole, so the
    next piece's loads overlap this one's tail; else the sum of their timings (not exact)."""
    if any(_sampled_loop(chain(plan), exact_steps) is not None for _, plan, _ in parts):
        each = [plan_timing(m, plan, hoisted, exact_steps) for m, plan, hoisted in parts]
        return Timing(*(sum(getattr(x, f) for x in each) for f in ("cycles", "busy_ld", "busy_ex", "busy_st")),
                      exact=False)  # fmt: skip
    clock = Timeline(parts[0][0].consts)
    for model, plan, hoisted in parts:
        _run_whole(clock, model, plan, hoisted)
    return Timing(clock.cycles, *clock.busy)


def plan_calls(
    model: "GemminiCost", plan: Plan, trips_of: int | None = None
) -> Iterator[tuple[str, int | None, dict[str, tuple], str | None] | None]:
    """The instruction calls of ``plan``'s replay, in program order: (instruction, column tiles of a
    block load, the tiles it touches by name, the operand a load moves). A tile is (operand, its indices in its buffer): a
    staged buffer holds a tile per iteration of the loops below its staging that the operand
    changes with; the accumulator, per parallel loop below it; a double buffer, also per parity
    of the loop right around it. ``trips_of``: None before the first trip of the loop at that
    link, and after each of its trips."""
    g, links = model.g, chain(plan)
    loops = [i for i, x in enumerate(links) if isinstance(x, PLoop)]
    at = {x.operand: i for i, x in enumerate(links) if isinstance(x, PStage)}
    at[Operand.C] = next(i for i, x in enumerate(links) if isinstance(x, PAcc))
    deps = {o: [j for j in loops if j > s and g.depends(o, links[j].var)] for o, s in at.items()}
    reductions = [j for j in loops if links[j].var in g.reduction]
    acc: PAcc = links[at[Operand.C]]
    first_step = model.overwrites(acc.zero)
    pos = [0] * len(links)
    # a double buffer alternates with the parity of the loop right around it
    around = {o: j for o, s in at.items() if links[s].buffers == 2
              for j in [next((j for j in reversed(loops) if j < s), None)] if j is not None}  # fmt: skip
    half = {o: prod(links[j].extent for j in deps[o]) for o in at}  # tiles of a buffer (one of a double's two)
    base = _first_tiles(links, at, around, {o: n * (2 if o in around else 1) for o, n in half.items()})

    def column_tiles(operand: str) -> int:
        """The loop over the operand's column tiles: a block load moves several of them."""
        return next(j for j in deps[operand] if links[j].var == g.columns(operand) and links[j].stride == DIM)

    # a tile's place in its buffer: the buffer's tile dims are one per loop in ``deps`` (outermost
    # first, the double buffer's parity before them), but a block load's column tiles sit next to
    # each other (`replay._columns_innermost`); per loop in ``deps``, the tiles one step apart
    steps: dict[str, list[int]] = {}
    for o in at:
        layout = list(deps[o])
        if o in OPERANDS and links[at[o]].op in model.selection.blocks:
            layout = [j for j in layout if j != column_tiles(o)] + [column_tiles(o)]
        step = {j: prod(links[i].extent for i in layout[n + 1:]) for n, j in enumerate(layout)}
        steps[o] = [step[j] for j in deps[o]]

    def key(operand: str, indices) -> tuple:
        # the tile's place in its memory, as the allocator gives it: a piece of a cut kernel that
        # reuses rows the piece before it used waits on them as the simulator does
        offset = base[operand] + sum(i * n for i, n in zip(indices, steps[operand]))
        if operand in around:
            offset += (pos[around[operand]] % 2) * half[operand]
        return (operand == Operand.C, offset)

    def each(positions: list[int]) -> Iterator[tuple[int, ...]]:
        return product(*(range(links[j].extent) for j in positions))

    def loads(stage: PStage) -> Iterator[tuple[tuple[int, ...], tuple[str, int | None, dict[str, tuple], str]]]:
        """The staging's loads, in the replay's order, each with its index in the load nest."""
        dep = deps[stage.operand]
        if stage.op not in model.selection.blocks:
            for idx in each(dep):
                yield idx, (stage.op, None, {"dest": (key(stage.operand, idx),)}, stage.operand)
            return
        col = column_tiles(stage.operand)
        f = block_factor(links[col].extent)
        rest = [j for j in dep if j != col]
        for idx in each(rest):
            for c0 in range(0, links[col].extent, f):
                tiles = []
                for c in range(c0, c0 + f):
                    full = dict(zip(rest, idx))
                    full[col] = c
                    tiles.append(key(stage.operand, (full[j] for j in dep)))
                # the nest has a loop over the blocks when there are several
                yield idx + ((c0 // f,) if links[col].extent > f else ()), (stage.op, f, {"dest": tuple(tiles)}, stage.operand)

    def nest_trips(stage: PStage) -> list[int]:
        """The trips of the loops of the staging's load nest, as `loads` runs them."""
        dep = deps[stage.operand]
        if stage.op not in model.selection.blocks:
            return [links[j].extent for j in dep]
        col = column_tiles(stage.operand)
        blocks = links[col].extent // block_factor(links[col].extent)
        return [links[j].extent for j in dep if j != col] + ([blocks] if blocks > 1 else [])

    # a staging loaded ahead (at most one a plan): its loads for the next trip of the loop around
    # it, in chunks, one per trip of the loops it is spread over (`spread_loads`)
    ahead_operand = next((o for o in OPERANDS if o in at and loads_ahead(links[at[o]])), None)
    if ahead_operand is not None:
        stage, below = links[at[ahead_operand]], spread_over(links, at[ahead_operand], g.parallel, first_step)
        spread = spread_loads(nest_trips(stage), [links[j].extent for j in below])
        groups = below[: spread.depth]
        chunk_at = next(j for j in range(groups[-1] + 1 if groups else at[ahead_operand], len(links))
                        if isinstance(links[j], (PLoop, PMac)))  # fmt: skip
    pending: dict[tuple[int, ...], list] = {}  # group → the next trip's loads in it

    def trip_loads(trip: int) -> list[tuple[tuple[int, ...], tuple]]:
        """(index in the load nest, call) of the ahead staging's loads for ``trip`` of the loop around it."""
        loop, saved = around[ahead_operand], pos[around[ahead_operand]]
        pos[loop] = trip
        out = list(loads(links[at[ahead_operand]]))
        pos[loop] = saved
        return out

    def chunks(trip: int) -> dict[tuple[int, ...], list]:
        """``trip_loads`` by group, each group's in the spread nest's order."""
        out: dict[tuple[int, ...], list] = {}
        for place, call in sorted(((spread.place(idx), call) for idx, call in trip_loads(trip)), key=lambda x: x[0]):
            out.setdefault(place[: spread.depth], []).append(call)
        return out

    def acc_tiles() -> Iterator[tuple]:
        for idx in each(deps[Operand.C]):
            yield (key(Operand.C, idx),)

    def walk(i: int) -> Iterator[tuple[str, int | None, dict[str, tuple], str | None]]:
        """The body that starts at link ``i``: the links up to the next loop hold at most the
        accumulator and the stagings, which the replay lays out as zero, loads of A, loads of B,
        the loop (or the multiply), stores."""
        end = next(j for j in range(i, len(links)) if isinstance(links[j], (PLoop, PMac)))
        here = links[i:end]
        acc_here = any(isinstance(x, PAcc) for x in here)
        if acc_here and not first_step:
            for c in acc_tiles():
                yield acc.zero, None, {"dest": c}, None
        for operand in OPERANDS:
            for j in range(i, end):
                if isinstance(links[j], PStage) and links[j].operand == operand and operand != ahead_operand:
                    yield from (call for _, call in loads(links[j]))
        if ahead_operand is not None and end == chunk_at:
            yield from pending.get(tuple(pos[j] for j in groups), ())
        x = links[end]
        if isinstance(x, PLoop):
            loaded_ahead = ahead_operand is not None and end == around[ahead_operand]
            if loaded_ahead:  # the first trip's loads, before the loop, as the nest was
                yield from (call for _, call in trip_loads(0))
            if end == trips_of:
                yield None
            for trip in range(x.extent):
                pos[end] = trip
                if loaded_ahead:
                    pending.clear()
                    pending.update(chunks(trip + 1) if trip + 1 < x.extent else {})
                yield from walk(end + 1)
                if end == trips_of:
                    yield None
        else:
            tiles = {o: (key(o, (pos[j] for j in deps[o])),) for o in (*OPERANDS, Operand.C)}
            first = first_step and all(pos[j] == 0 for j in reductions)
            yield (acc.zero if first else x.op), None, tiles, None
        if acc_here:
            for c in acc_tiles():
                yield acc.store, None, {"C": c}, None

    yield from walk(0)


def _first_tiles(links: list[Plan], at: dict[str, int], around: dict[str, int], tiles: dict[str, int]) -> dict[str, int]:
    """The first tile of each operand's buffer in its memory, as the replay allocates them.

    Every buffer is whole DIM-row tiles (partial ones are resized to DIM), Exo frees them in the
    reverse order it allocates, and the model's allocator is first-fit, so a buffer starts where
    the scratchpad buffers allocated before it end. The accumulator is alone in its memory. Of the
    two stagings, the one whose allocation comes first in the replayed code: a staging is
    allocated before the loop after it (A before B when they share that loop), a double buffer
    before the loop around it, after the single stagings there (``_double_buffer`` lifts it last),
    double buffers in the order of their links, a staging loaded ahead first."""

    def placed(operand: str) -> tuple[int, int, int]:
        s = at[operand]
        if operand in around:  # (a staging loaded ahead is lifted before the other double buffers)
            return (around[operand], 1, -1 if loads_ahead(links[s]) else s)
        after = next((j for j in range(s, len(links)) if isinstance(links[j], PLoop)), len(links))
        return (after, 0, OPERANDS.index(operand))

    first, second = sorted(OPERANDS, key=placed)
    return {Operand.C: 0, first: 0, second: tiles[first]}
