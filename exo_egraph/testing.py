"""Hypothesis strategies for random Exo kernels, for property-testing rewrite soundness.

``kernels()`` draws a `KernelSpec`: loop nests of depth 1–4 (constant trips, or a symbolic
size ``n`` bounded by an assertion), affine indices (a loop variable plus a small offset, or
the sum of two), ``=`` and ``+=`` statements over i8/i32/f32 buffers, ``if`` with affine
conditions, an intermediate buffer allocated in the proc or in a loop, and sequential
producer/consumer nests. Buffers are sized from the largest index that reaches them, so every
kernel passes Exo's bounds checks, compiles and runs. Hypothesis shrinks a failing kernel to
a small one; its ``source`` is what a person reads.

Usage::

    from exo_egraph.testing import kernels
    @given(kernels())
    def test_my_rule(spec): proc = spec.proc(); ...
"""

from __future__ import annotations

import importlib.util
import sys
import tempfile
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from hypothesis import strategies as st

from exo import Procedure

PRECISIONS = ("i8", "i32", "f32")
LOOP_VARS = ("i", "j", "k", "l")
SIZE_BOUND = 6  # the symbolic size n satisfies 1 <= n <= SIZE_BOUND


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


class _Builder:
    """Draws statements while tracking buffer shapes, so indices stay in bounds."""

    def __init__(self, draw, prec: str, symbolic: bool) -> None:
        self.draw, self.prec, self.symbolic = draw, prec, symbolic
        self.buffers: dict[str, _Buffer] = {}
        self.lines: list[str] = []
        self.count = 0

    def buffer(self, prefix: str, rank: int, allocated: bool = False) -> _Buffer:
        name = f"{prefix}{sum(1 for b in self.buffers if b.startswith(prefix))}"
        self.buffers[name] = _Buffer(name, rank, [1] * rank, allocated)
        return self.buffers[name]

    def index(self, buf: _Buffer, loops: list[tuple[str, int]]) -> str:
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

    def rhs(self, loops: list[tuple[str, int]], readable: list[_Buffer]) -> str:
        terms = []
        for _ in range(self.draw(st.integers(1, 3))):
            if readable and self.draw(st.integers(0, 4)) > 0:
                buf = readable[self.draw(st.integers(0, len(readable) - 1))]
                terms.append(f"{buf.name}{self.index(buf, loops)}")
            else:
                terms.append(self.const())
        ops = [self.draw(st.sampled_from(["+", "*"])) for _ in terms[1:]]
        text = terms[0]
        for op, term in zip(ops, terms[1:]):
            text = f"({text} {op} {term})"
        return text

    def statement(self, loops, readable, writable, depth) -> list[str]:
        pad = "    " * depth
        dst = writable[self.draw(st.integers(0, len(writable) - 1))]
        op = self.draw(st.sampled_from(["=", "+="]))
        # sometimes read the destination itself (a possible loop-carried dependence)
        sources = readable + ([dst] if self.draw(st.integers(0, 3)) == 0 else [])
        line = f"{pad}{dst.name}{self.index(dst, loops)} {op} {self.rhs(loops, sources)}"
        if loops and self.draw(st.integers(0, 5)) == 0:
            var, trip = loops[self.draw(st.integers(0, len(loops) - 1))]
            bound = self.draw(st.integers(1, max(1, trip)))
            return [f"{pad}if {var} < {bound}:", "    " + line]
        return [line]

    def nest(self, readable, writable, depth_limit: int, used: set[str]) -> list[str]:
        depth = self.draw(st.integers(1, depth_limit))
        free = [v for v in LOOP_VARS if v not in used][:depth]
        loops, lines = [], []
        for level, var in enumerate(free):
            symbolic = self.symbolic and self.draw(st.integers(0, 3)) == 0
            # mostly the kernel's trip for this variable, so nests line up (fusion candidates)
            same = self.draw(st.integers(0, 3)) > 0
            trip = SIZE_BOUND if symbolic else self.trips[var] if same else self.draw(st.integers(2, 8))
            hi = "n" if symbolic else str(trip)
            lines.append("    " * (level + 1) + f"for {var} in seq(0, {hi}):")
            loops.append((var, trip))
        inner_depth = len(loops) + 1
        local: list[_Buffer] = []
        if len(loops) > 0 and self.draw(st.integers(0, 5)) == 0:  # a buffer private to the outer loop
            tmp = self.buffer("t", 1, allocated=True)
            local.append(tmp)
        body: list[str] = []
        for _ in range(self.draw(st.integers(1, 2))):
            body += self.statement(loops, readable, writable + local, inner_depth)
        if local:
            # allocate in the outermost loop's body, zero it (no read of uninitialised memory),
            # then the inner loops; its extent is filled in once every index is known
            tmp, zero = local[0], "0.0" if self.prec == "f32" else "0"
            lines[1:1] = [
                "    " * 2 + f"{tmp.name}: {self.prec}[{{{tmp.name}}}] @ DRAM",
                "    " * 2 + f"for z in seq(0, {{{tmp.name}}}):",
                "    " * 3 + f"{tmp.name}[z] = {zero}",
            ]
            self.local_allocs.append(tmp)
        return lines + body


@st.composite
def kernels(draw, max_nests: int = 3, max_depth: int = 4, symbolic: bool = True) -> KernelSpec:
    """A random valid Exo kernel (see the module docstring)."""
    prec = draw(st.sampled_from(PRECISIONS))
    use_size = symbolic and draw(st.booleans())
    b = _Builder(draw, prec, use_size)
    b.local_allocs = []
    b.trips = {v: draw(st.integers(2, 8)) for v in LOOP_VARS}
    inputs = [b.buffer("a", draw(st.integers(1, 2))) for _ in range(draw(st.integers(1, 2)))]
    outputs = [b.buffer("o", draw(st.integers(1, 2)))]
    body: list[str] = []
    readable, writable = list(inputs), list(outputs)
    n_nests = draw(st.integers(1, max_nests))
    intermediate = b.buffer("tmp", draw(st.integers(1, 2)), allocated=True) if n_nests > 1 else None
    for nest_index in range(n_nests):
        if intermediate is not None and nest_index == 0:
            targets = [intermediate]  # the producer
        else:
            targets = writable
        body += b.nest(readable, targets, max_depth, set())
        if intermediate is not None and nest_index == 0:
            readable = readable + [intermediate]  # consumers read what the producer wrote
    name = "kernel"
    args = [f"{x.name}: {prec}[{', '.join(map(str, x.extents))}] @ DRAM" for x in inputs + outputs]
    if use_size:
        args.append("n: size")
    lines = ["from __future__ import annotations", "from exo import proc, DRAM", "", "", "@proc"]
    lines.append(f"def {name}({', '.join(args)}):")
    if use_size:
        lines += [f"    assert n >= 1", f"    assert n <= {SIZE_BOUND}"]
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
