"""Gemmini kernels side by side, under both timing models: explored schedule vs hand schedule vs
the naive proc (host CPU).

    python benchmarks/gemmini_table.py [--budget-s S] [--out benchmarks/results/gemmini.json]
    python benchmarks/gemmini_table.py --large   # 512^3 and ResNet-50 matmuls vs expert-style hands
    python benchmarks/gemmini_table.py --conv    # ResNet-50 3x3 convolutions in Exo's own form
    python benchmarks/gemmini_table.py --forms   # strides, epilogues, 16q + r, a transposed operand

Every explored and hand schedule runs on the Gemmini model (exo_egraph/targets/gemmini/model) and
must match the naive proc and the numpy reference bit for bit. Each run reports the decoupled
model's cycles (``cycles``: loads, execution and stores overlap; what the explorer ranks by) and
the serial model's (``cycles_serial``: every command's cycles added up). "serial pick" is the plan
the serial model ranks first (what the explorer returned before it timed overlap), timed under
the decoupled model. The execute controller alone needs (PRELOAD + COMPUTE + DIM) cycles per
16x16x16 step, so no schedule passes DIM / (PRELOAD + COMPUTE + DIM) utilization (88.9 %).
The naive proc runs on the host CPU only, priced at one cycle per scalar statement.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "kernels"))

import gemmini as kernels  # noqa: E402
import gemmini_hand as hand  # noqa: E402

from exo_egraph import explore  # noqa: E402
from exo_egraph.extract.plan_extract import extract_plans, held_choices  # noqa: E402
from exo_egraph.saturate import Budget, Deadline  # noqa: E402
from exo_egraph.targets.gemmini.model import validate_gemmini  # noqa: E402
from exo_egraph.targets.gemmini.target import GemminiTarget  # noqa: E402


def explored(name: str, budget_s: float):
    """(proc, numpy reference, explore's result, its wall seconds) of kernel ``name``."""
    proc, reference = getattr(kernels, name), kernels.REFERENCES[name]
    start = time.perf_counter()
    r = explore(proc, "gemmini", budget=Budget(seconds=budget_s), reference=reference, top_k=1)
    return proc, reference, r, time.perf_counter() - start


def serial_pick_cycles(proc) -> int:
    """Decoupled cycles of the plan the serial model ranks first."""
    target = GemminiTarget()
    problem = target.prepare(proc)
    saturated = target.saturate(problem, Budget(), None, Deadline.after(math.inf))
    first = extract_plans(saturated.view, problem.model, k=1, choices=held_choices(saturated.view, problem.model))[0]
    return problem.model.cycles(first.plan, first.choice.hoisted)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--budget-s", type=float, default=60.0)
    ap.add_argument("--out", default=str(HERE / "results" / "gemmini.json"))
    ap.add_argument("--kernels", nargs="+", default=list(kernels.GEMMINI_KERNELS))
    ap.add_argument("--large", action="store_true", help="512^3 and the ResNet-50 layers, against expert-style hands")
    ap.add_argument("--conv", action="store_true", help="the ResNet-50 3x3 convolutions in Exo's own form")
    ap.add_argument("--forms", action="store_true", help="the other kernel forms (strides, epilogues, K, layouts)")
    args = ap.parse_args()
    if args.large:
        return large(args.budget_s, Path(args.out).with_name("gemmini_large.json"))
    if args.conv:
        return against_naive(kernels.GEMMINI_CONV, args.budget_s, Path(args.out).with_name("gemmini_conv.json"))
    if args.forms:
        return against_naive(tuple(kernels.FORMS), args.budget_s, Path(args.out).with_name("gemmini_forms.json"))
    rows = []
    head = (
        "| kernel | explore s | naive host cycles | hand: decoupled (util) / serial | hand 1-tile mvins: decoupled / serial "
        "| serial pick: decoupled | explored: decoupled (util) / serial | explored / hand, decoupled "
        "| explored / hand, serial | explored / serial pick | bit-exact |"
    )
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    print("\n".join(lines))
    for name in args.kernels:
        proc, reference, r, seconds = explored(name, args.budget_s)
        h = validate_gemmini(proc, hand.HAND_SCHEDULES[name](proc), reference=reference)
        h1 = validate_gemmini(proc, hand.VARIANTS[name]["one_tile_mvins"](proc), reference=reference)
        serial_pick = serial_pick_cycles(proc)
        v = r.validation
        serial = {"explored": v.counters["cycles_serial"], "hand": h.counters["cycles_serial"],
                  "hand_1": h1.counters["cycles_serial"]}  # fmt: skip
        row = {
            "kernel": name,
            "schedules": r.stats.schedules,
            "enodes": r.stats.enodes,
            "explore_seconds": round(seconds, 2),
            "naive_host_cycles": v.naive_host_cycles,
            "hand_cycles": h.cycles,
            "hand_cycles_serial": serial["hand"],
            "hand_utilization": round(h.utilization, 4),
            "hand_one_tile_mvins_cycles": h1.cycles,
            "hand_one_tile_mvins_cycles_serial": serial["hand_1"],
            "serial_pick_cycles": serial_pick,
            "explored_cycles": v.cycles,
            "explored_cycles_serial": serial["explored"],
            "explored_model_cycles": v.model_cycles,
            "explored_utilization": round(v.utilization, 4),
            "explored_over_hand": round(v.cycles / h.cycles, 3),
            "explored_over_hand_serial": round(serial["explored"] / serial["hand"], 3),
            "explored_over_serial_pick": round(v.cycles / serial_pick, 3),
            "explored_ok": v.ok,
            "hand_ok": h.ok and h1.ok,
            "busy": {q: v.counters[f"busy_{q}"] for q in ("ld", "ex", "st")},
            "plan": r.details[0]["plan"],
        }
        rows.append(row)
        lines.append(
            f"| {name} | {row['explore_seconds']} | {v.naive_host_cycles:,} "
            f"| {h.cycles:,} ({h.utilization:.1%}) / {serial['hand']:,} | {h1.cycles:,} / {serial['hand_1']:,} "
            f"| {serial_pick:,} | {v.cycles:,} ({v.utilization:.1%}) / {serial['explored']:,} "
            f"| {row['explored_over_hand']:.3f}x | {row['explored_over_hand_serial']:.3f}x "
            f"| {row['explored_over_serial_pick']:.3f}x | {v.ok and h.ok and h1.ok} |"
        )
        print(lines[-1], flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=2) + "\n")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


def large(budget_s: float, out: Path) -> None:
    """512^3 and the ResNet-50 matmul layers: explored against the expert-style hand schedule
    (``gemmini_hand.EXPERT``: a resident block of B, C tiles stored one by one from two
    alternating accumulator buffers, double-buffered A rows), and against the same blocks
    without those (each C block stored whole after its last step, single buffers)."""
    head = ("| kernel | explore s | explored: decoupled (util) / serial | model / simulated | expert hand: decoupled (util) "
            "| hand, blocks stored whole | explored / expert hand | bit-exact |")  # fmt: skip
    lines, rows = [head, "|---|---:|---:|---:|---:|---:|---:|---|"], []
    print("\n".join(lines))
    for name in kernels.GEMMINI_LARGE:
        proc, reference, r, seconds = explored(name, budget_s)
        v = r.validation
        expert = hand.EXPERT.get(name)
        h = validate_gemmini(proc, expert(proc), reference=reference) if expert else None
        plain = None
        if expert:
            plain_schedule = hand.tiled_matmul(proc, c_block=hand.EXPERT_BLOCKS[name])
            plain = validate_gemmini(proc, plain_schedule, reference=reference)
        row = {
            "kernel": name, "explore_seconds": round(seconds, 2), "stop_reason": r.stop_reason.value,
            "explored_cycles": v.cycles, "explored_model_cycles": v.model_cycles,
            "explored_cycles_serial": v.counters["cycles_serial"], "explored_utilization": round(v.utilization, 4),
            "expert_cycles": h.cycles if h else None, "expert_utilization": round(h.utilization, 4) if h else None,
            "hand_blocks_stored_whole_cycles": plain.cycles if plain else None,
            "explored_over_expert": round(v.cycles / h.cycles, 3) if h else None,
            "ok": v.ok and (h is None or h.ok) and (plain is None or plain.ok), "plan": r.details[0]["plan"],
        }  # fmt: skip
        rows.append(row)
        expert_text = f"{h.cycles:,} ({h.utilization:.1%})" if h else "—"
        plain_text = f"{plain.cycles:,}" if plain else "—"
        ratio_text = f"{row['explored_over_expert']:.3f}x" if h else "—"
        lines.append(
            f"| {name} | {row['explore_seconds']} | {v.cycles:,} ({v.utilization:.1%}) / {row['explored_cycles_serial']:,} "
            f"| {v.model_cycles / v.cycles:.4f} | {expert_text} | {plain_text} | {ratio_text} | {row['ok']} |"
        )
        print(lines[-1], flush=True)
    out.write_text(json.dumps(rows, indent=2) + "\n")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


def against_naive(names: tuple[str, ...], budget_s: float, out: Path) -> None:
    """Kernels with no hand schedule, explored against the naive proc: ``--conv``, the 3x3
    convolutions of ResNet-50 that Exo's apps/gemmini schedules, written as Exo writes them (batch
    4, bias row, i8 temporaries; output 56 and 28 wide are cut into whole tiles and a partial one,
    14 and 7 are one partial tile), stride 1 and stride 2 (``_s2_``); ``--forms``, the other
    kernel forms the target takes (`kernels.FORMS`)."""
    head = ("| kernel | explore s | nests | explored: decoupled (util) / serial | model / simulated "
            "| naive host cycles | bit-exact |")  # fmt: skip
    lines, rows = [head, "|---|---:|---:|---:|---:|---:|---|"], []
    print("\n".join(lines))
    for name in names:
        proc, reference, r, seconds = explored(name, budget_s)
        v = r.validation
        nests = max(1, sum(line.startswith("part ") for line in r.details[0]["plan"]))
        row = {
            "kernel": name, "explore_seconds": round(seconds, 2), "stop_reason": r.stop_reason.value, "nests": nests,
            "explored_cycles": v.cycles, "explored_model_cycles": v.model_cycles,
            "explored_cycles_serial": v.counters["cycles_serial"], "explored_utilization": round(v.utilization, 4),
            "naive_host_cycles": v.naive_host_cycles, "ok": v.ok, "plan": r.details[0]["plan"],
        }  # fmt: skip
        rows.append(row)
        lines.append(
            f"| {name} | {row['explore_seconds']} | {nests} | {v.cycles:,} ({v.utilization:.1%}) "
            f"/ {row['explored_cycles_serial']:,} | {v.model_cycles / v.cycles:.4f} | {v.naive_host_cycles:,} | {v.ok} |"
        )
        print(lines[-1], flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=2) + "\n")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
