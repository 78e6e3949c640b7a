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

from .api import DEFAULT_TOP_K, explore
from .lower import Unsupported
from .report import text_table
from .saturate import Budget, Iteration
from .script import ReplayError
from .target import create
from .target import names as target_names


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


def cmd_explore(args: argparse.Namespace) -> int:
    proc = load_proc(args.kernel)
    if args.target not in target_names():
        raise InputError(f"unknown target {args.target} (known: {', '.join(target_names())})")
    options = {"reassociate": True} if args.reassociate else {}
    try:
        target = create(args.target, **options)
    except TypeError as e:
        raise InputError(str(e)) from None
    out = Path(args.out)
    start = time.perf_counter()

    def progress(it: Iteration) -> None:
        print(f"\r  saturating: iteration {it.index}, {it.enodes:,} e-nodes, {it.seconds:.1f} s", end="", file=sys.stderr)

    budget = Budget(seconds=args.budget_s, node_limit=args.node_limit, iterations=args.iterations)
    result = explore(
        proc,
        target,
        budget=budget,
        top_k=args.top_k,
        validate=not args.no_validate,
        reference=numpy_reference(args.kernel, proc),
        progress=progress,
    )
    print(file=sys.stderr)
    out.mkdir(parents=True, exist_ok=True)
    (out / "schedule.py").write_text(result.script)
    (out / "report.json").write_text(json.dumps(result.to_json(), indent=2) + "\n")
    print(text_table(result))
    print(f"  wrote {out / 'schedule.py'} and {out / 'report.json'} in {time.perf_counter() - start:.1f} s")
    if result.stats.stop_reason.budget_reached:
        # a budget stop is a success: the report says why it stopped
        print(f"exo-egraph: budget reached ({result.stats.stop_reason.value}); wrote the best schedule so far", file=sys.stderr)
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
    ex.add_argument("--target", default="cpu", help=f"one of: {', '.join(target_names())}")
    ex.add_argument("--out", default="out")
    ex.add_argument("--budget-s", type=float, default=Budget().seconds, help="saturation time budget (seconds)")
    ex.add_argument("--node-limit", type=int, default=Budget().node_limit, help="stop saturating past this many e-graph rows (e-nodes and guard facts)")
    ex.add_argument("--iterations", type=int, default=Budget().iterations, help="most saturation iterations")
    ex.add_argument("--top-k", type=int, default=DEFAULT_TOP_K, help="how many best schedules to extract and replay")
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
    except (InputError, Unsupported) as e:
        print(f"exo-egraph: {e}", file=sys.stderr)
    except ReplayError as e:
        print(f"exo-egraph: soundness bug: {e}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
