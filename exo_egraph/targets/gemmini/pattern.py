"""lower (Gemmini): a kernel term → its matmul pattern, the roles instructions must fill, and the first plan.

A kernel Gemmini can run has the shape of Exo's Gemmini examples: parallel loops around

    acc: i32            # the accumulator
    acc = 0             # or acc = bias[...]: an i32 bias at the output position
    for <reduction loops>: ... acc += a * b     (a, b read from two DRAM buffers)
    <epilogue>          # scale, clamp, store to the output

Three iterators are tiled by DIM (16): ``n`` (rows of the first operand and of the output), ``m``
(columns of the second operand and of the output) and ``k`` (reduced, shared by both operands);
any other iterator stays a loop over single rows. Each *role* (zero, load_A, load_B, mac, store)
is the loop nest Exo shows for one DIM tile after the replay's tiling and staging; instruction
selection (`rewrites.gemmini`) unifies the instructions with these nests.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Callable

from exo_egraph import terms as t
from exo_egraph.lower import Unsupported

from .config import BLOCK, DIM
from .plans import Operand, PAcc, Plan, PLoop, PMac, PStage, Role, chain, role

ROLES = (Role.ZERO, Role.LOAD_A, Role.LOAD_B, Role.MAC, Role.STORE, Role.ZERO_MAC)  # what a choice fills


class NotGemmini(Unsupported):
    """The kernel does not have a shape the Gemmini target maps (one line, says why)."""


@dataclass(frozen=True)
class GemmPattern:
    """The matmul hidden in a kernel, in the kernel's own names."""

    proc: str
    parallel: tuple[str, ...]  # outer loops, source order
    reduction: tuple[str, ...]  # reduction loops, source order
    extents: tuple[tuple[str, int], ...]
    n: str
    m: str
    k: str
    acc: str
    operands: tuple[tuple[str, str, tuple[t.Aff, ...]], ...]  # (A|B, buffer, index) of the two reads
    out: str
    roles: tuple[tuple[str, t.Block], ...]  # role → one tile's nest, as the replay leaves it
    buffers: tuple[tuple[str, t.Buffer], ...]  # every buffer the role nests use
    transposed: frozenset[str] = frozenset()  # operands stored transposed (``B[j, k]``): tiles keep that layout

    def extent(self, var: str) -> int:
        return dict(self.extents)[var]

    def tiled(self, var: str) -> bool:
        return var in (self.n, self.m, self.k)

    def tile(self, var: str) -> int:
        """Elements of ``var`` in one tile: DIM, or the whole extent when it is shorter (a partial
        tile: the instructions' ``n, m, K <= 16`` arguments)."""
        return min(self.extent(var), DIM)

    def intra(self, var: str) -> str:
        """Name of the loop over one tile of a tiled iterator (the iterator itself if it is one tile)."""
        return var if self.extent(var) <= DIM else f"{var}_1"

    def operand(self, name: str) -> tuple[str, tuple[t.Aff, ...]]:
        buf, idx = next((b, i) for o, b, i in self.operands if o == name)
        return buf, idx

    def columns(self, operand: str) -> str:
        """The iterator along an operand's DIM-column tiles (what a block load spans)."""
        return self.rows(operand)[1]

    def rows(self, operand: str) -> tuple[str, str]:
        """The iterators along an operand's tile rows and columns: its rows and columns as the
        kernel stores it (a tile is loaded as stored; a transposed one is multiplied so)."""
        rows, cols = {Operand.A: (self.n, self.k), Operand.B: (self.k, self.m)}[operand]
        return (cols, rows) if operand in self.transposed else (rows, cols)

    def row_step(self, operand: str) -> int:
        """Elements between consecutive rows of an operand's tile in its DRAM row dimension: 1,
        or 2 in a stride-2 convolution's input (``inp[.., 2 * ocol + kcol, ..]``)."""
        rows = self.rows(operand)[0]
        return max((abs(c) for a in self.operand(operand)[1] for v, c in a.terms if v == rows), default=1)

    def depends(self, operand: str, var: str) -> bool:
        """Does the data of ``operand`` (A, B or C, the accumulator) change with ``var``?"""
        if operand == Operand.C:
            return var in self.parallel
        return any(var in a.vars for a in self.operand(operand)[1])

    def staged_name(self, operand: str) -> str:
        names = {Operand.A: f"{self.operand(Operand.A)[0]}_s", Operand.B: f"{self.operand(Operand.B)[0]}_s"}
        return names.get(operand, self.acc)


def copy_temporaries(term: t.Proc) -> tuple[str, ...]:
    """Scalar temporaries that only copy an operand element before it is widened, as Exo's own
    Gemmini kernels write the multiply (``a: i8; a = A[i, k]; a2: i32; a2 = a``). The
    instructions read the operand straight into the wide temporary (``a2 = A[i, k]``), so the
    replay first inlines each such copy (`exo_egraph.targets.gemmini.replay.inline_temporaries`)."""
    args = {a.name: a for a in term.args if a.shape}
    out = []
    for loop in (x for x in t.walk(term.body) if isinstance(x, t.Loop)):
        scalars = {x.name: x.typ for x in loop.body if isinstance(x, t.Alloc) and not x.shape}
        for x in loop.body:
            if not (isinstance(x, t.Assign) and x.buf in scalars and not x.idx and isinstance(x.rhs, t.Read)):
                continue
            if x.rhs.buf not in args or args[x.rhs.buf].typ != scalars[x.buf]:
                continue  # not a plain copy of an operand element
            writes = [y for y in t.leaves(loop.body) if isinstance(y, (t.Assign, t.Reduce)) and y.buf == x.buf]
            if writes != [x]:
                continue  # written again (an accumulator): not a copy
            uses = [y for y in loop.body if any(r.buf == x.buf for r in _reads((y,)))]
            if len(uses) == 1 and isinstance(uses[0], t.Assign) and uses[0].rhs == t.Read(x.buf, ()) \
                    and uses[0].buf in scalars:  # fmt: skip
                out.append(x.buf)
    return tuple(out)


def tileable(extent: int) -> bool:
    """Can a loop of ``extent`` trips be tiled by DIM: whole tiles, or one partial tile."""
    return extent % DIM == 0 or extent < DIM


def reduction_tile(extent: int) -> int:
    """Elements of one reduction tile of a reduction of ``extent`` trips: DIM, the extent when it
    is shorter, else (16q + r trips) the largest divisor below DIM, so that every tile is the same
    partial one (the instructions' ``K <= 16`` argument)."""
    return next(d for d in range(min(extent, DIM), 0, -1) if extent % d == 0)


def find_gemm(term: t.Proc, cut: bool = False, any_reduction: bool = False) -> GemmPattern:
    """The matmul pattern of ``term``; raises `NotGemmini` naming what does not fit. ``cut``: the
    output's rows and columns may run any number of trips (`exo_egraph.targets.gemmini.pieces`
    cuts them into whole tiles and a partial one); the reduction's must be `tileable`, unless
    ``any_reduction`` (the replay then divides it by its `reduction_tile` first)."""
    args = {a.name: a for a in term.args}
    parallel, body = _chain(term.body, term.name)
    if not parallel:
        raise NotGemmini(f"{term.name}: the body is not a loop nest")
    if len(body) < 3 or not isinstance(body[0], t.Alloc) or body[0].shape or body[0].typ != "i32":
        raise NotGemmini(f"{term.name}: no scalar i32 accumulator allocated inside the parallel loops")
    acc = body[0].name
    zero = body[1]
    if not (isinstance(zero, t.Assign) and zero.buf == acc and _starts_from(zero.rhs, args, parallel)):
        raise NotGemmini(f"{term.name}: the accumulator '{acc}' does not start from zero or from an i32 bias "
                         "read at the output's position before the reduction")
    reduction, inner = _chain(body[2:3], term.name)
    if not reduction:
        raise NotGemmini(f"{term.name}: no reduction loop after zeroing '{acc}'")
    epilogue = body[3:]
    reads = list(dict.fromkeys((r.buf, r.idx) for r in _reads(inner) if r.buf in args and args[r.buf].shape))
    if len(reads) != 2 or not any(isinstance(s, t.Reduce) and s.buf == acc for s in inner):
        raise NotGemmini(f"{term.name}: the reduction body must read two DRAM buffers and add into '{acc}'")
    outs = [s for s in t.leaves(epilogue) if isinstance(s, t.Assign) and s.buf in args]
    if len(outs) != 1:
        raise NotGemmini(f"{term.name}: the epilogue must store to exactly one output buffer")
    extents = {}
    for v, ext in parallel + reduction:
        extents[v] = ext
    (a_buf, a_idx), (b_buf, b_idx) = reads
    out = outs[0]
    pvars = [v for v, _ in parallel]
    rvars = [v for v, _ in reduction]

    def indexes(v: str, *idxs: tuple[t.Aff, ...]) -> bool:
        return all(any(v in a.vars for a in idx) for idx in idxs)

    ns = [v for v in reversed(pvars) if indexes(v, a_idx, out.idx)]
    ms = [v for v in reversed(pvars) if indexes(v, b_idx, out.idx)]
    ks = [v for v in reversed(rvars) if indexes(v, a_idx, b_idx)]
    shapes = [(n, m, k) for n in ns for m in ms for k in ks if len({n, m, k}) == 3]
    if not shapes:
        raise NotGemmini(f"{term.name}: no three loops index the operands as a matmul (rows, columns, reduction)")
    for n, m, k in shapes:
        if (any_reduction or tileable(extents[k])) and (cut or (tileable(extents[n]) and tileable(extents[m]))):
            return _pattern(term, args, pvars, rvars, extents, n, m, k, acc, zero, inner, epilogue,
                            (a_buf, a_idx), (b_buf, b_idx), out)
    n, m, k = shapes[0]
    v = k if not tileable(extents[k]) else next(x for x in (n, m) if not tileable(extents[x]))
    what = "reduction loop" if v == k else "loop"
    raise NotGemmini(f"{term.name}: {what} '{v}' runs {extents[v]} times, neither a multiple of {DIM} nor fewer"
                     + (" (a partial last reduction step is not supported)" if v == k else ""))


def strided(g: GemmPattern) -> list[tuple[str, Role, int]]:
    """(loop, role of the statement, elements per trip) of each tiled loop that steps an operand
    or the output by more than one element. Tile loads and stores move consecutive rows and
    columns, except a load whose instruction steps its rows (exo's ``ld_i8_s2``: a stride-2
    convolution's input); instruction selection says whether one fills the role."""
    out_idx = next(s.idx for s in t.leaves(dict(g.roles)[Role.STORE]) if isinstance(s, t.Assign) and s.buf == g.out)
    accesses = [(Role.load(o), idx, g.rows(o)) for o, _, idx in g.operands]
    found = []
    for role_, idx, tiled in accesses + [(Role.STORE, out_idx, (f"{g.n}_1", f"{g.m}_1"))]:
        for a in idx:
            for var, coef in a.terms:
                if var in tiled and abs(coef) != 1:
                    found.append((var.removesuffix("_1"), role_, coef))
    return found


def transposed(g: GemmPattern, operand: str) -> bool:
    """Is ``operand`` stored transposed for the product (``B[j, k]``, ``A[k, i]``)?"""
    return operand in g.transposed


def _stored_transposed(idx: tuple[t.Aff, ...], rows: str, cols: str) -> bool:
    """Does ``idx`` index ``cols`` in an earlier dimension than ``rows`` (a transposed operand)?"""
    at = {v: next((d for d, a in enumerate(idx) if v in a.vars), -1) for v in (rows, cols)}
    return at[cols] < at[rows]


def _starts_from(rhs: t.Expr, args: dict, parallel: list[tuple[str, int]]) -> bool:
    """The accumulator's first value: a constant (zero), or a bias — an element of an i32 DRAM
    buffer indexed by the parallel loops only (loaded into the accumulator, not zeroed)."""
    if isinstance(rhs, t.Const):
        return True
    outer = {v for v, _ in parallel}
    return (isinstance(rhs, t.Read) and rhs.buf in args and args[rhs.buf].typ == "i32"
            and all(a.vars <= outer for a in rhs.idx))  # fmt: skip


def _chain(block: t.Block, proc: str) -> tuple[list[tuple[str, int]], t.Block]:
    loops = []
    while len(block) == 1 and isinstance(block[0], t.Loop):
        loop = block[0]
        if loop.lo != t.Aff() or not loop.hi.is_const:
            raise NotGemmini(f"{proc}: loop '{loop.var}' runs to {loop.hi}, not a constant (fix the sizes, e.g. partial_eval)")
        loops.append((loop.var, loop.hi.const))
        block = loop.body
    return loops, block


def _reads(block: t.Block):
    def expr(e: t.Expr):
        if isinstance(e, t.Read):
            yield e
        elif isinstance(e, t.BinOp):
            yield from expr(e.lhs)
            yield from expr(e.rhs)
        elif isinstance(e, (t.USub,)):
            yield from expr(e.arg)

    for s in t.leaves(block):
        if isinstance(s, (t.Assign, t.Reduce)):
            yield from expr(s.rhs)


def _tile_loops(names: tuple[str, ...], body: t.Block, extents: tuple[int, ...] | None = None) -> t.Block:
    """Loops ``names`` (outermost first) over ``body``, each of DIM trips or of its ``extents``."""
    for name, extent in reversed(list(zip(names, extents or (DIM,) * len(names)))):
        body = (t.Loop(name, t.Aff(), t.Aff((), extent), "seq", body),)
    return body


def _replace_reads(block: t.Block, swap: dict[str, tuple[str, tuple[t.Aff, ...]]]) -> t.Block:
    """Rename reads/writes of scalar or staged buffers: ``swap[buf] = (new buf, new index)``."""

    def expr(e: t.Expr) -> t.Expr:
        match e:
            case t.Read(buf, _) if buf in swap:
                return t.Read(*swap[buf])
            case t.BinOp(op, lhs, rhs):
                return t.BinOp(op, expr(lhs), expr(rhs))
            case t.USub(arg):
                return t.USub(expr(arg))
            case t.BuiltIn(f, a):
                return t.BuiltIn(f, tuple(expr(x) for x in a))
        return e

    out = []
    for s in block:
        match s:
            case t.Assign(buf, idx, rhs):
                buf, idx = swap.get(buf, (buf, idx))
                out.append(t.Assign(buf, idx, expr(rhs)))
            case t.Reduce(buf, idx, rhs):
                buf, idx = swap.get(buf, (buf, idx))
                out.append(t.Reduce(buf, idx, expr(rhs)))
            case t.Call(p, args):
                out.append(t.Call(p, tuple(expr(a) for a in args)))
            case t.If(cond, body, orelse):
                out.append(t.If(expr(cond), _replace_reads(body, swap), _replace_reads(orelse, swap)))
            case _:
                out.append(s)
    return tuple(out)


def _pattern(term, args, pvars, rvars, extents, n, m, k, acc, zero, inner, epilogue, a_read, b_read, out):
    n1, m1, k1 = f"{n}_1", f"{m}_1", f"{k}_1"
    (a_buf, a_idx), (b_buf, b_idx) = a_read, b_read
    a_s, b_s = f"{a_buf}_s", f"{b_buf}_s"
    # each operand's tiles keep its DRAM layout: rows and columns as the kernel stores them
    a_rows, a_cols = (k, n) if (a_t := _stored_transposed(a_idx, n, k)) else (n, k)
    b_rows, b_cols = (m, k) if (b_t := _stored_transposed(b_idx, k, m)) else (k, m)
    tile_var = {n: n1, m: m1, k: k1}
    tile_env = {n: t.Aff.var(f"{n}_t") + t.Aff.var(n1), m: t.Aff.var(f"{m}_t") + t.Aff.var(m1),
                k: t.Aff.var(f"{k}_t") + t.Aff.var(k1)}
    acc_tile = (acc, (t.Aff.var(n1), t.Aff.var(m1)))
    mac_body = _replace_reads(inner, {
        acc: acc_tile,
        a_buf: (a_s, (t.Aff.var(tile_var[a_rows]), t.Aff.var(tile_var[a_cols]))),
        b_buf: (b_s, (t.Aff.var(tile_var[b_rows]), t.Aff.var(tile_var[b_cols]))),
    })  # fmt: skip
    tn, tm, tk = (min(extents[v], DIM) for v in (n, m, k))  # a tile's trips (partial below DIM)
    mac = _tile_loops((n1, m1, k1), mac_body, (tn, tm, tk))
    start = t.subst_expr(zero.rhs, tile_env)  # zero, or the bias at the tile's position
    zero_nest = _tile_loops((n1, m1), (t.Assign(acc, acc_tile[1], start),), (tn, tm))
    zero_mac = _tile_loops((n1, m1), (t.Assign(acc, acc_tile[1], start), *_tile_loops((k1,), mac_body, (tk,))), (tn, tm))
    store_body = t.subst_block(_replace_reads(epilogue, {acc: acc_tile}), tile_env)
    store = _tile_loops((n1, m1), store_body, (tn, tm))

    def load(staged: str, buf: str, idx: tuple[t.Aff, ...], rows: str, cols: str) -> t.Block:
        i0, i1 = f"{staged}_i0", f"{staged}_i1"
        env = {rows: t.Aff.var(f"{rows}_t") + t.Aff.var(i0), cols: t.Aff.var(f"{cols}_t") + t.Aff.var(i1)}
        read = t.Read(buf, tuple(a.subst(env) for a in idx))
        trips = (min(extents[rows], DIM), min(extents[cols], DIM))
        return _tile_loops((i0, i1), (t.Assign(staged, (t.Aff.var(i0), t.Aff.var(i1)), read),), trips)

    def load_block(staged: str, buf: str, idx: tuple[t.Aff, ...], rows: str, cols: str) -> t.Block:
        """Rows outer, then BLOCK column tiles, then columns: tiles of a staged buffer [.., tile, 16, 16]."""
        i0, b, i1 = f"{staged}_i0", f"{staged}_b", f"{staged}_i1"
        col = t.Aff.var(f"{cols}_t") + t.Aff.var(b).scale(DIM) + t.Aff.var(i1)
        env = {rows: t.Aff.var(f"{rows}_t") + t.Aff.var(i0), cols: col}
        read = t.Read(buf, tuple(a.subst(env) for a in idx))
        body = (t.Assign(f"{staged}_blk", (t.Aff.var(b), t.Aff.var(i0), t.Aff.var(i1)), read),)
        blocks = (t.Loop(b, t.Aff(), t.Aff((), BLOCK), "seq", _tile_loops((i1,), body)),)
        return (t.Loop(i0, t.Aff(), t.Aff((), min(extents[rows], DIM)), "seq", blocks),)

    def dram(name: str) -> t.Buffer:
        a = args[name]
        return t.Buffer(a.typ, a.mem or "DRAM", tuple(s.const for s in a.shape))

    buffers = {name: dram(name) for name, a in args.items() if a.shape}
    buffers.update({name: t.Buffer(a.typ, "DRAM", ()) for name, a in args.items() if not a.shape})
    buffers[a_s] = t.Buffer(args[a_buf].typ, "GEMM_SCRATCH", (DIM, DIM))
    buffers[b_s] = t.Buffer(args[b_buf].typ, "GEMM_SCRATCH", (DIM, DIM))
    buffers[f"{a_s}_blk"] = t.Buffer(args[a_buf].typ, "GEMM_SCRATCH", (BLOCK, DIM, DIM))
    buffers[f"{b_s}_blk"] = t.Buffer(args[b_buf].typ, "GEMM_SCRATCH", (BLOCK, DIM, DIM))
    buffers[acc] = t.Buffer("i32", "GEMM_ACCUM", (DIM, DIM))
    for s in t.leaves(inner + epilogue):
        if isinstance(s, t.Alloc):
            buffers[s.name] = t.Buffer(s.typ, "DRAM", ())
    roles = (
        (Role.ZERO, zero_nest),
        (Role.LOAD_A, load(a_s, a_buf, a_idx, a_rows, a_cols)),
        (Role.LOAD_B, load(b_s, b_buf, b_idx, b_rows, b_cols)),
        (Role.MAC, mac),
        (Role.STORE, store),
        (Role.ZERO_MAC, zero_mac),
        (Role.LOAD_A_BLOCK, load_block(a_s, a_buf, a_idx, a_rows, a_cols)),
        (Role.LOAD_B_BLOCK, load_block(b_s, b_buf, b_idx, b_rows, b_cols)),
    )
    return GemmPattern(
        term.name, tuple(pvars), tuple(rvars), tuple(extents.items()), n, m, k, acc,
        ((Operand.A, a_buf, a_idx), (Operand.B, b_buf, b_idx)), out.buf, roles, tuple(buffers.items()),
        frozenset(o for o, t_ in ((Operand.A, a_t), (Operand.B, b_t)) if t_),
    )


# what each role does, in the words of the kernel, and how to find its statement in the kernel
_ROLE_WORDS = {
    Role.ZERO: "start of the accumulator (zero or bias)",
    Role.LOAD_A: "read of the first operand",
    Role.LOAD_B: "read of the second operand",
    Role.MAC: "multiply-accumulate step",
    Role.STORE: "epilogue storing the output",
}


def role_statement(g: GemmPattern, role: Role) -> Callable[[t.Stmt], bool]:
    """Matches the kernel statement that ``role`` stands for (for messages)."""
    reads = lambda s, buf: any(r.buf == buf for r in _reads((s,)))  # noqa: E731
    return {
        Role.ZERO: lambda s: isinstance(s, t.Assign) and s.buf == g.acc,
        Role.LOAD_A: lambda s: reads(s, g.operand(Operand.A)[0]),
        Role.LOAD_B: lambda s: reads(s, g.operand(Operand.B)[0]),
        Role.MAC: lambda s: isinstance(s, t.Reduce) and s.buf == g.acc,
        Role.STORE: lambda s: isinstance(s, t.Assign) and s.buf == g.out,
    }[role]


def unfilled_roles(g: GemmPattern, filled: Callable[[Role], bool]) -> list[tuple[Role, str]]:
    """Roles no instruction fills (the zero is filled by a zero or by a first-step matmul), with
    what each does; every one must be filled for any plan to run."""
    out = []
    for role, words in _ROLE_WORDS.items():
        ok = filled(role) or (role == Role.ZERO and filled(Role.ZERO_MAC))
        if not ok:
            out.append((role, words))
    return out


def initial_plan(g: GemmPattern) -> Plan:
    """The kernel as Gemmini would first run it: one tile at a time, in source loop order."""
    plan: Plan = PStage(Operand.A, role(Role.LOAD_A), PStage(Operand.B, role(Role.LOAD_B), PMac(role(Role.MAC))))
    for v in reversed(g.reduction):
        plan = _tile_loop(g, v, plan)
    plan = PAcc(role(Role.ZERO), role(Role.STORE), plan)
    for v in reversed(g.parallel):
        plan = _tile_loop(g, v, plan)
    return plan


def _tile_loop(g: GemmPattern, v: str, body: Plan) -> Plan:
    if g.tiled(v) and g.extent(v) <= DIM:
        return body  # one tile: no loop over tiles
    if g.tiled(v):
        return PLoop(v, DIM, g.extent(v) // DIM, body)
    return PLoop(v, 1, g.extent(v), body)


class Peel(IntEnum):
    """Whether an accumulator body's first reduction step can be peeled (`first_step_ok`), kept
    link by link from the `PMac` up, so extraction knows it of each plan it builds in O(1)
    (an `IntEnum`: extraction looks it up millions of times, and an int hashes in C)."""

    REDUCING = 0  # reduction loops only, down to the multiply
    OK = 1  # parallel loops and stagings over reduction loops only
    NO = 2


def peel_above(g: GemmPattern, link: Plan, below: Peel) -> Peel:
    """The `Peel` of ``link`` over a chain whose state is ``below``."""
    if isinstance(link, PLoop) and link.var in g.reduction:
        return Peel.REDUCING if below is Peel.REDUCING else Peel.NO
    if isinstance(link, PStage) or (isinstance(link, PLoop) and link.var in g.parallel):
        return Peel.OK if below is not Peel.NO else Peel.NO
    return Peel.NO  # an accumulator, or a loop over an iterator the pattern does not know


def first_step_ok(g: GemmPattern, body: Plan) -> bool:
    """The accumulator's body is parallel loops (stagings among them) over reduction loops only,
    so the first reduction step is one region that can be peeled and fused with the zero."""
    state = Peel.REDUCING
    for link in reversed(chain(body)[:-1]):
        state = peel_above(g, link, state)
    return state is not Peel.NO
