"""Is the x86 model right? Its predicted speed-ups against measured ones, on real code at native flags.

    python benchmarks/x86_model.py [--plans 8] [--seconds 8] [--kernels SPEC ...]

For each kernel, saturates the plan e-graph and takes the model's best plan plus plans spread over
the rest of the model's ranking (``--plans`` in all), replays each through Exo, and times them and
the input together, interleaved (`time_interleaved`: a round runs every proc once, so the machine's
drift hits all alike; a speed-up is the median of the rounds' ratios). Writes
``benchmarks/results/x86_model.md`` and the rows, with the machine the model assumed,
``x86_model_rows.jsonl``: `tests/targets/x86/test_model_claims.py` holds the model to them.
``--kernels`` re-measures some kernels and keeps the other kernels' rows (each row records its
machine and ISA).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from exo.stdlib.scheduling import rename  # noqa: E402

from exo_egraph.extract.calibrate import kendall_tau  # noqa: E402
from exo_egraph.extract.x86_cost import X86Cost, X86Machine, cost_model  # noqa: E402
from exo_egraph.lower import lower  # noqa: E402
from exo_egraph.rewrites.x86 import initial_plan, to_egg, x86_rules  # noqa: E402
from exo_egraph.saturate import Budget, saturate  # noqa: E402
from exo_egraph.cli import load_proc  # noqa: E402
from exo_egraph.targets.x86.isa import default_isa, select_isa  # noqa: E402
from exo_egraph.targets.x86.pattern import Plan, find_kernel  # noqa: E402
from exo_egraph.targets.x86.replay import replay_plan  # noqa: E402
from exo_egraph.targets.x86.target import plans_of  # noqa: E402
from exo_egraph.validate.cpu import NATIVE_CFLAGS, library, random_inputs, time_interleaved  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
KERNELS = (
    "benchmarks/kernels/matmul.py::matmul_f32_64",
    "benchmarks/kernels/matmul.py::matmul_f32_128",
    "benchmarks/kernels/x86/matmul_shapes.py::matmul_f32_256",
    "benchmarks/kernels/x86/matmul_shapes.py::matmul_f32_128x1024x64",
    "benchmarks/kernels/x86/conv2d.py::conv2d_f32",
    "benchmarks/kernels/gemv.py::gemv_f32_128",
)


def spread_over_ranking(plans: list[Plan], model: X86Cost, count: int) -> list[Plan]:
    """The model's best plan, then plans at evenly spaced ranks of the model's order (distinct tiles first)."""
    ranked = sorted(plans, key=lambda p: (model.plan(p), -p.rows))
    if len(ranked) <= count:
        return ranked
    picks = [ranked[round(i * (len(ranked) - 1) / (count - 1))] for i in range(count)]
    return list(dict.fromkeys(picks))


def measure_kernel(spec: str, count: int, seconds: float) -> list[dict]:
    """One row per measured plan: the plan, the model's predicted and the measured speed-up over the input."""
    original = load_proc(str(ROOT / spec))
    mk, isa = find_kernel(lower(original)), select_isa(default_isa())
    machine = X86Machine.host(isa.width)
    model = cost_model(mk, machine)
    sat = saturate(to_egg(initial_plan(mk, isa)), x86_rules(mk, isa), Budget())
    chosen = spread_over_ranking(plans_of(sat.view), model, count)
    procs = [rename(original, "naive")]
    # each renamed before its replay: pieces (tails cut off) are named after it, and share one library
    procs += [replay_plan(rename(original, f"plan{i}"), mk, isa, p).proc for i, p in enumerate(chosen)]
    lib = library(procs, cflags=NATIVE_CFLAGS)
    timings = time_interleaved(lib, procs, random_inputs(original), seconds=seconds, max_rounds=60)
    naive = timings[0].timings
    rows = []
    for plan, t in zip(chosen, timings[1:]):
        measured = statistics.median(a / b for a, b in zip(naive, t.timings))
        rows.append({
            "kernel": spec, "plan": asdict(plan), "isa": isa.name, "cflags": list(NATIVE_CFLAGS),
            "machine": asdict(machine), "predicted": model.naive() / model.plan(plan), "measured": measured,
            "naive_seconds": statistics.median(naive), "runs": t.runs,
        })  # fmt: skip
    return rows


def table(rows: list[dict]) -> str:
    lines = [
        "# The x86 model against measurements",
        "",
        f"Speed-ups over the input as written, predicted by `extract/x86_cost.py` and measured at "
        f"`{' '.join(rows[0]['cflags'])}` (interleaved, median of round ratios), with the machine as the "
        "model assumed it:",
        "",
        *[f"- {isa}: `{machine}`" for isa, machine in dict.fromkeys((r["isa"], str(r["machine"])) for r in rows)],
        "",
        "| kernel | ISA | plan | predicted | measured | predicted / measured |",
        "|---|---|---|---:|---:|---:|",
    ]
    for r in rows:
        plan = Plan(**{**r["plan"], "order": tuple(r["plan"]["order"])})
        lines.append(
            f"| {r['kernel'].split('::')[1]} | {r['isa']} | {plan.show()} | {r['predicted']:.1f}x | {r['measured']:.1f}x "
            f"| {r['predicted'] / r['measured']:.2f} |"
        )
    lines += ["", "| kernel | Kendall τ (model vs measured, ties within 10 %) |", "|---|---:|"]
    for spec in dict.fromkeys(r["kernel"] for r in rows):
        mine = [r for r in rows if r["kernel"] == spec]
        tau = kendall_tau([-r["predicted"] for r in mine], [-r["measured"] for r in mine], 0.1)
        lines.append(f"| {spec.split('::')[1]} | {tau:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--plans", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--kernels", nargs="+", default=list(KERNELS), help="re-measure these; keep the others' rows")
    args = ap.parse_args()
    start = time.time()
    recorded = RESULTS / "x86_model_rows.jsonl"
    kept = [json.loads(line) for line in recorded.read_text().splitlines()] if recorded.exists() else []
    fresh = {spec: measure_kernel(spec, args.plans, args.seconds) for spec in args.kernels}
    for spec in fresh:
        print(f"{spec}: {time.time() - start:.0f} s", flush=True)
    rows = [r for spec in KERNELS for r in (fresh[spec] if spec in fresh else [x for x in kept if x["kernel"] == spec])]
    (RESULTS / "x86_model_rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (RESULTS / "x86_model.md").write_text(table(rows))
    print(table(rows))


if __name__ == "__main__":
    main()
