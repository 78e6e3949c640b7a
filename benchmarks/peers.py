"""exo-egraph side by side with the tools users would pick instead, in one run on one machine.

    python benchmarks/peers.py [--kernels matmul_f32_64 ...] [--target x86] [--budget-s 60]
                               [--tvm-trials 64] [--out-dir benchmarks/results]

Per f32 kernel of ``benchmarks/kernels/``, single-threaded:

- **naive**: the Exo proc as written, built with ``gcc -O3 -march=native -fwrapv`` (as users build);
- **exo-egraph**: the best schedule of ``exo-egraph explore`` (its wall time, validation included,
  is the search time),
  timed in the same interleaved run as naive; then timed again on buffers placed as numpy places
  its own (16 bytes past a cache line), where every 512-bit load of a row splits across two lines;
- **numpy**: ``np.matmul`` / ``np.dot`` on OpenBLAS, one thread (matmul and gemv only);
- **Halide**: the algorithm in Halide's Python bindings, scheduled by each autoscheduler
  (Adams2019, Mullapudi2016, Li2018), JIT-compiled for the host, one thread;
- **TVM**: the kernel in TE, tuned by MetaSchedule (``--tvm-trials`` trials), one thread.

Every peer runs in its own process (``peers.py --worker PEER KERNEL``, one JSON line back) with one
thread forced through the environment, so a crash or a hang is a row with its error, not a dead
benchmark. Every output is checked against numpy before its time counts. A measured single-core
FMA peak (a C micro-kernel) puts the numbers in proportion. Writes ``peers.json`` and ``peers.md``.
Halide and TVM come with ``pip install -e '.[peers]'``; a peer whose package is missing says so.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

if TYPE_CHECKING:  # numpy and exo load lazily: a worker must pin its threads before numpy loads
    import numpy as np
    from exo import Procedure

ROOT = Path(__file__).resolve().parent.parent
KERNEL_DIR = ROOT / "benchmarks" / "kernels"
RESULT_MARK = "PEERS-RESULT "  # a worker's answer line; TVM and LLVM print freely around it
RUN_S = 0.02  # a timed run of a peer lasts about 20 ms
MIN_RUNS = 7
HALIDE_SCHEDULERS = ("Adams2019", "Mullapudi2016", "Li2018")
RTOL, ATOL = 1e-4, 1e-5  # as the project's CPU validator compares floats
NUMPY_PLACEMENT = 16  # bytes past a cache line where numpy's (and glibc malloc's) large arrays begin


@dataclass(frozen=True)
class Kernel:
    """One benchmark kernel: the Exo proc's file and name, its arguments and what it computes."""

    name: str
    file: str  # in benchmarks/kernels/
    family: str  # matmul | gemv | blur2d | conv1d
    shapes: tuple[tuple[str, tuple[int, ...]], ...]  # the proc's buffer arguments, in order
    output: str  # the argument that holds the result
    accumulates: bool  # the Exo proc does ``out +=`` (peers compute ``out =``; the check allows for it)
    flops: int  # counted the same for every peer


def _matmul(n: int) -> Kernel:
    return Kernel(f"matmul_f32_{n}", "matmul.py", "matmul", (("A", (n, n)), ("B", (n, n)), ("C", (n, n))), "C", True, 2 * n**3)


def _matmul_shape(m: int, n: int, k: int, name: str) -> Kernel:
    shapes = (("A", (m, k)), ("B", (k, n)), ("C", (m, n)))
    return Kernel(name, "x86/matmul_shapes.py", "matmul", shapes, "C", True, 2 * m * n * k)


KERNELS: tuple[Kernel, ...] = (
    _matmul(64),
    _matmul(128),
    _matmul_shape(256, 256, 256, "matmul_f32_256"),
    _matmul_shape(128, 1024, 64, "matmul_f32_128x1024x64"),
    Kernel("gemv_f32_128", "gemv.py", "gemv", (("A", (128, 128)), ("x", (128,)), ("y", (128,))), "y", True, 2 * 128 * 128),
    # two adds per tmp element (64x62) and per output element (62x62)
    Kernel("blur2d_f32", "blur2d.py", "blur2d", (("inp", (64, 64)), ("out", (62, 62))), "out", False, 2 * 64 * 62 + 2 * 62 * 62),
    Kernel("conv1d_f32", "conv1d.py", "conv1d", (("inp", (128,)), ("w", (5,)), ("out", (124,))), "out", True, 2 * 124 * 5),
    Kernel("conv2d_f32", "x86/conv2d.py", "conv2d", (("inp", (16, 34, 34)), ("w", (32, 16, 3, 3)), ("out", (32, 32, 32))),
           "out", True, 2 * 32 * 32 * 32 * 16 * 9),
)  # fmt: skip


def kernel(name: str) -> Kernel:
    """The kernel called ``name`` (a `KeyError` listing the known ones otherwise)."""
    for k in KERNELS:
        if k.name == name:
            return k
    raise KeyError(f"no kernel {name}; known: {', '.join(k.name for k in KERNELS)}")


def make_inputs(k: Kernel, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded uniform(-1, 1) float32 arrays for every argument of ``k``."""
    import numpy as np

    from exo_egraph.validate.cpu import aligned_copy

    rng = np.random.default_rng(seed)  # on cache lines, as TVM's runtime places its tensors
    return {name: aligned_copy(rng.uniform(-1, 1, shape).astype(np.float32)) for name, shape in k.shapes}


def reference(k: Kernel, values: Mapping[str, np.ndarray]) -> np.ndarray:
    """What ``k`` computes into its output (the ``=`` form, without an accumulated initial value), in float64."""
    import numpy as np

    v = {name: np.asarray(a, dtype=np.float64) for name, a in values.items()}
    if k.family == "matmul":
        return v["A"] @ v["B"]
    if k.family == "gemv":
        return v["A"] @ v["x"]
    if k.family == "blur2d":
        tmp = v["inp"][:, :-2] + v["inp"][:, 1:-1] + v["inp"][:, 2:]
        return tmp[:-2] + tmp[1:-1] + tmp[2:]
    if k.family == "conv1d":
        return np.correlate(v["inp"], v["w"], mode="valid")  # out[i] = sum_r inp[i + r] * w[r]
    if k.family == "conv2d":  # out[k, y, x] = sum_{c, ry, rx} w[k, c, ry, rx] * inp[c, y + ry, x + rx]
        kh, kw = v["w"].shape[2:]
        oh, ow = v["inp"].shape[1] - kh + 1, v["inp"].shape[2] - kw + 1
        windows = np.stack([v["inp"][:, ry : ry + oh, rx : rx + ow] for ry in range(kh) for rx in range(kw)], axis=1)
        return np.einsum("kcr,cryx->kyx", v["w"].reshape(v["w"].shape[0], v["w"].shape[1], -1), windows)
    raise ValueError(f"no reference for family {k.family}")


def check(got: np.ndarray, want: np.ndarray) -> str | None:
    """None when ``got`` matches ``want`` within the tolerance, else what differs."""
    import numpy as np

    got = np.asarray(got)
    if got.shape != want.shape:
        return f"wrong result: shape {got.shape}, expected {want.shape}"
    if np.allclose(got, want, rtol=RTOL, atol=ATOL):
        return None
    return f"wrong result: max abs error {float(np.max(np.abs(got - want))):.3g}"


# --- results ---------------------------------------------------------------------------------


@dataclass
class Row:
    """One peer on one kernel. ``seconds`` is None when it did not run or computed something else."""

    peer: str
    seconds: float | None = None  # median seconds per call
    search_s: float | None = None  # time spent finding the schedule (autoscheduling, tuning, explore)
    ok: bool | None = None  # output matched numpy; None: not run
    note: str = ""
    runs: int = 0
    spread: float | None = None  # interquartile range / median of the timed runs
    wall_s: float | None = None  # the whole peer, process start to answer
    detail: dict[str, Any] = field(default_factory=dict)

    def to_json(self, flops: int) -> dict[str, Any]:
        gflops = flops / self.seconds * 1e-9 if self.seconds else None
        return asdict(self) | {"gflops": gflops}


@dataclass(frozen=True)
class Peak:
    """The measured single-core f32 FMA peak."""

    gflops: float
    isa: str
    lanes: int
    runs: int


# --- peak FMA throughput ---------------------------------------------------------------------

PEAK_C = r"""
#define _POSIX_C_SOURCE 199309L
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#if defined(__AVX512F__)
typedef __m512 vec;
#define LANES 16
#define ISA "avx512f"
#define SET1 _mm512_set1_ps
#define FMA _mm512_fmadd_ps
#define ADD _mm512_add_ps
#define STORE _mm512_storeu_ps
#elif defined(__FMA__) && defined(__AVX__)
typedef __m256 vec;
#define LANES 8
#define ISA "avx2-fma"
#define SET1 _mm256_set1_ps
#define FMA _mm256_fmadd_ps
#define ADD _mm256_add_ps
#define STORE _mm256_storeu_ps
#else
#error "the peak kernel needs FMA on 256- or 512-bit vectors"
#endif

/* 12 independent chains cover FMA latency (4-5 cycles) times two FMA pipes */
#define CHAINS 12

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + 1e-9 * t.tv_nsec;
}

static float chains(long iters) {
  const vec a = SET1(0.9999f), b = SET1(0.0001f); /* converges: no overflow, no denormals */
  vec c0 = SET1(0.0f), c1 = SET1(0.1f), c2 = SET1(0.2f), c3 = SET1(0.3f), c4 = SET1(0.4f), c5 = SET1(0.5f);
  vec c6 = SET1(0.6f), c7 = SET1(0.7f), c8 = SET1(0.8f), c9 = SET1(0.9f), c10 = SET1(1.0f), c11 = SET1(1.1f);
  for (long i = 0; i < iters; i++) {
    c0 = FMA(c0, a, b); c1 = FMA(c1, a, b); c2 = FMA(c2, a, b); c3 = FMA(c3, a, b);
    c4 = FMA(c4, a, b); c5 = FMA(c5, a, b); c6 = FMA(c6, a, b); c7 = FMA(c7, a, b);
    c8 = FMA(c8, a, b); c9 = FMA(c9, a, b); c10 = FMA(c10, a, b); c11 = FMA(c11, a, b);
  }
  /* the chains' sum leaves the function, so the compiler cannot drop the loop */
  vec s = ADD(ADD(ADD(c0, c1), ADD(c2, c3)), ADD(ADD(c4, c5), ADD(c6, c7)));
  s = ADD(s, ADD(ADD(c8, c9), ADD(c10, c11)));
  float out[LANES];
  STORE(out, s);
  return out[0];
}

int main(int argc, char **argv) {
  int runs = argc > 1 ? atoi(argv[1]) : 7;
  double run_s = argc > 2 ? atof(argv[2]) : 0.1;
  long iters = 1 << 12;
  float sink = 0.0f;
  for (;;) { /* calibrate: grow until a run lasts a tenth of run_s, then scale to run_s */
    double t0 = now();
    sink += chains(iters);
    double dt = now() - t0;
    if (dt >= run_s / 10) { iters = (long)(iters * run_s / dt) + 1; break; }
    iters *= 4;
  }
  double best = 0.0;
  for (int r = 0; r < runs; r++) {
    double t0 = now();
    sink += chains(iters);
    double gflops = 2.0 * LANES * CHAINS * (double)iters / (now() - t0) * 1e-9; /* 2 flops per lane per FMA */
    if (gflops > best) best = gflops;
  }
  printf("%s %d %.4f %g\n", ISA, LANES, best, (double)sink);
  return 0;
}
"""


def measure_peak(runs: int = 7, run_s: float = 0.1, timeout: float = 60.0) -> Peak:
    """Single-core f32 FMA peak (GFLOP/s): `PEAK_C` built with ``gcc -O3 -march=native``, best of ``runs``."""
    with tempfile.TemporaryDirectory(prefix="peers-peak-") as tmp:
        src, exe = Path(tmp) / "peak.c", Path(tmp) / "peak"
        src.write_text(PEAK_C)
        subprocess.run(["gcc", "-O3", "-march=native", "-o", str(exe), str(src)], check=True, capture_output=True, text=True)
        done = subprocess.run([str(exe), str(runs), str(run_s)], check=True, capture_output=True, text=True, timeout=timeout)
    isa, lanes, gflops, _ = done.stdout.split()
    return Peak(float(gflops), isa, int(lanes), runs)


# --- naive and exo-egraph (in this process) --------------------------------------------------


def default_target() -> str:
    """``x86`` when exo-egraph registers such a target, else ``cpu``."""
    from exo_egraph.target import names

    return "x86" if "x86" in names() else "cpu"


def load_original(kernel_file: str | Path, proc_name: str) -> Procedure:
    """The proc ``proc_name`` as ``kernel_file`` defines it."""
    from exo_egraph.measure import KernelSource, load_kernel

    path = Path(kernel_file)
    return load_kernel(KernelSource(path.name, path.read_text(), proc_name))


def exo_egraph_schedule(kernel_file: str | Path, proc_name: str, target: str, budget_s: float) -> Procedure:
    """The proc scheduled by ``exo-egraph explore`` (run as a user would, in a subprocess, with its
    validation: a schedule measured slower than the input is not handed back): its ``schedule.py``
    applied to the original proc."""
    from exo_egraph.measure import apply_script

    with tempfile.TemporaryDirectory(prefix="peers-explore-") as out:
        cmd = [sys.executable, "-m", "exo_egraph.cli", "explore", f"{kernel_file}::{proc_name}", "--target", target,
               "--out", out, "--budget-s", str(budget_s)]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=budget_s * 3 + 120, cwd=ROOT)
        if done.returncode != 0:
            tail = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:] or [""]
            raise RuntimeError(f"explore exited with {done.returncode}: {tail[0]}")
        script = (Path(out) / "schedule.py").read_text()
    return apply_script(load_original(kernel_file, proc_name), script)


def run_exo(k: Kernel, target: str, budget_s: float, time_s: float, search: bool = True) -> list[Row]:
    """The naive proc and exo-egraph's schedule: checked against numpy, then timed together
    (`time_interleaved`) at the flags users build with."""
    from exo.stdlib.scheduling import rename
    from exo_egraph.validate.cpu import NATIVE_CFLAGS, call_args, context, copy_inputs, library, random_inputs, time_interleaved

    original = load_original(KERNEL_DIR / k.file, k.name)
    naive, ours = Row("naive"), Row("exo-egraph")
    procs = [(rename(original, f"{k.name}_naive"), naive)]
    if search:
        start = time.perf_counter()
        try:
            scheduled = exo_egraph_schedule(KERNEL_DIR / k.file, k.name, target, budget_s)
            ours.search_s = time.perf_counter() - start
            procs.append((rename(scheduled, f"{k.name}_exo_egraph"), ours))
        except Exception as e:  # a failed search is a row, not a dead benchmark
            ours.search_s, ours.note = time.perf_counter() - start, f"{type(e).__name__}: {e}"
    else:
        ours.note = "not run (--peers)"
    inputs = random_inputs(original)
    shapes = tuple((name, tuple(v.shape)) for name, v in inputs.items() if hasattr(v, "shape"))
    if shapes != k.shapes:  # the table's flop counts and the peers' shapes come from k
        raise RuntimeError(f"{k.name}: the proc's arguments {shapes} are not {k.shapes}")
    want = reference(k, inputs) + (inputs[k.output] if k.accumulates else 0)
    lib = library([p for p, _ in procs], cflags=NATIVE_CFLAGS)
    good = []
    for proc, row in procs:
        values = copy_inputs(inputs)
        getattr(lib, proc.name())(context(), *call_args(proc, values))
        wrong = check(values[k.output], want)
        row.ok, row.note = wrong is None, wrong or row.note
        row.detail["cflags"] = " ".join(NATIVE_CFLAGS)
        if row.ok:
            good.append((proc, row))
    rows = [naive, ours]
    if good:
        timings = time_interleaved(lib, [p for p, _ in good], inputs, seconds=time_s)
        for (_, row), t in zip(good, timings):
            row.seconds, row.spread, row.runs = t.median, t.spread, t.runs
        if ours.ok:  # what a caller passing numpy's (or malloc's) buffers gets: 512-bit loads split lines
            t = time_interleaved(lib, [p for p, row in good if row is ours], inputs, seconds=time_s, offset=NUMPY_PLACEMENT)[0]
            label = f"exo-egraph, buffers {NUMPY_PLACEMENT} B past a line"
            rows.append(Row(label, t.median, ok=True, note="the same schedule", runs=t.runs, spread=t.spread))
    return rows


# --- peers (each in its own worker process) --------------------------------------------------


def pin_threads(env: dict[str, str]) -> dict[str, str]:
    """``env`` for one-threaded peers: BLAS, OpenMP, Halide and TVM thread pools at one thread.
    OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE (set on this machine) make OpenBLAS pick slower kernels."""
    env = dict(env)
    env.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HL_NUM_THREADS="1", TVM_NUM_THREADS="1")
    for name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        env.pop(name, None)
    return env


def time_calls(fn: Callable[[], object], run_s: float = RUN_S, runs: int = MIN_RUNS) -> tuple[float, float, int]:
    """Median seconds per call of ``fn`` over ``runs`` runs of about ``run_s`` each, the runs'
    relative spread (IQR / median), and the number of runs."""
    fn()  # warm-up: first-call costs (JIT, page faults) are not the kernel's
    n, elapsed = 1, 0.0
    while True:  # grow the batch to a tenth of a run before extrapolating
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        elapsed = time.perf_counter() - t0
        if elapsed >= run_s / 10 or n >= 10**7:
            break
        n *= 10
    n = max(1, int(n * run_s / max(elapsed, 1e-9)))
    per_call = []
    for _ in range(runs):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        per_call.append((time.perf_counter() - t0) / n)
    q = statistics.quantiles(per_call, n=4)
    median = statistics.median(per_call)
    return median, (q[2] - q[0]) / median, runs


def worker_numpy(k: Kernel, args: argparse.Namespace) -> Row:
    """numpy's matmul / dot on OpenBLAS (one thread, by the environment)."""
    import numpy as np

    v = make_inputs(k, args.seed)
    out = np.empty_like(v[k.output])
    if k.family == "matmul":
        fn = lambda: np.matmul(v["A"], v["B"], out=out)  # noqa: E731
    elif k.family == "gemv":
        fn = lambda: np.dot(v["A"], v["x"], out=out)  # noqa: E731
    else:
        return Row("numpy", note="not a BLAS kernel")
    row = Row("numpy")
    blas = np.show_config(mode="dicts").get("Build Dependencies", {}).get("blas", {})
    row.detail = {"blas": f"{blas.get('name', '?')} {blas.get('version', '')}".strip()}
    fn()
    row.note = check(out, reference(k, v)) or ""
    row.ok = not row.note
    if row.ok:
        row.seconds, row.spread, row.runs = time_calls(fn)
    return row


def _halide_algorithm(hl: Any, k: Kernel) -> tuple[Any, dict[str, Any]]:
    """``k`` in Halide (the ``=`` form) with estimates: the pipeline and its inputs by argument name.
    Halide's first dimension is numpy's last, so ``A[i, k]`` is ``a[k, i]`` here."""
    shapes = dict(k.shapes)
    params = {name: hl.ImageParam(hl.Float(32), len(shape), name) for name, shape in k.shapes if name != k.output}
    for name, p in params.items():
        for d, extent in enumerate(reversed(shapes[name])):
            p.dim(d).set_estimate(0, extent)
    x, y = hl.Var("x"), hl.Var("y")
    f = hl.Func(k.output)
    if k.family == "matmul":
        a, b = params["A"], params["B"]
        r = hl.RDom([(0, shapes["A"][1])])
        f[x, y] = hl.f32(0)
        f[x, y] += a[r.x, y] * b[x, r.x]
    elif k.family == "gemv":
        a, v = params["A"], params["x"]
        r = hl.RDom([(0, shapes["A"][1])])
        f[x] = hl.f32(0)
        f[x] += a[r.x, x] * v[r.x]
    elif k.family == "blur2d":
        inp, tmp = params["inp"], hl.Func("tmp")
        tmp[x, y] = inp[x, y] + inp[x + 1, y] + inp[x + 2, y]
        f[x, y] = tmp[x, y] + tmp[x, y + 1] + tmp[x, y + 2]
    elif k.family == "conv1d":
        inp, w = params["inp"], params["w"]
        r = hl.RDom([(0, shapes["w"][0])])
        f[x] = hl.f32(0)
        f[x] += inp[x + r.x] * w[r.x]
    elif k.family == "conv2d":  # numpy's (k, y, x) is Halide's (x, y, k)
        inp, w, ch = params["inp"], params["w"], hl.Var("ch")
        _, c, kh, kw = shapes["w"]
        r = hl.RDom([(0, kw), (0, kh), (0, c)])
        f[x, y, ch] = hl.f32(0)
        f[x, y, ch] += w[r.x, r.y, r.z, ch] * inp[x + r.x, y + r.y, r.z]
        f.set_estimate(ch, 0, shapes[k.output][0])
    else:
        raise ValueError(f"no Halide algorithm for {k.family}")
    for var, extent in zip([x, y], reversed(shapes[k.output])):
        f.set_estimate(var, 0, extent)
    return hl.Pipeline(f), params


def worker_halide(k: Kernel, scheduler: str, args: argparse.Namespace) -> Row:
    """Halide's algorithm, scheduled by the autoscheduler ``scheduler``, JIT-compiled for this host."""
    import halide as hl
    import numpy as np

    row = Row(f"Halide {scheduler}")
    plugin = f"autoschedule_{scheduler.lower()}"
    shipped = Path(hl.__file__).parent / "lib64" / f"lib{plugin}.so"  # the wheel's plugins are off the loader's path
    try:
        hl.load_plugin(str(shipped) if shipped.exists() else plugin)
    except Exception as e:
        row.note = f"plugin {plugin} failed to load: {str(e).strip().splitlines()[0]}"
        return row
    pipeline, params = _halide_algorithm(hl, k)
    target = hl.get_jit_target_from_environment()
    start = time.perf_counter()
    result = pipeline.apply_autoscheduler(target, hl.AutoschedulerParams(scheduler, {"parallelism": "1"}))
    row.search_s = time.perf_counter() - start
    start = time.perf_counter()
    pipeline.compile_jit(target)
    row.detail = {"compile_s": time.perf_counter() - start, "target": str(target), "schedule": result.schedule_source}
    v = make_inputs(k, args.seed)

    def buffer(shape: tuple[int, ...]) -> Any:  # Halide's own allocation: a Buffer over a 1-D numpy array crashed realize
        return hl.Buffer(hl.Float(32), list(reversed(shape)))

    keep = {name: buffer(v[name].shape) for name in params}
    for name, p in params.items():
        np.asarray(keep[name])[...] = v[name]  # a view of the Buffer, in numpy's axis order
        p.set(keep[name])
    out_buffer = buffer(v[k.output].shape)
    pipeline.realize(out_buffer)
    row.note = check(np.asarray(out_buffer), reference(k, v)) or ""
    row.ok = not row.note
    if row.ok:
        row.seconds, row.spread, row.runs = time_calls(lambda: pipeline.realize(out_buffer))
        row.detail["call_overhead_s"] = _halide_call_overhead(hl, target)
    return row


def _halide_call_overhead(hl: Any, target: Any) -> float:
    """Seconds per ``realize`` of a pipeline that copies 16 floats: what Python adds to every Halide call."""
    src, x, f = hl.ImageParam(hl.Float(32), 1, "src"), hl.Var("x"), hl.Func("copy")
    f[x] = src[x]
    pipeline, into = hl.Pipeline(f), hl.Buffer(hl.Float(32), [16])
    src.set(hl.Buffer(hl.Float(32), [16]))
    pipeline.compile_jit(target)
    return time_calls(lambda: pipeline.realize(into), run_s=0.005)[0]


def _tvm_algorithm(te: Any, k: Kernel) -> tuple[Any, list[str]]:
    """``k`` in TE (the ``=`` form) as a PrimFunc, and its arguments' names in order."""
    shapes = dict(k.shapes)
    ins = {name: te.placeholder(shape, "float32", name=name) for name, shape in k.shapes if name != k.output}
    out_shape = shapes[k.output]
    if k.family == "matmul":
        A, B = ins["A"], ins["B"]
        r = te.reduce_axis((0, shapes["A"][1]), "k")
        out = te.compute(out_shape, lambda i, j: te.sum(A[i, r] * B[r, j], axis=r), name=k.output)
    elif k.family == "gemv":
        A, x = ins["A"], ins["x"]
        r = te.reduce_axis((0, shapes["A"][1]), "j")
        out = te.compute(out_shape, lambda i: te.sum(A[i, r] * x[r], axis=r), name=k.output)
    elif k.family == "blur2d":
        inp = ins["inp"]
        tmp = te.compute((shapes["inp"][0], out_shape[1]), lambda i, j: inp[i, j] + inp[i, j + 1] + inp[i, j + 2], name="tmp")
        out = te.compute(out_shape, lambda i, j: tmp[i, j] + tmp[i + 1, j] + tmp[i + 2, j], name=k.output)
    elif k.family == "conv1d":
        inp, w = ins["inp"], ins["w"]
        r = te.reduce_axis((0, shapes["w"][0]), "r")
        out = te.compute(out_shape, lambda i: te.sum(inp[i + r] * w[r], axis=r), name=k.output)
    elif k.family == "conv2d":
        inp, w = ins["inp"], ins["w"]
        _, c, kh, kw = shapes["w"]
        rc, ry, rx = te.reduce_axis((0, c), "c"), te.reduce_axis((0, kh), "ry"), te.reduce_axis((0, kw), "rx")
        out = te.compute(
            out_shape, lambda o, y, x: te.sum(w[o, rc, ry, rx] * inp[rc, y + ry, x + rx], axis=[rc, ry, rx]), name=k.output
        )
    else:
        raise ValueError(f"no TE algorithm for {k.family}")
    names = [name for name, _ in k.shapes]
    tensors = {**ins, k.output: out}
    return te.create_prim_func([tensors[n] for n in names]), names


def worker_tvm(k: Kernel, args: argparse.Namespace) -> Row:
    """TE → PrimFunc, tuned by MetaSchedule for this CPU on one core, the best compiled and timed."""
    import numpy as np
    import tvm
    from tvm import te
    from tvm.s_tir import meta_schedule as ms  # 0.27's home of MetaSchedule (was tvm.meta_schedule)
    from tvm.target import codegen

    row = Row("TVM MetaSchedule")
    func, names = _tvm_algorithm(te, k)
    cpu = codegen.llvm_get_system_cpu()
    # 0.27 takes targets as dicts; num-cores 1 keeps the schedules serial
    target = tvm.target.Target({"kind": "llvm", "mcpu": cpu, "num-cores": 1})
    with tempfile.TemporaryDirectory(prefix="peers-tvm-") as work_dir:
        start = time.perf_counter()
        database = ms.tune_tir(
            func, target, work_dir, max_trials_global=args.tvm_trials, num_trials_per_iter=min(64, args.tvm_trials),
            builder=ms.builder.LocalBuilder(max_workers=1),  # two builders time out on a 2-core machine
            runner=ms.runner.LocalRunner(), num_tuning_cores=1, seed=args.seed,
        )  # fmt: skip
        row.search_s = time.perf_counter() - start
        sch = ms.tir_integration.compile_tir(database, func, target)
    if sch is None:
        row.note = "tuning found no valid schedule"
        return row
    module = tvm.compile(sch.mod, target=target).mod
    row.detail = {"target": str(target), "trials": args.tvm_trials}
    v = make_inputs(k, args.seed)
    dev = tvm.cpu(0)
    tensors = [tvm.runtime.tensor(v[n] if n != k.output else np.zeros_like(v[n]), dev) for n in names]
    module["main"](*tensors)
    row.note = check(tensors[names.index(k.output)].numpy(), reference(k, v)) or ""
    row.ok = not row.note
    if row.ok:
        once = module.time_evaluator("main", dev, number=100, repeat=1)(*tensors).mean
        number = max(1, int(RUN_S / max(once, 1e-9)))
        results = module.time_evaluator("main", dev, number=number, repeat=MIN_RUNS)(*tensors).results
        q = statistics.quantiles(results, n=4)
        row.seconds, row.runs = statistics.median(results), len(results)
        row.spread = (q[2] - q[0]) / row.seconds
    return row


def worker_main(args: argparse.Namespace) -> int:
    """``--worker PEER KERNEL``: one peer on one kernel; prints one `RESULT_MARK` line of JSON."""
    # before numpy loads: the parent passes this environment too, this covers a worker run by hand
    pinned = pin_threads(dict(os.environ))
    for name in set(os.environ) - set(pinned):
        del os.environ[name]
    os.environ.update(pinned)
    k = kernel(args.kernel)
    try:
        if args.worker == "numpy":
            row = worker_numpy(k, args)
        elif args.worker.startswith("halide:"):
            row = worker_halide(k, args.worker.split(":", 1)[1], args)
        elif args.worker == "tvm":
            row = worker_tvm(k, args)
        else:
            raise ValueError(f"unknown peer {args.worker}")
    except ModuleNotFoundError as e:
        row = Row(args.worker, note=f"{e.name} is not installed: pip install -e '.[peers]'")
    except Exception as e:  # reported as the row's note; a crash of the process is the parent's to report
        row = Row(args.worker, note=f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}")
    print(RESULT_MARK + json.dumps(asdict(row)), flush=True)
    return 0


def run_worker(peer: str, label: str, k: Kernel, args: argparse.Namespace, timeout: float) -> Row:
    """``peer`` on ``k`` in a fresh process with one thread; a crash or timeout is a row with the error."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", peer, k.name, "--tvm-trials", str(args.tvm_trials),
           "--seed", str(args.seed)]  # fmt: skip
    start = time.perf_counter()
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=pin_threads(dict(os.environ)), cwd=ROOT)
    except subprocess.TimeoutExpired:
        return Row(label, note=f"timed out after {timeout:.0f} s", wall_s=time.perf_counter() - start)
    wall = time.perf_counter() - start
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(RESULT_MARK):
            row = Row(**json.loads(line[len(RESULT_MARK) :]))
            row.peer, row.wall_s = label, wall
            return row
    why = f"signal {-done.returncode}" if done.returncode < 0 else f"exit code {done.returncode}"
    tail = [s for s in done.stderr.strip().splitlines() if s.strip()][-1:] or ["no output"]
    return Row(label, note=f"worker died ({why}): {tail[0][:200]}", wall_s=wall)


def peer_plan(k: Kernel, peers: set[str], tvm_trials: int) -> list[tuple[str, str, float]]:
    """The workers to run on ``k``: (worker name, row label, timeout in seconds)."""
    plan = []
    if "numpy" in peers and k.family in ("matmul", "gemv"):
        plan.append(("numpy", "numpy (OpenBLAS)", 300.0))
    if "halide" in peers:
        plan += [(f"halide:{s}", f"Halide {s}", 600.0) for s in HALIDE_SCHEDULERS]
    if "tvm" in peers:
        plan.append(("tvm", "TVM MetaSchedule", 600.0 + 30.0 * tvm_trials))  # ~4 s a build on this machine
    return plan


# --- report ----------------------------------------------------------------------------------


def _fmt(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def _fmt_search(value: float | None) -> str:
    return _fmt(value, ".2g" if value is not None and value < 1 else ".1f")  # Halide's take milliseconds


def render_table(entry: Mapping[str, Any], peak_gflops: float) -> str:
    """A kernel's markdown table from its JSON entry (``flops`` and ``rows``)."""
    rows = entry["rows"]
    by_peer = {r["peer"]: r for r in rows}

    def seconds(peer: str) -> float | None:
        r = by_peer.get(peer)
        return r["seconds"] if r and r.get("seconds") else None

    naive_s, ours_s = seconds("naive"), seconds("exo-egraph")
    lines = [
        "| peer | GFLOP/s | % of peak | search time (s) | × naive | × exo-egraph | note |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        s = r.get("seconds")
        gflops = entry["flops"] / s * 1e-9 if s else None
        pct = 100 * gflops / peak_gflops if gflops and peak_gflops else None
        vs_naive = naive_s / s if s and naive_s else None
        vs_ours = ours_s / s if s and ours_s else None
        note = str(r.get("note") or "").replace("|", "\\|").replace("\n", " ")
        lines.append(
            f"| {r['peer']} | {_fmt(gflops, '.2f')} | {_fmt(pct, '.1f')} | {_fmt_search(r.get('search_s'))} | "
            f"{_fmt(vs_naive, '.2f')} | {_fmt(vs_ours, '.2f')} | {note} |"
        )
    return "\n".join(lines)


def render_markdown(result: Mapping[str, Any]) -> str:
    """The whole report (``peers.md``) from the JSON result."""
    m, peak = result["machine"], result["peak"]
    versions = ", ".join(f"{k} {v}" for k, v in result["versions"].items())
    out = [
        "# exo-egraph and its peers",
        "",
        f"- command: `{result['command']}`",
        f"- date: {result['date']}",
        f"- machine: {m['cpu']} ({m['cores']} logical cores; SIMD: {' '.join(m['simd']) or 'none'}); every peer single-threaded",
        f"- peak: {peak['gflops']:.1f} GFLOP/s single-core f32 FMA ({peak['isa']}, best of {peak['runs']} runs of a C micro-kernel)",
        f"- Exo's C built with `gcc {' '.join(result['cflags'])}`; exo-egraph target `{result['settings']['target']}`, "
        f"explore budget {result['settings']['budget_s']:g} s; TVM trials {result['settings']['tvm_trials']}",
        f"- versions: {versions}",
        "",
        "GFLOP/s counts the same flops for every peer (2·M·N·K for matmul, though the Exo kernels do C += A·B). "
        "× naive and × exo-egraph: that row's time divided into theirs (above 1: this row is faster). "
        "Search time: exo-egraph's explore run, Halide's autoscheduling, TVM's tuning. "
        "Naive, exo-egraph (a C timing loop) and TVM (`time_evaluator`) are timed without Python; "
        "numpy and Halide (`realize` into preallocated buffers) include a Python call of about 1 µs "
        "(Halide's is in peers.json as `call_overhead_s`), which matters for kernels of a few µs. "
        "Every peer's buffers begin on a cache line (64 bytes; TVM's runtime aligns its tensors so, Halide's buffers are its own); "
        f"the row 'exo-egraph, buffers {NUMPY_PLACEMENT} B past a line' is the same schedule on buffers placed as numpy "
        "and glibc's malloc place large arrays.",
    ]
    for entry in result["kernels"]:
        out += ["", f"## {entry['name']} ({entry['flops']:,} flops)", "", render_table(entry, peak["gflops"])]
    return "\n".join(out) + "\n"


def machine() -> dict[str, Any]:
    """The CPU model, its SIMD flags and core count."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), platform.processor())
    flags = next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), [])
    simd = sorted(f for f in flags if f in ("avx", "avx2", "fma") or f.startswith("avx512"))
    return {"cpu": model, "cores": os.cpu_count(), "simd": simd, "platform": platform.platform()}


def versions() -> dict[str, str]:
    """Versions of the compilers and packages in play (\"missing\" for one not installed)."""
    out = {"python": platform.python_version()}
    gcc = subprocess.run(["gcc", "-dumpfullversion"], capture_output=True, text=True)
    out["gcc"] = gcc.stdout.strip() or "?"
    for dist in ("exo-lang", "numpy", "halide", "apache-tvm", "apache-tvm-ffi", "xgboost-cpu", "xgboost"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            if not dist.startswith("xgboost"):
                out[dist] = "missing"
    return out


# --- main ------------------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kernels", nargs="+", default=[k.name for k in KERNELS], help="subset of: " + " ".join(k.name for k in KERNELS))
    ap.add_argument("--target", default=None, help="exo-egraph's target (default: x86 when registered, else cpu)")
    ap.add_argument("--budget-s", type=float, default=60.0, help="exo-egraph explore's budget per kernel")
    ap.add_argument("--tvm-trials", type=int, default=64, help="MetaSchedule's max_trials_global per kernel")
    ap.add_argument("--time-s", type=float, default=10.0, help="seconds for timing naive and exo-egraph together")
    ap.add_argument("--peers", nargs="+", default=["exo-egraph", "numpy", "halide", "tvm"], help="which peers to run (naive always runs)")
    ap.add_argument("--out-dir", default=str(ROOT / "benchmarks" / "results"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("kernel", nargs="?", help=argparse.SUPPRESS)  # the worker's kernel
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = parser()
    args = ap.parse_args(argv)
    if args.worker:
        return worker_main(args)
    try:
        kernels = [kernel(name) for name in args.kernels]
    except KeyError as e:
        ap.error(str(e.args[0]))
    target = args.target or default_target()
    peers = set(args.peers)
    from exo_egraph.validate.cpu import NATIVE_CFLAGS

    command = "python benchmarks/peers.py " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    peak = measure_peak()
    print(f"peak: {peak.gflops:.1f} GFLOP/s ({peak.isa})", flush=True)
    result: dict[str, Any] = {
        "command": command.strip(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "cflags": list(NATIVE_CFLAGS),
        "versions": versions(),
        "peak": asdict(peak),
        "settings": {"target": target, "budget_s": args.budget_s, "tvm_trials": args.tvm_trials, "time_s": args.time_s},
        "kernels": [],
    }
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for k in kernels:
        start = time.perf_counter()
        rows = run_exo(k, target, args.budget_s, args.time_s, search="exo-egraph" in peers)
        rows[0].wall_s = rows[1].wall_s = time.perf_counter() - start
        print(f"{k.name}: naive and exo-egraph in {rows[0].wall_s:.1f} s", flush=True)
        for worker, label, timeout in peer_plan(k, peers, args.tvm_trials):
            row = run_worker(worker, label, k, args, timeout)
            rows.append(row)
            print(f"{k.name}: {label} in {row.wall_s:.1f} s {row.note}".rstrip(), flush=True)
        if k.family not in ("matmul", "gemv") and "numpy" in peers:
            rows.insert(2, Row("numpy (OpenBLAS)", note="not run: not a BLAS kernel"))
        entry = {"name": k.name, "family": k.family, "flops": k.flops, "rows": [r.to_json(k.flops) for r in rows]}
        result["kernels"].append(entry)
        print(f"\n## {k.name}\n\n{render_table(entry, peak.gflops)}\n", flush=True)
        # written after every kernel, so a long run that is stopped keeps what it measured
        (out_dir / "peers.json").write_text(json.dumps(result, indent=2) + "\n")
        (out_dir / "peers.md").write_text(render_markdown(result))
    print(f"wrote {out_dir / 'peers.json'} and {out_dir / 'peers.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
