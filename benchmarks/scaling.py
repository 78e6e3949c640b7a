"""Does the search scale with the kernel? f32 matmuls 64³ → 1024³ and 128×1024×64 on the cpu target.

    python benchmarks/scaling.py [--budget-s 300] [--baseline 64,128,256,512] [--seconds 10]

Each exploration runs in its own process (`--one`), so wall time and peak RSS are its own:
staged saturation (the default) for every kernel, and the unstaged search (one unrestricted run,
the search before staging) for the kernels named by ``--baseline``. For each it reports wall time
per phase, peak RSS, e-nodes, schedules, the stages, and the best model cost. Then it times the
input, the staged schedule and (where run) the unstaged one together, interleaved, at the cpu
target's flags (`CFLAGS`), and reports speed-ups over the input. Writes
``benchmarks/results/scaling.md`` and ``scaling.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "benchmarks" / "results"
KERNELS = {
    64: "benchmarks/kernels/matmul.py::matmul_f32_64",
    128: "benchmarks/kernels/matmul.py::matmul_f32_128",
    256: "benchmarks/kernels/x86/matmul_shapes.py::matmul_f32_256",
    512: "benchmarks/kernels/large/matmul_f32.py::matmul_f32_512",
    1024: "benchmarks/kernels/large/matmul_f32.py::matmul_f32_1024",
    "128x1024x64": "benchmarks/kernels/x86/matmul_shapes.py::matmul_f32_128x1024x64",
}


def explore_one(spec: str, staged: bool, budget_s: float) -> dict:
    """Explore ``spec`` in this process (no validation); what the table needs, as JSON."""
    from exo_egraph import Budget, explore
    from exo_egraph.cli import load_proc
    from exo_egraph.targets.cpu import create

    start = time.perf_counter()
    result = explore(load_proc(str(ROOT / spec)), create(staged=staged), budget=Budget(seconds=budget_s), validate=False)
    s = result.stats
    return {
        "spec": spec, "staged": staged, "wall": time.perf_counter() - start, "phases": result.phases,
        "peak_rss_mb": result.peak_rss_mb, "enodes": s.enodes, "schedules": s.schedules,
        "stop": result.stop_reason.value, "stages": [st.to_json() for st in s.stages],
        "cost": result.cost, "naive_cost": result.naive_cost, "steps": list(result.best.replayed.lines),
    }  # fmt: skip


def run_one(spec: str, staged: bool, budget_s: float) -> dict:
    """`explore_one` in a fresh process (its wall time includes start-up: imports and lowering)."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, __file__, "--one", spec, "--budget-s", str(budget_s), *([] if staged else ["--unstaged"])],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    row = json.loads(done.stdout.strip().splitlines()[-1])
    return row | {"process_wall": time.perf_counter() - start}


def scheduled(spec: str, steps: list[str]):
    """The original proc of ``spec`` with the schedule's Exo calls applied (as schedule.py would)."""
    from exo.stdlib import scheduling

    from exo_egraph.cli import load_proc

    p = load_proc(str(ROOT / spec))
    names = {k: getattr(scheduling, k) for k in dir(scheduling) if not k.startswith("_")}
    for line in steps:
        p = eval(line, names, {"p": p})  # the report's lines are Exo calls on p
    return p


def speedups(spec: str, schedules: list[list[str]], seconds: float) -> list[float]:
    """Speed-ups over the input of each schedule, timed together with it, interleaved, at `CFLAGS`."""
    from exo.stdlib.scheduling import rename

    from exo_egraph.cli import load_proc
    from exo_egraph.validate.cpu import CFLAGS, library, random_inputs, time_interleaved

    original = load_proc(str(ROOT / spec))
    procs = [rename(original, "naive")] + [rename(scheduled(spec, s), f"s{i}") for i, s in enumerate(schedules)]
    timings = time_interleaved(library(procs, cflags=CFLAGS), procs, random_inputs(original), seconds=seconds)
    return [statistics.median(a / b for a, b in zip(timings[0].timings, t.timings)) for t in timings[1:]]


def table(rows: list[dict], budget_s: float) -> str:
    lines = [
        "# Scaling: f32 matmuls on the cpu target",
        "",
        f"One process per exploration (`explore(..., validate=False)`, budget {budget_s:.0f} s), 2-core machine. "
        "*wall* is the process's, start-up included; *sketch* / *refine* are the stages' seconds "
        "(saturating, counting, and the sketch's extraction of what it keeps); *extract* is the final "
        "extraction. Speed-ups are over the input as written, timed interleaved at `gcc -O2 -fwrapv`.",
        "",
        "| kernel | search | wall s | sketch s | refine s | saturate s | extract s | peak RSS MB | e-nodes | schedules (final e-graph) | sketch schedules | stop | best cost | measured speed-up |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for r in rows:
        stages = {st["name"]: st for st in r["stages"]}
        sk, rf = stages.get("sketch"), stages.get("refine")
        lines.append(
            f"| {r['kernel']} | {'staged' if r['staged'] else 'unstaged'} | {r['process_wall']:.1f} "
            f"| {sk['seconds'] if sk else '-'} | {rf['seconds'] if rf else '-'} | {r['phases']['saturate']:.1f} "
            f"| {r['phases']['extract']:.1f} | {r['peak_rss_mb']:.0f} | {r['enodes']:,} | {r['schedules']:,} "
            f"| {sk['schedules'] if sk else 0:,} | {r['stop']} | {r['cost']:,.0f} | {r.get('speedup', 0):.2f}x |"
        )
    return "\n".join(lines + ["", *targets(rows)]) + "\n"


def targets(rows: list[dict]) -> list[str]:
    """issue 15's targets, checked on the rows."""
    staged = {r["kernel"]: r for r in rows if r["staged"]}
    unstaged = {r["kernel"]: r for r in rows if not r["staged"]}
    out = ["## Targets", ""]
    for n in ("512", "1024"):
        if n in staged:
            r = staged[n]
            met = r["process_wall"] <= 30 and r["peak_rss_mb"] <= 1024
            out.append(f"- {n}³ within 30 s and 1 GB: {'met' if met else 'MISSED'} "
                       f"({r['process_wall']:.1f} s, {r['peak_rss_mb']:.0f} MB)")  # fmt: skip
    for n, how in (("512", "measured speed-up"), ("128", "model cost")):
        if n in staged and n in unstaged:
            a, b = staged[n], unstaged[n]
            if how == "model cost":
                out.append(f"- {n}³ best equal in model cost to the unstaged search: {a['cost'] == b['cost']} "
                           f"({a['cost']:,.0f} vs {b['cost']:,.0f})")  # fmt: skip
            else:
                out.append(f"- {n}³ staged schedule no slower than the unstaged one: {a['speedup'] >= 0.97 * b['speedup']} "
                           f"({a['speedup']:.2f}x vs {b['speedup']:.2f}x, timed together; 3 % is this machine's noise)")  # fmt: skip
    out.append("- 10⁹ schedules at 128³ with the x86 target's choices: MISSED. The x86 target prices register-tile "
               "plans of the micro-kernel (280 at 128³, in 92 e-nodes, 0.03 s), not loop terms; its plans are "
               "not crossed with the loop e-graph, whose staged 128³ search holds 3.2·10⁵ (sketch) and "
               "2.3·10⁵ (refine) schedules: staging trades represented schedules for the search's time.")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--unstaged", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--budget-s", type=float, default=300.0)
    ap.add_argument("--baseline", default="64,128,256,512", help="kernels also explored unstaged")
    ap.add_argument("--kernels", default=",".join(str(k) for k in KERNELS))
    ap.add_argument("--seconds", type=float, default=10.0, help="timing budget per kernel")
    ap.add_argument("--report-only", action="store_true", help="rewrite scaling.md from scaling.json")
    args = ap.parse_args()
    if args.report_only:
        rows = json.loads((RESULTS / "scaling.json").read_text())
        (RESULTS / "scaling.md").write_text(table(rows, args.budget_s))
        return
    if args.one:
        print(json.dumps(explore_one(args.one, not args.unstaged, args.budget_s)))
        return
    keys = {str(k): k for k in KERNELS}
    rows = []
    for name in args.kernels.split(","):
        spec = KERNELS[keys[name]]
        runs = [run_one(spec, True, args.budget_s)]
        if name in args.baseline.split(","):
            runs.append(run_one(spec, False, args.budget_s))
        for r, s in zip(runs, speedups(spec, [r["steps"] for r in runs], args.seconds)):
            rows.append(r | {"kernel": name, "speedup": s})
        print(table(rows, args.budget_s).splitlines()[-1], flush=True)
    (RESULTS / "scaling.json").write_text(json.dumps(rows, indent=1))
    (RESULTS / "scaling.md").write_text(table(rows, args.budget_s))


if __name__ == "__main__":
    main()
