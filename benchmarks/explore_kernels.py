"""Explore every shipped kernel on the CPU target and print a markdown table of the numbers.

    python benchmarks/explore_kernels.py [--budget-s S] [--out benchmarks/results/kernels.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from exo import Procedure

from exo_egraph import explore
from exo_egraph.cli import load_procs
from exo_egraph.saturate import Budget

KERNELS = Path(__file__).resolve().parent / "kernels"


def shipped() -> dict[str, Procedure]:
    return {k: v for file in sorted(KERNELS.glob("*.py")) if not file.name.startswith("gemmini") for k, v in load_procs(file).items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--budget-s", type=float, default=30.0)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "kernels.json"))
    args = ap.parse_args()
    rows = []
    lines = [
        "| kernel | schedules | e-nodes | saturate s | total s | best / naive cost | exact | speed-up |",
        "|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    print("\n".join(lines))
    for name, proc in shipped().items():
        start = time.perf_counter()
        r = explore(proc, budget=Budget(seconds=args.budget_s))
        total = time.perf_counter() - start
        v = r.validation
        row = {
            "kernel": name,
            "schedules": r.stats.schedules,
            "enodes": r.stats.enodes,
            "saturate_seconds": round(r.stats.seconds, 3),
            "total_seconds": round(total, 2),
            "best_cost": r.cost,
            "naive_cost": r.naive_cost,
            "roundtrip": r.best.replayed.roundtrip,
            "exact": v.exact,
            "speedup": round(v.speedup, 3),
        }
        rows.append(row)
        lines.append(
            f"| {name} | {r.stats.schedules:,} | {r.stats.enodes:,} | {row['saturate_seconds']} | {row['total_seconds']} "
            f"| {r.cost:,.0f} / {r.naive_cost:,.0f} | {v.exact} | {v.speedup:.2f}x |"
        )
        print(lines[-1], flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=2) + "\n")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
