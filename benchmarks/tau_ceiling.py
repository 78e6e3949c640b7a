"""How well can any cost model rank the cpu target's best schedules here? The timing's own repeatability.

    python benchmarks/tau_ceiling.py [--top 16] [--runs 3] [--seconds 8] [--kernels matmul_f32_16 ...]

Issue 12 asks for Kendall τ ≥ 0.8 between a calibrated model and measured times over the 16
schedules it ranks best. A model is scored against one measurement, which is noisy; this asks
how far a *perfect* model could get. Per shipped CPU kernel:

- the model's ``--top`` best schedules (``explore(..., top_k=16)``, the cpu target's build);
- timed ``--runs`` times in independent interleaved runs (`time_interleaved`: each round runs the
  input and every schedule once, so the machine's drift hits all alike; a finer measurement than
  tune's, which times each schedule against the input on its own);
- for each run, τ between it and the mean relative time of the *other* runs: what a model that
  knew the times as well as the other runs together do would score (a lower bound on a perfect
  model's τ, which noise in the one run scored against still caps);
- τ between pairs of runs (test–retest), and the model's τ against each run: as written, and
  calibrated (`extract.calibrate.fit`) on the *other* kernels' schedules of this run, as
  ``explore --calibrated`` would rank a kernel its calibration never saw.

Writes ``benchmarks/results/tau_ceiling.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.explore_kernels import shipped  # noqa: E402
from exo.stdlib.scheduling import rename  # noqa: E402
from exo_egraph import Budget, explore  # noqa: E402
from exo_egraph.extract.calibrate import Row, fit, kendall_tau  # noqa: E402
from exo_egraph.targets.cpu import CpuTarget  # noqa: E402
from exo_egraph.validate.cpu import CFLAGS, library, random_inputs, time_interleaved  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def relative_times(procs: list[Any], runs: int, seconds: float) -> tuple[list[list[float]], float]:
    """Per run, each proc's median time over the input's (``procs[0]``), the input left out; and
    the input's median seconds per call (the first run's)."""
    lib = library(procs, cflags=CFLAGS)
    inputs = random_inputs(procs[0])
    out, naive = [], 0.0
    for _ in range(runs):
        t = time_interleaved(lib, procs, inputs, seconds=seconds, min_rounds=9, max_rounds=400)
        out.append([x.median / t[0].median for x in t[1:]])
        naive = naive or t[0].median
    return out, naive


def kernel_row(name: str, proc: Any, top: int, runs: int, seconds: float) -> dict[str, Any]:
    target = CpuTarget()
    result = explore(proc, target, budget=Budget(seconds=30.0), top_k=top, validate=False)
    picks = [c for c in result.candidates if c.pick.term is not None]
    procs = [rename(proc, f"{name}_input")] + [rename(c.proc, f"{name}_s{i}") for i, c in enumerate(picks)]
    times, naive = relative_times(procs, runs, seconds)
    problem = target.prepare(proc)
    features = [target.features(problem, c.pick) for c in picks]
    predicted = [c.cost for c in picks]
    loo = [kendall_tau([statistics.mean(r[i] for r in times[:k] + times[k + 1 :]) for i in range(len(picks))], times[k])
           for k in range(runs)]  # fmt: skip
    pairs = [kendall_tau(times[a], times[b]) for a in range(runs) for b in range(a + 1, runs)]
    spans = [max(r) / min(r) for r in times]
    return {
        "kernel": name,
        "schedules": len(picks),
        "span": statistics.median(spans),  # slowest over fastest of the schedules, median over runs
        "tau_others_vs_run": loo,
        "tau_run_vs_run": pairs,
        "tau_model_vs_run": [kendall_tau(predicted, r) for r in times],
        "relative": times,
        "naive_s": naive,
        "features": [{k: list(v) for k, v in f.items()} for f in features],
    }


def held_out_taus(rows: list[dict[str, Any]]) -> None:
    """Each row gains ``tau_calibrated_vs_run``: its schedules ranked by a calibration fitted to the
    other kernels' schedules (their mean relative times over the runs), against each of its runs."""
    def fitted_rows(r: dict[str, Any]) -> list[Row]:
        mean = [statistics.mean(run[i] for run in r["relative"]) for i in range(r["schedules"])]
        return [Row({k: tuple(v) for k, v in f.items()}, m, r["naive_s"], r["kernel"]) for f, m in zip(r["features"], mean)]

    for r in rows:
        cal = fit([row for other in rows if other is not r for row in fitted_rows(other)])
        if cal is None:
            continue
        predicted = [cal.predict({k: tuple(v) for k, v in f.items()}) for f in r["features"]]
        r["calibrated_as"] = cal.assumption
        r["tau_calibrated_vs_run"] = [kendall_tau(predicted, run) for run in r["relative"]]


def render(rows: list[dict[str, Any]], command: str) -> str:
    f = lambda xs: f"{statistics.mean(xs):.2f} ({min(xs):.2f}–{max(xs):.2f})"  # noqa: E731
    lines = [
        "# How far can a model's τ go? The measurement's own repeatability",
        "",
        f"`{command}` on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC (cpu target's build, `gcc {' '.join(CFLAGS)}`). "
        "Per kernel, the model's best schedules, timed in independent interleaved runs. "
        "*Others vs a run*: τ of the mean of the other runs against one run, what a model knowing the times that well "
        "would score (mean, range over runs). *Run vs run*: test–retest τ. *Span*: slowest over fastest schedule.",
        "",
        "| kernel | schedules | span | others vs a run | run vs run | model vs a run | calibrated on the others vs a run |",
        "|---|---:|---:|---|---|---|---|",
    ]
    for r in rows:
        cal = f"{f(r['tau_calibrated_vs_run'])}, {r['calibrated_as']}" if r.get("tau_calibrated_vs_run") else "—"
        lines.append(
            f"| {r['kernel']} | {r['schedules']} | {r['span']:.2f}x | {f(r['tau_others_vs_run'])} | "
            f"{f(r['tau_run_vs_run'])} | {f(r['tau_model_vs_run'])} | {cal} |"
        )
    reach = sum(statistics.mean(r["tau_others_vs_run"]) >= 0.8 for r in rows)
    calibrated = sum(statistics.mean(r.get("tau_calibrated_vs_run") or [-1]) >= 0.8 for r in rows)
    lines += ["", f"- kernels where even the other runs' mean ranks a run at τ ≥ 0.8: {reach}/{len(rows)}.",
              f"- kernels where the model calibrated on the other kernels does: {calibrated}/{len(rows)}."]  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--top", type=int, default=16)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=8.0, help="seconds per timed run")
    ap.add_argument("--kernels", nargs="*", help="names of shipped CPU kernels (default: all)")
    ap.add_argument("--out-dir", default=str(RESULTS))
    args = ap.parse_args(argv)
    if args.runs < 2 or args.top < 2:
        ap.error("--runs and --top must be at least 2")
    kernels = shipped()
    names = args.kernels or sorted(kernels)
    rows = []
    for name in names:
        start = time.perf_counter()
        rows.append(kernel_row(name, kernels[name], args.top, args.runs, args.seconds))
        r = rows[-1]
        print(f"{name}: {r['schedules']} schedules, others vs run {r['tau_others_vs_run']}, "
              f"model {r['tau_model_vs_run']} ({time.perf_counter() - start:.0f} s)", flush=True)  # fmt: skip
    held_out_taus(rows)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/tau_ceiling.py " + " ".join(argv if argv is not None else sys.argv[1:])
    (out / "tau_ceiling.json").write_text(json.dumps({"command": command.strip(), "rows": rows}, indent=1) + "\n")
    (out / "tau_ceiling.md").write_text(render(rows, command.strip()))
    print(f"wrote {out / 'tau_ceiling.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
