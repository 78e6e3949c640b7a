"""Hypothesis strategies for random Exo kernels, for property-testing rewrite soundness.

``kernels()`` draws a `KernelSpec`: loop nests of depth 1–4 (constant trips of 1–11 — 1-trip
loops, odd trips and sizes that no small factor divides among them — or a symbolic size ``n``
bounded by an assertion), affine indices (a loop variable plus a small offset, or the sum of
two), ``=`` and ``+=`` statements over i8/i32/f32 buffers, ``if`` with affine conditions, an
intermediate buffer allocated in the proc or in a loop, and sequential producer/consumer nests.
Buffers are sized from the largest index that reaches them, so every kernel passes Exo's bounds
checks, compiles and runs. Hypothesis shrinks a failing kernel to a small one; its ``source`` is
what a person reads.

``kernels(for_rule=NAME)`` draws kernels shaped so that the loop rule ``NAME`` applies to most of
them (`RULE_SHAPES`): perfectly nested independent loops for ``reorder_loops``, adjacent loops
with one header for ``fuse``, several independent statements for ``fission``, an allocation
opening a loop body for ``lift_alloc``, small trips for ``unroll_loop``, trips with divisors
(or with none, for cut tails) for ``divide_loop``.

Usage::

    from exo_egraph.testing import kernels
    @given(kernels())
    def test_my_rule(spec): proc = spec.proc(); ...
"""

from __future__ import annotations

import importlib.util
import sys
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

from hypothesis import strategies as st

from exo import Procedure

PRECISIONS = ("i8", "i32", "f32")
LOOP_VARS = ("i", "j", "k", "l")
SIZE_BOUND = 6  # the symbolic size n satisfies 1 <= n <= SIZE_BOUND
MAX_TRIP = 11  # constant trips run 1..MAX_TRIP


@dataclass(frozen=True)
class KernelSpec:
    """A generated kernel: its Exo source and the sizes to run it with."""

    name: str
    source: str
    sizes: dict[str, int] = field(default_factory=dict, compare=False)

    def proc(self) -> Procedure:
        return _load(self.source, self.name)

    def __repr__(self) -> str:  # hypothesis prints this for a failing example
        return f"KernelSpec({self.name!r}):\n{self.source}"


@dataclass(frozen=True)
class Shape:
    """What `kernels` draws. The defaults are the general mix; `RULE_SHAPES` narrows it per rule."""

    nests: tuple[int, int] = (1, 3)  # top-level nests, at least and at most
    depth: tuple[int, int] = (1, 4)  # loops per nest
    statements: tuple[int, int] = (1, 2)  # statements in a nest's innermost body
    trips: tuple[int, ...] = tuple(range(1, MAX_TRIP + 1))  # constant trips (shrinking tends to the first)
    same_loops: bool = False  # every nest runs the first nest's loops: adjacent headers that match
    independent: bool = False  # statements write a fresh output at the loop variables themselves
    local_alloc: float = 1 / 6  # chance that a nest allocates a buffer at the top of its outer loop's body
    deep_alloc: bool = False  # ... or of any of its loops' bodies (lift_alloc lifts it loop by loop)
    conditionals: bool = True  # statements may sit under an ``if``
    symbolic: bool = True  # loops may run to a symbolic size


# Cut tails (`LoopRuleConfig.cut_factors`) need a size no factor divides: 5, 7 and 11 (and 8, 10 for 3).
CUT_TRIPS = (5, 7, 11, 8, 10)
DIVISIBLE_TRIPS = (4, 6, 8, 9, 12)
RULE_SHAPES: dict[str, Shape] = {
    # one perfect nest whose iterations touch distinct locations: every order is legal
    "reorder_loops": Shape(nests=(1, 1), depth=(2, 3), independent=True, local_alloc=0.0, symbolic=False),
    "divide_loop": Shape(nests=(1, 2), depth=(1, 2), trips=DIVISIBLE_TRIPS + CUT_TRIPS + (1,), local_alloc=0.0, symbolic=False),
    "divide_loop(cut)": Shape(nests=(1, 2), depth=(1, 2), trips=CUT_TRIPS + (1,), local_alloc=0.0, symbolic=False),
    # small trips, straight-line bodies: unrolled copies stay under `LoopRuleConfig.unroll_copies`
    "unroll_loop": Shape(nests=(1, 2), depth=(1, 2), trips=(2, 1, 3, 4), local_alloc=0.0, conditionals=False, symbolic=False),
    "fission": Shape(nests=(1, 1), depth=(1, 2), statements=(2, 3), independent=True, local_alloc=0.0),
    "fuse": Shape(nests=(2, 3), depth=(1, 2), statements=(1, 1), same_loops=True, independent=True, local_alloc=0.0),
    "lift_alloc": Shape(nests=(1, 2), depth=(1, 3), local_alloc=1.0, deep_alloc=True),
}


def shape_for(rule: str | None) -> Shape:
    """The shape of kernels drawn for ``rule``: its `RULE_SHAPES` entry, else the general mix."""
    return RULE_SHAPES.get(rule or "", Shape())


_CACHE: dict[str, Procedure] = {}
_DIR = Path(tempfile.mkdtemp(prefix="exo-egraph-kernels-"))


def _load(source: str, name: str) -> Procedure:
    # Exo's @proc reads the source of the function, so the kernel must live in a real file.
    key = f"{name}_{abs(hash(source))}"
    if key not in _CACHE:
        path = _DIR / f"{key}.py"
        path.write_text(source)
        spec = importlib.util.spec_from_file_location(key, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module
        spec.loader.exec_module(module)
        _CACHE[key] = getattr(module, name)
    return _CACHE[key]


@dataclass
class _Buffer:
    name: str
    rank: int
    extents: list[int]  # largest index + 1 seen so far, per dimension
    allocated: bool = False


Loops = list[tuple[str, int]]  # (variable, largest trip) from the outermost loop in


class _Builder:
    """Draws statements while tracking buffer shapes, so indices stay in bounds.

    Each choice is drawn so that its simplest value (the one hypothesis shrinks to) is the plain
    one: no ``if``, no read of the destination, constant trips, the kernel's trip.
    """

    def __init__(self, draw, prec: str, symbolic: bool, shape: Shape) -> None:
        self.draw, self.prec, self.symbolic, self.shape = draw, prec, symbolic, shape
        self.buffers: dict[str, _Buffer] = {}
        self.outputs: list[_Buffer] = []
        self.local_allocs: list[_Buffer] = []
        self.trips = {v: draw(st.sampled_from(shape.trips)) for v in LOOP_VARS}
        # outputs written at exactly their loop variables with `=`: (buffer, index variables)
        self.exact: list[tuple[_Buffer, list[str]]] = []

    def buffer(self, prefix: str, rank: int, allocated: bool = False) -> _Buffer:
        name = f"{prefix}{sum(1 for b in self.buffers if b.startswith(prefix))}"
        self.buffers[name] = _Buffer(name, rank, [1] * rank, allocated)
        return self.buffers[name]

    def output(self, rank: int) -> _Buffer:
        out = self.buffer("o", rank)
        self.outputs.append(out)
        return out

    def index(self, buf: _Buffer, loops: Loops) -> str:
        parts = []
        for d in range(buf.rank):
            var, trip = loops[self.draw(st.integers(0, len(loops) - 1))]
            offset = self.draw(st.integers(0, 2))
            top = trip - 1 + offset
            text = var if offset == 0 else f"{var} + {offset}"
            if len(loops) > 1 and self.draw(st.booleans()):
                var2, trip2 = loops[self.draw(st.integers(0, len(loops) - 1))]
                if var2 != var:
                    text, top = f"{text} + {var2}", top + trip2 - 1
            buf.extents[d] = max(buf.extents[d], top + 1)
            parts.append(text)
        return "[" + ", ".join(parts) + "]" if parts else ""

    def const(self) -> str:
        value = self.draw(st.integers(1, 3))
        return f"{value}.0" if self.prec == "f32" else str(value)

    def rhs(self, loops: Loops, readable: list[_Buffer]) -> str:
        terms = []
        for _ in range(self.draw(st.integers(1, 3))):
            if readable and self.draw(st.integers(0, 4)) < 4:
                buf = readable[self.draw(st.integers(0, len(readable) - 1))]
                terms.append(f"{buf.name}{self.index(buf, loops)}")
            else:
                terms.append(self.const())
        ops = [self.draw(st.sampled_from(["+", "*"])) for _ in terms[1:]]
        text = terms[0]
        for op, term in zip(ops, terms[1:]):
            text = f"({text} {op} {term})"
        return text

    def guarded(self, line: str, loops: Loops, pad: str) -> list[str]:
        """``line``, sometimes under an ``if`` on a loop variable."""
        if self.shape.conditionals and loops and self.draw(st.integers(0, 5)) == 5:
            var, trip = loops[self.draw(st.integers(0, len(loops) - 1))]
            bound = self.draw(st.integers(1, max(1, trip)))
            return [f"{pad}if {var} < {bound}:", "    " + line]
        return [line]

    def statement(self, loops: Loops, readable, writable, depth) -> list[str]:
        pad = "    " * depth
        dst = writable[self.draw(st.integers(0, len(writable) - 1))]
        op = self.draw(st.sampled_from(["=", "+="]))
        # sometimes read the destination itself (a possible loop-carried dependence)
        sources = readable + ([dst] if self.draw(st.integers(0, 3)) == 3 else [])
        return self.guarded(f"{pad}{dst.name}{self.index(dst, loops)} {op} {self.rhs(loops, sources)}", loops, pad)

    def independent(self, loops: Loops, readable: list[_Buffer], depth: int) -> list[str]:
        """A statement whose instances at different iterations touch different locations: it writes
        a fresh output indexed by the loop variables themselves (summing over the loops its rank
        leaves out), and reads inputs anywhere or values written at the same iteration."""
        pad = "    " * depth
        trip = dict(loops)
        chosen = self.draw(st.permutations([v for v, _ in loops]))[: min(len(loops), 2)]
        dst = self.output(len(chosen))
        dst.extents = [trip[v] for v in chosen]
        rhs = self.rhs(loops, readable)
        same = [(b, idx) for b, idx in self.exact if set(idx) <= set(trip)]
        if same and self.draw(st.booleans()):  # a value this iteration wrote (a producer)
            b, idx = same[self.draw(st.integers(0, len(same) - 1))]
            # sometimes the value the next iteration writes: fusing or splitting the loop would
            # then read it after that write, not before (the guards must refuse)
            ahead = self.draw(st.integers(0, 3)) == 3
            read = [f"{idx[0]} + 1" if ahead else idx[0], *idx[1:]]
            b.extents = [max(e, trip[v] + (ahead and d == 0)) for d, (e, v) in enumerate(zip(b.extents, idx))]
            rhs = f"({rhs} + {b.name}[{', '.join(read)}])"
        op = "=" if len(chosen) == len(loops) else "+="
        if op == "=":
            self.exact.append((dst, chosen))
        return self.guarded(f"{pad}{dst.name}[{', '.join(chosen)}] {op} {rhs}", loops, pad)

    def skewed(self, loops: Loops, readable: list[_Buffer], depth: int) -> list[str]:
        """A statement whose dependence runs forward along one loop and backward along another
        (it writes ``o[i + 1, j]`` and reads ``o[i, j + 1]``): swapping the two loops is illegal."""
        (outer, trip_o), (inner, trip_i) = loops[0], loops[1]
        dst = self.output(2)
        dst.extents = [trip_o + 1, trip_i + 1]
        rhs = self.rhs(loops, readable)
        return [f"{'    ' * depth}{dst.name}[{outer} + 1, {inner}] = ({dst.name}[{outer}, {inner} + 1] + {rhs})"]

    def header(self) -> list[tuple[str, int, bool]]:
        """A nest's loops: (variable, trip, symbolic) from the outermost in."""
        low, high = self.shape.depth
        depth = self.draw(st.integers(low, min(high, len(LOOP_VARS))))
        out = []
        for var in LOOP_VARS[:depth]:
            symbolic = self.symbolic and self.draw(st.integers(0, 3)) == 3
            # mostly the kernel's trip for this variable, so nests line up (fusion candidates)
            same = self.draw(st.integers(0, 3)) < 3
            trip = SIZE_BOUND if symbolic else self.trips[var] if same else self.draw(st.sampled_from(self.shape.trips))
            out.append((var, trip, symbolic))
        return out

    def nest(self, header, readable: list[_Buffer], writable: list[_Buffer]) -> list[str]:
        lines = [
            "    " * (level + 1) + f"for {var} in seq(0, {'n' if symbolic else trip}):"
            for level, (var, trip, symbolic) in enumerate(header)
        ]
        loops = [(var, trip) for var, trip, _ in header]
        inner_depth = len(loops) + 1
        local: list[_Buffer] = []
        # a buffer private to one loop (drawn so that shrinking removes it)
        if self.draw(st.integers(1, 100)) > round(100 * (1 - self.shape.local_alloc)):
            local.append(self.buffer("t", 1, allocated=True))
        body: list[str] = []
        low, high = self.shape.statements
        for _ in range(self.draw(st.integers(low, high))):
            # targeted shapes mostly draw independent statements, and sometimes one that may
            # carry a dependence (so the guards are also tested where they must refuse)
            if self.shape.independent and self.draw(st.integers(0, 4)) < 4:  # the simplest draw: independent
                body += self.independent(loops, readable, inner_depth)
            elif self.shape.independent and len(loops) > 1 and self.draw(st.booleans()):
                body += self.skewed(loops, readable, inner_depth)
            else:
                body += self.statement(loops, readable, (writable or [self.output(len(loops[:2]))]) + local, inner_depth)
        if local:
            # allocate at the top of a loop's body, zero it (no read of uninitialised memory), then
            # the loops inside; its extent is filled in once every index is known
            level = self.draw(st.integers(0, len(header) - 1)) if self.shape.deep_alloc else 0
            tmp, zero, pad = local[0], "0.0" if self.prec == "f32" else "0", "    " * (level + 2)
            lines[level + 1 : level + 1] = [
                pad + f"{tmp.name}: {self.prec}[{{{tmp.name}}}] @ DRAM",
                pad + f"for z in seq(0, {{{tmp.name}}}):",
                pad + f"    {tmp.name}[z] = {zero}",
            ]
            self.local_allocs.append(tmp)
        return lines + body


@st.composite
def kernels(
    draw, max_nests: int = 3, max_depth: int = 4, symbolic: bool = True, for_rule: str | None = None
) -> KernelSpec:
    """A random valid Exo kernel (see the module docstring); ``for_rule`` shapes it for that loop
    rule (`RULE_SHAPES`; other names draw the general mix)."""
    shape = shape_for(for_rule)
    shape = replace(
        shape,
        nests=(min(shape.nests[0], max_nests), min(shape.nests[1], max_nests)),
        depth=(min(shape.depth[0], max_depth), min(shape.depth[1], max_depth)),
        symbolic=shape.symbolic and symbolic,
    )
    prec = draw(st.sampled_from(PRECISIONS))
    use_size = shape.symbolic and draw(st.booleans())
    b = _Builder(draw, prec, use_size, shape)
    inputs = [b.buffer("a", draw(st.integers(1, 2))) for _ in range(draw(st.integers(1, 2)))]
    if not shape.independent:
        b.output(draw(st.integers(1, 2)))
    body: list[str] = []
    readable, writable = list(inputs), list(b.outputs)
    n_nests = draw(st.integers(*shape.nests))
    producer = n_nests > 1 and not shape.independent
    intermediate = b.buffer("tmp", draw(st.integers(1, 2)), allocated=True) if producer else None
    first = None
    for nest_index in range(n_nests):
        header = first if shape.same_loops and first is not None else b.header()
        first = first or header
        targets = [intermediate] if intermediate is not None and nest_index == 0 else writable  # the producer
        body += b.nest(header, readable, targets)
        if intermediate is not None and nest_index == 0:
            readable = readable + [intermediate]  # consumers read what the producer wrote
    name = "kernel"
    args = [f"{x.name}: {prec}[{', '.join(map(str, x.extents))}] @ DRAM" for x in inputs + b.outputs]
    if use_size:
        args.append("n: size")
    lines = ["from __future__ import annotations", "from exo import proc, DRAM", "", "", "@proc"]
    lines.append(f"def {name}({', '.join(args)}):")
    if use_size:
        lines += ["    assert n >= 1", f"    assert n <= {SIZE_BOUND}"]
    if intermediate is not None:
        lines.append(f"    {intermediate.name}: {prec}[{', '.join(map(str, intermediate.extents))}] @ DRAM")
        # the producer writes every element the consumers may read: initialise it first
        lines += _zero_fill(intermediate, prec)
    for tmp in b.local_allocs:
        body = [line.replace(f"{{{tmp.name}}}", str(tmp.extents[0])) for line in body]
    lines += body
    return KernelSpec(name, "\n".join(lines) + "\n", {"n": SIZE_BOUND} if use_size else {})


def _zero_fill(buf: _Buffer, prec: str) -> list[str]:
    zero = "0.0" if prec == "f32" else "0"
    out, idx = [], []
    for d, extent in enumerate(buf.extents):
        var = f"z{d}"
        out.append("    " * (d + 1) + f"for {var} in seq(0, {extent}):")
        idx.append(var)
    out.append("    " * (len(buf.extents) + 1) + f"{buf.name}[{', '.join(idx)}] = {zero}")
    return out
