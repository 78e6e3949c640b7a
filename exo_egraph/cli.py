"""Command line: ``exo-egraph explore FILE.py[::PROC] --target cpu --out DIR`` and
``exo-egraph check-rules [--examples N] [--seed S] [--rules NAME...]``.

Bad input gets one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

from exo import Procedure

from rewrites.loops import LoopRuleConfig

from .api import TARGETS, Result, explore, explore_gemmini
from .lower import UnsupportedConstruct
from .lower_gemmini import NotGemmini
from .replay import ReplayError
from .saturate import Budget


class InputError(Exception):
    """Bad input: reported as one line, exit code 2."""


def load_procs(path: Path) -> dict[str, Procedure]:
    """The (non-instruction) procs an ordinary Python file defines, by name."""
    if not path.is_file():
        raise InputError(f"no such file: {path}")
    module_name = _module_name(path)
    try:
        loader = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(loader)
        sys.modules[module_name] = module  # Exo's parser looks the module up while it runs
        loader.loader.exec_module(module)
    except Exception as e:
        raise InputError(f"{path} failed to import: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    return {k: v for k, v in vars(module).items() if isinstance(v, Procedure) and not v.is_instr()}


def _module_name(path: Path) -> str:
    return f"_exo_egraph_user_{path.stem}_{abs(hash(path.resolve()))}"


def numpy_reference(spec: str, proc: Procedure):
    """The kernel file's numpy reference for ``proc``: ``REFERENCES[name]``, when it defines one."""
    module = sys.modules.get(_module_name(Path(spec.partition("::")[0])))
    return getattr(module, "REFERENCES", {}).get(proc.name())


def load_proc(spec: str) -> Procedure:
    """The proc named by ``FILE.py::PROC`` (or the only proc of ``FILE.py``)."""
    file, _, name = spec.partition("::")
    procs = load_procs(Path(file))
    if name:
        if name not in procs:
            known = ", ".join(sorted(procs)) or "none"
            raise InputError(f"no proc named {name} in {file} (procs: {known})")
        return procs[name]
    if len(procs) != 1:
        known = ", ".join(sorted(procs)) or "none"
        raise InputError(f"{file} defines {len(procs)} procs ({known}); name one as {file}::PROC")
    return next(iter(procs.values()))


def report(result: Result) -> dict:
    """report.json: what was explored, how big the e-graph grew, the best schedule and its verdicts."""
    if result.target == "gemmini":
        return report_gemmini(result)
    v = result.validation
    return {
        "kernel": result.kernel,
        "target": result.target,
        "egraph": _egraph(result),
        "best": {"cost": result.cost, "naive_cost": result.naive_cost, "steps": list(result.best.replayed.steps)},
        "top_k": [{"cost": c.cost, "steps": list(c.replayed.steps)} for c in result.candidates],
        "replay": {"ok": True, "roundtrip": all(c.replayed.roundtrip for c in result.candidates)},
        "validation": None
        if v is None
        else {
            "ok": v.ok,
            "exact": v.exact,
            "max_abs_err": v.max_abs_err,
            "naive_seconds": v.naive_seconds,
            "scheduled_seconds": v.scheduled_seconds,
            "speedup": v.speedup,
            "message": v.message,
        },
    }


def _egraph(result: Result) -> dict:
    s = result.stats
    return {
        "enodes": s.enodes,
        "eclasses": s.eclasses,
        "iterations": s.iterations,
        "stop_reason": s.stop_reason,
        "schedules": s.schedules,
        "cyclic_classes": s.cyclic_classes,
        "seconds": round(s.seconds, 3),
    }


def report_gemmini(result: Result) -> dict:
    """report.json for ``--target gemmini``: cycles and utilization on the Gemmini model."""
    from .plans import show

    v = result.validation
    best = result.best
    return {
        "kernel": result.kernel,
        "target": "gemmini",
        "egraph": _egraph(result),
        "best": {"cycles": best.cost, "plan": show(best.plan).splitlines(), "steps": list(best.replayed.steps)},
        "top_k": [{"cycles": c.cost, "steps": list(c.replayed.steps)} for c in result.candidates],
        "replay": {"ok": True},
        "validation": None
        if v is None
        else {
            "ok": v.ok,
            "message": v.message,
            "cycles": v.cycles,
            "utilization": round(v.utilization, 4),
            "model_cycles": v.model_cycles,
            "model_agrees": v.model_cycles == v.cycles,
            "counters": v.counters,
            "naive": {"runs_on": "host CPU only (no Gemmini)", "host_cycles": v.naive_host_cycles,
                      "speedup_vs_naive": round(v.naive_host_cycles / max(v.cycles, 1), 2)},
        },
    }


def _summary_gemmini(rep: dict) -> str:
    e, b, v = rep["egraph"], rep["best"], rep["validation"] or {}
    rows = [
        ("kernel", f"{rep['kernel']} (gemmini)"),
        ("e-nodes / e-classes", f"{e['enodes']:,} / {e['eclasses']:,}"),
        ("schedules held", f"{e['schedules']:,}"),
        ("saturation", f"{e['iterations']} iterations, {e['seconds']} s, {e['stop_reason']}"),
        ("modeled cycles", f"{b['cycles']:,}"),
        ("validation", f"{v.get('ok')} ({v.get('message')})" if v else "skipped"),
        ("simulated cycles", f"{v['cycles']:,} (model agrees: {v['model_agrees']})" if v else "-"),
        ("utilization", f"{v['utilization']:.1%}" if v else "-"),
        ("naive (host CPU)", f"{v['naive']['host_cycles']:,} cycles" if v else "-"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"  {k.ljust(width)}  {val}" for k, val in rows)


def _summary(rep: dict) -> str:
    if rep["target"] == "gemmini":
        return _summary_gemmini(rep)
    e, b, v = rep["egraph"], rep["best"], rep["validation"] or {}
    rows = [
        ("kernel", rep["kernel"]),
        ("e-nodes / e-classes", f"{e['enodes']:,} / {e['eclasses']:,}"),
        ("schedules held", f"{e['schedules']:,}"),
        ("saturation", f"{e['iterations']} iterations, {e['seconds']} s, {e['stop_reason']}"),
        ("best cost (naive)", f"{b['cost']:,.0f} ({b['naive_cost']:,.0f})"),
        ("replay / round trip", f"{rep['replay']['ok']} / {rep['replay']['roundtrip']}"),
        ("validation", f"{v.get('ok')} (exact {v.get('exact')})" if v else "skipped"),
        ("speed-up (measured)", f"{v['speedup']:.2f}x" if v else "-"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"  {k.ljust(width)}  {val}" for k, val in rows)


def cmd_explore(args: argparse.Namespace) -> int:
    proc = load_proc(args.kernel)
    if args.target not in TARGETS:
        raise InputError(f"unknown target {args.target} (known: {', '.join(TARGETS)})")
    out = Path(args.out)
    start = time.perf_counter()

    def progress(iteration: int, nodes: int, seconds: float) -> None:
        print(f"\r  saturating: iteration {iteration}, {nodes:,} e-nodes, {seconds:.1f} s", end="", file=sys.stderr)

    budget = Budget(seconds=args.budget_s, node_limit=args.node_limit, iterations=args.iterations)
    if args.target == "gemmini":
        result = explore_gemmini(
            proc,
            budget=budget,
            top_k=args.top_k,
            validate=not args.no_validate,
            progress=progress,
            reference=numpy_reference(args.kernel, proc),
        )
    else:
        result = explore(
            proc,
            args.target,
            budget=budget,
            rules=LoopRuleConfig(reassociate=args.reassociate),
            top_k=args.top_k,
            validate=not args.no_validate,
            progress=progress,
        )
    print(file=sys.stderr)
    out.mkdir(parents=True, exist_ok=True)
    (out / "schedule.py").write_text(result.script)
    rep = report(result)
    (out / "report.json").write_text(json.dumps(rep, indent=2) + "\n")
    print(_summary(rep))
    print(f"  wrote {out / 'schedule.py'} and {out / 'report.json'} in {time.perf_counter() - start:.1f} s")
    if result.stats.stop_reason in ("node-limit", "time"):
        print(f"exo-egraph: budget reached ({result.stats.stop_reason}); wrote the best schedule so far", file=sys.stderr)
        return 2
    if result.validation is not None and not result.validation.ok:
        print(f"exo-egraph: validation failed: {result.validation.message}", file=sys.stderr)
        return 1
    return 0


def cmd_check_rules(args: argparse.Namespace) -> int:
    from .checks import RULES, check_rule  # draws on hypothesis: loaded only for this command

    names = args.rules or list(RULES)
    unknown = [n for n in names if n not in RULES]
    if unknown:
        raise InputError(f"unknown rule {unknown[0]} (known: {', '.join(RULES)})")
    reports = []
    for name in names:
        def progress(done: int, name: str = name) -> None:
            print(f"\r  {name}: {done}/{args.examples} kernels", end="", file=sys.stderr)

        start = time.perf_counter()
        reports.append((check_rule(name, args.examples, args.seed, on_example=progress), time.perf_counter() - start))
        print(file=sys.stderr)
    print(_rules_table(reports))
    for rep, _ in reports:
        if not rep.ok:
            print(f"\n{rep.rule}: {rep.failure}\nshrunk kernel:\n{rep.kernel}")
    return 0 if all(rep.ok for rep, _ in reports) else 1


def _rules_table(reports: list) -> str:
    head = ("rule", "examples", "terms checked", "applications", "counts checked", "seconds", "result")
    rows = [
        (r.rule, str(r.examples), str(r.terms), str(r.applications), str(r.counted), f"{secs:.1f}", "ok" if r.ok else "FAILED")
        for r, secs in reports
    ]
    widths = [max(len(row[i]) for row in [head, *rows]) for i in range(len(head))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in [head, *rows])


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="exo-egraph", description="Equality-saturation scheduling for Exo procs")
    sub = ap.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("explore", help="explore a proc's schedules and write the best one")
    ex.add_argument("kernel", help="FILE.py::PROC, or FILE.py when it defines one proc")
    ex.add_argument("--target", default="cpu")
    ex.add_argument("--out", default="out")
    ex.add_argument("--budget-s", type=float, default=30.0, help="saturation time budget (seconds)")
    ex.add_argument("--node-limit", type=int, default=500_000, help="stop saturating past this many e-graph rows (e-nodes and guard facts)")
    ex.add_argument("--iterations", type=int, default=40, help="most saturation iterations")
    ex.add_argument("--top-k", type=int, default=3, help="how many best schedules to extract and replay")
    ex.add_argument("--no-validate", action="store_true", help="skip compiling and running")
    ex.add_argument(
        "--reassociate",
        action="store_true",
        help="let float += sums change order (faster schedules; results then match within tolerance, not bit-exact)",
    )
    ck = sub.add_parser("check-rules", help="property-test the rewrite rules on random kernels")
    ck.add_argument("--examples", type=int, default=50, help="random kernels per rule")
    ck.add_argument("--seed", type=int, default=0)
    ck.add_argument("--rules", nargs="+", metavar="NAME", help="rules to check (default: all)")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return cmd_check_rules(args) if args.command == "check-rules" else cmd_explore(args)
    except InputError as e:
        print(f"exo-egraph: {e}", file=sys.stderr)
    except (UnsupportedConstruct, NotGemmini) as e:
        print(f"exo-egraph: {e}", file=sys.stderr)
    except ReplayError as e:
        print(f"exo-egraph: soundness bug: {e}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
