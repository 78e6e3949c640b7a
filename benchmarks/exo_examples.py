"""Exo's own x86 examples, as a user would bring them: exo-egraph's schedule against the example's.

    python benchmarks/exo_examples.py --exo-repo PATH [--budget-s 30] [--out-dir benchmarks/results]

``PATH`` is a checkout of https://github.com/exo-lang/exo (the examples are not in the exo-lang
wheel, and this project does not copy them). Each row imports the example's file as
``exo-egraph explore FILE::PROC`` does (which runs the example's own scheduling), takes its
algorithm proc and the proc its expert schedule builds, and explores the algorithm twice: as
written (size arguments left symbolic, what ``FILE::PROC`` on the command line gets) and with its
sizes fixed by ``partial_eval`` to the sizes the row is timed at (what the expert schedules assume
or specialise to). The naive proc, the expert's and both of ours are built with
``gcc -O3 -march=native -fwrapv`` into one library, checked against the naive proc's outputs
(within float tolerance: FMA rounds once) and timed in one interleaved run, so the ratios share
the machine's state. Writes ``exo_examples.json`` and ``exo_examples.md``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from exo.stdlib.scheduling import rename  # noqa: E402

from exo_egraph import explore  # noqa: E402
from exo_egraph.cli import load_module  # noqa: E402
from exo_egraph.saturate import Budget  # noqa: E402
from exo_egraph.validate.cpu import NATIVE_CFLAGS, library, random_inputs, run_many, time_interleaved  # noqa: E402


@dataclass(frozen=True)
class Example:
    """One of Exo's examples: its file, the algorithm proc, the proc its schedule builds, the sizes
    it is timed at, and the ISA the expert schedule uses."""

    file: str
    proc: str
    expert: str
    sizes: dict[str, int] = field(default_factory=dict)
    isa: str = "avx512"


EXAMPLES = (
    Example("examples/avx2_matmul/x86_matmul.py", "rank_k_reduce_6x16", "avx", {"K": 512}, "avx2"),
    Example("apps/x86/sgemm/sgemm.py", "SGEMM", "sgemm_exo", {"M": 192, "N": 192, "K": 192}),
    Example("apps/x86/conv/conv.py", "conv", "conv_specialized",
            {"out_h": 80, "out_w": 100, "out_channel": 128, "in_h": 82, "in_w": 102, "in_channel": 128,
             "kernel_dim": 3, "batch_size": 5}),  # fmt: skip
    Example("apps/x86/halide/blur/blur.py", "exo_base_blur", "exo_blur", {"W": 512, "H": 256}, "avx2"),
    # a teaching example: its schedule (`final_g`) tiles gemv's loops 8 x 8, it is no expert's
    Example("examples/cursors/cursors.py", "gemv", "final_g", {"M": 512, "N": 512}),
    Example("apps/x86/halide/unsharp/unsharp.py", "exo_unsharp_base", "exo_unsharp", {"W": 512, "H": 256}, "avx2"),
)


def ours(proc: Any, ex: Example, budget_s: float, fixed: bool) -> tuple[Any, float, str, bool]:
    """exo-egraph's schedule of ``proc`` (sizes fixed by ``partial_eval`` when ``fixed``), its
    search seconds, what the run said (its stop reason and last note) and whether what it handed
    back is the input as written (no schedule beat it)."""
    # renamed when fixed: the pieces a split makes are named after the proc, and both runs' pieces share one library
    target = rename(proc.partial_eval(**ex.sizes), f"{proc.name()}_fixed") if fixed else proc
    began = time.perf_counter()
    result = explore(target, "x86", budget=Budget(seconds=budget_s), sizes=None if fixed else ex.sizes, isa=ex.isa)
    seconds = time.perf_counter() - began
    said = result.notes[-1] if result.notes else ""
    return result.proc, seconds, f"{result.stop_reason.value}; {said}".strip("; "), result.best.pick.term is None


def run(ex: Example, repo: Path, budget_s: float) -> dict[str, Any]:
    defined = load_module(repo / ex.file)
    algorithm, expert = defined[ex.proc], defined[ex.expert]
    as_written, written_s, written_note, written_input = ours(algorithm, ex, budget_s, fixed=False)
    fixed, fixed_s, fixed_note, fixed_input = ours(algorithm, ex, budget_s, fixed=True)
    names = ("naive", "expert", "as_written", "fixed")
    procs = [rename(p, f"{ex.proc}_{n}") for p, n in zip((algorithm, expert, as_written, fixed), names)]
    inputs = random_inputs(algorithm, ex.sizes)
    outputs = run_many(procs, inputs, NATIVE_CFLAGS)
    correct = [_close(outputs[0], o) for o in outputs]
    lib = library(procs, cflags=NATIVE_CFLAGS)
    timings = time_interleaved(lib, procs, inputs, seconds=20.0, min_rounds=9)
    naive = timings[0].median
    return {
        "example": f"{ex.file}::{ex.proc}", "expert": ex.expert, "sizes": ex.sizes, "isa": ex.isa,
        "seconds": {n: t.median for n, t in zip(names, timings)},
        "speedup": {n: naive / t.median for n, t in zip(names, timings)},
        "correct": dict(zip(names, correct)),
        "search_s": {"as_written": written_s, "fixed": fixed_s},
        "said": {"as_written": written_note, "fixed": fixed_note},
        "input_returned": {"as_written": written_input, "fixed": fixed_input},
    }  # fmt: skip


def _close(want: dict[str, Any], got: dict[str, Any]) -> bool:
    import numpy as np

    return all(np.allclose(got[k], v, rtol=1e-4, atol=1e-4) for k, v in want.items() if isinstance(v, np.ndarray))


def markdown(rows: list[dict[str, Any]], when: str) -> str:
    out = [
        "# Exo's own x86 examples: exo-egraph's schedule against the example's",
        "",
        f"`python benchmarks/exo_examples.py --exo-repo PATH` on {when}, {platform.processor() or platform.machine()}, "
        f"gcc {' '.join(NATIVE_CFLAGS)}, one thread. Speed-ups over the naive proc, all four timed in one "
        "interleaved run per example; *as written*: `exo-egraph explore FILE::PROC` with the sizes left symbolic; "
        "*sizes fixed*: the proc `partial_eval`-ed to the timed sizes first. *(input)*: no schedule beat the "
        "input, which exo-egraph handed back as written (with sizes fixed, the `partial_eval`-ed input): "
        "its ratio to the naive proc is the same code compiled twice, or the same loops at constant trips.",
        "",
        "| example | sizes | ISA | expert schedule | exo-egraph, as written | exo-egraph, sizes fixed | fixed / expert | all correct |",
        "|---|---|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        s = r["speedup"]
        sizes = ", ".join(f"{k}={v}" for k, v in r["sizes"].items())
        mark = {m: " (input)" if r["input_returned"][m] else "" for m in ("as_written", "fixed")}
        out.append(
            f"| {r['example']} | {sizes} | {r['isa']} | {s['expert']:.2f}× | {s['as_written']:.2f}×{mark['as_written']} "
            f"| {s['fixed']:.2f}×{mark['fixed']} | {s['fixed'] / s['expert']:.2f} | {all(r['correct'].values())} |"
        )
    out += ["", "What each exo-egraph run said (stop reason; last note):", ""]
    for r in rows:
        for mode in ("as_written", "fixed"):
            out.append(f"- {r['example']}, {mode.replace('_', ' ')} ({r['search_s'][mode]:.1f} s): {r['said'][mode]}")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--exo-repo", type=Path, required=True, help="a checkout of github.com/exo-lang/exo")
    ap.add_argument("--budget-s", type=float, default=30.0)
    ap.add_argument("--out-dir", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--examples", nargs="*", help="procs to run (default: all)")
    args = ap.parse_args(argv)
    if not (args.exo_repo / "apps" / "x86").is_dir():
        print(f"exo_examples.py: {args.exo_repo} is not a checkout of github.com/exo-lang/exo", file=sys.stderr)
        return 2
    rows = []
    for ex in EXAMPLES:
        if args.examples and ex.proc not in args.examples:
            continue
        print(f"{ex.file}::{ex.proc} ...", flush=True)
        rows.append(run(ex, args.exo_repo, args.budget_s))
        print(json.dumps(rows[-1]["speedup"]), flush=True)
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "exo_examples.json").write_text(json.dumps(rows, indent=1) + "\n")
    (args.out_dir / "exo_examples.md").write_text(markdown(rows, when))
    print(markdown(rows, when))
    return 0


if __name__ == "__main__":
    sys.exit(main())
