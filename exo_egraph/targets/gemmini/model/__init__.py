"""Gemmini validation: Exo's Gemmini C, run on the host against a model of the accelerator.

Exo's Gemmini platform emits C that includes ``<include/gemmini.h>``, ``"gemm_malloc.h"`` and
``"gemm_acc_malloc.h"`` and calls ``gemmini_*`` macros.  This package ships those headers as a
functional and timing model of Gemmini (DIM = 16; scratchpad, accumulator, systolic array in both
dataflows, configuration registers, an allocator, counters; see ``include/gemmini.h``), so the
generated C compiles with gcc and runs in-process through ctypes, like the CPU validator
(:mod:`exo_egraph.validate.cpu`, whose compile cache and argument helpers are reused).

The timing model is serial and simple; every constant sits in ``include/gemmini_timing.h`` as a
``#define GEMMINI_T_<NAME> <int>`` line, and :func:`timing_constants` parses them so a static cost
model can reproduce the counts exactly.
"""

from __future__ import annotations

import ctypes
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
from exo import Procedure
from exo.stdlib.scheduling import rename

from exo_egraph.validate.cpu import ValidationError, call_args, compile_shared, copy_inputs, library, random_inputs

from ..config import DIM, timing_constants

__all__ = [
    "HEADER_DIR",
    "GemminiModelError",
    "GemminiRun",
    "GemminiValidation",
    "compile_model_c",
    "model_counters",
    "model_error",
    "reset_model",
    "run_gemmini",
    "run_gemmini_in_order",
    "timing_constants",
    "validate_gemmini",
]

HEADER_DIR: Path = Path(__file__).resolve().parent
"""The folder to pass to gcc with ``-I``: it holds ``include/gemmini.h`` and the malloc headers."""

_HEADERS = (
    HEADER_DIR / "include" / "gemmini.h",
    HEADER_DIR / "include" / "gemmini_timing.h",
    HEADER_DIR / "gemm_malloc.h",
    HEADER_DIR / "gemm_acc_malloc.h",
)
_CONTEXT_BYTES = 1 << 16  # zeroed stand-in for Exo's context struct (configs written outside instrs)


class GemminiModelError(Exception):
    """The model stopped: scratchpad/accumulator overflow, an access outside them, a bad free,
    or a feature the model does not cover.  The message is the model's own."""


@dataclass(frozen=True)
class GemminiRun:
    outputs: dict[str, np.ndarray]  # every buffer argument after the call
    cycles: int
    macs: int  # useful multiply-accumulates
    utilization: float  # macs / (DIM * DIM * cycles)
    counters: dict[str, int]  # all of the model's counters (see include/gemmini.h)


@dataclass(frozen=True)
class GemminiValidation:
    ok: bool  # outputs equal the original's (and the reference's, when given)
    exact: bool  # outputs are byte-identical to the CPU run of the original
    message: str  # what differed, the model's error, or 'ok'
    cycles: int  # of the scheduled proc on the model (0 when the model stopped)
    utilization: float
    macs: int
    counters: dict[str, int]


def _prelude() -> str:
    """C placed before Exo's code: the model (so its exported control functions exist even when a
    proc uses no Gemmini memory) and a digest of the headers, which keys the compile cache."""
    digest = hashlib.sha256(b"".join(h.read_bytes() for h in _HEADERS)).hexdigest()[:16]
    return f"/* exo-egraph gemmini model {digest} */\n#include <include/gemmini.h>\n"


def _bind(lib: ctypes.CDLL) -> ctypes.CDLL:
    lib.gemmini_model_error.restype = ctypes.c_char_p
    lib.gemmini_model_counter_name.restype = ctypes.c_char_p
    lib.gemmini_model_counter_name.argtypes = [ctypes.c_int]
    lib.gemmini_model_counter_value.restype = ctypes.c_longlong
    lib.gemmini_model_counter_value.argtypes = [ctypes.c_int]
    lib.gemmini_model_set_exo_block_stride.argtypes = [ctypes.c_int]
    return lib


def compile_model_c(source: str) -> ctypes.CDLL:
    """Compile a C translation unit that includes the model (gcc -O2 -fwrapv, ``-I HEADER_DIR``)
    into a shared library, cached by source and header contents; for tests and experiments at the
    level of single Gemmini instructions."""
    src = _prelude() + source
    key = "c-" + hashlib.sha256(src.encode()).hexdigest()[:16]
    return _bind(compile_shared(key, src, [f"-I{HEADER_DIR}"]))


def reset_model(lib: ctypes.CDLL, *, exo_block_stride: bool = False) -> None:
    """Power-on state for the model in ``lib``: zeroed memories, default configs, empty heaps,
    zero counters.  ``exo_block_stride``: see :func:`run_gemmini`."""
    _bind(lib)
    lib.gemmini_model_set_exo_block_stride(int(exo_block_stride))
    lib.gemmini_model_reset()


def model_error(lib: ctypes.CDLL) -> str | None:
    """The model's first error since the last reset, or None."""
    message = _bind(lib).gemmini_model_error()
    return None if message is None else message.decode()


def model_counters(lib: ctypes.CDLL) -> dict[str, int]:
    """Every counter of the model in ``lib`` by name (cycles, macs, dma_bytes_in, ...)."""
    _bind(lib)
    return {
        lib.gemmini_model_counter_name(i).decode(): int(lib.gemmini_model_counter_value(i))
        for i in range(lib.gemmini_model_counter_count())
    }


def _utilization(macs: int, cycles: int) -> float:
    return macs / (DIM * DIM * cycles) if cycles > 0 else 0.0


def _run(lib: ctypes.CDLL, proc: Procedure, inputs: Mapping[str, Any], exo_block_stride: bool,
         after: tuple[Procedure, ...] = ()) -> GemminiRun:  # fmt: skip
    values = copy_inputs(inputs)
    reset_model(lib, exo_block_stride=exo_block_stride)
    context = ctypes.create_string_buffer(_CONTEXT_BYTES)
    for p in (proc, *after):
        getattr(lib, p.name())(context, *call_args(p, values))
    error = model_error(lib)
    if error is not None:
        raise GemminiModelError(error)
    counters = model_counters(lib)
    cycles, macs = counters["cycles"], counters["macs"]
    outputs = {k: v for k, v in values.items() if isinstance(v, np.ndarray)}
    return GemminiRun(outputs, cycles, macs, _utilization(macs, cycles), counters)


def run_gemmini(proc: Procedure, inputs: Mapping[str, Any], *, exo_block_stride: bool = False) -> GemminiRun:
    """Compile Exo's C for ``proc`` against the model, reset the model, run ``proc`` once on copies
    of ``inputs`` and read the counters.  Raises GemminiModelError when the model stops.

    ``exo_block_stride``: a wide mvin (more than DIM columns) configured by
    ``gemmini_extended3_config_ld`` puts its DIM-column blocks DIM rows apart, as on Gemmini; with
    True they are ``rows`` apart, the reading of Exo's ``ld_i8_block`` body for a dense
    ``[m, n, 16]`` destination (the two agree when ``n == 16``)."""
    lib = _bind(library([proc], include_dirs=[HEADER_DIR], prelude=_prelude()))
    return _run(lib, proc, inputs, exo_block_stride)


def run_gemmini_in_order(procs: list[Procedure], inputs: Mapping[str, Any]) -> GemminiRun:
    """Run ``procs`` (with one signature) one after the other on one model, as a kernel cut into
    pieces runs them, on copies of ``inputs``: the cycles until the last one is done."""
    named = [rename(p, f"{p.name()}_{i}") for i, p in enumerate(procs)]
    lib = _bind(library(named, include_dirs=[HEADER_DIR], prelude=_prelude()))
    return _run(lib, named[0], inputs, False, tuple(named[1:]))


def _first_difference(name: str, got: np.ndarray, want: np.ndarray, against: str) -> str | None:
    """None when equal: byte for byte for the same dtype, else value for value (no casting)."""
    if got.shape != want.shape:
        return f"output {name} has shape {got.shape}, {against} {want.shape}"
    if got.tobytes() == want.tobytes() if got.dtype == want.dtype else np.array_equal(got, want):
        return None
    wrong = int(np.count_nonzero(got.astype(np.float64) != want.astype(np.float64)))
    err = float(np.max(np.abs(got.astype(np.float64) - want.astype(np.float64)))) if got.size else 0.0
    return f"output {name} differs from {against} in {wrong} of {got.size} elements (max abs error {err:g})"


def validate_gemmini(
    original: Procedure,
    scheduled: Procedure,
    *,
    sizes: Mapping[str, int] | None = None,
    seed: int = 0,
    reference: Callable[[dict[str, Any]], Mapping[str, Any]] | None = None,
    exo_block_stride: bool = False,
) -> GemminiValidation:
    """Run ``original`` on the CPU and ``scheduled`` on the Gemmini model, on the same
    ``random_inputs(original, sizes, seed)``, and compare every buffer byte for byte.  Both are
    compiled into one library against the model's headers (``acc_scale``'s C is ``ACC_SCALE``).

    ``reference`` (optional) maps a copy of the inputs to the expected arrays of some outputs;
    the scheduled run must match those too.  A model error (overflow, bounds) is a failed
    validation, not an exception; gcc failures raise ValidationError."""
    a = rename(original, f"{original.name()}_naive")
    b = rename(scheduled, f"{scheduled.name()}_scheduled")
    lib = _bind(library([a, b], include_dirs=[HEADER_DIR], prelude=_prelude()))
    inputs = random_inputs(original, sizes, seed)
    want = copy_inputs(inputs)
    reset_model(lib)  # in case the original uses Gemmini instructions too
    getattr(lib, a.name())(ctypes.create_string_buffer(_CONTEXT_BYTES), *call_args(a, want))
    try:
        run = _run(lib, b, inputs, exo_block_stride)
    except GemminiModelError as e:
        return GemminiValidation(False, False, str(e), 0, 0.0, 0, model_counters(lib))
    problems = [
        p
        for name, expected in want.items()
        if isinstance(expected, np.ndarray)
        and (p := _first_difference(name, run.outputs[name], expected, "the CPU run of the original"))
    ]
    exact = not problems
    if reference is not None:
        for name, expected in reference(copy_inputs(inputs)).items():
            got = run.outputs[name]
            p = _first_difference(name, got, np.asarray(expected), "the reference")
            if p:
                problems.append(p)
    message = "ok" if not problems else "; ".join(problems)
    return GemminiValidation(not problems, exact, message, run.cycles, run.utilization, run.macs, run.counters)
