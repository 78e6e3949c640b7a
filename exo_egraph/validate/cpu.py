"""CPU validation: Exo's C, gcc (flags per target: `CFLAGS` portable, `NATIVE_CFLAGS` as users build), ctypes, numpy.

Both procs are compiled into one shared library with a small C timing harness per proc (a loop
of calls between two ``clock_gettime`` readings), so timing excludes Python's call overhead.
`validate_cpu` and `measure_cpu` (for ``tune``) time the two interleaved, round by round (`time_interleaved`).
"""

from __future__ import annotations

import atexit
import ctypes
import functools
import hashlib
import json
import operator
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import exo
import numpy as np
from exo import Procedure
from exo.core.LoopIR import LoopIR
from exo.stdlib.scheduling import rename

from exo_egraph.lower import type_name
from .measurement import Measurement
from .reference_call import c_arg, random_values

# Exo's C spells its types so: R (a real of unspecified precision) is float, f16 is gcc's _Float16
C_TYPES = {
    "f16": "_Float16", "f32": "float", "f64": "double", "R": "float",
    "i8": "int8_t", "ui8": "uint8_t", "i32": "int32_t", "ui16": "uint16_t",
}  # fmt: skip
NP_TYPES = {
    "f16": np.float16, "f32": np.float32, "f64": np.float64, "R": np.float32,
    "i8": np.int8, "ui8": np.uint8, "i32": np.int32, "ui16": np.uint16,
}  # fmt: skip
# -fwrapv: Exo's integers wrap; without it signed overflow is undefined behaviour in C
# the portable build: SSE2 at most, and gcc -O2 vectorises only loops that need no alias check
# (`vectorization`): in Exo's C, those that store into a buffer the proc allocates
CFLAGS = ("-O2", "-fwrapv")
# how users build Exo's C for their own machine: -O3 vectorises (with alias checks) to the host's ISA
NATIVE_CFLAGS = ("-O3", "-march=native", "-fwrapv")


def contracts(cflags: Sequence[str]) -> bool:
    """Whether gcc may fuse ``a * b + c`` into one FMA under ``cflags``: it does where the ISA has
    FMA (``-march=...``, ``-mfma``) unless ``-ffp-contract=off``, and where it fuses depends on
    the loop structure — so two schedules of one float kernel need not agree bit for bit."""
    isa = any(f.startswith("-march=") or f in ("-mfma", "-mavx512f") for f in cflags)
    return isa and "-ffp-contract=off" not in cflags


@dataclass(frozen=True)
class Vectorization:
    """What gcc vectorises under some flags: vector ``simd_bytes`` (0: nothing) and whether it
    vectorises a loop that needs a runtime alias check (``alias_checks``; gcc ≥ 12 does at
    ``-O3``, not at ``-O2``). `CpuCost` takes both: the model assumes what the build does."""

    simd_bytes: int
    alias_checks: bool


# two loops gcc vectorises alike but for aliasing: through restrict pointers it needs no check
_VECTOR_PROBE = """
void checked(float *a, const float *b) { for (int i = 0; i < 64; i++) a[i] += b[i]; }
void unchecked(float *restrict a, const float *restrict b) { for (int i = 0; i < 64; i++) a[i] += b[i]; }
"""


@functools.cache
def vectorization(cflags: tuple[str, ...]) -> Vectorization:
    """Asks gcc itself (``-fopt-info-vec``, on two probe loops) what it vectorises under ``cflags``;
    no vectorisation where gcc cannot be run. Cached: a pure function of the flags and the compiler."""
    try:
        done = subprocess.run(
            ["gcc", *cflags, "-x", "c", "-", "-c", "-o", "/dev/null", "-fopt-info-vec-optimized"],
            input=_VECTOR_PROBE, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return Vectorization(0, False)
    by_line = {int(m[1]): int(m[2]) for m in re.finditer(r":(\d+):\d+: optimized: loop vectorized using (\d+) byte", done.stderr)}
    line_of = {text.split("(")[0].split()[-1]: n for n, text in enumerate(_VECTOR_PROBE.splitlines(), 1) if text}
    return Vectorization(by_line.get(line_of["unchecked"], 0), line_of["checked"] in by_line)


CONTEXT_BYTES = 1 << 16  # a zeroed stand-in for Exo's context struct: configs live in it
INDEX_TYPES = ("size", "index", "int")


class ValidationError(Exception):
    """The procs could not be compiled or run."""


class Unfinished(Exception):
    """The input's call, begun ahead (`ReferenceCall`), was still running when validation's time was up."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"the input's own call (begun with the search) was still running after {seconds:.0f} s")
        self.seconds = seconds


# validation waits for the input's call begun ahead until the deadline, and at least this long
REFERENCE_GRACE_S = 2.0


@dataclass(frozen=True)
class Validation:
    ok: bool  # outputs agree under the required comparison
    exact: bool  # outputs are bit-identical
    max_abs_err: float
    naive_seconds: float  # median seconds per call of the original
    scheduled_seconds: float  # median seconds per call of the scheduled proc
    speedup: float  # naive_seconds / scheduled_seconds
    message: str  # what differed, or 'ok'
    timed_runs: int = 0  # timed runs of each proc (fewer than asked when the deadline was near)
    sizes: tuple[tuple[str, int], ...] = ()  # the size arguments the runs used

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "exact": self.exact,
            "max_abs_err": self.max_abs_err,
            "naive_seconds": self.naive_seconds,
            "scheduled_seconds": self.scheduled_seconds,
            "speedup": self.speedup,
            "message": self.message,
            "timed_runs": self.timed_runs,
            "sizes": dict(self.sizes),
        }

    def summary(self) -> list[tuple[str, str]]:
        runs = f", median of {self.timed_runs} timed runs" if self.timed_runs else ", not timed"
        at = f" at {', '.join(f'{k}={v}' for k, v in self.sizes)}" if self.sizes else ""
        return [("validation", f"{self.ok} (exact {self.exact}){at}"), ("speed-up (measured)", f"{self.speedup:.2f}x{runs}")]


def cannot_validate(proc: Procedure, sizes: Mapping[str, int] | None = None) -> str | None:
    """Why the CPU validator cannot run ``proc`` at ``sizes`` (said before any work), or None when it can."""
    for a in proc.INTERNAL_proc().args:
        t = a.type
        if isinstance(t, LoopIR.Tensor) and t.is_window:
            return f"argument {a.name} is a window (the validator passes dense buffers only)"
        name = type_name(t)
        if name not in C_TYPES and name not in INDEX_TYPES and name != "bool":
            return f"argument {a.name} has type {name}, which the validator cannot pass"
    try:
        validation_sizes(proc, sizes)
    except ValidationError as e:
        return str(e)
    return None


SIZE_TRIES = (16, 32, 64, 8, 128, 256, 12, 24, 48)  # uniform values tried for the sizes not given
SUBTRACTED_SIZE = 3  # tried first for a size a definition subtracts (a window: ``out_h == in_h - kernel_dim + 1``)


def validation_sizes(proc: Procedure, given: Mapping[str, int] | None = None) -> dict[str, int]:
    """The size arguments' values a validation run uses: ``given`` (``--sizes``), the others 16, so
    long as the proc's preconditions on sizes hold there (an input that breaks them reads and
    writes out of bounds: the comparison would be noise). Else the first value of `SIZE_TRIES`
    given to all of them at which they hold. Either way a size that a precondition equates to
    an expression of the others (``assert out_h == in_h - kernel_dim + 1``) takes that value.
    A size such a definition subtracts (``kernel_dim``) is tried at `SUBTRACTED_SIZE` first, so
    that what it defines is not left at one (a 16-wide window over 16 inputs). Preconditions over
    strides are left to the dense buffers the validator passes. Raises `ValidationError` naming
    the precondition no value met."""
    ir = proc.INTERNAL_proc()
    names = [a.name.name() for a in ir.args if type_name(a.type) in INDEX_TYPES]
    given = {k: int(v) for k, v in (given or {}).items() if k in names}
    preds = [p for p in ir.preds if _size_only(p, set(names))]
    defined = [d for d in map(_definition, preds) if d is not None and d[0] not in given]
    subtracted = {n.name() for _, expr in defined for n in _subtracted(expr)} - set(given)
    failed = None
    for value in SIZE_TRIES:
        for small in (SUBTRACTED_SIZE, value) if subtracted else (value,):
            sizes = {n: given.get(n, small if n in subtracted else value) for n in names}
            for _ in defined:  # a definition may use another's result: as many passes as definitions
                for name, expr in defined:
                    sizes[name] = _eval_size(expr, sizes)
            failed = next((p for p in preds if not _holds(p, sizes)), None)
            if failed is None and min(sizes.values(), default=1) > 0 and _shapes_positive(ir, sizes):
                return sizes
        if not names or len(given) == len(names):
            break  # nothing left to vary
    line = getattr(getattr(failed, "srcinfo", None), "lineno", None)
    what = f"precondition `{failed}`" + (f" (line {line})" if line else "") if failed is not None else "array shapes"
    if len(given) == len(names):
        shown = ", ".join(f"{k}={v}" for k, v in given.items())
        raise ValidationError(f"{proc.name()}: the sizes given ({shown}) break its {what}")
    tried = ", ".join(map(str, SIZE_TRIES))
    raise ValidationError(f"{proc.name()}: no sizes tried (each of {tried} for the sizes not given) meet its {what}; "
                          f"give --sizes NAME=N,...")  # fmt: skip


def sizes_reaching(proc: Procedure, given: Mapping[str, int] | None, want: Mapping[str, int]) -> dict[str, int]:
    """``given`` plus sizes chosen so that `validation_sizes` gives each size in ``want`` its wanted
    value, or the first above it that meets the preconditions (``M % 8 == 0``: 104 for 100): the
    size itself when it is free, else a size its definition adds (``out_w`` through ``in_w`` when
    ``out_w == in_w - kernel_dim + 1``), found by trying each. A wanted size that no single size
    reaches keeps its validation value. Raises `ValidationError` as `validation_sizes` does."""
    sizes = dict(given or {})
    for name, wanted in want.items():
        at = validation_sizes(proc, sizes)
        if name in sizes or at.get(name, wanted) >= wanted:
            continue
        sizes = next(
            (trial for value in range(wanted, wanted + REACH) for free in [name, *(n for n in at if n not in sizes and n != name)]
             if _reaches(proc, trial := {**sizes, free: at[free] + value - at[name]}, name, value)),
            sizes,
        )  # fmt: skip
    return sizes


REACH = 64  # how far above a wanted size `sizes_reaching` looks for one that meets the preconditions


def _reaches(proc: Procedure, trial: Mapping[str, int], name: str, value: int) -> bool:
    """Do the sizes ``trial`` meet ``proc``'s preconditions and give ``name`` the value ``value``?"""
    try:
        return min(trial.values(), default=1) > 0 and validation_sizes(proc, trial)[name] == value
    except ValidationError:
        return False


def _size_only(e: Any, names: set[str]) -> bool:
    """Is ``e`` built from size arguments, constants and arithmetic or comparison only?"""
    match e:
        case LoopIR.Const():
            return True
        case LoopIR.Read():
            return not e.idx and e.name.name() in names
        case LoopIR.USub():
            return _size_only(e.arg, names)
        case LoopIR.BinOp():
            return _size_only(e.lhs, names) and _size_only(e.rhs, names)
    return False


def _definition(p: Any) -> tuple[str, Any] | None:
    """``(name, expr)`` when ``p`` is ``name == expr`` (or ``expr == name``) over sizes, ``expr`` free of ``name``."""
    if not (isinstance(p, LoopIR.BinOp) and p.op == "=="):
        return None
    for lone, other in ((p.lhs, p.rhs), (p.rhs, p.lhs)):
        if isinstance(lone, LoopIR.Read) and not lone.idx and lone.name not in _reads(other):
            return lone.name.name(), other
    return None


def _subtracted(e: Any, negative: bool = False) -> set[Any]:
    """The sizes ``e`` reads with a negative sign."""
    match e:
        case LoopIR.Read():
            return {e.name} if negative else set()
        case LoopIR.USub():
            return _subtracted(e.arg, not negative)
        case LoopIR.BinOp() if e.op in ("+", "-"):
            return _subtracted(e.lhs, negative) | _subtracted(e.rhs, negative != (e.op == "-"))
    return set()


def _reads(e: Any) -> set[Any]:
    match e:
        case LoopIR.Read():
            return {e.name}
        case LoopIR.USub():
            return _reads(e.arg)
        case LoopIR.BinOp():
            return _reads(e.lhs) | _reads(e.rhs)
    return set()


def _holds(p: Any, sizes: Mapping[str, int]) -> bool:
    """The truth of the size precondition ``p`` at ``sizes``."""
    if isinstance(p, LoopIR.BinOp) and p.op in ("and", "or"):
        lhs, rhs = _holds(p.lhs, sizes), _holds(p.rhs, sizes)
        return lhs and rhs if p.op == "and" else lhs or rhs
    if isinstance(p, LoopIR.BinOp) and p.op in _COMPARE:
        return _COMPARE[p.op](_eval_size(p.lhs, sizes), _eval_size(p.rhs, sizes))
    return bool(_eval_size(p, sizes))


_COMPARE = {"==": operator.eq, "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


def _shapes_positive(ir: Any, sizes: Mapping[str, int]) -> bool:
    return all(_eval_size(e, sizes) > 0 for a in ir.args if isinstance(a.type, LoopIR.Tensor) for e in a.type.hi)


@dataclass(frozen=True)
class _Param:
    name: str
    typ: str
    shape: tuple[Any, ...]  # LoopIR size expressions; () for scalars and sizes

    @property
    def is_index(self) -> bool:
        return self.typ in INDEX_TYPES

    @property
    def is_flag(self) -> bool:
        return self.typ == "bool"  # passed by value, like sizes

    @property
    def kind(self) -> str:
        """How `reference_call` passes it: "index", "flag" or "array"."""
        return "index" if self.is_index else "flag" if self.is_flag else "array"

    def c_decl(self) -> str:
        if self.is_index:
            return f"int_fast32_t {self.name}"
        if self.is_flag:
            return f"bool {self.name}"
        if self.typ not in C_TYPES:
            raise ValidationError(f"argument {self.name}: type {self.typ} is not supported by the CPU validator")
        return f"{C_TYPES[self.typ]} *{self.name}"


def _params(proc: Procedure) -> list[_Param]:
    out = []
    for a in proc.INTERNAL_proc().args:
        t = a.type
        if isinstance(t, LoopIR.Tensor) and t.is_window:
            raise ValidationError(f"argument {a.name}: window arguments are not supported by the CPU validator")
        shape = tuple(t.hi) if isinstance(t, LoopIR.Tensor) else ()
        out.append(_Param(a.name.name(), type_name(t), shape))
    return out


def _eval_size(e: Any, sizes: Mapping[str, int]) -> int:
    match e:
        case LoopIR.Const():
            return int(e.val)
        case LoopIR.Read():
            return int(sizes[e.name.name()])
        case LoopIR.USub():
            return -_eval_size(e.arg, sizes)
        case LoopIR.BinOp() if e.op in ("+", "-", "*", "/", "%"):
            lhs, rhs = _eval_size(e.lhs, sizes), _eval_size(e.rhs, sizes)
            return {"+": lhs + rhs, "-": lhs - rhs, "*": lhs * rhs, "/": lhs // max(rhs, 1), "%": lhs % max(rhs, 1)}[
                e.op
            ]
    raise ValidationError(f"cannot evaluate size expression {e}")


def _param_values(proc: Procedure, sizes: Mapping[str, int] | None) -> list[dict[str, Any]]:
    """``proc``'s arguments as `reference_call.random_values` takes them (size arguments by
    `validation_sizes`; array shapes evaluated at those sizes)."""
    params = _params(proc)
    index = validation_sizes(proc, sizes)
    out: list[dict[str, Any]] = []
    for p in params:
        if p.is_index:
            out.append({"name": p.name, "kind": p.kind, "value": index[p.name]})
        elif p.is_flag:
            out.append({"name": p.name, "kind": p.kind})
        else:
            shape = [_eval_size(e, index) for e in p.shape] or [1]
            out.append({"name": p.name, "kind": p.kind, "dtype": np.dtype(NP_TYPES[p.typ]).name, "shape": shape})
    return out


def random_inputs(proc: Procedure, sizes: Mapping[str, int] | None = None, seed: int = 0) -> dict[str, Any]:
    """Seeded random values for every argument (size arguments by `validation_sizes`)."""
    return random_values(_param_values(proc, sizes), seed)


# one library per distinct C source, for the life of the process
_LIBS: dict[str, ctypes.CDLL] = {}
_WORKDIR = Path(tempfile.mkdtemp(prefix="exo-egraph-"))
atexit.register(shutil.rmtree, _WORKDIR, True)


def _harness(name: str, params: list[_Param]) -> str:
    decls = ", ".join(p.c_decl() for p in params)
    args = ", ".join(p.name for p in params)
    return (
        f"long long exo_egraph_bench_{name}({decls}{', ' if decls else ''}long long iters) {{\n"
        "  struct timespec exo_t0, exo_t1;\n  clock_gettime(CLOCK_MONOTONIC, &exo_t0);\n"
        f"  for (long long exo_r = 0; exo_r < iters; exo_r++) {name}(exo_egraph_ctxt{', ' if args else ''}{args});\n"
        "  clock_gettime(CLOCK_MONOTONIC, &exo_t1);\n"
        "  return (exo_t1.tv_sec - exo_t0.tv_sec) * 1000000000LL + (exo_t1.tv_nsec - exo_t0.tv_nsec);\n}\n"
    )


def _source(procs: list[Procedure], prelude: str = "") -> tuple[str, str]:
    """The C of ``procs`` with a timing harness each, and the header it includes (``kernels.h``)."""
    c_src, h_src = exo.compile_procs_to_strings(procs, "kernels.h")
    src = "#define _POSIX_C_SOURCE 199309L\n#include <time.h>\n" + prelude + c_src + "\n"
    src += f"static char exo_egraph_ctxt[{CONTEXT_BYTES}] __attribute__((aligned(64)));\n"
    return src + "".join(_harness(p.name(), _params(p)) for p in procs), h_src


def library(
    procs: list[Procedure], *, include_dirs: Sequence[Path] = (), prelude: str = "", cflags: Sequence[str] = CFLAGS
) -> ctypes.CDLL:
    """Compile ``procs`` (plus a timing harness each) with gcc ``cflags`` into one shared library, cached by source.
    ``include_dirs`` go to gcc as ``-I``; ``prelude`` is C placed before Exo's code (it is part of
    the cache key, so callers can fold the contents of their headers into it as a comment)."""
    src, h_src = _source(procs, prelude)
    includes = [f"-I{d}" for d in include_dirs]
    key = hashlib.sha256((src + h_src + "\0".join(includes)).encode()).hexdigest()[:16]
    return compile_shared(key, src, includes, {"kernels.h": h_src}, cflags)


def compile_shared(
    key: str,
    src: str,
    includes: Sequence[str] = (),
    headers: dict[str, str] | None = None,
    cflags: Sequence[str] = CFLAGS,
) -> ctypes.CDLL:
    """``src`` (and ``headers`` beside it) compiled by gcc with ``cflags`` into a shared library,
    once per ``key`` and flags for the life of the process."""
    key = hashlib.sha256("\0".join([key, *cflags]).encode()).hexdigest()[:16]
    if key not in _LIBS:
        folder = _WORKDIR / key
        folder.mkdir(exist_ok=True)
        for name, text in (headers or {}).items():
            (folder / name).write_text(text)
        (folder / "unit.c").write_text(src)
        done = subprocess.run(
            ["gcc", *cflags, *includes, "-shared", "-fPIC"]
            + ["-o", str(folder / "unit.so"), str(folder / "unit.c")],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if done.returncode != 0:
            raise ValidationError(f"gcc failed:\n{done.stderr[-4000:]}")
        _LIBS[key] = ctypes.CDLL(str(folder / "unit.so"))
    return _LIBS[key]


def call_args(proc: Procedure, values: dict[str, Any]) -> list[Any]:
    """ctypes arguments for calling ``proc``'s C function on ``values`` (sizes by value, buffers by pointer)."""
    return [c_arg(p.kind, values[p.name]) for p in _params(proc)]


def context() -> ctypes.Array:
    """A zeroed context for one call: Exo's configs are fields of it (NULL crashes a proc that uses them)."""
    return ctypes.create_string_buffer(CONTEXT_BYTES)


# Buffers begin on a cache line, as TVM's runtime and performance-minded callers allocate them.
# numpy's own large arrays sit 16 bytes past one, and then every 512-bit load of a row splits
# across two lines: 128³ matmul's register tiles run ~15 % slower (83 % -> 72 % of peak).
CACHE_LINE = 64


def aligned_copy(array: np.ndarray, offset: int = 0) -> np.ndarray:
    """A C-ordered copy of ``array`` whose data begin ``offset`` bytes past a `CACHE_LINE` boundary."""
    raw = np.empty(array.nbytes + CACHE_LINE + offset, dtype=np.uint8)
    start = (-raw.ctypes.data) % CACHE_LINE + offset
    out = raw[start : start + array.nbytes].view(array.dtype).reshape(array.shape)
    out[...] = array
    return out


def copy_inputs(values: Mapping[str, Any], offset: int = 0) -> dict[str, Any]:
    """Fresh copies of the array inputs, so one run cannot change another's inputs; each begins
    ``offset`` bytes past a cache line (`aligned_copy`)."""
    return {k: (aligned_copy(v, offset) if isinstance(v, np.ndarray) else v) for k, v in values.items()}


def run_proc(proc: Procedure, inputs: Mapping[str, Any], cflags: Sequence[str] = CFLAGS) -> dict[str, np.ndarray]:
    """Compile and run ``proc`` once on copies of ``inputs``; every buffer argument after the call."""
    return run_many([proc], inputs, cflags)[0]


def run_many(
    procs: list[Procedure], inputs: Mapping[str, Any], cflags: Sequence[str] = CFLAGS
) -> list[dict[str, np.ndarray]]:
    """`run_proc` for several procs with the same arguments, compiled by one gcc call (one each
    when two of them call different procs of one name, as two schedules of a cut kernel both call
    their own ``<kernel>_part0``: one C unit cannot hold both)."""
    renamed = [rename(p, f"{p.name()}_v{i}") for i, p in enumerate(procs)]
    try:
        libs = [library(renamed, cflags=cflags)] * len(renamed)
    except TypeError as e:
        if "multiple procs named" not in str(e):
            raise
        libs = [library([p], cflags=cflags) for p in renamed]
    outs = []
    for proc, lib in zip(renamed, libs):
        values = copy_inputs(inputs)
        getattr(lib, proc.name())(context(), *call_args(proc, values))
        outs.append({k: v for k, v in values.items() if isinstance(v, np.ndarray)})
    return outs


@dataclass(frozen=True)
class Timing:
    """One proc's timed runs from `time_interleaved`."""

    median: float  # seconds per call, median over the runs
    spread: float  # relative: interquartile range / median (0 with fewer than two runs)
    runs: int
    timings: tuple[float, ...]  # seconds per call of each run, in order


RUN_NS = 15e6  # a timed run lasts about 15 ms (calibrated to 10–20 ms)
STABLE_ROUNDS = 3  # the ratios must hold within ``rel_tol`` over this many rounds to stop early


def _calibrate(bench: Any, args: list[Any]) -> int:
    """Iterations of one run so that it lasts about `RUN_NS` (at least one). A single call that
    already lasts that long is 1 (negative: that call was the warm-up, don't repeat it)."""
    iters, elapsed = 1, max(bench(*args, ctypes.c_longlong(1)), 1)
    if elapsed >= RUN_NS:
        return -1
    while elapsed < 1e6 and iters < 10**9:  # grow to a millisecond or more before extrapolating
        iters *= max(2, min(100, int(1e6 / elapsed)))
        elapsed = max(bench(*args, ctypes.c_longlong(iters)), 1)
    return max(1, min(int(iters * RUN_NS / elapsed), 10**9))


def _timing(runs: list[float]) -> Timing:
    median = statistics.median(runs)
    q1, q3 = np.percentile(runs, [25, 75]) if len(runs) > 1 else (median, median)
    return Timing(median, float(q3 - q1) / median if median > 0 else 0.0, len(runs), tuple(runs))


def time_interleaved(
    lib: ctypes.CDLL,
    procs: Sequence[Procedure],
    inputs: Mapping[str, Any],
    *,
    seconds: float,
    min_rounds: int = 5,
    max_rounds: int = 200,
    rel_tol: float = 0.02,
    offset: int = 0,
) -> list[Timing]:
    """Seconds per call of each of ``procs`` (compiled into ``lib`` by `library`), timed in rounds:
    each round runs every proc once (~15 ms a run), in alternating order, so drift and turbo hit all
    alike. After ``min_rounds`` it stops once the median ratio proc0 / proc_i of each round's runs
    has moved less than ``rel_tol`` over the last few rounds, when the next round would not fit in
    ``seconds`` (counted from the call, calibration included), or at ``max_rounds``; there is
    always at least one timed round. Each proc gets its own copy of ``inputs``, ``offset`` bytes
    past a cache line (`copy_inputs`)."""
    start = time.perf_counter()
    benches, arglists, keep = [], [], []
    for proc in procs:
        bench = getattr(lib, f"exo_egraph_bench_{proc.name()}")
        bench.restype = ctypes.c_longlong
        values = copy_inputs(inputs, offset)  # each proc on its own buffers; kept alive while timing
        keep.append(values)
        benches.append(bench)
        arglists.append(call_args(proc, values))
    calibrated = [_calibrate(bench, args) for bench, args in zip(benches, arglists)]
    for bench, args, n in zip(benches, arglists, calibrated):  # warm-up (a long call warmed up already)
        if n > 0:
            bench(*args, ctypes.c_longlong(n))
    iters = [abs(n) for n in calibrated]
    runs: list[list[float]] = [[] for _ in procs]
    history: list[list[float]] = []  # after each round: the median ratio proc0 / proc_i, i >= 1
    for r in range(max(1, max_rounds)):
        began = time.perf_counter()
        order = range(len(procs)) if r % 2 == 0 else reversed(range(len(procs)))
        for i in order:
            runs[i].append(benches[i](*arglists[i], ctypes.c_longlong(iters[i])) * 1e-9 / iters[i])
        rounds = r + 1
        history.append(
            [statistics.median(a / max(b, 1e-30) for a, b in zip(runs[0], runs[i])) for i in range(1, len(procs))]
        )
        now = time.perf_counter()
        if now - start + (now - began) > seconds:
            break
        if rounds >= min_rounds and len(history) > STABLE_ROUNDS:
            window = history[-STABLE_ROUNDS - 1 :]
            if all(
                max(w[i] for w in window) - min(w[i] for w in window) < rel_tol * abs(window[-1][i])
                for i in range(len(procs) - 1)
            ):
                break
    return [_timing(t) for t in runs]


@dataclass
class ReferenceCall:
    """The input's one compared call, begun ahead in a child process (`begin_reference`) so that
    validation waits only for what is left of it. A handle to a running process: `close` it."""

    original: Procedure
    sizes: tuple[tuple[str, int], ...]
    seed: int
    cflags: tuple[str, ...]
    folder: Path
    process: subprocess.Popen
    began: float = field(default_factory=time.monotonic)

    def serves(self, original: Procedure, sizes: Mapping[str, int] | None, seed: int, cflags: Sequence[str]) -> bool:
        """Whether this is the call validation of ``original`` with these arguments would make."""
        return (self.original is original and self.sizes == _size_items(sizes)
                and self.seed == seed and self.cflags == tuple(cflags))  # fmt: skip

    def result(self, timeout: float | None = None) -> tuple[dict[str, np.ndarray], float] | None:
        """Wait for the call (at most ``timeout`` seconds, else `Unfinished`): every array after it
        and its seconds; None when the child failed (then the caller makes the call itself, and sees why)."""
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise Unfinished(time.monotonic() - self.began) from None
        if code != 0 or not (self.folder / "seconds").exists():
            return None
        with np.load(self.folder / "outputs.npz") as arrays:
            outputs = {k: arrays[k] for k in arrays.files}
        return outputs, float((self.folder / "seconds").read_text())

    def close(self) -> None:
        """Stop the child if it still runs, and remove its files."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


def begin_reference(
    original: Procedure, sizes: Mapping[str, int] | None = None, seed: int = 0, cflags: Sequence[str] = CFLAGS
) -> ReferenceCall:
    """Start ``original``'s one compared call (as `validate_cpu` would make it) in a child process,
    which compiles it with gcc ``cflags`` and runs it on ``random_inputs(original, sizes, seed)``."""
    naive = rename(original, f"{original.name()}_naive")
    folder = Path(tempfile.mkdtemp(prefix="reference-", dir=_WORKDIR))
    src, h_src = _source([naive])
    (folder / "unit.c").write_text(src)
    (folder / "kernels.h").write_text(h_src)
    job = {"cflags": list(cflags), "function": naive.name(), "seed": seed, "context_bytes": CONTEXT_BYTES,
           "params": _param_values(original, sizes)}  # fmt: skip
    (folder / "job.json").write_text(json.dumps(job))
    process = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("reference_call.py")), str(folder)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # a Ctrl-C at the terminal is the parent's to handle: it stops the child
    )
    return ReferenceCall(original, _size_items(sizes), seed, tuple(cflags), folder, process)


def _size_items(sizes: Mapping[str, int] | None) -> tuple[tuple[str, int], ...]:
    """``sizes`` as the sorted pairs a `ReferenceCall` is keyed by."""
    return tuple(sorted((sizes or {}).items()))


@dataclass(frozen=True)
class _Compared:
    lib: ctypes.CDLL
    naive: Procedure  # the original, renamed into the shared library
    scheduled: Procedure
    inputs: dict[str, Any]
    ok: bool
    exact: bool
    max_abs_err: float
    message: str
    seconds: tuple[float, float] = (0.0, 0.0)  # the one compared call of each, cold
    ran_ahead: bool = False  # the input's call was a `ReferenceCall`'s, made during the search


def _compare(
    original: Procedure,
    scheduled: Procedure,
    require_exact: bool,
    sizes: Mapping[str, int] | None,
    seed: int,
    cflags: Sequence[str],
    ahead: ReferenceCall | None = None,
    wait: float | None = None,
) -> _Compared:
    """Compile both procs into one library, run each once on the same random inputs and compare:
    integers must match bit for bit, floats too unless ``require_exact`` is False (then within
    rtol 1e-4). The input's call is ``ahead``'s when that serves (begun earlier, in a child;
    waited for ``wait`` seconds at most, else `Unfinished`, and the schedule is not run either)."""
    serves = ahead is not None and ahead.serves(original, sizes, seed, cflags)
    # out of time already: the input's call is waited for first (a grace at most), so that a
    # kernel it cannot judge costs neither a compile nor its inputs
    theirs = ahead.result(wait) if serves and wait is not None and wait <= REFERENCE_GRACE_S else None
    a = rename(original, f"{original.name()}_naive")
    b = rename(scheduled, f"{scheduled.name()}_scheduled")
    lib = library([a, b], cflags=cflags)
    inputs = random_inputs(original, sizes, seed)

    def call(proc: Procedure) -> tuple[dict[str, Any], float]:
        values = copy_inputs(inputs)
        began = time.perf_counter()
        getattr(lib, proc.name())(context(), *call_args(proc, values))
        return values, time.perf_counter() - began

    theirs = theirs or (ahead.result(wait) if serves else None)
    (outs, took) = zip(theirs or call(a), call(b))
    exact, ok, worst, message = True, True, 0.0, "ok"
    for name, want in outs[0].items():
        if not isinstance(want, np.ndarray):
            continue
        got = outs[1][name]
        same = got.tobytes() == want.tobytes()  # bit for bit (NaN payloads included)
        err = float(np.max(np.abs(got.astype(np.float64) - want.astype(np.float64)))) if want.size else 0.0
        worst = max(worst, err)
        if same:
            continue
        exact = False
        close = np.issubdtype(want.dtype, np.floating) and floats_agree(got, want)
        if require_exact or not close:
            ok = False
            message = f"output {name} differs (max abs error {err:g})"
    if ok and not exact:
        message = f"ok within tolerance (float rounding differs: reassociation or FMA; max abs error {worst:g})"
    return _Compared(lib, a, b, inputs, ok, exact, worst, message, (took[0], took[1]), theirs is not None)


def floats_agree(got: np.ndarray, want: np.ndarray, rtol: float = 1e-4) -> bool:
    """Do ``got`` and ``want`` agree as two roundings of the same sums? Each element within ``rtol``
    of itself, or of the array's largest magnitude: a reduction's rounding error scales with its
    terms, not its result, so an output that cancels to near zero carries its terms' error (a
    1,152-term convolution whose loop gcc fuses into FMAs differently differed by 2e-5 on
    outputs near 0). A wrong schedule misses or repeats whole terms, far above either bound."""
    finite = np.abs(want[np.isfinite(want)])
    scale = float(finite.max()) if finite.size else 0.0
    return bool(np.allclose(got, want, rtol=rtol, atol=max(1e-5, rtol * scale), equal_nan=True))


def validate_cpu(
    original: Procedure,
    scheduled: Procedure,
    *,
    require_exact: bool = True,
    sizes: Mapping[str, int] | None = None,
    repeats: int = 7,
    seed: int = 0,
    time_runs: bool = True,
    seconds: float = float("inf"),
    cflags: Sequence[str] = CFLAGS,
    ahead: ReferenceCall | None = None,
) -> Validation:
    """Run both procs on the same random inputs; integers must match bit for bit, floats too
    unless ``require_exact`` is False (then within rtol 1e-4); time both, interleaved
    (`time_interleaved`: at least ``repeats`` rounds when ``seconds`` holds them, at least one
    always). The speed-up is the median of the rounds' ratios, which cancels the machine's drift
    (what decides whether explore hands the schedule back). Both are built with gcc ``cflags``;
    ``ahead`` (`begin_reference`) has made the input's compared call already, or is making it:
    validation waits for it until ``seconds`` are up (at least `REFERENCE_GRACE_S`), else raises
    `Unfinished` and judges nothing (a 4096³ naive nest runs for an hour)."""
    began = time.perf_counter()
    c = _compare(original, scheduled, require_exact, sizes, seed, cflags, ahead, max(seconds, REFERENCE_GRACE_S))
    seconds -= time.perf_counter() - began
    naive = sched = 0.0
    runs = 0
    speedup = 1.0
    message = c.message + ("; the input's compared call ran ahead, during the search" if c.ran_ahead else "")
    if time_runs and seconds < 2 * sum(c.seconds):
        # a timed round costs about a compared call of each, and calibrating another: no time for
        # one, so the comparison's own calls are the one timing (cold, single: said in the message)
        naive, sched, runs = c.seconds[0], c.seconds[1], 1
        speedup = naive / max(sched, 1e-30)
        message += f"; timed once, by the comparison's own calls ({naive:.2f} s and {sched:.2f} s): the budget had {max(seconds, 0):.1f} s left"
    elif time_runs:
        base, ours = time_interleaved(
            c.lib, [c.naive, c.scheduled], c.inputs, seconds=seconds, min_rounds=repeats, max_rounds=max(4 * repeats, 20)
        )
        ratio = statistics.median(a / max(b, 1e-30) for a, b in zip(base.timings, ours.timings))
        naive, runs = base.median, ours.runs
        sched, speedup = naive / ratio, ratio
    used = tuple((p.name, c.inputs[p.name]) for p in _params(original) if p.is_index)
    return Validation(c.ok, c.exact, c.max_abs_err, naive, sched, speedup, message, runs, used)


def measure_cpu(
    original: Procedure,
    scheduled: Procedure,
    *,
    require_exact: bool = True,
    sizes: Mapping[str, int] | None = None,
    seconds: float = 10.0,
    seed: int = 0,
    cflags: Sequence[str] = CFLAGS,
) -> Measurement:
    """`validate_cpu`'s comparison, then both procs timed together by `time_interleaved` within
    ``seconds``: ``median`` is the input's median time times the median of the round-by-round
    ratios, ``spread`` the ratios' relative spread. Outputs that differ give ``ok=False`` (not
    timed: ``naive`` and ``median`` are 0). Both are built with gcc ``cflags``."""
    c = _compare(original, scheduled, require_exact, sizes, seed, cflags)
    if not c.ok:
        return Measurement(ok=False, exact=c.exact, unit="seconds", naive=0.0, median=0.0, message=c.message)
    naive, sched = time_interleaved(c.lib, [c.naive, c.scheduled], c.inputs, seconds=seconds)
    # judged round by round: the two runs of a round share the machine's state, so their ratio
    # cancels the drift (other processes, frequency) that the runs' own spread includes
    ratio = _timing([b / a for a, b in zip(naive.timings, sched.timings)])
    used = tuple(validation_sizes(original, sizes).items())
    return Measurement(
        ok=True, exact=c.exact, unit="seconds", naive=naive.median, median=naive.median * ratio.median,
        spread=ratio.spread, naive_spread=naive.spread, runs=sched.runs, message=c.message, timings=sched.timings,
        sizes=used,
    )  # fmt: skip
