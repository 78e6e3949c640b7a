"""replay: original proc + extracted term → a schedule script of Exo calls, and the scheduled proc.

The script is the product: every step is one call of ``exo.stdlib.scheduling`` kept as data
(`exo_egraph.script.Step`), applied to the proc exactly as the user's script will apply it, so Exo
re-checks each step. After each
step the proc is lowered again to find the next loop by structure (loops are named by Exo
patterns ``"name #n"``, the n-th loop of that name in program order). At the end the round
trip must hold: ``lower(scheduled) == materialize(term)``.

Order of work for a target block: structural steps first (fission, fuse, lift_alloc) until the
current block has the target's shape, then, for each nest, its body, then its header: splits
(``divide_loop``, outer part first), adjacent swaps into the target order (``reorder_loops``),
then ``unroll_loop`` of the unrolled innermost dims.
"""

from __future__ import annotations

from exo import Procedure
from exo.stdlib.scheduling import SchedulingError

from . import terms as t
from .script import Cursor, Path, ReplayError, Replayed, Session, block_at, find, loop_cursor, script_text


def replay(original: Procedure, target: t.Proc) -> Replayed:
    """Schedule ``original`` into ``target``; raises `ReplayError` when Exo rejects a step."""
    session = Session(original)
    _block(session, (), target.body)
    roundtrip = session.term == t.materialize(target)
    return Replayed(session.proc, tuple(session.steps), script_text(original.name(), session.steps), roundtrip)


def _source_leaves(block: t.Block) -> int:
    """Leaves of a target block as they stand before its cut divides (a `Cut` copies a body)."""
    return sum(
        0 if isinstance(s, t.Cut) else sum(map(_source_leaves, t.blocks_of(s))) if _is_control(s) else 1 for s in block
    )


def _is_control(s: t.Stmt) -> bool:
    return isinstance(s, t.CONTROL_TYPES)


def _opens(s: t.Stmt, alloc: t.Alloc) -> bool:
    """``alloc`` opens the body of loop ``s``, or of the loop that opens it, and so on: the rule
    lifts an allocation one loop at a time, so a term may hold it several loops further out."""
    while isinstance(s, t.Loop) and s.body:
        if s.body[0] == alloc:
            return True
        s = s.body[0]
    return False


# ----------------------------------------------------------------------------- structure


def _block(session: Session, path: Path, target: t.Block) -> None:
    i = c = 0
    while i < len(target):
        cur = block_at(session.term, path)
        if c >= len(cur):
            raise ReplayError("(structure)", f"current block at {path} ran out before target statement {i}")
        want, have = target[i], cur[c]
        if not _is_control(want):
            if want == have:
                i, c = i + 1, c + 1
            elif isinstance(want, t.Alloc) and _opens(have, want):  # lifted out of one loop per step
                session.do("lift_alloc", Cursor((("find_alloc_or_arg", (want.name,)),)))
            else:
                raise ReplayError("(structure)", f"expected {want} at {path}[{c}], found {type(have).__name__}")
            continue
        if isinstance(want, t.Cut):  # made by the cut divide of the nest before it: check, move on
            if t.materialize_block((want,)) != (have,):
                raise ReplayError("(cut)", f"the tail at {path}[{c}] is not {want}")
            i, c = i + 1, c + 1
            continue
        if isinstance(want, t.If):
            if not isinstance(have, t.If):
                raise ReplayError("(structure)", f"expected an if at {path}[{c}]")
            _block(session, path + ((c, 0),), want.body)
            _block(session, path + ((c, 1),), want.orelse)
            i, c = i + 1, c + 1
            continue
        if not isinstance(have, t.Loop):
            raise ReplayError("(structure)", f"expected a loop at {path}[{c}], found {type(have).__name__}")
        need, got = _source_leaves((want,)), t.count_leaves((have,))
        if got > need:
            _fission(session, path, c, need)
        elif got < need:
            _fuse_next(session, path, c, need - got)
        elif isinstance(want, t.Loop):
            _block(session, path + ((c, 0),), want.body)
            i, c = i + 1, c + 1
        else:
            _nest(session, path, c, want)
            i, c = i + 1, c + len(t.materialize_block((want,)))  # a fully unrolled nest is many statements


def _fuse_next(session: Session, path: Path, idx: int, missing: int) -> None:
    """Fuse into the loop at ``path[idx]`` the first ``missing`` leaves of the loop after it.

    When the next loop holds more, it is fissioned first: the target may have fused only its head,
    and fusing the whole loop can be illegal where fusing the head is not (its tail may read what a
    later iteration of this loop writes).
    """
    cur = block_at(session.term, path)
    if idx + 1 >= len(cur) or not isinstance(cur[idx + 1], t.Loop):
        raise ReplayError("(fuse)", f"no loop after {path}[{idx}] to fuse {missing} more leaves from")
    if t.count_leaves((cur[idx + 1],)) > missing:
        _fission(session, path, idx + 1, missing)
    session.do("fuse", loop_cursor(session.term, path, idx), loop_cursor(session.term, path, idx + 1))


def _fission(session: Session, path: Path, idx: int, need: int) -> None:
    """Split the loop at ``path[idx]`` so that its first ``need`` leaves form their own loop."""
    lifts, block_path, remaining = 1, path + ((idx, 0),), need
    while True:
        body = block_at(session.term, block_path)
        count = 0
        for j, s in enumerate(body):
            leaves_here = t.count_leaves((s,))
            if count + leaves_here == remaining and j + 1 < len(body):
                owner = loop_cursor(session.term, block_path[:-1], block_path[-1][0])
                session.do("fission", owner.body(j).then("after"), n_lifts=lifts)
                return
            if count + leaves_here > remaining and isinstance(s, t.Loop):
                block_path, remaining, lifts = block_path + ((j, 0),), remaining - count, lifts + 1
                break
            count += leaves_here
        else:
            raise ReplayError("(fission)", f"no gap after {need} leaves under {path}[{idx}]")


def _nest(session: Session, path: Path, idx: int, nest: t.Nest) -> None:
    depth = len(t.loop_vars_of(nest))
    chain_path = path
    pos = idx
    for _ in range(depth - 1):
        loop = block_at(session.term, chain_path)[pos]
        while len(loop.body) > 1:  # the band's loops must be perfectly nested: fuse what fission left
            inner = chain_path + ((pos, 0),)
            session.do("fuse", loop_cursor(session.term, inner, 0), loop_cursor(session.term, inner, 1))
            loop = block_at(session.term, chain_path)[pos]
        chain_path, pos = chain_path + ((pos, 0),), 0
    _block(session, chain_path + ((pos, 0),), nest.body)
    _band(session, path, idx, nest)


# ----------------------------------------------------------------------------- headers


def _chain(term: t.Proc, path: Path, idx: int, depth: int) -> list[tuple[Path, int]]:
    """(block path, index) of each loop of the perfect chain of ``depth`` loops at ``path[idx]``."""
    out = [(path, idx)]
    for _ in range(depth - 1):
        p, i = out[-1]
        out.append((p + ((i, 0),), 0))
    return out


def _band(session: Session, path: Path, idx: int, nest: t.Nest) -> None:
    vars_ = t.loop_vars_of(nest)
    depth = len(vars_)
    # 1. splits: divide each original loop, outermost part first
    order = [block_at(session.term, bp)[bi].var for bp, bi in _chain(session.term, path, idx, depth)]
    for v in order:
        parts = sorted((d for d in nest.dims if d.var == v), key=lambda d: -d.stride)
        pos = _position(session.term, path, idx, v)
        trips = block_at(session.term, pos[0])[pos[1]].hi.const
        current = v
        if t.var_trip(nest, v) < trips:  # a nest that covers fewer trips than its loop was made by a cut divide
            current, parts = _cut(session, pos, v, trips, parts)
        for d in parts[:-1]:
            pos = _position(session.term, path, idx, current)
            names = [t.split_name(v, d.stride), t.split_name(v, 1)]
            session.do("divide_loop", loop_cursor(session.term, *pos), d.stride, names, perfect=True)
            current = names[1]
    # 2. adjacent swaps into the target order
    want = [t.dim_name(nest, d) for d in nest.dims]
    total = len(want)
    for _ in range(total * total):  # bubble sort: at most n² adjacent swaps
        names = [block_at(session.term, bp)[bi].var for bp, bi in _chain(session.term, path, idx, total)]
        swap = next((q for q in range(total - 1) if want.index(names[q]) > want.index(names[q + 1])), None)
        if swap is None:
            break
        bp, bi = _chain(session.term, path, idx, total)[swap]
        session.do("reorder_loops", loop_cursor(session.term, bp, bi))
    # 3. unroll the innermost dims marked unrolled, innermost first
    for d in reversed([d for d in nest.dims if d.unrolled]):
        pos = _position(session.term, path, idx, t.dim_name(nest, d))
        session.do("unroll_loop", loop_cursor(session.term, *pos))


def _cut(session: Session, pos: tuple[Path, int], v: str, trips: int, parts: list[t.Dim]) -> tuple[str, list[t.Dim]]:
    """Divide the ``trips``-trip loop over ``v`` at ``pos`` with a cut tail (named and shifted as a
    `Cut` materializes), its nest covering the trips ``parts`` tile. Returns the nest loop's name
    and the parts still to split it into (perfectly)."""
    covered, k = parts[0].stride * parts[0].extent, parts[0].stride
    if len(parts) > 1 and trips // k * k == covered:  # as the rule made it: one cut divide by k
        names = [t.split_name(v, k), t.split_name(v, 1)]
        session.do("divide_loop", loop_cursor(session.term, *pos), k, names, tail="cut")
        _literal_cut_bounds(session, pos, trips, k)
        return names[1], parts[1:]
    # The header is shared with nests of v that tile ``covered`` trips otherwise, or not at all
    # (e-nodes are hash-consed): cut at ``covered`` — its outer loop runs once, unrolled away —
    # and split what is left perfectly.
    names = [t.split_name(v, covered), t.split_name(v, 1)]
    session.do("divide_loop", loop_cursor(session.term, *pos), covered, names, tail="cut")
    _literal_cut_bounds(session, pos, trips, covered)
    session.do("unroll_loop", loop_cursor(session.term, *pos))
    if len(parts) > 1:
        return names[1], parts
    # one part keeps v's own name: rename by a divide by 1, whose inner loop of one trip is unrolled
    session.do("divide_loop", loop_cursor(session.term, *pos), 1, [v, t.split_name(v, 0)], perfect=True)
    session.do("unroll_loop", loop_cursor(session.term, pos[0] + ((pos[1], 0),), 0))
    return v, parts


def _literal_cut_bounds(session: Session, pos: tuple[Path, int], trips: int, k: int) -> None:
    """Write what Exo's cut divide of a ``trips``-trip loop leaves as expressions as literals, each
    by ``rewrite_expr`` (which Exo checks): ``trips / k``, the nest's bound, and ``trips % k``, the
    tail's (``unroll_loop`` rejects them), and ``trips / k * k``, the tail's offset in its body
    (Exo's C printer folds it in subscripts by true division: ``5 / 2 * 2`` prints as ``5.0``).

    Not ``simplify``: it rewrites the whole proc (``1 * x`` anywhere becomes ``x``), and the
    term, lowered from the original, keeps what the user wrote.
    """
    path, idx = pos
    session.do("rewrite_expr", loop_cursor(session.term, path, idx).then("hi"), trips // k)
    session.do("rewrite_expr", loop_cursor(session.term, path, idx + 1).then("hi"), trips % k)
    offset = f"{trips} / {k} * {k}"
    for _ in range(_matches(session.proc, offset)):
        session.do("rewrite_expr", find(offset), trips // k * k)


def _matches(proc: Procedure, pattern: str) -> int:
    try:
        return len(proc.find(pattern, many=True))
    except SchedulingError:  # Exo's find raises when nothing matches
        return 0


def _position(term: t.Proc, path: Path, idx: int, name: str) -> tuple[Path, int]:
    """Where the loop called ``name`` sits in the perfect chain starting at ``path[idx]``."""
    bp, bi = path, idx
    while True:
        s = block_at(term, bp)[bi]
        if not isinstance(s, t.Loop):
            raise ReplayError("(locate)", f"no loop {name} in the nest at {path}[{idx}]")
        if s.var == name:
            return bp, bi
        bp, bi = bp + ((bi, 0),), 0
