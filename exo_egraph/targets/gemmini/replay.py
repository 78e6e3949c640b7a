"""replay (Gemmini): original proc + extracted plan → a schedule script of Exo calls, and the scheduled proc.

Each plan link is reached by the Exo calls its rule names (`exo_egraph.rewrites.gemmini`), in this order
(after ``inline_assign`` + ``delete_buffer`` of copy temporaries, and ``divide_loop`` of a
reduction of 16q + r trips, when the kernel has them):

1. configs a ``do_*`` instruction relies on: ``write_config`` at the top, ``replace`` by the config instr;
2. ``divide_loop`` of n, m, k by DIM, then by the plan's blocks;
3. ``reorder_loops`` of the parallel loops into the plan's order, intra-tile loops innermost;
4. the accumulator: ``expand_dim`` over the tile loops it covers, ``lift_alloc``, ``fission`` into
   zero / compute / store nests, ``set_memory`` to the accumulator, ``replace`` by the zero instr;
5. ``reorder_loops`` of the compute nest into the plan's order;
6. ``stage_mem`` of one A tile and one B tile, ``set_memory`` to the scratchpad, ``replace`` by the
   load instrs, ``replace`` of the tile's multiply-accumulate;
7. each staging lifted to its plan level, one loop at a time: ``expand_dim`` (when the tile changes
   with the loop), ``lift_alloc``, ``reorder_stmts`` (the load first), ``fission``, and
   ``remove_loop`` (when it does not change: the reuse);
8. ``replace`` of the store nest;
9. a staging loaded ahead (`_load_ahead`): its next trip's loads moved into this trip's loops;
10. double buffers: ``expand_dim`` by 2 indexed by the parity of the loop right around the buffer,
   ``lift_alloc`` out of it; the staging loaded ahead folded onto two buffers; ``simplify``.

Exo re-checks every step; a rejected step is a `ReplayError`.
"""

from __future__ import annotations

from collections import Counter

from exo import Procedure

from exo_egraph import terms as t
from exo_egraph.script import (
    Cursor,
    Ref,
    ReplayError,
    Replayed,
    Session,
    Step,
    block_at,
    find,
    find_loop,
    loop_cursor,
    script_text,
    stmt_cursor,
    top,
)

from .config import DIM, block_factor, instr_module
from .pattern import GemmPattern, copy_temporaries, find_gemm, reduction_tile, tileable
from .plans import (
    OPERANDS,
    Operand,
    PAcc,
    Plan,
    PLoop,
    PStage,
    Role,
    Spread,
    chain,
    loads_ahead,
    spread_loads,
    spread_over,
)
from .selection import Selection

GEMM_SCRATCH = Ref("exo.libs.memories", "GEMM_SCRATCH")
GEMM_ACCUM = Ref("exo.libs.memories", "GEMM_ACCUM")


def instr(name: str) -> Ref:
    """An instruction (or config) of the Gemmini platform, as the script imports it."""
    return Ref(instr_module(name), name)


def loop_name(g: GemmPattern, var: str, stride: int) -> str:
    """The Exo loop name of a plan loop (tiled iterators: ``var_stride``; others keep their name)."""
    return f"{var}_{stride}" if g.tiled(var) else var


def inline_temporaries(s: Session, names: tuple[str, ...]) -> None:
    """``inline_assign`` each copy temporary (`exo_egraph.targets.gemmini.pattern.copy_temporaries`)
    into the widening that reads it, and ``delete_buffer`` it: ``a2 = A[i, k]``, as the
    instructions do it."""
    for name in names:
        s.do("inline_assign", find(f"{name} = _"))
        s.do("delete_buffer", find(f"{name} : _"))


def normalize(s: Session) -> GemmPattern:
    """Take the kernel in ``s`` to the form its pattern describes, by Exo calls, and return the
    pattern: copy temporaries inlined (`inline_temporaries`), the epilogue's read of the
    accumulator copied to an i32 first (`bind_accumulator`), a reduction of 16q + r trips
    divided (`split_reduction`)."""
    inline_temporaries(s, copy_temporaries(s.term))
    g = find_gemm(s.term, cut=True, any_reduction=True)
    if bind_accumulator(s, g):
        g = find_gemm(s.term, cut=True, any_reduction=True)
    if not tileable(g.extent(g.k)):
        split_reduction(s, g)
        g = find_gemm(s.term, cut=True)
    return g


def bind_accumulator(s: Session, g: GemmPattern) -> bool:
    """Every store instruction's body starts by copying the accumulator to an i32 scalar
    (``src_tmp = src[i, j]``), as Exo's own kernels write it; a kernel may read it straight in
    its first use (``acc_scale(res, tmp, scale)``, ``tmp = res``). Then ``bind_expr`` that read
    to a fresh i32 and ``reorder_stmts`` the two new statements to the epilogue's top. Whether
    it did."""
    path: tuple = ()
    block = s.term.body
    while len(block) == 1 and isinstance(block[0], t.Loop):
        path, block = path + ((0, 0),), block[0].body
    read = t.Read(g.acc, ())
    scalars = {x.name: x.typ for x in block if isinstance(x, t.Alloc)}
    for i, x in enumerate(block[3:], 3):  # after the alloc, the start and the reduction
        if isinstance(x, t.Assign) and x.rhs == read and (x.idx or scalars.get(x.buf) == "i32"):
            return False  # already a copy first (or an i32 output, stored as it is)
        if isinstance(x, t.Call) and read in x.args:
            at = stmt_cursor(s.term, path, i).then("args").then("[]", x.args.index(read))
        elif isinstance(x, t.Assign) and x.rhs == read:  # widened to f32 straight away
            at = stmt_cursor(s.term, path, i).then("rhs")
        else:
            continue
        taken = {y.name for y in t.leaves(s.term.body) if isinstance(y, t.Alloc)} | {a.name for a in s.term.args}
        name = next(n for n in (f"src_tmp{j or ''}" for j in range(len(taken) + 1)) if n not in taken)
        s.do("bind_expr", at, name)
        for k in range(i, 3, -1):  # the alloc (k) and the copy (k + 1) move above statement k - 1
            s.do("reorder_stmts", stmt_cursor(s.term, path, k - 1).then("expand", 0, 1))
            s.do("reorder_stmts", stmt_cursor(s.term, path, k).then("expand", 0, 1))
        return True
    return False


def split_reduction(s: Session, g: GemmPattern) -> None:
    """A reduction of 16q + r trips (a ``K`` of 40): ``divide_loop`` it by its `reduction_tile`
    ``d`` (10), so that its inner loop is one partial tile of ``d`` (the instructions' ``K``
    argument) and its outer loop one more reduction loop, over tiles."""
    d = reduction_tile(g.extent(g.k))
    s.do("divide_loop", g.k, d, [f"{g.k}_o", f"{g.k}_i"], perfect=True)


def replay_plan(
    original: Procedure,
    g: GemmPattern,
    plan: Plan,
    hoisted: tuple[tuple[str, tuple[str, ...]], ...],
    selection: Selection,
    normal: tuple[Step, ...] = (),
) -> Replayed:
    """Schedule ``original`` into ``plan`` (configs ``hoisted`` to the top), with the instructions
    ``selection`` unified, after the ``normal`` steps that take it to the form ``g`` describes
    (`inline_temporaries`, `split_reduction`); raises `ReplayError`."""
    links = chain(plan)
    s = Session(original)
    for x in normal:
        s.apply(x)
    acc_at = next(i for i, x in enumerate(links) if isinstance(x, PAcc))
    store = selection.binding(Role.STORE, links[acc_at].store)
    reads = {(c, f) for c, f, v in store.requires if isinstance(v, t.Read)}  # config fields it reads
    _hoist_configs(s, hoisted, selection, reads)
    loops = [x for x in links if isinstance(x, PLoop)]
    outer = [x for x in links[:acc_at] if isinstance(x, PLoop)]
    inner = [x for x in links[acc_at:] if isinstance(x, PLoop)]
    _split(s, g, loops)
    n1, m1, k1 = (g.intra(v) for v in (g.n, g.m, g.k))
    first_step = selection.first_step(links[acc_at].zero)
    par_inner = [x for x in inner if x.var in g.parallel]
    first_loop = next(i for i, x in enumerate(s.term.body) if isinstance(x, t.Loop))  # after hoisted configs
    _order(s, (), [loop_name(g, x.var, x.stride) for x in outer + par_inner] + [n1, m1], start=first_loop)
    _accumulator(s, g, links[acc_at], par_inner, n1, m1, zero_instr=not first_step)
    compute = _compute_path(s, g, first_loop, len(outer))
    _order(s, compute[:-1], [loop_name(g, x.var, x.stride) for x in inner] + [n1, m1, k1], start=compute[-1])
    _stage_tiles(s, g, links, n1)
    _lift_stagings(s, g, links)
    _replace_loads(s, g, links, selection)
    if first_step:
        _peel_first_step(s, g, len(par_inner), n1, m1, links[acc_at].zero)
    while _has_compute(s, g, n1):  # every (other) step accumulates
        s.do("replace", _compute_n1(s, g, n1), instr(links[-1].op))
    s.do("replace", find_loop(n1), instr(links[acc_at].store))
    _double_buffer(s, g, links, first_step)
    s.do("simplify")
    return Replayed(s.proc, tuple(s.steps), script_text(original.name(), s.steps, "Gemmini schedule"))


def _double_buffer(s: Session, g: GemmPattern, links: list[Plan], first_step: bool) -> None:
    """A staging loaded ahead first (`_load_ahead`: its cuts copy the loop's body, and Exo's
    ``%`` indexes do not lower to terms); then each other double-buffered staging or
    accumulator alternates across the loop right around it, in every copy of its alloc; last,
    the staging loaded ahead folds onto two buffers."""
    ahead = [i for i, x in enumerate(links) if loads_ahead(x)]
    if len(ahead) > 1:
        raise ReplayError("(load ahead)", "more than one staging loaded ahead")
    for i in ahead:
        _load_ahead(s, g, links, i, first_step)
    copies = Counter(x.name for x in _allocs(s.term))
    for i, x in enumerate(links):
        if isinstance(x, (PStage, PAcc)) and x.buffers == 2 and i not in ahead:
            loop = next(y for y in reversed(links[:i]) if isinstance(y, PLoop))
            buf = g.staged_name(x.operand) if isinstance(x, PStage) else g.acc
            for k in range(copies[buf]):
                s.do("expand_dim", find(f"{buf} : _ #{k}"), 2, f"{loop_name(g, loop.var, loop.stride)} % 2")
                s.do("lift_alloc", find(f"{buf} : _ #{k}"))
    for i in ahead:
        s.do("resize_dim", g.staged_name(links[i].operand), 0, links[i].buffers, 0, fold=True)


def _load_ahead(s: Session, g: GemmPattern, links: list[Plan], at: int, first_step: bool) -> None:
    """The staging at link ``at`` loads the next trip of the loop around it during this one:
    ``expand_dim`` by the loop's trips and ``lift_alloc`` (a buffer per trip, so Exo sees the
    trips' loads apart), ``fission`` of the load nest, ``cut_loop`` + ``shift_loop`` (trip r
    loads r + 1), ``cut_loop`` + ``fuse`` with the trips' steps; then the nest is spread over the
    loops below (`_spread_nest`, `_fuse_down`). `_double_buffer` folds it back onto two buffers."""
    stage = links[at]
    around = next(y for y in reversed(links[:at]) if isinstance(y, PLoop))
    name, trips, buf = loop_name(g, around.var, around.stride), around.extent, g.staged_name(stage.operand)
    s.do("expand_dim", buf, trips, name)
    s.do("lift_alloc", buf)
    path, idx = _loop_of_load(s.term, buf, name)
    nest = next(i for i, x in enumerate(block_at(s.term, path)[idx].body) if _only_loads(x, stage.op, buf))
    for i in range(nest, 0, -1):
        s.do("reorder_stmts", loop_cursor(s.term, path, idx).body(i - 1).then("expand", 0, 1))
    s.do("fission", loop_cursor(s.term, path, idx).body(0).then("after"))
    s.do("cut_loop", loop_cursor(s.term, path, idx), 1)
    s.do("shift_loop", loop_cursor(s.term, path, idx + 1), 0)
    s.do("cut_loop", loop_cursor(s.term, path, idx + 2), trips - 1)
    s.do("fuse", loop_cursor(s.term, path, idx + 1), loop_cursor(s.term, path, idx + 2))
    block = path + ((idx + 1, 0),)  # the fused trips' body: the next trip's load nest first
    spread = _spread_nest(s, block, [links[j].extent for j in spread_over(links, at, g.parallel, first_step)])
    acc = next(x for x in links if isinstance(x, PAcc))
    _fuse_down(s, block, spread.depth, {links[-1].op} | ({acc.zero} if first_step else set()))


def _fuse_down(s: Session, block: tuple, depth: int, computes: set[str]) -> None:
    """Move the load nest first in ``block`` down to just before the statement that runs the
    steps (calls ``computes``), and ``depth`` times ``fuse`` its outer loop with that loop and go
    on inside: the nest's loop is first renamed after it (``divide_loop`` by its trips,
    ``unroll_loop`` of the one-trip loop), and a loop of more trips than the nest's is first
    ``cut_loop`` at them (its first trips take the chunks)."""
    for level in range(depth + 1):
        target = next(i for i, x in enumerate(block_at(s.term, block)) if i > 0 and _calls_any(x, computes))
        for i in range(target - 1):
            s.do("reorder_stmts", stmt_cursor(s.term, block, i).then("expand", 0, 1))
        if level == depth:
            return
        group, mine = block_at(s.term, block)[target], block_at(s.term, block)[target - 1]
        trips = mine.hi.const - mine.lo.const
        if trips < group.hi.const - group.lo.const:
            s.do("cut_loop", loop_cursor(s.term, block, target), group.lo.const + trips)
        if mine.var != group.var:
            s.do("divide_loop", loop_cursor(s.term, block, target - 1), trips, [f"{group.var}_once", group.var],
                 perfect=True)  # fmt: skip
            s.do("unroll_loop", loop_cursor(s.term, block, target - 1))
        s.do("fuse", loop_cursor(s.term, block, target - 1), loop_cursor(s.term, block, target))
        block = block + ((target - 1, 0),)


def _spread_nest(s: Session, block: tuple, groups: list[int]) -> Spread:
    """Split and reorder the load nest first in ``block`` into `spread_loads`' order."""
    loops, x = [], block_at(s.term, block)[0]
    while isinstance(x, t.Loop):
        loops.append(x)
        x = x.body[0]
    spread = spread_loads([y.hi.const - y.lo.const for y in loops], groups)
    names, depth = [], 0  # ``depth``: the loop's place in the nest as split so far
    for loop, part in zip(loops, spread.parts):
        if len(part) == 2:
            s.do("divide_loop", loop_cursor(s.term, block + ((0, 0),) * depth, 0), part[1],
                 [f"{loop.var}_o", f"{loop.var}_i"], perfect=True)
            names += [f"{loop.var}_o", f"{loop.var}_i"]
        else:
            names.append(loop.var)
        depth += len(part)
    if names:
        _order(s, block, [names[j] for j in spread.order], start=0)
    return spread


def _only_loads(x: t.Stmt, instr: str, buf: str) -> bool:
    """Is ``x`` a nest of calls of ``instr`` that fill ``buf`` alone (a staging's load nest)?"""
    leaves = list(t.leaves((x,)))
    return bool(leaves) and all(isinstance(y, t.Call) and y.proc == instr
                                and any(isinstance(a, t.WindowExpr) and a.buf == buf for a in y.args) for y in leaves)


def _calls_any(x: t.Stmt, instrs: set[str]) -> bool:
    return any(isinstance(y, t.Call) and y.proc in instrs for y in t.leaves((x,)))


def _hoist_configs(s: Session, hoisted, selection: Selection, reads: set[tuple[str, str]]) -> None:
    """``write_config`` each field a hoisted config instruction sets, then ``replace`` them by it.

    A field some instruction reads (``reads``: ``do_st_acc_i8`` reads ``ConfigStore.scale``) is
    bound first: ``bind_config`` makes the kernel read the field where it read the value, and
    ``delete_config`` drops the write that puts there (the top one already holds the value).
    On the plain kernel these are instant; Exo's config analysis is slow on a scheduled one."""
    for name, args in reversed(hoisted):
        body = selection.pattern(name)
        writes = [x for x in body.body if isinstance(x, t.WriteConfig)]
        params = {a.name: v for a, v in zip(body.args, args)}
        for w in reversed(writes):
            s.do("write_config", top(0).then("before"), instr(w.config), w.field, _expr_text(w.rhs, params))
        for w in writes:
            if (w.config, w.field) in reads:
                read = _read_cursor(s.term, _expr_text(w.rhs, params))
                s.do("bind_config", read, instr(w.config), w.field)
                s.do("delete_config", find(f"{w.config}.{w.field} = _ #1"))
        first = find(f"{writes[0].config}.{writes[0].field} = _")
        s.do("replace", first if len(writes) == 1 else first.then("expand", 0, len(writes) - 1), instr(name))


def _read_cursor(term: t.Proc, name: str) -> Cursor:
    """The cursor of the kernel's one read of the scalar ``name`` (a call argument or an if test)."""
    for x in t.leaves(term.body):
        if isinstance(x, t.Call):
            for i, a in enumerate(x.args):
                if a == t.Read(name, ()):
                    return find(f"{x.proc}(_)").then("args").then("[]", i)

    for cond in (x.cond for x in t.walk(term.body) if isinstance(x, t.If)):
        if isinstance(cond, t.BinOp) and cond.lhs == t.Read(name, ()):
            return find(f"{name} {cond.op} _").then("lhs")
    raise ReplayError("(config)", f"no single read of {name} to bind to a config")


def _expr_text(e: t.Expr, params: dict[str, str]) -> str:
    """A config value as Exo source, the config instr's parameters replaced by their arguments."""
    match e:
        case t.Read(buf, ()) if buf in params:
            return params[buf]
        case t.IdxExpr(aff) if len(aff.terms) == 1 and aff.terms[0] == (aff.terms[0][0], 1) and aff.const == 0:
            return params.get(aff.terms[0][0], str(aff))
        case t.Const(val):
            return val
        case t.IdxExpr(aff):
            return str(aff)
    raise ReplayError("(config)", f"cannot write config value {e}")


def _split(s: Session, g: GemmPattern, loops: list[PLoop]) -> None:
    for v in (g.n, g.m, g.k):
        if g.extent(v) <= DIM:
            continue  # one tile: the loop is the tile's
        strides = sorted({x.stride for x in loops if x.var == v}, reverse=True)
        s.do("divide_loop", v, DIM, [f"{v}_{DIM}", f"{v}_1"], perfect=True)
        for big in strides[:-1]:  # the plan splits the tile loop once: v_big over v_16
            s.do("divide_loop", f"{v}_{DIM}", big // DIM, [f"{v}_{big}", f"{v}_{DIM}"], perfect=True)


def _order(s: Session, path: tuple, want: list[str], start: int = 0) -> None:
    """Bubble the perfect chain of loops at ``path[start]`` into the order ``want`` (its first loops)."""
    for _ in range(len(want) ** 2 + 1):
        chain_ = _loop_chain(s.term, path, start, len(want))
        names = [block_at(s.term, bp)[bi].var for bp, bi in chain_]
        swap = next((q for q in range(len(want) - 1) if want.index(names[q]) > want.index(names[q + 1])), None)
        if swap is None:
            if names != want:
                raise ReplayError("(order)", f"loops {names} are not {want}")
            return
        bp, bi = chain_[swap]
        s.do("reorder_loops", loop_cursor(s.term, bp, bi))


def _loop_chain(term: t.Proc, path: tuple, idx: int, depth: int) -> list[tuple[tuple, int]]:
    out = [(path, idx)]
    for _ in range(depth - 1):
        p, i = out[-1]
        loop = block_at(term, p)[i]
        if not isinstance(loop, t.Loop) or not isinstance(loop.body[0], t.Loop):
            raise ReplayError("(order)", f"no perfect chain of {depth} loops at {path}[{idx}]")
        out.append((p + ((i, 0),), 0))
    return out


def _accumulator(
    s: Session, g: GemmPattern, acc: PAcc, par_inner: list[PLoop], n1: str, m1: str, zero_instr: bool
) -> None:
    for name, extent in [(m1, DIM), (n1, DIM)] + [(loop_name(g, x.var, x.stride), x.extent) for x in reversed(par_inner)]:
        s.do("expand_dim", g.acc, extent, name)
    lifts = len(par_inner) + 2
    s.do("lift_alloc", g.acc, n_lifts=lifts)
    s.do("fission", find(f"{g.acc}[_] = _").then("after"), n_lifts=lifts)
    first_red = g.reduction[0]
    red_name = max((n for n in _loop_names(s.term) if n == first_red or n.startswith(f"{first_red}_")),
                   key=lambda n: int(n.rsplit("_", 1)[1]) if n != first_red else 0)  # fmt: skip
    s.do("fission", find_loop(red_name).then("after"), n_lifts=lifts)
    s.do("set_memory", g.acc, GEMM_ACCUM)
    if zero_instr:
        s.do("replace", find_loop(n1), instr(acc.zero))


def _loop_names(term: t.Proc) -> list[str]:
    return [x.var for x in t.walk(term.body) if isinstance(x, t.Loop)]


def _compute_path(s: Session, g: GemmPattern, top: int, depth: int) -> tuple:
    """Path to the compute nest: under the ``depth`` outer loops (from ``top``), the nest that reduces."""
    path: tuple = ((top, 0),) + ((0, 0),) * (depth - 1) if depth else ()
    block = block_at(s.term, path)
    idx = next(i for i, x in enumerate(block) if isinstance(x, t.Loop) and _has_reduce(x, g.acc))
    return path + (idx,)


def _has_reduce(x: t.Stmt, acc: str) -> bool:
    return any(isinstance(leaf, t.Reduce) and leaf.buf == acc for leaf in t.leaves((x,)))


def _window(g: GemmPattern, operand: str, links: list[Plan]) -> str:
    buf, idx = g.operand(operand)
    rows, cols = g.rows(operand)
    env: dict[str, t.Aff] = {}
    for v in set(g.parallel) | set(g.reduction):
        parts = [x for x in links if isinstance(x, PLoop) and x.var == v]
        env[v] = sum((t.Aff.var(loop_name(g, v, x.stride)).scale(x.stride if g.tiled(v) else 1) for x in parts), t.Aff())
    out = []
    for a in idx:
        lo = a.subst(env)
        if a.vars & {rows, cols}:
            out.append(f"{lo}:{lo + t.Aff((), g.tile(next(iter(a.vars & {rows, cols}))))}")
        else:
            out.append(str(lo))
    return f"{buf}[{', '.join(out)}]"


def _stage_tiles(s: Session, g: GemmPattern, links: list[Plan], n1: str) -> None:
    for operand in OPERANDS:
        staged = g.staged_name(operand)
        if g.row_step(operand) == 1:
            s.do("stage_mem", _compute_n1(s, g, n1), _window(g, operand, links), staged)
        else:
            _stage_strided(s, g, operand, n1)
    s.do("simplify")
    for operand in OPERANDS:
        staged = g.staged_name(operand)
        s.do("set_memory", staged, GEMM_SCRATCH)
        rows, cols = g.rows(operand)
        for dim, v in enumerate((rows, cols)):
            if g.tile(v) < DIM:  # a partial tile: the scratchpad row is DIM wide all the same
                s.do("resize_dim", staged, dim, DIM, 0)


def _stage_strided(s: Session, g: GemmPattern, operand: str, n1: str) -> None:
    """Stage one tile of an operand whose rows are more than one row apart (a strided
    convolution's input): a window cannot step, so ``stage_mem`` cannot. ``bind_expr`` the read
    in the multiply step, ``expand_dim`` it over the tile's columns and rows, ``lift_alloc`` it
    out of the tile nest, ``fission`` the copy from the multiply, and ``remove_loop`` the copy's
    loop over the other operand's columns: the copy nest ``stage_mem`` would have written."""
    staged, (buf, _) = g.staged_name(operand), g.operand(operand)
    rows, cols = g.rows(operand)
    path, idx = _first(_loops_where(s.term, _is_compute(g, n1)), f"compute loop {n1}")
    nest = block_at(s.term, path)[idx]
    steps = nest.body[0].body[0].body  # n1 → m1 → k1 → the multiply step
    at = next(i for i, x in enumerate(steps) if isinstance(x, t.Assign) and isinstance(x.rhs, t.Read) and x.rhs.buf == buf)
    s.do("bind_expr", loop_cursor(s.term, path, idx).body(0).body(0).body(at).then("rhs"), staged)
    for v in (cols, rows):  # expand_dim puts the new dim first: rows end outermost
        s.do("expand_dim", staged, g.tile(v), g.intra(v))
    s.do("lift_alloc", staged, n_lifts=3)
    step = loop_cursor(s.term, path, idx + 1).body(0).body(0)  # the k1 loop; the copy is at ``at``
    for i in range(at, 0, -1):  # before the step's temporaries' allocs, which the fission must not hide
        s.do("reorder_stmts", step.body(i - 1).then("expand", 0, 1))
    s.do("fission", step.body(0).then("after"), n_lifts=3)
    copy = loop_cursor(s.term, path, idx + 1)
    s.do("remove_loop", copy.body(0))


def _has_compute(s: Session, g: GemmPattern, n1: str) -> bool:
    return bool(_loops_where(s.term, _is_compute(g, n1)))


def _peel_first_step(s: Session, g: GemmPattern, par_loops: int, n1: str, m1: str, name: str) -> None:
    """Fuse the zero nest into the first reduction step and make the two one plain matmul:
    ``fuse`` the zero nest's loops with the compute nest's (moving it past loads with
    ``reorder_stmts``), ``cut_loop`` + ``unroll_loop`` each reduction loop's first trip, ``fuse``
    the tile loops, ``replace``."""

    def is_zero(x: t.Stmt) -> bool:
        return isinstance(x, t.Loop) and any(
            isinstance(y, t.Assign) and y.buf == g.acc for y in t.leaves((x,))
        ) and not _has_reduce(x, g.acc)

    def find(block: t.Block, path: tuple) -> tuple | None:
        if any(is_zero(x) for x in block) and any(isinstance(x, t.Loop) and _has_reduce(x, g.acc) for x in block):
            return path
        for i, x in enumerate(block):
            if isinstance(x, t.Loop) and (found := find(x.body, path + ((i, 0),))) is not None:
                return found
        return None

    path = find(s.term.body, ())
    if path is None:
        raise ReplayError("(first step)", "no zero nest beside the compute nest")

    def line_up() -> int:
        """Move the zero nest to just before the compute nest; the zero's index."""
        block = block_at(s.term, path)
        z = next(i for i, x in enumerate(block) if is_zero(x))
        c = next(i for i, x in enumerate(block) if isinstance(x, t.Loop) and _has_reduce(x, g.acc))
        for i in range(z, c - 1):
            s.do("reorder_stmts", stmt_cursor(s.term, path, i).then("expand", 0, 1))
        return c - 1

    for _ in range(par_loops):  # the accumulator's parallel loops: one fused loop each
        z = line_up()
        s.do("fuse", loop_cursor(s.term, path, z), loop_cursor(s.term, path, z + 1))
        path = path + ((z, 0),)
    z = line_up()
    while (loop := block_at(s.term, path)[z + 1]).var != n1:  # a reduction loop: peel its first trip
        if loop.hi.const - loop.lo.const > 1:
            s.do("cut_loop", loop_cursor(s.term, path, z + 1), loop.lo.const + 1)
        s.do("unroll_loop", loop_cursor(s.term, path, z + 1))
    for _ in (n1, m1):
        s.do("fuse", loop_cursor(s.term, path, z), loop_cursor(s.term, path, z + 1))
        path, z = path + ((z, 0),), 0
    s.do("replace", loop_cursor(s.term, path[:-2], path[-2][0]), instr(name))


def _loops_where(term: t.Proc, match) -> list[tuple[tuple, int]]:
    """(block path, index) of every statement ``match(block, index)`` accepts, in program order
    (loops are searched inside; an accepted loop is not searched further)."""
    found = []

    def walk(b: t.Block, path: tuple) -> None:
        for i, x in enumerate(b):
            if match(b, i):
                found.append((path, i))
            elif isinstance(x, t.Loop):
                walk(x.body, path + ((i, 0),))

    walk(term.body, ())
    return found


def _first(found: list[tuple[tuple, int]], what: str) -> tuple[tuple, int]:
    if not found:
        raise ReplayError("(locate)", f"no {what}")
    return found[0]


def _is_compute(g: GemmPattern, n1: str):
    """Matches a compute nest's ``n1`` loop (one holding the accumulator's reduce)."""
    return lambda b, i: isinstance(b[i], t.Loop) and b[i].var == n1 and _has_reduce(b[i], g.acc)


def _compute_n1(s: Session, g: GemmPattern, n1: str) -> Cursor:
    """The cursor of the first compute nest's ``n1`` loop."""
    return loop_cursor(s.term, *_first(_loops_where(s.term, _is_compute(g, n1)), f"compute loop {n1}"))


def _lift_stagings(s: Session, g: GemmPattern, links: list[Plan]) -> None:
    below: dict[str, set[int]] = {}
    for i, x in enumerate(links):
        if isinstance(x, PStage):
            below[x.operand] = {j for j in range(i, len(links)) if isinstance(links[j], PLoop)}
    order = [i for i, x in enumerate(links) if isinstance(x, PLoop)]
    for j in reversed(order):
        loop = links[j]
        for operand in OPERANDS:
            if j in below[operand]:
                _lift_once(s, g, operand, loop_name(g, loop.var, loop.stride), loop)


def _lift_once(s: Session, g: GemmPattern, operand: str, name: str, loop: PLoop) -> None:
    staged = g.staged_name(operand)
    path, idx = _enclosing_loop(s.term, staged, name)
    ref = loop_cursor(s.term, path, idx)
    depends = g.depends(operand, loop.var)
    if depends:
        s.do("expand_dim", staged, loop.extent, name)
    s.do("lift_alloc", staged)
    path, idx = _loop_of_load(s.term, staged, name)
    body = block_at(s.term, path)[idx].body
    pos = next(i for i, x in enumerate(body) if _loads(x, staged))
    for i in range(pos, 0, -1):
        s.do("reorder_stmts", loop_cursor(s.term, path, idx).body(i - 1).then("expand", 0, 1))
    if len(body) > 1:
        s.do("fission", loop_cursor(s.term, path, idx).body(0).then("after"))
    if not depends:
        s.do("remove_loop", loop_cursor(s.term, path, idx))


def _loads(x: t.Stmt, staged: str) -> bool:
    """Does ``x`` fill ``staged`` (the copy nest ``stage_mem`` wrote)?"""
    return any(isinstance(leaf, t.Assign) and leaf.buf == staged for leaf in t.leaves((x,)))


def _replace_loads(s: Session, g: GemmPattern, links: list[Plan], selection: Selection) -> None:
    """``replace`` each operand's copy nest by its load instruction. A block load first brings
    the copy's rows outside its column tiles: ``divide_loop`` of the column-tile loop by the
    block, ``reorder_loops``; then each call moves up to BLOCK tiles."""
    for x in links:
        if not isinstance(x, PStage):
            continue
        staged = g.staged_name(x.operand)
        path, idx = _copy_loop(s.term, staged)
        if x.op in selection.blocks:
            _columns_innermost(s, g, x.operand, staged)
            path, idx = _copy_loop(s.term, staged)
            around = block_at(s.term, path[:-1])[path[-1][0]]
            extent = around.hi.const
            blocks = block_factor(extent)
            if extent > blocks:
                ref = loop_cursor(s.term, path[:-1], path[-1][0])
                s.do("divide_loop", ref, blocks, [f"{around.var}_blk", f"{around.var}_in"], perfect=True)
                path, idx = _copy_loop(s.term, staged)
            s.do("reorder_loops", loop_cursor(s.term, path[:-1], path[-1][0]))
            path, idx = _copy_loop(s.term, staged)
            path, idx = path[:-1], path[-1][0]  # the rows loop now holds the column tiles
        s.do("replace", loop_cursor(s.term, path, idx), instr(x.op))


def _columns_innermost(s: Session, g: GemmPattern, operand: str, staged: str) -> None:
    """Make the operand's column-tile loop the innermost loop around its copy, and its dim the
    last tile dim of the staged buffer (``rearrange_dim``, ``reorder_loops``): consecutive column
    tiles then sit DIM rows apart, as one block load writes them."""
    col = loop_name(g, g.columns(operand), DIM)
    alloc = next(x for x in _allocs(s.term) if x.name == staged)
    tile_dims = len(alloc.shape) - 2  # one per loop lifted over that the operand changes with
    path, _ = _copy_loop(s.term, staged)
    order = [block_at(s.term, bp)[bi].var for bp, bi in reversed(_enclosing(s.term, path, tile_dims))]
    if col not in order or order[-1] == col:
        return
    at = order.index(col)
    perm = [i for i in range(tile_dims) if i != at] + [at, tile_dims, tile_dims + 1]
    s.do("rearrange_dim", staged, perm)
    for _ in range(len(order) - 1 - at):
        cp, _ = _copy_loop(s.term, staged)
        loops = _enclosing(s.term, cp, len(order))
        bp, bi = next(q for q in loops if block_at(s.term, q[0])[q[1]].var == col)
        s.do("reorder_loops", loop_cursor(s.term, bp, bi))


def _enclosing(term: t.Proc, path: tuple, depth: int) -> list[tuple[tuple, int]]:
    """(block path, index) of the ``depth`` loops around the block at ``path``, innermost first."""
    out = []
    while path and len(out) < depth:
        out.append((path[:-1], path[-1][0]))
        path = path[:-1]
    return out


def _allocs(term: t.Proc) -> list[t.Alloc]:
    return [x for x in t.leaves(term.body) if isinstance(x, t.Alloc)]


def _copy_loop(term: t.Proc, staged: str) -> tuple[tuple, int]:
    """(block path, index) of the outer loop of the tile copy filling ``staged`` (stage_mem's ``i0``)."""

    def match(b: t.Block, i: int) -> bool:
        x = b[i]
        if not (isinstance(x, t.Loop) and len(x.body) == 1 and isinstance(x.body[0], t.Loop)):
            return False
        inner = x.body[0].body
        return len(inner) == 1 and isinstance(inner[0], t.Assign) and inner[0].buf == staged

    found = _loops_where(term, match)
    if len(found) != 1:
        raise ReplayError("(load)", f"{len(found)} copy nests fill {staged}")
    return found[0]


def _enclosing_loop(term: t.Proc, staged: str, name: str) -> tuple[tuple, int]:
    """The loop ``name`` whose body holds the alloc of ``staged``."""

    def match(b: t.Block, i: int) -> bool:
        x = b[i]
        return isinstance(x, t.Loop) and x.var == name and any(isinstance(y, t.Alloc) and y.name == staged for y in x.body)

    return _first(_loops_where(term, match), f"loop {name} right around the alloc of {staged}")


def _loop_of_load(term: t.Proc, staged: str, name: str) -> tuple[tuple, int]:
    """The loop ``name`` right after the (lifted) alloc of ``staged``."""

    def match(b: t.Block, i: int) -> bool:
        return i > 0 and isinstance(b[i - 1], t.Alloc) and b[i - 1].name == staged and isinstance(b[i], t.Loop) and b[i].var == name

    return _first(_loops_where(term, match), f"loop {name} after the alloc of {staged}")
