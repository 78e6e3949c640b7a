"""Does calibration carry to kernels it never saw? Leave one kernel out, on real measurements.

    python benchmarks/calibration.py [--trials 16] [--dbs DIR]

Tunes every shipped CPU kernel into a database of its own (``--dbs``; kept, so a re-run reuses the
measurements), then for each kernel fits the model to the *other* kernels' measurements and ranks
this kernel's measured schedules by the model as written and by that calibration (Kendall τ against
the measured order; pairs within 10 % are ties). Writes ``benchmarks/results/calibration.md`` and
the measurements as fitted, ``calibration_rows.jsonl`` (the test suite checks the leave-one-out
result on an earlier run's, ``calibration_rows_sse_model.jsonl``, recorded while the model assumed
SSE: `tests/test_tune.py`).
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

from benchmarks.explore_kernels import shipped  # noqa: E402
from exo_egraph import Budget  # noqa: E402
from exo_egraph.db import ResultDB  # noqa: E402
from exo_egraph.extract.calibrate import Row, fit, held_out  # noqa: E402
from exo_egraph.tuning import calibration_rows, tune  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
TOLERANCE = 0.1


def read_rows(path: Path) -> list[Row]:
    """Rows as `write_rows` stored them."""
    out = []
    for line in path.read_text().splitlines():
        d = json.loads(line)
        out.append(Row(**{**d, "features": {k: tuple(v) for k, v in d["features"].items()}}))
    return out


def write_rows(rows: list[Row], path: Path) -> None:
    path.write_text("".join(json.dumps(asdict(r)) + "\n" for r in rows))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=16)
    ap.add_argument("--dbs", type=Path, default=Path("/tmp/exo-egraph-calibration"), help="a database per kernel")
    args = ap.parse_args(argv)
    args.dbs.mkdir(parents=True, exist_ok=True)
    rows, names = [], {}
    for name, proc in sorted(shipped().items()):
        db = args.dbs / f"{name}.db"
        tune(proc, "cpu", trials=args.trials, workers=2, db=db, budget=Budget(seconds=600), seed=3)
        with ResultDB(db) as d:
            records = d.records()
        names.update({r.kernel: name for r in records})
        rows += [Row(**{**asdict(r), "kernel": names[r.kernel]}) for r in calibration_rows(records)]
    write_rows(rows, RESULTS / "calibration_rows.jsonl")
    results = held_out(rows, TOLERANCE)
    everything = fit(rows)
    lines = [
        "# Calibration on kernels it never saw",
        "",
        f"`python benchmarks/calibration.py --trials {args.trials}` on {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC: "
        f"{len(rows)} measured schedules of {len({r.kernel for r in rows})} kernels (tune, 2 workers, gcc -O2 -fwrapv). "
        "For each kernel, the model is fitted to the other kernels' measurements only; τ is Kendall's tau of "
        f"the ranking against the measured order (pairs within {TOLERANCE:.0%} of each other are ties).",
        "",
        "| held-out kernel | schedules | τ model as written | τ calibrated on the others |",
        "|---|---:|---:|---:|",
    ]
    for h in results:
        lines.append(f"| {h.kernel} | {h.rows} | {h.model:.2f} | {'–' if h.calibrated is None else f'{h.calibrated:.2f}'} |")
    improved = sum(1 for h in results if h.calibrated is not None and h.calibrated > h.model)
    mean_model = statistics.mean(h.model for h in results)
    mean_cal = statistics.mean(h.calibrated for h in results if h.calibrated is not None)
    lines += [
        "",
        f"Calibration ranks better on {improved}/{len(results)} held-out kernels; mean τ {mean_model:.2f} → {mean_cal:.2f}.",
        "",
        f"Fitted to all of them: `{everything.assumption}`, weights (traffic, loop, compute, alloc, chain) "
        f"= {', '.join(f'{w:.3g}' for w in everything.weights)} s, RMS relative error {everything.error:.2f}.",
    ]
    (RESULTS / "calibration.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
