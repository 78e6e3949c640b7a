"""Does ``--budget-s`` bound the whole run? Wall time and peak RSS of ``exo-egraph explore`` on f32
matmuls of growing size, each in its own process, against the budget and the memory cap.

    python benchmarks/budget.py [--budget-s 10] [--sizes 128 256 1024 4096] [--max-memory MB]

Writes benchmarks/results/budget.{json,md}. The target: wall ≤ 1.2 × budget + start-up (the time
``exo-egraph explore`` takes to import and lower before its clock starts), peak RSS under the cap.
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

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

KERNEL = """from __future__ import annotations
from exo import DRAM, proc

@proc
def matmul_f32_{n}(A: f32[{n}, {n}] @ DRAM, B: f32[{n}, {n}] @ DRAM, C: f32[{n}, {n}] @ DRAM):
    for i in seq(0, {n}):
        for j in seq(0, {n}):
            for k in seq(0, {n}):
                C[i, j] += A[i, k] * B[k, j]
"""


def run(n: int, budget_s: float, max_memory: int | None, folder: Path) -> dict:
    kernel = folder / f"matmul_{n}.py"
    kernel.write_text(KERNEL.format(n=n))
    out = folder / f"out_{n}"
    cmd = [sys.executable, "-m", "exo_egraph.cli", "explore", f"{kernel}::matmul_f32_{n}", "--out", str(out),
           "--budget-s", str(budget_s), "--force"] + (["--max-memory", str(max_memory)] if max_memory else [])  # fmt: skip
    start = time.perf_counter()
    with open(folder / f"log_{n}.txt", "w") as log:
        child = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)  # this child's own peak RSS
    wall = time.perf_counter() - start
    rss_mb = usage.ru_maxrss / 1024
    report = json.loads((out / "report.json").read_text()) if (out / "report.json").exists() else {}
    v = report.get("validation") or {}
    return {
        "n": n,
        "exit": os.waitstatus_to_exitcode(status),
        "wall_s": round(wall, 1),
        "peak_rss_mb": round(rss_mb),
        "stop_reason": report.get("stop_reason"),
        "enodes": report.get("egraph", {}).get("enodes"),
        "schedules": report.get("egraph", {}).get("schedules"),
        "timed_runs": v.get("timed_runs"),
        "speedup": v.get("speedup"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget-s", type=float, default=10.0)
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 1024, 4096])
    ap.add_argument("--max-memory", type=int, default=None, help="MB (default: the explorer's own, half the machine)")
    args = ap.parse_args()
    startup = _startup()
    rows = []
    lines = [
        f"budget {args.budget_s} s; start-up (import + lower, before the clock) {startup:.1f} s; "
        f"target wall ≤ {1.2 * args.budget_s + startup:.1f} s",
        "",
        "| n³ f32 matmul | exit | wall s | within target | peak RSS MB | stop | e-nodes | schedules | timed runs | speed-up |",
        "|---:|---:|---:|---|---:|---|---:|---:|---:|---:|",
    ]
    print("\n".join(lines), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            r = run(n, args.budget_s, args.max_memory, Path(tmp))
            r["within"] = r["wall_s"] <= 1.2 * args.budget_s + startup
            rows.append(r)
            speed = f"{r['speedup']:.2f}x" if r["speedup"] else "-"
            lines.append(
                f"| {n} | {r['exit']} | {r['wall_s']} | {r['within']} | {r['peak_rss_mb']} | {r['stop_reason']} "
                f"| {r['enodes'] or 0:,} | {r['schedules'] or 0:,} | {r['timed_runs']} | {speed} |"
            )
            print(lines[-1], flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "budget.json").write_text(json.dumps({"budget_s": args.budget_s, "startup_s": startup, "rows": rows}, indent=2) + "\n")
    (RESULTS / "budget.md").write_text("\n".join(lines) + "\n")


def _startup() -> float:
    """Seconds to start Python, import exo-egraph and Exo, and lower a small kernel: not in the budget."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import exo_egraph.cli, exo_egraph.targets.cpu"], check=True)
    return time.perf_counter() - start + 1.0  # + lowering and the output folder's checks


if __name__ == "__main__":
    main()
