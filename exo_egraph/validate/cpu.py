"""CPU validation: Exo's C, gcc -O2, ctypes, numpy.

Both procs are compiled into one shared library with a small C timing harness per proc (a loop
of calls between two ``clock_gettime`` readings), so timing excludes Python's call overhead.
"""

from __future__ import annotations

import atexit
import ctypes
import hashlib
import shutil
import statistics
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import exo
import numpy as np
from exo import Procedure
from exo.core.LoopIR import LoopIR
from exo.stdlib.scheduling import rename

from exo_egraph.lower import type_name

# Exo's C spells its types so: R (a real of unspecified precision) is float, f16 is gcc's _Float16
C_TYPES = {
    "f16": "_Float16", "f32": "float", "f64": "double", "R": "float",
    "i8": "int8_t", "ui8": "uint8_t", "i32": "int32_t", "ui16": "uint16_t",
}  # fmt: skip
NP_TYPES = {
    "f16": np.float16, "f32": np.float32, "f64": np.float64, "R": np.float32,
    "i8": np.int8, "ui8": np.uint8, "i32": np.int32, "ui16": np.uint16,
}  # fmt: skip
CONTEXT_BYTES = 1 << 16  # a zeroed stand-in for Exo's context struct: configs live in it
INDEX_TYPES = ("size", "index", "int")


class ValidationError(Exception):
    """The procs could not be compiled or run."""


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


def cannot_validate(proc: Procedure) -> str | None:
    """Why the CPU validator cannot run ``proc`` (said before any work), or None when it can."""
    for a in proc.INTERNAL_proc().args:
        t = a.type
        if isinstance(t, LoopIR.Tensor) and t.is_window:
            return f"argument {a.name} is a window (the validator passes dense buffers only)"
        name = type_name(t)
        if name not in C_TYPES and name not in INDEX_TYPES and name != "bool":
            return f"argument {a.name} has type {name}, which the validator cannot pass"
    return None


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
        case LoopIR.BinOp():
            lhs, rhs = _eval_size(e.lhs, sizes), _eval_size(e.rhs, sizes)
            return {"+": lhs + rhs, "-": lhs - rhs, "*": lhs * rhs, "/": lhs // max(rhs, 1), "%": lhs % max(rhs, 1)}[
                e.op
            ]
    raise ValidationError(f"cannot evaluate size expression {e}")


def random_inputs(proc: Procedure, sizes: Mapping[str, int] | None = None, seed: int = 0) -> dict[str, Any]:
    """Seeded random values for every argument (size arguments from ``sizes``, default 16)."""
    rng = np.random.default_rng(seed)
    values: dict[str, Any] = {}
    params = _params(proc)
    for p in params:
        if p.is_index:
            values[p.name] = int((sizes or {}).get(p.name, 16))
    for p in params:
        if p.is_flag:
            values[p.name] = bool(rng.integers(0, 2))
        if p.is_index or p.is_flag:
            continue
        shape = tuple(_eval_size(e, values) for e in p.shape) or (1,)
        dtype = NP_TYPES[p.typ]
        if np.issubdtype(dtype, np.integer):
            bound = 8 if np.dtype(dtype).itemsize == 1 else 100
            values[p.name] = rng.integers(-bound if np.issubdtype(dtype, np.signedinteger) else 0, bound, shape).astype(dtype)
        else:
            values[p.name] = rng.uniform(-1, 1, shape).astype(dtype)
    return values


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


def library(procs: list[Procedure], *, include_dirs: Sequence[Path] = (), prelude: str = "") -> ctypes.CDLL:
    """Compile ``procs`` (plus a timing harness each) into one shared library, cached by source.
    ``include_dirs`` go to gcc as ``-I``; ``prelude`` is C placed before Exo's code (it is part of
    the cache key, so callers can fold the contents of their headers into it as a comment)."""
    c_src, h_src = exo.compile_procs_to_strings(procs, "kernels.h")
    src = "#define _POSIX_C_SOURCE 199309L\n#include <time.h>\n" + prelude + c_src + "\n"
    src += f"static char exo_egraph_ctxt[{CONTEXT_BYTES}] __attribute__((aligned(64)));\n"
    src += "".join(_harness(p.name(), _params(p)) for p in procs)
    includes = [f"-I{d}" for d in include_dirs]
    key = hashlib.sha256((src + h_src + "\0".join(includes)).encode()).hexdigest()[:16]
    return compile_shared(key, src, includes, {"kernels.h": h_src})


def compile_shared(key: str, src: str, includes: Sequence[str] = (), headers: dict[str, str] | None = None) -> ctypes.CDLL:
    """``src`` (and ``headers`` beside it) compiled by gcc -O2 -fwrapv into a shared library,
    once per ``key`` for the life of the process."""
    if key not in _LIBS:
        folder = _WORKDIR / key
        folder.mkdir(exist_ok=True)
        for name, text in (headers or {}).items():
            (folder / name).write_text(text)
        (folder / "unit.c").write_text(src)
        done = subprocess.run(
            # -fwrapv: Exo's integers wrap; without it signed overflow is undefined behaviour in C
            ["gcc", "-O2", "-fwrapv", *includes, "-shared", "-fPIC"]
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
    out = []
    for p in _params(proc):
        v = values[p.name]
        if p.is_index:
            out.append(ctypes.c_int64(v))
        elif p.is_flag:
            out.append(ctypes.c_bool(v))
        else:
            out.append(ctypes.c_void_p(v.ctypes.data))
    return out


def context() -> ctypes.Array:
    """A zeroed context for one call: Exo's configs are fields of it (NULL crashes a proc that uses them)."""
    return ctypes.create_string_buffer(CONTEXT_BYTES)


def copy_inputs(values: Mapping[str, Any]) -> dict[str, Any]:
    """Fresh copies of the array inputs, so one run cannot change another's inputs."""
    return {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in values.items()}


def run_proc(proc: Procedure, inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Compile and run ``proc`` once on copies of ``inputs``; every buffer argument after the call."""
    return run_many([proc], inputs)[0]


def run_many(procs: list[Procedure], inputs: Mapping[str, Any]) -> list[dict[str, np.ndarray]]:
    """`run_proc` for several procs with the same arguments, compiled by one gcc call."""
    renamed = [rename(p, f"{p.name()}_v{i}") for i, p in enumerate(procs)]
    lib = library(renamed)
    outs = []
    for proc in renamed:
        values = copy_inputs(inputs)
        getattr(lib, proc.name())(context(), *call_args(proc, values))
        outs.append({k: v for k, v in values.items() if isinstance(v, np.ndarray)})
    return outs


def _seconds_per_call(
    lib: ctypes.CDLL, proc: Procedure, inputs: Mapping[str, Any], repeats: int, seconds: float
) -> tuple[float, int]:
    """Median seconds per call over up to ``repeats`` timed runs of about 30 ms each, as many as fit
    in ``seconds`` (at least one); and how many runs that was."""
    bench = getattr(lib, f"exo_egraph_bench_{proc.name()}")
    bench.restype = ctypes.c_longlong
    values = copy_inputs(inputs)
    args = call_args(proc, values)
    one = max(bench(*args, ctypes.c_longlong(1)), 1)
    iters = max(1, min(int(30e6 / one), 10**7))  # about 30 ms a run
    runs = max(1, min(repeats, int(min(seconds * 1e9 / (iters * one), repeats))))
    return statistics.median(bench(*args, ctypes.c_longlong(iters)) / iters for _ in range(runs)) * 1e-9, runs


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
) -> Validation:
    """Run both procs on the same random inputs; integers must match bit for bit, floats too
    unless ``require_exact`` is False (then within rtol 1e-4); time both (median of ``repeats``,
    fewer when ``seconds`` would not hold them; each is timed at least once)."""
    a = rename(original, f"{original.name()}_naive")
    b = rename(scheduled, f"{scheduled.name()}_scheduled")
    lib = library([a, b])
    inputs = random_inputs(original, sizes, seed)
    outs = []
    for proc in (a, b):
        values = copy_inputs(inputs)
        getattr(lib, proc.name())(context(), *call_args(proc, values))
        outs.append(values)
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
        close = np.issubdtype(want.dtype, np.floating) and np.allclose(got, want, rtol=1e-4, atol=1e-5, equal_nan=True)
        if require_exact or not close:
            ok = False
            message = f"output {name} differs (max abs error {err:g})"
    naive = sched = 0.0
    runs = 0
    if time_runs:
        naive, runs = _seconds_per_call(lib, a, inputs, repeats, seconds / 2)
        sched, runs_b = _seconds_per_call(lib, b, inputs, repeats, seconds / 2)
        runs = min(runs, runs_b)
    speedup = naive / sched if sched > 0 else 1.0
    if ok and not exact:
        message = f"ok within tolerance (floating-point reassociation, max abs error {worst:g})"
    used = tuple((p.name, inputs[p.name]) for p in _params(original) if p.is_index)
    return Validation(ok, exact, worst, naive, sched, speedup, message, runs, used)
