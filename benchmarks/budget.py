"""Does ``--budget-s`` bound the whole run? Wall time and peak RSS of ``exo-egraph explore`` on f32
matmuls of growing size (cpu), and on Gemmini's largest shipped kernels (512³ and ResNet-50's 3x3
convolutions, cut into whole and partial tiles), each in its own process, against the budget and
the memory cap.

    python benchmarks/budget.py [--budget-s 10] [--sizes 128 256 1024 4096] [--gemmini NAME ...]
                                [--gemmini-budget-s 30] [--max-memory MB] [--tight-memory MB]

Writes benchmarks/results/budget.{json,md}. The target: wall ≤ 1.2 × budget + start-up (the time
``exo-egraph explore`` takes to import and load the kernel's file before its clock starts), peak
RSS under the cap: the explorer's default (half the machine's memory), and, for the largest
matmul again, a tight cap (``--tight-memory``) that saturation must stop for.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from exo_egraph.saturate import machine_memory_mb

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
GEMMINI_FILE = ROOT / "benchmarks" / "kernels" / "gemmini.py"
GEMMINI = ("gemmini_matmul_512", "gemmini_resnet_conv_56x64", "gemmini_resnet_conv_28x128", "gemmini_resnet_conv_14x256")

KERNEL = """from __future__ import annotations
from exo import DRAM, proc

@proc
def matmul_f32_{n}(A: f32[{n}, {n}] @ DRAM, B: f32[{n}, {n}] @ DRAM, C: f32[{n}, {n}] @ DRAM):
    for i in seq(0, {n}):
        for j in seq(0, {n}):
            for k in seq(0, {n}):
                C[i, j] += A[i, k] * B[k, j]
"""


def run(label: str, spec: str, target: str, budget_s: float, max_memory: int, folder: Path) -> dict:
    """``exo-egraph explore spec`` in a process of its own: its wall time, peak RSS and report."""
    out = folder / f"out_{label}_{max_memory}"
    cmd = [sys.executable, "-m", "exo_egraph.cli", "explore", spec, "--target", target, "--out", str(out),
           "--budget-s", str(budget_s), "--force", "--max-memory", str(max_memory)]  # fmt: skip
    start = time.perf_counter()
    with open(folder / f"log_{label}.txt", "w") as log:
        child = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)  # this child's own peak RSS
    wall = time.perf_counter() - start
    rss_mb = usage.ru_maxrss / 1024
    report = json.loads((out / "report.json").read_text()) if (out / "report.json").exists() else {}
    v = report.get("validation") or {}
    return {
        "kernel": label,
        "target": target,
        "budget_s": budget_s,
        "exit": os.waitstatus_to_exitcode(status),
        "wall_s": round(wall, 1),
        "peak_rss_mb": round(rss_mb),
        "max_memory_mb": max_memory,
        "under_cap": rss_mb <= max_memory,
        "stop_reason": report.get("stop_reason"),
        "enodes": report.get("egraph", {}).get("enodes"),
        "schedules": report.get("egraph", {}).get("schedules"),
        "phases": report.get("phases"),
        "timed_runs": v.get("timed_runs"),
        "speedup": v.get("speedup") or (v.get("naive") or {}).get("speedup_vs_naive"),
        "utilization": v.get("utilization"),
        "search_short": any("so the run may end past it" in n for n in report.get("notes", [])),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget-s", type=float, default=10.0)
    ap.add_argument("--sizes", type=int, nargs="*", default=[128, 256, 1024, 4096])
    ap.add_argument("--gemmini", nargs="*", default=list(GEMMINI), help="kernels of benchmarks/kernels/gemmini.py")
    ap.add_argument("--gemmini-budget-s", type=float, nargs="+", default=[30.0, 60.0],
                    help="each Gemmini kernel runs at each (30: explore's default)")  # fmt: skip
    ap.add_argument("--max-memory", type=int, default=machine_memory_mb(), help="MB (default: the explorer's own, half the machine)")
    ap.add_argument("--tight-memory", type=int, default=600, help="MB: the largest matmul again under this cap (0: not run)")
    args = ap.parse_args()
    rows = []
    lines = [
        "Target: wall ≤ 1.2 × budget + start-up (Python, exo-egraph and Exo imported and the kernel's file "
        "loaded, before the clock starts). Gemmini's speed-up is over its naive proc on the host CPU, modeled. "
        "*Search short*: the run's notes say replay and validation are expected to take more than the half "
        "of the budget the run keeps for them (`Target.after_search`): the kernel's floor is near or above the budget.",
        "",
        "| kernel | target | budget s | start-up s | exit | wall s | within target | search short | peak RSS MB "
        "| cap MB | under cap | stop | e-nodes | schedules | phases (s) | speed-up |",
        "|---|---|---:|---:|---:|---:|---|---|---:|---:|---|---|---:|---:|---|---:|",
    ]
    print("\n".join(lines), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        jobs = []
        for n in args.sizes:
            kernel = folder / f"matmul_{n}.py"
            kernel.write_text(KERNEL.format(n=n))
            jobs.append((f"matmul_f32_{n}", f"{kernel}::matmul_f32_{n}", "cpu", args.budget_s, args.max_memory, kernel))
        if args.tight_memory and args.sizes:
            jobs.append((*jobs[-1][:4], args.tight_memory, jobs[-1][-1]))
        jobs += [(name, f"{GEMMINI_FILE}::{name}", "gemmini", b, args.max_memory, GEMMINI_FILE)
                 for name in args.gemmini for b in args.gemmini_budget_s]  # fmt: skip
        startups: dict[Path, float] = {}
        for label, spec, target, budget_s, cap, file in jobs:
            startup = startups.setdefault(file, _startup(file))
            r = run(label, spec, target, budget_s, cap, folder)
            r["startup_s"] = round(startup, 1)
            r["within"] = r["wall_s"] <= 1.2 * budget_s + startup
            rows.append(r)
            speed = f"{r['speedup']:.2f}x" if r["speedup"] else "-"
            phases = ", ".join(f"{k} {v:.0f}" for k, v in (r["phases"] or {}).items())
            lines.append(
                f"| {label} | {target} | {budget_s:g} | {startup:.1f} | {r['exit']} | {r['wall_s']} | {r['within']} "
                f"| {'yes' if r['search_short'] else 'no'} | {r['peak_rss_mb']} | {cap} | {r['under_cap']} | {r['stop_reason']} | {r['enodes'] or 0:,} | {r['schedules'] or 0:,} "
                f"| {phases} | {speed} |"
            )
            print(lines[-1], flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "budget.json").write_text(json.dumps({"rows": rows}, indent=2) + "\n")
    (RESULTS / "budget.md").write_text("\n".join(lines) + "\n")


def _startup(kernel_file: Path) -> float:
    """Seconds to start Python, import exo-egraph and Exo and load ``kernel_file``'s procs (what the
    command does before its clock starts): not in the budget."""
    start = time.perf_counter()
    code = f"from pathlib import Path; from exo_egraph.cli import load_procs; load_procs(Path({str(kernel_file)!r}))"
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - start + 1.0  # + lowering and the output folder's checks


if __name__ == "__main__":
    main()
