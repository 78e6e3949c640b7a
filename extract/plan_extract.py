"""Extraction of Gemmini plans: k-best dynamic programming with capacity as a hard constraint,
then the decoupled timing model over a shortlist (`extract_timed`).

A plan's cycles are additive bottom-up once the instruction of each role is fixed: a loop
multiplies its body's cycles, a staging adds its loads (tiles × one load) — and the tiles a
staging covers depend only on the loops below it, which every plan of an e-class shares. The
scratchpad/accumulator footprint is not shared by an e-class (staging higher holds more), so
each e-class keeps its ``k`` cheapest entries that fit, plus the smallest-footprint ones, and a
parent drops what overflows. Roles are filled by each config-consistent choice of instructions
in turn (`GemminiCost.choices`, a handful), each choice one pass of the dynamic programme.

That programme sums the serial model's cycles. Under the decoupled model (loads, execution and
stores overlapping) cycles are not additive: a plan's time depends on which commands wait for
which. `extract_timed` therefore times a shortlist exactly — the programme's cheapest plans, its
cheapest per distinct serial cost, and random plans of the e-graph — and ranks by that.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from heapq import nsmallest

import networkx as nx

from exo_egraph.saturate import Deadline, EGraphView, Pace
from exo_egraph.targets.gemmini.config import DIM
from exo_egraph.targets.gemmini.pattern import Peel, first_step_ok, peel_above
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
    decode,
    loads_ahead,
)

from .gemmini_cost import Footprint, GemminiCost, OpChoice


@dataclass(frozen=True)
class Extracted:
    cycles: int  # as ranked: serial (`extract_plans`) or decoupled (`extract_timed`)
    plan: Plan
    choice: OpChoice
    footprint: Footprint
    serial: int = 0  # the serial model's cycles, when ``cycles`` are the decoupled ones


PLAN_OPS = ("G.loop", "G.stage", "G.stage2", "G.stage_ahead", "G.acc", "G.acc2", "G.mac")
STAGES = {"G.stage": (1, False), "G.stage2": (2, False), "G.stage_ahead": (2, True)}  # e-node op → (buffers, ahead)
ACCS = {"G.acc": 1, "G.acc2": 2}

SHORTLIST = 8  # the serial programme's cheapest plans (and cheapest per distinct cost) that are timed
SAMPLES = 48  # random plans of the e-graph timed besides: the serial order does not see overlap


class _Entry:
    """A plan of an e-class in the programme's table. Its `Plan` is built only when asked for
    (``link`` over ``body``'s plan): the programme makes hundreds of thousands of entries a pass
    and keeps a few per class."""

    __slots__ = ("cycles", "sp", "acc", "deep", "peel", "link", "body", "_plan", "shape", "run", "ahead")

    def __init__(self, cycles: int, sp: int, acc: int, link, body: "_Entry | None", deep: tuple, peel: Peel,
                 shape: int, run: tuple | None = None, ahead: bool = False):  # fmt: skip
        self.cycles, self.sp, self.acc, self.deep, self.peel = cycles, sp, acc, deep, peel
        self.ahead = ahead  # a staging loaded ahead is in the plan (the replay takes one)
        self.link = link  # a PMac; or (link class, fields before the body, fields after it)
        self.body = body
        self._plan: Plan | None = None
        # what the timing sees, hashed (`_run`): loops over one iterator with nothing between them
        # run their trips in the same order as one loop would, so their plans run alike (a hash
        # collision would only merge two shapes' entries: the search's loss, never soundness's)
        self.shape, self.run = shape, run

    @property
    def plan(self) -> Plan:
        if self._plan is None:
            if self.body is None:
                self._plan = self.link
            else:
                cls, head, tail = self.link
                self._plan = cls(*head, self.body.plan, *tail)
        return self._plan


def extract_plans(
    view: EGraphView,
    model: GemminiCost,
    k: int = 1,
    keep: int = 24,
    distinct_cycles: bool = False,
    choices: list[OpChoice] | None = None,
    deadline: Deadline | None = None,
    hide_buffered: bool = False,
) -> list[Extracted]:
    """The ``k`` cheapest distinct plans of the root e-class that fit the scratchpad and accumulator
    (``distinct_cycles``: the cheapest plan of each of the ``k`` lowest cycle counts; ``choices``:
    only these instruction choices, default every one worth trying; ``deadline``: once it has
    passed, the plans of the choices tried so far; ``hide_buffered``: price what double buffering
    overlaps at nothing, a guess that shortlists double-buffered plans for `extract_timed`)."""
    values = _primitives(view)
    instrs = _op_instrs(view, values)
    order = _bottom_up(view)
    found: dict[int, Extracted] = {}
    pace = Pace(deadline)
    for choice in model.distinct_choices() if choices is None else choices:
        if found and not pace.room():
            break  # anytime: the plans of the choices done so far
        with pace.step():
            table = _programme(view, model, choice, values, instrs, order, max(k, keep), distinct_cycles, hide_buffered)
        hoist = model.hoisted_cycles(choice.hoisted)
        for e in table.get(view.root, []):  # one plan per shape that runs alike (`_Entry.shape`)
            cycles = e.cycles + hoist
            if e.shape not in found or found[e.shape].cycles > cycles:
                found[e.shape] = Extracted(cycles, e.plan, choice, Footprint(e.sp, e.acc))
    # the programme's order (`_cheapest_first`); among equals the most overlapped (`_doubles`), then a stable one
    ranked = sorted(found.values(), key=lambda x: (x.cycles, x.footprint.acc_rows, x.footprint.sp_rows,
                                                   -_doubles(x.plan), repr(x.plan)))  # fmt: skip
    if distinct_cycles:
        ranked = list({x.cycles: x for x in reversed(ranked)}.values())[::-1]
    return ranked[:k]


def extract_timed(
    view: EGraphView,
    model: GemminiCost,
    k: int = 1,
    deadline: Deadline | None = None,
    shortlist: int = SHORTLIST,
    samples: int = SAMPLES,
    seed: int = 0,
    buffered: bool = False,
    choices: list[OpChoice] | None = None,
) -> list[Extracted]:
    """The ``k`` plans of the shortlist that run fastest under the decoupled model
    (`GemminiCost.cycles`, equal to the simulator's): the serial programme's ``shortlist`` cheapest,
    its cheapest of each of ``shortlist`` * 2 distinct costs, (``buffered``: the e-graph holds
    double buffers) its ``shortlist`` cheapest when what double buffering overlaps is free, and
    ``samples`` random plans that fit (drawn with ``seed``; fewer once ``deadline`` has passed).
    ``choices``: the instruction choices the programme tries (default: those the serial model
    finds distinct, `GemminiCost.distinct_choices`)."""
    lists = Pace(deadline)  # each list below costs about as much as the first: none is begun without room for it
    with lists.step():
        pool = {(x.plan, x.choice): x for x in extract_plans(view, model, k=shortlist, deadline=deadline, choices=choices)}
    if lists.room():  # anytime: out of time, time what the first list gave
        for x in extract_plans(view, model, k=2 * shortlist, distinct_cycles=True, deadline=deadline, choices=choices):
            pool.setdefault((x.plan, x.choice), x)
    if buffered and lists.room():
        for x in extract_plans(view, model, k=shortlist, deadline=deadline, hide_buffered=True, choices=choices):
            pool.setdefault((x.plan, x.choice), replace(x, cycles=model.serial_cycles(x.plan, x.choice.hoisted)))
    rng, every, drawn = random.Random(seed), model.choices(), 0
    for _ in range(4 * samples):
        if drawn >= samples or not Pace(deadline).room():
            break
        choice = every[rng.randrange(len(every))]
        plan = random_plan(view, model, choice, rng.randrange)
        if plan is None or not (fp := model.footprint(plan)).fits(model.consts):
            continue
        drawn += 1
        pool.setdefault((plan, choice), Extracted(model.serial_cycles(plan, choice.hoisted), plan, choice, fp))
    timed, timing = [], Pace(deadline)
    # the serially cheapest first; among equals, the most double-buffered (doubling only removes waits)
    # and loaded ahead
    for x in sorted(pool.values(), key=lambda x: (x.cycles, -_doubles(x.plan))):
        if timed and not timing.room():
            break  # anytime: the plans timed so far
        with timing.step():
            timed.append(replace(x, cycles=model.cycles(x.plan, x.choice.hoisted), serial=x.cycles))
    return sorted(timed, key=lambda x: (x.cycles, x.serial, repr(x.plan)))[:k]


def _doubles(plan: Plan) -> int:
    """How many of ``plan``'s stagings and accumulators are double-buffered, a staging loaded
    ahead counting twice (the serial cost, blind to overlap, ties them with their plain forms)."""
    return sum((getattr(link, "buffers", 1) == 2) + loads_ahead(link) for link in chain(plan))


def held_choices(view: EGraphView, model: GemminiCost) -> list[OpChoice]:
    """The instruction choices whose instructions the e-graph holds (but for the zero's, of which
    a plan uses one: a zero instruction or a first-step matmul)."""
    held = {i for instrs in _op_instrs(view, _primitives(view)).values() for i in instrs}
    out = []
    for choice in model.choices():
        missing = {role for role, instr in choice.instrs if instr not in held}
        if missing <= {Role.ZERO} or missing <= {Role.ZERO_MAC}:
            out.append(choice)
    return out


def _fill(choice: OpChoice, held: set[str], role: str) -> str | None:
    """The instruction ``choice`` gives ``role``, if the Op e-class (holding ``held``) has it."""
    instr = choice.instr(role)
    return instr if instr in held else None


def _op_instrs(view: EGraphView, values: dict[str, object]) -> dict[str, set[str]]:
    """Op e-class → the instructions it holds."""
    out: dict[str, set[str]] = {}
    for c, ids in view.classes.items():
        for nid in ids:
            op, kids = view.nodes[nid]
            if op == "Op.instr":
                out.setdefault(c, set()).add(str(values[kids[0]]))
    return out


def _primitives(view: EGraphView) -> dict[str, object]:
    out = {}
    for c, ids in view.classes.items():
        op, kids = view.nodes[ids[0]]
        if not kids and "." not in op:
            out[c] = decode(op, [])
    return out


def _bottom_up(view: EGraphView) -> list[str]:
    graph = nx.DiGraph()
    graph.add_nodes_from(view.classes)
    for c, ids in view.classes.items():
        for nid in ids:
            graph.add_edges_from((c, kid) for kid in view.nodes[nid][1] if kid != c)
    return list(reversed(list(nx.topological_sort(graph))))


def _programme(
    view, model: GemminiCost, choice: OpChoice, values, instrs, order, keep: int, distinct: bool = False,
    hide: bool = False,
) -> dict[str, list[_Entry]]:
    """Per e-class, its cheapest plans that fit (``hide``: a double-buffered staging's loads, or
    accumulator's zeroes and stores, cost nothing — they overlap the previous iteration)."""
    loops: dict[str, dict[str, int]] = {}  # plan e-class → iterator → trips below (shared by the class)
    table: dict[str, list[_Entry]] = {}
    columns = tuple(model.g.columns(x) for x in OPERANDS)
    sp_cap, acc_cap = model.consts["SP_ROWS"], model.consts["ACC_ROWS"]
    g = model.g
    # `peel_above` per state below, of a loop (it depends on the iterator only) or a staging
    loop_peels: dict[str, dict[Peel, Peel]] = {}
    stage_peels = {p: peel_above(g, PStage(Operand.A, "", PMac("")), p) for p in Peel}

    for c in order:
        entries: list[_Entry] = []
        for nid in view.classes[c]:
            op, kids = view.nodes[nid]
            if op == "G.mac" and (mac := _fill(choice, instrs.get(kids[0], ()), Role.MAC)):
                entries.append(_Entry(model.cost_of(mac).cycles, 0, 0, PMac(mac), None, (None, None), Peel.REDUCING,
                                      hash(mac)))  # fmt: skip
                loops.setdefault(c, {})
            elif op == "G.loop" and kids[3] in table:
                var, stride, extent = (values[x] for x in kids[:3])
                inner = loops[kids[3]]
                loops.setdefault(c, {**inner, var: inner.get(var, 1) * extent})
                link = (PLoop, (var, stride, extent), ())
                if var not in loop_peels:
                    loop_peels[var] = {p: peel_above(g, PLoop(var, stride, extent, PMac("")), p) for p in Peel}
                peel = loop_peels[var]
                column_loop = tuple(var == col and stride == DIM for col in columns)
                for e in table[kids[3]]:
                    # a loop over one operand's column tiles: the trips below it
                    deep = tuple(extent if here else d for here, d in zip(column_loop, e.deep)) if any(column_loop) else e.deep
                    run = _run(var, stride, extent, e)
                    entries.append(_Entry(e.cycles * extent, e.sp, e.acc, link, e, deep, peel[e.peel], hash(run), run,
                                          e.ahead))  # fmt: skip
            elif (
                op in STAGES
                and choice.instr(Role.load(values[kids[0]])) in instrs.get(kids[1], ())
                and kids[2] in table
            ):
                buffers, ahead = STAGES[op]
                operand = values[kids[0]]
                instr = choice.instr(Role.load(operand))
                inner = loops[kids[2]]
                loops.setdefault(c, inner)
                tiles = model.tiles(operand, inner)
                rows = buffers * DIM * tiles
                link, peel = (PStage, (operand, instr), (buffers, ahead)), stage_peels
                which = OPERANDS.index(operand)
                load_cycles: dict[int | None, int | None] = {}  # per column tiles below: cycles of the loads
                for e in table[kids[2]]:
                    if ahead and e.ahead:
                        continue
                    below = e.deep[which]
                    if below not in load_cycles:
                        loads = model.loads(operand, instr, tiles, below)
                        load_cycles[below] = None if loads is None else (
                            0 if hide and buffers == 2 else loads[0] * model.cost_of(instr, loads[1], operand).cycles
                        )
                    if (load := load_cycles[below]) is not None:
                        entries.append(_Entry(e.cycles + load, e.sp + rows, e.acc, link, e, e.deep, peel[e.peel],
                                              hash((link, e.shape)), None, ahead or e.ahead))  # fmt: skip
            elif op in ACCS and (store := _fill(choice, instrs.get(kids[1], ()), Role.STORE)) and kids[2] in table:
                buffers = ACCS[op]
                inner = loops[kids[2]]
                loops.setdefault(c, inner)
                tiles = model.tiles(Operand.C, inner)
                rows = buffers * DIM * tiles
                for zero in (_fill(choice, instrs.get(kids[0], ()), r) for r in (Role.ZERO, Role.ZERO_MAC)):
                    if zero is None:
                        continue
                    extra = tiles * (model.zero_cycles(zero, choice.instr(Role.MAC)) + model.cost_of(store).cycles)
                    extra = 0 if hide and buffers == 2 else extra
                    link, overwrites = (PAcc, (zero, store), (buffers,)), model.overwrites(zero)
                    entries += [
                        _Entry(e.cycles + extra, e.sp, e.acc + rows, link, e, e.deep, Peel.NO, hash((link, e.shape)),
                               None, e.ahead)
                        for e in table[kids[2]]
                        if not overwrites or e.peel is not Peel.NO
                    ]
        fits = [e for e in entries if e.sp <= sp_cap and e.acc <= acc_cap]
        if fits:
            table[c] = _prune(fits, keep, distinct)
    return table


def _run(var: str, stride: int, extent: int, body: _Entry) -> tuple:
    """(iterator, innermost stride, trips, shape below) of the run of loops over ``var`` that a
    loop over ``body`` starts (the loops of one run iterate in one order, whatever the split)."""
    if body.run is not None and body.run[0] == var:
        return (var, body.run[1], extent * body.run[2], body.run[3])
    return (var, stride, extent, body.shape)


def _prune(entries: list[_Entry], keep: int, distinct: bool) -> list[_Entry]:
    """The ``keep`` cheapest, plus the smallest footprints (a parent may need the room);
    ``distinct``: one entry per (cycles, footprint), so ties do not crowd out costlier plans."""
    # without ``distinct``, one entry per shape that runs alike (the first): plans that differ
    # only in how a loop is split would crowd out the others
    if distinct:
        unique = list({(e.cycles, e.sp, e.acc, e.deep): e for e in entries}.values())
    else:
        firsts: dict[tuple, _Entry] = {}
        for e in entries:
            firsts.setdefault((e.shape, e.deep), e)
        unique = list(firsts.values())
    unique.sort(key=_cheapest_first)  # (stable: among equals, the first made)
    if len(unique) <= keep:
        return unique
    # beyond the ``keep`` cheapest, in one pass: where the operands' innermost loops are decides
    # whether a parent may block-load, so the 4 cheapest of each kind; a first-step overwrite
    # needs a plan of a certain shape, so the ``keep`` cheapest of those
    kept, per_kind, peeled = unique[:keep], {}, 0
    for rank, e in enumerate(unique):
        of_kind = per_kind.get(e.deep, 0)
        per_kind[e.deep] = of_kind + 1
        peels = e.peel is not Peel.NO
        if rank >= keep and (of_kind < 4 or (peels and peeled < keep)):
            kept.append(e)
        peeled += peels
    smallest = nsmallest(4, unique, key=lambda e: (e.sp, e.acc, e.cycles)) + nsmallest(4, unique, key=lambda e: (e.acc, e.sp, e.cycles))
    return list({id(e): e for e in kept + smallest}.values())


def _cheapest_first(e: _Entry) -> tuple[int, int, int]:
    """Serially cheapest first; among equals, the smallest accumulator, then scratchpad. The serial
    cost does not see overlap: a small accumulator block's tiles are stored as their reductions
    end, behind the next tile's steps, and a small footprint leaves room to double-buffer."""
    return (e.cycles, e.acc, e.sp)


def random_plan(view: EGraphView, model: GemminiCost, choice: OpChoice, pick) -> Plan | None:
    """A plan of the root e-class drawn node by node (``pick(n)`` chooses an index below ``n``),
    its roles filled by ``choice``; None when the draw reaches a role the choice cannot fill."""
    values = _primitives(view)
    instrs = _op_instrs(view, values)

    def fill(cls: str, role: str) -> str | None:
        return _fill(choice, instrs.get(cls, set()), role)

    def draw(cls: str) -> Plan | None:
        ids = [nid for nid in view.classes[cls] if view.nodes[nid][0] in PLAN_OPS]
        op, kids = view.nodes[ids[pick(len(ids))]]
        if op == "G.mac":
            instr = fill(kids[0], Role.MAC)
            return None if instr is None else PMac(instr)
        if op == "G.loop":
            body = draw(kids[3])
            return None if body is None else PLoop(*(values[x] for x in kids[:3]), body)
        if op in STAGES:
            operand = str(values[kids[0]])
            instr, body = fill(kids[1], Role.load(operand)), draw(kids[2])
            if instr is None or body is None:
                return None
            if model.loads(operand, instr, 1, model.column_tiles(operand, body)) is None:
                return None  # a block load needs at least two column tiles below it
            buffers, ahead = STAGES[op]
            # the replay loads one staging ahead; the rule leaves each loaded ahead beside its plain double buffer
            ahead = ahead and not any(loads_ahead(x) for x in chain(body))
            return PStage(operand, instr, body, buffers, ahead)
        store, body = fill(kids[1], Role.STORE), draw(kids[2])
        zeros = [z for z in (fill(kids[0], Role.ZERO), fill(kids[0], Role.ZERO_MAC)) if z is not None]
        if body is not None and not first_step_ok(model.g, body):
            zeros = [z for z in zeros if not model.overwrites(z)]
        if store is None or body is None or not zeros:
            return None
        return PAcc(zeros[pick(len(zeros))], store, body, ACCS[op])

    return draw(view.root)
