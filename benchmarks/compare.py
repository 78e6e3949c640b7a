"""Explorer vs the seed notebook's enumeration, side by side, on every shipped kernel.

    python benchmarks/compare.py --budget-s 20 [--kernels matmul_f32_16 conv1d_i8 ...]

``--budget-s`` bounds each method on each kernel (saturation sweep, baseline search). Each
method runs in its own process (peak RSS is per method). Writes ``benchmarks/results/compare.json``,
``compare.md`` (the table) and three plots (schedules vs time, cost vs rank, e-graph growth).

Costs: both methods' schedules are priced the same way — `extract.cost.program_cost` of the
program as Exo lowers it — so the comparison does not depend on how either method represents
a schedule.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.baseline import enumerate_schedules  # noqa: E402
from benchmarks.explore_kernels import KERNELS, shipped  # noqa: E402
from exo_egraph import terms as t  # noqa: E402
from exo_egraph.checks import enumerate_terms  # noqa: E402
from exo_egraph.lower import lower  # noqa: E402
from exo_egraph.replay import replay  # noqa: E402
from exo_egraph.rewrites.loops import split_factors  # noqa: E402
from exo_egraph.saturate import Budget  # noqa: E402
from exo_egraph.targets.cpu import saturate_term  # noqa: E402
from exo_egraph.validate import validate_cpu  # noqa: E402
from exo_egraph.extract.cost import CpuCost, buffers_of, program_cost  # noqa: E402
from exo_egraph.extract.calibrate import kendall_tau  # noqa: E402
from exo_egraph.extract.extractors import extract  # noqa: E402
from exo_egraph.rewrites.loops import LoopRuleConfig  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
TOP_K = 8  # candidates timed for the fidelity rank correlation
ENUMERATE_LIMIT = 1_000  # e-graphs holding at most this many schedules are searched exhaustively


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ----------------------------------------------------------------------------- workers (own process)


def explorer_worker(kernel: str, budget_s: float) -> dict[str, Any]:
    proc = shipped()[kernel]
    original = lower(proc)
    model = CpuCost(buffers_of(original))
    cfg = LoopRuleConfig()
    sweep, start = [], time.perf_counter()
    final = None
    for iterations in range(1, 41):
        t0 = time.perf_counter()
        sat = saturate_term(original, cfg, Budget(iterations=iterations, seconds=budget_s))
        t1 = time.perf_counter()
        best = extract(sat.view, model)[0]
        t2 = time.perf_counter()
        sweep.append(
            {
                "iterations": iterations,
                "enodes": sat.stats.enodes,
                "schedules": sat.stats.schedules,
                "seconds": t2 - t0,  # saturate + extract: what holding this best costs
                "saturate_seconds": t1 - t0,
                "best_term": best.proc,
            }
        )
        final = sat
        if sat.stats.stop_reason == "saturated" or time.perf_counter() - start > budget_s:
            break
    rss = peak_rss_mib()
    for point in sweep:  # priced after the clock stopped
        point["best_cost"] = program_cost(model, t.materialize(point.pop("best_term")))
    # saturation time of the final budget: median of 3 runs
    repeats = [sweep[-1]["saturate_seconds"]]
    for _ in range(2):
        t0 = time.perf_counter()
        saturate_term(original, cfg, Budget(iterations=sweep[-1]["iterations"], seconds=budget_s))
        repeats.append(time.perf_counter() - t0)
    # fidelity: model rank vs measured time of the top-k
    candidates = extract(final.view, model, TOP_K)
    fidelity = []
    for cand in candidates:
        done = replay(proc, cand.proc)
        v = validate_cpu(proc, done.proc, require_exact=True)
        fidelity.append(
            {
                "model_cost": program_cost(model, t.materialize(cand.proc)),
                "seconds": v.scheduled_seconds,
                "naive_seconds": v.naive_seconds,
                "exact": v.exact,
                "roundtrip": done.roundtrip,
            }
        )
    optimum = None
    if final.stats.schedules <= ENUMERATE_LIMIT and final.stats.cyclic_classes == 0:
        optimum = min(program_cost(model, t.materialize(term)) for term in enumerate_terms(final.view))
    return {
        "kernel": kernel,
        "naive_cost": program_cost(model, original),
        "sweep": sweep,
        "final_saturate_seconds_median": statistics.median(repeats),
        "stop_reason": final.stats.stop_reason.value,
        "fidelity": fidelity,
        "optimum": optimum,
        "peak_rss_mib": rss,
    }


def baseline_worker(kernel: str, budget_s: float) -> dict[str, Any]:
    proc = shipped()[kernel]
    original = lower(proc)
    model = CpuCost(buffers_of(original))
    cfg = LoopRuleConfig()
    run = enumerate_schedules(proc, cfg, split_factors(original, cfg.min_part), budget_s)
    rss = peak_rss_mib()
    costs = []
    for p in run.procs:  # priced after the clock stopped
        try:
            costs.append(program_cost(model, lower(p)))
        except Exception:  # a proc our lowering does not cover: priced as unknown
            costs.append(None)
    return {
        "kernel": kernel,
        "found_at": run.found_at,
        "costs": costs,
        "calls": run.calls,
        "rejected": run.rejected,
        "completed": run.completed,
        "seconds": run.seconds,
        "peak_rss_mib": rss,
    }


WORKERS = {"explorer": explorer_worker, "baseline": baseline_worker}


def run_worker(method: str, kernel: str, budget_s: float) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--worker", method, "--kernels", kernel, "--budget-s", str(budget_s)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- summary


def first_time_at(times: list[float], costs: list[float | None], target: float) -> float | None:
    for when, cost in zip(times, costs):
        if cost is not None and cost <= target * (1 + 1e-9):
            return when
    return None


def summarize(ex: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    sweep = ex["sweep"]
    ex_best = min(p["best_cost"] for p in sweep)
    base_costs = [c for c in base["costs"] if c is not None]
    base_best = min(base_costs)
    best = min(ex_best, base_best)
    ex_ttb = first_time_at([p["seconds"] for p in sweep], [p["best_cost"] for p in sweep], best)
    base_ttb = first_time_at(base["found_at"], base["costs"], best)
    last = sweep[-1]
    held_per_s = last["schedules"] / max(last["saturate_seconds"], 1e-9)
    found_per_s = len(base["found_at"]) / max(base["seconds"], 1e-9)
    fid = ex["fidelity"]
    tau = kendall_tau([f["model_cost"] for f in fid], [f["seconds"] for f in fid]) if len(fid) > 1 else None
    chosen = fid[0]
    return {
        "kernel": ex["kernel"],
        "explorer_schedules": last["schedules"],
        "explorer_enodes": last["enodes"],
        "explorer_seconds": ex["final_saturate_seconds_median"],
        "explorer_stop": ex["stop_reason"],
        "baseline_found": len(base["found_at"]),
        "baseline_seconds": base["seconds"],
        "baseline_completed": base["completed"],
        "compactness_ratio": held_per_s / found_per_s,  # schedules per second, explorer / baseline
        "explorer_best_cost": ex_best,
        "baseline_best_cost": base_best,
        "naive_cost": ex["naive_cost"],
        "explorer_time_to_best": ex_ttb,
        "baseline_time_to_best": base_ttb,
        "time_to_best_ratio": (base_ttb / ex_ttb) if ex_ttb and base_ttb else None,
        "optimum": ex["optimum"],
        "optimality_gap": (ex_best / ex["optimum"] - 1) if ex["optimum"] else None,
        "kendall_tau": tau,
        "speedup": chosen["naive_seconds"] / chosen["seconds"],
        "all_exact": all(f["exact"] and f["roundtrip"] for f in fid),
        "explorer_rss_mib": ex["peak_rss_mib"],
        "baseline_rss_mib": base["peak_rss_mib"],
    }


def median_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Field by field median over repeated runs (a value missing in most runs stays missing)."""
    out: dict[str, Any] = {}
    for key, first in rows[0].items():
        values = [r[key] for r in rows]
        if isinstance(first, (str, bool)):
            out[key] = first if all(v == first for v in values) else values
            continue
        present = [v for v in values if v is not None]
        out[key] = statistics.median(present) if len(present) * 2 > len(values) else None
        if isinstance(first, int) and out[key] is not None:
            out[key] = int(out[key])
    out["repeats"] = len(rows)
    return out


def _fmt(x: Any, spec: str = ".2f") -> str:
    if x is None:
        return "–"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return f"{x:,}"
    return format(x, spec)


def _reached(seconds: float | None) -> str:
    return "not reached" if seconds is None else f"{seconds:.2f}"


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| kernel | explorer: schedules held / e-nodes / s | baseline: found / s (complete?) | compactness ×"
        " | best cost: explorer / baseline / naive | time to best: explorer / baseline s (ratio) | gap to optimum"
        " | Kendall τ (top-8) | speed-up | peak RSS MiB: explorer / baseline |"
    )
    lines = [head, "|---|---|---|---:|---|---|---:|---:|---:|---|"]
    for r in rows:
        lines.append(
            f"| {r['kernel']} | {_fmt(r['explorer_schedules'])} / {_fmt(r['explorer_enodes'])} / {_fmt(r['explorer_seconds'])}"
            f" | {_fmt(r['baseline_found'])} / {_fmt(r['baseline_seconds'], '.1f')} ({_fmt(r['baseline_completed'])})"
            f" | {_fmt(r['compactness_ratio'], '.0f')}"
            f" | {_fmt(r['explorer_best_cost'], ',.0f')} / {_fmt(r['baseline_best_cost'], ',.0f')} / {_fmt(r['naive_cost'], ',.0f')}"
            f" | {_reached(r['explorer_time_to_best'])} / {_reached(r['baseline_time_to_best'])} ({_fmt(r['time_to_best_ratio'], '.1f')})"
            f" | {_fmt(r['optimality_gap'], '.1%')} | {_fmt(r['kendall_tau'])} | {_fmt(r['speedup'])}x"
            f" | {_fmt(r['explorer_rss_mib'], '.0f')} / {_fmt(r['baseline_rss_mib'], '.0f')} |"
        )
    return "\n".join(lines)


def plots(runs: dict[str, dict[str, Any]], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(runs)
    cols = min(4, len(names))
    rows = (len(names) + cols - 1) // cols
    paths = []

    def grid(title: str, file: str, draw) -> None:
        """One small panel per kernel, drawn by ``draw(ax, name)``."""
        fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
        for ax, name in zip(axes.flat, names):
            draw(ax, name)
            ax.set_title(name, fontsize=9)
        axes.flat[0].legend(fontsize=7)
        fig.suptitle(title)
        fig.tight_layout()
        paths.append(out / file)
        fig.savefig(paths[-1], dpi=110)

    def schedules(ax, name: str) -> None:
        ex, base = runs[name]["explorer"], runs[name]["baseline"]
        ax.plot([p["saturate_seconds"] for p in ex["sweep"]], [p["schedules"] for p in ex["sweep"]], "o-", label="explorer (held)")
        ax.plot(base["found_at"], range(1, len(base["found_at"]) + 1), "-", label="baseline (found)")
        ax.set_yscale("log")
        ax.set_xlabel("seconds")

    def ranks(ax, name: str) -> None:
        fid = runs[name]["explorer"]["fidelity"]
        ranks = range(1, len(fid) + 1)
        ax.plot(ranks, [f["model_cost"] / fid[0]["model_cost"] for f in fid], "o-", label="model cost")
        ax.plot(ranks, [f["seconds"] / fid[0]["seconds"] for f in fid], "s--", label="measured time")
        ax.set_xlabel("extraction rank")

    grid("schedules vs time", "schedules_vs_time.png", schedules)
    grid("cost vs rank (relative to rank 1)", "cost_vs_rank.png", ranks)

    fig, ax = plt.subplots(figsize=(6, 4))
    for name in names:
        sweep = runs[name]["explorer"]["sweep"]
        ax.plot([p["iterations"] for p in sweep], [p["enodes"] for p in sweep], "o-", label=name)
    ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("e-nodes")
    ax.legend(fontsize=6)
    ax.set_title("e-graph growth per iteration")
    fig.tight_layout()
    paths.append(out / "egraph_growth.png")
    fig.savefig(paths[-1], dpi=110)
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget-s", type=float, default=20.0, help="seconds per method per kernel")
    ap.add_argument("--kernels", nargs="+", help="kernel names (default: every shipped kernel)")
    ap.add_argument("--repeats", type=int, default=3, help="runs of both methods per kernel; the table shows medians")
    ap.add_argument("--worker", choices=list(WORKERS), help=argparse.SUPPRESS)
    ap.add_argument("--redraw", action="store_true", help="rewrite the table and plots from results/compare.json")
    args = ap.parse_args()
    if args.redraw:
        saved = json.loads((RESULTS / "compare.json").read_text())
        write_outputs(saved["budget_s"], saved["rows"], saved["runs"])
        return
    if args.worker:
        print(json.dumps(WORKERS[args.worker](args.kernels[0], args.budget_s)))
        return
    names = args.kernels or list(shipped())
    RESULTS.mkdir(parents=True, exist_ok=True)
    runs, rows = {}, []
    for name in names:
        pairs = []
        for r in range(args.repeats):
            print(f"{name}: run {r + 1}/{args.repeats}", file=sys.stderr, flush=True)
            pairs.append((run_worker("explorer", name, args.budget_s), run_worker("baseline", name, args.budget_s)))
        # each run's ratios come from that run; the table shows the median run's numbers
        rows.append(median_row([summarize(ex, base) for ex, base in pairs]))
        ex, base = pairs[len(pairs) // 2]
        runs[name] = {"explorer": ex, "baseline": base}
    (RESULTS / "compare.json").write_text(json.dumps({"budget_s": args.budget_s, "rows": rows, "runs": runs}, indent=1) + "\n")
    write_outputs(args.budget_s, rows, runs)


def write_outputs(budget_s: float, rows: list[dict[str, Any]], runs: dict[str, Any]) -> None:
    md = table(rows)
    (RESULTS / "compare.md").write_text(f"Budget: {budget_s} s per method per kernel.\n\n{md}\n")
    print(md)
    for path in plots(runs, RESULTS):
        print(f"wrote {path.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
